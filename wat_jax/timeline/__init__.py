"""What happens when: an action timeline over a whole motion, and text queries in time.

    python -m wat_jax.timeline --workdir=RUN --motion=FILE.npz [--query="a person jumps"]
        [--stride_s=0.5] [--smooth_s=0.5] [--top_k=3] [--out=DIR] [--step=N]
    python -m wat_jax.timeline --workdir=RUN --motion=val:3     # the run's 4th val sequence

This module is the timeline's library (the pure functions and evaluation); the
command line is wat_jax/tools/timeline.py, which `python -m wat_jax.timeline` runs.

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

Evaluation (`evaluate_sequences`, called by evaluate.py) runs the same code over whole
val sequences against BABEL's frame labels: frame accuracy, frame mAP and MS-TCN's
segmental F1@{0.1, 0.25, 0.5} (wat_jax/metrics.py), beside random window scores
aggregated the same way. It also asks every class of every sequence as a text query,
once with the class's description centroid and once with its name:

- Grounding (`grounding`): for each class a sequence holds, the query's intervals
  (the runs above, best first) against that class's true segments: R@1 and R@5 at IoU
  0.3, 0.5 and 0.7 (a hit when one of the n best intervals reaches IoU m with one of
  the class's segments) and mIoU (the best-ranked interval's IoU with the segment it
  overlaps most), beside random window scores.
- Not found (`not_found`): a query's score is its curve's peak. The threshold is the
  lowest peak that only FALSE_ALARM (5 %) of the queries for classes a sequence does
  NOT hold reach (metrics.threshold_at_false_alarm), over both kinds of class text
  pooled; the CLI answers a query whose intervals all peak below it with no interval.
  Per kind, recall (present queries that reach the threshold) and false alarms (absent
  ones that do) are measured out of sample: the even sequences' threshold judges the odd
  ones and the other way round.

The CLI reads a run through `wat_jax.load` (config.json and a checkpoint suffice; the
class texts come from the checkpoint's metadata).

Long recordings stay usable (a 2-hour file is 216,000 frames and can hold over a
thousand segments): timeline.json is written without indentation and its per-frame
arrays hold every `frame_every(T, max_frames)`-th frame (`frames.every`; every frame up
to MAX_JSON_FRAMES, 10 minutes at 30 fps), while segments and query intervals keep full
resolution; the printed summary lists the MAX_SUMMARY_SEGMENTS longest segments; the
picture averages the scores over bins of frames (`bin_frames`) so it draws at most
MAX_PICTURE_POINTS points across, whatever the length.
"""

import time

import numpy as np
from absl import logging

from wat_jax import metrics
from wat_jax.errors import fail

STRIDE_S = 0.5
SMOOTH_S = 0.5
TOP_K = 3
QUERY_RELATIVE = 0.5
MAX_SEQUENCES = 64  # eval.timeline_max_sequences: bounds the eval's cost
OVERLAPS = (0.1, 0.25, 0.5)
GROUNDING_KS = (1, 5)  # R@n of the grounding metrics
GROUNDING_IOUS = (0.3, 0.5, 0.7)  # IoU=m of the grounding metrics (TM-Mamba's, MLP's)
FALSE_ALARM = 0.05  # the "not found" threshold: this rate of absent-class queries answered
_EMBED_CHUNK = 2048  # windows embedded per call during evaluation (bounds memory)
MAX_JSON_FRAMES = 18_000  # per-frame rows in timeline.json (10 min at 30 fps); then sampled
MAX_SUMMARY_SEGMENTS = 30  # segments the CLI prints (the longest ones)
MAX_PICTURE_POINTS = 2_000  # points across the picture; longer recordings are binned


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


def interval_frames(
    curve, relative: float = QUERY_RELATIVE, threshold: float | None = None
) -> list[tuple[int, int, int]]:
    """The runs where a query's curve is high, best first: (start, stop, peak) frames.

    A run is a maximal stretch where the curve is at least lo + relative * (hi - lo) (lo,
    hi: the curve's minimum and maximum) or the absolute `threshold` when given; runs are
    ranked by their peak score, earlier first among ties. A flat curve is one run.
    """
    curve = np.asarray(curve, np.float64).reshape(-1)
    if not len(curve):
        return []
    lo, hi = float(curve.min()), float(curve.max())
    cut = threshold if threshold is not None else lo + relative * (hi - lo)
    above = (curve >= cut - 1e-12) if hi - lo > 1e-9 else np.ones(len(curve), bool)
    found = [
        (start, stop, start + int(np.argmax(curve[start:stop])))
        for _, start, stop in metrics.label_runs(np.where(above, 0, -1))
    ]
    found.sort(key=lambda r: (-curve[r[2]], r[0]))
    return found


def query_intervals(
    curve,
    fps: float,
    relative: float = QUERY_RELATIVE,
    threshold: float | None = None,
    found_at: float | None = None,
) -> list[dict]:
    """Ranked time intervals where a query's per-frame curve is high.

    Args:
      curve: [T] the query's per-frame (smoothed) score.
      fps: frames per second.
      relative: the threshold as a fraction of the curve's range, lo + relative * (hi - lo).
      threshold: an absolute threshold instead (cosine), when given.
      found_at: the "not found" threshold (cosine; e.g. the eval's calibrated
        `timeline.not_found.threshold`): intervals whose peak is below it are left out,
        so a query nothing in the sequence reaches gets no interval. None: every run.

    Returns:
      [{"rank", "start_s", "end_s", "peak_s", "score", "mean_score"}] with score the
      interval's peak, best first (ties: earlier first). A flat curve is one interval.
    """
    curve = np.asarray(curve, np.float64).reshape(-1)
    found = [
        dict(
            start_s=round(start / fps, 4),
            end_s=round(stop / fps, 4),
            peak_s=round(peak / fps, 4),
            score=float(curve[peak]),
            mean_score=float(curve[start:stop].mean()),
        )
        for start, stop, peak in interval_frames(curve, relative, threshold)
        if found_at is None or curve[peak] >= found_at
    ]
    return [dict(rank=i + 1, **d) for i, d in enumerate(found)]


def sequence_scores(window_scores, starts, window: int, num_frames: int, smooth_frames: int):
    """Window scores [K, C] -> smoothed per-frame scores [T, C] (aggregate, then smooth)."""
    return smooth(frame_scores(window_scores, starts, window, num_frames), smooth_frames)


def frame_every(num_frames: int, max_frames: int) -> int:
    """The step k that keeps at most `max_frames` of `num_frames` rows (every k-th frame
    from frame 0); 1 when they fit or max_frames <= 0 (no bound)."""
    if max_frames <= 0 or num_frames <= max_frames:
        return 1
    return -(-num_frames // max_frames)


def bin_frames(values, k: int) -> np.ndarray:
    """Means over consecutive bins of k frames along axis 0 (the last bin may be shorter).

    [T, ...] -> [ceil(T / k), ...]; k <= 1 returns the values unchanged (float64).
    """
    values = np.asarray(values, np.float64)
    if k <= 1 or len(values) <= 1:
        return values.copy()
    starts = np.arange(0, len(values), k)
    sums = np.add.reduceat(values, starts, axis=0)
    sizes = np.diff(np.append(starts, len(values))).reshape((-1,) + (1,) * (values.ndim - 1))
    return sums / sizes


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


class _Queries:
    """One kind of query text asked of every sequence: text-to-interval answers.

    Every class is asked of every sequence (its column of the per-frame scores is the
    query's curve). A class the sequence holds is a present query: its ranked intervals
    (interval_frames) against its true segments make the grounding metrics. Every query's
    peak (the curve's maximum) is kept, present or absent, by fold (even and odd
    sequences), for the "not found" threshold and its false alarms.
    """

    def __init__(self):
        self.ranked, self.truths = [], []
        self.peaks = {True: ([], []), False: ([], [])}  # present? -> (fold 0, fold 1)

    def add(self, scores, labels, fold: int):
        true = metrics.multilabel_runs(labels)
        peaks = scores.max(0)  # [C]
        for c in range(scores.shape[1]):
            segs = [(a, b) for k, a, b in true if k == c]
            self.peaks[bool(segs)][fold].append(float(peaks[c]))
            if segs:
                self.ranked.append([(a, b) for a, b, _ in interval_frames(scores[:, c])])
                self.truths.append(segs)

    def grounding(self, ks=GROUNDING_KS, ious=GROUNDING_IOUS) -> dict:
        return metrics.grounding_scores(self.ranked, self.truths, ks, ious)

    def absent(self) -> list[float]:
        return self.peaks[False][0] + self.peaks[False][1]

    def not_found(self, rate: float) -> dict:
        """The threshold over all absent queries, and its recall and false-alarm rate
        measured out of sample: each fold's queries against the other fold's threshold
        (in sample, said by cross_validated=False, when a fold has no absent query)."""
        absent, present = self.absent(), self.peaks[True][0] + self.peaks[True][1]
        if not absent:
            return {"threshold": None, "cross_validated": False}
        out = {"threshold": metrics.threshold_at_false_alarm(absent, rate)}
        if all(self.peaks[False]):
            hits = {True: 0, False: 0}
            for fold in (0, 1):
                cut = metrics.threshold_at_false_alarm(self.peaks[False][1 - fold], rate)
                for present_side in (True, False):
                    hits[present_side] += sum(p >= cut for p in self.peaks[present_side][fold])
            out.update(
                recall=hits[True] / len(present) if present else float("nan"),
                false_alarm=hits[False] / len(absent),
                num_present=len(present),
                num_absent=len(absent),
                cross_validated=True,
            )
        else:
            out.update(metrics.detection_rates(present, absent, out["threshold"]))
            out["cross_validated"] = False
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
    query_vectors: dict | None = None,
    false_alarm: float = FALSE_ALARM,
):
    """The timeline metrics over whole labelled sequences, model beside random.

    Args:
      sequences: data.babel_sequences.Sequence list, each with labels [T, C].
      embed_motion: (motion [N, W, J, F], mask [N, W]) -> [N, E] embeddings.
      class_vectors: [C, E] class text vectors in the joint space (the per-frame classes).
      window: frames per window; fps: frames per second.
      stride_s, smooth_s: window stride and smoothing, in seconds.
      seed: seeds the random baseline's window scores (uniform, one row per window,
        drawn in sequence order).
      overlaps: IoU thresholds of the segmental F1.
      query_vectors: kind -> [C, E] the class texts asked as text-to-interval queries
        (e.g. "centroid" and "name"); None: class_vectors, as kind "class".
      false_alarm: the rate of absent-class queries the "not found" threshold lets through.

    Returns:
      (results, example): results holds frame_acc, frame_mAP, f1@<o> per overlap,
      num_sequences, num_frames (labelled frames scored), num_windows, stride_s,
      smooth_s and `random` with the same metrics; `grounding` (per query kind and for
      random: R@n@m and mIoU over the (sequence, class) queries whose class the sequence
      holds, metrics.grounding_scores) and `not_found` (the threshold on a query's peak
      that `false_alarm` of the absent-class queries reach, over the kinds pooled and per
      kind, with each kind's recall and false-alarm rate out of sample: _Queries). example
      is the sequence with the most true segments (first of ties) as {"sequence",
      "scores"} for a picture.
    """
    from wat_jax.data import babel_sequences

    if not sequences:
        raise fail("timeline", "no labelled val sequence to evaluate")
    if query_vectors is None:
        query_vectors = {"class": class_vectors}
    if "random" in query_vectors:
        raise ValueError("'random' names the baseline; give the query kinds other names")
    stride, smooth_n = frames_of(stride_s, fps), smooth_frames_of(smooth_s, fps)
    rng = np.random.default_rng([seed, 18])
    model, rand = _Tally(overlaps), _Tally(overlaps)
    queries = {kind: _Queries() for kind in [*query_vectors, "random"]}
    example, example_segments = None, -1
    num_windows, num_done = 0, 0
    t0 = time.time()
    group: list = []

    def flush():
        nonlocal example, example_segments, num_done
        batches = [babel_sequences.window_batch(s.rot6d, s.trans, st, window) for s, st in group]
        motion, mask = zip(*batches)
        emb = embed_motion(np.concatenate(motion), np.concatenate(mask))
        cos = metrics.cosine(emb, class_vectors)
        kind_cos = {kind: metrics.cosine(emb, v) for kind, v in query_vectors.items()}
        offset = 0
        for seq, starts in group:
            rows = slice(offset, offset + len(starts))
            offset += len(starts)
            fold = num_done % 2  # even and odd sequences calibrate each other's threshold
            num_done += 1

            args = (starts, window, seq.num_frames, smooth_n)
            scores = sequence_scores(cos[rows], *args)
            model.add(scores, seq.labels)
            noise = sequence_scores(rng.random(cos[rows].shape), *args)
            rand.add(noise, seq.labels)
            queries["random"].add(noise, seq.labels, fold)
            for kind, c in kind_cos.items():
                queries[kind].add(sequence_scores(c[rows], *args), seq.labels, fold)
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
    kinds = list(query_vectors)
    pooled = [p for kind in kinds for p in queries[kind].absent()]
    results = dict(
        model.result(),
        num_sequences=len(sequences),
        num_frames=int(sum(len(s) for s in model.labels)),
        num_windows=int(num_windows),
        stride_s=float(stride_s),
        smooth_s=float(smooth_s),
        random=rand.result(),
        grounding={kind: q.grounding() for kind, q in queries.items()},
        not_found=dict(
            false_alarm_target=float(false_alarm),
            # one threshold for any text (the CLI's free-text queries): the kinds pooled
            threshold=metrics.threshold_at_false_alarm(pooled, false_alarm) if pooled else None,
            **{kind: q.not_found(false_alarm) for kind, q in queries.items()},
        ),
    )
    logging.info(
        "timeline: %d sequences, %d windows in %.1f s",
        len(sequences),
        num_windows,
        time.time() - t0,
    )
    return results, example


def eval_block(
    config, workdir: str, towers, class_vectors, query_vectors: dict | None = None
) -> tuple[dict, dict]:
    """The eval JSON's `timeline` block for a BABEL run (see evaluate_sequences), the
    windows embedded by `towers` (towers.Towers); query_vectors: the class texts asked as
    text-to-interval queries, by kind (e.g. {"centroid": [C, E], "name": [C, E]}).

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
        towers.motion,
        class_vectors,
        int(config.data.window_frames),
        float(config.data.fps),
        float(ev.timeline_stride_s),
        float(ev.timeline_smooth_s),
        int(config.seed),
        query_vectors=query_vectors,
    )
    results["seconds"] = round(time.time() - t0, 2)
    logging.info("timeline: read %d val sequences in %.1f s", len(sequences), read_s)
    return results, example
