"""Faults a user meets, one row each: the command, exit code 2, one `error:` line with
a phrase of the expected message, and the files that must be unchanged afterwards.

To add a row: append a Fault to FAULTS. `workdir` picks the starting workdir (a copy of
a session-wide one: "toy_trained", "babel_prepared", or "fresh"); `setup(w)` damages it
and returns nothing; `args(w)` gives the command line after `python -m`; `unchanged`
lists paths relative to the workdir whose bytes (files) or listings (folders) must not
change; `absent` lists paths that must not exist afterwards.
"""

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
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


# ---- full disks and Ctrl-C: one line from every writer and every CLI -------------------
#
# A disk that fills at one given file cannot be arranged on a real file system, so the
# CLI runs under a prelude that makes os.fsync fail with ENOSPC for the files whose path
# holds a given part: every wat_jax writer syncs before it renames or returns
# (fileio.atomic_write, the workdir lock, describe's appends), which is where a filling disk
# shows on network file systems. A write() refused outright is the in-process tests' part,
# and a really full tmpfs (where root may mount one) the last test's.

_FULL_DISK = """
import errno, os, runpy, sys
_fsync, _part = os.fsync, os.environ["WAT_JAX_TEST_FULL_AT"]
def fsync(fd):
    if _part in os.readlink(f"/proc/self/fd/{fd}"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return _fsync(fd)
os.fsync = fsync
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""

# The model's motion tower says so on stderr and sleeps, so a SIGINT lands mid-work.
_SLOW_EMBED = """
import runpy, sys, time
def motion(self, motion, mask):
    print("embedding the val windows", file=sys.stderr, flush=True)
    time.sleep(120)
from wat_jax import towers
towers.Towers.motion = motion
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _python_c(prelude, args, **env):
    return [sys.executable, "-c", prelude, *args], dict(cli.env(1), **env)


def _files(w):
    return sorted(
        os.path.relpath(os.path.join(base, n), w) for base, _, names in os.walk(w) for n in names
    )


@pytest.mark.parametrize(
    "workdir, mode, full_at, phrase, unchanged, absent",
    [
        (
            "fresh",
            "prepare",
            ".workdir.lock",
            (
                ".workdir.lock: could not write it: the disk is full (no space left on device); "
                "nothing in the workdir was changed; free some space there and run again"
            ),
            (),
            (".workdir.lock", "data"),
        ),
        (
            "toy_trained",
            "eval",
            "step_20.json",
            (
                "eval/step_20.json: could not write it: the disk is full (no space left on "
                "device); no step_20.json was written; the checkpoints and the earlier "
                "evaluations are unchanged; free some space there and run again"
            ),
            RUN_FILES,
            ("eval/step_20.json",),
        ),
        (
            "babel_prepared",
            "embed",
            "text_bank.npz",
            (
                "text_bank.npz: could not write it: the disk is full (no space left on device); "
                "the old text_bank.npz is unchanged; free some space"
            ),
            ("text_bank.npz", "descriptions.jsonl", "data/val/motion.npy"),
            (".workdir.lock",),
        ),
        (
            "babel_prepared",
            "prepare",
            "report.json",
            (
                "could not write it: the disk is full (no space left on device)",
                "the old data/ is unchanged",
            ),
            ("data/val/motion.npy", "data/report.json", "data/train/labels.npy"),
            (".workdir.lock",),
        ),
    ],
    ids=[
        "already full: the lock",
        "fills at the eval JSON",
        "fills at text_bank.npz",
        "fills while prepare stages data/",
    ],
)
def test_a_full_disk_is_one_line_naming_the_file_and_what_was_kept(
    base_workdirs, tmp_path, workdir, mode, full_at, phrase, unchanged, absent
):
    w = tmp_path / "w"
    if workdir == "fresh":
        w.mkdir()
    else:
        shutil.copytree(base_workdirs[workdir], w)
    config = {"babel_prepared": BABEL}.get(workdir, TOY)
    before = {p: _snapshot(w / p) for p in unchanged}
    files = _files(w)
    command, env = _python_c(_FULL_DISK, _main(config, mode)(w), WAT_JAX_TEST_FULL_AT=full_at)
    proc = subprocess.run(
        command, cwd=cli.ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    phrases = (phrase,) if isinstance(phrase, str) else phrase
    assert last.startswith("error: ") and all(p in last for p in phrases), last
    assert {p: _snapshot(w / p) for p in unchanged} == before
    for p in absent:
        assert not (w / p).exists(), p
    # Nothing half-written: no temporary file or other new file is left.
    assert set(_files(w)) - set(files) == set(), _files(w)


def test_ctrl_c_during_eval_is_one_line_and_exit_130(base_workdirs, tmp_path):
    w = tmp_path / "w"
    shutil.copytree(base_workdirs["toy_trained"], w)
    before = {p: _snapshot(w / p) for p in RUN_FILES}
    command, env = _python_c(_SLOW_EMBED, _main(TOY, "eval")(w))
    proc = subprocess.Popen(
        command, cwd=cli.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seen, deadline = [], time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if not line or "embedding the val windows" in line:
            break
    proc.send_signal(signal.SIGINT)
    err = "".join(seen) + proc.stderr.read()
    assert proc.wait(timeout=60) == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        "interrupted: nothing was written yet (step_20.json is written when scoring ends); "
        "the checkpoints and the earlier evaluations are unchanged"
    )
    assert {p: _snapshot(w / p) for p in RUN_FILES} == before
    assert not (w / "eval" / "step_20.json").exists()


def test_every_cli_main_has_the_one_handler():
    # exit 2 for bad input or a full disk, 130 for Ctrl-C: one wrapper, so one behaviour.
    import importlib

    from wat_jax import errors

    wrapper = errors.exits_on_input_error(lambda argv: None).__code__
    for name in (
        "wat_jax.main",
        "wat_jax.tools.search",
        "wat_jax.tools.export",
        "wat_jax.tools.timeline",
        "wat_jax.tools.visualize",
        "wat_jax.tools.embed_text",
        "wat_jax.tools.report",
        "wat_jax.tools.app",
        "wat_jax.tools.aggregate",
        "wat_jax.tools.protocol",
    ):
        assert importlib.import_module(name).main.__code__ is wrapper, name


def _exits(monkeypatch):
    """os._exit raising SystemExit, so a CLI's exit can be watched in-process."""

    def fake(code):
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", fake)


def test_ctrl_c_and_a_full_disk_reaching_a_cli_are_one_line(monkeypatch, capsys, tmp_path):
    from wat_jax import errors, fileio

    _exits(monkeypatch)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # restored after the test

    @errors.exits_on_input_error
    def interrupted(argv):
        with errors.keeping("the run is unchanged"), errors.keeping(lambda: "no index was saved"):
            raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stop:
        interrupted([])
    assert stop.value.code == 130
    assert capsys.readouterr().err == "interrupted: no index was saved; the run is unchanged\n"

    @errors.exits_on_input_error
    def second_ctrl_c(argv):
        raise KeyboardInterrupt("second SIGINT: stopping without a checkpoint")

    with pytest.raises(SystemExit) as stop:
        second_ctrl_c([])
    assert stop.value.code == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted (second SIGINT: stopping without a checkpoint): ")

    # A writer outside wat_jax.fileio (a library's) whose disk filled: the same one line.
    @errors.exits_on_input_error
    def library_write(argv):
        raise RuntimeError("orbax failed") from OSError(
            errno.EDQUOT, os.strerror(errno.EDQUOT), "/runs/w/tensorboard/events"
        )

    with pytest.raises(SystemExit) as stop:
        library_write([])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "error: /runs/w/tensorboard/events: could not write it: the disk quota is used up "
        "(disk quota exceeded); free some space or raise the quota, then run again\n"
    )

    # A read-only folder met by fileio's writers: the file, that nothing was written, the fix.
    @errors.exits_on_input_error
    def read_only(argv):
        def refuse(f):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        fileio.atomic_write(str(tmp_path / "out.json"), refuse)

    with pytest.raises(SystemExit) as stop:
        read_only([])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'out.json'}: could not write it: the file system is read-only; "
        "no out.json was written; run it where that folder is writable, or write to another "
        "folder\n"
    )
    assert os.listdir(tmp_path) == []

    # Any other error keeps its traceback (a bug is not a disk).
    @errors.exits_on_input_error
    def bug(argv):
        raise OSError(errno.EIO, "I/O error")

    with pytest.raises(OSError, match="I/O error"):
        bug([])


def _no_space(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_under_the_lock_leaves_no_lock_behind(tmp_path, monkeypatch):
    from wat_jax import errors, lock

    real = os.fsync
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(errors.DiskError) as error:
        lock.acquire(str(tmp_path), "describe")
    assert str(error.value).startswith(
        f"{tmp_path / lock.LOCK_FILE}: could not write it: the disk is full"
    )
    # An empty record would read as an unknown holder and refuse the next run.
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(os, "fsync", real)
    lock.release(str(tmp_path), lock.acquire(str(tmp_path), "describe"))


def test_a_full_disk_while_saving_the_text_bank_keeps_the_old_one(tmp_path, monkeypatch):
    from wat_jax import errors
    from wat_jax.text import bank

    path = str(tmp_path / bank.BANK_FILE)
    old = bank.random_bank(3, 8, 2, seed=0)
    old.save(path)
    before = _snapshot(path)
    real_savez = np.savez

    def savez_on_a_full_disk(f, **arrays):
        real_savez(f, **{k: v for k, v in list(arrays.items())[:1]})  # some bytes land
        _no_space()

    monkeypatch.setattr(np, "savez", savez_on_a_full_disk)
    with pytest.raises(errors.DiskError, match="the old text_bank.npz is unchanged"):
        bank.random_bank(3, 8, 2, seed=1).save(path)
    assert _snapshot(path) == before and os.listdir(tmp_path) == [bank.BANK_FILE]


@pytest.fixture
def full_disk(tmpfs):
    """A 64 MB tmpfs (tests/conftest.py), and a function that fills what is left of it."""
    mount = tmpfs("64m")

    def fill():
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            for size in (1 << 20, 1 << 12, 1):  # down to the last byte
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)

    return mount, fill


def test_a_really_full_disk_is_one_line_for_the_lock_and_the_eval_json(base_workdirs, full_disk):
    # The same rows as above on a real full file system: ENOSPC from write(), not a fake.
    mount, fill = full_disk
    w = mount / "run"
    shutil.copytree(base_workdirs["toy_trained"], w)
    fill()
    before = {p: _snapshot(w / p) for p in RUN_FILES}
    files = _files(w)
    proc = _run(_main(TOY, "eval")(w))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {w}/eval/step_20.json: could not write it: the disk is full (no space left "
        "on device); no step_20.json was written; the checkpoints and the earlier "
        "evaluations are unchanged; free some space there and run again"
    )
    assert {p: _snapshot(w / p) for p in RUN_FILES} == before and _files(w) == files
    proc = _run(_main(TOY, "prepare")(mount / "new"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {mount}/new/.workdir.lock: could not write it: the disk is full (no space "
        "left on device); nothing in the workdir was changed; free some space there and run "
        "again"
    )
    assert _files(mount / "new") == []
