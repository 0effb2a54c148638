"""Text search over a motion gallery, and motion to the nearest class or attribute texts.

    python -m wat_jax.search --workdir=W --query="a person with a backpack walking slowly"
    python -m wat_jax.search --workdir=W --queries=queries.txt --top_k=5 --json
    python -m wat_jax.search --workdir=W --motion=window.npy

The first call embeds the gallery (the prepared val split by default) with the
latest checkpoint and saves an index in W/index/<split>_step_<N>/:
  embeddings.npy   float32 [N, E], L2-normalised motion embeddings
  labels.npy       float32 [N, C], the gallery's labels
  rows.jsonl       per window: row, source, start_s, start_frame, label names
  texts.npy        float32 [K, E], the text bank's keys projected and normalised
  texts.json       the K keys and their phrases
  text_proj.msgpack  the text projection's params, so queries need no checkpoint
  meta.json        step, split, fingerprint, shapes; written last (complete marker)
The fingerprint hashes the checkpoint's files, the gallery's files and the model
config, so a retrained checkpoint or re-prepared data rebuilds the index; a new
step gets its own directory. Later calls load the index and only embed the query
text and rank, which takes milliseconds.
"""

import dataclasses
import hashlib
import json
import os
import time

import numpy as np
from absl import logging

from wat_jax import io, metrics
from wat_jax.data import prepared
from wat_jax.errors import fail

INDEX_FILES = (
    "embeddings.npy",
    "labels.npy",
    "rows.jsonl",
    "texts.npy",
    "texts.json",
    "text_proj.msgpack",
)


def load_config(workdir: str):
    """The run's resolved config from WORKDIR/config.json (tuples come back as lists)."""
    import ml_collections

    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise fail(
            path,
            "no config here; train in this workdir first (python -m wat_jax.main --mode=train)",
        )
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except ValueError as e:
        raise fail(path, f"not valid JSON ({e})") from e


def read_gallery(config, workdir: str, split: str) -> prepared.PreparedSplit:
    """The windows of `split`: the prepared files, or the toy task's in-memory data."""
    if split not in prepared.SPLITS:
        raise fail("--split", f"must be one of {prepared.SPLITS}, got {split!r}")
    if config.task == "toy" and not prepared.is_prepared(workdir, split):
        from wat_jax.tasks import toy

        motion, mask, labels = toy.make_data(config, config.seed, split)
        rows = [
            {"source": f"toy/{split}/{i}", "start_s": 0.0, "start_frame": 0}
            for i in range(len(motion))
        ]
        classes = [f"class_{i}" for i in range(labels.shape[1])]
        return prepared.PreparedSplit(motion, mask, labels, classes, rows)
    return prepared.read_split(workdir, split)


def read_bank(config, workdir: str):
    """The run's TextBank (the toy task generates its own)."""
    from wat_jax.data.pipeline import TextBank
    from wat_jax.tasks import common

    if config.task == "toy" and not os.path.exists(common.bank_path(workdir)):
        from wat_jax.tasks import toy

        return toy.make_bank(config, config.seed)
    return TextBank.load(common.bank_path(workdir))


def key_phrases(config, keys: list[str]) -> list[str]:
    """Readable text for each bank key: the class name, or the attribute set's phrase."""
    if config.task != "densegait":
        return list(keys)
    from wat_jax.data import densegait

    column = {name: i for i, name in enumerate(densegait.COLUMNS)}
    phrases = []
    for key in keys:  # attribute_set_key: column names joined by "+", or "none"
        names = [] if key == "none" else key.split("+")
        known = all(n in column for n in names)
        phrases.append(densegait.describe_attributes([column[n] for n in names]) if known else key)
    return phrases


def _label_threshold(config) -> float:
    return float(config.data.get("threshold", 0.5))


def checkpoint_steps(workdir: str) -> list[int]:
    from wat_jax import checkpointing

    ckpt = checkpointing.Checkpointer(workdir, 0, None, read_only=True)
    steps = sorted(ckpt.all_steps())
    ckpt.close()
    return steps


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
    from wat_jax import checkpointing
    from wat_jax.tasks import common

    bank = common.bank_path(workdir)
    parts = {
        "step": step,
        "checkpoint": _stat_listing(os.path.join(checkpointing.checkpoint_dir(workdir), str(step))),
        "gallery": _stat_listing(prepared.split_dir(workdir, split)),
        "bank": [os.stat(bank).st_size, os.stat(bank).st_mtime_ns] if os.path.exists(bank) else [],
        "config": {
            k: config.get(k).to_dict() if hasattr(config.get(k), "to_dict") else config.get(k)
            for k in ("task", "seed", "model", "text", "data", "eval")
        },
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def index_dir(workdir: str, split: str, step: int) -> str:
    return os.path.join(workdir, "index", f"{split}_step_{step}")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """[Q, N] scores -> [Q, min(k, N)] column ids, best first; ties go to the lower id."""
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # argpartition cuts ties arbitrarily; take every column tied with the k-th too
        kth = np.take_along_axis(scores, part, 1).min(1, keepdims=True)
        out = []
        for q in range(scores.shape[0]):
            cand = np.flatnonzero(scores[q] >= kth[q])
            cand = cand[np.lexsort((cand, -scores[q, cand]))][:k]
            out.append(cand)
        return np.stack(out)
    return np.stack([np.lexsort((np.arange(len(row)), -row)) for row in scores])


def _ms(start: float) -> float:
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
        hits = top_k(scores, k)
        return [
            [dict(self.rows[r], rank=i + 1, score=float(scores[q, r])) for i, r in enumerate(ids)]
            for q, ids in enumerate(hits)
        ]

    def nearest_texts(self, motion_emb: np.ndarray, k: int = 10) -> list[list[dict]]:
        """Ranks the bank's texts (classes or attribute sets) for each motion embedding [Q, E]."""
        scores = metrics.unit_rows(motion_emb) @ self.text_emb.T  # [Q, K]
        hits = top_k(scores, k)
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

        io.write_npy(os.path.join(path, "embeddings.npy"), self.embeddings)
        io.write_npy(os.path.join(path, "labels.npy"), np.asarray(self.labels, np.float32))
        io.write_jsonl(os.path.join(path, "rows.jsonl"), self.rows)
        io.write_npy(os.path.join(path, "texts.npy"), self.text_emb)
        io.write_json(
            os.path.join(path, "texts.json"), {"keys": self.text_keys, "phrases": self.text_phrases}
        )
        blob = serialization.msgpack_serialize(self.text_params or {})
        io.atomic_write(os.path.join(path, "text_proj.msgpack"), lambda f: f.write(blob))
        io.write_json(os.path.join(path, "meta.json"), self.meta)  # last: marks it complete

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
            np.load(os.path.join(path, "embeddings.npy")),
            np.load(os.path.join(path, "labels.npy"), mmap_mode="r"),
            rows,
            np.load(os.path.join(path, "texts.npy")),
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
    config, workdir: str, split: str = "val", step: int | None = None, fp: str | None = None
) -> Index:
    """Embeds the gallery with checkpoint `step` (latest when None) and saves the index.

    Args:
      config: the run's config.
      workdir: the run directory.
      split: which prepared split is the gallery.
      step: the checkpoint step.
      fp: the fingerprint to record (computed when None).

    Returns:
      The saved Index.
    """
    from wat_jax import evaluate, tasks

    start = time.perf_counter()
    gallery = read_gallery(config, workdir, split)
    embedder, step = evaluate.restore_embedder(config, workdir, tasks.get_task(config.task), step)
    motion_emb = metrics.unit_rows(embedder.motion(gallery.motion, gallery.mask))  # [N, E]
    bank = read_bank(config, workdir)
    vectors = bank.names if config.eval.get("prototype", "centroid") == "name" else bank.centroids()
    text_emb = metrics.unit_rows(embedder.text(vectors))  # [K, E]
    threshold = _label_threshold(config)
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
        "prototype": config.eval.get("prototype", "centroid"),
        "build_seconds": round(time.perf_counter() - start, 3),
    }
    index = Index(
        motion_emb,
        labels,
        rows,
        text_emb,
        list(bank.keys),
        key_phrases(config, list(bank.keys)),
        meta,
        _text_params(embedder.params),
    )
    path = index_dir(workdir, split, step)
    index.save(path)
    index.path = path
    logging.info(
        "indexed %d %s windows at step %d in %.1fs: %s",
        len(rows),
        split,
        step,
        meta["build_seconds"],
        path,
    )
    return index


def load_or_build_index(
    config,
    workdir: str,
    split: str = "val",
    step: int | None = None,
    rebuild: bool = False,
    timings: dict | None = None,
) -> Index:
    """The saved index for (split, step) when its fingerprint still matches; else builds it.

    `timings`, when given, receives milliseconds spent listing checkpoints and
    loading (or building) the index.
    """
    timings = {} if timings is None else timings
    start = time.perf_counter()
    steps = checkpoint_steps(workdir)
    timings["list_checkpoints"] = _ms(start)
    if not steps:
        from wat_jax import checkpointing

        raise fail(
            checkpointing.checkpoint_dir(workdir),
            "no checkpoint to search with; run --mode=train first",
        )
    step = steps[-1] if step is None or step < 0 else step
    if step not in steps:
        raise fail("--step", f"no checkpoint at step {step}; have {steps}")
    start = time.perf_counter()
    fp = fingerprint(config, workdir, split, step)
    path = index_dir(workdir, split, step)
    if not rebuild and os.path.exists(os.path.join(path, "meta.json")):
        index = Index.load(path)
        if index.meta.get("fingerprint") == fp:
            timings["load_index"] = _ms(start)
            return index
        logging.info("index %s is stale (fingerprint changed); rebuilding", path)
    index = build_index(config, workdir, split, step, fp)
    timings["build_index"] = _ms(start)
    return index


def project_texts(config, index: Index, text_vectors: np.ndarray) -> np.ndarray:
    """Frozen text vectors [M, D] -> the joint space [M, E], with the index's saved params."""
    if "text_proj" not in (index.text_params or {}):
        return np.asarray(text_vectors, np.float32)  # identity projection: no params
    from wat_jax import train

    model = train.create_model(config, int(text_vectors.shape[1]), 0)
    out = model.apply(
        {"params": index.text_params}, np.asarray(text_vectors, np.float32), method="embed_text"
    )
    return np.asarray(out)


def encode_queries(config, queries: list[str]) -> np.ndarray:
    """Query strings -> frozen text vectors [Q, D] with the run's text encoder."""
    if config.task == "toy":
        raise fail(
            "--query",
            "the toy task has no text encoder (its text vectors are random); "
            "search it with vectors through the Python API",
        )
    from wat_jax.tasks import common

    return common.encode(queries, config)


def read_motion_query(path: str, window: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Reads a query window [T, J, F] or [1, T, J, F] and checks it against the gallery's.

    Returns:
      motion [1, T_gallery, J, F] zero-padded after the real frames, and mask [1, T_gallery].
    """
    if not os.path.exists(path):
        raise fail(path, "no such file")
    try:
        motion = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise fail(path, f"not a readable .npy file ({e})") from e
    if motion.ndim == 4 and motion.shape[0] == 1:
        motion = motion[0]
    frames, joints, features = window
    if motion.ndim != 3 or motion.shape[1:] != (joints, features) or motion.shape[0] < 1:
        raise fail(
            path,
            f"motion must be [T, {joints}, {features}] or [1, T, {joints}, "
            f"{features}] like the gallery, got shape {list(motion.shape)}",
        )
    if motion.shape[0] > frames:
        raise fail(
            path,
            f"motion has {motion.shape[0]} frames; the model was trained on windows of {frames}",
        )
    if not np.issubdtype(motion.dtype, np.number) or not np.isfinite(motion).all():
        raise fail(path, "motion must be finite numbers")
    t = motion.shape[0]
    padded = np.zeros((1, frames, joints, features), np.float32)
    padded[0, :t] = motion
    mask = np.zeros((1, frames), bool)
    mask[0, :t] = True
    return padded, mask


def run_search(
    workdir: str,
    queries: list[str] | None = None,
    motion_path: str | None = None,
    k: int = 10,
    split: str = "val",
    step: int | None = None,
    rebuild: bool = False,
) -> dict:
    """What the CLI does: text queries -> gallery windows, or a motion window -> texts.

    Args:
      workdir: the run directory.
      queries: query strings (text search), or None.
      motion_path: a .npy window (motion to text), or None.
      k: results per query.
      split: the gallery split.
      step: the checkpoint step; latest when None.
      rebuild: rebuild the index even when its fingerprint matches.

    Returns:
      {"index": path, "step": N, "results": [{"query": ..., "hits": [...]}],
       "timings_ms": {...}}.
    """
    if (queries is None) == (motion_path is None):
        raise fail("wat_jax.search", "give --query/--queries (text search) or --motion, not both")
    if queries is not None:
        if not queries or any(not q.strip() for q in queries):
            raise fail("--query", "empty query; give a sentence such as 'a person walking slowly'")
    if k < 1:
        raise fail("--top_k", f"must be at least 1, got {k}")
    config = load_config(workdir)
    if queries is not None and config.task == "toy":
        encode_queries(config, queries)  # raises: the toy task has no text encoder
    timings = {}
    if motion_path is not None:
        window = read_gallery(config, workdir, split).motion.shape[1:]
        motion, mask = read_motion_query(motion_path, tuple(window))
    index = load_or_build_index(config, workdir, split, step, rebuild, timings)
    if queries is not None:
        start = time.perf_counter()
        query_emb = project_texts(config, index, encode_queries(config, queries))
        timings["embed_queries"] = _ms(start)
        start = time.perf_counter()
        hits = index.search(query_emb, k)
        timings["rank"] = _ms(start)
        results = [{"query": q, "hits": h} for q, h in zip(queries, hits)]
    else:
        from wat_jax import evaluate, tasks

        start = time.perf_counter()
        embedder, _ = evaluate.restore_embedder(
            config, workdir, tasks.get_task(config.task), index.meta["step"]
        )
        motion_emb = embedder.motion(motion, mask)  # [1, E]
        timings["embed_motion"] = _ms(start)
        start = time.perf_counter()
        hits = index.nearest_texts(motion_emb, k)
        timings["rank"] = _ms(start)
        results = [{"motion": motion_path, "frames": int(mask.sum()), "hits": hits[0]}]
    return {
        "index": index.path,
        "step": index.meta["step"],
        "split": split,
        "num_windows": index.meta["num_windows"],
        "results": results,
        "timings_ms": timings,
    }


def format_table(answer: dict) -> str:
    """The ranked results as text tables, one per query."""
    lines = []
    for result in answer["results"]:
        if "query" in result:
            lines.append(
                f"query: {result['query']!r}  ({answer['num_windows']} {answer['split']} "
                f"windows, step {answer['step']})"
            )
            width = max([len(str(h["source"])) for h in result["hits"]] + [6])
            lines.append(f"{'rank':>4}  {'score':>7}  {'source':<{width}}  {'start_s':>8}  labels")
            for h in result["hits"]:
                start = h["start_s"] if h["start_s"] is not None else float("nan")
                lines.append(
                    f"{h['rank']:>4}  {h['score']:7.4f}  {str(h['source']):<{width}}  "
                    f"{start:8.2f}  {', '.join(h['labels']) or '-'}"
                )
        else:
            lines.append(
                f"motion: {result['motion']} ({result['frames']} frames, step {answer['step']})"
            )
            lines.append(f"{'rank':>4}  {'score':>7}  text")
            for h in result["hits"]:  # the phrase; --json also gives the bank key
                lines.append(f"{h['rank']:>4}  {h['score']:7.4f}  {h['phrase']}")
        lines.append("")
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in answer["timings_ms"].items())
    lines.append(f"# {answer['index']}: {timings}")
    return "\n".join(lines)


def _read_queries(path: str) -> list[str]:
    if not os.path.exists(path):
        raise fail(path, "no such file")
    with open(path) as f:
        queries = [line.strip() for line in f if line.strip()]
    if not queries:
        raise fail(path, "no queries (one per line expected)")
    return queries


def main(argv):
    import sys

    from absl import flags

    from wat_jax.errors import InputError
    from wat_jax.run_log import quiet_library_logs

    FLAGS = flags.FLAGS
    quiet_library_logs()
    try:
        if len(argv) > 1:
            raise fail("wat_jax.search", f"unexpected arguments {argv[1:]}")
        queries = None
        if FLAGS.queries:
            queries = _read_queries(FLAGS.queries)
        if FLAGS.query is not None:
            queries = (queries or []) + [FLAGS.query]
        answer = run_search(
            FLAGS.workdir,
            queries,
            FLAGS.motion or None,
            FLAGS.top_k,
            FLAGS.split,
            FLAGS.step if FLAGS.step >= 0 else None,
            FLAGS.rebuild,
        )
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(answer, indent=1) if FLAGS.json else format_table(answer))


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "Run directory (config.json, checkpoints, data).")
    flags.DEFINE_string("query", None, "A text query.")
    flags.DEFINE_string("queries", "", "A file of text queries, one per line.")
    flags.DEFINE_string("motion", "", "A .npy window [T, J, F] to match against the bank texts.")
    flags.DEFINE_integer("top_k", 10, "Results per query.")
    flags.DEFINE_enum("split", "val", ["train", "val"], "The gallery split.")
    flags.DEFINE_integer("step", -1, "Checkpoint step; -1: latest.")
    flags.DEFINE_bool("json", False, "Print machine-readable JSON.")
    flags.DEFINE_bool("rebuild", False, "Rebuild the index even when it is up to date.")
    flags.mark_flag_as_required("workdir")
    app.run(main)
