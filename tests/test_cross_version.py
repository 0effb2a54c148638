"""Checkpoints cross jax versions: a run trained on each pinned set (jax 0.10.2 on Python
3.11, jax 0.12.1 on 3.12+; tests/fixtures/runs/, made by make_cross_version_runs.py)
loads and resumes on the jax running these tests. CI runs this file on both sets, so
each direction is tested: 0.10.2 -> 0.12 in the whole suite, 0.12 -> 0.10.2 in the
fallback's subset."""

import json
import os
import shutil

import numpy as np
import pytest

import wat_jax
from tests import cli
from tests.fixtures import make_cross_version_runs

RUNS = os.path.join(cli.ROOT, "tests", "fixtures", "runs")
VERSIONS = sorted(os.listdir(RUNS))


def test_both_pinned_sets_have_a_fixture():
    assert VERSIONS == ["jax-0.10.2", "jax-0.12.1"]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_run_from_another_jax_loads_with_its_numbers(version):
    """The restored params give the embeddings and class scores the training version gave
    for the same input (float32 rounding across XLA versions only)."""
    fixture = os.path.join(RUNS, version)
    probe = np.load(os.path.join(fixture, "probe.npz"))
    run = wat_jax.load(fixture)
    motion = make_cross_version_runs.probe_input(run.dims)
    np.testing.assert_array_equal(motion, probe["motion"])
    np.testing.assert_allclose(run.embed_motion(motion), probe["embeddings"], atol=2e-5)
    np.testing.assert_allclose(run.class_scores(motion), probe["class_scores"], atol=2e-5)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_run_from_another_jax_resumes_and_evaluates(version, tmp_path):
    """--mode=train continues from the other version's last checkpoint (its step, its
    optimizer state) to new steps, and eval scores the old checkpoint as that version did."""
    workdir = tmp_path / "run"
    shutil.copytree(os.path.join(RUNS, version), workdir)
    with open(workdir / "eval" / "step_20.json") as f:
        before = json.load(f)
    os.remove(workdir / "eval" / "step_20.json")
    cli.run_main(workdir, "eval")
    with open(workdir / "eval" / "step_20.json") as f:
        again = json.load(f)
    for key in ("top1", "top3"):  # 64 windows: a flipped argmax moves these by 1/64
        assert abs(again[key] - before[key]) <= 1 / 64 + 1e-9, (key, before, again)

    proc = cli.run_main(workdir, "train", "--config.total_steps=30")
    assert "resum" in proc.stderr.lower() or "restor" in proc.stderr.lower(), proc.stderr[-2000:]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["20", "30"]
    logged = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    new = [r for r in logged if r["step"] > 20 and "train/loss" in r]
    assert [r["step"] for r in new] == [25, 30]
    assert all(np.isfinite(r["train/loss"]) for r in new)
    assert wat_jax.load(str(workdir)).step == 30
