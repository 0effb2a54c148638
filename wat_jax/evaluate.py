"""Evaluation from a checkpoint: restore read-only, embed on every device, score, write.

The trainer's checkpoint manager is never used here; a read-only one restores
the chosen step. Motion embeddings are computed data-parallel and gathered
across devices and hosts before any ranking, so every process scores the whole
gallery (ranking per device would score each shard against itself only).
"""

import contextlib
import json
import os

import jax
from absl import logging

from wat_jax import artifact, checkpointing, errors, fileio, parallel
from wat_jax.data import prepared
from wat_jax.reporting.run_log import MetricWriter
from wat_jax.tasks.base import Confusion
from wat_jax.towers import Towers


TIMELINE_HEADLINE = ("frame_acc", "frame_mAP", "f1@0.1", "f1@0.25", "f1@0.5")
GROUNDING_HEADLINE = ("R@1@0.5", "mIoU")


def eval_towers(config, model, params, mesh) -> Towers:
    """Towers on `mesh` at eval.batch_size (batch_size when 0), checked against the mesh."""
    batch_size = config.eval.batch_size or config.batch_size
    parallel.check_batch_size(batch_size, mesh, "eval.batch_size")
    return Towers(model, params, mesh, batch_size)


def periodic(config, workdir: str, task):
    """The training loop's evaluator: evaluates the live params as step N (see train.py).

    The Towers are built once, so their functions compile once; later calls swap params.
    """
    cache = {}

    def evaluate_live(step, model, params, mesh, writer) -> str:
        if "towers" not in cache:
            cache["towers"] = eval_towers(config, model, params, mesh)
        cache["towers"].params = params
        return evaluate_step(config, workdir, task, cache["towers"], step, writer)

    return evaluate_live


def restore_towers(config, workdir: str, step: int | None = None) -> tuple[Towers, int]:
    """Restores `step` (the newest that restores when None) read-only; (Towers, step).

    Only the params are read, and the model is built from the dimensions in the
    checkpoint's metadata: no training data, optimizer or text bank is needed.
    """
    mesh = parallel.make_mesh(config.num_devices or None)
    restored = artifact.restore(config, checkpointing.checkpoint_dir(workdir), step, mesh)
    return eval_towers(config, restored.model, restored.params, mesh), restored.step


def evaluate_step(config, workdir: str, task, towers: Towers, step: int, writer=None) -> str:
    """Evaluates `towers`' params as step `step`: scores, writes and draws.

    The sequence: the task reads its inputs (val windows, texts), the towers embed
    them, the task scores the embeddings (a pure function), the action timeline adds
    its block when the task has one; then process 0 writes DIR/eval/step_<N>.json and
    the headline numbers as `eval/<metric>` lines of metrics.jsonl and TensorBoard
    (through `writer` when given: the training loop's MetricWriter), and draws the
    pictures the task asks for. Returns the JSON's path.
    """
    path = os.path.join(workdir, "eval", f"step_{step}.json")
    # What a Ctrl-C or a full disk leaves, said in the CLI's one line (errors.keeping).
    unchanged = "the checkpoints and the earlier evaluations are unchanged"
    name = os.path.basename(path)
    with errors.keeping(
        f"nothing was written yet ({name} is written when scoring ends); {unchanged}"
    ):
        inputs = task.eval_inputs(config, workdir)
        motion_emb = towers.motion(inputs.motion, inputs.mask)  # [N, E]
        text_emb = {name: towers.text(vectors) for name, vectors in inputs.texts.items()}
        results = task.score(config, inputs, motion_emb, text_emb)
        example = None
        if task.has_timeline and config.eval.timeline:
            # whole val sequences against BABEL's frame labels
            from wat_jax import timeline

            class_vectors = text_emb[task.timeline_texts(config)]
            queries = {kind: text_emb[kind] for kind in task.timeline_queries(config)}
            results["timeline"], example = timeline.eval_block(
                config, workdir, towers, class_vectors, queries or None
            )
    results = dict(results, step=step, task=config.task)
    if jax.process_index() == 0:  # every process has the numbers; one writes and draws
        with errors.keeping(unchanged):
            fileio.write_json(path, results)
        redo = f"{path} is complete; evaluate again for the curves and pictures of step {step}"
        with errors.keeping(redo, where=os.path.join(workdir, "metrics.jsonl")):
            _write_headline(workdir, step, results, writer)
        with errors.keeping(redo):
            draw(config, workdir, task, step, inputs, motion_emb, text_emb, results, example)
        logging.info("wrote %s", path)
    return path


def _write_headline(workdir: str, step: int, results: dict, writer=None) -> None:
    """The headline numbers as `eval/<metric>` lines of metrics.jsonl and TensorBoard."""
    headline = {
        f"eval/{k}": v
        for k, v in results.items()
        if isinstance(v, (int, float)) and k != "step" and not k.startswith("num_")
    }
    for k, v in results.get("timeline", {}).items():  # the action timeline's curves
        if k in TIMELINE_HEADLINE:
            headline[f"eval/timeline/{k}"] = v
    for kind, part in results.get("timeline", {}).get("grounding", {}).items():
        if kind != "random":  # text-to-interval queries, per kind of class text
            for k in GROUNDING_HEADLINE:
                headline[f"eval/timeline/grounding_{kind}/{k}"] = part[k]
    if writer is None:
        with contextlib.closing(MetricWriter(workdir)) as own:
            own.write(step, headline)
    else:
        writer.write(step, headline)


def draw(config, workdir: str, task, step: int, inputs, motion_emb, text_emb, results, example):
    """The pictures of one evaluation in WORKDIR/eval/: the timeline's example sequence,
    the embedding space and an example window, and the task's charts."""
    from wat_jax.reporting import pictures, plots

    out = plots.eval_dir(workdir)
    if example is not None:
        timeline_picture(example, inputs.classes, config, workdir, step)
    picture_texts = task.picture_texts(config)
    if picture_texts is not None:
        # the windows just embedded, not a second read of the val split
        windows = prepared.PreparedSplit(
            inputs.motion, inputs.mask, inputs.labels, list(inputs.classes), inputs.index
        )
        pictures.eval_pictures(
            config,
            out,
            step,
            windows,
            motion_emb,
            text_emb[picture_texts],
            columns=task.picture_columns(list(inputs.classes)),
            coloured_by=task.picture_caption,
        )
    for chart in task.charts(config, inputs, motion_emb, text_emb, results, step):
        png = os.path.join(out, f"{chart.name}_step_{step}.png")
        if isinstance(chart, Confusion):
            plots.confusion_png(chart.matrix, chart.classes, png, chart.title)
        else:
            plots.bars_png(chart.values, png, chart.title, chart.label, chart.baseline, chart.note)


def timeline_picture(example: dict, classes: list[str], config, workdir: str, step: int) -> str:
    """eval/timeline_step_<N>.png: the evaluated val sequence with the most true segments."""
    from wat_jax import metrics
    from wat_jax.reporting import plots

    seq, fps = example["sequence"], float(config.data.fps)
    true = [
        {"class": classes[c], "start_s": a / fps, "end_s": b / fps}
        for c, a, b in metrics.multilabel_runs(seq.labels)
    ]
    return plots.timeline_png(
        example["scores"],
        classes,
        fps,
        os.path.join(plots.eval_dir(workdir), f"timeline_step_{step}.png"),
        f"BABEL val sequence {seq.sid} ({seq.num_frames / fps:.1f} s), step {step}",
        true_segments=true,
    )


def evaluate(config, workdir: str, task) -> str:
    """Scores a checkpoint; writes and returns DIR/eval/step_<N>.json."""
    step = config.eval.step if config.eval.step >= 0 else None
    towers, step = restore_towers(config, workdir, step)
    return evaluate_step(config, workdir, task, towers, step)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(v) -> str:
    """A table cell: counts as integers, rates with four decimals, blank for none."""
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:8d}"
    return f"{v:8.4f}" if _is_number(v) else f"{'':8}"


def summary_rows(results: dict) -> list[tuple[str, object, object]]:
    """(metric, model value, random value or None) for an eval JSON's headline numbers:
    the task's own, gait-to-text (DenseGait), zero-shot with its ZSL/GZSL protocol, and
    the timeline with its grounding and "not found" blocks."""

    def numbers(part: dict, prefix: str = "", random: dict | None = None, skip=()) -> list:
        random = part.get("random", {}) if random is None else random
        random = random if isinstance(random, dict) else {}
        return [
            (prefix + k, v, random.get(k))
            for k, v in part.items()
            if _is_number(v) and k != "step" and not k.startswith(skip)
        ]

    rows = numbers(results)
    rand = results.get("random", {})
    if isinstance(results.get("gait_to_text"), dict):
        rows += numbers(results["gait_to_text"], "gait-to-text ", rand.get("gait_to_text", {}))
    zero_shot = results.get("zero_shot")
    if zero_shot:
        zs_rand = zero_shot.get("random", {})
        rows += numbers(zero_shot, "zero-shot ")
        rows += numbers(
            zero_shot.get("unseen_only", {}), "zero-shot unseen-only ", zs_rand.get("unseen_only")
        )
        kinds = {"": zero_shot, **zero_shot.get("by_prototype", {})}
        for kind, part in kinds.items():
            label = f" ({kind})" if kind else ""
            for block, name in (("zsl", "ZSL"), ("gzsl", "GZSL")):
                if isinstance(part.get(block), dict):
                    rows += [
                        (f"zero-shot {name} {k}{label}", v, r)
                        for k, v, r in numbers(part[block], "", zs_rand.get(block), ("num_",))
                    ]
    timeline = results.get("timeline")
    if timeline:
        rows += numbers(timeline, "timeline ", skip=("num_", "stride", "smooth", "seconds"))
        grounding = timeline.get("grounding", {})
        for kind, part in grounding.items():
            if kind != "random":
                rows += numbers(
                    part, f"timeline grounding {kind} ", grounding.get("random"), skip=("num_",)
                )
        not_found = timeline.get("not_found", {})
        if _is_number(not_found.get("threshold")):
            rows.append(("timeline not-found threshold", not_found["threshold"], None))
        for kind, part in not_found.items():
            if isinstance(part, dict) and kind != "random":
                rows += [
                    (
                        f"timeline not-found {kind} {k}",
                        part.get(k),
                        not_found.get("random", {}).get(k),
                    )
                    for k in ("recall", "false_alarm")
                    if _is_number(part.get(k))
                ]
    return rows


def summary_table(path: str) -> str:
    """The headline numbers of an eval JSON as a small text table, model beside random
    (zero-shot, timeline, grounding and gait-to-text rows too; counts as integers)."""
    with open(path) as f:
        results = json.load(f)
    rows = summary_rows(results)
    width = max((len(k) for k, _, _ in rows), default=4)
    lines = [f"{'metric':<{width}}  {'model':>8}  {'random':>8}", "-" * (width + 20)]
    for key, value, base in rows:
        lines.append(f"{key:<{width}}  {_cell(value)}  {_cell(base)}")
    return f"{path} (step {results.get('step')})\n" + "\n".join(lines)
