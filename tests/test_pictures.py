"""The pictures a person reads (issue 26): the confusion matrix says what its cells count
(beside per-class top-1 they differ on windows of several labels), the embedding plot's
prototype names never pile up, and the example GIF shows the model's answer beside the
truth under a title that is wrapped, not cut."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from wat_jax.reporting import pictures, plots


def test_confusion_matrix_says_what_its_cells_count(tmp_path):
    matrix = np.array([[8, 2], [5, 5]])
    bare = plots.confusion_png(matrix, ["walk", "stand"], str(tmp_path / "a.png"), "t", note="")
    told = plots.confusion_png(matrix, ["walk", "stand"], str(tmp_path / "b.png"), "t")
    # The note takes lines under the matrix (the same picture otherwise).
    assert Image.open(told).height > Image.open(bare).height + 40
    assert "any of its labels" in plots.CONFUSION_NOTE


def test_ring_labels_are_evenly_spaced_in_the_stars_order():
    rng = np.random.default_rng(0)
    stars = rng.normal(0, 0.02, (17, 2))  # a pile in the middle, as in the BABEL demo
    spots = plots.ring_positions(stars, 1.0, stars.mean(0))
    np.testing.assert_allclose(np.linalg.norm(spots - stars.mean(0), axis=1), 1.0)
    gaps = np.linalg.norm(spots[:, None] - spots[None], axis=-1) + np.eye(17) * 9
    assert gaps.min() == pytest.approx(2 * np.sin(np.pi / 17), rel=1e-6)  # neighbours' chord
    a, b = (np.argsort(np.arctan2(*(p - stars.mean(0))[:, ::-1].T)) for p in (stars, spots))
    assert any(np.array_equal(np.roll(a, k), b) for k in range(17))  # same cyclic order


def test_embedding_plot_with_a_pile_of_prototypes_draws(tmp_path):
    rng = np.random.default_rng(1)
    motion = rng.normal(size=(200, 8))
    groups = rng.integers(0, 17, 200)
    names = [f"class {i}" for i in range(17)]
    protos = motion[:17] * 0.05 + 0.01 * rng.normal(size=(17, 8))
    path = plots.embedding_png(
        motion, groups, names, str(tmp_path / "e.png"), "t", protos, np.arange(17), names
    )
    assert Image.open(path).size[0] > 600


@dataclasses.dataclass
class _Windows:
    motion: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    classes: list
    index: list

    def __len__(self):
        return len(self.motion)


def test_example_gif_shows_the_models_answer_beside_the_truth(tmp_path, monkeypatch):
    classes = ["walk", "stand", "turn"]
    prototypes = np.eye(3, 4, dtype=np.float32)
    answer = pictures.model_answer(np.array([0.2, 0.9, 0.1, 0.0]), prototypes, classes, 2)
    assert [c for c, _ in answer] == ["stand", "walk"] and answer[0][1] > answer[1][1]

    source = "CMU/CMU/01/01_01_a_source_name_long_enough_to_be_cut_poses.npz"
    windows = _Windows(
        np.zeros((1, 4, 2, 2), np.float32),
        np.ones((1, 4), bool),
        np.array([[1.0, 1.0, 0.0]], np.float32),
        classes,
        [{"source": source, "start_s": 1.5}],
    )
    titles = []
    monkeypatch.setattr(pictures, "skeleton_gif", lambda *a, **k: titles.append(a[3]))
    pictures.window_gif(windows, 0, str(tmp_path / "w.gif"), answer=answer)
    lines = titles[0].split("\n")
    assert lines[0] == f"{source} @ 1.5s"
    assert lines[1] == "true: walk, stand"
    assert lines[2].startswith("model: stand 0.") and lines[2].endswith("\u2713")
    # Wrapped to the picture's width: no line longer than fits 320 px at 7 points.
    wrapped = pictures.title_lines(titles[0], 320)
    assert len(wrapped) > len(lines) and max(map(len, wrapped)) <= 320 / 5.6
    assert "".join(wrapped).replace(" ", "") == titles[0].replace("\n", "").replace(" ", "")


def test_babel_per_class_bars_say_what_a_bar_counts(babel_smoke, tmp_path):
    """The BABEL run's per-class bars carry the note on multi-label windows (the confusion
    matrix's diagonal and these bars count such windows differently): the run's picture is
    taller than the same bars drawn without it."""
    import glob
    import json
    import os

    from wat_jax.tasks import babel60

    (path,) = glob.glob(os.path.join(babel_smoke.workdir, "eval", "per_class_step_*.png"))
    step = path.rsplit("_", 1)[1].split(".")[0]
    with open(os.path.join(babel_smoke.workdir, "eval", f"step_{step}.json")) as f:
        values = json.load(f)["per_class_top1"]
    bare = plots.bars_png(values, str(tmp_path / "bare.png"), "t", "top-1")
    assert Image.open(path).height > Image.open(bare).height + 20
    assert "any of its labels" in babel60.PER_CLASS_NOTE
