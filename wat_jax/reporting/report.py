"""A run's report: one self-contained HTML page to open in a browser or send along,
written by its command line (tools/report.py: --workdir=W [--out=W/report.html]
[--examples=4] [--step=N]) and by the eval stage (main.py).

W/report.html holds, with every picture inlined as a data: URI (no other file, no
network): the config and its history, the data build report, the training curves of
metrics.jsonl, the evaluation's numbers beside random, the pictures evaluation drew,
the action timeline, example windows animated with the model's answer beside the
truth, and sample descriptions per class or attribute set.

It reads a run only as a user would: the workdir's files (config.json,
config_history.jsonl, metrics.jsonl, data/report.json, data/val/*, eval/*,
descriptions.jsonl, timeline/*/) and, for the examples, `wat_jax.load(W)`. A part
that is missing (a run not yet evaluated, say) is a note in its section, not an
error; a workdir without config.json is one error line.
"""

import base64
import datetime
import errno
import glob
import html
import io
import json
import os
import re
import tempfile

import numpy as np

from wat_jax import fileio
from wat_jax.errors import InputError, fail

REPORT_FILE = "report.html"
MAX_DESCRIBED_KEYS = 24  # keys (classes or attribute sets) shown with their texts
TEXTS_PER_KEY = 3
BREAKDOWN_MIN = 9  # a dict of this many numbers is a per-class table, not rows
FOLD_ROWS = 12  # longer per-class tables of the data report are folded (<details>)


# ---- reading the workdir -------------------------------------------------------------


def read_json(path: str):
    """A JSON file's value; InputError naming the file when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise fail(path, f"cannot read it ({e.strerror or e})") from None
    except ValueError as e:
        raise fail(path, f"not valid JSON ({e})") from None


def config_tree(workdir: str) -> dict:
    """The run's config.json as a plain dict, through run_config.read (its one parser),
    with the values keys added since the run trained had then (e.g. data.rot6d)."""
    from wat_jax import run_config

    tree = run_config.read(workdir)
    if tree is None:
        raise fail(run_config.config_path(workdir), "no such file; give a run's workdir")
    return run_config.with_legacy_defaults(tree)


def read_jsonl(path: str) -> list[dict]:
    """The objects of a .jsonl file; a torn or foreign line is skipped (a run may be
    writing the file while the report reads it)."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    rows.append(row)
    except OSError as e:
        raise fail(path, f"cannot read it ({e.strerror or e})") from None
    return rows


def lookup(tree: dict, dotted: str, default=None):
    """tree["a"]["b"] for "a.b" in a plain config dict, or default."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def eval_steps(workdir: str) -> list[int]:
    """The steps that have an eval/step_<N>.json, ascending."""
    steps = []
    for path in glob.glob(os.path.join(workdir, "eval", "step_*.json")):
        match = re.fullmatch(r"step_(\d+)\.json", os.path.basename(path))
        if match:
            steps.append(int(match.group(1)))
    return sorted(steps)


# ---- HTML pieces ------------------------------------------------------------------------


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _image_file(path: str, alt: str, caption: str = "") -> str:
    """An <img> of a PNG or GIF file, inlined; a note when it cannot be read."""
    mime = "image/gif" if path.lower().endswith(".gif") else "image/png"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return _note(f"{path}: cannot read it ({e.strerror or e})")
    return _figure(_data_uri(data, mime), alt, caption or os.path.basename(path))


def _figure(uri: str, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="{uri}" alt="{_esc(alt)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _number(value) -> str:
    """Counts as integers, fractions with 4 decimals, anything else as text."""
    if isinstance(value, bool) or value is None:
        return _esc(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and value > 1):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return _esc(", ".join(str(v) for v in value))
    return _esc(value)


def _table(header: list[str], rows: list[list], numeric_from: int = 1) -> str:
    """An HTML table; cells from column `numeric_from` on are formatted as numbers."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [
            f'<td class="num">{_number(c)}</td>' if i >= numeric_from else f"<td>{_esc(c)}</td>"
            for i, c in enumerate(row)
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _details(summary: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{_esc(summary)}</summary>{body}</details>"


def _pre_json(value) -> str:
    return f"<pre>{_esc(json.dumps(value, indent=1, sort_keys=True))}</pre>"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flatten(tree, prefix: str = "") -> dict:
    """{"a.b": scalar or list}; per-class dicts of numbers (_is_breakdown) stay whole."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not _is_breakdown(key, value):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _is_breakdown(key: str, value) -> bool:
    """A dict of numbers per class or attribute (`per_*`, or many entries): one table."""
    return (
        isinstance(value, dict)
        and bool(value)
        and (len(value) >= BREAKDOWN_MIN or str(key).startswith("per_"))
        and all(_is_number(v) for v in value.values())
    )


# ---- sections ---------------------------------------------------------------------------


def config_section(workdir: str) -> str:
    """The run's key settings, its full config.json and config_history.jsonl."""
    tree = config_tree(workdir)
    keys = (
        "task",
        "seed",
        "batch_size",
        "total_steps",
        "data.source",
        "describe.backend",
        "describe.model",
        "describe.per_key",
        "text.encoder",
        "model.width",
        "model.layers",
        "loss.name",
        "loss.targets",
        "optim.lr",
        "optim.schedule",
        "eval.prototype",
    )
    rows = [[k, lookup(tree, k)] for k in keys if lookup(tree, k) is not None]
    parts = [_table(["key", "value"], rows, numeric_from=1)]
    parts.append(_details("config.json (the resolved config)", _pre_json(tree)))
    history_path = os.path.join(workdir, "config_history.jsonl")
    if os.path.exists(history_path):
        history = read_jsonl(history_path)
        rows = []
        for entry in history:
            rest = {k: v for k, v in entry.items() if k not in ("time", "host", "mode")}
            rows.append(
                [
                    entry.get("time", ""),
                    entry.get("host", ""),
                    entry.get("mode", ""),
                    json.dumps(rest, sort_keys=True),
                ]
            )
        parts.append("<h3>History</h3>")
        parts.append(_table(["time", "host", "mode", "what"], rows, numeric_from=4))
    else:
        parts.append(_note("no config_history.jsonl"))
    return "".join(parts)


def data_section(workdir: str) -> str:
    """data/report.json: per split what was read, kept and dropped; windows per class."""
    path = os.path.join(workdir, "data", "report.json")
    if not os.path.exists(path):
        return _note("no data/report.json: run --mode=prepare first")
    report = read_json(path)
    splits = report.get("splits", {}) if isinstance(report, dict) else {}
    top = {k: v for k, v in report.items() if k != "splits"}
    flat_top = _flatten(top)
    parts = [
        _table(["", "value"], [[k, v] for k, v in flat_top.items() if not isinstance(v, dict)])
    ]
    names = sorted(splits)
    flat = {s: _flatten(splits[s]) for s in names}
    keys = list(dict.fromkeys(k for s in names for k in flat[s]))
    scalar_keys = [k for k in keys if not any(isinstance(flat[s].get(k), dict) for s in names)]
    if names:
        rows = [[k] + [flat[s].get(k, "") for s in names] for k in scalar_keys]
        parts.append("<h3>Per split</h3>")
        parts.append(_table(["", *names], rows))
    for key in keys:
        if key in scalar_keys:
            continue
        classes = list(dict.fromkeys(c for s in names for c in flat[s].get(key, {}) or {}))
        rows = [[c] + [(flat[s].get(key) or {}).get(c, 0) for s in names] for c in classes]
        table = _table(["", *names], rows)
        # a few classes stand open; forty attributes fold away
        folded = len(rows) > FOLD_ROWS
        parts.append(
            _details(f"{key} ({len(rows)})", table) if folded else f"<h3>{_esc(key)}</h3>{table}"
        )
    parts.append(_details("data/report.json", _pre_json(report)))
    return "".join(parts)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    """A matplotlib figure as a PNG data: URI (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return _data_uri(buffer.getvalue(), "image/png")


def curves_png(rows: list[dict], prefix: str, title: str, markers: bool = False) -> str | None:
    """One small plot per `prefix*` key of metrics.jsonl against step; None when none."""
    keys = sorted({k for r in rows for k, v in r.items() if k.startswith(prefix) and _is_number(v)})
    if not keys:
        return None
    plt = _pyplot()
    columns = min(3, len(keys))
    lines = -(-len(keys) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 2.6 * lines), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        points = [(r["step"], r[key]) for r in rows if _is_number(r.get(key)) and "step" in r]
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o" if markers or len(points) < 3 else None, lw=1.5)
        ax.set_title(key[len(prefix) :] or key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def curves_section(workdir: str) -> str:
    """The training curves (train/*) and evaluation curves (eval/*) of metrics.jsonl."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return _note("no metrics.jsonl: run --mode=train first")
    rows = [r for r in read_jsonl(path) if _is_number(r.get("step"))]
    if not rows:
        return _note(f"{path}: no logged steps yet")
    parts = []
    train = curves_png(rows, "train/", "training, per logged step")
    parts.append(
        _figure(train, "training curves", "train/* of metrics.jsonl")
        if train
        else _note("no train/* values")
    )
    evaluated = {r["step"] for r in rows if any(k.startswith("eval/") for k in r)}
    # One evaluated step is a point per curve: the Evaluation section has its numbers.
    evals = None
    if len(evaluated) > 1:
        evals = curves_png(rows, "eval/", "evaluation, per evaluated step", markers=True)
    if evals:
        parts.append(_figure(evals, "evaluation curves", "eval/* of metrics.jsonl"))
    last = rows[-1]
    parts.append(_note(f"{len(rows)} logged steps; the last is step {int(last['step'])}."))
    return "".join(parts)


def metric_rows(results: dict, random: dict | None = None, prefix: str = ""):
    """(metric rows [name, model, random], breakdowns {name: (values, random values)}) of
    an eval JSON block; a nested block's `random` is its own, the parent's entry for it,
    or else the parent's random itself: one random block beside several kinds of text
    (timeline grounding: centroid, name, random; by_prototype: centroid, name)."""
    random = random or {}
    rows, breakdowns = [], {}
    for key, value in results.items():
        if key in ("random", "step"):
            continue
        name = f"{prefix}{key}"
        if _is_number(value):
            base = random.get(key) if isinstance(random, dict) else None
            rows.append([name, value, base if _is_number(base) else ""])
        elif _is_breakdown(key, value):
            base = random.get(key) if isinstance(random, dict) else None
            breakdowns[name] = (value, base if isinstance(base, dict) else {})
        elif isinstance(value, dict):
            inner_random = value.get("random")
            if not isinstance(inner_random, dict):
                inner_random = random.get(key) if isinstance(random, dict) else None
            if not isinstance(inner_random, dict):
                inner_random = random
            sub_rows, sub_breakdowns = metric_rows(value, inner_random, name + " ")
            rows += sub_rows
            breakdowns.update(sub_breakdowns)
        elif value is not None:
            rows.append([name, value, ""])
    return rows, breakdowns


def eval_section(workdir: str, step: int) -> str:
    """The eval JSON of `step`: the headline numbers beside random, one table per block
    (timeline, zero-shot, gait-to-text, ...), per-class tables, the counts and settings,
    and the headline of every evaluated step."""
    path = os.path.join(workdir, "eval", f"step_{step}.json")
    results = read_json(path)
    if not isinstance(results, dict):
        raise fail(path, "not an evaluation (a JSON object expected)")
    random = results.get("random") if isinstance(results.get("random"), dict) else {}
    headline, about, blocks, breakdowns = [], [], {}, {}
    for key, value in results.items():
        if key in ("random", "step"):
            continue
        if _is_number(value) and not key.startswith("num_"):
            base = random.get(key)
            headline.append([key, value, base if _is_number(base) else ""])
        elif _is_number(value) or isinstance(value, str):
            about.append([key, value])
        elif _is_breakdown(key, value):
            breakdowns[key] = (value, random.get(key) or {})
        elif isinstance(value, dict):
            # Its own random, the top level's entry for it, or (by_prototype: the same
            # windows ranked by other class texts) the top level's random.
            inner = value.get("random")
            inner = inner if isinstance(inner, dict) else random.get(key) or random
            blocks[key], more = metric_rows(value, inner)
            breakdowns.update({f"{key} {name}": v for name, v in more.items()})
    parts = [
        _note(
            f"{os.path.relpath(path, workdir)}: values are fractions in [0, 1]; random is a "
            "random ranking of the same windows, scored by the same code."
        ),
        _table(["metric", "model", "random"], headline),
    ]
    for name, rows in blocks.items():
        parts.append(f"<h3>{_esc(name)}</h3>" + _table(["metric", "model", "random"], rows))
    if about:
        parts.append("<h3>Counts and settings</h3>" + _table(["", "value"], about))
    for name, (values, base) in breakdowns.items():
        base = base if isinstance(base, dict) else {}
        table = _table(
            ["", "model", "random"], [[k, v, base.get(k, "")] for k, v in values.items()]
        )
        parts.append(_details(f"{name} ({len(values)})", table))
    steps = eval_steps(workdir)
    if len(steps) > 1:
        keys = [row[0] for row in headline]
        history = []
        for s in steps:
            try:
                r = read_json(os.path.join(workdir, "eval", f"step_{s}.json"))
            except InputError as e:
                history.append([s, str(e)])
                continue
            history.append([s] + [r.get(k, "") if isinstance(r, dict) else "" for k in keys])
        parts.append("<h3>Every evaluated step</h3>" + _table(["step", *keys], history))
    return "".join(parts)


def pictures_section(workdir: str, step: int) -> str:
    """Every picture evaluation drew for `step` (eval/*_step_<N>.png and .gif), the
    timeline's aside (it has its own section)."""
    paths = sorted(
        p
        for p in glob.glob(os.path.join(workdir, "eval", f"*_step_{step}.*"))
        if p.lower().endswith((".png", ".gif")) and not os.path.basename(p).startswith("timeline")
    )
    if not paths:
        return _note(f"no pictures in eval/ for step {step}")
    figures = [_image_file(p, os.path.basename(p)) for p in paths]
    return '<div class="gallery">' + "".join(figures) + "</div>"


def timeline_section(workdir: str, step: int | None) -> str:
    """The eval's timeline picture and any timeline the CLI wrote under W/timeline/."""
    parts = []
    if step is not None:
        path = os.path.join(workdir, "eval", f"timeline_step_{step}.png")
        if os.path.exists(path):
            parts.append(_image_file(path, "timeline", f"a val sequence, step {step}"))
    for png in sorted(glob.glob(os.path.join(workdir, "timeline", "*", "timeline.png"))):
        caption = os.path.relpath(png, workdir)
        meta_path = os.path.join(os.path.dirname(png), "timeline.json")
        if os.path.exists(meta_path):
            try:
                meta = read_json(meta_path)
                query = (meta.get("query") or {}).get("text")
                caption = f"{meta.get('source')} (step {meta.get('step')})" + (
                    f", query {query!r}" if query else ""
                )
            except InputError:
                pass
        parts.append(_image_file(png, "timeline", caption))
    if not parts:
        return _note("no timeline picture (BABEL runs draw one at --mode=eval)")
    return "".join(parts)


def read_split(workdir: str, split: str = "val") -> dict:
    """A prepared split's files, as DESIGN.md names them (motion memory-mapped)."""
    folder = os.path.join(workdir, "data", split)
    if not os.path.exists(os.path.join(folder, "motion.npy")):
        raise fail(folder, "no prepared windows here; run --mode=prepare first")
    try:
        return {
            "motion": np.load(os.path.join(folder, "motion.npy"), mmap_mode="r"),
            "mask": np.load(os.path.join(folder, "mask.npy"), mmap_mode="r"),
            "labels": np.load(os.path.join(folder, "labels.npy"), mmap_mode="r"),
            "classes": read_json(os.path.join(folder, "classes.json")),
            "index": read_jsonl(os.path.join(folder, "index.jsonl")),
        }
    except (OSError, ValueError) as e:
        raise fail(folder, f"cannot read the prepared windows ({e})") from None


def pick_examples(labels: np.ndarray, count: int, threshold: float) -> list[int]:
    """Up to `count` windows, each led by a label not yet shown (then the first unused)."""
    picked, seen = [], set()
    present = np.asarray(labels) > threshold
    for i, row in enumerate(present):
        if len(picked) == count:
            break
        lead = int(np.argmax(np.asarray(labels[i]))) if row.any() else -1
        if lead not in seen:
            picked.append(i)
            seen.add(lead)
    for i in range(len(present)):
        if len(picked) >= min(count, len(present)):
            break
        if i not in picked:
            picked.append(i)
    return sorted(picked)


def window_for_drawing(motion: np.ndarray, row: dict) -> np.ndarray:
    """A prepared window as the pictures draw it: DenseGait's reference transform
    (pixels minus an origin that index.jsonl records) back to pixels with y up."""
    motion = np.asarray(motion, np.float32)
    if "origin" in row:
        motion = (motion + np.asarray(row["origin"], np.float32)) * np.array([1, -1, 1], np.float32)
    return motion


def examples_section(workdir: str, count: int) -> str:
    """`count` val windows animated, with the model's top classes beside the truth."""
    if count <= 0:
        return _note("examples skipped (--examples=0)")
    import wat_jax
    from wat_jax.reporting import pictures

    tree = config_tree(workdir)
    threshold = float(lookup(tree, "data.threshold", 0.5))
    try:
        split = read_split(workdir, "val")
        run = wat_jax.load(workdir)
    except InputError as e:
        return _note(f"no examples: {e}")
    ids = pick_examples(split["labels"], count, threshold)
    motion = np.asarray(split["motion"][ids])
    answers = run.classify(motion, np.asarray(split["mask"][ids]), top_k=3)
    figures = []
    with tempfile.TemporaryDirectory(prefix="wat_jax_report_") as tmp:
        for i, answer in zip(ids, answers):
            row = split["index"][i] if i < len(split["index"]) else {}
            truth = [c for c, v in zip(split["classes"], split["labels"][i]) if v > threshold]
            gif = os.path.join(tmp, f"{i}.gif")
            pictures.skeleton_gif(
                window_for_drawing(split["motion"][i], row),
                np.asarray(split["mask"][i]),
                gif,
                "",
                rot6d=str(lookup(tree, "data.rot6d", "rows")),
            )
            with open(gif, "rb") as f:
                uri = _data_uri(f.read(), "image/gif")
            hits = sum(c in truth for c, _ in answer)
            right = bool(answer) and answer[0][0] in truth
            verdict = "top-1 in the truth" if right else "top-1 not in the truth"
            model = ", ".join(f"{c} {s:.2f}" for c, s in answer)
            start = row.get("start_s")
            where = f"{row.get('source', '?')}" + (f" @ {start:.1f} s" if _is_number(start) else "")
            caption = (
                f"val window {i}: {_esc(where)}<br><b>truth:</b> {_esc(', '.join(truth) or '-')}"
                f"<br><b>model (top 3):</b> {_esc(model)} "
                f'<span class="{"ok" if right else "miss"}">({verdict}; {hits} of the top '
                f"{len(answer)} in it)</span>"
            )
            figures.append(
                f'<figure><img src="{uri}" alt="val window {i}"><figcaption>'
                f"{caption}</figcaption></figure>"
            )
    return (
        _note(f"the model of step {run.step}; scores are cosines to the class texts")
        + '<div class="gallery">'
        + "".join(figures)
        + "</div>"
    )


def descriptions_section(workdir: str) -> str:
    """A few of the texts describe wrote per key, and how they were written."""
    path = os.path.join(workdir, "descriptions.jsonl")
    if not os.path.exists(path):
        return _note("no descriptions.jsonl (describe.backend=names, or not described yet)")
    records = [r for r in read_jsonl(path) if "key" in r and "text" in r]
    if not records:
        return _note(f"{path}: no descriptions")
    by_key: dict[str, list[str]] = {}
    for r in records:
        by_key.setdefault(str(r["key"]), []).append(str(r["text"]))
    first = records[0]
    how = ", ".join(
        f"{k} {first[k]}"
        for k in ("backend", "model", "prompt_id", "prompt_hash")
        if first.get(k) is not None
    )
    parts = [_note(f"{len(records)} texts for {len(by_key)} keys; written by {how}.")]
    rows = []
    for key in list(by_key)[:MAX_DESCRIBED_KEYS]:
        texts = by_key[key]
        items = "".join(f"<li>{_esc(t)}</li>" for t in texts[:TEXTS_PER_KEY])
        more = f"<li>… and {len(texts) - TEXTS_PER_KEY} more</li>" if len(texts) > 3 else ""
        rows.append(f"<tr><td>{_esc(key)}</td><td><ul>{items}{more}</ul></td></tr>")
    parts.append(
        "<table><thead><tr><th>key</th><th>descriptions</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    if len(by_key) > MAX_DESCRIBED_KEYS:
        parts.append(_note(f"… and {len(by_key) - MAX_DESCRIBED_KEYS} more keys"))
    return "".join(parts)


# ---- the page ---------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em;
       color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f3f3f3; }
.note { color: #666; font-style: italic; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0.5em 0; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #444; max-width: 420px; }
.ok { color: #0a7d28; } .miss { color: #b3261e; }
pre { background: #f7f7f7; padding: 0.5em; max-height: 30em; overflow: auto; font-size: 0.8em; }
ul { margin: 0; padding-left: 1.2em; }
"""


def check_workdir(workdir: str) -> str:
    """The workdir as an absolute path; InputError unless it holds a run's config.json."""
    workdir = os.path.abspath(workdir)
    if not os.path.isdir(workdir):
        raise fail(workdir, "no such folder; give a run's workdir")
    if not os.path.exists(os.path.join(workdir, "config.json")):
        raise fail(
            workdir,
            "no config.json here; give a run's workdir (python -m wat_jax.main --mode=train "
            "writes it)",
        )
    return workdir


def build_html(workdir: str, step: int | None = None, examples: int = 4) -> str:
    """The report page of the run in `workdir` (the eval of `step`, latest when None)."""
    workdir = check_workdir(workdir)
    tree = config_tree(workdir)
    steps = eval_steps(workdir)
    if step is not None and step not in steps:
        raise fail("--step", f"no eval/step_{step}.json in {workdir}; evaluated steps: {steps}")
    shown = step if step is not None else (steps[-1] if steps else None)
    no_eval = _note("no evaluation yet: run --mode=eval")
    sections = [
        ("config", "Config", config_section(workdir)),
        ("data", "Data", data_section(workdir)),
        ("curves", "Training", curves_section(workdir)),
        ("eval", "Evaluation", eval_section(workdir, shown) if shown is not None else no_eval),
        (
            "pictures",
            "Pictures",
            pictures_section(workdir, shown) if shown is not None else no_eval,
        ),
        ("timeline", "Timeline", timeline_section(workdir, shown)),
        ("examples", "Examples", examples_section(workdir, examples)),
        ("descriptions", "Descriptions", descriptions_section(workdir)),
    ]
    task = lookup(tree, "task", "?")
    title = f"wat_jax report: {os.path.basename(workdir)} ({task})"
    made = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{anchor}">{_esc(name)}</a>' for anchor, name, _ in sections)
    body = "".join(
        f'<section id="{anchor}"><h2>{_esc(name)}</h2>{content}</section>'
        for anchor, name, content in sections
    )
    evaluated = f"evaluation of step {shown}" if shown is not None else "not evaluated yet"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_esc(title)}</h1>"
        f'<p class="note">{_esc(workdir)}; {evaluated}; made {made}</p>'
        f"<nav>{nav}</nav>{body}</body></html>\n"
    )


def write_report(
    workdir: str, out: str | None = None, step: int | None = None, examples: int = 4
) -> str:
    """Writes the report (default W/report.html) whole or not at all (fileio's atomic
    write: a reader never sees half a page; the mode the user's umask gives new files);
    returns its path."""
    out = out or os.path.join(check_workdir(workdir), REPORT_FILE)
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):  # said before the run is read
        raise fail(out, f"cannot write it: {folder} is not a folder")
    page = build_html(workdir, step, examples)
    try:
        fileio.write_text(out, page)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            raise fail(out, f"cannot write it ({e.strerror}); give --out=a writable file") from None
        raise
    return out
