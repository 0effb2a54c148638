"""BABEL-60 action recognition as nearest class text (paper task A).

Each class's text is its name or the centroid of its LLM descriptions; a
window is classified by cosine similarity to the projected class texts and
scored with Top-1/Top-5 (a hit if any ground-truth class is in the top k),
Top-1-norm, mAP and per-class accuracy, for both kinds of class text.
A zero-shot option (eval.zero_shot_classes) removes those classes' windows
from training and reports them apart, with the zero-shot literature's protocol (ZSL
Top-1/Top-5 among the unseen classes; GZSL seen and unseen accuracy and their harmonic
mean) per class text: names, description centroids and both (cosines averaged), and
for a random ranking. The protocol's class splits are experiments/zero_shot_splits.json
(wat_jax/data/zero_shot.py).
"""

import numpy as np
from absl import logging

from wat_jax import metrics
from wat_jax.data import prepared
from wat_jax.data.pipeline import Batcher, class_keys
from wat_jax.errors import fail
from wat_jax.tasks import common
from wat_jax.tasks.base import Bars, Confusion, EvalInputs, Task
from wat_jax.text import bank as text_bank

# Under the per-class bars: what a bar counts (multi-label windows), beside the confusion
# matrix's note (reporting/plots.CONFUSION_NOTE), which counts them differently.
PER_CLASS_NOTE = (
    "Bar: the windows whose labels include that class; a window counts as right when its "
    "top-1 is any of its labels, so a window of stand and walk answered walk counts for "
    "stand too. The confusion matrix's diagonal counts only a top-1 of exactly that class "
    "and so reads lower for classes that share windows."
)


def _classes(workdir) -> list[str]:
    return prepared.read_split(workdir, "train").classes


def _held_out(config, classes) -> np.ndarray:
    """Boolean [C]: classes held out of training for zero-shot evaluation."""
    names = list(config.eval.zero_shot_classes)
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise fail("config.eval.zero_shot_classes", f"unknown classes {unknown}")
    return np.isin(np.asarray(classes), names)


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
    """The metrics of the windows of held-out classes, and the zero-shot protocol's.

    Args:
      scores: [N, C] window-to-class scores.
      labels: [N, C] bool label sets.
      classes: the C class names.
      held: [C] bool, the classes held out of training.

    Returns:
      Top-1/Top-5/Top-1-norm/mAP with the unseen windows (those carrying a held-out
      class) ranked among all C classes, a hit being any of their classes; under
      "unseen_only" Top-1/Top-1-norm/mAP ranked among the held-out classes alone; and the
      protocol of the zero-shot skeleton literature (SynSE, SMIE, ...): "zsl", Top-1 and
      Top-5 among the held-out classes alone ("unseen_only"'s ranking; Top-5 only with
      more than 5 of them, as it is 1 otherwise), and "gzsl" (gzsl_scores). "unseen_only"
      and "zsl" need two or more held-out classes.
    """
    rows = labels[:, held].any(1)
    out = {
        k: v for k, v in score(scores[rows], labels[rows], classes).items() if k != "per_class_top1"
    }
    if held.sum() >= 2:
        names = [c for c, h in zip(classes, held) if h]
        unseen = score(scores[rows][:, held], labels[rows][:, held], names)
        out["unseen_only"] = {k: unseen[k] for k in ("top1", "top1_norm", "mAP")}
        out["zsl"] = {"top1": unseen["top1"]}
        if held.sum() > 5:
            out["zsl"]["top5"] = unseen["top5"]
    out["gzsl"] = gzsl_scores(scores, labels, held)
    return out


def gzsl_scores(scores: np.ndarray, labels: np.ndarray, held) -> dict:
    """Generalised zero-shot accuracy: every window ranked among all C classes.

    "seen": Top-1 over the windows without a held-out class (a hit when the top class is
    one of theirs); "unseen": Top-1 over the windows with one, a hit only when the top
    class is one of their held-out classes (a seen class they also carry does not count:
    the window is scored for what training never saw); "harmonic": 2su / (s + u).
    Accuracies are over windows (not averaged per class); NaN where a side has no window.
    """
    held = np.asarray(held, bool)
    top1 = np.argmax(scores, axis=1)  # the first of tied maxima, as metrics.topk_accuracy
    hit_any = labels[np.arange(len(labels)), top1]
    hit_unseen = hit_any & held[top1]
    unseen_rows = labels[:, held].any(1)
    seen_rows = ~unseen_rows & labels.any(1)
    seen = float(hit_any[seen_rows].mean()) if seen_rows.any() else float("nan")
    unseen = float(hit_unseen[unseen_rows].mean()) if unseen_rows.any() else float("nan")
    return {
        "seen": seen,
        "unseen": unseen,
        "harmonic": metrics.harmonic_mean(seen, unseen),
        "num_seen_windows": int(seen_rows.sum()),
        "num_unseen_windows": int(unseen_rows.sum()),
    }


class Babel60Task(Task):
    """BABEL-60 windows, class names and their descriptions; the action timeline."""

    name = "babel60"
    has_timeline = True

    def data_module(self):
        from wat_jax.data import babel

        return babel

    def prepare(self, config, workdir: str) -> None:
        """Raw data -> DIR/data/; the report counts the windows of zero-shot classes."""
        import jax

        from wat_jax.data import babel

        held = tuple(config.eval.zero_shot_classes)
        report = babel.prepare(config.data, workdir, config.seed, held_out=held)
        if jax.process_index() == 0:  # the short table; the full report is data/report.json
            print(babel.report_table(report))

    def text_keys(self, config, workdir):
        """One key per class, its name the phrase."""
        from wat_jax.text.describe import DescribeKey

        return [DescribeKey(key=c, kind="action", phrase=c) for c in _classes(workdir)]

    def prototypes(self, config, workdir) -> dict:
        """The class texts classification ranks (eval.prototype), for checkpoint metadata."""
        bank = text_bank.load(workdir)
        return common.bank_prototypes(config, bank, list(bank.keys))

    def train_batcher(self, config, workdir, rows) -> Batcher:
        split = prepared.read_split(workdir, "train")
        labels = np.asarray(split.labels) > config.data.threshold
        keep = ~(labels[:, _held_out(config, split.classes)].any(1))
        index = np.flatnonzero(keep)
        if len(index) < config.batch_size:
            raise fail(
                prepared.split_dir(workdir, "train"),
                f"{len(index)} training windows, fewer than batch_size={config.batch_size}",
            )
        if len(index) < len(labels):
            logging.info(
                "zero-shot: %d training windows with held-out classes removed",
                len(labels) - len(index),
            )
        motion, mask = split.motion, split.mask
        if len(index) < len(labels):
            motion, mask = motion[index], mask[index]
        labels = labels[index]
        keys = class_keys(labels, config.data.threshold)
        bank = text_bank.load(workdir)
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

    def layout(self, config) -> dict:
        from wat_jax.data import babel

        return dict(
            frames=int(config.data.window_frames),
            joints=25,
            features=6,
            classes=list(babel.columns(config.data.classes)),
            why="babel60: data.window_frames frames x 25 joints x 6 features",
        )

    def motion_file_kind(self) -> str:
        return "an AMASS .npz"

    def motion_file(self, config, path: str, dims, workdir: str | None = None):
        """An AMASS .npz -> BABEL's deterministic windows of the resampled sequence."""
        if not path.endswith(".npz"):
            return None
        from wat_jax.data import amass, babel

        d = config.data
        # A synthetic run's workdir holds the stand-in body model of its translation row.
        rot6d, trans = amass.sequence_features(amass.load_npz(path), d, workdir)
        window = int(d.window_frames)
        starts = babel.window_starts(
            len(rot6d), int(d.chunk_frames), window, 1, None, partial=bool(d.partial_chunks)
        ) or [0]
        motion = np.zeros((len(starts), window, dims.joints, dims.features), np.float32)
        mask = np.zeros((len(starts), window), bool)
        for i, s in enumerate(starts):
            clip = amass.window_features(rot6d[s : s + window], trans[s : s + window])
            motion[i, : len(clip)], mask[i, : len(clip)] = clip, True
        return motion, mask

    def eval_inputs(self, config, workdir) -> EvalInputs:
        """The val windows and both kinds of class text: names and description centroids."""
        split = prepared.read_split(workdir, "val")
        bank = text_bank.load(workdir)
        if bank.keys != split.classes:
            raise fail(
                text_bank.bank_path(workdir),
                "text bank classes differ from the prepared data; run --mode=embed again",
            )
        texts = {"name": bank.names, "centroid": bank.centroids(normalize=True)}
        labels = np.asarray(split.labels) > config.data.threshold
        return EvalInputs(split.motion, split.mask, labels, split.classes, texts, index=split.index)

    def score(self, config, inputs, motion_emb, text_emb) -> dict:
        """Scores the val windows against name and description-centroid prototypes."""
        classes, labels = inputs.classes, inputs.labels
        main = common.prototype_kind(config)
        results = {
            "by_prototype": {},
            "num_windows": int(len(labels)),
            "prototype": main,
            "describe_backend": config.describe.backend,
        }
        scores = {}
        for kind in ("name", "centroid"):
            scores[kind] = metrics.cosine(motion_emb, text_emb[kind])  # [N, C]
            results["by_prototype"][kind] = score(scores[kind], labels, classes)
        main_scores = scores[main]
        results.update({k: v for k, v in results["by_prototype"][main].items()})
        rand = metrics.random_scores(main_scores.shape, config.seed)
        results["random"] = {
            k: v for k, v in score(rand, labels, classes).items() if k != "per_class_top1"
        }

        held = _held_out(config, classes)
        if held.any():
            # "both": a class's name and its description centroid, their cosines averaged
            scores["both"] = (scores["name"] + scores["centroid"]) / 2
            results["zero_shot"] = {
                "classes": [c for c, h in zip(classes, held) if h],
                "num_windows": int(labels[:, held].any(1).sum()),
                **zero_shot_score(main_scores, labels, classes, held),
                "by_prototype": {
                    kind: zero_shot_score(s, labels, classes, held) for kind, s in scores.items()
                },
                "random": zero_shot_score(rand, labels, classes, held),
            }
        return results

    def picture_texts(self, config) -> str:
        return common.prototype_kind(config)

    def timeline_texts(self, config) -> str:
        return common.prototype_kind(config)

    def timeline_queries(self, config) -> tuple[str, ...]:
        return ("centroid", "name")

    def charts(self, config, inputs, motion_emb, text_emb, results, step):
        main = common.prototype_kind(config)
        main_scores = metrics.cosine(motion_emb, text_emb[main])
        return [
            Confusion(
                metrics.confusion_matrix(main_scores, inputs.labels),
                inputs.classes,
                "confusion",
                f"BABEL val confusion ({main} prototypes), step {step}",
            ),
            Bars(
                results["per_class_top1"],
                "per_class",
                f"Per-class top-1, step {step}",
                "top-1",
                note=PER_CLASS_NOTE,
            ),
        ]


TASK = Babel60Task()
