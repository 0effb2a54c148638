"""BABEL-60 data: rotations, AMASS loading and resampling, BABEL labels, windows, synthetic data."""

import collections
import json
import os

import numpy as np
import pytest

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
    cfg = babel.default_data_config("paper")
    cfg.amass_root, cfg.babel_dir, cfg.classes = str(amass_root), str(babel_dir), CLASSES
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
    cases = {
        (0.0, 0.0, 0.0): [1, 0, 0, 0, 1, 0],
        (0.0, 0.0, np.pi / 2): [0, 1, 0, -1, 0, 0],  # x -> y, y -> -x
        (np.pi / 2, 0.0, 0.0): [1, 0, 0, 0, 0, 1],  # y -> z
        (0.0, np.pi, 0.0): [-1, 0, 0, 0, 1, 0],
    }
    for aa, expected in cases.items():
        got = rotations.matrix_to_rot6d(rotations.axis_angle_to_matrix(np.array(aa)))
        np.testing.assert_allclose(got, expected, atol=1e-12)


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
    np.testing.assert_allclose(rot6d, np.concatenate([reference[:, :, 0], reference[:, :, 1]], 1))
    np.testing.assert_allclose(rotations.rot6d_to_matrix(rot6d), reference, atol=1e-12)
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
    assert counts["val"]["skipped_short"] == 1 and counts["val"]["sequences"] == 3
    assert counts["val"]["ignored_act_cat"] == {"transition": 1}

    # Features of the window at 30-fps frame 120: frame f is source frame 4 * (120 + f).
    window = val.motion[1]
    src = 4 * (120 + np.arange(60))
    angle = 0.01 * src
    expected = np.stack(
        [np.cos(angle), np.sin(angle), 0 * angle, -np.sin(angle), np.cos(angle), 0 * angle], -1
    )
    np.testing.assert_allclose(window[:, 0], expected, atol=1e-6)
    body = rotations.matrix_to_rot6d(rotations.axis_angle_to_matrix(poses[0, 3:72].reshape(23, 3)))
    np.testing.assert_allclose(window[:, 1:24], np.broadcast_to(body, (60, 23, 6)), atol=1e-6)
    # Translation relative to the window's first frame, padded with zeros.
    np.testing.assert_allclose(window[:, 24, :3], trans[src] - trans[src[0]], atol=1e-6)
    assert window[0, 24].tolist() == [0.0] * 6 and not window[:, 24, 3:].any()


def test_train_windows_are_seeded_random_in_chunks(real_format, tmp_path):
    root, bdir, _, _ = real_format
    cfg = _data_cfg(root, bdir, train_windows_per_chunk=4)
    a = babel.prepare(cfg, str(tmp_path / "a"), seed=3)["train"]
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
    assert a["windows"] == len(train_a.index)


def test_extra_files_union_and_frame_anns(tmp_path):
    with open(tmp_path / "train.json", "w") as f:
        json.dump(
            {
                "5": _entry("X/X/a.npz", [_label(["walk"], 0.0, 1.0)], [_label(["walk"])], 2.0),
                "6": _entry("X/X/b.npz", None, [_label(["sit"])], 2.0),
            },
            f,
        )
    # Extra entries as BABEL v1.0 writes them: lists under seq_anns / frame_anns, either null.
    extra = {
        "5": dict(
            babel_sid=5,
            url="",
            feat_p="X/X/a.npz",
            dur=2.0,
            seq_anns=[dict(babel_lid="e", anntr_id="f", mul_act=False, labels=[_label(["stand"])])],
            frame_anns=[
                dict(labels=[_label(["run"], 1, 2.0)]),  # integer times occur in BABEL
                dict(labels=[_label(["jump"], 0.5, 1.0)]),
            ],
        ),
        "6": dict(
            babel_sid=6,
            url="",
            feat_p="X/X/b.npz",
            dur=2.0,
            seq_anns=[dict(labels=[_label(["stand"]), _label(None)])],
            frame_anns=None,
        ),
        "7": dict(
            babel_sid=7,
            url="",
            feat_p="X/X/c.npz",
            dur=2.0,
            seq_anns=None,
            frame_anns=[dict(labels=[_label(["jump"], 0.0, 0.5)])],
        ),
    }
    with open(tmp_path / "extra_train.json", "w") as f:
        json.dump(extra, f)
    entries = babel.read_babel(str(tmp_path), ("train", "extra_train"))
    classes = ("walk", "stand", "sit", "jump", "run")
    ignored = collections.Counter()

    def frames(sid):
        return babel.frame_labels(entries[sid]["segments"], 60, 30, classes, ignored).sum(0)

    # Frame labels from both files; the extra annotator's sequence label "stand" does not
    # cover a sequence that has frame labels.
    np.testing.assert_array_equal(frames("5"), [30, 0, 0, 15, 30])
    # No frame labels anywhere: every sequence label covers every frame.
    np.testing.assert_array_equal(frames("6"), [0, 60, 60, 0, 0])
    np.testing.assert_array_equal(frames("7"), [0, 0, 0, 15, 0])  # only in the extra file
    assert not ignored
    with open(tmp_path / "extra_val.json", "w") as f:
        json.dump({"8": dict(feat_p="X/X/d.npz", seq_anns={"labels": []}, frame_anns=None)}, f)
    with pytest.raises(InputError, match=r"extra_val\.json \[babel_sid 8\]: 'seq_anns' must be"):
        babel.read_babel(str(tmp_path), ("extra_val",))


# ---------------------------------------------------------------- bad input


def test_missing_files_counted_then_fatal(real_format, tmp_path):
    root, bdir, _, _ = real_format
    os.remove(root / "KIT/9/c_poses.npz")
    counts = babel.prepare(_data_cfg(root, bdir, max_missing_fraction=0.5), str(tmp_path / "w1"), 0)
    assert counts["val"]["skipped_missing"] == 1 and counts["val"]["windows"] == 5
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


# ---------------------------------------------------------------- synthetic data


def test_default_configs():
    for variant in ("smoke", "demo", "paper"):
        cfg = babel.default_data_config(variant)
        assert cfg.fps == 30 and cfg.chunk_frames == 100 and cfg.window_frames == 60
        assert babel.columns(cfg.classes) == tuple(cfg.classes)  # already in BABEL-60 order
    assert babel.default_data_config("paper").classes == babel.BABEL60_CLASSES
    assert len(babel.default_data_config("demo").classes) >= 12
    with pytest.raises(InputError):
        babel.default_data_config("huge")


def test_smoke_prepare_is_small_and_in_the_real_format(tmp_path):
    cfg = babel.default_data_config("smoke")
    counts = babel.prepare(cfg, str(tmp_path), seed=10)
    assert 10 <= counts["train"]["windows"] <= 99 and 5 <= counts["val"]["windows"] <= 99
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
    cfg = babel.default_data_config("demo")
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
