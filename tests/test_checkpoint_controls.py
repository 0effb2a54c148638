"""Checkpoint controls and faults: resume_from, init_from (another optimizer),
keep_period, a damaged newest checkpoint, a full disk, and a stop agreed by two processes
(SIGINT and SIGTERM on one process: tests/test_train_cli.py)."""

import os
import shutil
import signal
import time

import jax
import numpy as np
import pytest

from tests import cli
from tests.damage import damage_checkpoint
from wat_jax import checkpointing

_steps = cli.checkpoint_steps
_last_line = cli.last_line


def _run(workdir, mode="train", *overrides, check=True):
    return cli.run_main(workdir, mode, *overrides, check=check, devices=2)


def _state(workdir, step=None):
    return checkpointing.read_state_numpy(str(workdir), step)[1]


def _same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Toy smoke trained 20 steps uninterrupted, checkpoints at 10 and 20."""
    workdir = tmp_path_factory.mktemp("straight")
    _run(workdir, "train")
    return workdir


def test_resume_from_continues_another_run_exactly(straight, tmp_path):
    first = tmp_path / "first"
    _run(first, "train", "--config.total_steps=10")
    moved = tmp_path / "moved"
    _run(moved, "train", f"--config.resume_from={first}:10")
    assert _steps(moved) == [20]
    _same(_state(straight, 20), _state(moved, 20))
    # The source run is only read.
    assert _steps(first) == [10]


def test_init_from_takes_params_only_with_another_optimizer(straight, tmp_path):
    warm = tmp_path / "warm"
    # lr 0 for one step: the params stay those of the source checkpoint.
    _run(
        warm,
        "train",
        f"--config.init_from={straight}/checkpoints/10",
        "--config.total_steps=1",
        "--config.optim.lr=0.0",
        "--config.optim.schedule=cosine",
        "--config.optim.b1=0.5",
    )
    src, dst = _state(straight, 10), _state(warm, 1)
    _same(src["params"], dst["params"])
    assert int(dst["step"]) == 1 and int(dst["position"]) == 16  # fresh schedule and data
    # Mismatched shapes are named.
    proc = _run(
        tmp_path / "wide",
        "train",
        f"--config.init_from={straight}",
        "--config.model.width=48",
        check=False,
    )
    assert proc.returncode == 2
    assert _last_line(proc).startswith("error: config.init_from:")
    assert "different model shape" in _last_line(proc)


def test_keep_period_keeps_milestones(tmp_path):
    proc = _run(
        tmp_path,
        "train",
        "--config.total_steps=12",
        "--config.checkpoint_every_steps=1",
        "--config.keep_checkpoints=2",
        "--config.keep_period=5",
    )
    assert _steps(tmp_path) == [5, 10, 11, 12]
    # The start-up header says how the stage ran.
    assert "config experiments/toy.py:smoke (task toy); overrides: " in proc.stderr
    assert "keep_period=5" in proc.stderr and "total_steps=12" in proc.stderr
    assert "backend cpu, 2 x cpu (2 local), process 0 of 1; stage train" in proc.stderr
    assert "train: motion tower 19,872 parameters, windows [16, 5, 3]" in proc.stderr


def test_damaged_newest_checkpoint_falls_back_for_eval_and_resume(straight, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(straight, work)
    damage_checkpoint(work, 20)
    # An explicit damaged step: one line.
    proc = _run(work, "eval", "--config.eval.step=20", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert _last_line(proc).startswith(f"error: {work}/checkpoints/20: checkpoint is damaged")
    # The latest: falls back to 10 with a warning, read-only (nothing moved).
    proc = _run(work, "eval")
    assert "does not restore" in proc.stderr
    assert os.path.exists(work / "eval" / "step_10.json")
    assert _steps(work) == [10, 20]
    # Resume: sets 20 aside (kept), continues from 10, ends equal to the straight run.
    proc = _run(work, "train")
    assert _steps(work) == [10, 20]
    aside = os.listdir(work / checkpointing.DAMAGED_DIR)
    assert len(aside) == 1 and aside[0].startswith("20-")
    _same(_state(straight, 20), _state(work, 20))


def _launch(workdir, steps, port):
    return cli.launch_processes(workdir, "train", *steps, num_processes=2, devices=1, port=port)


def _finish(procs):
    return [err for _, err in cli.finish(procs, timeout=240)]


def test_two_processes_agree_on_the_stop_step_and_resume_exactly(tmp_path):
    # Checkpoints only when asked to stop (or at the end); the stop flag is
    # all-reduced every log step (here every step).
    steps = [
        "--config.total_steps=20",
        "--config.checkpoint_every_steps=0",
        "--config.log_every_steps=1",
    ]
    reference, multi = tmp_path / "reference", tmp_path / "multi"
    # The uninterrupted reference runs beside the stopped run: a launch spends most of its
    # time with process 0 waiting while process 1 compiles (jax's compilation cache is
    # written by process 0 only), so two launches side by side take little more than one.
    ports = cli.free_ports(2)
    reference_procs = _launch(reference, steps, ports[0])
    procs = _launch(multi, steps, ports[1])
    deadline = time.time() + 240
    metrics = multi / "metrics.jsonl"
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    procs[1].send_signal(signal.SIGTERM)  # only one process is told
    errors = _finish(procs)
    _finish(reference_procs)
    saved = _steps(multi)
    assert len(saved) == 1 and saved[0] < 20, saved
    assert "saving a checkpoint and stopping" in errors[1]
    for err in errors:
        assert f"stopped at step {saved[0]}" in err

    _finish(_launch(multi, steps, None))
    assert _steps(multi)[-1] == 20
    _same(_state(reference, 20), _state(multi, 20))


@pytest.fixture
def small_disk(tmpfs):
    """A 2 MB tmpfs (tests/conftest.py)."""
    return tmpfs("2m")


def test_disk_full_during_a_save_is_one_line_and_loses_nothing(small_disk):
    work = small_disk / "run"
    _run(work, "train", "--config.total_steps=10")
    before = {
        os.path.join(b, n): open(os.path.join(b, n), "rb").read()
        for b, _, names in os.walk(work / "checkpoints" / "10")
        for n in names
    }
    # Leave ~100 KB: the metrics lines fit, the next checkpoint (~400 KB) does not.
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler = small_disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - 100_000, 0))
    proc = _run(work, "train", "--config.total_steps=20", check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    line = _last_line(proc)
    assert line.startswith(f"error: {work}/checkpoints/20: could not save") and "space" in line
    assert _steps(work) == [10]
    for path, data in before.items():
        assert open(path, "rb").read() == data
    # With room again the next run removes the partial save and finishes.
    filler.unlink()
    _run(work, "train", "--config.total_steps=20")
    assert _steps(work) == [10, 20]
    assert not [d for d in os.listdir(work / "checkpoints") if "tmp" in d]
