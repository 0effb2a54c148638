"""DenseGait data: attribute table, loader and normalisation on hand-built files, the
synthetic generator read through the real loader, and bad input."""

import csv
import json
import os

import numpy as np
import pytest

from experiments import densegait as experiment
from tests import cli
from wat_jax.data import densegait as dg
from wat_jax.data import gait_attributes, prepared
from wat_jax.data.synthetic_densegait import write_synthetic
from wat_jax.errors import InputError
from wat_jax.reporting import pictures
from wat_jax.tasks.densegait import TASK

GROUP_ORDER = [
    "gender",
    "body shape",
    "viewpoint",
    "age",
    "carrying",
    "footwear",
    "action",
    "clothing",
]


# ---------------------------------------------------------------- attributes
def test_attribute_table_has_42_grouped_in_paper_order():
    assert len(gait_attributes.ATTRIBUTES) == 42 and len(set(gait_attributes.COLUMNS)) == 42
    groups = [g for _, g, _ in gait_attributes.ATTRIBUTES]
    assert [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g] == GROUP_ORDER
    sizes = {g: groups.count(g) for g in GROUP_ORDER}
    assert sizes == {
        "gender": 1,
        "body shape": 3,
        "viewpoint": 3,
        "age": 5,
        "carrying": 6,
        "footwear": 7,
        "action": 8,
        "clothing": 9,
    }


def test_attribute_set_key_and_description():
    row = np.zeros(42, np.float32)
    on = [
        "Female",
        "BodyNormal",
        "Side",
        "AgeYoungAdult",
        "Backpack",
        "Sneaker",
        "Jacket",
        "Calling",
    ]
    for name in on:
        row[gait_attributes.COLUMNS.index(name)] = 0.9
    row[gait_attributes.COLUMNS.index("Dress")] = 0.5  # not above the threshold
    idx = gait_attributes.attribute_set(row, 0.5)
    assert [gait_attributes.COLUMNS[i] for i in idx] == [
        c for c in gait_attributes.COLUMNS if c in on
    ]
    assert gait_attributes.attribute_set_key(idx) == "+".join(
        c for c in gait_attributes.COLUMNS if c in on
    )
    assert gait_attributes.attribute_set_key(reversed(idx)) == gait_attributes.attribute_set_key(
        idx
    )
    assert gait_attributes.describe_attributes(idx) == (
        "a young woman of normal build carrying a backpack, wearing sneakers and a jacket, "
        "talking on the phone, seen from the side"
    )
    assert gait_attributes.describe_attributes([]) == "a person"
    assert gait_attributes.describe_attributes([], male_if_not_female=True) == "a man"
    senior = [gait_attributes.COLUMNS.index(c) for c in ("AgeSenior", "No carrying", "Front")]
    assert gait_attributes.describe_attributes(senior, True) == (
        "an elderly man carrying nothing, seen from the front"
    )
    with pytest.raises(InputError, match="42"):
        gait_attributes.describe_attributes([42])


# ---------------------------------------------------------------- hand-built files
def skeleton(frames, x0=300.0, y0=400.0, torso=50.0, conf=0.9):
    """A standing figure in pixels (y down): mid-hip at (x0, y0), neck `torso` above it."""
    pose = np.zeros((18, 3), np.float32)
    for j, (dx, dy) in {
        0: (0, -1.3),
        1: (0, -1),
        2: (-0.3, -1),
        3: (-0.35, -0.5),
        4: (-0.35, 0),
        5: (0.3, -1),
        6: (0.35, -0.5),
        7: (0.35, 0),
        8: (-0.2, 0),
        9: (-0.2, 0.8),
        10: (-0.2, 1.6),
        11: (0.2, 0),
        12: (0.2, 0.8),
        13: (0.2, 1.6),
        14: (-0.1, -1.4),
        15: (0.1, -1.4),
        16: (-0.2, -1.35),
        17: (0.2, -1.35),
    }.items():
        pose[j] = (x0 + dx * torso, y0 + dy * torso, conf)
    out = np.repeat(pose[None], frames, 0)
    out[:, :, 0] += np.arange(frames)[:, None] * 3.0  # walks right: centring removes it
    return out


def write_raw(root, tracks, header=None, probs=None):
    """tracks: {track_id: array or None (listed but absent)} -> (csv path, tracklets dir)."""
    os.makedirs(os.path.join(root, "tr"), exist_ok=True)
    header = header or ["track_id", "file_name", "extra_col", *gait_attributes.COLUMNS]
    rng = np.random.default_rng(0)
    table = {}
    with open(os.path.join(root, "ann.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for k, (tid, arr) in enumerate(tracks.items()):
            p = probs[k] if probs is not None else rng.uniform(0, 1, 42).round(5)
            table[tid] = p
            name = f"{tid}.npy"
            if arr is not None:
                np.save(os.path.join(root, "tr", name), arr)
            row = {"track_id": tid, "file_name": name, "extra_col": "x"}
            row.update({c: f"{v:.5f}" for c, v in zip(gait_attributes.COLUMNS, p, strict=True)})
            w.writerow([row.get(h, "") for h in header])
    return os.path.join(root, "ann.csv"), os.path.join(root, "tr"), table


def ids_in(split_val: bool, n: int, frac: float = 0.5):
    out, k = [], 0
    while len(out) < n:
        if dg.in_val(f"t{k}", frac) == split_val:
            out.append(f"t{k}")
        k += 1
    return out


def real_cfg(csv_path, tracklets_dir, **kw):
    c = experiment.get_config("smoke").data
    c.source, c.annotations, c.tracklets_dir, c.val_fraction = (
        "densegait",
        csv_path,
        tracklets_dir,
        0.5,
    )
    c.update(kw)
    return c


def test_normalisation_is_exact():
    raw = skeleton(10)[None]  # [1, 10, 18, 3]
    out = dg.normalize(raw, np.ones((1, 10), bool), 0.1)[0]
    mid_hip = out[:, [dg.R_HIP, dg.L_HIP], :2].mean(1)
    np.testing.assert_allclose(mid_hip, 0, atol=1e-6)
    np.testing.assert_allclose(out[:, dg.NECK, :2], [[0, 1]] * 10, atol=1e-6)  # y up, torso 1
    np.testing.assert_allclose(out[:, 10, :2], [[-0.2, -1.6]] * 10, atol=1e-6)
    np.testing.assert_allclose(out[..., 2], 0.9, atol=1e-6)
    # Hips missing in one frame: centred from the neck with the window's median offset.
    raw[0, 3, [dg.R_HIP, dg.L_HIP], 2] = 0.0
    out = dg.normalize(raw, np.ones((1, 10), bool), 0.1)[0]
    np.testing.assert_allclose(out[3, dg.NECK, :2], [0, 1], atol=1e-6)
    np.testing.assert_allclose(out[3, dg.R_HIP], 0, atol=0)  # missing: (0, 0, 0)
    # A torso outlier in one frame does not move the median scale.
    raw[0, 5, dg.NECK, 1] -= 200
    out = dg.normalize(raw, np.ones((1, 10), bool), 0.1)[0]
    np.testing.assert_allclose(out[0, dg.NECK, :2], [0, 1], atol=1e-6)


def test_prepare_masks_pads_and_keeps_labels(tmp_path):
    long_ids, short_ids = ids_in(True, 2), ids_in(False, 2)
    tracks = {}
    for tid in long_ids + short_ids:
        tracks[tid] = skeleton(100 if tid in long_ids else 35)
    low = tracks[long_ids[0]]
    low[:, 4, 2] = 0.05  # a low-confidence wrist everywhere
    low[:, 4, :2] = 999.0
    tracks[short_ids[0]] = skeleton(100)  # one long track in train as well
    csv_path, tdir, table = write_raw(tmp_path / "raw", tracks)
    cfg = real_cfg(csv_path, tdir, train_windows_per_track=3)
    counts = dg.prepare(cfg, str(tmp_path / "w"), seed=1)
    assert counts["val_tracks"] == 2 and counts["train_tracks"] == 2
    val = prepared.read_split(str(tmp_path / "w"), "val")
    train = prepared.read_split(str(tmp_path / "w"), "train")
    assert val.classes == list(gait_attributes.COLUMNS) and val.motion.shape[1:] == (60, 18, 3)
    # Labels are exactly the CSV probabilities (as float32), row by row.
    for split in (val, train):
        for row, meta in zip(split.labels, split.index, strict=True):
            np.testing.assert_array_equal(row, np.float32(np.round(table[meta["source"]], 5)))
    # Val: one centred window per track; the masked wrist is (0, 0, 0).
    assert [r["source"] for r in val.index] == long_ids
    assert [r["start_frame"] for r in val.index] == [20, 20]
    assert val.index[0]["start_s"] == pytest.approx(20 / 30)
    assert val.mask.all() and not val.motion[0, :, 4].any() and val.motion[1, :, 4, 2].all()
    # Train: 3 windows from the 100-frame track, 1 padded window from the 35-frame one.
    short = [i for i, r in enumerate(train.index) if r["source"] == short_ids[1]]
    assert len(short) == 1 and train.index[short[0]]["start_frame"] == 0
    np.testing.assert_array_equal(train.mask[short[0]], np.arange(60) < 35)
    assert not train.motion[short[0], 35:].any()
    assert sum(r["source"] == short_ids[0] for r in train.index) == 3
    # Eval windows do not depend on the seed; train windows do.
    dg.prepare(cfg, str(tmp_path / "w2"), seed=2)
    val2 = prepared.read_split(str(tmp_path / "w2"), "val")
    train2 = prepared.read_split(str(tmp_path / "w2"), "train")
    np.testing.assert_array_equal(np.asarray(val.motion), np.asarray(val2.motion))
    assert [r["start_frame"] for r in train.index] != [r["start_frame"] for r in train2.index]
    assert not any(f.startswith(".") for f in os.listdir(tmp_path / "w" / "data"))


# The column order of the authors' code (cosmaadrian/gaitformer datasets/uwg_features.py):
# grouped differently from ours ("No accessory" before "OtherAttchment", "CarryingOther"
# among the clothing), so a loader that relied on position would mislabel.
REFERENCE_ORDER = (
    "Female", "BodyThin", "BodyNormal", "BodyFat", "Front", "Side", "Back", "AgeChild",
    "AgeYoungAdult", "AgeMediumAdult", "AgeOldAdult", "AgeSenior", "Backpack", "Bag",
    "HandTrunk", "No accessory", "OtherAttchment", "No carrying", "Sandals", "Shoes",
    "LeatherShoes", "SportShoes", "Boots", "Sneaker", "ClothShoes", "Calling", "Talking",
    "Gathering", "Holding", "Pulling", "CarryingbyArm", "CarryingbyHand", "HoldObjectsInFront",
    "CasualWear", "Jacket", "FormalWear", "LongTrousers", "CarryingOther", "Dress", "LongCoat",
    "Trousers", "LongSleeve",
)  # fmt: skip


def test_release_layout_csv(tmp_path):
    """A CSV as pandas writes the release's: BOM, unnamed index column, integer track ids,
    file_name relative to the data root, the reference's column order, 1e-05 and a hair
    over 1; the CSV itself under data-2.02/ (gaitformer datasets/uwg_dense.py)."""
    columns = list(REFERENCE_ORDER)
    assert sorted(columns) == sorted(gait_attributes.COLUMNS) and columns != list(
        gait_attributes.COLUMNS
    )
    root = tmp_path / "densegait"
    os.makedirs(root / "data-2.02")
    ids = [k for k in range(40) if dg.in_val(str(k), 0.5)][:1] + [
        k for k in range(40) if not dg.in_val(str(k), 0.5)
    ][:1]
    rng = np.random.default_rng(1)
    probs = {tid: rng.uniform(0.01, 0.99, 42) for tid in ids}
    with open(root / "data-2.02/annotations.csv", "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        w.writerow(["", "track_id", "file_name", *columns])
        for i, tid in enumerate(ids):
            name = f"data-2.02/tracklets/{tid // 10}/{tid}.npy"
            os.makedirs(os.path.dirname(root / name), exist_ok=True)
            np.save(root / name, skeleton(70).astype(np.float64))
            p = dict(zip(gait_attributes.COLUMNS, probs[tid], strict=True))
            p["Female"], p["Back"] = 1e-05, 1.0000000001
            probs[tid] = np.array([p[c] for c in gait_attributes.COLUMNS])
            w.writerow([i, tid, name, *[repr(float(p[c])) for c in columns]])
    cfg = real_cfg(str(root / "data-2.02/annotations.csv"), str(root))
    counts = dg.prepare(cfg, str(tmp_path / "w"), seed=0)
    assert counts["val_tracks"] == counts["train_tracks"] == 1
    for split in ("val", "train"):
        data = prepared.read_split(str(tmp_path / "w"), split)
        (meta,) = data.index
        expected = np.clip(probs[int(meta["source"])], 0, 1).astype(np.float32)
        np.testing.assert_array_equal(data.labels[0], expected)
        assert meta["file"].startswith("data-2.02/tracklets/")
    # A byte-order mark before the first column's name (a spreadsheet's "CSV UTF-8").
    bom = root / "bom.csv"
    text = (root / "data-2.02/annotations.csv").read_text(encoding="utf-8-sig")
    bom.write_text("\n".join(line.split(",", 1)[1] for line in text.splitlines()), "utf-8-sig")
    track_ids, files, _, _ = dg.read_annotations(str(bom))
    assert track_ids == [str(t) for t in ids] and files[0].endswith(f"{ids[0]}.npy")


def test_lost_frames_and_zero_confidence_joints_are_reported(tmp_path):
    """Tracklets as a tracker leaves them: frames where the person was lost (all joints
    (0, 0, 0)) and joints at confidence 0. They normalise to finite zeros, stay real frames
    in the mask, and are counted in data/report.json, with tracklets per attribute."""
    vid, tid = ids_in(True, 1)[0], ids_in(False, 1)[0]
    lost = skeleton(60)
    lost[10:15] = 0.0  # five lost frames
    lost[:, 14:18, :] = 0.0  # eyes and ears never seen
    probs = np.full((2, 42), 0.2)
    probs[0, gait_attributes.COLUMNS.index("Backpack")] = 0.9
    csv_path, tdir, _ = write_raw(tmp_path, {vid: lost, tid: skeleton(70)}, probs=probs)
    cfg = real_cfg(csv_path, tdir)
    report = dg.prepare(cfg, str(tmp_path / "w"), 0)
    val = prepared.read_split(str(tmp_path / "w"), "val")
    assert val.mask.all() and np.isfinite(val.motion).all()
    assert not np.asarray(val.motion)[0, 10:15].any()
    rep = prepared.read_report(str(tmp_path / "w"))
    assert rep["splits"]["val"]["frames"] == 60
    assert rep["splits"]["val"]["low_confidence_frames"] == 5
    assert rep["splits"]["val"]["low_confidence_joints"] == 5 * 18 + 55 * 4
    assert rep["splits"]["val"]["tracklets_per_attribute"]["Backpack"] == 1
    assert rep["splits"]["train"]["tracklets_per_attribute"]["Backpack"] == 0
    assert rep["rows_read"] == 2 and report["splits"]["val"]["tracklets"] == 1
    table = dg.report_table(report)
    assert any(
        line.split() == ["with", "no", "joint", "seen", "0", "5"] for line in table.splitlines()
    )


def test_failed_prepare_keeps_the_old_data(tmp_path):
    ids = ids_in(True, 1) + ids_in(False, 1)
    csv_path, tdir, _ = write_raw(tmp_path, {t: skeleton(70) for t in ids})
    workdir = tmp_path / "w"
    dg.prepare(real_cfg(csv_path, tdir), str(workdir), 0)
    before = {
        os.path.join(d, f): open(os.path.join(d, f), "rb").read()
        for d, _, fs in os.walk(workdir / "data")
        for f in fs
    }
    bad = skeleton(70)
    bad[3, 3, 0] = np.nan
    np.save(os.path.join(tdir, f"{ids[1]}.npy"), bad)  # the train track: fails after val
    with pytest.raises(InputError, match="NaN"):
        dg.prepare(real_cfg(csv_path, tdir), str(workdir), 1)
    after = {
        os.path.join(d, f): open(os.path.join(d, f), "rb").read()
        for d, _, fs in os.walk(workdir / "data")
        for f in fs
    }
    assert after == before and sorted(os.listdir(workdir)) == ["data"]


# ---------------------------------------------------------------- the reference's windows
REFERENCE_KEYS = {"frames": "random", "padding": "repeat_last", "transform": "reference"}
GOLDENS = os.path.join(os.path.dirname(__file__), "fixtures", "walkandtext_goldens.npz")


def numbered(frames):
    """A tracklet whose every value says where it is: frame * 100 + joint + channel / 10."""
    t, j, c = np.meshgrid(np.arange(frames), np.arange(18), np.arange(3), indexing="ij")
    return (t * 100 + j + c / 10).astype(np.float32)


def test_repeat_last_pads_with_the_last_frame_and_masks_nothing():
    short = numbered(25)
    clip, valid = dg.take_frames(short, np.arange(25), 60, "repeat_last")
    assert valid.all() and clip.shape == (60, 18, 3)
    np.testing.assert_array_equal(clip[:25], short)
    np.testing.assert_array_equal(clip[25:], np.repeat(short[24:], 35, 0))
    clip, valid = dg.take_frames(short, np.arange(25), 60, "mask")  # today's: zeros, False
    np.testing.assert_array_equal(valid, np.arange(60) < 25)
    assert not clip[25:].any()
    # A selection is padded by its own last frame, not the tracklet's.
    clip, valid = dg.take_frames(numbered(90), np.array([3, 7, 50]), 5, "repeat_last")
    assert valid.all() and list(clip[:, 0, 0] // 100) == [3, 7, 50, 50, 50]


def test_random_frames_are_sorted_distinct_and_reproducible():
    d = experiment.get_config("smoke").data
    d.update(frames="random", train_windows_per_track=3)
    draws = dg.select_frames(90, d, "train", 1, 4, "t7")
    assert len(draws) == 3
    for frames in draws:
        assert len(frames) == 60 and len(set(frames.tolist())) == 60
        assert (np.diff(frames) > 0).all() and 0 <= frames[0] and frames[-1] < 90
    assert not np.array_equal(draws[0], draws[1])  # each window its own draw
    again = dg.select_frames(90, d, "train", 1, 4, "t7")
    assert all(np.array_equal(a, b) for a, b in zip(draws, again, strict=True))
    other_seed = dg.select_frames(90, d, "train", 2, 4, "t7")
    assert not np.array_equal(draws[0], other_seed[0])
    # Val: one draw seeded by the track id alone (not the seed, not the row).
    (val,) = dg.select_frames(90, d, "val", 1, 4, "t7")
    (val2,) = dg.select_frames(90, d, "val", 2, 9, "t7")
    np.testing.assert_array_equal(val, val2)
    assert len(set(val.tolist())) == 60 and (np.diff(val) > 0).all()
    assert not np.array_equal(val, dg.select_frames(90, d, "val", 1, 4, "t8")[0])
    # A short tracklet gives every frame once, in order, in both splits.
    for split in ("train", "val"):
        (short,) = dg.select_frames(25, d, split, 1, 4, "t7")
        np.testing.assert_array_equal(short, np.arange(25))
    # "window": consecutive frames, as before (val centred).
    d.frames = "window"
    np.testing.assert_array_equal(dg.select_frames(90, d, "val", 1, 4, "t7")[0], np.arange(15, 75))


def test_reference_transform_subtracts_the_first_selected_nose():
    long = numbered(90)
    long[:, :, 2] = np.linspace(0.2, 0.9, 18)  # confidences: subtracted as well
    frames = np.sort(np.random.default_rng(0).choice(90, 60, replace=False))
    clip, valid = dg.take_frames(long, frames, 60, "repeat_last")
    out, origin = dg.subtract_origin(clip[None], valid[None])
    np.testing.assert_array_equal(origin[0], long[frames[0], 0])
    np.testing.assert_allclose(out[0], long[frames] - long[frames[0], 0], atol=1e-6)
    assert out[0, 0, 0].tolist() == [0.0, 0.0, 0.0]
    assert (out[0, :, 5, 2] > 0).all()  # no thresholding: any confidence stays
    # Under "mask" padding the padded frames stay zero.
    clip, valid = dg.take_frames(long, np.arange(25), 60, "mask")
    out, _ = dg.subtract_origin(clip[None], valid[None])
    assert not out[0, 25:].any()


def test_reference_windows_equal_the_authors_gait_dataset():
    """tests/fixtures/walkandtext_goldens.npz: Gait.__getitem__ at c2e1847, sampling
    "random", on a 90- and a 25-frame tracklet (its own frame draw for the long one)."""
    golden = np.load(GOLDENS)
    d = experiment.get_config("paper").data
    assert (d.frames, d.padding, d.transform) == tuple(REFERENCE_KEYS.values())
    long = golden["gait_long_joints"]
    clip, valid = dg.take_frames(long, golden["gait_long_frame_ix"], 60, d.padding)
    out, _ = dg.transform(clip[None], valid[None], d)
    np.testing.assert_allclose(out[0], golden["gait_long_out"], atol=1e-5)
    short = golden["gait_short_joints"]
    (frames,) = dg.select_frames(len(short), d, "train", 0, 0, "short")
    clip, valid = dg.take_frames(short, frames, 60, d.padding)
    assert valid.all()
    np.testing.assert_array_equal(clip, short[golden["gait_short_frame_ix"]])
    out, _ = dg.transform(clip[None], valid[None], d)
    np.testing.assert_allclose(out[0], golden["gait_short_out"], atol=1e-5)


def test_prepare_with_the_reference_keys(tmp_path):
    """frames=random, padding=repeat_last, transform=reference through prepare: val windows
    are the track-id draw of the raw pixels minus the first drawn nose, the same for any
    seed and the same as a file of the track prepared for wat_jax.load; index.jsonl names
    the first frame and the origin, and the drawing turns the pixels back up."""
    long_ids, short_ids = ids_in(True, 2), ids_in(False, 2)
    tracks = {t: skeleton(100) for t in long_ids}
    tracks.update({t: skeleton(35) for t in short_ids})
    tracks[long_ids[1]][:, :, 2] = np.linspace(0.05, 0.95, 18)  # no confidence threshold
    csv_path, tdir, _ = write_raw(tmp_path / "raw", tracks)
    cfg = real_cfg(csv_path, tdir, train_windows_per_track=2, **REFERENCE_KEYS)
    dg.prepare(cfg, str(tmp_path / "w"), seed=1)
    val = prepared.read_split(str(tmp_path / "w"), "val")
    train = prepared.read_split(str(tmp_path / "w"), "train")
    assert val.mask.all() and train.mask.all()
    for i, tid in enumerate(long_ids):
        raw = tracks[tid]
        (frames,) = dg.select_frames(100, cfg, "val", 1, 0, tid)
        np.testing.assert_allclose(val.motion[i], raw[frames] - raw[frames[0], 0], atol=1e-4)
        assert val.index[i]["start_frame"] == frames[0]
        assert val.index[i]["origin"] == raw[frames[0], 0].tolist()
        # The same window from the file alone, as wat_jax.load's embed_motion reads it.
        config = experiment.get_config("smoke")
        config.data.update(REFERENCE_KEYS)
        motion, mask = TASK.motion_file(config, os.path.join(tdir, f"{tid}.npy"), None)
        np.testing.assert_array_equal(motion[0], val.motion[i])
        assert mask.all()
    # Train: the short tracklets once each, their last frame repeated; the long ones twice.
    for tid in short_ids:
        (row,) = [k for k, r in enumerate(train.index) if r["source"] == tid]
        raw = tracks[tid]
        np.testing.assert_allclose(train.motion[row, :35], raw - raw[0, 0], atol=1e-4)
        np.testing.assert_allclose(train.motion[row, 35:], np.repeat(raw[34:] - raw[0, 0], 25, 0))
    dg.prepare(cfg, str(tmp_path / "w2"), seed=2)
    val2 = prepared.read_split(str(tmp_path / "w2"), "val")
    np.testing.assert_array_equal(np.asarray(val.motion), np.asarray(val2.motion))
    # Drawn upright: the reference keeps pixels with y down.
    gif = pictures.window_gif(val, 0, str(tmp_path / "x.gif"))
    assert os.path.getsize(gif) > 0
    points, visible, *_ = pictures.skeleton_frames(
        (val.motion[0] + np.asarray(val.index[0]["origin"])) * np.array([1, -1, 1])
    )
    assert visible.all() and (points[:, dg.NOSE, 1] > points[:, 10, 1]).all()  # head above feet


def test_smoke_run_with_the_reference_windows_and_triplet(tmp_path):
    """The smoke variant trains and evaluates end to end with the reference's windows and
    triplet (loss.name=triplet: the smoke variant's own loss, infonce, has no mining)."""
    workdir = tmp_path / "run"
    cli.run_main(
        workdir,
        "all",
        *(f"--config.data.{k}={v}" for k, v in REFERENCE_KEYS.items()),
        "--config.loss.name=triplet",
        "--config.loss.mining=reference",
        "--config.text.normalize=False",
        config=cli.DENSEGAIT,
        timeout=600,
    )
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/triplet"] for r in logged if "train/triplet" in r]
    assert losses and all(np.isfinite(losses))
    (result,) = [f for f in os.listdir(workdir / "eval") if f.endswith(".json")]
    scores = json.loads((workdir / "eval" / result).read_text())
    assert 0.0 <= scores["ndcg@10"] <= 1.0 and "random" in scores
    index = prepared.read_split(str(workdir), "val").index
    assert all("origin" in r for r in index)


# ---------------------------------------------------------------- bad input
def test_csv_missing_columns(tmp_path):
    header = [
        "track_id",
        "file_name",
        *[c for c in gait_attributes.COLUMNS if c not in ("Bag", "Boots")],
    ]
    csv_path, tdir, _ = write_raw(tmp_path, {"a": skeleton(70)}, header=header)
    with pytest.raises(InputError, match=r"ann\.csv: missing columns: Bag, Boots"):
        dg.prepare(real_cfg(csv_path, tdir), str(tmp_path / "w"), 0)


def test_probability_out_of_range(tmp_path):
    probs = np.full((2, 42), 0.5)
    probs[1, 5] = 1.5
    csv_path, tdir, _ = write_raw(tmp_path, {"a": skeleton(70), "b": skeleton(70)}, probs=probs)
    with pytest.raises(InputError, match=r"ann\.csv: line 3, column 'Side'.*\[0, 1\]"):
        dg.prepare(real_cfg(csv_path, tdir), str(tmp_path / "w"), 0)


@pytest.mark.parametrize(
    "bad,message",
    [
        (np.zeros((70, 17, 3), np.float32), r"shape \(T>=1, 18, 3\), got \(70, 17, 3\)"),
        (np.zeros((0, 18, 3), np.float32), "shape"),
        (None, "NaN"),
    ],
)
def test_bad_tracklet_names_the_file(tmp_path, bad, message):
    if bad is None:
        bad = skeleton(70)
        bad[10, 3, 0] = np.nan
    tid = ids_in(True, 1)[0]
    other = ids_in(False, 1)[0]
    csv_path, tdir, _ = write_raw(tmp_path, {tid: bad, other: skeleton(70)})
    with pytest.raises(InputError, match=rf"{tid}\.npy: .*{message}"):
        dg.prepare(real_cfg(csv_path, tdir), str(tmp_path / "w"), 0)
    with pytest.raises(InputError, match=rf"{tid}\.npy: .*{message}"):
        dg.load_tracklet(os.path.join(tdir, f"{tid}.npy"))


def test_absent_tracklet_errors_or_is_skipped(tmp_path):
    ids = ids_in(True, 2) + ids_in(False, 2)
    tracks = {t: skeleton(70) for t in ids}
    tracks[ids[1]] = None
    csv_path, tdir, _ = write_raw(tmp_path, tracks)
    with pytest.raises(InputError, match=rf"{ids[1]}\.npy: .*line 3 is absent"):
        dg.prepare(real_cfg(csv_path, tdir), str(tmp_path / "w"), 0)
    counts = dg.prepare(real_cfg(csv_path, tdir, missing="skip"), str(tmp_path / "w"), 0)
    assert counts["skipped_missing"] == 1 and counts["val_windows"] == 1


def test_a_repeated_track_id_is_an_error_or_its_first_row(tmp_path):
    """Before, a track_id on two rows put its tracklet into its split twice."""
    ids = ids_in(True, 1) + ids_in(False, 2)
    csv_path, tdir, table = write_raw(tmp_path, {t: skeleton(70) for t in ids})
    with open(csv_path) as f:
        rows = f.read().splitlines()
    again = rows[1].split(",")  # ids[0] (val) once more, with other probabilities
    again[3:] = ["0.25000"] * 42
    with open(csv_path, "a") as f:
        f.write(",".join(again) + "\n")
    with pytest.raises(InputError) as error:
        dg.prepare(real_cfg(csv_path, tdir, duplicates="error"), str(tmp_path / "w"), 0)
    assert str(error.value) == (
        f"{csv_path}: track_id '{ids[0]}' is on line 2 and line 5: its tracklet would be "
        "prepared twice; remove the repeated rows, or set --config.data.duplicates=allow to "
        "keep the first row of each track_id and count the rest in data/report.json"
    )
    assert not os.path.exists(tmp_path / "w" / "data")
    report = dg.prepare(real_cfg(csv_path, tdir, duplicates="allow"), str(tmp_path / "w"), 0)
    assert report["duplicates"] == {"track_id_repeated": 1} and report["rows_read"] == 4
    assert report["duplicate_examples"]["track_id_repeated"] == [
        f"track_id '{ids[0]}' on line 5 (first on line 2)"
    ]
    val = prepared.read_split(str(tmp_path / "w"), "val")
    assert [r["source"] for r in val.index] == [ids[0]]  # once, with the first row's labels
    np.testing.assert_array_equal(val.labels[0], np.float32(np.round(table[ids[0]], 5)))
    assert report["val_tracks"] == 1 and report["train_tracks"] == 2
    assert any(
        line.split() == ["track_id", "repeated", "1"]
        for line in dg.report_table(report).splitlines()
    )
    with pytest.raises(InputError, match="config.data.duplicates: use error or allow, got 'keep'"):
        dg.prepare(real_cfg(csv_path, tdir, duplicates="keep"), str(tmp_path / "w"), 0)


def test_bad_config(tmp_path):
    cfg = experiment.get_config("smoke").data
    cfg.source = "nope"
    with pytest.raises(InputError, match="config.data.source"):
        dg.prepare(cfg, str(tmp_path), 0)
    for key, bad, allowed in (
        ("frames", "strided", "window or random"),
        ("padding", "zeros", "mask or repeat_last"),
        ("transform", "none", "gaitformer or reference"),
    ):
        cfg = experiment.get_config("smoke").data
        cfg[key] = bad
        with pytest.raises(InputError, match=rf"config\.data\.{key}: use {allowed}, got '{bad}'"):
            dg.prepare(cfg, str(tmp_path), 0)
    with pytest.raises(ValueError, match="variants"):
        experiment.get_config("large")


# ---------------------------------------------------------------- synthetic data
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    cfg = experiment.get_config("demo").data
    cfg.synthetic.num_tracks, cfg.train_windows_per_track, cfg.val_fraction = 1500, 1, 0.3
    workdir = str(tmp_path_factory.mktemp("dg"))
    counts = dg.prepare(cfg, workdir, seed=3)
    return cfg, workdir, counts


def present(split, name):
    return np.asarray(split.labels[:, gait_attributes.COLUMNS.index(name)]) > 0.5


def test_synthetic_files_are_the_real_format(synthetic, tmp_path):
    cfg, workdir, counts = synthetic
    csv_path, tdir = write_synthetic(os.path.join(workdir, "raw"), cfg, 3)  # reused, unchanged
    ids, files, labels, _ = dg.read_annotations(csv_path)
    assert len(ids) == 1500 and counts["train_tracks"] + counts["val_tracks"] == 1500
    assert 0 < labels.min() and labels.max() < 1 and np.mean((labels > 0.2) & (labels < 0.8)) > 0.01
    lengths = [dg.tracklet_length(os.path.join(tdir, f)) for f in files[:200]]
    assert min(lengths) < 60 < max(lengths) and counts["short_tracks"] > 100
    raw = dg.load_tracklet(os.path.join(tdir, files[0]))
    assert raw.shape[1:] == (18, 3) and raw[..., :2].max() > 50  # image pixels
    assert (raw[..., 2] == 0).any()  # dropped joints
    # One value per exclusive group in the true attributes: the soft labels mostly agree.
    for group in ("viewpoint", "age", "body shape"):
        cols = [i for i, (_, g, _) in enumerate(gait_attributes.ATTRIBUTES) if g == group]
        assert np.mean((labels[:, cols] > 0.5).sum(1) == 1) > 0.8


def test_synthetic_attributes_shape_the_gait(synthetic):
    _, workdir, _ = synthetic
    data = prepared.read_split(workdir, "train")
    motion, mask = np.asarray(data.motion), np.asarray(data.mask)
    side = present(data, "Side") & ~present(data, "AgeSenior")
    seen = (motion[..., 2] > 0) & mask[..., None]  # [N, T, 18]

    def mean_over_time(values, joints):
        ok = seen[..., joints].all(-1)
        return (values * ok).sum(1) / np.maximum(ok.sum(1), 1), ok

    lean, _ = mean_over_time(np.abs(motion[..., dg.NECK, 0]), [dg.NECK])
    backpack = present(data, "Backpack")
    assert lean[side & backpack].mean() > lean[side & ~backpack].mean() + 0.08

    swings = []
    for shoulder, wrist in ((2, 4), (5, 7)):
        rel = motion[..., wrist, 0] - motion[..., shoulder, 0]
        m, _ = mean_over_time(rel, [shoulder, wrist])
        sq, _ = mean_over_time(rel**2, [shoulder, wrist])
        swings.append(np.sqrt(np.maximum(sq - m**2, 0)))
    swing = np.minimum(*swings)  # the carrying arm swings least
    arms_free = present(data, "No carrying") & ~np.any(
        [
            present(data, a)
            for a in ("Calling", "Holding", "CarryingbyArm", "CarryingbyHand", "HoldObjectsInFront")
        ],
        0,
    )
    bag = present(data, "Bag")
    assert swing[side & bag].mean() < 0.7 * swing[side & arms_free].mean()


def features(split):
    """Per-window summary: |mean x|, mean y, std x, std y per joint, and joint visibility."""
    m, k = np.asarray(split.motion), np.asarray(split.mask)
    seen = ((m[..., 2] > 0) & k[..., None])[..., None]  # [N, T, 18, 1]
    n = np.maximum(seen.sum(1), 1)
    mean = (m[..., :2] * seen).sum(1) / n
    std = np.sqrt(np.maximum((m[..., :2] ** 2 * seen).sum(1) / n - mean**2, 0))
    f = np.concatenate([np.abs(mean[..., :1]), mean[..., 1:], std, seen.mean(1)], -1)
    return f.reshape(len(m), -1)


def test_probe_finds_gait_attributes_not_footwear(synthetic):
    _, workdir, _ = synthetic
    train, val = prepared.read_split(workdir, "train"), prepared.read_split(workdir, "val")
    x_tr, x_va = features(train), features(val)
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_va = (x_tr - mu) / sd, (x_va - mu) / sd
    x_tr, x_va = np.c_[x_tr, np.ones(len(x_tr))], np.c_[x_va, np.ones(len(x_va))]

    def balanced_accuracy(name):
        y_tr, y_va = present(train, name), present(val, name)
        w_pos = np.where(y_tr, 0.5 / y_tr.mean(), 0.5 / (1 - y_tr.mean()))  # class-balanced
        a = x_tr.T @ (x_tr * w_pos[:, None]) + 10.0 * np.eye(x_tr.shape[1])
        w = np.linalg.solve(a, x_tr.T @ (w_pos * np.where(y_tr, 1.0, -1.0)))
        pred = x_va @ w > 0
        return 0.5 * (pred[y_va].mean() + (~pred[~y_va]).mean())

    # Floors sit well below what two seeds gave; a backpack only shows from the side.
    floors = {
        "Side": 0.9,
        "AgeSenior": 0.8,
        "AgeChild": 0.8,
        "BodyFat": 0.72,
        "Calling": 0.75,
        "HoldObjectsInFront": 0.72,
        "Backpack": 0.64,
    }
    scores = {n: balanced_accuracy(n) for n in [*floors, "Sneaker", "FormalWear"]}
    for name, floor in floors.items():
        assert scores[name] > floor, scores
    for name in ("Sneaker", "FormalWear"):  # no trace in the gait: chance
        assert abs(scores[name] - 0.5) < 0.08, scores
