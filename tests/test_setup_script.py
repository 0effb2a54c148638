"""launch/setup.sh picks the interpreter: WAT_JAX_PYTHON, else python3.12 on PATH, then
pyenv's 3.12.x, then python3.11, then python3 when it is a supported version. Checked
with stub interpreters (shell scripts that answer the version query) on a bare PATH, via
`bash launch/setup.sh --which`, which prints the choice and creates nothing, on a PATH
that holds only the stubs and the few tools the script needs."""

import os
import shutil
import subprocess

import pytest

from tests import cli

SETUP = os.path.join(cli.ROOT, "launch", "setup.sh")


def _stub(directory, name, version):
    path = directory / name
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return str(path)


def _which(tmp_path, bin_dir, **env):
    base = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    base["WAT_JAX_VENV"] = str(tmp_path / "venv")
    base.update(env)
    return subprocess.run(
        ["/bin/bash", SETUP, "--which"], env=base, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def bin_dir(tmp_path):
    """A PATH of only the tools setup.sh uses before it chooses: no real Python on it."""
    path = tmp_path / "bin"
    path.mkdir()
    for tool in ("dirname", "ls", "sort"):
        os.symlink(shutil.which(tool), path / tool)
    return path


def test_python312_on_path_wins_over_python3(tmp_path, bin_dir):
    _stub(bin_dir, "python3", "3.11")
    want = _stub(bin_dir, "python3.12", "3.12")
    proc = _which(tmp_path, bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == want


def test_a_broken_python312_shim_falls_through_to_pyenv(tmp_path, bin_dir):
    """pyenv's shims answer only for the global version: a python3.12 that fails is passed
    over, and pyenv's own 3.12.x is found under `pyenv root` (the newest patch first)."""
    (bin_dir / "python3.12").write_text("#!/bin/sh\nexit 127\n")
    (bin_dir / "python3.12").chmod(0o755)
    _stub(bin_dir, "python3", "3.11")
    root = tmp_path / "pyenv"
    for patch in ("3.12.1", "3.12.10", "3.13.0"):
        (root / "versions" / patch / "bin").mkdir(parents=True)
        _stub(root / "versions" / patch / "bin", f"python{patch.rsplit('.', 1)[0]}", patch[:4])
    (bin_dir / "pyenv").write_text(f"#!/bin/sh\necho {root}\n")
    (bin_dir / "pyenv").chmod(0o755)
    proc = _which(tmp_path, bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(root / "versions" / "3.12.10" / "bin" / "python3.12")


def test_python3_311_is_the_fallback(tmp_path, bin_dir):
    want = _stub(bin_dir, "python3.11", "3.11")
    _stub(bin_dir, "python3", "3.10")
    proc = _which(tmp_path, bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == want


def test_wat_jax_python_overrides_and_old_versions_are_refused(tmp_path, bin_dir):
    _stub(bin_dir, "python3.12", "3.12")
    chosen = _stub(bin_dir, "mypython", "3.11")
    proc = _which(tmp_path, bin_dir, WAT_JAX_PYTHON=chosen)
    assert proc.returncode == 0 and proc.stdout.strip() == chosen, proc.stderr
    old = _stub(bin_dir, "python3.10", "3.10")
    proc = _which(tmp_path, bin_dir, WAT_JAX_PYTHON=old)
    assert proc.returncode == 2
    assert "3.10" in proc.stderr and "3.11 or newer" in proc.stderr
    proc = _which(tmp_path, bin_dir, WAT_JAX_PYTHON=str(bin_dir / "missing"))
    assert proc.returncode == 2 and "does not run" in proc.stderr


def test_no_supported_python_is_one_clear_line(tmp_path, bin_dir):
    _stub(bin_dir, "python3", "3.9")
    proc = _which(tmp_path, bin_dir)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no Python 3.12 or 3.11" in proc.stderr
    assert not (tmp_path / "venv").exists()
