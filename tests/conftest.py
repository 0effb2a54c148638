"""Test setup: 8 simulated CPU devices, set once before JAX initialises; a compilation
cache shared by the session's subprocesses; runs trained once per session."""

import atexit
import os
import shutil
import subprocess
import tempfile
from typing import NamedTuple

import pytest

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Text vectors are cached per session, never in the user's ~/.cache.
os.environ["WAT_JAX_CACHE"] = tempfile.mkdtemp(prefix="wat_jax_test_cache_")
atexit.register(shutil.rmtree, os.environ["WAT_JAX_CACHE"], True)
# Compiled programs are cached per session: most end-to-end tests start
# `python -m wat_jax.main` on the same tiny configs, and each would otherwise compile the
# same train and eval steps again (most of a toy run's time on CPU). The cache only
# skips XLA's compiler; the programs, and so the numbers, are the same. A directory set
# by the caller (e.g. the pytest-xdist controller for its workers) is used and kept.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="wat_jax_test_jit_")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

from tests import cli  # after the environment above


class Trained(NamedTuple):
    """A workdir trained once per session (read-only: copy it to write into it) and the
    output of the command that made it."""

    workdir: str
    proc: subprocess.CompletedProcess


def _trained(tmp_path_factory, name, *args, **kwargs):
    workdir = tmp_path_factory.mktemp(name) / "run"
    proc = cli.run_main(workdir, *args, timeout=900, **kwargs)
    return Trained(workdir, proc)


@pytest.fixture(scope="session")
def babel_smoke(tmp_path_factory):
    """experiments/babel60.py:smoke through --mode=all on 8 devices."""
    return _trained(tmp_path_factory, "babel_smoke", "all", config=cli.BABEL)


@pytest.fixture(scope="session")
def densegait_smoke(tmp_path_factory):
    """experiments/densegait.py:smoke through --mode=all on 8 devices."""
    return _trained(tmp_path_factory, "densegait_smoke", "all", config=cli.DENSEGAIT)


@pytest.fixture
def tmpfs(tmp_path):
    """Real small file systems for disk faults: `tmpfs(size, name="disk")` mounts a tmpfs
    of `size` (e.g. "2m") at tmp_path/name and returns it; mounting needs root, as on the
    project's machines and CI, and the test is skipped where it cannot. Each is unmounted
    after the test."""
    mounts = []

    def mount(size: str, name: str = "disk"):
        point = tmp_path / name
        point.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in reversed(mounts):
        subprocess.run(["umount", "-l", str(point)], check=False)
