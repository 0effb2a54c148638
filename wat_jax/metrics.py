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
    return unit_rows(a) @ unit_rows(b).T


def _row_chunks(num_rows, row_len):
    """Slices over rows holding about _CHUNK_ELEMENTS entries each."""
    step = max(1, _CHUNK_ELEMENTS // max(row_len, 1))
    for start in range(0, num_rows, step):
        yield slice(start, min(start + step, num_rows))


def _as_scores(scores):
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [queries, gallery], got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; rankings would be undefined")
    return scores


def _as_matching(scores, other, name, dtype):
    other = np.asarray(other, dtype=dtype)
    if other.shape != scores.shape:
        raise ValueError(f"{name} has shape {other.shape}, scores have shape {scores.shape}")
    return other


def _top_k(scores, k):
    """Indices [q, k] of each row's k best items in rank order (ties in gallery order)."""
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


def _nan_mean(values):
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
        top = _top_k(scores[rows], k)
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
    return _nan_mean(per_class_top1(scores, labels))


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
    relevant = _as_matching(scores, relevant, "relevant", bool)
    ranks = np.arange(1, scores.shape[1] + 1)
    result = np.empty(scores.shape[0])
    for rows in _row_chunks(*scores.shape):
        order = np.argsort(-scores[rows], axis=1, kind="stable")
        ranked = np.take_along_axis(relevant[rows], order, axis=1)  # [q, N] in rank order
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
    return _nan_mean(average_precision(scores, relevant))


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
    gains = _as_matching(scores, gains, "gains", np.float64)
    if (gains < 0).any():
        raise ValueError("gains must be >= 0")
    depth = min(k, scores.shape[1])
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))  # [k]
    result = np.empty(scores.shape[0])
    for rows in _row_chunks(*scores.shape):
        chunk_gains = gains[rows]
        top = _top_k(scores[rows], depth)
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
    relevant = _as_matching(scores, relevant, "relevant", bool)
    result = np.empty(scores.shape[0])
    for rows in _row_chunks(*scores.shape):
        top = _top_k(scores[rows], k)
        hit = np.take_along_axis(relevant[rows], top, axis=1).any(axis=1)
        result[rows] = np.where(relevant[rows].any(axis=1), hit, np.nan)
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
