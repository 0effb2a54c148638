"""The action timeline: window starts, per-frame aggregation and smoothing on hand-built
sequences, segments and query intervals, MS-TCN's segmental F1 against hand-computed
values, the synthetic val sequences' transitions, and the CLI and eval block on a
smoke-trained run."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests import cli
from wat_jax import metrics, timeline
from wat_jax.tools import timeline as timeline_cli
from wat_jax.data import amass, babel_sequences, synthetic_babel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- windows, aggregation, smoothing ----------------------------------------------------


def test_window_starts_cover_every_frame():
    np.testing.assert_array_equal(
        timeline.window_starts(200, 60, 15), [0, 15, 30, 45, 60, 75, 90, 105, 120, 135, 140]
    )
    np.testing.assert_array_equal(timeline.window_starts(150, 60, 15), np.arange(0, 91, 15))
    np.testing.assert_array_equal(timeline.window_starts(40, 60, 15), [0])  # one padded window
    np.testing.assert_array_equal(timeline.window_starts(60, 60, 15), [0])
    for t in (61, 77, 333):
        starts = timeline.window_starts(t, 60, 15)
        covered = np.zeros(t, bool)
        for s in starts:
            covered[s : s + 60] = True
        assert covered.all() and starts[-1] + 60 == t
    with pytest.raises(ValueError):
        timeline.window_starts(10, 60, 0)


def _fractions(labels, starts, window):
    """Window score = the fraction of the window's frames in each class."""
    return np.stack([labels[s : s + window].mean(0) for s in starts])


def test_frame_scores_are_the_mean_of_covering_windows_on_a_hand_built_sequence():
    # 10 frames: class 0 on frames 0-4, class 1 on 5-9; windows of 4 every 2 frames.
    labels = np.zeros((10, 2))
    labels[:5, 0] = labels[5:, 1] = 1
    starts = timeline.window_starts(10, 4, 2)
    np.testing.assert_array_equal(starts, [0, 2, 4, 6])
    win = _fractions(labels, starts, 4)
    np.testing.assert_allclose(win, [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    # Frames 0-1: window 0 only; 2-3: windows 0, 1; 4-5: windows 1, 2; 6-7: 2, 3; 8-9: 3.
    expected = [[1, 0]] * 2 + [[0.875, 0.125]] * 2 + [[0.5, 0.5]] * 2
    expected += [[0.125, 0.875]] * 2 + [[0, 1]] * 2
    scores = timeline.frame_scores(win, starts, 4, 10)
    np.testing.assert_allclose(scores, expected)

    # Segments: runs of the top-1 class (the tie at frames 4-5 goes to the first class).
    segs = timeline.segments(scores, fps=2.0, classes=["sit", "walk"])
    assert [(s["class"], s["start_frame"], s["end_frame"]) for s in segs] == [
        ("sit", 0, 6),
        ("walk", 6, 10),
    ]
    assert (segs[0]["start_s"], segs[0]["end_s"], segs[1]["end_s"]) == (0.0, 3.0, 5.0)
    np.testing.assert_allclose(segs[0]["score"], (1 + 1 + 0.875 + 0.875 + 0.5 + 0.5) / 6)
    np.testing.assert_allclose(segs[1]["score"], (0.875 * 2 + 1 * 2) / 4)

    # Top-k per frame, best first.
    idx, val = timeline.top_k(scores, 2)
    np.testing.assert_array_equal(idx[:, 0], [0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(val[2], [0.875, 0.125])


def test_a_frame_no_window_covers_is_nan_and_a_short_sequence_is_one_window():
    scores = timeline.frame_scores(np.array([[1.0, 2.0]]), [0], 3, 5)
    np.testing.assert_allclose(scores[:3], [[1, 2]] * 3)
    assert np.isnan(scores[3:]).all()
    # 40 frames with 60-frame windows: one window, clipped to the sequence.
    short = timeline.frame_scores(
        np.array([[0.2, 0.7]]), timeline.window_starts(40, 60, 15), 60, 40
    )
    np.testing.assert_allclose(short, [[0.2, 0.7]] * 40)


def test_smoothing_is_a_centred_moving_average_that_keeps_constants():
    x = np.arange(6, dtype=float)[:, None]
    np.testing.assert_allclose(timeline.smooth(x, 3)[:, 0], [0.5, 1, 2, 3, 4, 4.5])
    np.testing.assert_allclose(timeline.smooth(x, 1), x)  # 1 frame: unchanged
    const = np.full((9, 3), 0.3)
    np.testing.assert_allclose(timeline.smooth(const, 5), const)
    step = np.r_[np.zeros(5), np.ones(5)][:, None]
    np.testing.assert_allclose(timeline.smooth(step, 3)[3:8, 0], [0, 1 / 3, 2 / 3, 1, 1])
    assert timeline.smooth_frames_of(0.5, 30) == 15 and timeline.smooth_frames_of(0.4, 30) == 13
    assert timeline.frames_of(0.5, 30) == 15 and timeline.frames_of(0.001, 30) == 1


def test_query_intervals_are_ranked_runs_above_the_relative_threshold():
    curve = np.array([0, 0, 1, 1, 0, 0, 0, 0.6, 0.6, 0])
    found = timeline.query_intervals(curve, fps=10)  # threshold 0 + 0.5 * (1 - 0) = 0.5
    assert [(i["rank"], i["start_s"], i["end_s"], i["peak_s"]) for i in found] == [
        (1, 0.2, 0.4, 0.2),
        (2, 0.7, 0.9, 0.7),
    ]
    np.testing.assert_allclose([i["score"] for i in found], [1.0, 0.6])
    assert len(timeline.query_intervals(curve, fps=10, threshold=0.8)) == 1
    assert len(timeline.query_intervals(curve, fps=10, relative=0.7)) == 1
    flat = timeline.query_intervals(np.full(30, 0.2), fps=30)
    assert [(i["start_s"], i["end_s"]) for i in flat] == [(0.0, 1.0)]


# ---- segmental F1, frame accuracy, frame mAP --------------------------------------------


def _onehot(per_frame, num_classes):
    per_frame = np.asarray(per_frame)
    out = np.zeros((len(per_frame), num_classes), bool)
    out[np.arange(len(per_frame))[per_frame >= 0], per_frame[per_frame >= 0]] = True
    return out


def _f1s(pred, labels):
    counts = metrics.segmental_counts(pred, labels, (0.1, 0.25, 0.5))
    return {o: metrics.f1_score(*c) for o, c in counts.items()}, counts


def test_segment_runs():
    assert metrics.label_runs([0, 0, 1, -1, 1, 1]) == [(0, 0, 2), (1, 2, 3), (1, 4, 6)]
    assert metrics.label_runs([]) == []
    labels = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [1, 0]], bool)
    assert metrics.multilabel_runs(labels) == [(0, 0, 2), (0, 4, 5), (1, 1, 3)]


def test_f1_over_segmentation_hand_computed():
    # Truth: class 0 on [0, 10), class 1 on [10, 20).
    # Prediction 0 x5, 1 x2, 0 x3, 1 x10 -> segments (0,0,5) (1,5,7) (0,7,10) (1,10,20):
    #   (0,0,5):  IoU with truth 0 = 5/10 = 0.5 -> TP at 0.1, 0.25 and 0.5
    #   (1,5,7):  truth 1 is [10, 20): intersection -3 over a span of 15 -> FP
    #   (0,7,10): IoU 3/10 with truth 0, already matched -> FP
    #   (1,10,20): IoU 1 -> TP
    # TP 2, FP 2, FN 0: precision 1/2, recall 1, F1 = 2/3 at every threshold.
    truth = _onehot([0] * 10 + [1] * 10, 2)
    pred = [0] * 5 + [1] * 2 + [0] * 3 + [1] * 10
    f1, counts = _f1s(pred, truth)
    for o in (0.1, 0.25, 0.5):
        assert counts[o].tolist() == [2, 2, 0]
        assert f1[o] == pytest.approx(2 / 3)


def test_f1_thresholds_hand_computed():
    # Truth: classes 0, 1, 2, 3 on [0,10) [10,20) [20,30) [30,40).
    # Prediction: 0 [0,2), 1 [2,20), 2 [20,30), 3 [30,33), 0 [33,40).
    #   (0,0,2)   IoU 2/10  = 0.2   TP@0.1 only
    #   (1,2,20)  IoU 10/18 = 0.556 TP everywhere
    #   (2,20,30) IoU 1            TP everywhere
    #   (3,30,33) IoU 3/10  = 0.3   TP@0.1, TP@0.25
    #   (0,33,40) disjoint from truth 0 -> FP everywhere
    # @0.1:  TP 4 FP 1 FN 0 -> P .8, R 1   -> F1 = 1.6/1.8 = 0.8889
    # @0.25: TP 3 FP 2 FN 1 -> P .6, R .75 -> F1 = 0.9/1.35 = 0.6667
    # @0.5:  TP 2 FP 3 FN 2 -> P .4, R .5  -> F1 = 0.4/0.9 = 0.4444
    truth = _onehot(np.repeat(np.arange(4), 10), 4)
    pred = [0] * 2 + [1] * 18 + [2] * 10 + [3] * 3 + [0] * 7
    f1, counts = _f1s(pred, truth)
    assert counts[0.1].tolist() == [4, 1, 0]
    assert counts[0.25].tolist() == [3, 2, 1]
    assert counts[0.5].tolist() == [2, 3, 2]
    assert f1[0.1] == pytest.approx(16 / 18)
    assert f1[0.25] == pytest.approx(2 / 3)
    assert f1[0.5] == pytest.approx(4 / 9)


def test_each_true_segment_is_matched_once():
    # Two predicted segments of class 0 overlap the one true segment by IoU >= 0.5 each:
    # [0,10) truth; prediction 0 [0,6), 1 [6,7), 0 [7,10) -> IoUs 0.6 (TP) and 0.3 (FP).
    truth = np.zeros((10, 2), bool)
    truth[:, 0] = True
    f1, counts = _f1s([0] * 6 + [1] + [0] * 3, truth)
    assert counts[0.1].tolist() == [1, 2, 0]  # the class-1 segment has no truth: FP
    assert f1[0.1] == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))


def test_background_frames_and_several_labels_per_frame():
    # Class 0 on [0,5), no label on [5,7) (e.g. a BABEL transition), classes 1 AND 2 on
    # [7,12). Prediction 0 on [0,6), 1 on [6,12): segments keep their extent into the
    # gap, (0,0,6) IoU 5/6 and (1,6,12) IoU 5/6: TP 2; truth (2,7,12) is missed: FN 1.
    # Precision 1, recall 2/3, F1 = 0.8.
    truth = np.zeros((12, 3), bool)
    truth[:5, 0] = truth[7:, 1] = truth[7:, 2] = True
    pred = [0] * 6 + [1] * 6
    f1, counts = _f1s(pred, truth)
    assert counts[0.5].tolist() == [2, 0, 1] and f1[0.5] == pytest.approx(0.8)
    # A predicted segment wholly inside the gap (class 2 on [5,7)) is left out: the same.
    _, counts = _f1s([0] * 5 + [2] * 2 + [1] * 5, truth)
    assert counts[0.5].tolist() == [2, 0, 1]
    # A late boundary running through the gap is one segment, not an extra FP:
    # 0 on [0,9) has IoU 5/9 with truth 0 (TP@0.5); 1 on [9,12) IoU 3/5 (TP@0.5).
    _, counts = _f1s([0] * 9 + [1] * 3, truth)
    assert counts[0.5].tolist() == [2, 0, 1]
    scores = np.eye(3)[pred] + 0.01 * np.eye(3)[[2] * 12]
    # Frame accuracy counts the 10 labelled frames; the top class is in the set in all.
    assert metrics.frame_accuracy(scores, truth) == 1.0
    # Frame mAP over the 10 labelled frames: classes 0 and 1 rank their frames first
    # (AP 1); class 2 scores 0.01 everywhere, so ties keep frame order and its frames
    # 7-11 rank 6..10: AP = mean(1/6, 2/7, 3/8, 4/9, 5/10).
    ap_late = np.mean([1 / 6, 2 / 7, 3 / 8, 4 / 9, 5 / 10])
    assert metrics.frame_map(scores, truth) == pytest.approx((2 + ap_late) / 3)
    scores2 = np.zeros((12, 3))
    scores2[:, 2] = np.linspace(1, 0, 12)  # class 2 ranks frames 0.. first: its frames last
    # Class 2's frames rank 6..10 again (AP ap_late); classes 0 and 1 tie at 0 everywhere
    # (frame order): class 0's frames rank 1..5 (AP 1), class 1's 6..10 (ap_late).
    assert metrics.frame_map(scores2, truth) == pytest.approx((1 + 2 * ap_late) / 3)


def test_f1_aggregates_counts_over_sequences_not_f1s():
    # Sequence A perfect (TP 2); sequence B all wrong (TP 0, FP 1, FN 1).
    # Summed: TP 2, FP 1, FN 1 -> F1 = 2/3 (the mean of per-sequence F1s would be 0.5).
    tally = timeline._Tally((0.5,))
    a = _onehot([0] * 5 + [1] * 5, 2)
    tally.add(a.astype(float), a)
    b = _onehot([0] * 6, 2)
    tally.add(np.eye(2)[[1] * 6], b)
    result = tally.result()
    assert result["f1@0.5"] == pytest.approx(2 / 3)
    assert result["frame_acc"] == pytest.approx(10 / 16)
    assert metrics.f1_score(0, 3, 2) == 0.0


def _sequence(per_frame, num_classes, sid="s"):
    """A hand-built Sequence whose first rotation feature holds each frame's class."""
    per_frame = np.asarray(per_frame)
    rot6d = np.zeros((len(per_frame), 24, 6), np.float32)
    rot6d[:, 0, 0] = per_frame
    return babel_sequences.Sequence(
        sid, sid, rot6d, np.zeros((len(per_frame), 3)), _onehot(per_frame, num_classes)
    )


def _histogram_embedder(num_classes):
    """Embeds a window as the histogram of its real frames' classes (the oracle model)."""

    def embed(motion, mask):
        cls = np.rint(motion[:, :, 0, 0]).astype(int)
        return np.stack(
            [np.bincount(c[m], minlength=num_classes) for c, m in zip(cls, mask)]
        ).astype(np.float32)

    return embed


def test_evaluate_sequences_recovers_known_segments_and_beats_random():
    # Two sequences at 30 fps of 3-4 s actions; an oracle embedder scores each window by
    # its class fractions, so the per-frame top-1 recovers every segment.
    seq_a = _sequence(np.repeat([0, 1, 2], [90, 120, 100]), 3, "a")
    seq_b = _sequence(np.repeat([2, 0, 1, 2], [100, 90, 110, 95]), 3, "b")
    results, example = timeline.evaluate_sequences(
        [seq_a, seq_b], _histogram_embedder(3), np.eye(3), window=60, fps=30.0, seed=3
    )
    assert results["num_sequences"] == 2 and results["num_frames"] == 310 + 395
    assert results["num_windows"] == len(timeline.window_starts(310, 60, 15)) + len(
        timeline.window_starts(395, 60, 15)
    )
    for o in ("0.1", "0.25", "0.5"):
        assert results[f"f1@{o}"] == 1.0
        assert 0.0 <= results["random"][f"f1@{o}"] < 0.5
    assert results["frame_acc"] > 0.95 and results["frame_mAP"] > 0.95
    assert results["random"]["frame_acc"] < 0.6
    assert set(results["random"]) == {"frame_acc", "frame_mAP", "f1@0.1", "f1@0.25", "f1@0.5"}
    assert example["sequence"].sid == "b" and example["scores"].shape == (395, 3)
    # Boundaries land within a few frames of the truth.
    segs = timeline.segments(example["scores"], 30.0)
    assert [s["class"] for s in segs] == [2, 0, 1, 2]
    np.testing.assert_allclose([s["end_frame"] for s in segs[:3]], [100, 190, 300], atol=4)


def test_grounding_and_not_found_with_an_oracle_and_with_random_scores():
    # Four classes; class 3 never happens and c lacks class 2 too: 4 absent queries per
    # kind. The oracle's curve for a class is the fraction of its frames in the windows
    # around, so each present class's best interval is its segment, and an absent class
    # scores 0 everywhere (cosine of a histogram without it).
    seqs = [
        _sequence(np.repeat([0, 1, 2], [90, 120, 100]), 4, "a"),
        _sequence(np.repeat([2, 0, 1, 2], [100, 90, 110, 95]), 4, "b"),
        _sequence(np.repeat([1, 0], [150, 150]), 4, "c"),
    ]
    vectors = {"centroid": np.eye(4), "name": np.eye(4)[[0, 1, 2, 3]] * 2.0}
    results, _ = timeline.evaluate_sequences(
        seqs, _histogram_embedder(4), np.eye(4), window=60, fps=30.0, seed=3, query_vectors=vectors
    )
    grounding, found = results["grounding"], results["not_found"]
    assert set(grounding) == {"centroid", "name", "random"}
    # present (sequence, class) queries: a 3 classes, b 3 (class 2 twice), c 2
    for kind in ("centroid", "name"):
        g = grounding[kind]
        assert g["num_queries"] == 8
        assert g["R@1@0.3"] == 1.0 and g["R@5@0.7"] == 1.0 and g["mIoU"] > 0.6
        assert found[kind]["recall"] == 1.0 and found[kind]["false_alarm"] == 0.0
        assert found[kind]["num_absent"] == 4 and found[kind]["cross_validated"] is True
    r = grounding["random"]
    assert r["num_queries"] == 8 and r["R@1@0.7"] < grounding["centroid"]["R@1@0.7"]
    # the pooled threshold: just above the absent queries' peak score, 0
    assert 0.0 < found["threshold"] < 1e-6 and found["false_alarm_target"] == 0.05
    for kind in ("centroid", "name", "random"):
        for m in ("R@1", "R@5"):
            part = grounding[kind]
            assert part[f"{m}@0.3"] >= part[f"{m}@0.5"] >= part[f"{m}@0.7"]
        assert part["R@1@0.5"] <= part["R@5@0.5"]


def test_a_query_below_the_not_found_threshold_gets_no_interval():
    curve = np.repeat([0.0, 0.4, 0.0, 0.25, 0.0], 5)  # cut at half the range: 0.2
    assert len(timeline.query_intervals(curve, fps=10)) == 2  # relative: two runs
    assert len(timeline.query_intervals(curve, fps=10, found_at=0.3)) == 1  # only the peak's
    assert timeline.query_intervals(curve, fps=10, found_at=0.41) == []  # not found
    # Through run_timeline: "a person jumps" on a sequence with no jump (class 1).
    run = _FakeRun()
    seq = _sequence(np.repeat([0, 2], [150, 150]), 3, "nojump")
    answer = timeline_cli.run_timeline(run, seq, "a person jumps", found_at=0.2, found_source="x")
    query = answer["query"]
    assert query["intervals"] == [] and query["found"] is False
    assert query["peak_score"] < 0.2 and query["not_found_threshold"] == 0.2
    summary = timeline_cli.format_summary(answer, [])
    assert "not found: its best score, 0.0000" in summary and "threshold 0.2000 (x)" in summary
    jump = _sequence(np.repeat([0, 1, 2], [90, 120, 100]), 3, "jump")
    query = timeline_cli.run_timeline(run, jump, "a person jumps", found_at=0.2)["query"]
    assert query["found"] is True and all(i["score"] >= 0.2 for i in query["intervals"])
    assert 2.7 <= query["intervals"][0]["peak_s"] <= 7.0
    from wat_jax.errors import InputError

    assert timeline_cli.not_found_option("off") is None
    assert timeline_cli.not_found_option("0.25") == 0.25
    with pytest.raises(InputError, match="--not_found"):
        timeline_cli.not_found_option("high")


# ---- run_timeline on a fake run (no JAX) ------------------------------------------------


class _FakeRun:
    def __init__(self, num_classes=3):
        import ml_collections

        self.config = ml_collections.ConfigDict(
            {"data": {"fps": 30, "window_frames": 60}, "eval": {}}
        )
        self.step, self.classes, self.workdir = 7, ["walk", "jump", "sit"][:num_classes], ""
        self.class_vectors = np.eye(num_classes)
        self._embed = _histogram_embedder(num_classes)

    def embed_motion(self, motion, mask=None):
        return metrics.unit_rows(self._embed(motion, mask))

    def embed_text(self, texts):
        assert texts == ["a person jumps"]
        return np.array([[0.0, 1.0, 0.0]])  # the "jump" direction


def test_run_timeline_output_and_picture(tmp_path):
    run = _FakeRun()
    seq = _sequence(np.repeat([0, 1, 2], [90, 120, 100]), 3, "7")
    answer = timeline_cli.run_timeline(run, seq, "a person jumps", k=2)
    assert answer["num_frames"] == 310 and len(answer["frames"]["top_k"]) == 310
    assert np.asarray(answer["frames"]["scores"]).shape == (310, 2)
    assert [s["class"] for s in answer["segments"]] == ["walk", "jump", "sit"]
    assert answer["ground_truth"]["f1@0.5"] == 1.0
    best = answer["query"]["intervals"][0]
    assert best["rank"] == 1 and 2.7 <= best["peak_s"] <= 7.0  # jump is 3.0-7.0 s
    json_path, png_path = timeline_cli.write_outputs(answer, str(tmp_path), "hand-built")
    saved = json.load(open(json_path))
    assert not any(k.startswith("_") for k in saved) and saved["query"]["text"] == "a person jumps"
    _assert_picture(png_path)

    # A sequence shorter than a window: one padded window, one segment.
    short = _sequence(np.ones(40, int), 3, "short")
    answer = timeline_cli.run_timeline(run, short)
    assert answer["num_windows"] == 1 and [s["class"] for s in answer["segments"]] == ["jump"]
    assert answer["query"] is None


def test_bad_options_are_input_errors():
    from wat_jax.errors import InputError

    for kwargs, key in (
        (dict(stride_s=0), "--stride_s"),
        (dict(stride_s=2.5), "--stride_s"),
        (dict(smooth_s=-1), "--smooth_s"),
        (dict(k=0), "--top_k"),
        (dict(query="  "), "--query"),
    ):
        with pytest.raises(InputError, match=key):
            timeline_cli.run_timeline(_FakeRun(), _sequence(np.zeros(90, int), 3), **kwargs)


def _assert_picture(path):
    image = Image.open(path)
    assert image.format == "PNG" and image.size[0] >= 800 and image.size[1] >= 300
    rgb = np.asarray(image.convert("RGB")).astype(np.int64)
    assert rgb.std() > 10 and len(np.unique(rgb.reshape(-1, 3), axis=0)) >= 8


# ---- synthetic val sequences ------------------------------------------------------------


def _synthetic(tmp_path, name, **overrides):
    from experiments import babel60

    cfg = babel60.get_config("smoke").data
    cfg.synthetic.update(overrides)
    _, babel_dir = synthetic_babel.write_synthetic(str(tmp_path / name), cfg, 10)
    return {s: json.load(open(os.path.join(babel_dir, f"{s}.json"))) for s in ("train", "val")}


def test_synthetic_val_sequences_have_transitions_and_train_is_unchanged(tmp_path):
    new = _synthetic(tmp_path, "new")
    for entry in new["val"].values():
        assert entry["frame_ann"] is not None
        actions = [lab for lab in entry["frame_ann"]["labels"] if lab["act_cat"] != ["transition"]]
        assert len(actions) >= 3  # >= 2 transitions per val sequence
    assert any(e["frame_ann"] is None for e in new["train"].values())  # seq_ann path kept
    old = _synthetic(tmp_path, "old", val_min_segments=2, val_null_frame_ann_fraction=0.2)
    assert old["train"] == new["train"]  # the val keys never move the train sequences
    assert any(e["frame_ann"] is None for e in old["val"].values())


# ---- the CLI and the eval block on a smoke-trained run ----------------------------------


@pytest.fixture(scope="module")
def trained_run(babel_smoke, tmp_path_factory):
    """experiments/babel60.py:smoke through --mode=all (the session's run,
    tests/conftest.py), a copy of it for this module: the CLI writes into it."""
    return str(cli.copy_run(babel_smoke.workdir, tmp_path_factory.mktemp("timeline_run") / "run"))


def _timeline_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "wat_jax.timeline", *args],
        cwd=ROOT,
        env=cli.env(8),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_eval_json_has_the_timeline_block_beside_random(trained_run):
    (name,) = [f for f in os.listdir(os.path.join(trained_run, "eval")) if f.endswith(".json")]
    result = json.load(open(os.path.join(trained_run, "eval", name)))
    block = result["timeline"]
    keys = {"frame_acc", "frame_mAP", "f1@0.1", "f1@0.25", "f1@0.5"}
    assert keys <= set(block) and set(block["random"]) == keys
    for part in (block, block["random"]):
        assert all(0.0 <= part[k] <= 1.0 for k in keys)
        assert part["f1@0.1"] >= part["f1@0.25"] >= part["f1@0.5"]
    assert block["num_sequences"] == 6 and block["num_frames"] > 6 * 200
    _assert_picture(os.path.join(trained_run, "eval", f"timeline_step_{result['step']}.png"))


def test_eval_json_has_grounding_and_not_found_and_the_cli_uses_its_threshold(trained_run):
    (name,) = [f for f in os.listdir(os.path.join(trained_run, "eval")) if f.endswith(".json")]
    result = json.load(open(os.path.join(trained_run, "eval", name)))
    grounding, found = result["timeline"]["grounding"], result["timeline"]["not_found"]
    assert set(grounding) == {"centroid", "name", "random"}
    for part in grounding.values():
        keys = {f"R@{k}@{m}" for k in (1, 5) for m in (0.3, 0.5, 0.7)} | {"mIoU", "num_queries"}
        assert set(part) == keys and part["num_queries"] > 6
        assert all(0.0 <= part[k] <= 1.0 for k in keys - {"num_queries"})
    for kind in ("centroid", "name", "random"):
        assert 0.0 <= found[kind]["false_alarm"] <= 1.0 and 0.0 <= found[kind]["recall"] <= 1.0
    cut = found["threshold"]
    assert isinstance(cut, float)
    # A query for a class the sequence lacks, answered with the calibrated threshold.
    from wat_jax import run_config
    from wat_jax.data import prepared

    seq = babel_sequences.sequence_at(run_config.load(trained_run).data, trained_run, "val", 0)
    classes = prepared.read_split(trained_run, "val").classes
    absent = [c for i, c in enumerate(classes) if not seq.labels[:, i].any()]
    out = os.path.join(trained_run, "timeline", "absent")
    proc = _timeline_cli(
        f"--workdir={trained_run}", "--motion=val:0", f"--query={absent[0]}", f"--out={out}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    query = json.load(open(os.path.join(out, "timeline.json")))["query"]
    assert query["not_found_threshold"] == cut and query["not_found_source"].endswith(name)
    if query["peak_score"] < cut:
        assert query["intervals"] == [] and "not found" in proc.stdout
    else:
        assert query["intervals"] and all(i["score"] >= cut for i in query["intervals"])


def test_read_sequences_match_the_prepared_windows(trained_run):
    from wat_jax import run_config
    from wat_jax.data import prepared

    config = run_config.load(trained_run)
    seqs = {s.sid: s for s in babel_sequences.read_sequences(config.data, trained_run, "val")}
    val = prepared.read_split(trained_run, "val")
    assert len(seqs) == 6
    for i in (0, len(val) - 1):
        row = val.index[i]
        seq = seqs[row["babel_sid"]]
        motion, mask = babel_sequences.window_batch(seq.rot6d, seq.trans, [row["start_frame"]], 60)
        np.testing.assert_allclose(motion[0], val.motion[i], atol=1e-6)
        window_labels = seq.labels[row["start_frame"] : row["start_frame"] + 60].any(0)
        np.testing.assert_array_equal(window_labels, val.labels[i] > 0.5)


def test_cli_writes_timeline_json_and_png(trained_run, tmp_path):
    data = json.load(open(os.path.join(trained_run, "raw", "babel", "val.json")))
    entry = data[sorted(data)[1]]
    npz = amass.resolve(os.path.join(trained_run, "raw", "amass"), entry["feat_p"])
    out = tmp_path / "out"
    proc = _timeline_cli(
        f"--workdir={trained_run}",
        f"--motion={npz}",
        "--query=a person jumps",
        "--stride_s=0.5",
        "--not_found=off",  # every interval: this test checks their ranking
        f"--out={out}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote" in proc.stdout and "query 'a person jumps'" in proc.stdout
    answer = json.load(open(out / "timeline.json"))
    t = answer["num_frames"]
    assert answer["sid"] == str(entry["babel_sid"]) and answer["step"] == 12
    assert len(answer["frames"]["time_s"]) == t and abs(t - entry["dur"] * 30) <= 1
    top, scores = np.asarray(answer["frames"]["top_k"]), np.asarray(answer["frames"]["scores"])
    assert top.shape == (t, 3) and scores.shape == (t, 3)
    assert (np.diff(scores, axis=1) <= 0).all()  # best first
    segs = answer["segments"]
    assert segs[0]["start_s"] == 0.0 and segs[-1]["end_frame"] == t
    assert all(a["end_frame"] == b["start_frame"] for a, b in zip(segs, segs[1:]))
    assert {s["class"] for s in segs} <= set(answer["classes"])
    truth = answer["ground_truth"]
    assert len(truth["segments"]) >= 3 and len(truth["labels"]) == t
    query = answer["query"]
    assert len(query["curve"]) == t and query["intervals"][0]["rank"] == 1
    assert [i["score"] for i in query["intervals"]] == sorted(
        (i["score"] for i in query["intervals"]), reverse=True
    )
    _assert_picture(out / "timeline.png")

    # The same motion outside the run's data has no ground truth; val:K finds it by index.
    outside = tmp_path / "elsewhere.npz"
    shutil.copy(npz, outside)
    proc = _timeline_cli(f"--workdir={trained_run}", f"--motion={outside}", f"--out={out}/x")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.load(open(out / "x" / "timeline.json"))["ground_truth"] is None
    proc = _timeline_cli(f"--workdir={trained_run}", "--motion=val:1", "--top_k=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    by_index = json.load(open(os.path.join(trained_run, "timeline", "val_1", "timeline.json")))
    assert by_index["sid"] == answer["sid"] and by_index["segments"] == answer["segments"]


@pytest.mark.parametrize(
    "args, where",
    [
        (["--motion=/no/such/file.npz"], "/no/such/file.npz"),
        (["--motion=val:99"], "--motion"),
        (["--motion=val:0", "--query= "], "--query"),
        (["--motion=val:0", "--stride_s=0"], "--stride_s"),
    ],
)
def test_cli_bad_input_is_one_error_line(trained_run, args, where):
    proc = _timeline_cli(f"--workdir={trained_run}", *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("I")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {where}"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_summary_table_shows_the_timeline_beside_random(tmp_path):
    from wat_jax import evaluate

    path = tmp_path / "step_3.json"
    block = {"frame_acc": 0.9, "frame_mAP": 0.8, "f1@0.5": 0.7, "num_sequences": 4}
    random = {"frame_acc": 0.1, "frame_mAP": 0.2, "f1@0.5": 0.05}
    path.write_text(json.dumps({"step": 3, "top1": 0.5, "timeline": dict(block, random=random)}))
    table = evaluate.summary_table(str(path))
    rows = {line.split("  ")[0].strip(): line.split() for line in table.splitlines()[3:]}
    assert rows["timeline f1@0.5"][-2:] == ["0.7000", "0.0500"]
    assert rows["timeline frame_acc"][-2:] == ["0.9000", "0.1000"]
    assert not any(k.startswith("timeline num_") for k in rows)

    grounding = {"centroid": {"R@1@0.5": 0.6, "mIoU": 0.5, "num_queries": 9}}
    grounding["random"] = {"R@1@0.5": 0.1, "mIoU": 0.2, "num_queries": 9}
    found = {"threshold": 0.31, "centroid": {"recall": 0.8, "false_alarm": 0.04}}
    found["random"] = {"recall": 0.05, "false_alarm": 0.05}
    path.write_text(
        json.dumps(
            {
                "step": 3,
                "num_windows": 1304,
                "top1": 0.5,
                "gait_to_text": {"R@1": 0.26},
                "random": {"top1": 0.07, "gait_to_text": {"R@1": 0.04}},
                "timeline": dict(block, random=random, grounding=grounding, not_found=found),
            }
        )
    )
    table = evaluate.summary_table(str(path))
    rows = {line.split("  ")[0].strip(): line.split() for line in table.splitlines()[3:]}
    assert rows["num_windows"][-1] == "1304"  # a count, not 1304.0000
    assert rows["gait-to-text R@1"][-2:] == ["0.2600", "0.0400"]
    assert rows["timeline grounding centroid R@1@0.5"][-2:] == ["0.6000", "0.1000"]
    assert rows["timeline grounding centroid mIoU"][-2:] == ["0.5000", "0.2000"]
    assert rows["timeline not-found threshold"][-1] == "0.3100"
    assert rows["timeline not-found centroid false_alarm"][-2:] == ["0.0400", "0.0500"]
    assert not any("num_queries" in k or "grounding random" in k for k in rows)


def test_timeline_keys_are_declared_so_overrides_work():
    import importlib.util

    spec = importlib.util.spec_from_file_location("babel60_exp", f"{ROOT}/experiments/babel60.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    assert config.eval.timeline is True and config.eval.timeline_max_sequences == 64
    assert config.eval.timeline_stride_s == 0.5 and config.eval.timeline_smooth_s == 0.5


def test_a_long_recording_gets_a_compact_json_a_bounded_summary_and_a_binned_picture(
    tmp_path, monkeypatch
):
    # 20 minutes at 30 fps of 3-second actions: 36,000 frames and 400 segments, built
    # in-process (a 2-hour file wrote a 34 MB indented JSON, printed 1,420 segment lines
    # and drew a solid block).
    from wat_jax.reporting import plots

    run = _FakeRun()
    per_frame = np.tile(np.repeat([0, 1, 2, 1], 90), 100)
    seq = _sequence(per_frame, 3, "long")
    answer = timeline_cli.run_timeline(run, seq, "a person jumps")
    t = len(per_frame)
    assert t == 36_000 and len(answer["segments"]) == 400  # segments at full resolution
    assert answer["segments"][-1]["end_frame"] == t
    frames = answer["frames"]
    every = frames["every"]
    assert every == 2 and len(frames["time_s"]) == t // 2 == timeline.MAX_JSON_FRAMES
    assert frames["time_s"][:3] == [0.0, round(2 / 30, 4), round(4 / 30, 4)]
    assert len(frames["top_k"]) == len(answer["query"]["curve"]) == t // 2
    assert len(answer["ground_truth"]["labels"]) == t // 2

    drawn = {}
    real = plots.timeline_png

    def timeline_png(scores, classes, fps, path, title, **kwargs):
        drawn.update(points=len(scores), fps=fps, title=title)
        return real(scores, classes, fps, path, title, **kwargs)

    monkeypatch.setattr(plots, "timeline_png", timeline_png)
    json_path, png_path = timeline_cli.write_outputs(answer, str(tmp_path), "long")
    with open(json_path) as f:
        text = f.read()
    assert text.count("\n") == 1 and ", " not in text[:2000]  # no indentation, no spaces
    assert len(text) < 2_500_000, len(text)  # ~70 bytes a kept frame, plus the segments
    assert json.loads(text)["frames"]["every"] == 2
    # The picture: at most MAX_PICTURE_POINTS bins, its x axis still in seconds.
    assert drawn["points"] == timeline.MAX_PICTURE_POINTS
    assert drawn["fps"] == pytest.approx(30 / 18) and "averaged over 0.6 s" in drawn["title"]
    _assert_picture(png_path)

    summary = timeline_cli.format_summary(answer, [json_path, png_path]).splitlines()
    assert len(summary) <= timeline.MAX_SUMMARY_SEGMENTS + 20  # was 400 segment lines
    assert "400 segments (the 30 longest below)" in summary[0]
    assert "... and 370 more segments, all in timeline.json" in summary
    assert "... and 190 more intervals, all in timeline.json" in summary

    # The bounds are parameters; 0 keeps every frame.
    short = timeline_cli.run_timeline(run, _sequence(per_frame[:3600], 3, "s"), max_frames=0)
    assert short["frames"]["every"] == 1 and len(short["frames"]["time_s"]) == 3600
    lines = timeline_cli.format_summary(short, [], max_segments=5).splitlines()
    assert "... and 35 more segments, all in timeline.json" in lines and len(lines) == 9


def test_frame_every_and_bins():
    assert timeline.frame_every(100, 100) == 1 and timeline.frame_every(101, 100) == 2
    assert timeline.frame_every(10**6, 0) == 1
    binned = timeline.bin_frames(np.arange(7.0)[:, None], 3)
    np.testing.assert_allclose(binned[:, 0], [1.0, 4.0, 6.0])  # the last bin is shorter
    np.testing.assert_array_equal(timeline.bin_frames(np.arange(4.0), 1), np.arange(4.0))


def test_cli_refuses_an_unwritable_out_before_the_model_runs(trained_run, tmp_path):
    # /proc takes no new files (as a read-only share would not): one line, nothing run.
    proc = _timeline_cli(f"--workdir={trained_run}", "--motion=val:0", "--out=/proc/wat_jax_out")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("I")]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: /proc/wat_jax_out/timeline.json: cannot write there (")
    assert lines[0].endswith("); give --out=a writable folder")
    # --workdir takes a checkpoint folder, as wat_jax.load does.
    out = tmp_path / "from_checkpoint"
    proc = _timeline_cli(
        f"--workdir={os.path.join(trained_run, 'checkpoints', '12')}",
        "--motion=val:0",
        f"--out={out}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.load(open(out / "timeline.json"))["step"] == 12
