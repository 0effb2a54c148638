"""The entry point end to end: outputs, exact resume after kill -9, SIGTERM,
two processes, and one-line errors for bad input."""

import json
import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from tests import cli
from wat_jax import checkpointing

_cmd = cli.main_cmd
_env = cli.env


def _run(workdir, mode="train", *overrides, check=True, devices=8):
    return cli.run_main(workdir, mode, *overrides, check=check, devices=devices)


def _params(workdir, step=None):
    return checkpointing.read_state_numpy(str(workdir), step)[1]["params"]


def _assert_same_params(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def _metrics(workdir):
    """Step -> its logged keys: lines of one step merge (train and eval lines), and a
    resume may log a step twice, the later value winning."""
    rows = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            rows.setdefault(row["step"], {}).update(row)
    return rows


def test_train_then_eval_writes_the_contract_files(tmp_path):
    _run(tmp_path, "all")
    assert json.load(open(tmp_path / "config.json"))["task"] == "toy"
    rows = _metrics(tmp_path)
    assert sorted(rows) == [5, 10, 15, 20]
    assert {"train/loss", "train/steps_per_sec", "train/skipped_steps"} <= set(rows[20])
    assert rows[20]["train/loss"] < rows[5]["train/loss"]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "20"]
    result = json.load(open(tmp_path / "eval" / "step_20.json"))
    assert result["step"] == 20 and result["top1"] > result["random"]["top1"]
    assert rows[20]["eval/top1"] == result["top1"] and "eval/num_windows" not in rows[20]


def test_periodic_evaluation_during_training(tmp_path):
    _run(tmp_path, "train", "--config.eval.every_steps=5")
    rows = _metrics(tmp_path)
    # Steps 5, 10 and 15 are scored in the loop; 20, the last, is the eval stage's.
    written = {f for f in os.listdir(tmp_path / "eval") if f.endswith(".json")}
    assert written == {"step_5.json", "step_10.json", "step_15.json"}
    for step in (5, 10, 15):
        result = json.load(open(tmp_path / "eval" / f"step_{step}.json"))
        assert result["step"] == step
        assert rows[step]["eval/top1"] == result["top1"] and "train/loss" in rows[step]
    # The same scalars reach TensorBoard.
    (events,) = os.listdir(tmp_path / "tensorboard")
    assert events.startswith("events.out.tfevents.")


def test_resume_after_kill_minus_9_is_exact(tmp_path):
    steps = [
        "--config.total_steps=40",
        "--config.checkpoint_every_steps=1",
        "--config.keep_checkpoints=100",
        "--config.log_every_steps=1",
    ]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # The uninterrupted run saves only at its end (saving never changes the training) and
    # runs beside the killed one.
    straight_proc = cli.start_main(
        straight,
        "train",
        "--config.total_steps=40",
        "--config.checkpoint_every_steps=0",
        "--config.log_every_steps=1",
    )

    proc = subprocess.Popen(
        _cmd(killed, "train", *steps),
        cwd=cli.ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt_dir = killed / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline:
        done = [d for d in os.listdir(ckpt_dir) if d.isdigit()] if ckpt_dir.exists() else []
        if done and max(map(int, done)) >= 12:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # it was killed, not finished
    killed_at = max(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
    assert 12 <= killed_at < 40

    _run(killed, "train", *steps)
    cli.finish([straight_proc])
    _assert_same_params(_params(straight, 40), _params(killed, 40))
    # The resume is marked where it happened (TensorBoard restarts there too).
    with open(killed / "metrics.jsonl") as f:
        marks = [json.loads(line) for line in f if '"resumed"' in line]
    assert marks == [{"resumed": True, "step": killed_at}]
    a, b = _metrics(straight), _metrics(killed)
    assert [a[s]["train/loss"] for s in range(1, 41)] == [b[s]["train/loss"] for s in range(1, 41)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_saves_and_exits_zero(tmp_path, signum):
    steps = [
        "--config.total_steps=100000",
        "--config.checkpoint_every_steps=0",
        "--config.log_every_steps=1000000",
    ]
    proc = subprocess.Popen(
        _cmd(tmp_path, "train", *steps),
        cwd=cli.ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and "stage train" not in proc.stderr.readline():
        pass
    time.sleep(3.0)  # into the loop, past compilation
    proc.send_signal(signum)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err[-2000:]
    assert f"{signal.Signals(signum).name} received" in err and "KeyboardInterrupt" not in err
    saved = [int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
    assert len(saved) == 1 and 0 < saved[0] < 100000


def test_two_processes_match_one_process(tmp_path):
    steps = [
        "--config.total_steps=6",
        "--config.log_every_steps=1",
        "--config.checkpoint_every_steps=0",
        "--config.model.dropout=0.0",
        "--config.loss.name=infonce",
        "--config.text.targets=('description',)",
        "--config.optim.eps=1e-3",
    ]
    single, multi = tmp_path / "single", tmp_path / "multi"
    # Side by side: process 1 of the pair compiles without jax's compilation cache (only
    # process 0 uses it), with a core to itself.
    procs = [cli.start_main(single, "train", *steps)]
    procs += cli.launch_processes(multi, "train", *steps, num_processes=2, devices=4)
    cli.finish(procs)
    a, b = _metrics(single), _metrics(multi)
    np.testing.assert_allclose(
        [a[s]["train/loss"] for s in range(1, 7)],
        [b[s]["train/loss"] for s in range(1, 7)],
        rtol=1e-5,
    )
    for x, y in zip(jax.tree.leaves(_params(single, 6)), jax.tree.leaves(_params(multi, 6))):
        np.testing.assert_allclose(x, y, atol=1e-5)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["--config.batch_size=12"], "config.batch_size=12 is not divisible by the 8 devices"),
        (["--config.modle.width=8"], "modle"),
        (["--config.loss.mining=nearest"], "config.loss.mining='nearest': must be one of"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, overrides, message):
    proc = _run(tmp_path, "train", *overrides, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_mining_without_a_triplet_is_said(caplog):
    from absl import logging as absl_logging

    from experiments import toy
    from wat_jax import cli as wat_cli

    config = toy.get_config("smoke")
    config.loss.mining = "reference"
    absl_logging.get_absl_logger().propagate = True
    with caplog.at_level("WARNING"):
        wat_cli.check_values(config, ("train",))
    assert "shapes loss.name='triplet' only" in caplog.text
    caplog.clear()
    config.loss.name = "triplet"
    with caplog.at_level("WARNING"):
        wat_cli.check_values(config, ("train",))
    assert "shapes" not in caplog.text


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("model.width", -3, "config.model.width=-3: must be a positive"),
        ("model.heads", 3, "config.model.heads=3: must divide config.model.width=32"),
        ("model.layers", 0, "config.model.layers=0: must be a positive"),
        ("model.mlp_dim", 0, "config.model.mlp_dim=0: must be a positive"),
        ("model.max_len", 40, "config.model.max_len=40: shorter than the 60-frame windows"),
        ("model.embed_dim", -1, "config.model.embed_dim=-1: must be 0"),
        ("model.dropout", 1.0, r"config.model.dropout=1.0: must be in \[0, 1\)"),
        ("model.dropout", -0.1, r"config.model.dropout=-0.1: must be in \[0, 1\)"),
        ("model.norm_eps", 0.0, "config.model.norm_eps=0.0: must be a positive"),
        ("model.positions", "rope", "config.model.positions='rope': must be one of"),
        ("model.pooling", "max", "config.model.pooling='max': must be one of"),
        ("model.text_projection", "mlp", "config.model.text_projection='mlp': must be one of"),
        ("model.dtype", "float16", "config.model.dtype='float16': must be one of"),
        ("optim.decay", "none", "config.optim.decay='none': must be one of"),
        ("optim.grad_clip", -1.0, "config.optim.grad_clip=-1.0: must be 0"),
        ("seed", -1, "config.seed=-1: must be 0 or more"),
    ],
)
def test_every_model_value_is_checked_before_any_stage(key, value, message):
    """One place refuses a bad value before prepare, whichever stage is asked for."""
    from experiments import babel60
    from wat_jax import cli as wat_cli
    from wat_jax.errors import InputError

    config = babel60.get_config("smoke")
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
        node = node[name]
    node[leaf] = value
    with pytest.raises(InputError, match=message):
        wat_cli.check_values(config, ("prepare",))


def test_every_experiment_variant_passes_the_value_checks():
    from experiments import babel60, densegait, toy
    from wat_jax import cli as wat_cli

    for module, variants in ((babel60, ("smoke", "demo", "paper")),
                             (densegait, ("smoke", "demo", "paper")), (toy, ("smoke", "demo"))):  # fmt: skip
        for variant in variants:
            wat_cli.check_values(module.get_config(variant), ("prepare", "train", "eval"))


@pytest.mark.parametrize(
    "override,message",
    [
        ("--config.model.heads=3", "config.model.heads=3: must divide config.model.width=32"),
        ("--config.seed=-1", "config.seed=-1: must be 0 or more"),
    ],
)
def test_bad_model_or_seed_fails_before_prepare(tmp_path, override, message):
    """Before, --mode=all prepared, described and embedded (hours on real data) and then
    flax (or numpy, for the seed) failed with a traceback."""
    proc = cli.run_main(tmp_path / "w", "all", override, config=cli.BABEL, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert cli.last_line(proc).startswith(f"error: {message}")
    assert not os.path.exists(tmp_path / "w" / "data") and not os.path.exists(
        tmp_path / "w" / "raw"
    )


def test_unwritable_workdir_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = _run(blocker / "run", "train", check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "workdir is not writable" in last


def test_config_json_belongs_to_the_run(tmp_path):
    _run(tmp_path, "train", "--config.total_steps=2")
    config = (tmp_path / "config.json").read_bytes()
    history = [json.loads(x) for x in open(tmp_path / "config_history.jsonl")]
    assert len(history) == 1 and history[0]["created"] and history[0]["mode"] == "train"
    # A model key that differs: refused before anything is written, naming the key.
    proc = _run(tmp_path, "train", "--config.total_steps=4", "--config.model.width=48", check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "model.width 32 -> 48" in last
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]  # nothing lost
    assert (tmp_path / "config.json").read_bytes() == config
    # Eval with that config evaluates the run's model and leaves config.json alone.
    proc = _run(tmp_path, "eval", "--config.model.width=48")
    assert "using this run's config.json for keys that change the model" in proc.stderr
    assert (tmp_path / "config.json").read_bytes() == config
    assert (tmp_path / "eval" / "step_2.json").exists()
    # A run-control key may change on resume; the change is recorded.
    _run(tmp_path, "train", "--config.total_steps=4")
    assert json.load(open(tmp_path / "config.json"))["total_steps"] == 4
    history = [json.loads(x) for x in open(tmp_path / "config_history.jsonl")]
    assert history[-1]["changed"] == {"total_steps": [2, 4]}
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]
