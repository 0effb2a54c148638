"""BABEL-60 data: rotations, AMASS loading and resampling, BABEL labels, windows, synthetic data."""

import collections
import json
import os

import numpy as np
import pytest

from experiments import babel60 as experiment
from wat_jax.data import amass, babel, prepared, rotations
from wat_jax.errors import InputError

# ---------------------------------------------------------------- fixtures


def _write_npz(path, poses, trans, fps, rate_key="mocap_framerate", **extra):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = dict(poses=poses, trans=trans, betas=np.zeros(16), gender=np.array("female"))
    if rate_key:
        arrays[rate_key] = np.array(float(fps))
    arrays.update(extra)
    np.savez(path, **arrays)


def _spin_sequence(seconds, fps, rate=0.01):
    """Global orientation turning about z by `rate` rad per source frame; trans moving linearly."""
    n = int(round(seconds * fps))
    k = np.arange(n)
    poses = np.zeros((n, 156))
    poses[:, 2] = rate * k
    poses[:, 3:72] = 0.1  # body joints: constant
    poses[:, 111:114] = 0.3  # right_index1 (joint 37), which the reference's row 23 holds
    trans = np.stack([0.001 * k, 0.002 * k, np.ones(n)], -1)
    return poses, trans


def _label(cats, start=None, end=None):
    out = dict(raw_label="x", proc_label="x", seg_id="s", act_cat=cats)
    if start is not None:
        out.update(start_t=start, end_t=end)
    return out


def _entry(feat_p, frame_labels, seq_labels, dur):
    return dict(
        babel_sid=0, feat_p=feat_p, dur=dur, url="",
        seq_ann=dict(babel_lid="a", anntr_id="b", mul_act=False, labels=seq_labels),
        frame_ann=None if frame_labels is None else dict(
            babel_lid="c", anntr_id="d", mul_act=True, labels=frame_labels),
    )  # fmt: skip


CLASSES = ("run", "walk", "sit", "jump", "forward movement", "stand")  # any order in config


def _data_cfg(amass_root, babel_dir, **kw):
    cfg = experiment.get_config("paper").data
    cfg.amass_root, cfg.babel_dir, cfg.classes = str(amass_root), str(babel_dir), CLASSES
    # The label and window rules under test; the reference's features have their own tests.
    cfg.update(dict(translation="root", partial_chunks=True))
    # The hand-built files reuse sequences in train and val; the duplicate tests set "error".
    cfg.duplicates = "allow"
    cfg.update(kw)
    return cfg


@pytest.fixture
def real_format(tmp_path):
    """Hand-built AMASS files at 120 and 60 fps and BABEL train/val JSON."""
    root, bdir = tmp_path / "amass", tmp_path / "babel"
    # A: 10 s at 120 fps -> 300 frames at 30 fps, chunks [0,100) [100,200) [200,300).
    # User layout on disk, BABEL layout in feat_p.
    poses, trans = _spin_sequence(10.0, 120)
    _write_npz(str(root / "KIT/572/a_poses.npz"), poses, trans, 120)
    # B: 6 s at 60 fps -> 180 frames; the 80-frame tail chunk is kept. BABEL layout on disk.
    poses_b, trans_b = _spin_sequence(6.0, 60)
    _write_npz(str(root / "CMU/CMU/01/b_poses.npz"), poses_b, trans_b, 60, "mocap_frame_rate")
    # C: 1.5 s -> 45 frames, shorter than a window.
    _write_npz(str(root / "KIT/9/c_poses.npz"), *_spin_sequence(1.5, 120), 120)
    val = {
        "7": _entry(
            "KIT/KIT/572/a_poses.npz",
            [
                _label(["walk", "forward movement"], 2.0, 4.0),  # frames 60..119
                _label(["run"], 5.95, 6.1),  # frames 179..182
                _label(["sit"], 7.3, 7.3 + 1 / 30),  # frame 219 only
                _label(["jump"], 9.3, 10.0),  # frames 279..299
                _label(["transition"], 4.0, 5.95),  # not BABEL-60: ignored, counted
                _label(None, 0.0, 1.0),  # BABEL has labels without act_cat
            ],
            [_label(["walk"])],
            10.0,
        ),
        "8": _entry("CMU/CMU/01/b_poses.npz", None, [_label(["stand"])], 6.0),
        "9": _entry("KIT/KIT/9/c_poses.npz", None, [_label(["stand"])], 1.5),
    }
    train = {"7": val["7"], "8": val["8"]}
    os.makedirs(bdir)
    for name, data in (("val", val), ("train", train)):
        with open(bdir / f"{name}.json", "w") as f:
            json.dump(data, f)
    return root, bdir, poses, trans


# ---------------------------------------------------------------- rotations


def _rodrigues_reference(aa):
    """R = cos t I + sin t [k]x + (1 - cos t) k k^T, written independently of rotations.py."""
    theta = np.linalg.norm(aa)
    if theta < 1e-12:
        return np.eye(3)
    k = aa / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.cos(theta) * np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * np.outer(k, k)


def test_rot6d_of_known_axis_angles():
    # (rows 0 and 1, the reference's pytorch3d convention; columns 0 and 1)
    cases = {
        (0.0, 0.0, 0.0): ([1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 1, 0]),
        (0.0, 0.0, np.pi / 2): ([0, -1, 0, 1, 0, 0], [0, 1, 0, -1, 0, 0]),  # x -> y, y -> -x
        (np.pi / 2, 0.0, 0.0): ([1, 0, 0, 0, 0, -1], [1, 0, 0, 0, 0, 1]),  # y -> z
        (0.0, np.pi, 0.0): ([-1, 0, 0, 0, 1, 0], [-1, 0, 0, 0, 1, 0]),
    }
    for aa, (rows, columns) in cases.items():
        matrix = rotations.axis_angle_to_matrix(np.array(aa))
        np.testing.assert_allclose(rotations.matrix_to_rot6d(matrix), rows, atol=1e-12)
        got = rotations.matrix_to_rot6d(matrix, "columns")
        np.testing.assert_allclose(got, columns, atol=1e-12)


def test_rotation_routes_agree():
    rng = np.random.default_rng(0)
    aa = rng.normal(0, 1.5, (200, 3))
    aa[:3] *= 1e-7  # the small-angle series
    rodrigues = rotations.axis_angle_to_matrix(aa)
    via_quat = rotations.quaternion_to_matrix(rotations.axis_angle_to_quaternion(aa))
    reference = np.stack([_rodrigues_reference(v) for v in aa])
    np.testing.assert_allclose(rodrigues, reference, atol=1e-12)
    np.testing.assert_allclose(via_quat, reference, atol=1e-12)
    rot6d = rotations.matrix_to_rot6d(reference)
    np.testing.assert_allclose(rot6d, np.concatenate([reference[:, 0], reference[:, 1]], 1))
    np.testing.assert_allclose(rotations.rot6d_to_matrix(rot6d), reference, atol=1e-12)
    columns = rotations.matrix_to_rot6d(reference, "columns")
    np.testing.assert_allclose(columns, np.concatenate([reference[..., 0], reference[..., 1]], 1))
    np.testing.assert_allclose(rotations.rot6d_to_matrix(columns, "columns"), reference, atol=1e-12)
    with pytest.raises(ValueError, match="rows"):
        rotations.matrix_to_rot6d(reference, "diagonal")
    np.testing.assert_allclose(
        rotations.axis_angle_to_matrix(rotations.matrix_to_axis_angle(reference)),
        reference,
        atol=1e-10,
    )


# ---------------------------------------------------------------- AMASS


def test_resample_is_by_time(tmp_path):
    # 100 fps, steady turn of 0.5 rad/s about y: the pose at time i/30 is exactly 0.5 * i / 30.
    n = 250
    poses = np.zeros((n, 156))
    poses[:, 1] = 0.5 * np.arange(n) / 100.0
    trans = np.zeros((n, 3))
    trans[:, 0] = np.arange(n) / 100.0
    path = str(tmp_path / "x.npz")
    _write_npz(path, poses, trans, 100)
    rot, tr = amass.resample(amass.load_npz(path), 30)
    assert len(rot) == int(np.floor(249 * 0.3)) + 1 == 75
    times = np.arange(75) / 30
    expected = rotations.axis_angle_to_matrix(np.stack([0 * times, 0.5 * times, 0 * times], -1))
    np.testing.assert_allclose(rot[:, 0], expected, atol=1e-9)
    np.testing.assert_allclose(tr[:, 0], times, atol=1e-9)


def test_feat_p_layouts_resolve(tmp_path):
    # BABEL's feat_p is "<short name>/<release folder>/<subject>/<file>" (real examples from
    # BABEL v1.0: "BMLrub/BioMotionLab_NTroje/rub018/..._poses.npz", "KIT/KIT/4/..._poses.npz");
    # users unpack AMASS as <root>/<release folder>/<subject>/<file>, old or new folder names.
    for rel in (
        "KIT/572/a_poses.npz",  # duplicated short name dropped
        "CMU/CMU/01/b_poses.npz",  # BABEL's layout verbatim
        "BMLrub/rub001/c_poses.npz",  # later release: BioMotionLab_NTroje renamed BMLrub
        "BioMotionLab_NTroje/rub002/d_poses.npz",  # the release BABEL used
        "DFaust/50002/e_poses.npz",  # DFaust_67 renamed DFaust; BABEL's short name is DFaust67
        "MPI_HDM05/bk/f_poses.npz",
    ):
        os.makedirs(os.path.dirname(tmp_path / rel), exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    root = str(tmp_path)
    cases = {
        "KIT/KIT/572/a_poses.npz": "KIT/572/a_poses.npz",
        "KIT/572/a_poses.npz": "KIT/572/a_poses.npz",
        "CMU/CMU/01/b_poses.npz": "CMU/CMU/01/b_poses.npz",
        "BMLrub/BioMotionLab_NTroje/rub001/c_poses.npz": "BMLrub/rub001/c_poses.npz",
        "BMLrub/BioMotionLab_NTroje/rub002/d_poses.npz": "BioMotionLab_NTroje/rub002/d_poses.npz",
        "DFaust67/DFaust_67/50002/e_poses.npz": "DFaust/50002/e_poses.npz",
        "MPIHDM05/MPI_HDM05/bk/f_poses.npz": "MPI_HDM05/bk/f_poses.npz",
    }
    for feat_p, on_disk in cases.items():
        assert amass.resolve(root, feat_p) == os.path.join(root, on_disk), feat_p
    assert amass.resolve(root, "KIT/KIT/572/missing_poses.npz") is None


def test_smplx_release_is_named_in_the_error(tmp_path):
    """The SMPL-X N release has *_stageii.npz with poses [T, 165]: say so, not just 'missing'."""
    root, bdir = tmp_path / "amass", tmp_path / "babel"
    os.makedirs(root / "KIT/4")
    poses, trans = _spin_sequence(3.0, 120)
    _write_npz(str(root / "KIT/4/w_stageii.npz"), np.zeros((len(poses), 165)), trans, 120)
    os.makedirs(bdir)
    entry = _entry("KIT/KIT/4/w_poses.npz", None, [_label(["walk"])], 3.0)
    for name in ("train", "val"):
        with open(bdir / f"{name}.json", "w") as f:
            json.dump({"1": entry}, f)
    with pytest.raises(InputError, match=r"w_poses\.npz: missing: 1 of 1 .*SMPL-X N.*SMPL\+H G"):
        babel.prepare(_data_cfg(root, bdir), str(tmp_path / "w"), 0)
    assert "KIT" in amass.missing_hint(str(root), "KIT/KIT/9/none_poses.npz")
    with pytest.raises(InputError, match=r"w_stageii\.npz: .*165.*SMPL\+H G"):
        amass.load_npz(str(root / "KIT/4/w_stageii.npz"))


# ---------------------------------------------------------------- BABEL labels and windows


def test_label_interval_rule():
    assert babel.frame_range(2.0, 4.0, 30, 1000) == (60, 120)  # frames 60..119
    assert babel.frame_range(5.95, 6.1, 30, 1000) == (179, 183)
    assert babel.frame_range(0.0, 100.0, 30, 50) == (0, 50)  # clipped to the sequence
    assert babel.frame_range(1.99, 2.0, 30, 100) == (60, 60)  # holds no frame time: empty


def test_babel60_classes():
    assert len(babel.BABEL60_CLASSES) == len(set(babel.BABEL60_CLASSES)) == 60
    assert babel.BABEL60_CLASSES[:4] == ("walk", "stand", "hand movements", "turn")
    assert babel.BABEL60_CLASSES[-3:] == ("crossing limbs", "perform", "martial art")
    assert babel.columns(CLASSES) == ("walk", "stand", "forward movement", "jump", "sit", "run")
    with pytest.raises(InputError, match="data.classes"):
        babel.columns(("walk", "moonwalk"))


def test_val_windows_and_labels_are_exact(real_format, tmp_path):
    root, bdir, poses, trans = real_format
    workdir = str(tmp_path / "work")
    counts = babel.prepare(_data_cfg(root, bdir), workdir, seed=0)
    val = prepared.read_split(workdir, "val", mmap=False)
    cols = val.classes
    assert cols == ["walk", "stand", "forward movement", "jump", "sit", "run"]
    got = [
        (r["babel_sid"], r["start_frame"], sorted(c for c, y in zip(cols, row) if y))
        for r, row in zip(val.index, val.labels)
    ]
    assert got == [
        ("7", 20, ["forward movement", "walk"]),  # [20, 80) holds 60..79
        ("7", 120, ["run"]),  # [120, 180) holds 179 only; walk ended at 119
        ("7", 220, ["jump"]),  # [220, 280) holds 279; sit (219) is just outside
        ("8", 20, ["stand"]),  # null frame_ann: seq_ann over every frame
        ("8", 110, ["stand"]),  # the 80-frame tail chunk, centred
    ]
    assert [r["source"] for r in val.index] == ["KIT/KIT/572/a_poses.npz"] * 3 + [
        "CMU/CMU/01/b_poses.npz"
    ] * 2
    assert [r["start_s"] for r in val.index] == pytest.approx(
        [20 / 30, 4.0, 220 / 30, 20 / 30, 110 / 30]
    )
    assert val.motion.shape == (5, 60, 25, 6) and val.mask.all()
    rep = counts["splits"]["val"]
    assert rep["sequences"] == {
        "read": 3,
        "used": 2,
        "skipped": {"missing_file": 0, "smplx": 0, "too_short": 1, "no_label": 0},
    }
    assert rep["act_cat_outside_classes"] == {"transition": 1}
    # 6 frame labels of sid 7 (one null, one "transition") and one seq label each for 8 and 9.
    assert rep["segments"] == {
        "read": 8,
        "kept": 6,  # 4 of sid 7, stand of 8 and of 9 (9 is then too short)
        "dropped": {
            "null_act_cat": 1,
            "end_before_start": 0,
            "outside_classes": 1,
            "outside_sequence": 0,
        },
    }
    # Sid 7's chunks hold 3 labelled windows; sid 8 two; none dropped.
    assert rep["windows"]["kept"] == 5 and rep["windows"]["dropped_no_label"] == 0
    assert rep["windows"]["per_class"] == {
        "walk": 1, "stand": 2, "forward movement": 1, "jump": 1, "sit": 0, "run": 1
    }  # fmt: skip
    assert prepared.read_report(workdir) == json.loads(json.dumps(counts))

    # Features of the window at 30-fps frame 120: frame f is source frame 4 * (120 + f).
    window = val.motion[1]
    src = 4 * (120 + np.arange(60))
    angle = 0.01 * src
    expected = np.stack(
        [np.cos(angle), -np.sin(angle), 0 * angle, np.sin(angle), np.cos(angle), 0 * angle], -1
    )  # rows 0 and 1 of a turn about z
    np.testing.assert_allclose(window[:, 0], expected, atol=1e-6)
    # Rows 1-23: SMPL-H joints 1..22 and 37 (the reference's joints_to_use).
    joints = [*range(1, 23), 37]
    local = poses[0].reshape(52, 3)[joints]
    body = rotations.matrix_to_rot6d(rotations.axis_angle_to_matrix(local))
    np.testing.assert_allclose(window[:, 1:24], np.broadcast_to(body, (60, 23, 6)), atol=1e-6)
    # Translation relative to the window's first frame, padded with zeros.
    np.testing.assert_allclose(window[:, 24, :3], trans[src] - trans[src[0]], atol=1e-6)
    assert window[0, 24].tolist() == [0.0] * 6 and not window[:, 24, 3:].any()


def test_train_windows_are_seeded_random_in_chunks(real_format, tmp_path):
    root, bdir, _, _ = real_format
    cfg = _data_cfg(root, bdir, train_windows_per_chunk=4)
    a = babel.prepare(cfg, str(tmp_path / "a"), seed=3)["splits"]["train"]
    train_a = prepared.read_split(str(tmp_path / "a"), "train", mmap=False)
    babel.prepare(cfg, str(tmp_path / "b"), seed=3)
    train_b = prepared.read_split(str(tmp_path / "b"), "train", mmap=False)
    babel.prepare(cfg, str(tmp_path / "c"), seed=4)
    train_c = prepared.read_split(str(tmp_path / "c"), "train", mmap=False)
    starts = [r["start_frame"] for r in train_a.index]
    assert starts == [r["start_frame"] for r in train_b.index]
    assert starts != [r["start_frame"] for r in train_c.index]
    np.testing.assert_array_equal(train_a.motion, train_b.motion)
    # Each window stays inside its chunk (sequence 8's last chunk is 80 frames long).
    for row in train_a.index:
        s, n = row["start_frame"], {"7": 300, "8": 180}[row["babel_sid"]]
        assert s % 100 + 60 <= min(100, n - (s // 100) * 100)
    # Stand covers all of sequence 8: all 2 chunks x 4 draws are kept.
    assert sum(r["babel_sid"] == "8" for r in train_a.index) == 8
    assert a["windows"]["kept"] == len(train_a.index)


def _extra(feat_p, seq_anns, frame_anns, sid=0):
    """An extra entry as BABEL v1.0's extra_*.json writes it: lists, either may be null."""

    def ann(labels, i):
        return dict(babel_lid=f"x{i}", anntr_id=f"annotator{i}", mul_act=True, labels=labels)

    return dict(
        babel_sid=sid, url="", feat_p=feat_p, dur=2.0,
        seq_anns=None if seq_anns is None else [ann(x, i) for i, x in enumerate(seq_anns)],
        frame_anns=None if frame_anns is None else [ann(x, i) for i, x in enumerate(frame_anns)],
    )  # fmt: skip


def _write_babel(folder, files):
    os.makedirs(folder, exist_ok=True)
    for name, entries in files.items():
        with open(os.path.join(folder, f"{name}.json"), "w") as f:
            json.dump(entries, f)


RULE_CLASSES = ("walk", "stand", "sit", "jump", "run")


def _labels_by_rule(folder, names, null_frame_labels="skip", extra_annotators="separate"):
    """{sid: [(annotation name, frames per class over 60 frames at 30 fps)]}, and left-outs."""
    records, _ = babel.read_babel(str(folder), names)
    tally = babel.Tally(RULE_CLASSES)
    col = {k: i for i, k in enumerate(RULE_CLASSES)}
    out, left = {}, collections.Counter()
    for sid, rec in records.items():
        anns, left_out = babel.label_sources(rec, null_frame_labels, extra_annotators)
        left.update(left_out)
        out[sid] = [
            (
                a.name,
                babel.frame_labels(babel.parse_segments(a, col, tally), 60, 30, 5).sum(0).tolist(),
            )
            for a in anns
        ]
    return out, left


@pytest.fixture
def release_shapes(tmp_path):
    """Main and extra entries in BABEL v1.0's shapes, each sid pinning one rule."""
    main = {
        # frame_ann present, every act_cat null: BABEL uses it anyway (no label).
        "1": _entry("X/X/a.npz", [_label(None, 0.0, 1.0), _label(None, 1.0, 2.0)],
                    [_label(["walk"])], 2.0),
        # frame_ann with labels; an extra annotator with seq_anns and two frame_anns.
        "2": _entry("X/X/b.npz", [_label(["walk"], 0.0, 1.0)], [_label(["walk"])], 2.0),
        # frame_ann null: seq_ann over all frames; extras read as seq_anns.
        "3": _entry("X/X/c.npz", None, [_label(["sit"])], 2.0),
    }  # fmt: skip
    extra = {
        "2": _extra(
            "X/X/b.npz",
            [[_label(["stand"])]],
            [[_label(["run"], 1, 2.0)], [_label(["jump"], 0.5, 1.0)]],  # integer times occur
        ),
        "3": _extra("X/X/c.npz", [[_label(["stand"]), _label(None)], [_label(["walk"])]],
                    [[_label(["jump"], 0.0, 0.5)]]),
        # Only in the extra file: frame_anns unless null, else seq_anns.
        "4": _extra("X/X/d.npz", [[_label(["sit"])]], [[_label(["jump"], 0.0, 0.5)]]),
        "5": _extra("X/X/e.npz", [[_label(["sit"])]], None),
    }  # fmt: skip
    _write_babel(tmp_path / "b", {"train": main, "extra_train": extra})
    return tmp_path / "b"


def test_label_rules_follow_babels_create_dataset(release_shapes):
    """BABEL action_recognition/data_gen/create_dataset.py, lines 385-392 and 398-421."""
    got, left = _labels_by_rule(release_shapes, ("train", "extra_train"))
    assert got == {
        # Null frame labels: the frame_ann is still the one used, so nothing is labelled.
        "1": [("train.json frame_ann", [0, 0, 0, 0, 0])],
        # One annotation per annotator; the extra one is read as frame_anns (the main
        # entry's type), so its seq_anns "stand" is left out.
        "2": [
            ("train.json frame_ann", [30, 0, 0, 0, 0]),
            ("extra_train.json frame_anns[0]", [0, 0, 0, 0, 30]),
            ("extra_train.json frame_anns[1]", [0, 0, 0, 15, 0]),
        ],
        # Main type seq_ann: the extra annotators' seq_anns count, their frame_anns do not.
        "3": [
            ("train.json seq_ann", [0, 0, 60, 0, 0]),
            ("extra_train.json seq_anns[0]", [0, 60, 0, 0, 0]),
            ("extra_train.json seq_anns[1]", [60, 0, 0, 0, 0]),
        ],
        "4": [("extra_train.json frame_anns[0]", [0, 0, 0, 15, 0])],
        "5": [("extra_train.json seq_anns[0]", [0, 0, 60, 0, 0])],
    }
    assert left == {"frame_all_null": 1, "other_type": 3}  # stand of 2, jump of 3, sit of 4

    # null_frame_labels=sequence: an all-null frame_ann gives way to the seq_ann.
    got, _ = _labels_by_rule(release_shapes, ("train",), null_frame_labels="sequence")
    assert got["1"] == [("train.json seq_ann", [60, 0, 0, 0, 0])]
    assert got["2"] == [("train.json frame_ann", [30, 0, 0, 0, 0])]
    # extra_annotators=ignore: main entries only; extra-only sids give nothing.
    got, left = _labels_by_rule(release_shapes, ("train", "extra_train"), extra_annotators="ignore")
    assert [len(got[s]) for s in "12345"] == [1, 1, 1, 0, 0] and left["extra_ignored"] == 10 - 1


def test_extra_annotators_make_their_own_windows(tmp_path):
    """separate: a window once per annotator with that annotator's labels; union: once."""
    root, bdir = tmp_path / "amass", tmp_path / "babel"
    _write_npz(str(root / "KIT/1/a_poses.npz"), *_spin_sequence(3.4, 60), 60)  # 102 frames
    main = {"1": _entry("KIT/KIT/1/a_poses.npz", [_label(["walk"], 0.0, 3.4)], [], 3.4)}
    extra = {"1": _extra("KIT/KIT/1/a_poses.npz", [[_label(["sit"])]],
                         [[_label(["run"], 0.0, 1.0)], [_label(["jump"], 3.0, 3.4)]])}  # fmt: skip
    _write_babel(bdir, {"train": main, "val": main, "extra_train": extra, "extra_val": extra})
    splits = {"train": ("train", "extra_train"), "val": ("val", "extra_val")}

    def windows(mode):
        cfg = _data_cfg(root, bdir, extra_annotators=mode, babel_splits=splits)
        report = babel.prepare(cfg, str(tmp_path / mode), 0)
        val = prepared.read_split(str(tmp_path / mode), "val", mmap=False)
        sets = [sorted(c for c, y in zip(val.classes, row) if y) for row in val.labels]
        return [(r["start_frame"], r["annotation"]) for r in val.index], sets, val, report

    # One centred window [20, 80): walk (main), run (frames 0-29: annotator 0); annotator 1's
    # jump (frames 90-101) misses it, so that sample is a dropped label-less window.
    index, sets, val, report = windows("separate")
    assert index == [(20, "val.json frame_ann"), (20, "extra_val.json frame_anns[0]")]
    assert sets == [["walk"], ["run"]]
    np.testing.assert_array_equal(val.motion[0], val.motion[1])
    rep = report["splits"]["val"]
    assert rep["windows"]["dropped_no_label"] == 1 and rep["annotations"]["extra"] == 2
    assert rep["annotations"]["left_out"]["other_type"] == 1  # the extra seq_anns "sit"
    index, sets, _, _ = windows("union")
    assert index == [
        (20, "val.json frame_ann+extra_val.json frame_anns[0]+extra_val.json frame_anns[1]")
    ]
    assert sets == [["run", "walk"]]
    index, sets, _, report = windows("ignore")
    assert index == [(20, "val.json frame_ann")] and sets == [["walk"]]
    assert report["splits"]["val"]["annotations"]["left_out"]["extra_ignored"] == 3


def test_null_frame_labels_skip_the_sequence(real_format, tmp_path):
    """A frame_ann whose act_cat are all null: no windows (BABEL), or seq_ann ("sequence")."""
    root, bdir, _, _ = real_format
    with open(bdir / "val.json") as f:
        val = json.load(f)
    val["8"]["frame_ann"] = dict(labels=[_label(None, 0.0, 6.0)])
    with open(bdir / "val.json", "w") as f:
        json.dump(val, f)
    report = babel.prepare(_data_cfg(root, bdir), str(tmp_path / "skip"), 0)["splits"]["val"]
    index = prepared.read_split(str(tmp_path / "skip"), "val").index
    assert [r["babel_sid"] for r in index] == ["7", "7", "7"]
    assert report["sequences"]["skipped"]["no_label"] == 1
    assert report["annotations"]["left_out"]["frame_all_null"] == 1
    cfg = _data_cfg(root, bdir, null_frame_labels="sequence")
    babel.prepare(cfg, str(tmp_path / "seq"), 0)
    index = prepared.read_split(str(tmp_path / "seq"), "val").index
    assert [r["babel_sid"] for r in index] == ["7", "7", "7", "8", "8"]
    assert index[-1]["annotation"] == "val.json seq_ann"
    with pytest.raises(InputError, match="data.null_frame_labels: must be one of"):
        babel.prepare(_data_cfg(root, bdir, null_frame_labels="union"), str(tmp_path / "x"), 0)


def test_segments_dropped_by_reason_and_warned_once_per_file(real_format, tmp_path, caplog):
    root, bdir, _, _ = real_format
    with open(bdir / "val.json") as f:
        val = json.load(f)
    labels = val["7"]["frame_ann"]["labels"]
    labels += [_label(["walk"], 5.0, 4.0), _label(["run"], 9.0, 8.5)]  # end before start
    labels += [_label(["sit"], 12.0, 14.0), _label(["sit"], 3.0, 3.0)]  # no frame of the 10 s
    with open(bdir / "val.json", "w") as f:
        json.dump(val, f)
    with caplog.at_level("WARNING"):
        report = babel.prepare(_data_cfg(root, bdir), str(tmp_path / "w"), 0)
    rep = report["splits"]["val"]
    assert rep["segments"]["dropped"] == {
        "null_act_cat": 1,
        "end_before_start": 2,
        "outside_classes": 1,
        "outside_sequence": 2,
    }
    assert rep["end_before_start_by_file"] == {str(bdir / "val.json"): 2}
    reversed_lines = [r.getMessage() for r in caplog.records if "end_t < start_t" in r.getMessage()]
    assert reversed_lines == [
        f"babel val: {bdir / 'val.json'}: 2 labels with end_t < start_t, e.g. sid 7 "
        "(start_t 5.0, end_t 4.0); dropped"
    ]
    # The windows are those without the broken labels.
    val_split = prepared.read_split(str(tmp_path / "w"), "val")
    assert [r["start_frame"] for r in val_split.index if r["babel_sid"] == "7"] == [20, 120, 220]


def test_withheld_labels_say_so(real_format):
    """BABEL's test.json: every act_cat is null; the error says the labels are withheld."""
    root, bdir, _, _ = real_format
    with open(bdir / "val.json") as f:
        val = json.load(f)
    for entry in val.values():
        for key in ("seq_ann", "frame_ann"):
            for label in (entry[key] or {"labels": []})["labels"]:
                label.update(act_cat=None, raw_label=None, proc_label=None)
    with open(bdir / "test.json", "w") as f:
        json.dump(val, f)
    cfg = _data_cfg(root, bdir, babel_splits={"train": ("train",), "val": ("test",)})
    with pytest.raises(InputError, match=r"test\.json: split 'val': every one of its 8 labels has "
                       r"act_cat null, i\.e\. its labels are withheld"):  # fmt: skip
        babel.prepare(cfg, str(root / "w"), 0)


def test_failed_prepare_keeps_the_old_data(real_format, tmp_path):
    """All-or-nothing: a prepare failing on val after building a different train leaves
    the previous data/ byte for byte, and no staging folder behind."""
    root, bdir, poses, trans = real_format
    workdir = tmp_path / "w"
    babel.prepare(_data_cfg(root, bdir, train_windows_per_chunk=2), str(workdir), seed=0)

    def snapshot():
        out = {}
        for dirpath, _, files in os.walk(workdir / "data"):
            for name in files:
                path = os.path.join(dirpath, name)
                out[os.path.relpath(path, workdir)] = open(path, "rb").read()
        return out

    before = snapshot()
    assert "data/report.json" in before and "data/train/motion.npy" in before
    # seed 1 draws other train windows; sid 9 (val only) now holds NaN, so val fails.
    bad = poses[:180].copy()
    bad[3, 4] = np.nan
    _write_npz(str(root / "KIT/9/c_poses.npz"), bad, trans[:180], 120)
    with pytest.raises(InputError, match="c_poses.npz: poses contain NaN"):
        babel.prepare(_data_cfg(root, bdir, train_windows_per_chunk=2), str(workdir), seed=1)
    assert snapshot() == before
    assert sorted(os.listdir(workdir)) == ["data", "raw"] or sorted(os.listdir(workdir)) == ["data"]


def test_report_table_is_short(real_format, tmp_path):
    root, bdir, _, _ = real_format
    report = babel.prepare(_data_cfg(root, bdir), str(tmp_path / "w"), 0)
    table = babel.report_table(report)
    lines = table.splitlines()
    assert lines[2].startswith("---") and "train" in lines[1] and "val" in lines[1]
    assert any(line.split() == ["skipped:", "too", "short", "0", "1"] for line in lines)
    assert any(line.split() == ["stand", "2", "2"] for line in lines)
    assert max(len(line) for line in lines) < 110 and len(lines) < 40


def test_entries_in_the_wrong_shape_name_the_file(tmp_path):
    _write_babel(tmp_path, {"extra_val": {"8": dict(feat_p="X/X/d.npz", seq_anns={"labels": []})}})
    with pytest.raises(InputError, match=r"extra_val\.json \[babel_sid 8\]: 'seq_anns' must be"):
        babel.read_babel(str(tmp_path), ("extra_val",))
    _write_babel(tmp_path, {"val": {"9": dict(feat_p="X/X/d.npz", dur=1.0)}})
    with pytest.raises(InputError, match=r"val\.json \[babel_sid 9\]: entry has none of"):
        babel.read_babel(str(tmp_path), ("val",))


# ---------------------------------------------------------------- bad input


def test_missing_files_counted_then_fatal(real_format, tmp_path):
    root, bdir, _, _ = real_format
    os.remove(root / "KIT/9/c_poses.npz")
    counts = babel.prepare(_data_cfg(root, bdir, max_missing_fraction=0.5), str(tmp_path / "w1"), 0)
    val = counts["splits"]["val"]
    assert val["sequences"]["skipped"]["missing_file"] == 1 and val["windows"]["kept"] == 5
    with pytest.raises(InputError, match="c_poses.npz.*1 of 3"):
        babel.prepare(_data_cfg(root, bdir, max_missing_fraction=0.2), str(tmp_path / "w2"), 0)


@pytest.mark.parametrize("defect, message", [
    ("nan", "NaN"),
    ("no_poses", "missing key 'poses'"),
    ("no_rate", "missing frame rate"),
    ("smplx_shape", r"SMPL-H \[T, 156\]"),
    ("trans_shape", r"trans must be \[T, 3\]"),
])  # fmt: skip
def test_bad_npz_names_the_file(real_format, tmp_path, defect, message):
    root, bdir, poses, trans = real_format
    path = str(root / "KIT/572/a_poses.npz")
    if defect == "nan":
        poses = poses.copy()
        poses[10, 5] = np.nan
        _write_npz(path, poses, trans, 120)
    elif defect == "no_poses":
        np.savez(path, pose=poses, trans=trans, mocap_framerate=120.0)
    elif defect == "no_rate":
        _write_npz(path, poses, trans, 120, rate_key=None)
    elif defect == "smplx_shape":
        _write_npz(path, np.zeros((len(poses), 165)), trans, 120)
    else:
        _write_npz(path, poses, trans[:-1], 120)
    with pytest.raises(InputError, match=message) as err:
        babel.prepare(_data_cfg(root, bdir), str(tmp_path / "work"), 0)
    assert path in str(err.value)


def test_bad_config_names_the_key(tmp_path):
    with pytest.raises(InputError, match="data.amass_root"):
        babel.prepare(_data_cfg("", tmp_path), str(tmp_path / "w"), 0)
    with pytest.raises(InputError, match="data.source"):
        babel.prepare(_data_cfg(tmp_path, tmp_path, source="kinect"), str(tmp_path / "w"), 0)
    with pytest.raises(InputError, match="train.json"):
        babel.prepare(_data_cfg(tmp_path, tmp_path), str(tmp_path / "w"), 0)


def _json_with_repeats(path, pairs):
    """A JSON object written key by key, so a key may repeat (as in merged files)."""
    with open(path, "w") as f:
        f.write("{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}")


def test_a_sid_in_train_and_val_is_an_error_or_counted(real_format, tmp_path):
    """Before, sids 7 and 8 of train.json and val.json were prepared into both splits
    without a word: the model trained on what it is scored on."""
    root, bdir, _, _ = real_format
    with pytest.raises(InputError) as error:
        babel.prepare(_data_cfg(root, bdir, duplicates="error"), str(tmp_path / "w"), 0)
    assert str(error.value) == (
        f"{bdir}/train.json and {bdir}/val.json: babel_sid 7 is in both the train and the val "
        "files (data.babel_splits): the model would be trained on what it is scored on (1 more "
        "babel_sids read twice); fix the files, or set --config.data.duplicates=allow to "
        "prepare it into both splits and count it in data/report.json"
    )
    assert not os.path.exists(tmp_path / "w" / "data")
    report = babel.prepare(_data_cfg(root, bdir, duplicates="allow"), str(tmp_path / "w"), 0)
    assert report["duplicates"] == {
        "sid_twice_in_file": 0,
        "sid_twice_in_split": 0,
        "sid_in_train_and_val": 2,
    }
    assert report["options"]["duplicates"] == "allow"
    assert len(report["duplicate_examples"]["sid_in_train_and_val"]) == 2
    assert prepared.read_report(str(tmp_path / "w"))["duplicates"] == report["duplicates"]
    table = babel.report_table(report).splitlines()
    assert any(line.split() == ["in", "both", "train", "and", "val", "2"] for line in table)
    with pytest.raises(InputError, match=r"data\.duplicates: must be one of \('error', 'allow'\)"):
        babel.prepare(_data_cfg(root, bdir, duplicates="ignore"), str(tmp_path / "w"), 0)


def test_a_sid_twice_in_one_file_keeps_the_first_or_errors(real_format, tmp_path):
    """Before, json.load kept the last of a repeated babel_sid and the first vanished."""
    root, bdir, _, _ = real_format
    first = _entry("KIT/KIT/572/a_poses.npz", None, [_label(["walk"])], 10.0)
    last = _entry("KIT/KIT/572/a_poses.npz", None, [_label(["stand"])], 10.0)
    _write_babel(bdir, {"train": {"8": _entry("CMU/CMU/01/b_poses.npz", None,
                                              [_label(["stand"])], 6.0)}})  # fmt: skip
    _json_with_repeats(bdir / "val.json", [("7", first), ("9", _entry(
        "KIT/KIT/9/c_poses.npz", None, [_label(["stand"])], 1.5)), ("7", last)])  # fmt: skip
    with pytest.raises(InputError, match=(
        rf"^{bdir}/val\.json: babel_sid 7 is a key 2 times in this file with different entries; "
        r"JSON keeps only one of them; fix the files, or set --config.data.duplicates=allow "
        r"to keep the first entry")):  # fmt: skip
        babel.prepare(_data_cfg(root, bdir, duplicates="error"), str(tmp_path / "w"), 0)
    report = babel.prepare(_data_cfg(root, bdir, duplicates="allow"), str(tmp_path / "w"), 0)
    assert report["duplicates"]["sid_twice_in_file"] == 1
    val = prepared.read_split(str(tmp_path / "w"), "val", mmap=False)
    sets = {tuple(c for c, y in zip(val.classes, row) if y) for row in val.labels}
    assert sets == {("walk",)}  # the first entry's label, on each of sid 7's windows
    # Readers of the files (the timeline) see the first entry too.
    records, found = babel.read_babel(str(bdir), ("val",))
    assert records["7"].main.raw == first and [d.reason for d in found] == ["sid_twice_in_file"]


def test_a_sid_with_main_entries_in_two_files_of_a_split(real_format, tmp_path):
    """Before, a second main entry in another file of the same split was a warning."""
    root, bdir, _, _ = real_format
    with open(bdir / "val.json") as f:
        val = json.load(f)
    _write_babel(bdir, {"train": {"8": val.pop("8")}, "val": val, "val2": {
        "9": _entry("KIT/KIT/9/c_poses.npz", None, [_label(["sit"])], 1.5)}})  # fmt: skip
    splits = {"train": ("train",), "val": ("val", "val2")}
    with pytest.raises(InputError, match=(
        rf"^{bdir}/val\.json and {bdir}/val2\.json: babel_sid 9 has a main entry "
        r"\(seq_ann/frame_ann\) in both files of one split; .* to keep the one in val\.json")):  # fmt: skip
        babel.prepare(_data_cfg(root, bdir, babel_splits=splits, duplicates="error"),
                      str(tmp_path / "w"), 0)  # fmt: skip
    report = babel.prepare(
        _data_cfg(root, bdir, babel_splits=splits, duplicates="allow"), str(tmp_path / "w"), 0
    )
    assert report["duplicates"] == {
        "sid_twice_in_file": 0,
        "sid_twice_in_split": 1,
        "sid_in_train_and_val": 0,
    }


# ---------------------------------------------------------------- synthetic data


def test_default_configs():
    for variant in ("smoke", "demo", "paper"):
        cfg = experiment.get_config(variant).data
        assert cfg.fps == 30 and cfg.chunk_frames == 100 and cfg.window_frames == 60
        assert babel.columns(cfg.classes) == tuple(cfg.classes)  # already in BABEL-60 order
    assert experiment.get_config("paper").data.classes == babel.BABEL60_CLASSES
    assert len(experiment.get_config("demo").data.classes) >= 12
    with pytest.raises(ValueError, match="variants"):
        experiment.get_config("huge")


def test_smoke_prepare_is_small_and_in_the_real_format(tmp_path):
    cfg = experiment.get_config("smoke").data
    counts = babel.prepare(cfg, str(tmp_path), seed=10)
    windows = {s: counts["splits"][s]["windows"]["kept"] for s in prepared.SPLITS}
    assert 10 <= windows["train"] <= 99 and 5 <= windows["val"] <= 99
    raw = tmp_path / "raw"
    with open(raw / "babel/train.json") as f:
        entries = json.load(f)
    assert any(e["frame_ann"] is None for e in entries.values())
    assert all(e["feat_p"].startswith("SYNTH/SYNTH/") for e in entries.values())
    keys, rates = set(), set()
    for e in entries.values():
        with np.load(amass.resolve(str(raw / "amass"), e["feat_p"])) as z:
            keys |= set(z.files) & set(amass.FRAMERATE_KEYS)
            rates.add(float(z[next(k for k in amass.FRAMERATE_KEYS if k in z.files)]))
            assert z["poses"].shape[1] == 156 and z["trans"].shape[1] == 3
    assert keys == set(amass.FRAMERATE_KEYS) and rates == {60.0, 120.0}
    assert prepared.read_split(str(tmp_path), "train").classes == list(cfg.classes)


def test_synthetic_classes_are_covered_and_distinguishable(tmp_path):
    cfg = experiment.get_config("demo").data
    cfg.synthetic.num_train, cfg.synthetic.num_val = 60, 60
    cfg.train_windows_per_chunk = 2
    assert set(cfg.synthetic.classes) <= set(babel.BABEL60_CLASSES)
    counts = babel.prepare(cfg, str(tmp_path), seed=1)
    train = prepared.read_split(str(tmp_path), "train", mmap=False)
    val = prepared.read_split(str(tmp_path), "val", mmap=False)
    num_classes = len(train.classes)
    assert num_classes == len(cfg.synthetic.classes) >= 12
    assert (train.labels.sum(0) > 0).all() and (val.labels.sum(0) > 0).all(), counts

    # Nearest class centroid on flattened single-label windows (z-scored by train statistics).
    def single(split):
        keep = split.labels.sum(1) == 1
        return split.motion[keep].reshape(keep.sum(), -1), split.labels[keep].argmax(1)

    x_train, y_train = single(train)
    x_val, y_val = single(val)
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_val = (x_train - mu) / sd, (x_val - mu) / sd
    centroids = np.stack([x_train[y_train == k].mean(0) for k in range(num_classes)])
    dist = ((x_val[:, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = (dist.argmin(1) == y_val).mean()
    assert accuracy > 5.0 / num_classes, accuracy  # chance is 1 / num_classes


# ---------------------------------------------------------------- the reference's features


def _standin(tmp_path):
    from wat_jax.data import synthetic_babel

    path = str(tmp_path / "smplh.npz")
    np.savez(path, **synthetic_babel.standin_body_model())
    return path


def test_forward_kinematics_of_a_turning_root(tmp_path):
    from wat_jax.data import body_model

    skeleton = body_model.load(_standin(tmp_path))
    theta = np.linspace(0.0, 2.0, 7)
    aa = np.zeros((7, 52, 3))
    aa[:, 0, 1] = theta  # the root turns about y, every other joint at rest
    pos = body_model.forward_kinematics(skeleton, rotations.axis_angle_to_matrix(aa))
    rest = skeleton.rest
    turn = rotations.axis_angle_to_matrix(aa[:, 0])  # [7, 3, 3]
    expected = rest[0] + np.einsum("tij,j->ti", turn, rest[amass.R_ANKLE] - rest[0])
    np.testing.assert_allclose(pos[:, amass.R_ANKLE], expected, atol=1e-12)
    np.testing.assert_allclose(pos[0], rest, atol=1e-12)  # rest pose at theta 0
    # A bent right knee (joint 5) moves the ankle and leaves the left leg alone.
    aa[:, 5, 0] = 1.0
    bent = body_model.forward_kinematics(skeleton, rotations.axis_angle_to_matrix(aa))
    assert np.abs(bent[:, amass.R_ANKLE] - pos[:, amass.R_ANKLE]).max() > 0.1
    np.testing.assert_allclose(bent[:, 7], pos[:, 7], atol=1e-12)


def test_reference_translation_row_follows_the_right_ankle(real_format, tmp_path):
    root, bdir, _, _ = real_format
    cfg = _data_cfg(root, bdir, translation="reference", body_model=_standin(tmp_path))
    babel.prepare(cfg, str(tmp_path / "w"), seed=0)
    val = prepared.read_split(str(tmp_path / "w"), "val", mmap=False)
    window, row = val.motion[1], val.index[1]  # sid 7's second chunk
    motion = amass.load_npz(str(root / "KIT/572/a_poses.npz"))
    rot, trans = amass.resample(motion, 30)
    from wat_jax.data import body_model

    ankle = body_model.forward_kinematics(body_model.load(cfg.body_model), rot)[:, amass.R_ANKLE]
    s = row["start_frame"]
    np.testing.assert_allclose(window[:, 24, :3], ankle[s : s + 60] - ankle[s], atol=1e-5)
    assert not window[:, 24, 3:].any()
    # Not the root's path: the spin swings the ankle around the root.
    assert np.abs(window[:, 24, :3] - (trans[s : s + 60] - trans[s])).max() > 0.05


def test_reference_chunks_are_whole(real_format, tmp_path):
    root, bdir, _, _ = real_format
    cfg = _data_cfg(root, bdir, partial_chunks=False)
    counts = babel.prepare(cfg, str(tmp_path / "w"), seed=0)
    # Sid 8 (180 frames) keeps only its first 100-frame chunk; sid 7 its three.
    assert counts["splits"]["val"]["windows"]["kept"] == 4
    assert counts["options"]["partial_chunks"] is False


def test_feature_keys_and_body_model_fail_in_one_line(real_format, tmp_path):
    root, bdir, _, _ = real_format
    with pytest.raises(InputError, match="config.data.body_model") as err:
        babel.prepare(_data_cfg(root, bdir, translation="reference"), str(tmp_path / "w"), 0)
    assert "mano.is.tue.mpg.de" in str(err.value) and "\n" not in str(err.value)
    for key, value in (("rot6d", "quat"), ("translation", "hips"), ("feature_joints", (0, 1))):
        with pytest.raises(InputError, match=f"config.data.{key}"):
            babel.prepare(_data_cfg(root, bdir, **{key: value}), str(tmp_path / "w"), 0)
    bad = tmp_path / "smpl.npz"
    np.savez(bad, J_regressor=np.zeros((24, 10)), v_template=np.zeros((10, 3)),
             kintree_table=np.zeros((2, 24), np.int64))  # fmt: skip
    with pytest.raises(InputError, match="SMPL-H") as err:
        babel.prepare(
            _data_cfg(root, bdir, translation="reference", body_model=str(bad)),
            str(tmp_path / "w"),
            0,
        )
    assert str(bad) in str(err.value)
    assert not (tmp_path / "w" / "data").exists()  # nothing half-written


def test_paper_prepare_on_synthetic_files_uses_the_standin_body_model(tmp_path):
    from wat_jax.data import body_model, synthetic_babel
    from wat_jax.state import ModelDims
    from wat_jax.tasks import get_task

    config = experiment.get_config("paper")
    cfg = config.data
    cfg.source = "synthetic"
    cfg.synthetic.update(num_train=4, num_val=3)
    workdir = str(tmp_path / "w")
    counts = babel.prepare(cfg, workdir, seed=0)
    assert counts["options"]["translation"] == "reference"
    val = prepared.read_split(workdir, "val", mmap=False)
    row = val.index[0]
    motion = amass.load_npz(os.path.join(counts["amass_root"], row["source"].split("/", 1)[1]))
    rot, _ = amass.resample(motion, 30)
    skeleton = body_model.load(
        synthetic_babel.standin_body_model_path(os.path.join(workdir, "raw"))
    )
    ankle = body_model.forward_kinematics(skeleton, rot)[:, amass.R_ANKLE]
    s = row["start_frame"]
    np.testing.assert_allclose(val.motion[0, :, 24, :3], ankle[s : s + 60] - ankle[s], atol=1e-5)
    # Whole 100-frame chunks only: each val window is centred in one, at offset 20.
    assert {r["start_frame"] % 100 for r in val.index} == {20}
    # wat_jax.load's reading of the raw file (the stand-in found through the run's folder)
    # gives the same windows as prepare.
    path = os.path.join(counts["amass_root"], row["source"].split("/", 1)[1])
    dims = ModelDims(60, 25, 6, 8, len(cfg.classes))
    windows, mask = get_task("babel60").motion_file(config, path, dims, workdir)
    same = [i for i, r in enumerate(val.index) if r["source"] == row["source"]]
    np.testing.assert_allclose(windows, val.motion[same], atol=1e-6)
    assert mask.all()
    with pytest.raises(InputError, match="config.data.body_model"):
        get_task("babel60").motion_file(config, path, dims, None)
