"""Text search over a motion gallery, and motion to the nearest class or attribute texts.

    python -m wat_jax.tools.search --workdir=W --query="a person with a backpack walking slowly"
    python -m wat_jax.tools.search --workdir=W --queries=queries.txt --top_k=5 --json
    python -m wat_jax.tools.search --workdir=W --motion=window.npy

The first call embeds the gallery (the prepared val split by default) with the
latest checkpoint into an index saved in W/index/<split>_step_<N>/ (see
wat_jax/gallery.py); later calls load it and only embed the query text and rank,
which takes milliseconds. A run on a read-only share is searched too: its index is
then kept in memory for the call (one warning), not saved.

--workdir takes what `wat_jax.load` takes: the workdir, its checkpoints/, or one
checkpoints/<step>/ (which picks that step), with an optional `:STEP`.
"""

import json
import os
import time

import numpy as np

from wat_jax import cli, errors, gallery, tasks
from wat_jax.errors import exits_on_input_error, fail


def check_text_encoder(config) -> None:
    """InputError when the run's task has no text encoder (the toy task's vectors are random)."""
    if not tasks.get_task(config.task).has_text_encoder:
        raise fail(
            "--query",
            f"the {config.task} task has no text encoder (its text vectors are random); "
            "search it with vectors through the Python API",
        )


def encode_queries(config, queries: list[str]) -> np.ndarray:
    """Query strings -> frozen text vectors [Q, D] with the run's text encoder."""
    from wat_jax.text import bank

    check_text_encoder(config)
    return bank.encode(queries, config)


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
      workdir: the run directory, its checkpoints/ or one checkpoints/<step>/.
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
        raise fail(
            "wat_jax.tools.search", "give --query/--queries (text search) or --motion, not both"
        )
    if queries is not None:
        if not queries or any(not q.strip() for q in queries):
            raise fail("--query", "empty query; give a sentence such as 'a person walking slowly'")
    if k < 1:
        raise fail("--top_k", f"must be at least 1, got {k}")
    workdir, step, config = cli.read_run(workdir, step)
    if queries is not None:
        check_text_encoder(config)
    timings = {}
    if motion_path is not None:
        window = tasks.get_task(config.task).windows(config, workdir, split).motion.shape[1:]
        motion, mask = read_motion_query(motion_path, tuple(window))
    index = gallery.load_or_build_index(config, workdir, split, step, rebuild, timings)
    if queries is not None:
        start = time.perf_counter()
        query_emb = gallery.project_texts(config, index, encode_queries(config, queries))
        timings["embed_queries"] = gallery.elapsed_ms(start)
        start = time.perf_counter()
        hits = index.search(query_emb, k)
        timings["rank"] = gallery.elapsed_ms(start)
        results = [{"query": q, "hits": h} for q, h in zip(queries, hits)]
    else:
        from wat_jax import evaluate

        start = time.perf_counter()
        towers, _ = evaluate.restore_towers(config, workdir, index.meta["step"])
        motion_emb = towers.motion(motion, mask)  # [1, E]
        timings["embed_motion"] = gallery.elapsed_ms(start)
        start = time.perf_counter()
        hits = index.nearest_texts(motion_emb, k)
        timings["rank"] = gallery.elapsed_ms(start)
        results = [{"motion": motion_path, "frames": int(mask.sum()), "hits": hits[0]}]
    return {
        "index": index.path or "in memory (the run's folder is not writable)",
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
    """One query per line (UTF-8; blank lines skipped); one error line for a bad file."""
    if not os.path.exists(path):
        raise fail(path, "no such file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise fail(path, f"cannot read it ({e.strerror or e})") from e
    queries = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise fail(
                f"{path}:{number}",
                f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                "save the queries as UTF-8",
            ) from e
        if line.strip():
            queries.append(line.strip())
    if queries and queries[0].startswith("\ufeff"):  # a UTF-8 byte-order mark
        queries[0] = queries[0][1:].strip()
    if not queries:
        raise fail(path, "no queries (one per line expected)")
    return queries


@exits_on_input_error
def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    cli.begin(argv, "wat_jax.tools.search")
    queries = None
    if FLAGS.queries:
        queries = _read_queries(FLAGS.queries)
    if FLAGS.query is not None:
        queries = (queries or []) + [FLAGS.query]
    with errors.keeping("the run is unchanged"):  # said by a Ctrl-C or a full disk
        answer = run_search(
            FLAGS.workdir,
            queries,
            FLAGS.motion or None,
            FLAGS.top_k,
            FLAGS.split,
            FLAGS.step if FLAGS.step >= 0 else None,
            FLAGS.rebuild,
        )
    print(json.dumps(answer, indent=1) if FLAGS.json else format_table(answer))


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string(
        "workdir", None, "Run directory (config.json, checkpoints, data), or its checkpoints[/N]."
    )
    flags.DEFINE_string("query", None, "A text query.")
    flags.DEFINE_string("queries", "", "A file of text queries, one per line.")
    flags.DEFINE_string("motion", "", "A .npy window [T, J, F] to match against the bank texts.")
    flags.DEFINE_integer("top_k", 10, "Results per query.")
    flags.DEFINE_enum("split", "val", ["train", "val"], "The gallery split.")
    flags.DEFINE_integer("step", -1, "Checkpoint step; -1: latest.")
    flags.DEFINE_bool("json", False, "Print machine-readable JSON.")
    flags.DEFINE_bool("rebuild", False, "Rebuild the index even when it is up to date.")
    flags.mark_flag_as_required("workdir")


def run() -> None:
    """The command line (also the `wat-jax-search` console script)."""
    from absl import app

    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
