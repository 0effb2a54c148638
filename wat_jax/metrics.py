"""Classification and retrieval metrics on host arrays (numpy).

Conventions shared by every function:
- Scores are [Q, N]: one row per query, one column per gallery item. For
  classification the queries are windows and the gallery is the C classes.
- Ranking is by descending score with ties in gallery order (a stable sort), so
  every metric is deterministic.
- A per-query value that is undefined (no relevant item, zero ideal DCG) is NaN;
  the aggregates average over the defined ones.
- Queries are processed in chunks of about `_CHUNK_ELEMENTS` scores, so a
  gallery of ~200k items against a few hundred queries needs no more than tens
  of MB of temporaries beyond the inputs, and no Python loop runs per item.

Top-1-norm for multi-label windows: a window is correct when its top-1 class is
in its label set (MotionCLIP's rule, as for Top-k). `per_class_top1[c]` is the
fraction of windows whose label set contains c that are correct, and
`top1_norm` is the mean over classes that have windows. With one label per
window this is BABEL's class-balanced Top-1 (mean per-class recall); with
several, Top-1-norm re-weights exactly the correctness that Top-1 counts. The
stricter per-class recall (top-1 == c) is `diag / row sum` of
`confusion_matrix`.
"""

import numpy as np

_CHUNK_ELEMENTS = 1 << 21


def unit_rows(x, dtype=np.float32) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as `dtype`."""
    x = np.asarray(x, dtype)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine(a, b) -> np.ndarray:
    """Cosine similarity [N, M] between the rows of a [N, D] and b [M, D]."""
    return unit_dot(unit_rows(a), unit_rows(b))


def unit_dot(a, b) -> np.ndarray:
    """a [N, D] @ b [M, D].T as float32, each entry the same whichever rows it comes with.

    A float32 BLAS product sums in an order (and with or without fused multiply-adds) that
    depends on the matrices' shapes and the CPU's kernels, so one row's scores can move by
    an ulp when it is computed in a block of rows instead of the whole matrix, which
    reorders tied scores. Summed in float64 (float32 products are exact there) and rounded
    to float32, those differences (~1e-16) vanish, so blocked scoring ranks as the whole.
    """
    out = np.asarray(a, np.float64) @ np.asarray(b, np.float64).T
    return out.astype(np.float32)


def chunk_rows(row_len: int) -> int:
    """How many rows of a [Q, row_len] input the metrics process together."""
    return max(1, _CHUNK_ELEMENTS // max(row_len, 1))


def _row_chunks(num_rows, row_len):
    """Slices over rows holding about _CHUNK_ELEMENTS entries each."""
    step = chunk_rows(row_len)
    for start in range(0, num_rows, step):
        yield slice(start, min(start + step, num_rows))


def _as_scores(scores):
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [queries, gallery], got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    # Checked a chunk of rows at a time: a [Q, N] bool temporary is what chunking avoids.
    for rows in _row_chunks(*scores.shape):
        if np.isnan(scores[rows]).any():
            raise ValueError("scores contain NaN; rankings would be undefined")
    return scores


def _as_matching(scores, other, name, dtype):
    other = np.asarray(other, dtype=dtype)
    if other.shape != scores.shape:
        raise ValueError(f"{name} has shape {other.shape}, scores have shape {scores.shape}")
    return other


def _same_shape(scores, other, name):
    """`other` as an array of any dtype, shape-checked against scores, not copied.

    The metrics convert it a chunk of rows at a time (`np.asarray(other[rows], dtype)`),
    so their extra memory stays O(chunk), not O(Q x N).
    """
    other = np.asarray(other)
    if other.shape != scores.shape:
        raise ValueError(f"{name} has shape {other.shape}, scores have shape {scores.shape}")
    return other


def block_rows(row_len: int, min_rows: int = 32) -> int:
    """Rows of a [Q, row_len] score matrix to build at a time: a multiple of the rows the
    metrics process together (so a block's metrics see exactly the chunks the whole matrix
    would give them), and at least `min_rows` (a one-row product takes another BLAS path,
    whose last bits can differ from the matrix product's)."""
    step = chunk_rows(row_len)
    return step * -(-max(min_rows, 1) // step)


def row_blocks(num_rows: int, rows: int):
    """Slices over `num_rows` rows, `rows` at a time; a last block of one row joins the
    block before it (a one-row matrix product takes another BLAS path)."""
    starts = list(range(0, num_rows, max(rows, 1)))
    if len(starts) > 1 and num_rows - starts[-1] == 1:
        starts.pop()
    for start, stop in zip(starts, starts[1:] + [num_rows]):
        yield slice(start, stop)


def top_k(scores, k):
    """Indices [q, min(k, n)] of each row's k best items in rank order (ties in gallery order)."""
    scores = np.asarray(scores)
    num_rows, n = scores.shape
    k = min(k, n)
    if k == n:
        return np.argsort(-scores, axis=1, kind="stable")
    # The k-th largest score per row; everything above it is in, and ties at it
    # are filled in gallery order, which is what a stable full sort would keep.
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]  # [q, 1]
    above = scores > kth
    at_kth = scores == kth
    room = k - above.sum(axis=1, keepdims=True)
    take = above | (at_kth & (np.cumsum(at_kth, axis=1) <= room))
    picked = np.nonzero(take)[1].reshape(num_rows, k)  # ascending gallery order per row
    order = np.argsort(-np.take_along_axis(scores, picked, axis=1), axis=1, kind="stable")
    return np.take_along_axis(picked, order, axis=1)


def nan_mean(values) -> float:
    """The mean of the values that are not NaN (NaN if none is): how aggregates skip
    undefined per-query values."""
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    return float(values[defined].mean()) if defined.any() else float("nan")


def topk_accuracy(scores, labels, k):
    """Fraction of labelled windows with ANY ground-truth class among their top k.

    Args:
      scores: [N, C] window-to-class scores.
      labels: [N, C] bool label sets.
      k: how many top classes count.

    Returns:
      A float in [0, 1]; windows without labels are excluded (NaN if none has one).
    """
    scores = _as_scores(scores)
    labels = _as_matching(scores, labels, "labels", bool)
    hits = np.zeros(scores.shape[0], bool)
    for rows in _row_chunks(*scores.shape):
        top = top_k(scores[rows], k)
        hits[rows] = np.take_along_axis(labels[rows], top, axis=1).any(axis=1)
    labelled = labels.any(axis=1)
    return float(hits[labelled].mean()) if labelled.any() else float("nan")


def per_class_top1(scores, labels):
    """Per class c: the fraction of windows containing c whose top-1 class is in their set.

    Args:
      scores: [N, C] window-to-class scores.
      labels: [N, C] bool label sets.

    Returns:
      [C] float64, NaN for classes without windows. See the module docstring.
    """
    scores = _as_scores(scores)
    labels = _as_matching(scores, labels, "labels", bool)
    top1 = np.argmax(scores, axis=1)  # argmax keeps the first of tied maxima, like a stable sort
    correct = labels[np.arange(scores.shape[0]), top1]  # [N]
    windows = labels.sum(axis=0)  # [C]
    hits = (labels & correct[:, None]).sum(axis=0)
    return np.where(windows > 0, hits / np.maximum(windows, 1), np.nan)


def top1_norm(scores, labels):
    """Class-balanced Top-1: the mean of `per_class_top1` over classes that have windows."""
    return nan_mean(per_class_top1(scores, labels))


def average_precision(scores, relevant):
    """Average precision of each query's full ranking.

    AP = (1/R) * sum over relevant items of precision at that item's rank.

    Args:
      scores: [Q, N] query-to-gallery scores.
      relevant: [Q, N] bool.

    Returns:
      [Q] float64, NaN where a query has no relevant item.
    """
    scores = _as_scores(scores)
    relevant = _same_shape(scores, relevant, "relevant")
    ranks = np.arange(1, scores.shape[1] + 1)
    result = np.empty(scores.shape[0])
    for rows in _row_chunks(*scores.shape):
        order = np.argsort(-scores[rows], axis=1, kind="stable")
        chunk = np.asarray(relevant[rows], bool)
        ranked = np.take_along_axis(chunk, order, axis=1)  # [q, N] in rank order
        precision = np.cumsum(ranked, axis=1) / ranks
        num_relevant = ranked.sum(axis=1)
        total = np.where(ranked, precision, 0.0).sum(axis=1)
        result[rows] = np.where(num_relevant > 0, total / np.maximum(num_relevant, 1), np.nan)
    return result


def mean_average_precision(scores, relevant):
    """Mean AP over queries with at least one relevant item (NaN if none has one).

    For BABEL call it with classes as queries: `(scores.T, labels.T)`, per-class AP
    over windows.
    """
    return nan_mean(average_precision(scores, relevant))


def ndcg_at_k(scores, gains, k):
    """Normalised discounted cumulative gain of each query's top k.

    DCG@k = sum over ranks r = 1..k of gain / log2(r + 1); the ideal DCG ranks the
    query's gains in decreasing order.

    Args:
      scores: [Q, N] query-to-gallery scores.
      gains: [Q, N] graded relevance >= 0 (e.g. `jaccard_gains`).
      k: cut-off.

    Returns:
      [Q] float64, NaN where the ideal DCG is 0.
    """
    scores = _as_scores(scores)
    gains = _same_shape(scores, gains, "gains")
    for rows in _row_chunks(*scores.shape):  # all checked before any is scored
        if (np.asarray(gains[rows], np.float64) < 0).any():
            raise ValueError("gains must be >= 0")
    depth = min(k, scores.shape[1])
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))  # [k]
    result = np.empty(scores.shape[0])
    for rows in _row_chunks(*scores.shape):
        chunk_gains = np.asarray(gains[rows], np.float64)
        top = top_k(scores[rows], depth)
        dcg = np.take_along_axis(chunk_gains, top, axis=1) @ discounts
        best = -np.partition(-chunk_gains, depth - 1, axis=1)[:, :depth]
        ideal = -np.sort(-best, axis=1) @ discounts
        result[rows] = np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), np.nan)
    return result


def recall_at_k(scores, relevant, k):
    """Per query, 1 if any relevant item is in the top k, else 0 (a hit rate).

    Args:
      scores: [Q, N] query-to-gallery scores.
      relevant: [Q, N] bool.
      k: cut-off.

    Returns:
      [Q] float64, NaN where a query has no relevant item.
    """
    scores = _as_scores(scores)
    relevant = _same_shape(scores, relevant, "relevant")
    result = np.empty(scores.shape[0])
    for rows in _row_chunks(*scores.shape):
        top = top_k(scores[rows], k)
        chunk = np.asarray(relevant[rows], bool)
        hit = np.take_along_axis(chunk, top, axis=1).any(axis=1)
        result[rows] = np.where(chunk.any(axis=1), hit, np.nan)
    return result


def jaccard_gains(query_sets, gallery_sets):
    """Graded relevance: the Jaccard overlap of query and gallery label sets.

    Args:
      query_sets: [Q, C] bool.
      gallery_sets: [N, C] bool.

    Returns:
      [Q, N] float32 in [0, 1]; 0 where both sets are empty.
    """
    queries = np.asarray(query_sets, dtype=bool).astype(np.float32)
    gallery = np.asarray(gallery_sets, dtype=bool).astype(np.float32)
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"label sets must be [Q, C] and [N, C], got {queries.shape} and {gallery.shape}"
        )
    query_sizes = queries.sum(axis=1)
    gallery_sizes = gallery.sum(axis=1)
    result = np.empty((queries.shape[0], gallery.shape[0]), np.float32)
    for rows in _row_chunks(queries.shape[0], gallery.shape[0]):
        # Counts of 0/1 entries are exact in float32 (below 2**24).
        inter = queries[rows] @ gallery.T
        union = query_sizes[rows, None] + gallery_sizes[None, :] - inter
        result[rows] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return result


def confusion_matrix(scores, labels):
    """Counts [C, C]: rows the ground-truth class, columns the top-1 prediction.

    A window is counted once for EACH class in its label set (so a row sums to the
    number of windows containing that class); windows without labels are not
    counted.

    Args:
      scores: [N, C] window-to-class scores.
      labels: [N, C] bool label sets.

    Returns:
      [C, C] int64.
    """
    scores = _as_scores(scores)
    labels = _as_matching(scores, labels, "labels", bool)
    num_classes = scores.shape[1]
    top1 = np.argmax(scores, axis=1)
    windows, classes = np.nonzero(labels)
    flat = np.bincount(classes * num_classes + top1[windows], minlength=num_classes**2)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def random_scores(shape, seed, dtype=np.float64):
    """A seeded random ranking baseline: uniform scores, to be scored by the same metrics.

    float64 makes ties practically impossible; float32 halves the memory of a
    large gallery at the cost of a few ties (broken in gallery order).
    """
    return np.random.default_rng(seed).random(shape, dtype=dtype)


# ---- temporal action segmentation: per-frame predictions against frame labels ----------
#
# A sequence's ground truth is a [T, C] bool matrix (BABEL labels every frame with a
# set of classes, possibly several, possibly none); a prediction is one class per frame
# ([T] int, -1 for "no prediction"). Frames whose label set is empty are background
# (BABEL's transitions, classes outside the set): left out of frame accuracy and frame
# mAP. For the segmental F1, predicted segments are the runs of the prediction over
# all frames, and a predicted segment lying wholly on background frames is left out
# (the model cannot predict background; MS-TCN likewise leaves its background class
# out of both the predicted and the true segments). A segment that runs into a
# background gap keeps its full extent, so a late boundary costs IoU, not an extra
# false positive.


def label_runs(labels) -> list[tuple[int, int, int]]:
    """Maximal runs of one value in a [T] int sequence, values < 0 (background) skipped.

    Returns:
      (class, start, stop) per run, stop exclusive, in time order.
    """
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        return []
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [labels.size]])
    return [(int(labels[a]), int(a), int(b)) for a, b in zip(starts, stops) if labels[a] >= 0]


def multilabel_runs(labels) -> list[tuple[int, int, int]]:
    """Per class, the maximal runs of frames labelled with it in a [T, C] bool matrix.

    Two classes labelling the same frames give two overlapping segments.

    Returns:
      (class, start, stop) per run, stop exclusive, ordered by class then time.
    """
    labels = np.asarray(labels, bool)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [T, C], got shape {labels.shape}")
    out = []
    for c in range(labels.shape[1]):
        on = np.concatenate([[False], labels[:, c], [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(on))
        out += [(c, int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2])]
    return out


def segment_matches(pred_segments, true_segments, overlap: float) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of predicted segments.

    MS-TCN's rule (Farha & Gall, CVPR 2019; the segmental F1 of Lea et al. 2017): each
    predicted segment, in time order, takes the true segment of its class with the
    highest IoU (intersection over the span of the two, so disjoint segments score
    <= 0); it is a true positive when that IoU is at least `overlap` and that true
    segment is not matched yet, otherwise a false positive. Each true segment is
    matched at most once; the unmatched ones are false negatives.

    Args:
      pred_segments: (class, start, stop) tuples, stop exclusive.
      true_segments: the same for the ground truth (may overlap across classes).
      overlap: the IoU threshold, e.g. 0.1, 0.25 or 0.5.

    Returns:
      (tp, fp, fn).
    """
    true = np.asarray([s for s in true_segments], np.int64).reshape(-1, 3)
    hit = np.zeros(len(true), bool)
    tp = fp = 0
    for cls, start, stop in sorted(pred_segments, key=lambda s: (s[1], s[2], s[0])):
        same = np.flatnonzero(true[:, 0] == cls)
        if not len(same):
            fp += 1
            continue
        inter = np.minimum(stop, true[same, 2]) - np.maximum(start, true[same, 1])
        span = np.maximum(stop, true[same, 2]) - np.minimum(start, true[same, 1])
        iou = inter / np.maximum(span, 1)
        best = int(np.argmax(iou))  # the first of tied best, in true-segment order
        if iou[best] >= overlap and not hit[same[best]]:
            tp += 1
            hit[same[best]] = True
        else:
            fp += 1
    return tp, fp, int(len(true) - hit.sum())


def segmental_counts(pred, labels, overlaps=(0.1, 0.25, 0.5)) -> dict:
    """Segmental (tp, fp, fn) of one sequence at each IoU threshold.

    Args:
      pred: [T] int predicted class per frame (-1: none).
      labels: [T, C] bool frame labels; frames with no label are background, and a
        predicted segment wholly on them is ignored (see the section comment above).
      overlaps: IoU thresholds.

    Returns:
      {overlap: np.array([tp, fp, fn])}; sum them over sequences, then `f1_score`.
    """
    labels = np.asarray(labels, bool)
    pred = np.asarray(pred, np.int64)
    if pred.shape != labels.shape[:1]:
        raise ValueError(f"pred has shape {pred.shape}, labels {labels.shape}")
    labelled = np.concatenate([[0], np.cumsum(labels.any(1))])
    pred_segments = [(c, a, b) for c, a, b in label_runs(pred) if labelled[b] > labelled[a]]
    true_segments = multilabel_runs(labels)
    return {
        o: np.array(segment_matches(pred_segments, true_segments, o), np.int64) for o in overlaps
    }


def f1_score(tp, fp, fn) -> float:
    """F1 = 2PR / (P + R) from counts; 0 when there is no true positive."""
    if tp <= 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return float(2 * precision * recall / (precision + recall))


def frame_accuracy(scores, labels) -> float:
    """Fraction of labelled frames whose top-1 class is in their label set ([T, C] each)."""
    return topk_accuracy(scores, labels, 1)


def frame_map(scores, labels) -> float:
    """Per-class AP over frames, averaged over classes that label a frame ([T, C] each).

    Only labelled frames take part, so background frames count neither as positives
    nor as negatives.
    """
    labels = np.asarray(labels, bool)
    keep = labels.any(1)
    return mean_average_precision(np.asarray(scores)[keep].T, labels[keep].T)


# ---- grounding: text queries answered with time intervals -----------------------------
#
# A query (a class's text, asked of one sequence) is answered with intervals ranked best
# first; its truth is the set of true segments of that class in the sequence (a class can
# happen more than once). As in temporal sentence grounding (TALL/Charades-STA's
# "R@n, IoU=m"), the query is a hit at (n, m) when one of its n best intervals overlaps one
# of its true segments with IoU >= m; its IoU for mIoU is that of its best-ranked interval
# against the true segment it overlaps most (0 when it has no interval).


def interval_iou(pred, true) -> np.ndarray:
    """IoU of half-open intervals [start, stop): pred [P, 2] against true [G, 2] -> [P, G].

    Intersection over union (the union counts the overlap once; disjoint intervals give
    0); an empty pair (both of zero length) gives 0.
    """
    pred = np.asarray(pred, np.float64).reshape(-1, 2)
    true = np.asarray(true, np.float64).reshape(-1, 2)
    inter = np.minimum(pred[:, None, 1], true[None, :, 1]) - np.maximum(
        pred[:, None, 0], true[None, :, 0]
    )
    inter = np.maximum(inter, 0.0)
    union = (pred[:, 1] - pred[:, 0])[:, None] + (true[:, 1] - true[:, 0])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def grounding_scores(ranked, truths, ks=(1, 5), ious=(0.3, 0.5, 0.7)) -> dict:
    """Recall of ranked intervals at IoU thresholds, and mIoU, over queries.

    Args:
      ranked: per query, its predicted intervals [(start, stop), ...] best first (may be
        empty: the query was answered with nothing).
      truths: per query, its true segments [(start, stop), ...] (at least one each).
      ks: the n of R@n; ious: the m of IoU=m.

    Returns:
      {"R@<n>@<m>": the fraction of queries with one of their n best intervals at IoU >= m
      with a true segment, "mIoU": the mean of each query's best-ranked interval's highest
      IoU with a true segment, "num_queries"}; NaN rates when there is no query.
    """
    if len(ranked) != len(truths):
        raise ValueError(f"{len(ranked)} ranked answers for {len(truths)} queries")
    best = []  # per query: [P] each interval's highest IoU with a true segment
    for pred, true in zip(ranked, truths):
        if not len(true):
            raise ValueError("every query needs at least one true segment")
        iou = interval_iou(pred, true)
        best.append(iou.max(1) if iou.size else np.zeros(len(iou)))
    out = {}
    for k in ks:
        for m in ious:
            hits = [bool((b[:k] >= m - 1e-12).any()) for b in best]
            out[f"R@{k}@{m:g}"] = float(np.mean(hits)) if hits else float("nan")
    first = [float(b[0]) if len(b) else 0.0 for b in best]
    out["mIoU"] = float(np.mean(first)) if first else float("nan")
    out["num_queries"] = len(best)
    return out


# ---- "not found": a threshold on a query's peak score, set by false alarms -------------


def threshold_at_false_alarm(absent_scores, rate: float) -> float:
    """The lowest threshold that at most `rate` of the absent queries' scores reach.

    With the absent scores sorted high to low, s_1 >= s_2 >= ..., and m = floor(rate * n)
    false alarms allowed, the threshold is the float just above s_(m+1): the m highest
    scores may reach it (fewer when scores tie with s_(m+1)), the rest do not. A query
    whose score is at least the threshold is answered, one below it is "not found".

    Args:
      absent_scores: [n] scores of queries whose class is absent (n >= 1).
      rate: the false-alarm rate allowed, in [0, 1).

    Returns:
      The threshold (float64).
    """
    scores = np.sort(np.asarray(absent_scores, np.float64).reshape(-1))[::-1]
    if not len(scores):
        raise ValueError("no absent score to calibrate a threshold on")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    allowed = int(np.floor(rate * len(scores) + 1e-9))
    return float(np.nextafter(scores[allowed], np.inf))


def detection_rates(present_scores, absent_scores, threshold: float) -> dict:
    """{"recall": present scores >= threshold, "false_alarm": absent scores >= threshold}
    as fractions (NaN for an empty side), with their counts."""
    present = np.asarray(present_scores, np.float64).reshape(-1)
    absent = np.asarray(absent_scores, np.float64).reshape(-1)

    def rate(x):
        return float((x >= threshold).mean()) if len(x) else float("nan")

    return {
        "recall": rate(present),
        "false_alarm": rate(absent),
        "num_present": int(len(present)),
        "num_absent": int(len(absent)),
    }


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b), the generalised zero-shot H of seen and unseen accuracy; 0 when both
    are 0."""
    a, b = float(a), float(b)
    return 0.0 if a + b <= 0 else 2 * a * b / (a + b)
