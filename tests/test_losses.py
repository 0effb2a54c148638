"""wat_jax.losses against straightforward numpy loops, shard sums, gradients, dtypes."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wat_jax import losses
from wat_jax.errors import InputError

N, B, C, D = 16, 4, 5, 8  # global batch, local rows, classes, embedding width
LOCAL = np.arange(4, 8)  # this "device" holds rows 4..7 of the global batch
RTOL, ATOL = 2e-5, 2e-5
MINED = ("all", "hardest")  # the mining modes that need no drawn negatives


def _mean(terms):
    """A loss's mean from its (sum, count) form: 0 when nothing counts, as the step takes it."""
    total, count = terms
    return total / jnp.maximum(count, 1.0)


def _batch(seed=0):
    """Random embeddings and labels with repeated label sets and an empty set."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((N, C)) < 0.3).astype(np.float32)
    labels[5] = 0.0  # a local row with an empty label set
    labels[6, 1] = 1.0
    labels[9] = labels[6]  # another sample with the same (non-empty) set as a local row
    return dict(
        motion=rng.normal(size=(N, D)).astype(np.float32),
        text=rng.normal(size=(N, D)).astype(np.float32) * 2.0,
        labels=labels,
        soft_labels=rng.random((N, C)).astype(np.float32),
    )


# ---- numpy references, written as loops -----------------------------------------


def _log_softmax(row):
    shifted = row - row.max()
    return shifted - np.log(np.exp(shifted).sum())


def _unit(x):
    return x / np.linalg.norm(x)


def ref_mse(motion, targets, mask):
    per_sample = []
    for i in range(motion.shape[0]):
        errors = [
            np.mean((motion[i] - targets[i, k]) ** 2) for k in range(targets.shape[1]) if mask[i, k]
        ]
        if errors:
            per_sample.append(np.mean(errors))
    return np.mean(per_sample) if per_sample else 0.0


def ref_sets(labels, threshold=0.5):
    return [frozenset(np.flatnonzero(row > threshold)) for row in labels]


def ref_jaccard(sets_a, sets_b):
    out = np.zeros((len(sets_a), len(sets_b)))
    for i, a in enumerate(sets_a):
        for j, b in enumerate(sets_b):
            if a | b:
                out[i, j] = len(a & b) / len(a | b)
    return out


def ref_targets(labels_local, labels_all, local_index, mode):
    sets_l, sets_a = ref_sets(labels_local), ref_sets(labels_all)
    out = np.zeros((len(sets_l), len(sets_a)))
    for i, own in enumerate(local_index):
        for j in range(len(sets_a)):
            if j == own:
                out[i, j] = 1.0
            elif mode == "multi_positive":
                out[i, j] = float(bool(sets_l[i] & sets_a[j]))
            elif mode == "soft" and sets_l[i] | sets_a[j]:
                out[i, j] = len(sets_l[i] & sets_a[j]) / len(sets_l[i] | sets_a[j])
        out[i] /= out[i].sum()
    return out


def ref_info_nce(m_local, t_local, m_all, t_all, targets, log_scale):
    scale = np.exp(log_scale)
    total = 0.0
    for i in range(m_local.shape[0]):
        m2t = np.array([scale * _unit(m_local[i]) @ _unit(t) for t in t_all])
        t2m = np.array([scale * _unit(t_local[i]) @ _unit(m) for m in m_all])
        ce_m2t = -np.sum(targets[i] * _log_softmax(m2t))
        ce_t2m = -np.sum(targets[i] * _log_softmax(t2m))
        total += 0.5 * (ce_m2t + ce_t2m)
    return total / m_local.shape[0]


def ref_siglip(m_local, t_all, positives, log_scale, bias):
    total = 0.0
    for i in range(m_local.shape[0]):
        for j in range(t_all.shape[0]):
            logit = np.exp(log_scale) * _unit(m_local[i]) @ _unit(t_all[j]) + bias
            z = 1.0 if positives[i, j] else -1.0
            total += np.logaddexp(0.0, -z * logit)  # -log_sigmoid(z * logit)
    return total / m_local.shape[0]


def ref_triplet(m_local, t_local, t_all, labels_local, labels_all, margin, mining):
    sets_l, sets_a = ref_sets(labels_local), ref_sets(labels_all)
    per_anchor = []
    for i in range(m_local.shape[0]):
        negatives = [j for j in range(t_all.shape[0]) if sets_a[j] != sets_l[i]]
        if not negatives:
            continue
        d_pos = np.linalg.norm(m_local[i] - t_local[i])
        d_neg = [np.linalg.norm(m_local[i] - t_all[j]) for j in negatives]
        if mining == "hardest":
            d_neg = [min(d_neg)]
        per_anchor.append(np.mean([max(d_pos - d + margin, 0.0) for d in d_neg]))
    return np.mean(per_anchor) if per_anchor else 0.0


def ref_triplet_reference(m_local, t_local, t_all, labels_local, labels_all, drawn, margin):
    """The authors' rule: negative = text[drawn[i]], or the anchor itself when the drawn
    sample has the anchor's label set; d(x, y) = ||x - y + 1e-6||; mean over anchors."""
    sets_l, sets_a = ref_sets(labels_local), ref_sets(labels_all)
    terms = []
    for i in range(m_local.shape[0]):
        a = m_local[i].astype(np.float64)
        n = a if sets_a[drawn[i]] == sets_l[i] else t_all[drawn[i]].astype(np.float64)
        d_pos = np.linalg.norm(a - t_local[i] + 1e-6)
        d_neg = np.linalg.norm(a - n + 1e-6)
        terms.append(max(d_pos - d_neg + margin, 0.0))
    return np.mean(terms)


def ref_multilabel_ce(logits, labels):
    per_row = []
    for i in range(logits.shape[0]):
        if labels[i].sum() > 0:
            dist = labels[i] / labels[i].sum()
            per_row.append(-np.sum(dist * _log_softmax(logits[i])))
    return np.mean(per_row) if per_row else 0.0


# ---- tests --------------------------------------------------------------------------


def test_l2_normalize_unit_norm_and_zero_vector():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    y = np.asarray(losses.l2_normalize(x))
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)
    grad = jax.grad(lambda v: losses.l2_normalize(v).sum())(jnp.asarray(x))
    assert np.isfinite(np.asarray(grad)).all()
    assert losses.l2_normalize(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_mse_matches_reference_with_and_without_mask():
    rng = np.random.default_rng(1)
    motion = rng.normal(size=(6, D)).astype(np.float32)
    targets = rng.normal(size=(6, 3, D)).astype(np.float32)
    mask = rng.random((6, 3)) < 0.6
    mask[2] = False  # a sample with no target: excluded from the mean
    mask[0] = [True, False, False]
    targets[~mask] = np.nan  # padding must not leak into the value
    got = _mean(losses.mse_loss_terms(motion, targets, mask))
    np.testing.assert_allclose(got, ref_mse(motion, targets, mask), rtol=RTOL)
    full = np.nan_to_num(targets)
    np.testing.assert_allclose(
        _mean(losses.mse_loss_terms(motion, full)),
        ref_mse(motion, full, np.ones((6, 3), bool)),
        rtol=RTOL,
    )
    assert float(_mean(losses.mse_loss_terms(motion, targets, np.zeros((6, 3), bool)))) == 0.0


def test_label_sets_and_jaccard_match_reference():
    data = _batch()
    sets = np.asarray(losses.label_sets(data["soft_labels"], 0.5))
    np.testing.assert_array_equal(sets, data["soft_labels"] > 0.5)
    got = losses.jaccard(data["labels"][LOCAL] > 0.5, data["labels"] > 0.5)
    expected = ref_jaccard(ref_sets(data["labels"][LOCAL]), ref_sets(data["labels"]))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert float(got[1, 5]) == 0.0  # two empty sets


@pytest.mark.parametrize("mode", losses.TARGET_MODES)
def test_contrastive_targets_match_reference(mode):
    data = _batch()
    got = np.asarray(losses.contrastive_targets(data["labels"][LOCAL], data["labels"], LOCAL, mode))
    expected = ref_targets(data["labels"][LOCAL], data["labels"], LOCAL, mode)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)
    # Row for local 5 has an empty label set: identity in every mode.
    np.testing.assert_allclose(got[1], np.eye(N)[5])
    if mode != "identity":
        assert got[2, 9] > 0  # local 6 and global 9 share their label set


def test_unknown_modes_are_input_errors():
    data = _batch()
    with pytest.raises(InputError, match="mode"):
        losses.contrastive_targets(data["labels"], data["labels"], np.arange(N), "clip")
    with pytest.raises(InputError, match="mining"):
        losses.triplet_loss_terms(
            data["motion"],
            data["text"],
            data["text"],
            data["labels"],
            data["labels"],
            1.0,
            mining="semi",
        )


@pytest.mark.parametrize("mode", losses.TARGET_MODES)
def test_info_nce_matches_reference(mode):
    data = _batch()
    targets = ref_targets(data["labels"][LOCAL], data["labels"], LOCAL, mode)
    args = (data["motion"][LOCAL], data["text"][LOCAL], data["motion"], data["text"], targets)
    log_scale = np.log(1 / 0.07)
    got = _mean(losses.info_nce_loss_terms(*args, log_scale))
    np.testing.assert_allclose(got, ref_info_nce(*args, log_scale), rtol=RTOL)


def test_siglip_matches_reference():
    data = _batch()
    positives = ref_targets(data["labels"][LOCAL], data["labels"], LOCAL, "multi_positive") > 0
    args = (data["motion"][LOCAL], data["text"], positives, np.log(10.0), -2.0)
    np.testing.assert_allclose(_mean(losses.siglip_loss_terms(*args)), ref_siglip(*args), rtol=RTOL)


@pytest.mark.parametrize("mining", MINED)
def test_triplet_matches_reference(mining):
    data = _batch()
    args = (
        data["motion"][LOCAL],
        data["text"][LOCAL],
        data["text"],
        data["labels"][LOCAL],
        data["labels"],
        3.0,
    )
    got = _mean(losses.triplet_loss_terms(*args, mining=mining))
    np.testing.assert_allclose(got, ref_triplet(*args, mining), rtol=RTOL, atol=ATOL)
    total, count = losses.triplet_loss_terms(*args, mining=mining)
    assert float(count) == B  # every local anchor has some differing label set here


def test_triplet_without_valid_negatives():
    data = _batch()
    same = np.ones((N, C), np.float32)  # every sample has the same label set
    args = (data["motion"][LOCAL], data["text"][LOCAL], data["text"], same[LOCAL], same, 2.0)
    for mining in MINED:
        total, count = losses.triplet_loss_terms(*args, mining=mining)
        assert float(count) == 0.0 and float(total) == 0.0
        assert float(_mean(losses.triplet_loss_terms(*args, mining=mining))) == 0.0
    # Two groups: each anchor's negatives are exactly the other group's texts.
    same[::2] = 0.0
    np.testing.assert_allclose(
        _mean(losses.triplet_loss_terms(*args[:3], same[LOCAL], same, 2.0)),
        ref_triplet(*args[:3], same[LOCAL], same, 2.0, "all"),
        rtol=RTOL,
        atol=ATOL,
    )


# Local anchors 4..7 draw: 9 (local 6's twin set, so for anchor 4 a differing set),
# itself, 9 (anchor 6: same set -> its own motion), and a differing set.
DRAWN = np.array([9, 5, 9, 0])


def _reference_args(data, drawn=DRAWN, margin=3.0):
    return (
        data["motion"][LOCAL],
        data["text"][LOCAL],
        data["text"],
        data["labels"][LOCAL],
        data["labels"],
        drawn,
        margin,
    )


def test_triplet_reference_matches_numpy():
    data = _batch()
    sets = ref_sets(data["labels"])
    assert sets[9] == sets[6] and sets[9] != sets[4] and sets[0] != sets[7]
    args = _reference_args(data)
    total, count = losses.triplet_reference_terms(*args)
    assert float(count) == B  # every anchor counts, the replaced ones too
    np.testing.assert_allclose(total / count, ref_triplet_reference(*args), rtol=RTOL, atol=ATOL)
    # Anchors 5 (drew itself) and 6 (drew its set's twin) pull towards their positive:
    # the term is d(a, p) + margin - eps * sqrt(D), never 0.
    for k in (1, 2):
        one = [a[[k]] if a.shape[0] == B else a for a in args[:5]]
        value = float(losses.triplet_reference_terms(*one, DRAWN[[k]], 3.0)[0])
        d_pos = np.linalg.norm(args[0][k] - args[1][k] + 1e-6)
        np.testing.assert_allclose(value, d_pos + 3.0 - 1e-6 * np.sqrt(D), rtol=1e-6)
    # The same through triplet_loss_terms' mining="reference", which needs the draws.
    via = losses.triplet_loss_terms(*args[:5], 3.0, mining="reference", negative_index=DRAWN)
    np.testing.assert_allclose(via, (total, count))
    with pytest.raises(InputError, match="negative_index"):
        losses.triplet_loss_terms(*args[:5], 3.0, mining="reference")


def test_triplet_reference_differs_from_all():
    data = _batch()
    args = _reference_args(data)
    reference = _mean(losses.triplet_reference_terms(*args))
    mined = _mean(losses.triplet_loss_terms(*args[:5], 3.0, mining="all"))
    assert abs(float(reference) - float(mined)) > 1e-3, (reference, mined)


def test_triplet_reference_gradient_of_a_self_negative_is_the_pull():
    """A replaced negative is the anchor itself: its distance carries no gradient, so
    the anchor's gradient is d(a, p)'s alone, (a - p + eps) / d(a, p)."""
    data = _batch()
    args = list(_reference_args(data))
    grad = jax.grad(lambda m: losses.triplet_reference_terms(m, *args[1:])[0])(jnp.asarray(args[0]))
    for k in (1, 2):
        diff = args[0][k] - args[1][k] + 1e-6
        np.testing.assert_allclose(grad[k], diff / np.linalg.norm(diff), rtol=1e-4, atol=1e-6)


GOLDENS = os.path.join(os.path.dirname(__file__), "fixtures", "walkandtext_goldens.npz")


def test_triplet_reference_equals_the_authors_contrastive_loss():
    """tests/fixtures/walkandtext_goldens.npz: walk_text.py's ContrastiveLoss (c2e1847) for
    three torch seeds, each with the permutation it drew."""
    golden = np.load(GOLDENS)
    motion, text, labels = (
        golden["triplet_motion"],
        golden["triplet_text"],
        golden["triplet_labels"],
    )
    margin = float(golden["triplet_margin"])
    for perm, want in zip(golden["triplet_perm"], golden["triplet_loss"], strict=True):
        total, count = losses.triplet_reference_terms(
            motion, text, text, labels, labels, perm, margin
        )
        assert float(count) == len(motion)
        np.testing.assert_allclose(float(total / count), float(want), rtol=1e-5)
    # Mining every differing negative is another loss on the same batch.
    mined = _mean(losses.triplet_loss_terms(motion, text, text, labels, labels, margin))
    assert abs(float(mined) - float(golden["triplet_loss"][0])) > 0.1


def test_multilabel_cross_entropy_matches_reference():
    data = _batch()
    logits = data["motion"][:, :C] * 3.0
    got = _mean(losses.multilabel_cross_entropy_terms(logits, data["labels"]))
    np.testing.assert_allclose(got, ref_multilabel_ce(logits, data["labels"]), rtol=RTOL)
    total, count = losses.multilabel_cross_entropy_terms(logits, data["labels"])
    assert float(count) == int((data["labels"].sum(axis=1) > 0).sum())


@jax.jit
def _all_terms(data, local):
    """Every (sum, count) form on the rows `local` of the global batch in `data`."""
    motion, text, labels = data["motion"], data["text"], data["labels"]
    log_scale = np.log(1 / 0.07)
    targets = losses.contrastive_targets(labels[local], labels, local, "soft")
    mse_targets = jnp.stack([text, text[::-1]], axis=1)  # [N, 2, D]
    mse_mask = jnp.ones((N, 2), bool).at[::3, 1].set(False).at[5].set(False)
    return {
        "mse": losses.mse_loss_terms(motion[local], mse_targets[local], mse_mask[local]),
        "info_nce": losses.info_nce_loss_terms(
            motion[local], text[local], motion, text, targets, log_scale
        ),
        "siglip": losses.siglip_loss_terms(motion[local], text, targets > 0, log_scale, -5.0),
        "triplet_all": losses.triplet_loss_terms(
            motion[local], text[local], text, labels[local], labels, 4.0
        ),
        "triplet_hardest": losses.triplet_loss_terms(
            motion[local], text[local], text, labels[local], labels, 4.0, mining="hardest"
        ),
        "multilabel_ce": losses.multilabel_cross_entropy_terms(motion[local, :C], labels[local]),
        "triplet_reference": losses.triplet_reference_terms(
            motion[local], text[local], text, labels[local], labels, data["drawn"][local], 4.0
        ),
    }


def test_terms_summed_over_eight_shards_equal_full_batch():
    data = _batch(seed=3)
    # Drawn columns of the global batch, each shard reading its rows' draws: a row that
    # drew itself (2) and two that drew their same-set twin (6 and 9).
    drawn = np.random.default_rng(3).permutation(N)
    drawn[[2, 6, 9]] = [2, 9, 6]
    data["drawn"] = drawn
    full = {name: float(t / max(c, 1)) for name, (t, c) in _all_terms(data, np.arange(N)).items()}
    shards = [_all_terms(data, rows) for rows in np.split(np.arange(N), 8)]
    for name, value in full.items():
        total = sum(float(s[name][0]) for s in shards)
        count = sum(float(s[name][1]) for s in shards)
        np.testing.assert_allclose(total / count, value, rtol=RTOL, err_msg=name)
    # Shards hold different counts of rows that count for the masked losses, so the
    # check above would catch a (mean * rows, rows) pair or a mean of shard means.
    for name in ("mse", "multilabel_ce"):
        counts = {float(s[name][1]) for s in shards}
        assert len(counts) > 1, (name, counts)


def test_gradients_finite_on_degenerate_inputs_under_jit():
    data = _batch()
    motion = jnp.asarray(data["motion"]).at[0].set(0.0)  # a zero embedding
    text = motion.at[1].set(data["text"][1])  # text == motion for most rows: zero distances
    labels = jnp.asarray(data["labels"]).at[:, :].set(0.0).at[8:, 0].set(1.0)
    local = jnp.arange(N)

    def total(motion, text, log_scale, bias):
        targets = losses.contrastive_targets(labels, labels, local, "multi_positive")
        mse_targets = jnp.stack([text, text], axis=1)
        mse_mask = jnp.zeros((N, 2), bool).at[1:, 0].set(True)
        return (
            _mean(losses.mse_loss_terms(motion, mse_targets, mse_mask))
            + _mean(losses.info_nce_loss_terms(motion, text, motion, text, targets, log_scale))
            + _mean(losses.siglip_loss_terms(motion, text, targets > 0, log_scale, bias))
            + _mean(losses.triplet_loss_terms(motion, text, text, labels, labels, 1.0))
            + _mean(
                losses.triplet_loss_terms(motion, text, text, labels, labels, 1.0, mining="hardest")
            )
            + _mean(losses.multilabel_cross_entropy_terms(motion[:, :C], labels))
            + _mean(
                losses.triplet_reference_terms(
                    motion, text, text, labels, labels, jnp.arange(N)[::-1], 1.0
                )
            )
        )

    value, grads = jax.jit(jax.value_and_grad(total, argnums=(0, 1, 2, 3)))(
        motion, text, jnp.float32(np.log(1 / 0.07)), jnp.float32(-10.0)
    )
    assert np.isfinite(float(value))
    for grad in grads:
        assert np.isfinite(np.asarray(grad)).all()
    assert np.abs(np.asarray(grads[0])).sum() > 0


def test_bfloat16_inputs_compute_in_float32():
    data = _batch()
    motion = jnp.asarray(data["motion"], jnp.bfloat16)
    text = jnp.asarray(data["text"], jnp.bfloat16)
    targets = losses.contrastive_targets(data["labels"], data["labels"], np.arange(N), "identity")
    low = _mean(losses.info_nce_loss_terms(motion, text, motion, text, targets, jnp.float32(2.0)))
    upcast = ref_info_nce(
        *(np.asarray(x, np.float32) for x in (motion, text, motion, text)), targets, 2.0
    )
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, upcast, rtol=RTOL)
    low = _mean(losses.triplet_loss_terms(motion, text, text, data["labels"], data["labels"], 3.0))
    assert low.dtype == jnp.float32
    upcast = ref_triplet(
        *(np.asarray(x, np.float32) for x in (motion, text, text)),
        data["labels"],
        data["labels"],
        3.0,
        "all",
    )
    np.testing.assert_allclose(low, upcast, rtol=RTOL, atol=ATOL)
