"""Mean ± std of every metric over several evaluations (seeds, splits).

    python -m wat_jax.tools.aggregate RUN_OR_EVAL_JSON... [--out=PREFIX] [--match=REGEX]

Each argument is an eval JSON (DIR/eval/step_<N>.json) or a run's workdir, which
stands for its newest evaluation (the highest N). Every number in the JSONs becomes a
metric named by its path (`top1`, `zero_shot.gzsl.harmonic`,
`timeline.grounding.centroid.R@1@0.5`, `random.top1`, ...), except the per-class and
per-attribute tables and `step`. Per metric: the mean, the sample standard deviation
(ddof=1; none with one run) and n, the runs whose JSON has a finite value for it. The
table is printed and written as PREFIX.md (markdown) and PREFIX.json (every value
too); PREFIX defaults to `aggregate` in the folder the runs share. When the runs have
them, the literature's tables come first (PROTOCOL_TABLES: zero-shot ZSL/GZSL per class
text, timeline grounding R@n at IoU m and mIoU, "not found" recall and false alarms),
ready for README. Runs of different tasks are refused.
"""

import glob
import json
import os
import re

import numpy as np

from wat_jax import fileio
from wat_jax.errors import exits_on_input_error, fail

SKIP = ("per_class_top1", "per_attribute", "step")  # tables and bookkeeping, not metrics


def eval_json(path: str) -> str:
    """An argument -> the eval JSON it names: the file, or a workdir's newest eval."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise fail(path, "no such file or folder (give eval JSONs or run workdirs)")
    found = glob.glob(os.path.join(path, "eval", "step_*.json"))
    steps = [(int(m.group(1)), f) for f in found if (m := re.search(r"step_(\d+)\.json$", f))]
    if not steps:
        raise fail(path, "has no eval/step_<N>.json; evaluate the run first (--mode=eval)")
    return max(steps)[1]


def read_results(path: str) -> dict:
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        raise fail(path, f"not a readable eval JSON ({e})") from None
    if not isinstance(results, dict):
        raise fail(path, "not an eval JSON (expected an object)")
    return results


def flatten(results: dict, prefix: str = "") -> dict:
    """Every number of a nested eval JSON by its dotted path, in the file's order."""
    out = {}
    for key, value in results.items():
        if key in SKIP:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


def aggregate(results: list[dict]) -> dict:
    """metric -> {"mean", "std", "n", "values"} over the results (flattened), metrics in
    the order they first appear. Non-finite values (and runs without the metric) leave n;
    std is the sample standard deviation (ddof=1), None with fewer than two values."""
    flat = [flatten(r) for r in results]
    names = list(dict.fromkeys(k for f in flat for k in f))
    out = {}
    for name in names:
        values = [f.get(name) for f in flat]
        finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
        out[name] = {
            "mean": float(finite.mean()) if len(finite) else None,
            "std": float(finite.std(ddof=1)) if len(finite) > 1 else None,
            "n": int(len(finite)),
            "values": values,
        }
    return out


def _number(v, integer: bool) -> str:
    if v is None:
        return "n/a"
    return f"{v:.1f}" if integer else f"{v:.4f}"


def cell(stats: dict) -> str:
    """'mean ± std' (four decimals; counts with one), or the mean alone with one run."""
    integer = all(isinstance(v, int) for v in stats["values"] if v is not None)
    mean = _number(stats["mean"], integer)
    return mean if stats["std"] is None else f"{mean} ± {_number(stats['std'], integer)}"


def table(stats: dict, markdown: bool = False) -> str:
    """The aggregate as a text table (or markdown): metric, mean ± std, n."""
    rows = [(name, cell(s), str(s["n"])) for name, s in stats.items()]
    if markdown:
        lines = ["| metric | mean ± std | runs |", "|---|---|---|"]
        return "\n".join(lines + [f"| {a} | {b} | {c} |" for a, b, c in rows])
    w = max([len(r[0]) for r in rows] + [6])
    v = max([len(r[1]) for r in rows] + [10])
    lines = [f"{'metric':<{w}}  {'mean ± std':>{v}}  runs", "-" * (w + v + 8)]
    return "\n".join(lines + [f"{a:<{w}}  {b:>{v}}  {c:>4}" for a, b, c in rows])


# The literature's tables, when the runs have their metrics: rows (label, metric prefix) x
# columns (label, metric suffix).
PROTOCOL_TABLES = (
    (
        "zero-shot (ZSL among the unseen classes; GZSL among all)",
        [
            ("class names", "zero_shot.by_prototype.name."),
            ("description centroids", "zero_shot.by_prototype.centroid."),
            ("both", "zero_shot.by_prototype.both."),
            ("random", "zero_shot.random."),
        ],
        [
            ("ZSL Top-1", "zsl.top1"),
            ("ZSL Top-5", "zsl.top5"),
            ("GZSL seen", "gzsl.seen"),
            ("GZSL unseen", "gzsl.unseen"),
            ("GZSL H", "gzsl.harmonic"),
        ],
    ),
    (
        "text-to-interval grounding (timeline)",
        [
            ("description centroid query", "timeline.grounding.centroid."),
            ("class name query", "timeline.grounding.name."),
            ("random", "timeline.grounding.random."),
        ],
        [(f"R@{k}, IoU {m}", f"R@{k}@{m}") for k in (1, 5) for m in (0.3, 0.5, 0.7)]
        + [("mIoU", "mIoU")],
    ),
    (
        "not found (timeline; threshold at 5 % false alarms on val, rates out of sample)",
        [
            ("description centroid query", "timeline.not_found.centroid."),
            ("class name query", "timeline.not_found.name."),
            ("random", "timeline.not_found.random."),
        ],
        [("recall", "recall"), ("false alarms", "false_alarm"), ("threshold", "threshold")],
    ),
)


def protocol_tables(stats: dict) -> str:
    """PROTOCOL_TABLES as markdown (mean ± std per cell; columns no run has are left out),
    for the tables the runs have."""
    out = []
    for title, rows, cols in PROTOCOL_TABLES:
        cols = [(c, suffix) for c, suffix in cols if any(p + suffix in stats for _, p in rows)]
        if not cols:
            continue
        lines = [
            f"**{title}**",
            "",
            "| | " + " | ".join(c for c, _ in cols) + " |",
            "|---" * (len(cols) + 1) + "|",
        ]
        for label, prefix in rows:
            cells = [cell(stats[prefix + s]) if prefix + s in stats else "" for _, s in cols]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def run_aggregate(paths: list[str], out: str = "", match: str = "") -> tuple[str, dict]:
    """Reads the eval JSONs `paths` name, aggregates, writes OUT.md and OUT.json.

    Returns:
      (the printed text, the JSON object written).
    """
    if not paths:
        raise fail("aggregate", "give eval JSONs or run workdirs to aggregate")
    files = [eval_json(p) for p in paths]
    results = [read_results(f) for f in files]
    tasks = sorted({str(r.get("task")) for r in results})
    if len(tasks) > 1:
        raise fail(files[0], f"these evaluations are of different tasks ({', '.join(tasks)})")
    try:
        pattern = re.compile(match) if match else None
    except re.error as e:
        raise fail("--match", f"not a regular expression: {e}") from None
    stats = aggregate(results)
    tables = protocol_tables(stats)
    if pattern is not None:
        stats = {k: v for k, v in stats.items() if pattern.search(k)}
    if not stats:
        raise fail("--match" if match else files[0], "no metric to aggregate")
    prefix = out or os.path.join(
        os.path.commonpath([os.path.abspath(os.path.dirname(f)) for f in files]), "aggregate"
    )
    header = f"{len(files)} runs: mean ± sample std (ddof=1) over the runs that have each metric"
    obj = {"num_runs": len(files), "runs": files, "task": tasks[0], "metrics": stats}
    source = "\n".join(f"- `{f}`" for f in files)
    markdown = f"{header}\n\n" + (f"{tables}\n\nEvery metric:\n\n" if tables else "")
    markdown += f"{table(stats, markdown=True)}\n\nRuns:\n{source}\n"
    fileio.write_json(prefix + ".json", obj)
    fileio.write_text(prefix + ".md", markdown)
    text = f"{header}\n{table(stats)}\n" + (f"\n{tables}\n\n" if tables else "")
    text += f"wrote {prefix}.md and {prefix}.json"
    return text, obj


@exits_on_input_error
def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    text, _ = run_aggregate(list(argv[1:]), FLAGS.out, FLAGS.match)
    print(text)


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string(
        "out", "", "Output prefix (PREFIX.md, PREFIX.json); default beside the runs."
    )
    flags.DEFINE_string("match", "", "Only the metrics whose path matches this regex.")


def run() -> None:
    """The command line (python -m wat_jax.tools.aggregate)."""
    from absl import app

    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
