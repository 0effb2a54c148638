"""A run's files are as readable as the user's umask allows: the atomic writer used to
keep mkstemp's 0600, so on a shared cluster folder colleagues could not read a run's
config.json, text bank or eval/ (issue 26)."""

import os
import stat

import numpy as np
import pytest

from wat_jax import fileio


@pytest.fixture
def umask():
    """Sets the process's umask for one test and puts the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_take_the_umask_not_0600(umask, tmp_path):
    umask(0o022)
    assert fileio.umask() == 0o022
    fileio.write_json(str(tmp_path / "a.json"), {"x": 1})
    fileio.write_npy(str(tmp_path / "a.npy"), np.zeros(3))
    assert _mode(tmp_path / "a.json") == _mode(tmp_path / "a.npy") == 0o644
    umask(0o002)
    fileio.write_text(str(tmp_path / "a.json"), "{}\n")  # a rewrite takes today's umask
    assert _mode(tmp_path / "a.json") == 0o664
    umask(0o077)  # a user who wants private files still gets them
    fileio.write_text(str(tmp_path / "b.txt"), "private\n")
    assert _mode(tmp_path / "b.txt") == 0o600
    assert sorted(os.listdir(tmp_path)) == ["a.json", "a.npy", "b.txt"]  # no temporaries


@pytest.mark.parametrize("run", ["babel_smoke", "densegait_smoke"])
def test_no_file_of_a_smoke_run_is_private(run, request):
    """Every file and folder the session's smoke run (--mode=all: prepare, describe,
    embed, train with orbax checkpoints, eval) wrote is readable by group and others as
    the umask it ran under allows (the test process's, which the run inherited)."""
    workdir = request.getfixturevalue(run).workdir
    readable = 0o044 & ~fileio.umask()  # the read bits a new file gets
    if not readable:
        pytest.skip(f"this session's umask {fileio.umask():03o} makes every new file private")
    openable = 0o055 & ~fileio.umask()  # the read and search bits a new folder gets
    private = []
    for folder, _, names in os.walk(workdir):
        if _mode(folder) & 0o055 != openable:  # a 0700 folder hides what it holds
            private.append(f"{os.path.relpath(folder, workdir)}/ {_mode(folder):03o}")
        for name in names:
            path = os.path.join(folder, name)
            if _mode(path) & 0o044 != readable:
                private.append(f"{os.path.relpath(path, workdir)} {_mode(path):03o}")
    assert not private, private
