"""The literature's protocol metrics on hand-built cases with hand-computed answers:
interval IoU, R@n at IoU m and mIoU of text-to-interval queries, the "not found"
threshold and its rates, generalised zero-shot accuracy and the harmonic mean."""

import numpy as np
import pytest

from wat_jax import metrics
from wat_jax.tasks import babel60


def test_interval_iou_of_half_open_intervals():
    iou = metrics.interval_iou([(0, 10), (2, 4), (20, 25)], [(5, 15), (0, 10)])
    # [0,10) vs [5,15): overlap 5, union 15; vs itself 1; [2,4) inside [0,10): 2/10;
    # [2,4) and [5,15) are disjoint; [20,25) touches neither.
    np.testing.assert_allclose(iou, [[1 / 3, 1.0], [0.0, 0.2], [0.0, 0.0]])
    assert metrics.interval_iou([(3, 3)], [(3, 3)]).tolist() == [[0.0]]  # empty: 0
    assert metrics.interval_iou([], [(0, 1)]).shape == (0, 1)


def test_recall_at_iou_and_miou_count_queries_by_hand():
    ranked = [
        [(0, 10), (20, 30)],  # q1: the 2nd interval is exact, the 1st misses
        [(0, 8)],  # q2: IoU 0.8
        [(0, 10)],  # q3: two true segments; the better is [0,12): IoU 10/12
        [],  # q4: answered with nothing
        [(0, 10)],  # q5: IoU 6/10
    ]
    truths = [[(20, 30)], [(0, 10)], [(5, 15), (0, 12)], [(0, 5)], [(4, 10)]]
    got = metrics.grounding_scores(ranked, truths, ks=(1, 5), ious=(0.3, 0.5, 0.7))
    assert got["num_queries"] == 5
    assert got["R@1@0.3"] == pytest.approx(3 / 5)  # q2, q3, q5
    assert got["R@1@0.5"] == pytest.approx(3 / 5)  # q5's 0.6 still counts
    assert got["R@1@0.7"] == pytest.approx(2 / 5)  # q2, q3
    assert got["R@5@0.3"] == pytest.approx(4 / 5)  # q1 joins through its 2nd interval
    assert got["R@5@0.7"] == pytest.approx(3 / 5)  # q1, q2, q3
    # mIoU: each query's FIRST interval against its best true segment, 0 when none.
    assert got["mIoU"] == pytest.approx((0 + 0.8 + 10 / 12 + 0 + 0.6) / 5)
    # IoU exactly at the threshold is a hit.
    assert metrics.grounding_scores([[(0, 5)]], [[(0, 10)]], (1,), (0.5,))["R@1@0.5"] == 1.0
    with pytest.raises(ValueError):
        metrics.grounding_scores([[(0, 1)]], [[]])


def test_not_found_threshold_lets_through_the_chosen_false_alarm_rate():
    absent = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.4, 0.6, 0.8, 0.0]
    # 20 % of 10 absent queries: 2 may reach it (0.9, 0.8), the 3rd highest (0.7) may not.
    cut = metrics.threshold_at_false_alarm(absent, 0.2)
    assert 0.7 < cut <= 0.8 and cut == np.nextafter(0.7, 1.0)
    rates = metrics.detection_rates([0.75, 0.85, 0.65, 0.7], absent, cut)
    assert rates["false_alarm"] == pytest.approx(0.2) and rates["recall"] == pytest.approx(2 / 4)
    assert rates["num_present"] == 4 and rates["num_absent"] == 10
    # 0 %: nothing absent reaches it, not even the highest.
    cut0 = metrics.threshold_at_false_alarm(absent, 0.0)
    assert cut0 > 0.9 and metrics.detection_rates([0.95], absent, cut0)["false_alarm"] == 0.0
    # Ties at the cut are all kept out, so ties can only lower the false alarms.
    tied = metrics.threshold_at_false_alarm([0.5, 0.5, 0.5, 0.5], 0.5)
    assert metrics.detection_rates([], [0.5] * 4, tied)["false_alarm"] == 0.0
    with pytest.raises(ValueError):
        metrics.threshold_at_false_alarm([], 0.05)


def test_harmonic_mean():
    assert metrics.harmonic_mean(0.6, 0.3) == pytest.approx(0.4)
    assert metrics.harmonic_mean(0.5, 0.5) == pytest.approx(0.5)
    assert metrics.harmonic_mean(0.0, 0.0) == 0.0 and metrics.harmonic_mean(0.9, 0.0) == 0.0


def test_gzsl_counts_an_unseen_window_only_when_its_unseen_class_wins():
    held = np.array([False, False, True])
    labels = np.array(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 0, 1], [0, 0, 0]], bool
    )  # w3 carries a seen and the unseen class; w5 has no label
    top = [0, 2, 2, 0, 1, 1]  # each window's top-1 class
    scores = np.eye(3)[top]
    got = babel60.gzsl_scores(scores, labels, held)
    # seen windows w0 (hit), w1 (miss); unseen w2 (hit), w3 (its seen class won: miss), w4
    assert got["seen"] == pytest.approx(1 / 2) and got["unseen"] == pytest.approx(1 / 3)
    assert got["harmonic"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert got["num_seen_windows"] == 2 and got["num_unseen_windows"] == 3


def test_zsl_ranks_among_the_unseen_classes_alone():
    classes = ["a", "b", "c", "d"]
    held = np.array([False, True, True, False])
    labels = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [1, 0, 0, 0]], bool)
    # Seen class "a" outscores everything; among b and c alone: w0 b>c (hit), w1 c>b
    # (hit), w2 b>c (miss). Generalised, every unseen window's top-1 is "a": 0.
    scores = np.array(
        [[0.9, 0.5, 0.1, 0], [0.9, 0.1, 0.5, 0], [0.9, 0.5, 0.1, 0], [0.9, 0, 0, 0.1]]
    )
    got = babel60.zero_shot_score(scores, labels, classes, held)
    assert got["zsl"] == {"top1": pytest.approx(2 / 3)}  # no Top-5 with 2 unseen classes
    assert got["unseen_only"]["top1"] == pytest.approx(2 / 3)
    assert got["top1"] == 0.0 and got["gzsl"]["unseen"] == 0.0
    assert got["gzsl"]["seen"] == 1.0 and got["gzsl"]["harmonic"] == 0.0
    # With more than 5 unseen classes Top-5 among them is reported.
    many = np.ones(8, bool)
    many[0] = False
    rng = np.random.default_rng(0)
    eight = babel60.zero_shot_score(
        rng.random((20, 8)), np.eye(8, dtype=bool)[rng.integers(1, 8, 20)], list("abcdefgh"), many
    )
    assert 0.0 <= eight["zsl"]["top1"] <= eight["zsl"]["top5"] <= 1.0
