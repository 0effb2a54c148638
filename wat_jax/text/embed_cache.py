"""A content-addressed, multi-process-safe cache of text embeddings.

The text tower is frozen, so a text's vector depends only on the model's files,
the encoder settings and the text itself. Entries live under
`<cache_dir>/<settings id>/`, where the settings id hashes the model fingerprint
(weights, config and tokenizer files), pooling, normalisation, maximum length
and dtype: a different model or setting reads a different directory, so it never
gets stale vectors. Each `put` writes one shard `.npz` (text hashes + vectors)
to a temporary name and renames it into place, so two processes writing at once
each add whole shards and a reader sees a shard entirely or not at all. When
shards pile up they are merged into one; a reader that loses a shard to a merge
lists the directory again and finds the merged one.
"""

import hashlib
import json
import os
import uuid
import zipfile

import numpy as np
from absl import logging

from wat_jax import fileio

FORMAT_VERSION = 1
# Merge when a settings directory holds more shards than this: reads list every shard.
MAX_SHARDS = 32


def default_cache_dir() -> str:
    """$WAT_JAX_CACHE, else ~/.cache/wat_jax/text_embeddings."""
    return os.environ.get("WAT_JAX_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "wat_jax", "text_embeddings"
    )


def text_key(text: str) -> bytes:
    """The cache key of one text: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest().encode("ascii")


class EmbeddingCache:
    """The entries for one (model fingerprint, settings) pair.

    Args:
      cache_dir: the cache's root directory (created on first write).
      settings: JSON-serialisable dict that decides the vectors: the model
        fingerprint, pooling, normalize, max_length, dtype.
    """

    def __init__(self, cache_dir: str, settings: dict):
        blob = json.dumps({"format": FORMAT_VERSION, **settings}, sort_keys=True)
        self.settings = settings
        self.directory = os.path.join(cache_dir, hashlib.sha256(blob.encode()).hexdigest()[:32])

    def _shards(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(
            os.path.join(self.directory, n)
            for n in names
            if n.startswith("shard-") and n.endswith(".npz")
        )

    def _read_shard(self, path: str, wanted: set, found: dict) -> bool:
        """Adds `path`'s entries whose keys are in `wanted` to `found`; False if it vanished."""
        try:
            with np.load(path, allow_pickle=False) as shard:
                keys = shard["keys"]
                hits = [i for i, k in enumerate(keys.tolist()) if k in wanted]
                if hits:
                    vectors = shard["vectors"]
                    for i in hits:
                        found[keys[i].tobytes()] = vectors[i]
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            logging.warning("ignoring unreadable embedding cache shard %s (%s)", path, e)
        return True

    def get(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Cached vectors for those of `texts` that have one: text -> float32 [D]."""
        by_key = {text_key(t): t for t in texts}
        found: dict[bytes, np.ndarray] = {}
        seen = set()
        for _ in range(2):  # a second listing picks up shards merged while we read
            vanished = False
            for path in self._shards():
                if path in seen:
                    continue
                seen.add(path)
                vanished |= not self._read_shard(path, set(by_key) - set(found), found)
            if not vanished:
                break
        return {by_key[k]: np.asarray(v, np.float32) for k, v in found.items()}

    def put(self, texts: list[str], vectors: np.ndarray) -> None:
        """Stores vectors [N, D] for `texts` as one new shard, atomically."""
        if not len(texts):
            return
        vectors = np.asarray(vectors, np.float32)
        if vectors.shape[0] != len(texts) or not np.isfinite(vectors).all():
            raise ValueError("embedding cache: vectors must be finite and one row per text")
        keys = np.array([text_key(t) for t in texts], dtype="S64")
        settings_path = os.path.join(self.directory, "settings.json")
        if not os.path.exists(settings_path):  # for people browsing the cache
            fileio.write_json(settings_path, {"format": FORMAT_VERSION, **self.settings})
        self._write_shard(keys, vectors)
        shards = self._shards()
        if len(shards) > MAX_SHARDS:
            self._merge(shards)

    def _write_shard(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        name = f"shard-{os.getpid()}-{uuid.uuid4().hex}.npz"
        fileio.atomic_write(
            os.path.join(self.directory, name), lambda f: np.savez(f, keys=keys, vectors=vectors)
        )

    def _merge(self, shards: list[str]) -> None:
        """Writes the union of `shards` as one shard, then removes them."""
        found: dict[bytes, np.ndarray] = {}
        everything = _Everything()
        merged = [p for p in shards if self._read_shard(p, everything, found)]
        if not found:
            return
        keys = np.array(list(found), dtype="S64")
        self._write_shard(keys, np.stack(list(found.values())))
        for path in merged:
            try:
                os.unlink(path)
            except FileNotFoundError:  # another process merged it first
                pass
        logging.info(
            "embedding cache: merged %d shards (%d entries) in %s",
            len(merged),
            len(found),
            self.directory,
        )


class _Everything:
    """A set that contains every key: reads a whole shard."""

    def __contains__(self, item) -> bool:
        return True
