"""Evaluation across processes: two processes score the same checkpoint exactly
as one does; and the launch scripts parse and start a smoke run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import cli

ROOT = cli.ROOT
# 24 rows per eval batch: the 64 val windows end in a padded batch.
EVAL = ["--config.eval.batch_size=24"]


def _numbers(tree, prefix=""):
    """Flattens an eval JSON to {dotted key: number}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix + key] = float(value)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A toy workdir trained once, through launch/single_host.sh on CPU."""
    workdir = tmp_path_factory.mktemp("trained")
    env = cli.env(8, WAT_JAX_SKIP_SETUP="1", WAT_JAX_PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", "launch/single_host.sh", cli.TOY, str(workdir), "train"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def test_launch_scripts_parse():
    for name in ("single_host.sh", "slurm.sh", "tpu_vm.sh", "bench.sh"):
        proc = subprocess.run(
            ["bash", "-n", os.path.join(ROOT, "launch", name)], capture_output=True, text=True
        )
        assert proc.returncode == 0, f"{name}: {proc.stderr}"


def test_single_host_launcher_trained_a_checkpoint(trained):
    assert sorted(os.listdir(trained / "checkpoints")) == ["10", "20"]
    with open(trained / "metrics.jsonl") as f:
        assert json.loads(f.readlines()[-1])["step"] == 20


def test_two_process_eval_equals_one_process(trained):
    cli.run_main(trained, "eval", *EVAL)
    path = trained / "eval" / "step_20.json"
    with open(path) as f:
        one = json.load(f)
    os.unlink(path)

    procs = cli.launch_processes(
        trained, "eval", *EVAL, num_processes=2, devices=4, stdout=subprocess.PIPE
    )
    outputs = cli.finish(procs)
    with open(path) as f:
        two = json.load(f)

    a, b = _numbers(one), _numbers(two)
    assert a.keys() == b.keys() and "top1" in a and "random.top1" in a
    np.testing.assert_allclose([b[k] for k in a], [a[k] for k in a], rtol=0, atol=1e-6)
    # Only process 0 prints the results table.
    assert "top1" in outputs[0][0] and "top1" not in outputs[1][0]
