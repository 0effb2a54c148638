"""What both real tasks share: which text stands for a key, means."""

import numpy as np

from wat_jax.text.bank import TextBank
from wat_jax.errors import fail

PROTOTYPES = ("name", "centroid")  # a key's text: its name, or its descriptions' centroid


def prototype_kind(config) -> str:
    """config.eval.prototype, checked: which text stands for a key in ranking."""
    kind = config.eval.prototype
    if kind not in PROTOTYPES:
        raise fail("config.eval.prototype", f"must be one of {PROTOTYPES}, got {kind!r}")
    return kind


def prototype_vectors(config, bank: TextBank) -> np.ndarray:
    """[K, D] each key's eval.prototype vector (frozen, before projection)."""
    return bank.centroids(normalize=True) if prototype_kind(config) == "centroid" else bank.names


def bank_prototypes(config, bank: TextBank, phrases: list[str]) -> dict:
    """The bank's keys with their eval.prototype vectors, for checkpoint metadata."""
    return {
        "keys": list(bank.keys),
        "phrases": phrases,
        "prototype": prototype_kind(config),
        "vectors": prototype_vectors(config, bank),
    }


def finite_mean(values) -> float:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")
