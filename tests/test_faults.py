"""Faults a user meets, one row each: the command, exit code 2, one `error:` line with
a phrase of the expected message, and the files that must be unchanged afterwards.

To add a row: append a Fault to FAULTS. `workdir` picks the starting workdir (a copy of
a session-wide one: "toy_trained", "babel_prepared", or "fresh"); `setup(w)` damages it
and returns nothing; `args(w)` gives the command line after `python -m`; `unchanged`
lists paths relative to the workdir whose bytes (files) or listings (folders) must not
change; `absent` lists paths that must not exist afterwards.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import socket
from typing import Callable

import numpy as np
import pytest

from tests import cli
from tests.damage import damage_checkpoint

TOY = cli.TOY
BABEL = cli.BABEL


def _main(config, mode, *overrides):
    return lambda w: (
        ["wat_jax.main", f"--config={config}", f"--workdir={w}", f"--mode={mode}"]
        + [o.replace("{w}", str(w)) for o in overrides]
    )


def _run(args):
    return cli.run(args, devices=1)


@dataclasses.dataclass
class Fault:
    name: str
    workdir: str  # "toy_trained" | "babel_prepared" | "fresh"
    args: Callable
    phrase: str
    setup: Callable = lambda w: None
    unchanged: tuple = ()
    absent: tuple = ()
    code: int = 2


def _lock(w, host=None, pid=None):
    from wat_jax import lock

    holder = dataclasses.replace(
        lock._me("train"), host=host or socket.gethostname(), pid=pid or os.getpid()
    )
    (w / lock.LOCK_FILE).write_text(json.dumps(dataclasses.asdict(holder)))


def _edit_npy(w, split, name, fn):
    path = w / "data" / split / name
    array = np.load(path)
    np.save(path, fn(array))


def _nan_window(array, row=3):
    array = array.copy()
    array[row, 5, 2, 1] = np.nan
    return array


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


RUN_FILES = ("config.json", "checkpoints", "metrics.jsonl")
DATA_FILES = ("data/train/motion.npy", "data/val/motion.npy", "text_bank.npz")

FAULTS = [
    Fault(
        "second writer while a training holds the lock",
        "toy_trained",
        _main(TOY, "train", "--config.total_steps=30"),
        f"the workdir is in use by train on host {socket.gethostname()}, pid {os.getpid()}",
        setup=_lock,
        unchanged=RUN_FILES + (".workdir.lock",),
    ),
    Fault(
        "lock held on another host",
        "toy_trained",
        _main(TOY, "train", "--config.total_steps=30"),
        "on host other-node, pid 1234, since",
        setup=lambda w: _lock(w, host="other-node", pid=1234),
        unchanged=RUN_FILES + (".workdir.lock",),
    ),
    Fault(
        "train whose config changes a model key",
        "toy_trained",
        _main(TOY, "train", "--config.model.width=64"),
        "refused: the config differs from this run's in keys that change the model or data: "
        "model.width 32 -> 64",
        unchanged=RUN_FILES,
        absent=(".workdir.lock",),
    ),
    Fault(
        "eval of a missing step",
        "toy_trained",
        _main(TOY, "eval", "--config.eval.step=99"),
        "checkpoints: no checkpoint at step 99; have [10, 20]",
        unchanged=RUN_FILES,
        absent=("eval",),
    ),
    Fault(
        "eval of a damaged checkpoint named by eval.step",
        "toy_trained",
        _main(TOY, "eval", "--config.eval.step=20"),
        "checkpoints/20: checkpoint is damaged",
        setup=lambda w: damage_checkpoint(w, 20),
        unchanged=RUN_FILES,
        absent=("eval",),
    ),
    Fault(
        "init_from a run of another model shape",
        "toy_trained",
        lambda w: _main(TOY, "train", f"--config.init_from={w}", "--config.model.width=48")(
            w / "new"
        ),
        "config.init_from: ",
        unchanged=RUN_FILES,
        absent=("new/checkpoints/1", "new/config.json"),
    ),
    Fault(
        "resume_from a folder without checkpoints",
        "fresh",
        lambda w: _main(TOY, "train", f"--config.resume_from={w / 'empty'}")(w / "run"),
        "config.resume_from: ",
        setup=lambda w: (w / "empty").mkdir(),
        absent=("run/checkpoints", "run/config.json"),
    ),
    Fault(
        "negative batch size",
        "fresh",
        _main(BABEL, "all", "--config.batch_size=-16"),
        "config.batch_size=-16: must be a positive number of windows per step",
        absent=("data", "config.json", "descriptions.jsonl"),
    ),
    Fault(
        "zero batch size",
        "fresh",
        _main(BABEL, "all", "--config.batch_size=0"),
        "config.batch_size=0: must be a positive number",
        absent=("data", "config.json"),
    ),
    Fault(
        "unknown nested config key",
        "fresh",
        _main(BABEL, "all", "--config.model.widht=8"),
        "--config.model.widht: unknown config key 'widht'; did you mean \"width\"",
        absent=("config.json",),
    ),
    Fault(
        "workdir path is a file",
        "fresh",
        lambda w: _main(TOY, "prepare")(w / "file"),
        "file: workdir is a file, not a directory",
        setup=lambda w: (w / "file").write_text("x"),
        unchanged=("file",),
    ),
    Fault(
        "prepared motion of the wrong shape",
        "babel_prepared",
        _main(BABEL, "train"),
        "but the config expects [N, 60, 25, 6]",
        setup=lambda w: _edit_npy(w, "train", "motion.npy", lambda a: a[..., :3].copy()),
        absent=("config.json", "checkpoints"),
    ),
    Fault(
        "NaN in train motion",
        "babel_prepared",
        _main(BABEL, "train"),
        "data/train/motion.npy: window 3 (source",
        setup=lambda w: _edit_npy(w, "train", "motion.npy", _nan_window),
        absent=("config.json", "checkpoints", "metrics.jsonl"),
    ),
    Fault(
        "NaN in val motion at eval",
        "babel_prepared",
        _main(BABEL, "eval"),
        "data/val/motion.npy: window 3 (source",
        setup=lambda w: _edit_npy(w, "val", "motion.npy", _nan_window),
        absent=("eval", "config.json"),
    ),
    Fault(
        "labels wider than classes.json",
        "babel_prepared",
        _main(BABEL, "train"),
        "data/train/labels.npy: shape",
        setup=lambda w: _edit_npy(w, "train", "labels.npy", lambda a: np.pad(a, ((0, 0), (0, 1)))),
        absent=("config.json", "checkpoints"),
    ),
    Fault(
        "corrupt text bank",
        "babel_prepared",
        _main(BABEL, "train"),
        "text_bank.npz: unreadable text bank",
        setup=lambda w: _write(w / "text_bank.npz", b"PK\x03\x04 not really a zip file"),
        unchanged=("text_bank.npz",),
        absent=("checkpoints",),
    ),
    Fault(
        "search queries file that is not UTF-8",
        "toy_trained",
        lambda w: ["wat_jax.tools.search", f"--workdir={w}", f"--queries={w / 'q.txt'}"],
        "q.txt:2: not valid UTF-8 (byte 0xe9 at column 3)",
        setup=lambda w: _write(w / "q.txt", b"a person walking\nca\xe9 latte\n"),
        unchanged=RUN_FILES,
        absent=("index",),
    ),
    Fault(
        "embed_text output where nothing can be written",
        "fresh",
        lambda w: [
            "wat_jax.embed_text",
            f"--input={w / 's.txt'}",
            "--output=/proc/wat_jax_out/vectors.npy",
        ],
        "/proc/wat_jax_out/vectors.npy: cannot write the output there",
        setup=lambda w: _write(w / "s.txt", b"a person walks\n"),
    ),
]


def _snapshot(path):
    if os.path.isdir(path):
        return sorted(os.listdir(path))
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="session")
def base_workdirs(tmp_path_factory):
    """Built once per session and copied per row."""
    root = tmp_path_factory.mktemp("fault_bases")
    toy = root / "toy_trained"
    proc = _run(_main(TOY, "train")(toy))
    assert proc.returncode == 0, proc.stderr[-3000:]
    babel = root / "babel_prepared"
    for mode in ("prepare", "describe", "embed"):
        proc = _run(_main(BABEL, mode)(babel))
        assert proc.returncode == 0, proc.stderr[-3000:]
    return {"toy_trained": toy, "babel_prepared": babel}


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_is_one_clear_line_and_loses_nothing(fault, base_workdirs, tmp_path):
    w = tmp_path / "w"
    if fault.workdir == "fresh":
        w.mkdir()
    else:
        shutil.copytree(base_workdirs[fault.workdir], w)
    fault.setup(w)
    before = {p: _snapshot(w / p) for p in fault.unchanged if (w / p).exists()}
    assert set(before) == set(fault.unchanged), "a path in `unchanged` does not exist"
    proc = _run(fault.args(w))
    assert proc.returncode == fault.code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and fault.phrase in last, last
    assert {p: _snapshot(w / p) for p in fault.unchanged} == before
    for p in fault.absent:
        assert not (w / p).exists(), p


def test_late_closed_loop_callbacks_print_nothing_under_a_cli(monkeypatch, capsys):
    # A damaged checkpoint's abandoned reads finish after orbax closed its loop; their
    # "Event loop is closed" reached stderr as tracebacks beside the one error line.
    import sys

    from wat_jax import errors

    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # restored after the test

    class LateCallback:
        def __init__(self, error):
            self.error = error

        def __del__(self):
            raise self.error

    @errors.exits_on_input_error
    def main(argv):
        LateCallback(RuntimeError("Event loop is closed"))
        LateCallback(ValueError("a real bug"))

    main([])
    err = capsys.readouterr().err
    assert "Event loop is closed" not in err
    assert "a real bug" in err  # anything else keeps Python's report
