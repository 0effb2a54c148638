"""Pictures: skeleton GIFs (OpenPose-18, SMPL forward kinematics, plain points), the
embedding-space PCA, eval_pictures, and a one-line CLI error. Images are read back
with PIL and must have the expected size, real content and several colours."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from wat_jax import fileio, tasks
from wat_jax.reporting import pictures, plots
from wat_jax.data import gait_attributes, rotations, skeletons
from wat_jax.data.skeletons import SMPL, OpenPose18

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLUE = np.array([31, 119, 180])  # matplotlib tab:blue, the left side
RED = np.array([214, 39, 40])  # tab:red, the right side


def _experiment(name: str, variant: str = "smoke"):
    spec = importlib.util.spec_from_file_location(
        f"{name}_cfg", os.path.join(ROOT, "experiments", f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def _toy_config():
    return _experiment("toy")


@pytest.fixture(scope="module", params=["babel60", "densegait"])
def prepared_workdir(request, tmp_path_factory):
    """The smoke experiment's prepared windows (synthetic data in the real formats)."""
    from wat_jax import tasks

    workdir = str(tmp_path_factory.mktemp(request.param))
    config = _experiment(request.param)
    fileio.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
    tasks.get_task(request.param).prepare(config, workdir)
    return workdir, config


def _frames(path):
    """Every frame of an image file as RGB arrays."""
    image = Image.open(path)
    out = []
    for i in range(getattr(image, "n_frames", 1)):
        image.seek(i)
        out.append(np.asarray(image.convert("RGB")).astype(np.int64))
    return out


def _assert_not_blank(rgb, min_colours=4):
    assert rgb.std() > 10, "image is (nearly) one colour"
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) >= min_colours


def _pixels_near(rgb, colour, tol=40):
    return int((np.abs(rgb - colour).sum(-1) < tol).sum())


def _openpose_walk(frames=20):
    """A stick figure whose legs swing: [T, 18, 3] (x, y up, confidence)."""
    base = np.array(
        [
            [0, 1.3],
            [0, 1],
            [-0.3, 1],
            [-0.4, 0.5],
            [-0.4, 0.1],
            [0.3, 1],
            [0.4, 0.5],
            [0.4, 0.1],
            [-0.15, 0],
            [-0.2, -0.5],
            [-0.2, -1],
            [0.15, 0],
            [0.2, -0.5],
            [0.2, -1],
            [-0.05, 1.35],
            [0.05, 1.35],
            [-0.1, 1.3],
            [0.1, 1.3],
        ],
        np.float64,
    )
    motion = np.zeros((frames, 18, 3), np.float32)
    for t in range(frames):
        pose = base.copy()
        swing = 0.3 * np.sin(2 * np.pi * t / frames)
        pose[[9, 10], 0] += swing * np.array([0.5, 1.0])
        pose[[12, 13], 0] -= swing * np.array([0.5, 1.0])
        motion[t, :, :2], motion[t, :, 2] = pose, 0.9
    return motion


def test_openpose_gif_has_size_frames_colours_and_hides_missing_joints(tmp_path):
    motion = _openpose_walk()
    path = pictures.skeleton_gif(motion, None, str(tmp_path / "walk.gif"), "walk", size=240)
    frames = _frames(path)
    assert frames[0].shape == (240, 240, 3)
    assert len(frames) >= 10  # the legs move, so frames differ
    for rgb in frames[:: max(len(frames) // 4, 1)]:
        _assert_not_blank(rgb)
        assert _pixels_near(rgb, BLUE) > 20 and _pixels_near(rgb, RED) > 20

    # Left-side joints with confidence 0: their bones and dots must not be drawn.
    motion[:, list(OpenPose18.LEFT), :] = 0.0
    frames = _frames(pictures.skeleton_gif(motion, None, str(tmp_path / "half.gif"), size=240))
    assert all(_pixels_near(rgb, BLUE) == 0 for rgb in frames)
    assert all(_pixels_near(rgb, RED) > 20 for rgb in frames)


def test_mask_limits_the_frames(tmp_path):
    motion = _openpose_walk(20)
    mask = np.arange(20) < 5
    frames = _frames(pictures.skeleton_gif(motion, mask, str(tmp_path / "m.gif")))
    assert 2 <= len(frames) <= 5
    with pytest.raises(Exception, match="no real frames"):
        pictures.skeleton_gif(motion, np.zeros(20, bool), str(tmp_path / "none.gif"))


def _identity_features(frames=1):
    """BABEL features [T, 25, 6] of the SMPL rest pose: identity rotations, no translation."""
    feats = np.zeros((frames, 25, 6), np.float32)
    feats[:, :24] = rotations.matrix_to_rot6d(np.eye(3))
    return feats


def test_forward_kinematics_of_the_rest_pose_and_a_rotated_root():
    joints = skeletons.smpl_joints(_identity_features())[0]  # [24, 3]
    assert joints[15, 1] > joints[12, 1] > joints[0, 1] > joints[4, 1] > joints[7, 1]
    assert joints[16, 0] > 0 > joints[17, 0]  # SMPL: +x is the body's left
    for j, parent in enumerate(SMPL.PARENTS[1:], 1):
        np.testing.assert_allclose(
            np.linalg.norm(joints[j] - joints[parent]),
            np.linalg.norm(SMPL.OFFSETS[j]),
            atol=1e-6,
        )

    # AMASS stores bodies z-up: a +90 degree root turn about x maps y-up to z-up,
    # and the translation row moves every joint.
    feats = _identity_features()
    feats[0, 0] = rotations.matrix_to_rot6d(
        rotations.axis_angle_to_matrix(np.array([np.pi / 2, 0, 0]))
    )
    feats[0, 24, :3] = [1.0, 2.0, 0.5]
    turned = skeletons.smpl_joints(feats)[0]
    np.testing.assert_allclose(turned[0], [1.0, 2.0, 0.5], atol=1e-6)
    assert turned[15, 2] - turned[0, 2] > 0.4 and abs(turned[15, 1] - turned[0, 1]) < 0.1
    flat = pictures.project_side_view(turned[None])[0]  # [24, 2]: up axis vertical
    assert flat[15, 1] > flat[0, 1] > flat[7, 1]


def test_babel_gif_of_a_bending_knee(tmp_path):
    frames = 24
    feats = _identity_features(frames)
    angles = np.linspace(0, 1.5, frames)
    knee = rotations.axis_angle_to_matrix(np.stack([angles, 0 * angles, 0 * angles], -1))
    feats[:, 4] = rotations.matrix_to_rot6d(knee)  # left knee bends over the window
    images = _frames(pictures.skeleton_gif(feats, None, str(tmp_path / "knee.gif"), "knee"))
    assert images[0].shape == (320, 320, 3) and len(images) >= 10
    _assert_not_blank(images[-1])
    assert np.abs(images[0] - images[-1]).sum() > 0


def test_plain_points_for_other_shapes(tmp_path):
    rng = np.random.default_rng(0)
    motion = rng.standard_normal((8, 5, 3)).astype(np.float32)
    images = _frames(pictures.skeleton_gif(motion, None, str(tmp_path / "toy.gif")))
    assert images[0].shape == (320, 320, 3)
    _assert_not_blank(images[0], min_colours=3)


def test_pca_keeps_a_planar_cloud_and_orders_the_axes():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((8, 2)))[0]  # a 2-D plane through 0 in 8-D
    coeffs = rng.standard_normal((200, 2)) * [3.0, 1.0]
    xy = plots.pca_2d(coeffs @ basis.T)
    unit = coeffs / np.linalg.norm(coeffs, axis=1, keepdims=True)
    np.testing.assert_allclose(xy.var(0).sum(), (unit - unit.mean(0)).var(0).sum(), rtol=1e-6)
    assert xy.var(0)[0] >= xy.var(0)[1]
    np.testing.assert_allclose(xy.mean(0), 0, atol=1e-9)


def test_embedding_png_and_eval_pictures(tmp_path):
    from wat_jax.data import prepared
    from wat_jax.tasks import toy

    config = _toy_config()
    out = str(tmp_path / "eval")
    rng = np.random.default_rng(0)
    classes = [f"class_{i}" for i in range(config.data.num_classes)]
    centres = rng.standard_normal((len(classes), 16))
    motion, mask, _ = toy.make_data(config, config.seed, "val")
    labels = np.eye(len(classes), dtype=np.float32)[rng.integers(0, len(classes), len(motion))]
    motion_emb = labels @ centres + 0.2 * rng.standard_normal((len(motion), 16))
    rows = [{"source": f"toy/val/{i}", "start_s": 0.0} for i in range(len(motion))]
    windows = prepared.PreparedSplit(motion, mask, labels, classes, rows)
    paths = pictures.eval_pictures(config, out, 7, windows, motion_emb, centres)
    assert paths == [
        os.path.join(out, "embedding_step_7.png"),
        os.path.join(out, "example_step_7.gif"),
    ]
    png = _frames(paths[0])[0]
    assert png.shape[0] > 300 and png.shape[1] > 300
    _assert_not_blank(png, min_colours=len(classes) + 2)
    gif = _frames(paths[1])
    assert gif[0].shape == (320, 320, 3) and len(gif) > 1


def test_cli_bad_index_is_one_line(tmp_path):
    fileio.write_json(str(tmp_path / "config.json"), json.loads(_toy_config().to_json()))
    out = tmp_path / "x.gif"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wat_jax.tools.visualize",
            f"--workdir={tmp_path}",
            "--index=999",
            f"--output={out}",
        ],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --index") and "999" in lines[0]
    assert not out.exists()


def test_gifs_of_prepared_windows(prepared_workdir, tmp_path):
    workdir, config = prepared_workdir
    gallery = tasks.get_task(config.task).windows(config, workdir, "val")
    index = len(gallery) - 1
    path = pictures.window_gif(gallery, index, str(tmp_path / "w.gif"))
    images = _frames(path)
    assert images[0].shape == (320, 320, 3)
    assert 2 <= len(images) <= int(gallery.mask[index].sum())
    for rgb in images[:: max(len(images) // 3, 1)]:
        _assert_not_blank(rgb)
        assert _pixels_near(rgb, BLUE) > 20 and _pixels_near(rgb, RED) > 20
    assert max(np.abs(images[0] - rgb).sum() for rgb in images[1:]) > 0  # it moves


def test_densegait_embedding_picture_colours_by_viewpoint(tmp_path):

    config = _experiment("densegait")
    rng = np.random.default_rng(0)
    classes = list(gait_attributes.COLUMNS)
    labels = (rng.random((40, len(classes))) < 0.3).astype(np.float32)
    emb = rng.standard_normal((40, 8))
    protos = rng.standard_normal((len(classes), 8))
    columns = tasks.get_task("densegait").picture_columns(classes)
    ids, names, columns = pictures._groups(config, labels, classes, columns)
    assert names == ["Front", "Side", "Back"]
    view = labels[:, columns]
    expect = np.where(view.max(1) > config.data.threshold, view.argmax(1), -1)
    np.testing.assert_array_equal(ids, expect)
    path = plots.embedding_png(
        emb, ids, names, str(tmp_path / "e.png"), "t", protos[columns], np.arange(3), names
    )
    _assert_not_blank(_frames(path)[0], min_colours=5)


def test_readme_shows_the_demo_pictures_that_exist():
    """Every picture README links is a committed, readable, non-blank image."""
    import re

    with open(os.path.join(ROOT, "README.md")) as f:
        links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", f.read())
    assert len(links) >= 7, links
    for link in links:
        with Image.open(os.path.join(ROOT, link)) as image:
            assert image.width >= 300 and image.height >= 300, link
            rgb = np.asarray(image.convert("RGB"))
            assert len(np.unique(rgb.reshape(-1, 3), axis=0)) >= 4, link
            assert (rgb < 128).any(), link  # something is drawn on the white
