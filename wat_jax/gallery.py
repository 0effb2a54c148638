"""The gallery index: a split's motion embeddings under one checkpoint, saved once
and searched in milliseconds after.

It lives in W/index/<split>_step_<N>/:
  embeddings.npy   float32 [N, E], L2-normalised motion embeddings
  labels.npy       float32 [N, C], the gallery's labels
  rows.jsonl       per window: row, source, start_s, start_frame, label names
  texts.npy        float32 [K, E], the text bank's keys projected and normalised
  texts.json       the K keys and their phrases
  text_proj.msgpack  the text projection's params, so queries need no checkpoint
  meta.json        step, split, fingerprint, shapes; written last (complete marker)
The fingerprint hashes the checkpoint's files, the gallery's files and the model
config, so a retrained checkpoint or re-prepared data rebuilds the index; a new
step gets its own directory.

Reading a run must work on a read-only share: when W/index/ cannot be written (a
read-only file system, no permission, a full disk) the index is kept in memory for
that search, with one warning, and the next search builds it again.
"""

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import time

import numpy as np
from absl import logging

from wat_jax import checkpointing, errors, fileio, metrics, tasks
from wat_jax.data import prepared

INDEX_FILES = (
    "embeddings.npy",
    "labels.npy",
    "rows.jsonl",
    "texts.npy",
    "texts.json",
    "text_proj.msgpack",
)


def _stat_listing(root: str) -> list:
    """(relative path, size, mtime) of every file under root: cheap and content-sensitive."""
    out = []
    for base, _, files in os.walk(root):
        for name in sorted(files):
            path = os.path.join(base, name)
            st = os.stat(path)
            out.append((os.path.relpath(path, root), st.st_size, st.st_mtime_ns))
    return sorted(out)


def fingerprint(config, workdir: str, split: str, step: int) -> str:
    """Hash of what an index depends on: checkpoint files, gallery files, bank, model config."""
    from wat_jax.text.bank import bank_path

    bank = bank_path(workdir)
    parts = {
        "step": step,
        "checkpoint": _stat_listing(os.path.join(checkpointing.checkpoint_dir(workdir), str(step))),
        "gallery": _stat_listing(prepared.split_dir(workdir, split)),
        "bank": [os.stat(bank).st_size, os.stat(bank).st_mtime_ns] if os.path.exists(bank) else [],
        "config": {
            k: config[k].to_dict() if hasattr(config[k], "to_dict") else config[k]
            for k in ("task", "seed", "model", "text", "data", "eval")
        },
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def index_dir(workdir: str, split: str, step: int) -> str:
    return os.path.join(workdir, "index", f"{split}_step_{step}")


def elapsed_ms(start: float) -> float:
    return round(1000 * (time.perf_counter() - start), 2)


@dataclasses.dataclass
class Index:
    """A gallery's normalised motion embeddings, their metadata, and the projected bank texts."""

    embeddings: np.ndarray  # [N, E]
    labels: np.ndarray  # [N, C]
    rows: list[dict]  # per window: source, start_s, start_frame, labels (names)
    text_emb: np.ndarray  # [K, E]
    text_keys: list[str]
    text_phrases: list[str]
    meta: dict
    text_params: dict | None = None
    path: str = ""

    def search(self, query_emb: np.ndarray, k: int = 10) -> list[list[dict]]:
        """Ranks the gallery for each query vector (already in the joint space).

        Args:
          query_emb: [Q, E] projected query embeddings.
          k: results per query.

        Returns:
          Per query, up to k dicts: rank, score (cosine), row, source, start_s,
          start_frame, labels.
        """
        scores = metrics.unit_rows(query_emb) @ self.embeddings.T  # [Q, N]
        hits = metrics.top_k(scores, k)
        return [
            [dict(self.rows[r], rank=i + 1, score=float(scores[q, r])) for i, r in enumerate(ids)]
            for q, ids in enumerate(hits)
        ]

    def nearest_texts(self, motion_emb: np.ndarray, k: int = 10) -> list[list[dict]]:
        """Ranks the bank's texts (classes or attribute sets) for each motion embedding [Q, E]."""
        scores = metrics.unit_rows(motion_emb) @ self.text_emb.T  # [Q, K]
        hits = metrics.top_k(scores, k)
        return [
            [
                dict(
                    rank=i + 1,
                    score=float(scores[q, t]),
                    key=self.text_keys[t],
                    phrase=self.text_phrases[t],
                )
                for i, t in enumerate(ids)
            ]
            for q, ids in enumerate(hits)
        ]

    def save(self, path: str) -> None:
        from flax import serialization

        fileio.write_npy(os.path.join(path, "embeddings.npy"), self.embeddings)
        fileio.write_npy(os.path.join(path, "labels.npy"), np.asarray(self.labels, np.float32))
        fileio.write_jsonl(os.path.join(path, "rows.jsonl"), self.rows)
        fileio.write_npy(os.path.join(path, "texts.npy"), self.text_emb)
        fileio.write_json(
            os.path.join(path, "texts.json"), {"keys": self.text_keys, "phrases": self.text_phrases}
        )
        blob = serialization.msgpack_serialize(self.text_params or {})
        fileio.atomic_write(os.path.join(path, "text_proj.msgpack"), lambda f: f.write(blob))
        fileio.write_json(os.path.join(path, "meta.json"), self.meta)  # last: marks it complete

    @classmethod
    def load(cls, path: str) -> "Index":
        from flax import serialization

        with open(os.path.join(path, "meta.json")) as f:
            meta = json.load(f)
        with open(os.path.join(path, "rows.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        with open(os.path.join(path, "texts.json")) as f:
            texts = json.load(f)
        with open(os.path.join(path, "text_proj.msgpack"), "rb") as f:
            text_params = serialization.msgpack_restore(f.read())
        return cls(
            np.load(os.path.join(path, "embeddings.npy"), mmap_mode="r"),
            np.load(os.path.join(path, "labels.npy"), mmap_mode="r"),
            rows,
            np.load(os.path.join(path, "texts.npy"), mmap_mode="r"),
            texts["keys"],
            texts["phrases"],
            meta,
            text_params,
            path,
        )


def _text_params(params) -> dict:
    """What `embed_text` reads: the text projection and the scalars setup() declares."""
    import jax

    keep = ("text_proj", "log_scale", "logit_bias")
    return {k: jax.tree.map(np.asarray, jax.device_get(v)) for k, v in params.items() if k in keep}


def build_index(
    config,
    workdir: str,
    split: str = "val",
    step: int | None = None,
    fp: str | None = None,
    save: bool = True,
) -> Index:
    """Embeds the gallery with checkpoint `step` (latest when None) and saves the index.

    Args:
      config: the run's config.
      workdir: the run directory.
      split: which prepared split is the gallery.
      step: the checkpoint step.
      fp: the fingerprint to record (computed when None).
      save: write it to index_dir(); False returns it unsaved (path "").

    Returns:
      The Index.
    """
    from wat_jax import evaluate
    from wat_jax.tasks import common

    start = time.perf_counter()
    task = tasks.get_task(config.task)
    gallery = task.windows(config, workdir, split)
    towers, step = evaluate.restore_towers(config, workdir, step)
    motion_emb = metrics.unit_rows(towers.motion(gallery.motion, gallery.mask))  # [N, E]
    bank = task.bank(config, workdir)
    text_emb = metrics.unit_rows(towers.text(common.prototype_vectors(config, bank)))  # [K, E]
    threshold = float(config.data.threshold)
    labels = np.asarray(gallery.labels, np.float32)
    rows = []
    for i, (row, present) in enumerate(zip(gallery.index, labels > threshold)):
        names = [c for c, on in zip(gallery.classes, present) if on]
        rows.append(
            {
                "row": i,
                "source": row.get("source"),
                "start_s": row.get("start_s"),
                "start_frame": row.get("start_frame"),
                "labels": names,
            }
        )
    meta = {
        "step": int(step),
        "split": split,
        "fingerprint": fp or fingerprint(config, workdir, split, step),
        "num_windows": int(len(rows)),
        "embed_dim": int(motion_emb.shape[1]),
        "window": list(gallery.motion.shape[1:]),
        "classes": list(gallery.classes),
        "prototype": config.eval.prototype,
        "build_seconds": round(time.perf_counter() - start, 3),
    }
    index = Index(
        motion_emb,
        labels,
        rows,
        text_emb,
        list(bank.keys),
        task.key_phrases(config, list(bank.keys)),
        meta,
        _text_params(towers.params),
    )
    logging.info(
        "indexed %d %s windows at step %d in %.1fs", len(rows), split, step, meta["build_seconds"]
    )
    if save:
        path = index_dir(workdir, split, step)
        index.save(path)
        index.path = path
    return index


_CANNOT_WRITE = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM)


def save_or_keep_in_memory(index: Index, path: str) -> Index:
    """Saves `index` at `path`; when the folder cannot be written (read-only, no
    permission, full) the index stays in memory (path "") with one warning, and what
    this save wrote of it is removed: an index without meta.json is never read."""
    note = f"the index in {path} is incomplete (no meta.json); the next search builds it again"
    with errors.keeping(note):
        try:
            index.save(path)
        except OSError as e:  # errors.DiskError is one too
            if e.errno not in _CANNOT_WRITE:
                raise
            for name in INDEX_FILES + ("meta.json",):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(path, name))
            with contextlib.suppress(OSError):
                os.rmdir(path)
            reason = errors.DISK_FAULTS[e.errno][0] if e.errno in errors.DISK_FAULTS else e.strerror
            logging.warning(
                "%s: cannot save the search index there (%s); it is kept in memory for this "
                "search, and the next one builds it again",
                path,
                reason,
            )
            index.path = ""
            return index
    index.path = path
    return index


def load_or_build_index(
    config,
    workdir: str,
    split: str = "val",
    step: int | None = None,
    rebuild: bool = False,
    timings: dict | None = None,
) -> Index:
    """The saved index for (split, step) when its fingerprint still matches; else builds
    it, and saves it when the run's folder can be written (save_or_keep_in_memory).

    `timings`, when given, receives milliseconds spent listing checkpoints and
    loading (or building) the index.
    """
    timings = {} if timings is None else timings
    start = time.perf_counter()
    step = checkpointing.resolve_step(workdir, step, "search with")
    timings["list_checkpoints"] = elapsed_ms(start)
    start = time.perf_counter()
    fp = fingerprint(config, workdir, split, step)
    path = index_dir(workdir, split, step)
    if not rebuild and os.path.exists(os.path.join(path, "meta.json")):
        index = Index.load(path)
        if index.meta.get("fingerprint") == fp:
            timings["load_index"] = elapsed_ms(start)
            return index
        logging.info("index %s is stale (fingerprint changed); rebuilding", path)
    with errors.keeping("no index was saved (the next search builds it)"):
        index = build_index(config, workdir, split, step, fp, save=False)
    save_or_keep_in_memory(index, path)
    timings["build_index"] = elapsed_ms(start)
    return index


def project_texts(config, index: Index, text_vectors: np.ndarray) -> np.ndarray:
    """Frozen text vectors [M, D] -> the joint space [M, E], with the index's saved params."""
    if "text_proj" not in (index.text_params or {}):
        return np.asarray(text_vectors, np.float32)  # identity projection: no params
    from wat_jax.state import create_model
    from wat_jax.towers import Towers

    model = create_model(config, int(text_vectors.shape[1]), 0)
    return Towers(model, index.text_params).text(text_vectors)
