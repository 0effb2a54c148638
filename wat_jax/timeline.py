"""What happens when: an action timeline over a whole motion, and text queries in time.

    python -m wat_jax.timeline --workdir=RUN --motion=FILE.npz [--query="a person jumps"]
        [--stride_s=0.5] [--smooth_s=0.5] [--top_k=3] [--out=DIR] [--step=N]
    python -m wat_jax.timeline --workdir=RUN --motion=val:3     # the run's 4th val sequence

A trained BABEL-task run classifies fixed windows (2 s at 30 fps). Over a whole
recording the motion tower slides with a stride, and the window scores become
per-frame scores:

- Windows: `window` frames starting every `stride` frames from frame 0 (stride =
  round(stride_s * fps)); when the last start leaves frames uncovered, one more window
  ends on the last frame. A sequence shorter than a window gets one window, padded
  with zeros and masked (the model never sees the padding).
- Aggregation: a frame's score for class c is the MEAN of the scores of the windows
  that cover it (cosine of the window's embedding to class c's text vector). With a
  0.5 s stride and 2 s windows an inner frame averages 4 windows.
- Smoothing: a centred moving average over `smooth_frames` frames (round(smooth_s *
  fps), made odd; 0 or 1: none); near the ends it averages the frames that exist. It
  takes the stride's steps out of the curves, so a change of class lands between two
  window starts instead of on one.
- Per frame: the top-k classes by smoothed score. Segments: maximal runs of the same
  top-1 class, [start_s, end_s) with end_s = stop frame / fps, scored by the mean of
  that class's smoothed score over the run.
- A text query is scored like a class: window cosines to the query's vector,
  aggregated and smoothed the same way, give a per-frame curve. Its intervals are the
  maximal runs where the curve is at least lo + relative * (hi - lo) (lo, hi: the
  curve's minimum and maximum over the sequence; relative 0.5 by default) or an
  absolute `threshold`, ranked by their peak score. Cosines are not calibrated across
  texts, hence a threshold relative to the sequence's own range.

Evaluation (`evaluate_sequences`, called by tasks/babel60.py's evaluate) runs the same
code over whole val sequences against BABEL's frame labels: frame accuracy, frame mAP
and MS-TCN's segmental F1@{0.1, 0.25, 0.5} (wat_jax/metrics.py), beside random window
scores aggregated the same way.

The CLI reads a run through `wat_jax.load` (config.json and a checkpoint suffice; the
class texts come from the checkpoint's metadata).
"""

import os
import time

import numpy as np
from absl import logging

from wat_jax import io, metrics
from wat_jax.errors import fail

STRIDE_S = 0.5
SMOOTH_S = 0.5
TOP_K = 3
QUERY_RELATIVE = 0.5
MAX_SEQUENCES = 64  # eval.timeline_max_sequences: bounds the eval's cost
OVERLAPS = (0.1, 0.25, 0.5)
_EMBED_CHUNK = 2048  # windows embedded per call during evaluation (bounds memory)


# ---- pure functions ------------------------------------------------------------------


def window_starts(num_frames: int, window: int, stride: int) -> np.ndarray:
    """Start frames [K] of the windows that cover a sequence (see the module docstring)."""
    if num_frames < 1 or window < 1 or stride < 1:
        raise ValueError(f"need positive sizes, got {num_frames=}, {window=}, {stride=}")
    if num_frames <= window:
        return np.zeros(1, np.int64)
    starts = np.arange(0, num_frames - window + 1, stride, dtype=np.int64)
    if starts[-1] + window < num_frames:
        starts = np.append(starts, num_frames - window)
    return starts


def frame_scores(window_scores, starts, window: int, num_frames: int) -> np.ndarray:
    """Per-frame scores [T, C]: the mean of the scores of the windows covering each frame.

    Args:
      window_scores: [K, C] one row per window.
      starts: [K] window start frames; window k covers [starts[k], starts[k] + window).
      window: frames per window.
      num_frames: T.

    Returns:
      [T, C] float64; a frame no window covers gets NaN.
    """
    window_scores = np.asarray(window_scores, np.float64)
    starts = np.asarray(starts, np.int64)
    if window_scores.ndim != 2 or len(window_scores) != len(starts):
        raise ValueError(f"window_scores {window_scores.shape} do not match {len(starts)} starts")
    stops = np.minimum(starts + window, num_frames)
    total = np.zeros((num_frames + 1, window_scores.shape[1]))
    count = np.zeros(num_frames + 1)
    np.add.at(total, starts, window_scores)
    np.add.at(total, stops, -window_scores)
    np.add.at(count, starts, 1)
    np.add.at(count, stops, -1)
    total, count = np.cumsum(total, 0)[:num_frames], np.cumsum(count)[:num_frames]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count[:, None] > 0, total / count[:, None], np.nan)


def smooth(scores, frames: int) -> np.ndarray:
    """Centred moving average over `frames` frames (made odd) along axis 0.

    Near the ends the average is over the frames inside the sequence, so a constant
    curve stays constant. frames <= 1 returns the scores unchanged.
    """
    scores = np.asarray(scores, np.float64)
    if frames <= 1 or len(scores) <= 1:
        return scores.copy()
    half = int(frames) // 2
    t = len(scores)
    padded = np.concatenate([np.zeros((1,) + scores.shape[1:]), np.cumsum(scores, 0)])
    lo = np.clip(np.arange(t) - half, 0, t)
    hi = np.clip(np.arange(t) + half + 1, 0, t)
    width = (hi - lo).reshape((-1,) + (1,) * (scores.ndim - 1))
    return (padded[hi] - padded[lo]) / width


def top_k(scores, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the k best classes (ties in class order) and their scores, [T, k] each."""
    scores = np.asarray(scores, np.float64)
    k = min(int(k), scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, 1)


def segments(scores, fps: float, classes=None) -> list[dict]:
    """Runs of the same top-1 class as [start_s, end_s) segments.

    Args:
      scores: [T, C] per-frame (smoothed) class scores.
      fps: frames per second.
      classes: optional C names; segments carry the name, else the index.

    Returns:
      [{"start_s", "end_s", "start_frame", "end_frame", "class", "score"}] in time
      order; end_frame is exclusive and score is the mean of the class's score over it.
    """
    scores = np.asarray(scores, np.float64)
    best = np.argmax(scores, 1)
    out = []
    for cls, start, stop in metrics.label_runs(best):
        out.append(
            dict(
                start_s=round(start / fps, 4),
                end_s=round(stop / fps, 4),
                start_frame=start,
                end_frame=stop,
                **{"class": classes[cls] if classes is not None else cls},
                score=float(scores[start:stop, cls].mean()),
            )
        )
    return out


def query_intervals(
    curve, fps: float, relative: float = QUERY_RELATIVE, threshold: float | None = None
) -> list[dict]:
    """Ranked time intervals where a query's per-frame curve is high.

    Args:
      curve: [T] the query's per-frame (smoothed) score.
      fps: frames per second.
      relative: the threshold as a fraction of the curve's range, lo + relative * (hi - lo).
      threshold: an absolute threshold instead (cosine), when given.

    Returns:
      [{"rank", "start_s", "end_s", "peak_s", "score", "mean_score"}] with score the
      interval's peak, best first (ties: earlier first). A flat curve is one interval.
    """
    curve = np.asarray(curve, np.float64).reshape(-1)
    if not len(curve):
        return []
    lo, hi = float(curve.min()), float(curve.max())
    cut = threshold if threshold is not None else lo + relative * (hi - lo)
    above = (curve >= cut - 1e-12) if hi - lo > 1e-9 else np.ones(len(curve), bool)
    runs = metrics.label_runs(np.where(above, 0, -1))
    found = []
    for _, start, stop in runs:
        peak = start + int(np.argmax(curve[start:stop]))
        found.append(
            dict(
                start_s=round(start / fps, 4),
                end_s=round(stop / fps, 4),
                peak_s=round(peak / fps, 4),
                score=float(curve[peak]),
                mean_score=float(curve[start:stop].mean()),
            )
        )
    found.sort(key=lambda d: (-d["score"], d["start_s"]))
    return [dict(rank=i + 1, **d) for i, d in enumerate(found)]


def sequence_scores(window_scores, starts, window: int, num_frames: int, smooth_frames: int):
    """Window scores [K, C] -> smoothed per-frame scores [T, C] (aggregate, then smooth)."""
    return smooth(frame_scores(window_scores, starts, window, num_frames), smooth_frames)


def frames_of(seconds: float, fps: float) -> int:
    return max(1, int(round(float(seconds) * fps)))


def smooth_frames_of(seconds: float, fps: float) -> int:
    n = int(round(float(seconds) * fps))
    return n + 1 if n > 1 and n % 2 == 0 else n


# ---- evaluation over whole val sequences ----------------------------------------------


class _Tally:
    """Frame scores, labels and segment counts accumulated over sequences."""

    def __init__(self, overlaps):
        self.scores, self.labels = [], []
        self.counts = {o: np.zeros(3, np.int64) for o in overlaps}

    def add(self, scores, labels):
        keep = labels.any(1)
        self.scores.append(scores[keep].astype(np.float32))
        self.labels.append(labels[keep])
        for o, c in metrics.segmental_counts(
            np.argmax(scores, 1), labels, tuple(self.counts)
        ).items():
            self.counts[o] += c

    def result(self) -> dict:
        scores, labels = np.concatenate(self.scores), np.concatenate(self.labels)
        out = {
            "frame_acc": metrics.frame_accuracy(scores, labels),
            "frame_mAP": metrics.frame_map(scores, labels),
        }
        for o, (tp, fp, fn) in self.counts.items():
            out[f"f1@{o:g}"] = metrics.f1_score(tp, fp, fn)
        return out


def evaluate_sequences(
    sequences,
    embed_motion,
    class_vectors,
    window: int,
    fps: float,
    stride_s: float = STRIDE_S,
    smooth_s: float = SMOOTH_S,
    seed: int = 0,
    overlaps=OVERLAPS,
):
    """The timeline metrics over whole labelled sequences, model beside random.

    Args:
      sequences: data.babel_sequences.Sequence list, each with labels [T, C].
      embed_motion: (motion [N, W, J, F], mask [N, W]) -> [N, E] embeddings.
      class_vectors: [C, E] class text vectors in the joint space.
      window: frames per window; fps: frames per second.
      stride_s, smooth_s: window stride and smoothing, in seconds.
      seed: seeds the random baseline's window scores (uniform, one row per window,
        drawn in sequence order).
      overlaps: IoU thresholds of the segmental F1.

    Returns:
      (results, example): results holds frame_acc, frame_mAP, f1@<o> per overlap,
      num_sequences, num_frames (labelled frames scored), num_windows, stride_s,
      smooth_s and `random` with the same metrics; example is the sequence with the
      most true segments (first of ties) as {"sequence", "scores"} for a picture.
    """
    from wat_jax.data import babel_sequences

    if not sequences:
        raise fail("timeline", "no labelled val sequence to evaluate")
    stride, smooth_n = frames_of(stride_s, fps), smooth_frames_of(smooth_s, fps)
    rng = np.random.default_rng([seed, 18])
    model, rand = _Tally(overlaps), _Tally(overlaps)
    example, example_segments = None, -1
    num_windows = 0
    t0 = time.time()
    group: list = []

    def flush():
        nonlocal example, example_segments
        batches = [babel_sequences.window_batch(s.rot6d, s.trans, st, window) for s, st in group]
        motion, mask = zip(*batches)
        emb = embed_motion(np.concatenate(motion), np.concatenate(mask))
        cos = metrics.cosine(emb, class_vectors)
        offset = 0
        for seq, starts in group:
            win = cos[offset : offset + len(starts)]
            offset += len(starts)
            scores = sequence_scores(win, starts, window, seq.num_frames, smooth_n)
            model.add(scores, seq.labels)
            noise = rng.random(win.shape)
            rand.add(sequence_scores(noise, starts, window, seq.num_frames, smooth_n), seq.labels)
            n_true = len(metrics.multilabel_runs(seq.labels))
            if n_true > example_segments:
                example, example_segments = {"sequence": seq, "scores": scores}, n_true
        group.clear()

    pending = 0
    for seq in sequences:
        starts = window_starts(seq.num_frames, window, stride)
        group.append((seq, starts))
        pending += len(starts)
        num_windows += len(starts)
        if pending >= _EMBED_CHUNK:
            flush()
            pending = 0
    if group:
        flush()
    results = dict(
        model.result(),
        num_sequences=len(sequences),
        num_frames=int(sum(len(s) for s in model.labels)),
        num_windows=int(num_windows),
        stride_s=float(stride_s),
        smooth_s=float(smooth_s),
        random=rand.result(),
    )
    logging.info(
        "timeline: %d sequences, %d windows in %.1f s",
        len(sequences),
        num_windows,
        time.time() - t0,
    )
    return results, example


def eval_block(config, workdir: str, embedder, class_vectors) -> tuple[dict, dict]:
    """The eval JSON's `timeline` block for a BABEL run (see evaluate_sequences).

    Reads at most eval.timeline_max_sequences val sequences (evenly spaced over the
    sorted sids; default MAX_SEQUENCES) from the run's raw data, strides
    eval.timeline_stride_s and smooths eval.timeline_smooth_s (defaults STRIDE_S,
    SMOOTH_S).
    """
    from wat_jax.data import babel_sequences

    ev = config.eval
    t0 = time.time()
    sequences = babel_sequences.read_sequences(
        config.data, workdir, "val", int(ev.timeline_max_sequences)
    )
    read_s = time.time() - t0
    results, example = evaluate_sequences(
        sequences,
        embedder.motion,
        class_vectors,
        int(config.data.window_frames),
        float(config.data.fps),
        float(ev.timeline_stride_s),
        float(ev.timeline_smooth_s),
        int(config.seed),
    )
    results["seconds"] = round(time.time() - t0, 2)
    logging.info("timeline: read %d val sequences in %.1f s", len(sequences), read_s)
    return results, example


# ---- a trained run, the CLI -----------------------------------------------------------


def _babel_config(workdir: str):
    """The run's config; InputError unless it is a BABEL-task run."""
    from wat_jax import workdir as run_dir

    config = run_dir.load_config(workdir)
    if config.task != "babel60":
        raise fail(
            os.path.join(workdir, "config.json"),
            f"the timeline needs a BABEL-task run (task babel60), this is {config.task!r}",
        )
    return config


def _open_run(workdir: str, step: int | None = None):
    """The run at `workdir` (checkpoint `step`, newest when None) through wat_jax.load."""
    import wat_jax

    _babel_config(workdir)
    return wat_jax.load(workdir, step)


def _split_index(motion: str) -> tuple[str, int] | None:
    """("val", K) for --motion=val:K (or train:K), None for a file path."""
    split, sep, index = motion.partition(":")
    if not sep or split not in ("val", "train") or os.path.exists(motion):
        return None
    try:
        return split, int(index)
    except ValueError:
        raise fail("--motion", f"{motion!r}: expected {split}:K with K an integer") from None


def read_motion(config, workdir: str, motion: str):
    """The --motion argument as a Sequence: an AMASS .npz, or `val:K` / `train:K`.

    Frame labels come with it when it is one of the run's BABEL sequences.
    """
    from wat_jax.data import babel_sequences

    data = config.data
    picked = _split_index(motion)
    if picked:
        return babel_sequences.sequence_at(data, workdir, *picked)
    if not os.path.isfile(motion):
        raise fail(motion, "no such file (give an AMASS .npz, or val:K for a val sequence)")
    rot6d, trans = babel_sequences.load_features(motion, float(data.fps))
    sid, labels = babel_sequences.labels_for_file(data, workdir, motion, len(rot6d))
    return babel_sequences.Sequence(sid or "", motion, rot6d, trans, labels)


def check_options(query, stride_s, smooth_s, k, window_s=None) -> None:
    """InputError for a bad CLI option (window_s: the run's window, when known)."""
    if not stride_s > 0:
        raise fail("--stride_s", f"must be positive, got {stride_s}")
    if window_s is not None and stride_s > window_s + 1e-9:
        raise fail("--stride_s", f"must be at most the window, {window_s:g} s; got {stride_s}")
    if not smooth_s >= 0:
        raise fail("--smooth_s", f"must be >= 0, got {smooth_s}")
    if k < 1:
        raise fail("--top_k", f"must be at least 1, got {k}")
    if query is not None and not query.strip():
        raise fail("--query", "empty query; give a sentence such as 'a person jumps'")


def run_timeline(
    run,
    seq,
    query: str | None = None,
    stride_s: float = STRIDE_S,
    smooth_s: float = SMOOTH_S,
    k: int = TOP_K,
    relative: float = QUERY_RELATIVE,
) -> dict:
    """The timeline of one sequence: per-frame top-k, segments, ground truth, a query.

    Returns:
      The timeline.json object; "_scores" and "_curve" hold the arrays for the picture.
    """
    from wat_jax.data import babel_sequences

    fps = float(run.config.data.fps)
    window = int(run.config.data.window_frames)
    check_options(query, stride_s, smooth_s, k, window / fps)
    stride, smooth_n = frames_of(stride_s, fps), smooth_frames_of(smooth_s, fps)
    starts = window_starts(seq.num_frames, window, stride)
    motion, mask = babel_sequences.window_batch(seq.rot6d, seq.trans, starts, window)
    emb = run.embed_motion(motion, mask)
    scores = sequence_scores(emb @ run.class_vectors.T, starts, window, seq.num_frames, smooth_n)
    idx, val = top_k(scores, k)
    classes = run.classes
    out = dict(
        step=int(run.step),
        sid=seq.sid or None,
        source=seq.feat_p,
        fps=fps,
        num_frames=int(seq.num_frames),
        duration_s=round(seq.num_frames / fps, 4),
        window_frames=window,
        stride_s=float(stride_s),
        smooth_s=float(smooth_s),
        num_windows=int(len(starts)),
        classes=list(classes),
        frames=dict(
            time_s=[round(i / fps, 4) for i in range(seq.num_frames)],
            top_k=[[classes[j] for j in row] for row in idx.tolist()],
            scores=np.round(val, 5).tolist(),
        ),
        segments=segments(scores, fps, classes),
        ground_truth=None,
        query=None,
        _scores=scores,
        _curve=None,
    )
    if seq.labels is not None:
        true = [
            dict(
                start_s=round(a / fps, 4),
                end_s=round(b / fps, 4),
                start_frame=a,
                end_frame=b,
                **{"class": classes[c]},
            )
            for c, a, b in sorted(metrics.multilabel_runs(seq.labels), key=lambda r: (r[1], r[0]))
        ]
        counts = metrics.segmental_counts(np.argmax(scores, 1), seq.labels, OVERLAPS)
        labelled = seq.labels.any(1)
        out["ground_truth"] = dict(
            segments=true,
            labels=[[classes[c] for c in np.flatnonzero(row)] for row in seq.labels],
            frame_acc=metrics.frame_accuracy(scores, seq.labels) if labelled.any() else None,
            **{f"f1@{o:g}": metrics.f1_score(*c) for o, c in counts.items()},
        )
    if query is not None:
        qvec = run.embed_text([query])  # [1, E]
        curve = sequence_scores(emb @ qvec.T, starts, window, seq.num_frames, smooth_n)[:, 0]
        out["query"] = dict(
            text=query,
            relative_threshold=relative,
            curve=np.round(curve, 5).tolist(),
            intervals=query_intervals(curve, fps, relative),
        )
        out["_curve"] = curve
    return out


def write_outputs(answer: dict, out_dir: str, title: str) -> tuple[str, str]:
    """Writes out_dir/timeline.json and out_dir/timeline.png; returns their paths."""
    from wat_jax import plots

    json_path = os.path.join(out_dir, "timeline.json")
    png_path = os.path.join(out_dir, "timeline.png")
    io.write_json(json_path, {k: v for k, v in answer.items() if not k.startswith("_")})
    truth = answer["ground_truth"]
    plots.timeline_png(
        answer["_scores"],
        answer["classes"],
        answer["fps"],
        png_path,
        title,
        true_segments=truth["segments"] if truth else None,
        query=(answer["query"]["text"], answer["_curve"], answer["query"]["intervals"])
        if answer["query"]
        else None,
    )
    return json_path, png_path


def format_summary(answer: dict, paths) -> str:
    lines = [
        f"{answer['source']}: {answer['duration_s']:.1f} s, {answer['num_windows']} windows "
        f"(stride {answer['stride_s']:g} s), step {answer['step']}"
    ]
    lines.append(f"{'start_s':>8}  {'end_s':>8}  {'score':>7}  class")
    for s in answer["segments"]:
        lines.append(f"{s['start_s']:8.2f}  {s['end_s']:8.2f}  {s['score']:7.4f}  {s['class']}")
    truth = answer["ground_truth"]
    if truth:
        f1 = ", ".join(f"{k} {truth[k]:.3f}" for k in truth if k.startswith("f1@"))
        acc = truth["frame_acc"]
        lines.append(
            f"ground truth (BABEL sid {answer['sid']}): {len(truth['segments'])} segments; "
            f"frame accuracy {acc if acc is None else round(acc, 3)}, {f1}"
        )
    if answer["query"]:
        q = answer["query"]
        lines.append(f"query {q['text']!r}:")
        for i in q["intervals"][:10]:
            lines.append(
                f"{i['rank']:>4}  {i['start_s']:7.2f} - {i['end_s']:7.2f} s  peak "
                f"{i['peak_s']:.2f} s  score {i['score']:.4f}"
            )
    lines += [f"wrote {p}" for p in paths]
    return "\n".join(lines)


def main(argv):
    import sys

    from absl import flags

    from wat_jax.errors import InputError
    from wat_jax.run_log import quiet_library_logs

    FLAGS = flags.FLAGS
    quiet_library_logs()
    try:
        if len(argv) > 1:
            raise fail("wat_jax.timeline", f"unexpected arguments {argv[1:]}")
        if not FLAGS.workdir:
            raise fail("--workdir", "required: the trained BABEL run")
        if not FLAGS.motion:
            raise fail("--motion", "required: an AMASS .npz, or val:K for a val sequence")
        check_options(FLAGS.query, FLAGS.stride_s, FLAGS.smooth_s, FLAGS.top_k)
        if not _split_index(FLAGS.motion) and not os.path.isfile(FLAGS.motion):
            raise fail(
                FLAGS.motion, "no such file (give an AMASS .npz, or val:K for a val sequence)"
            )
        # The motion is read before the model is restored, so bad input fails fast.
        seq = read_motion(_babel_config(FLAGS.workdir), FLAGS.workdir, FLAGS.motion)
        run = _open_run(FLAGS.workdir, FLAGS.step if FLAGS.step >= 0 else None)
        answer = run_timeline(
            run, seq, FLAGS.query, FLAGS.stride_s, FLAGS.smooth_s, FLAGS.top_k, FLAGS.relative
        )
        stem = os.path.splitext(os.path.basename(FLAGS.motion.replace(":", "_")))[0]
        out_dir = FLAGS.out or os.path.join(FLAGS.workdir, "timeline", stem)
        title = f"{os.path.basename(seq.feat_p)} (step {run.step})"
        paths = write_outputs(answer, out_dir, title)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(format_summary(answer, paths))


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "A trained BABEL-task run (config.json, checkpoints).")
    flags.DEFINE_string("motion", None, "An AMASS .npz, or val:K / train:K (the run's data).")
    flags.DEFINE_string("query", None, "A text query answered with time intervals.")
    flags.DEFINE_float("stride_s", STRIDE_S, "Seconds between window starts.")
    flags.DEFINE_float("smooth_s", SMOOTH_S, "Moving-average length of the per-frame scores.")
    flags.DEFINE_integer("top_k", TOP_K, "Classes per frame in timeline.json.")
    flags.DEFINE_float("relative", QUERY_RELATIVE, "Query threshold within the curve's range.")
    flags.DEFINE_string("out", "", "Output folder (default WORKDIR/timeline/<motion name>).")
    flags.DEFINE_integer("step", -1, "Checkpoint step; -1: latest.")
    app.run(main)
