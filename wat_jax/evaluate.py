"""Evaluation from a checkpoint: restore read-only, embed on every device, score.

The trainer's checkpoint manager is never used here; a read-only one restores
the chosen step. Motion embeddings are computed data-parallel and gathered
across devices and hosts before any ranking, so every process scores the whole
gallery (ranking per device would score each shard against itself only).
"""

import contextlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import PartitionSpec as P

from wat_jax import artifact, checkpointing, errors, io, parallel
from wat_jax.reporting.run_log import MetricWriter, Progress
from wat_jax.tasks.base import Confusion


TIMELINE_HEADLINE = ("frame_acc", "frame_mAP", "f1@0.1", "f1@0.25", "f1@0.5")


class Embedder:
    """A restored model's two towers as host functions over numpy arrays."""

    def __init__(self, model, params, mesh, batch_size: int):
        self.model, self.params, self.mesh = model, params, mesh
        self.batch_size = batch_size

        def motion_fn(params, motion, mask):
            return model.apply({"params": params}, motion, mask, method="embed_motion")

        self._motion = jax.jit(
            jax.shard_map(
                motion_fn,
                mesh=mesh,
                in_specs=(P(), P(parallel.AXIS), P(parallel.AXIS)),
                out_specs=P(parallel.AXIS),
                check_vma=False,
            )
        )
        self._text = jax.jit(lambda p, t: model.apply({"params": p}, t, method="embed_text"))

    def motion(self, motion: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """[N, T, J, F], [N, T] -> [N, E] on every process (all rows, input order).

        Every process passes the same full arrays (memory-mapped is fine) and
        feeds only its rows of each padded global batch.
        """
        n, b = motion.shape[0], self.batch_size
        rows = parallel.process_rows(b, self.mesh)
        out, progress = [], Progress("embed motion", n, unit="windows", every_s=10.0)
        for start in range(0, n, b):
            idx = np.arange(start, start + b)
            valid = idx < n
            idx = np.where(valid, idx, 0)[rows]
            local_mask = np.asarray(mask[idx], bool) & valid[rows][:, None]
            batch = parallel.shard_batch(
                {"motion": np.asarray(motion[idx], np.float32), "mask": local_mask}, self.mesh, b
            )
            emb = self._motion(self.params, batch["motion"], batch["mask"])
            out.append(parallel.to_host(emb)[valid])
            progress.update(min(start + b, n))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def text(self, text_emb: np.ndarray) -> np.ndarray:
        """Frozen text vectors [M, D] -> joint-space [M, E]."""
        return np.asarray(self._text(self.params, jnp.asarray(text_emb, jnp.float32)))


def make_embedder(config, model, params, mesh) -> Embedder:
    """An Embedder at eval.batch_size (batch_size when 0), checked against the mesh."""
    batch_size = config.eval.batch_size or config.batch_size
    parallel.check_batch_size(batch_size, mesh, "eval.batch_size")
    return Embedder(model, params, mesh, batch_size)


def periodic(config, workdir: str, task):
    """The training loop's evaluator: scores the live params as step N (see train.py).

    The Embedder is built once, so its functions compile once; later calls swap params.
    """
    cache = {}

    def evaluate_live(step, model, params, mesh, writer) -> str:
        if "embedder" not in cache:
            cache["embedder"] = make_embedder(config, model, params, mesh)
        cache["embedder"].params = params
        return score(config, workdir, task, cache["embedder"], step, writer)

    return evaluate_live


def restore_embedder(config, workdir: str, step: int | None = None):
    """Restores `step` (the newest that restores when None) read-only; (Embedder, step).

    Only the params are read, and the model is built from the dimensions in the
    checkpoint's metadata: no training data, optimizer or text bank is needed.
    """
    mesh = parallel.make_mesh(config.num_devices or None)
    restored = artifact.restore(config, checkpointing.checkpoint_dir(workdir), step, mesh)
    return make_embedder(config, restored.model, restored.params, mesh), restored.step


def score(config, workdir: str, task, embedder: Embedder, step: int, writer=None) -> str:
    """Scores `embedder`'s params as step `step` with the task's metrics.

    The sequence: the task reads its inputs (val windows, texts), the embedder embeds
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
        motion_emb = embedder.motion(inputs.motion, inputs.mask)  # [N, E]
        text_emb = {name: embedder.text(vectors) for name, vectors in inputs.texts.items()}
        results = task.score(config, inputs, motion_emb, text_emb)
        example = None
        if task.has_timeline and config.eval.timeline:
            # whole val sequences against BABEL's frame labels
            from wat_jax import timeline

            class_vectors = text_emb[task.timeline_texts(config)]
            results["timeline"], example = timeline.eval_block(
                config, workdir, embedder, class_vectors
            )
    results = dict(results, step=step, task=config.task)
    if jax.process_index() == 0:  # every process has the numbers; one writes and draws
        with errors.keeping(unchanged):
            io.write_json(path, results)
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
        pictures.eval_pictures(
            config,
            workdir,
            None,
            step,
            motion_emb,
            inputs.labels,
            inputs.classes,
            text_emb[picture_texts],
            columns=task.picture_columns(list(inputs.classes)),
            coloured_by=task.picture_caption,
        )
    for chart in task.charts(config, inputs, motion_emb, text_emb, results, step):
        png = os.path.join(out, f"{chart.name}_step_{step}.png")
        if isinstance(chart, Confusion):
            plots.confusion_png(chart.matrix, chart.classes, png, chart.title)
        else:
            plots.bars_png(chart.values, png, chart.title, chart.label, baseline=chart.baseline)


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
    embedder, step = restore_embedder(config, workdir, step)
    return score(config, workdir, task, embedder, step)


def summary_table(path: str) -> str:
    """The headline numbers of an eval JSON as a small text table (zero-shot rows too)."""
    with open(path) as f:
        results = json.load(f)

    def numbers(part: dict, prefix: str = "") -> list:
        return [
            (prefix + k, v, part.get("random", {}).get(k))
            for k, v in part.items()
            if isinstance(v, (int, float)) and k != "step"
        ]

    rows = numbers(results)
    zero_shot = results.get("zero_shot")
    if zero_shot:
        rows += numbers(zero_shot, "zero-shot ")
        unseen = dict(zero_shot.get("unseen_only", {}))
        unseen["random"] = zero_shot.get("random", {}).get("unseen_only", {})
        rows += numbers(unseen, "zero-shot unseen-only ")
    timeline = results.get("timeline")
    if timeline:
        rows += [
            r
            for r in numbers(timeline, "timeline ")
            if not r[0].split(" ", 1)[1].startswith(("num_", "stride", "smooth", "seconds"))
        ]
    width = max((len(k) for k, _, _ in rows), default=4)
    lines = [f"{'metric':<{width}}  {'model':>8}  {'random':>8}", "-" * (width + 20)]
    for key, value, base in rows:
        base_s = f"{base:8.4f}" if isinstance(base, (int, float)) else f"{'':8}"
        lines.append(f"{key:<{width}}  {value:8.4f}  {base_s}")
    return f"{path} (step {results.get('step')})\n" + "\n".join(lines)
