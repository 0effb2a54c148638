"""A trained run as a self-contained artifact: `wat_jax.load` on a folder holding only
config.json and one checkpoint, in a process that never imports the training code,
reproduces the eval stage's numbers."""

import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import wat_jax
from wat_jax.data import prepared
from wat_jax.errors import InputError

from tests import cli


def _copy_run(workdir, dest):
    """config.json and the newest checkpoint, nothing else."""
    step = max(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
    os.makedirs(os.path.join(dest, "checkpoints"))
    shutil.copy(os.path.join(workdir, "config.json"), dest)
    shutil.copytree(
        os.path.join(workdir, "checkpoints", str(step)),
        os.path.join(dest, "checkpoints", str(step)),
    )
    return step


# Runs in a fresh interpreter: the loaded run must reproduce eval's headline number
# from the copied folder alone, and the training code must never be imported.
_FRESH = r"""
import json, sys
import numpy as np
import wat_jax
from wat_jax import metrics
from wat_jax.data import prepared
from wat_jax.text.bank import TextBank

folder, workdir, task = sys.argv[1:4]
run = wat_jax.load(folder)
val = prepared.read_split(workdir, "val")
out = {"step": run.step, "classes": run.classes}
if task == "babel60":
    top = run.classify(np.asarray(val.motion), np.asarray(val.mask), top_k=5)
    labels = np.asarray(val.labels) > 0.5
    hits = [labels[i, run.classes.index(t[0][0])] for i, t in enumerate(top)]
    out["top1"] = float(np.mean(hits))
    out["scores_sorted"] = all(
        all(a[1] >= b[1] for a, b in zip(t, t[1:])) for t in top
    )
else:
    from wat_jax.tasks import densegait  # scoring helpers only
    bank = TextBank.load(workdir + "/text_bank.npz")
    threshold = run.config.data.threshold
    sets = np.asarray(val.labels) > threshold
    ids = densegait._key_ids(val.labels, threshold, bank)
    query_ids = np.unique(ids)
    query_sets = np.stack([sets[np.flatnonzero(ids == q)[0]] for q in query_ids])
    gains = metrics.jaccard_gains(query_sets, sets)
    text = run.project_text(bank.centroids(normalize=True)[query_ids])
    scores = text @ run.embed_motion(np.asarray(val.motion), np.asarray(val.mask)).T
    out["ndcg@10"] = float(np.nanmean(metrics.ndcg_at_k(scores, gains, 10)))
training = [m for m in ("wat_jax.train", "wat_jax.objectives", "wat_jax.evaluate", "optax")
            if m in sys.modules and m != "optax"]
out["imported_training"] = training
print("RESULT " + json.dumps(out))
"""


def _fresh(folder, workdir, task):
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH, str(folder), str(workdir), task],
        cwd=cli.ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def babel_run(babel_smoke, tmp_path_factory):
    """The session's babel60 smoke run (--mode=all), a copy of it for this module."""
    return cli.copy_run(babel_smoke.workdir, tmp_path_factory.mktemp("babel_artifact") / "run")


def test_babel_run_loads_from_config_and_one_checkpoint(babel_run, tmp_path):
    step = _copy_run(babel_run, tmp_path / "only")
    assert sorted(os.listdir(tmp_path / "only")) == ["checkpoints", "config.json"]
    got = _fresh(tmp_path / "only", babel_run, "babel60")
    evaluated = json.load(open(babel_run / "eval" / f"step_{step}.json"))
    assert got["step"] == step
    assert got["top1"] == pytest.approx(evaluated["top1"], abs=1e-9)
    assert got["classes"] == prepared.read_split(str(babel_run), "val").classes
    assert got["scores_sorted"]
    assert got["imported_training"] == []


def test_a_checkpoint_folder_reads_with_the_config_beside_it(babel_run, tmp_path):
    step = _copy_run(babel_run, tmp_path / "only")
    run = wat_jax.load(str(tmp_path / "only" / "checkpoints" / str(step)))
    assert run.step == step
    with pytest.raises(InputError, match="is the checkpoint of step"):
        wat_jax.load(str(tmp_path / "only" / "checkpoints" / str(step)), step=step + 1)


def test_embed_motion_and_text_are_unit_rows(babel_run):
    run = wat_jax.load(str(babel_run))
    val = prepared.read_split(str(babel_run), "val")
    emb = run.embed_motion(np.asarray(val.motion[:5]), np.asarray(val.mask[:5]))
    assert emb.shape == (5, run.class_vectors.shape[1]) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Shorter windows are padded at the end with a mask: the same embedding.
    short = run.embed_motion(np.asarray(val.motion[:2, :40]))
    padded = np.zeros_like(val.motion[:2])
    padded[:, :40] = val.motion[:2, :40]
    mask = np.zeros(val.mask[:2].shape, bool)
    mask[:, :40] = True
    np.testing.assert_allclose(short, run.embed_motion(padded, mask), atol=1e-6)
    text = run.embed_text(["a person walks", "a person jumps"])
    assert text.shape == (2, emb.shape[1])
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    top = run.classify(np.asarray(val.motion[:3]), np.asarray(val.mask[:3]), top_k=2)
    assert len(top) == 3 and all(len(t) == 2 and t[0][0] in run.classes for t in top)


def test_embed_motion_reads_a_raw_amass_file_like_the_loader(babel_run):
    run = wat_jax.load(str(babel_run))
    val = prepared.read_split(str(babel_run), "val")
    from wat_jax.data import amass

    by_source = {}
    for i, row in enumerate(val.index):
        by_source.setdefault(row["source"], []).append((row["start_frame"], i))
    source = sorted(by_source)[0]
    path = amass.resolve(str(babel_run / "raw" / "amass"), source)
    assert path is not None and os.path.isfile(path)
    from_file = run.embed_motion(path)
    prepared_rows = run.embed_motion(np.asarray(val.motion), np.asarray(val.mask))
    # Every prepared val window of that file is among the file's windows.
    for _, i in by_source[source]:
        assert np.abs(from_file - prepared_rows[i]).max(axis=1).min() < 1e-5


def test_bad_motion_is_one_clear_error(babel_run, tmp_path):
    run = wat_jax.load(str(babel_run))
    with pytest.raises(InputError, match=r"motion: must be \[B, T<=60, 25, 6\]"):
        run.embed_motion(np.zeros((2, 60, 25, 3), np.float32))
    with pytest.raises(InputError, match="NaN"):
        run.embed_motion(np.full((1, 60, 25, 6), np.nan, np.float32))
    bad = tmp_path / "x.txt"
    bad.write_text("hello")
    with pytest.raises(InputError, match="reads motion arrays"):
        run.embed_motion(str(bad))
    with pytest.raises(InputError, match="no such folder"):
        wat_jax.load(str(tmp_path / "nothing"))


def test_densegait_run_loads_and_reproduces_ndcg(densegait_smoke, tmp_path):
    workdir = cli.copy_run(densegait_smoke.workdir, tmp_path / "dg")
    step = _copy_run(workdir, tmp_path / "only")
    got = _fresh(tmp_path / "only", workdir, "densegait")
    evaluated = json.load(open(workdir / "eval" / f"step_{step}.json"))
    assert got["ndcg@10"] == pytest.approx(evaluated["ndcg@10"], abs=1e-6)
    assert len(got["classes"]) == 42 and got["imported_training"] == []
    # A DenseGait tracklet file goes through the loader's normalisation.
    run = wat_jax.load(str(tmp_path / "only"))
    tracklet = sorted(glob.glob(str(workdir / "raw" / "**" / "*.npy"), recursive=True))[0]
    emb = run.embed_motion(tracklet)
    assert emb.shape == (1, run.class_vectors.shape[1])
    assert len(run.classify(tracklet, top_k=3)[0]) == 3


def test_checkpoints_beside_another_runs_config_are_refused(babel_run, densegait_smoke, tmp_path):
    """Before, BABEL checkpoints beside a DenseGait config.json loaded as a densegait run
    with BABEL class names (same model sizes, so the params restored)."""
    step = _copy_run(babel_run, tmp_path / "mixed")
    shutil.copy(densegait_smoke.workdir / "config.json", tmp_path / "mixed" / "config.json")
    with pytest.raises(InputError) as error:
        wat_jax.load(str(tmp_path / "mixed"))
    message = str(error.value)
    assert message.startswith(str(tmp_path / "mixed" / "checkpoints" / str(step)))
    # The checkpoint names its task (train.run_meta); older ones are told by their shapes.
    assert "checkpoint of a babel60 run" in message
    assert f"{tmp_path / 'mixed' / 'config.json'} is a densegait run's config" in message
    # The same task with other classes: refused, naming the first column that differs.
    config = json.load(open(babel_run / "config.json"))
    classes = list(prepared.read_split(str(babel_run), "val").classes)
    assert classes[:2] == ["walk", "turn"] and "stand" not in classes
    config["data"]["classes"] = [c for c in classes if c != "turn"] + ["stand"]
    with open(tmp_path / "mixed" / "config.json", "w") as f:
        json.dump(config, f)
    with pytest.raises(InputError, match="first differing in column 1: 'turn' in the checkpoint, "
                       "'stand' in the config"):  # fmt: skip
        wat_jax.load(str(tmp_path / "mixed"))


def test_load_takes_a_step_given_as_a_string(babel_run):
    """Before, step="12" said "no checkpoint at step 12; have [6, 12]"."""
    step = max(cli.checkpoint_steps(babel_run))
    assert wat_jax.load(str(babel_run), step=str(step)).step == step
    for bad in ("latest", 1.5, -1, True):
        with pytest.raises(InputError, match=r"step: must be a checkpoint step \(a whole number"):
            wat_jax.load(str(babel_run), step=bad)


def test_classify_refuses_top_k_below_one(babel_run):
    """Before, top_k=0 gave one class per window; the CLIs refuse --top_k=0."""
    run = wat_jax.load(str(babel_run))
    motion = np.asarray(prepared.read_split(str(babel_run), "val").motion[:2])
    for bad in (0, -2, 2.5):
        with pytest.raises(
            InputError, match=rf"top_k: must be a whole number, at least 1, got {bad}"
        ):
            run.classify(motion, top_k=bad)
    assert [len(t) for t in run.classify(motion, top_k=100)] == [len(run.classes)] * 2


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def _top1(run, split) -> float:
    """The eval stage's top-1 through run.classify: a window is right when its first
    class is in its label set."""
    top = run.classify(np.asarray(split.motion), np.asarray(split.mask), top_k=1)
    labels = np.asarray(split.labels) > run.config.data.threshold
    return float(np.mean([labels[i, run.classes.index(t[0][0])] for i, t in enumerate(top)]))


def test_a_saved_folder_loads_back_with_evals_top1(babel_run, tmp_path):
    """run.save(DIR) writes config.json, model.safetensors and a README.md model card, and
    wat_jax.load(DIR) scores as the checkpoint did (issue 26, item 6)."""
    yaml = pytest.importorskip("yaml")
    from wat_jax import model_card

    run = wat_jax.load(str(babel_run))
    folder = run.save(str(tmp_path / "saved"))
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]
    again = wat_jax.load(folder)
    assert (again.step, again.classes, again.phrases) == (run.step, run.classes, run.phrases)
    val = prepared.read_split(str(babel_run), "val")
    evaluated = _read_json(babel_run / "eval" / f"step_{run.step}.json")
    assert _top1(again, val) == pytest.approx(evaluated["top1"], abs=1e-9)
    motion, mask = np.asarray(val.motion[:16]), np.asarray(val.mask[:16])
    np.testing.assert_array_equal(again.class_scores(motion, mask), run.class_scores(motion, mask))

    with open(os.path.join(folder, "README.md")) as f:
        text = f.read()
    front = yaml.safe_load(model_card.front_matter(text))
    assert front["task"] == "babel60" and front["library_name"] == "wat-jax"
    assert front["data"]["synthetic"] is True and front["license"] == "apache-2.0"
    assert front["describe"]["backend"] == "template"
    assert front["text_encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert front["parameters"]["motion_tower"] > 0 and front["step"] == run.step
    assert front["eval"]["metrics"]["top1"] == pytest.approx(evaluated["top1"], abs=1e-4)
    assert front["eval"]["random"]["top1"] == pytest.approx(evaluated["random"]["top1"], abs=1e-4)
    assert "## Intended use and limits" in text and "synthetic data" in text

    # Saved again from the folder (no eval/ beside it), the card keeps the headline.
    resaved = again.save(str(tmp_path / "resaved"))
    with open(os.path.join(resaved, "README.md")) as f:
        assert yaml.safe_load(model_card.front_matter(f.read()))["eval"] == front["eval"]


def test_saving_never_overwrites_a_workdir_and_a_folder_is_one_model(babel_run, tmp_path):
    run = wat_jax.load(str(babel_run))
    before = (babel_run / "config.json").read_bytes()
    with pytest.raises(InputError, match="holds other files .*a run's workdir is never"):
        run.save(str(babel_run))
    assert (babel_run / "config.json").read_bytes() == before
    folder = run.save(str(tmp_path / "saved"))
    with pytest.raises(InputError, match=f"holds the model of step {run.step}, not 99"):
        wat_jax.load(folder, step=99)
    # Weights beside another model's config.json: one line naming the tensor.
    config = _read_json(os.path.join(folder, "config.json"))
    config["model"]["width"] *= 2
    config["model"]["mlp_dim"] *= 2
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    with pytest.raises(InputError, match=r"model.safetensors: tensor '.*' has shape"):
        wat_jax.load(folder)
