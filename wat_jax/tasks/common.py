"""Stages both real tasks share: describe keys, embed texts into a bank, plots."""

import os

import numpy as np
from absl import logging

from wat_jax.data.pipeline import TextBank
from wat_jax.errors import fail

BANK_FILE = "text_bank.npz"
PROTOTYPES = ("name", "centroid")  # a key's text: its name, or its descriptions' centroid


def bank_path(workdir: str) -> str:
    return os.path.join(workdir, BANK_FILE)


def describe_keys(keys, config, workdir: str) -> str:
    """Runs the description stage for `keys` (DescribeKey list); returns the store path."""
    from wat_jax.text import describe

    return describe.describe(keys, config.describe, workdir)


def encode(texts, config) -> np.ndarray:
    """Frozen text encoder over `texts` with config.text's settings, through the cache."""
    from wat_jax.text import encoder

    t = config.text
    return encoder.embed_texts(
        list(texts),
        encoder=t.encoder,
        pooling=t.pooling,
        normalize=t.normalize,
        max_length=t.max_length or None,
        batch_size=t.batch_size,
        cache_dir=t.cache_dir or None,
        dtype=t.dtype,
    )


def build_bank(keys, config, workdir: str) -> TextBank:
    """Embeds each key's phrase and its stored descriptions; writes DIR/text_bank.npz.

    With describe.backend == "names" there are no descriptions: every key's
    only text is its phrase, which is the paper's names-only ablation.
    """
    from wat_jax.text import describe

    by_key = {}
    if config.describe.backend != "names":
        store = os.path.join(workdir, "descriptions.jsonl")
        if not os.path.exists(store):
            raise fail(store, "no descriptions; run --mode=describe first")
        by_key = describe.load_descriptions(store)
        missing = [k.key for k in keys if not by_key.get(k.key)]
        if missing:
            raise fail(
                store,
                f"{len(missing)} keys have no descriptions, e.g. {missing[0]!r}; "
                "run --mode=describe again",
            )
    phrases = [k.phrase for k in keys]
    texts, offsets = [], [0]
    for k in keys:
        texts.extend(by_key.get(k.key, []))
        offsets.append(len(texts))
    logging.info(
        "embedding %d phrases and %d descriptions with %s",
        len(phrases),
        len(texts),
        config.text.encoder,
    )
    names = encode(phrases, config)
    descriptions = encode(texts, config) if texts else np.zeros((0, names.shape[1]), np.float32)
    bank = TextBank(
        [k.key for k in keys],
        names.astype(np.float32),
        descriptions.astype(np.float32),
        np.asarray(offsets, np.int64),
    )
    bank.save(bank_path(workdir))
    return bank


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
