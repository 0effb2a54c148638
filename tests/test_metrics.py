"""wat_jax.metrics on hand-made rankings with known answers, and against slow references."""

import numpy as np
import pytest

from wat_jax import metrics

# ---- hand-made examples -------------------------------------------------------------


def test_ndcg_graded_example():
    # Gallery gains [0, 3, 2, 1, 3, 2]; the scores rank the items 1, 2, 4, 0, 3, 5, so the
    # ranked gains are [3, 2, 3, 0, 1, 2] and the ideal order is [3, 3, 2, 2, 1, 0].
    # DCG@6  = 3/1 + 2/log2(3) + 3/2 + 0/log2(5) + 1/log2(6) + 2/log2(7) = 6.8611
    # IDCG@6 = 3/1 + 3/log2(3) + 2/2 + 2/log2(5) + 1/log2(6) + 0/log2(7) = 7.1410
    # NDCG@6 = 0.9608; NDCG@3 = (3 + 1.2619 + 1.5) / (3 + 1.8928 + 1) = 0.9778.
    scores = np.array([[0.4, 0.9, 0.8, 0.3, 0.7, 0.1]] * 2)
    gains = np.array([[0, 3, 2, 1, 3, 2], [0, 0, 0, 0, 0, 0]], float)
    log2 = np.log2
    dcg6 = 3 + 2 / log2(3) + 3 / 2 + 1 / log2(6) + 2 / log2(7)
    idcg6 = 3 + 3 / log2(3) + 2 / 2 + 2 / log2(5) + 1 / log2(6)
    np.testing.assert_allclose(dcg6 / idcg6, 0.9608, atol=1e-4)
    got6 = metrics.ndcg_at_k(scores, gains, 6)
    np.testing.assert_allclose(got6[0], dcg6 / idcg6, rtol=1e-12)
    assert np.isnan(got6[1])  # no gain anywhere: undefined
    got3 = metrics.ndcg_at_k(scores, gains, 3)
    np.testing.assert_allclose(got3[0], (3 + 2 / log2(3) + 1.5) / (3 + 3 / log2(3) + 1))
    np.testing.assert_allclose(got3[0], 0.9778, atol=1e-4)
    # k beyond the gallery is the whole ranking.
    np.testing.assert_allclose(metrics.ndcg_at_k(scores, gains, 50)[0], got6[0])


def test_average_precision_known_ranking():
    # Scores rank the gallery in index order.
    # Query 0: relevant at ranks 1, 3, 6: AP = (1/1 + 2/3 + 3/6) / 3 = 0.7222.
    # Query 1: relevant at rank 2 only:   AP = 1/2.
    # Query 2: nothing relevant:          NaN, left out of the mean.
    # mAP = (0.7222 + 0.5) / 2 = 0.6111.
    scores = np.tile(np.linspace(1.0, 0.0, 6), (3, 1))
    relevant = np.zeros((3, 6), bool)
    relevant[0, [0, 2, 5]] = True
    relevant[1, 1] = True
    ap = metrics.average_precision(scores, relevant)
    np.testing.assert_allclose(ap[:2], [(1 + 2 / 3 + 3 / 6) / 3, 0.5])
    assert np.isnan(ap[2])
    np.testing.assert_allclose(
        metrics.mean_average_precision(scores, relevant), ((1 + 2 / 3 + 0.5) / 3 + 0.5) / 2
    )
    assert np.isnan(metrics.mean_average_precision(scores, np.zeros_like(relevant)))


def test_recall_at_k_and_ties_keep_gallery_order():
    # Three items tie at 0.5: the stable order is 1, 2, 3 (after item 4 at 0.9).
    scores = np.array([[0.1, 0.5, 0.5, 0.5, 0.9]] * 3)
    relevant = np.zeros((3, 5), bool)
    relevant[0, 3] = True  # rank 4: outside the top 2 although it ties with rank 2
    relevant[1, 1] = True  # rank 2: inside the top 2
    # Query 2 has no relevant item: NaN.
    r2 = metrics.recall_at_k(scores, relevant, 2)
    np.testing.assert_array_equal(r2[:2], [0.0, 1.0])
    assert np.isnan(r2[2])
    np.testing.assert_array_equal(metrics.recall_at_k(scores, relevant, 4)[:2], [1.0, 1.0])
    # AP follows the same order: query 0 at rank 4 -> 1/4, query 1 at rank 2 -> 1/2.
    np.testing.assert_allclose(metrics.average_precision(scores, relevant)[:2], [0.25, 0.5])
    # NDCG@2 with a unit gain at rank 2: (1/log2(3)) / 1.
    np.testing.assert_allclose(
        metrics.ndcg_at_k(scores[1:2], relevant[1:2].astype(float), 2), [1 / np.log2(3)]
    )


def _classification_example():
    # Four classes. Rankings:           labels    top-1  top-2   top-4
    # w0 [.1 .7 .2 .0] -> 1, 2, 0, 3    {0, 2}    miss   hit     hit
    # w1 [.9 .1 .3 .2] -> 0, 2, 3, 1    {0}       hit    hit     hit
    # w2 [.2 .3 .1 .4] -> 3, 1, 0, 2    {2}       miss   miss    hit
    # w3 [.5 .5 .1 .1] -> 0, 1, 2, 3    {1}       miss   hit     hit   (tie: gallery order)
    # w4 anything                       {}        excluded
    scores = np.array(
        [
            [0.1, 0.7, 0.2, 0.0],
            [0.9, 0.1, 0.3, 0.2],
            [0.2, 0.3, 0.1, 0.4],
            [0.5, 0.5, 0.1, 0.1],
            [0.9, 0.0, 0.0, 0.0],
        ]
    )
    labels = np.zeros((5, 4), bool)
    labels[0, [0, 2]] = labels[1, 0] = labels[2, 2] = labels[3, 1] = True
    return scores, labels


def test_topk_accuracy_multi_label_windows():
    scores, labels = _classification_example()
    assert metrics.topk_accuracy(scores, labels, 1) == pytest.approx(1 / 4)
    assert metrics.topk_accuracy(scores, labels, 2) == pytest.approx(3 / 4)
    assert metrics.topk_accuracy(scores, labels, 3) == pytest.approx(3 / 4)
    assert metrics.topk_accuracy(scores, labels, 4) == pytest.approx(1.0)


def test_per_class_top1_and_top1_norm():
    scores, labels = _classification_example()
    # Class 0: windows w0 (miss), w1 (hit) -> 1/2.  Class 1: w3 (miss) -> 0.
    # Class 2: w0 (miss), w2 (miss) -> 0.          Class 3: no window -> NaN.
    per_class = metrics.per_class_top1(scores, labels)
    np.testing.assert_array_equal(per_class[:3], [0.5, 0.0, 0.0])
    assert np.isnan(per_class[3])
    # Top-1-norm = (1/2 + 0 + 0) / 3, while Top-1 = 1/4.
    assert metrics.top1_norm(scores, labels) == pytest.approx(1 / 6)


def test_confusion_matrix_counts_each_label():
    scores, labels = _classification_example()
    # w0 (top-1 = 1) counts in rows 0 and 2; w1 -> (0, 0); w2 -> (2, 3); w3 -> (1, 0).
    expected = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(metrics.confusion_matrix(scores, labels), expected)


def test_jaccard_gains_by_hand():
    query = np.array([[1, 1, 0], [0, 0, 0]], bool)  # {0, 1} and {}
    gallery = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]], bool)
    # {0,1} vs {0}: 1/2; vs {1,2}: 1/3; vs {}: 0; vs {0,1}: 1.  {} vs anything: 0.
    expected = [[1 / 2, 1 / 3, 0, 1], [0, 0, 0, 0]]
    np.testing.assert_allclose(metrics.jaccard_gains(query, gallery), expected, rtol=1e-6)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        metrics.recall_at_k(np.array([[np.nan, 1.0]]), np.array([[True, False]]), 1)
    with pytest.raises(ValueError, match="shape"):
        metrics.average_precision(np.zeros((2, 3)), np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match=">= 0"):
        metrics.ndcg_at_k(np.zeros((1, 3)), -np.ones((1, 3)), 2)


def test_random_scores_are_seeded():
    a = metrics.random_scores((3, 1000), seed=7)
    np.testing.assert_array_equal(a, metrics.random_scores((3, 1000), seed=7))
    assert not np.array_equal(a, metrics.random_scores((3, 1000), seed=8))
    assert a.shape == (3, 1000) and a.min() >= 0 and a.max() < 1


# ---- random inputs against slow references --------------------------------------------


def _ranking(row):
    return sorted(range(len(row)), key=lambda j: (-row[j], j))


def ref_average_precision(scores, relevant):
    out = []
    for row, rel in zip(scores, relevant):
        hits, total = 0, 0.0
        for rank, j in enumerate(_ranking(row), start=1):
            if rel[j]:
                hits += 1
                total += hits / rank
        out.append(total / hits if hits else np.nan)
    return np.array(out)


def ref_ndcg(scores, gains, k):
    out = []
    for row, gain in zip(scores, gains):
        dcg = sum(gain[j] / np.log2(r + 2) for r, j in enumerate(_ranking(row)[:k]))
        ideal = sum(g / np.log2(r + 2) for r, g in enumerate(sorted(gain, reverse=True)[:k]))
        out.append(dcg / ideal if ideal > 0 else np.nan)
    return np.array(out)


def ref_recall(scores, relevant, k):
    return np.array(
        [
            float(any(rel[j] for j in _ranking(row)[:k])) if rel.any() else np.nan
            for row, rel in zip(scores, relevant)
        ]
    )


def ref_per_class_top1(scores, labels):
    out = []
    for c in range(labels.shape[1]):
        rows = [i for i in range(len(labels)) if labels[i, c]]
        hits = [labels[i, _ranking(scores[i])[0]] for i in rows]
        out.append(np.mean(hits) if rows else np.nan)
    return np.array(out)


def ref_confusion(scores, labels):
    out = np.zeros((labels.shape[1],) * 2, int)
    for i in range(len(labels)):
        for c in np.flatnonzero(labels[i]):
            out[c, _ranking(scores[i])[0]] += 1
    return out


@pytest.mark.parametrize("chunk_elements", [37, 1 << 21])
def test_random_inputs_match_slow_references(monkeypatch, chunk_elements):
    # Few distinct score values, so ties are everywhere, and tiny chunks to cross boundaries.
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", chunk_elements)
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((9, 41)), 1)
    relevant = rng.random((9, 41)) < 0.15
    relevant[3] = False
    sets_q = rng.random((9, 5)) < 0.4
    sets_g = rng.random((41, 5)) < 0.4
    gains = metrics.jaccard_gains(sets_q, sets_g)
    np.testing.assert_allclose(
        gains,
        [
            [
                len(set(np.flatnonzero(q)) & set(np.flatnonzero(g)))
                / max(len(set(np.flatnonzero(q)) | set(np.flatnonzero(g))), 1)
                for g in sets_g
            ]
            for q in sets_q
        ],
        rtol=1e-6,
    )

    np.testing.assert_allclose(
        metrics.average_precision(scores, relevant), ref_average_precision(scores, relevant)
    )
    for k in (1, 3, 10, 41):
        np.testing.assert_allclose(
            metrics.ndcg_at_k(scores, gains, k), ref_ndcg(scores, gains, k), rtol=1e-6
        )
        np.testing.assert_array_equal(
            metrics.recall_at_k(scores, relevant, k), ref_recall(scores, relevant, k)
        )

    # Classification: 41 windows over 9 classes (transpose the same arrays).
    windows, labels = scores.T, relevant.T
    labelled = labels.any(axis=1)
    for k in (1, 2, 5):
        expected = np.mean(ref_recall(windows, labels, k)[labelled])
        assert metrics.topk_accuracy(windows, labels, k) == pytest.approx(expected)
    np.testing.assert_allclose(
        metrics.per_class_top1(windows, labels), ref_per_class_top1(windows, labels)
    )
    np.testing.assert_array_equal(
        metrics.confusion_matrix(windows, labels), ref_confusion(windows, labels)
    )


@pytest.mark.parametrize("dim", [8, 384])
@pytest.mark.parametrize("ints", [False, True])
def test_a_rows_cosines_do_not_depend_on_the_rows_computed_with_it(dim, ints):
    # Blocked evaluation (DenseGait scores query rows a block at a time) must rank exactly
    # as the whole matrix: a float32 BLAS product may round a row differently by block size.
    rng = np.random.default_rng(dim)
    if ints:  # tie-heavy, as in coarse embeddings
        a = rng.integers(-1, 2, (97, dim)).astype(np.float32)
        b = rng.integers(-1, 2, (301, dim)).astype(np.float32)
    else:
        a = rng.standard_normal((97, dim)).astype(np.float32)
        b = rng.standard_normal((301, dim)).astype(np.float32)
    whole = metrics.cosine(a, b)
    assert whole.dtype == np.float32
    np.testing.assert_allclose(whole, metrics.unit_rows(a) @ metrics.unit_rows(b).T, atol=1e-6)
    for rows in (1, 2, 5, 20, 33, 64):
        for start in range(0, len(a), rows):
            block = metrics.cosine(a[start : start + rows], b)
            np.testing.assert_array_equal(block, whole[start : start + rows], err_msg=f"{rows}")
