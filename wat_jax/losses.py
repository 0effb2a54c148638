"""Pure jnp losses that pull motion embeddings towards their text embeddings.

Every function here is jit-able and free of host code; the math runs in float32
even when the embeddings arrive in bfloat16, and matmuls ask for full precision
so that distances and label counts do not depend on the backend's default.

Data parallelism. The train step runs these per device under `jax.shard_map`:
"local" arguments are this device's `b` rows, "all" arguments are the whole
global batch of `N` rows (all_gathered, in device order), and `local_index[i]`
is local row i's column in the global batch. Each loss has one form:

    <loss>_terms(...) -> (total, count)   # float32 scalars

the sum of its per-row values over this device's rows and how many rows count.
The mean over the global batch is `psum(total) / psum(count)` (a loss whose
count is 0 everywhere is taken as 0), which equals the single-device value
exactly. A pmean of per-device means would equal it only when every device has
the same count; that holds for InfoNCE and SigLIP (count is always b) but not
for the masked ones (MSE with a target mask, triplet, multi-label
cross-entropy), where rows without a target, a valid negative, or a label are
left out of the count. This module therefore has no mean form: callers divide
(objectives.py by the mean count across devices, tests by the count).
"""

import jax
import jax.numpy as jnp

from wat_jax.errors import fail

TARGET_MODES = ("identity", "multi_positive", "soft")
# Triplet negatives: "all" and "hardest" mine every in-batch negative whose attribute
# set differs; "reference" is the authors' code: one drawn negative per anchor.
MINING_MODES = ("all", "hardest", "reference")

# Full precision: on TPU/GPU the default float32 matmul rounds through bf16/tf32,
# which breaks raw-embedding distances (norm expansion) and label-count equality.
_PRECISION = jax.lax.Precision.HIGHEST


def _f32(x):
    return jnp.asarray(x).astype(jnp.float32)


def _matmul_t(a, b):
    """a @ b.T at full precision: [b, D] x [N, D] -> [b, N]."""
    return jnp.matmul(a, b.T, precision=_PRECISION)


def l2_normalize(x, axis=-1, eps=1e-6):
    """Scales x to unit L2 norm along `axis`; vectors shorter than eps are divided by eps.

    Args:
      x: array of any float dtype.
      axis: the axis holding the vector.
      eps: floor on the norm, so a zero vector stays zero with a finite gradient.

    Returns:
      An array of x's shape and dtype (the norm is computed in float32).
    """
    x = jnp.asarray(x)
    x32 = x.astype(jnp.float32)
    squared = jnp.sum(x32 * x32, axis=axis, keepdims=True)
    return (x32 * jax.lax.rsqrt(jnp.maximum(squared, eps * eps))).astype(x.dtype)


def _cosine(a, b):
    """Cosine similarities [b, N] between float32 rows of a [b, D] and b [N, D]."""
    return _matmul_t(l2_normalize(_f32(a)), l2_normalize(_f32(b)))


def mse_loss_terms(motion_emb, targets, target_mask=None):
    """Mean squared error between each motion embedding and its K target embeddings.

    Per sample: the mean over valid targets k of the mean over D of (m - t_k)^2.
    The paper's objective is K=2: the class-name embedding and the class's
    description centroid.

    Args:
      motion_emb: [b, D] motion embeddings.
      targets: [b, K, D] target text embeddings.
      target_mask: optional [b, K] bool, which targets exist.

    Returns:
      (sum over samples with a valid target of their value, number of such
      samples), float32 scalars; samples without a valid target add to neither.
    """
    motion = _f32(motion_emb)  # [b, D]
    targets = _f32(targets)  # [b, K, D]
    if target_mask is None:
        mask = jnp.ones(targets.shape[:2], jnp.float32)
    else:
        mask = _f32(target_mask)  # [b, K]
        # Padded targets may hold anything (even NaN); zero them so no gradient sees it.
        targets = jnp.where(mask[..., None] > 0, targets, 0.0)
    per_target = jnp.mean(jnp.square(motion[:, None, :] - targets), axis=-1)  # [b, K]
    num_valid = jnp.sum(mask, axis=-1)  # [b]
    per_sample = jnp.sum(per_target * mask, axis=-1) / jnp.maximum(num_valid, 1.0)
    has_target = num_valid > 0
    return jnp.sum(jnp.where(has_target, per_sample, 0.0)), jnp.sum(has_target, dtype=jnp.float32)


def label_sets(labels, threshold=0.5):
    """Binarises multi-hot or soft labels [n, C] into label sets: bool [n, C], label > threshold."""
    return jnp.asarray(labels) > threshold


def _set_counts(a, b):
    """Intersection sizes [b, N] and set sizes ([b], [N]) of bool sets a [b, C], b [N, C]."""
    a32 = _f32(a)
    b32 = _f32(b)
    return _matmul_t(a32, b32), jnp.sum(a32, axis=-1), jnp.sum(b32, axis=-1)


def jaccard(a, b):
    """Jaccard overlap |a & b| / |a | b| between label sets.

    Args:
      a: [b, C] bool label sets.
      b: [N, C] bool label sets.

    Returns:
      [b, N] float32; 0 where both sets are empty (callers decide about identity).
    """
    inter, size_a, size_b = _set_counts(a, b)
    union = size_a[:, None] + size_b[None, :] - inter
    return jnp.where(union > 0, inter / jnp.maximum(union, 1.0), 0.0)


def contrastive_targets(labels_local, labels_all, local_index, mode, threshold=0.5):
    """Target distributions over the global batch: InfoNCE targets, SigLIP positives (> 0).

    Args:
      labels_local: [b, C] labels of this device's rows.
      labels_all: [N, C] labels of the global batch.
      local_index: [b] int, each local row's column in the global batch.
      mode: "identity" (one-hot at the own column), "multi_positive" (uniform over
        samples sharing at least one label, own column always included) or "soft"
        (proportional to label-set Jaccard overlap, own column weight 1, so a row
        with an empty label set becomes identity).
      threshold: labels above it are in the set.

    Returns:
      [b, N] float32, each row summing to 1.
    """
    if mode not in TARGET_MODES:
        raise fail("contrastive_targets", f"mode {mode!r} is not one of {TARGET_MODES}")
    own = jax.nn.one_hot(local_index, labels_all.shape[0], dtype=jnp.float32)  # [b, N]
    if mode == "identity":
        return own
    sets_local = label_sets(labels_local, threshold)
    sets_all = label_sets(labels_all, threshold)
    if mode == "multi_positive":
        inter, _, _ = _set_counts(sets_local, sets_all)
        weights = jnp.maximum((inter > 0).astype(jnp.float32), own)
    else:
        weights = jnp.where(own > 0, 1.0, jaccard(sets_local, sets_all))
    return weights / jnp.sum(weights, axis=-1, keepdims=True)


def _soft_cross_entropy(logits, targets):
    """-sum_j t_ij log softmax(logits)_ij per row: [b, N] -> [b]."""
    return -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def info_nce_loss_terms(motion_local, text_local, motion_all, text_all, targets, log_scale):
    """Symmetric CLIP InfoNCE with soft targets and a learnable temperature.

    Embeddings are L2-normalised here; logits are exp(log_scale) * cosine. Each
    local motion row is classified against all texts and each local text row
    against all motions, both with cross-entropy against `targets`.

    Args:
      motion_local: [b, D] this device's motion embeddings.
      text_local: [b, D] this device's text embeddings (same rows).
      motion_all: [N, D] motion embeddings of the global batch.
      text_all: [N, D] text embeddings of the global batch.
      targets: [b, N] target distributions, e.g. from `contrastive_targets`.
      log_scale: scalar log of the logit scale (the caller clips it).

    Returns:
      (sum over local rows of the average of both directions, b), float32.
    """
    scale = jnp.exp(_f32(log_scale))
    targets = _f32(targets)  # [b, N]
    motion_to_text = _soft_cross_entropy(scale * _cosine(motion_local, text_all), targets)
    text_to_motion = _soft_cross_entropy(scale * _cosine(text_local, motion_all), targets)
    per_row = 0.5 * (motion_to_text + text_to_motion)  # [b]
    return jnp.sum(per_row), jnp.float32(per_row.shape[0])


def siglip_loss_terms(motion_local, text_all, positives, log_scale, bias):
    """Pairwise sigmoid loss (SigLIP) of local motions against all texts.

    Each (motion i, text j) pair is a binary problem: positive when
    positives[i, j], negative otherwise. A row's value is the sum over texts;
    the mean is over rows (not pairs), as SigLIP does. Every global pair is seen
    by exactly one device.

    Args:
      motion_local: [b, D] this device's motion embeddings.
      text_all: [N, D] text embeddings of the global batch.
      positives: [b, N] 0/1 (or bool) positive pairs.
      log_scale: scalar log of the logit scale.
      bias: scalar logit bias (SigLIP initialises it at -10).

    Returns:
      (sum over local rows, b), float32.
    """
    logits = jnp.exp(_f32(log_scale)) * _cosine(motion_local, text_all) + _f32(bias)  # [b, N]
    signs = 2.0 * _f32(positives) - 1.0
    per_row = -jnp.sum(jax.nn.log_sigmoid(signs * logits), axis=-1)  # [b]
    return jnp.sum(per_row), jnp.float32(per_row.shape[0])


def _safe_sqrt(x):
    """sqrt with value and gradient 0 at x <= 0 (a plain sqrt has an infinite slope at 0)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def triplet_loss_terms(
    motion_local,
    text_local,
    text_all,
    labels_local,
    labels_all,
    margin,
    threshold=0.5,
    mining="all",
    negative_index=None,
):
    """Triplet loss on raw (unnormalised) embeddings with label-aware negatives.

    Anchor is motion i, positive its own text i, negatives the texts j whose
    binarised label set differs from i's (so never the own column, and never a
    sample with the same attribute set). Distances are Euclidean; the paper used
    margin 10 on raw embeddings. Device counts differ: divide the psum'd sum by
    the psum'd count. mining="reference" is `triplet_reference_terms` with
    `negative_index`.

    Args:
      motion_local: [b, D] anchors.
      text_local: [b, D] positives.
      text_all: [N, D] texts of the global batch (candidate negatives).
      labels_local: [b, C] labels of the anchors.
      labels_all: [N, C] labels of the global batch.
      margin: hinge margin.
      threshold: labels above it are in the set.
      mining: "all" (mean hinge over valid negatives), "hardest" (the valid
        negative nearest the anchor) or "reference" (see triplet_reference_terms).
      negative_index: [b] int, each anchor's drawn negative; "reference" only.

    Returns:
      (sum over anchors with a valid negative, number of such anchors), float32;
      anchors without a valid negative add to neither ("reference": every anchor counts).
    """
    if mining not in MINING_MODES:
        raise fail("triplet_loss_terms", f"mining {mining!r} is not one of {MINING_MODES}")
    if mining == "reference":
        if negative_index is None:
            raise fail("triplet_loss_terms", 'mining "reference" needs negative_index')
        return triplet_reference_terms(
            motion_local,
            text_local,
            text_all,
            labels_local,
            labels_all,
            negative_index,
            margin,
            threshold,
        )
    anchor = _f32(motion_local)  # [b, D]
    positive = _f32(text_local)  # [b, D]
    gallery = _f32(text_all)  # [N, D]
    d_pos = _safe_sqrt(jnp.sum(jnp.square(anchor - positive), axis=-1))  # [b]
    # Norm expansion keeps memory at [b, N] instead of [b, N, D].
    squared = (
        jnp.sum(anchor * anchor, axis=-1)[:, None]
        + jnp.sum(gallery * gallery, axis=-1)[None, :]
        - 2.0 * _matmul_t(anchor, gallery)
    )
    d_neg = _safe_sqrt(squared)  # [b, N]

    # Sets are equal iff the intersection is as large as both; the own column is
    # always equal to itself, so it is never a negative.
    inter, size_local, size_all = _set_counts(
        label_sets(labels_local, threshold), label_sets(labels_all, threshold)
    )
    valid = (inter < size_local[:, None]) | (inter < size_all[None, :])  # [b, N]
    num_valid = jnp.sum(valid, axis=-1)
    has_negative = num_valid > 0

    if mining == "all":
        hinge = jax.nn.relu(d_pos[:, None] - d_neg + margin)
        per_anchor = jnp.sum(jnp.where(valid, hinge, 0.0), axis=-1) / jnp.maximum(num_valid, 1)
    else:
        d_hard = jnp.min(jnp.where(valid, d_neg, jnp.inf), axis=-1)
        d_hard = jnp.where(has_negative, d_hard, 0.0)
        per_anchor = jax.nn.relu(d_pos - d_hard + margin)
    total = jnp.sum(jnp.where(has_negative, per_anchor, 0.0))
    return total, jnp.sum(has_negative, dtype=jnp.float32)


def triplet_reference_terms(
    motion_local,
    text_local,
    text_all,
    labels_local,
    labels_all,
    negative_index,
    margin,
    threshold=0.5,
    eps=1e-6,
):
    """The authors' triplet (WalkAndText walk_text.py): one drawn negative per anchor.

    Anchor is motion i, positive its own text i, negative the text of the drawn
    sample negative_index[i] (the reference draws one permutation of the batch).
    When that sample's binarised label set equals the anchor's (the anchor itself
    included) the negative is the anchor's own motion embedding: d(a, n) is then
    eps * sqrt(D) and the term max(d(a, p) + margin, 0), a pull towards the
    positive that keeps its gradient (the anchor's two uses cancel in d(a, n)).
    Distances are torch's pairwise_distance, ||x - y + eps||_2, and every anchor
    counts, as in nn.TripletMarginLoss's mean.

    Args:
      motion_local: [b, D] anchors.
      text_local: [b, D] positives.
      text_all: [N, D] texts of the global batch.
      labels_local: [b, C] labels of the anchors.
      labels_all: [N, C] labels of the global batch.
      negative_index: [b] int, each anchor's drawn column of the global batch.
      margin: hinge margin (the reference: 10).
      threshold: labels above it are in the set.
      eps: added to every difference before the norm, as torch does.

    Returns:
      (sum over the b anchors, b), float32.
    """
    anchor = _f32(motion_local)  # [b, D]
    positive = _f32(text_local)  # [b, D]
    drawn = jnp.take(_f32(text_all), negative_index, axis=0)  # [b, D]
    drawn_sets = label_sets(jnp.take(jnp.asarray(labels_all), negative_index, axis=0), threshold)
    same_set = jnp.all(label_sets(labels_local, threshold) == drawn_sets, axis=-1)  # [b]
    negative = jnp.where(same_set[:, None], anchor, drawn)

    def distance(a, b):  # [b, D] x [b, D] -> [b]
        return _safe_sqrt(jnp.sum(jnp.square(a - b + eps), axis=-1))

    per_anchor = jax.nn.relu(distance(anchor, positive) - distance(anchor, negative) + margin)
    return jnp.sum(per_anchor), jnp.float32(per_anchor.shape[0])


def multilabel_cross_entropy_terms(logits, labels):
    """Softmax cross-entropy against the label distribution (labels normalised to sum 1).

    Args:
      logits: [b, C] class logits.
      labels: [b, C] multi-hot (or non-negative soft) labels.

    Returns:
      (sum over rows with at least one label, number of such rows), float32;
      rows without a label add to neither.
    """
    weights = jnp.maximum(_f32(labels), 0.0)  # [b, C]
    mass = jnp.sum(weights, axis=-1, keepdims=True)
    has_label = mass[:, 0] > 0
    per_row = _soft_cross_entropy(_f32(logits), weights / jnp.maximum(mass, 1e-12))  # [b]
    return jnp.sum(jnp.where(has_label, per_row, 0.0)), jnp.sum(has_label, dtype=jnp.float32)
