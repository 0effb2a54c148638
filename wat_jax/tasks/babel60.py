"""BABEL-60 action recognition as nearest class text (paper task A).

Each class's text is its name or the centroid of its LLM descriptions; a
window is classified by cosine similarity to the projected class texts and
scored with Top-1/Top-5 (a hit if any ground-truth class is in the top k),
Top-1-norm, mAP and per-class accuracy, for both kinds of class text.
A zero-shot option (eval.zero_shot_classes) removes those classes' windows
from training and reports them apart.
"""

import os

import jax
import numpy as np
from absl import logging

from wat_jax import metrics
from wat_jax.reporting import pictures, plots
from wat_jax.data import prepared
from wat_jax.data.pipeline import Batcher, TextBank, class_keys
from wat_jax.errors import fail
from wat_jax.tasks import common


def prepare(config, workdir):
    from wat_jax.data import babel

    report = babel.prepare(config.data, workdir, config.seed)
    if jax.process_index() == 0:  # the short table; the full report is data/report.json
        print(babel.report_table(report))


def _classes(workdir) -> list[str]:
    return prepared.read_split(workdir, "train").classes


def _keys(workdir):
    from wat_jax.text.describe import DescribeKey

    return [DescribeKey(key=c, kind="action", phrase=c) for c in _classes(workdir)]


def describe(config, workdir):
    if config.describe.backend == "names":
        logging.info("describe.backend=names: class names are the only texts")
        return
    common.describe_keys(_keys(workdir), config, workdir)


def embed(config, workdir):
    common.build_bank(_keys(workdir), config, workdir)


def prototypes(config, workdir) -> dict:
    """The class texts classification ranks (eval.prototype), for checkpoint metadata."""
    bank = TextBank.load(common.bank_path(workdir))
    return common.bank_prototypes(config, bank, list(bank.keys))


def _held_out(config, classes) -> np.ndarray:
    """Boolean [C]: classes held out of training for zero-shot evaluation."""
    names = list(config.eval.get("zero_shot_classes", ()) or ())
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise fail("config.eval.zero_shot_classes", f"unknown classes {unknown}")
    return np.isin(np.asarray(classes), names)


def train_batcher(config, workdir, rows) -> Batcher:
    split = prepared.read_split(workdir, "train")
    labels = np.asarray(split.labels) > 0.5
    keep = ~(labels[:, _held_out(config, split.classes)].any(1))
    index = np.flatnonzero(keep)
    if len(index) < config.batch_size:
        raise fail(
            prepared.split_dir(workdir, "train"),
            f"{len(index)} training windows, fewer than batch_size={config.batch_size}",
        )
    if len(index) < len(labels):
        logging.info(
            "zero-shot: %d training windows with held-out classes removed", len(labels) - len(index)
        )
    motion, mask = split.motion, split.mask
    if len(index) < len(labels):
        motion, mask = motion[index], mask[index]
    labels = labels[index]
    keys = class_keys(labels)
    bank = TextBank.load(common.bank_path(workdir))
    return Batcher(
        motion,
        mask,
        labels.astype(np.float32),
        keys,
        bank,
        tuple(config.text.targets),
        config.batch_size,
        rows,
        config.seed,
    )


def score(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """The BABEL-60 metrics of one score matrix [N, C] against label sets [N, C]."""
    per_class = metrics.per_class_top1(scores, labels)
    return {
        "top1": metrics.topk_accuracy(scores, labels, 1),
        "top5": metrics.topk_accuracy(scores, labels, min(5, len(classes))),
        "top1_norm": metrics.top1_norm(scores, labels),
        "mAP": metrics.mean_average_precision(scores.T, labels.T),
        "per_class_top1": {c: float(v) for c, v in zip(classes, per_class)},
    }


def zero_shot_score(scores: np.ndarray, labels: np.ndarray, classes: list[str], held) -> dict:
    """The metrics of the windows of held-out classes.

    Args:
      scores: [N, C] window-to-class scores.
      labels: [N, C] bool label sets.
      classes: the C class names.
      held: [C] bool, the classes held out of training.

    Returns:
      Top-1/Top-5/Top-1-norm/mAP with those windows ranked among all C classes
      (generalised zero-shot), and under "unseen_only" Top-1/Top-1-norm/mAP ranked among
      the held-out classes alone (classic zero-shot; present with two or more of them).
    """
    rows = labels[:, held].any(1)
    out = {
        k: v for k, v in score(scores[rows], labels[rows], classes).items() if k != "per_class_top1"
    }
    if held.sum() >= 2:
        names = [c for c, h in zip(classes, held) if h]
        unseen = score(scores[rows][:, held], labels[rows][:, held], names)
        out["unseen_only"] = {k: unseen[k] for k in ("top1", "top1_norm", "mAP")}
    return out


def evaluate(config, workdir, embedder, step) -> dict:
    """Scores the val windows against name and description-centroid prototypes."""
    split = prepared.read_split(workdir, "val")
    bank = TextBank.load(common.bank_path(workdir))
    if bank.keys != split.classes:
        raise fail(
            common.bank_path(workdir),
            "text bank classes differ from the prepared data; run --mode=embed again",
        )
    labels = np.asarray(split.labels) > 0.5
    motion_emb = embedder.motion(split.motion, split.mask)
    texts = {"name": bank.names, "centroid": bank.centroids(normalize=True)}
    main = common.prototype_kind(config)
    results = {
        "by_prototype": {},
        "num_windows": int(len(labels)),
        "prototype": main,
        "describe_backend": config.describe.backend,
    }
    scores = {}
    for kind, vectors in texts.items():
        scores[kind] = metrics.cosine(motion_emb, embedder.text(vectors))  # [N, C]
        results["by_prototype"][kind] = score(scores[kind], labels, split.classes)
    main_scores = scores[main]
    results.update({k: v for k, v in results["by_prototype"][main].items()})
    rand = metrics.random_scores(main_scores.shape, config.seed)
    results["random"] = {
        k: v for k, v in score(rand, labels, split.classes).items() if k != "per_class_top1"
    }

    held = _held_out(config, split.classes)
    if held.any():
        results["zero_shot"] = {
            "classes": [c for c, h in zip(split.classes, held) if h],
            "num_windows": int(labels[:, held].any(1).sum()),
            **zero_shot_score(main_scores, labels, split.classes, held),
            "by_prototype": {
                kind: zero_shot_score(s, labels, split.classes, held) for kind, s in scores.items()
            },
            "random": zero_shot_score(rand, labels, split.classes, held),
        }

    example = None
    if config.eval.get("timeline", True):  # whole val sequences against BABEL's frame labels
        from wat_jax import timeline

        class_vectors = embedder.text(texts[main])
        results["timeline"], example = timeline.eval_block(config, workdir, embedder, class_vectors)

    if jax.process_index() == 0:  # every process has the numbers; one draws
        if example is not None:
            _timeline_picture(example, split.classes, config, workdir, step)
        pictures.eval_pictures(
            config,
            workdir,
            embedder,
            step,
            motion_emb,
            labels,
            split.classes,
            embedder.text(texts[main]),
        )
        out = plots.eval_dir(workdir)
        matrix = metrics.confusion_matrix(main_scores, labels)
        plots.confusion_png(
            matrix,
            split.classes,
            os.path.join(out, f"confusion_step_{step}.png"),
            f"BABEL val confusion ({main} prototypes), step {step}",
        )
        plots.bars_png(
            results["per_class_top1"],
            os.path.join(out, f"per_class_step_{step}.png"),
            f"Per-class top-1, step {step}",
            "top-1",
        )
    return results


def _timeline_picture(example: dict, classes: list[str], config, workdir: str, step: int) -> str:
    """eval/timeline_step_<N>.png: the evaluated val sequence with the most true segments."""
    from wat_jax import metrics as m

    seq, fps = example["sequence"], float(config.data.fps)
    true = [
        {"class": classes[c], "start_s": a / fps, "end_s": b / fps}
        for c, a, b in m.multilabel_runs(seq.labels)
    ]
    return plots.timeline_png(
        example["scores"],
        classes,
        fps,
        os.path.join(plots.eval_dir(workdir), f"timeline_step_{step}.png"),
        f"BABEL val sequence {seq.sid} ({seq.num_frames / fps:.1f} s), step {step}",
        true_segments=true,
    )
