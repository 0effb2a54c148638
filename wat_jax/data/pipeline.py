"""Host-side batching: fixed-shape batches, a resumable position, text targets.

A batch is a pure function of (seed, data position): the position counts the
examples consumed so far, epochs are seeded permutations, and per-sample text
choices draw from a generator seeded by (seed, position). Resuming from a
checkpoint's position therefore replays exactly the batches an uninterrupted
run would have seen, and every process computes the same global batch and
loads only its own rows.
"""

import dataclasses

import numpy as np

from wat_jax.errors import fail
from wat_jax.text.bank import TextBank

TARGET_KINDS = ("name", "centroid", "description")


def class_keys(labels: np.ndarray, threshold: float) -> np.ndarray:
    """[N, C] multi-hot -> [N, C] each row's class ids above `threshold` (config.data.threshold;
    descending), then -1 padding."""
    keys = np.where(np.asarray(labels) > threshold, np.arange(labels.shape[1])[None], -1)
    return -np.sort(-keys, axis=1)


@dataclasses.dataclass
class Batcher:
    """Draws global batches by position; returns this process's rows.

    Attributes:
      motion, mask, labels: the prepared split (arrays may be memory-mapped).
      sample_keys: [N, S] int, the bank keys each window may be described by
        (its classes, or its attribute set), -1 padded.
      bank: the text vectors.
      targets: which text targets to emit per sample, e.g. ("name", "centroid").
      global_batch: rows per global batch.
      rows: this process's slice of each global batch.
      seed: data seed.
    """

    motion: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    sample_keys: np.ndarray
    bank: TextBank
    targets: tuple
    global_batch: int
    rows: slice
    seed: int

    def __post_init__(self):
        for t in self.targets:
            if t not in TARGET_KINDS:
                raise fail("config.text.targets", f"unknown target {t!r}; use {TARGET_KINDS}")
        # [K, D] in memory, so only when a target uses it (the bank itself stays on disk)
        want = "centroid" in self.targets
        self._centroids = self.bank.centroids(normalize=False) if want else None
        self._perm_cache: dict[int, np.ndarray] = {}

    @property
    def num_examples(self) -> int:
        return self.motion.shape[0]

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            self._perm_cache = {
                epoch: np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
            }
        return self._perm_cache[epoch]

    def indices(self, position: int) -> np.ndarray:
        """Global batch indices for the examples [position, position + batch)."""
        n = self.num_examples
        pos = np.arange(position, position + self.global_batch)
        epochs, offsets = np.divmod(pos, n)
        out = np.empty(self.global_batch, np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._perm(int(e))[offsets[sel]]
        return out

    def batch(self, position: int) -> dict:
        """This process's rows of the global batch at `position`."""
        idx = self.indices(position)
        rng = np.random.default_rng([self.seed, 1, position])
        keys = self.sample_keys[idx]  # [B, S]
        counts = (keys >= 0).sum(1)
        choice = (rng.random(len(idx)) * np.maximum(counts, 1)).astype(np.int64)
        key = keys[np.arange(len(idx)), choice]  # [B]
        desc_u = rng.random(len(idx))
        local = self.rows
        key_l, desc_l = key[local], desc_u[local]
        texts = []
        for kind in self.targets:
            texts.append(self._target(kind, key_l, desc_l))
        order = np.argsort(idx[local])  # sorted reads from memory-mapped files
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        rows = idx[local][order]
        return {
            "motion": np.asarray(self.motion[rows], np.float32)[inv],
            "mask": np.asarray(self.mask[rows], bool)[inv],
            "labels": np.asarray(self.labels[rows], np.float32)[inv],
            "text": np.stack(texts, 1).astype(np.float32),  # [b, K, D]
            "text_mask": np.repeat((key_l >= 0)[:, None], len(texts), 1),
        }

    def _target(self, kind: str, key: np.ndarray, u: np.ndarray) -> np.ndarray:
        safe = np.maximum(key, 0)
        if kind == "name":
            return self.bank.names[safe]
        if kind == "centroid":
            return self._centroids[safe]
        lo, hi = self.bank.offsets[safe], self.bank.offsets[safe + 1]
        have = hi > lo
        row = lo + (u * np.maximum(hi - lo, 1)).astype(np.int64)
        out = self.bank.names[safe].copy()
        if have.any():
            out[have] = self.bank.descriptions[row[have]]
        return out
