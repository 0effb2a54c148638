"""Running wat_jax's command lines in subprocesses, as the end-to-end tests do: one
place for the command, the environment (CPU, N simulated devices, the session's
compilation cache inherited from tests/conftest.py) and the one-line-error helpers."""

import os
import shutil
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = "experiments/toy.py:smoke"
BABEL = "experiments/babel60.py:smoke"
DENSEGAIT = "experiments/densegait.py:smoke"


def env(devices=8, **extra):
    """The test process's environment on CPU with `devices` simulated devices."""
    out = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
    out["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return out


def main_cmd(workdir, mode="train", *overrides, config=TOY):
    """`python -m wat_jax.main` for one stage of a run."""
    return [
        sys.executable,
        "-m",
        "wat_jax.main",
        f"--config={config}",
        f"--workdir={workdir}",
        f"--mode={mode}",
        *overrides,
    ]


def run(args, devices=8, timeout=300, check=False, **extra_env):
    """`python -m <args>` to completion; with check, a non-zero exit fails the test."""
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        check=False,
        cwd=ROOT,
        env=env(devices, **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


def run_main(workdir, mode="train", *overrides, config=TOY, check=True, devices=8, timeout=300):
    """One stage of a run to completion; by default a non-zero exit fails the test."""
    return run(
        main_cmd(workdir, mode, *overrides, config=config)[2:],
        devices=devices,
        timeout=timeout,
        check=check,
    )


def free_ports(n=1):
    """n distinct free local ports (held together while chosen, so never the same)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_main(workdir, mode="train", *overrides, config=TOY, devices=8, stdout=None):
    """One stage of a run, started (stderr piped); `finish` waits for it."""
    return subprocess.Popen(
        main_cmd(workdir, mode, *overrides, config=config),
        cwd=ROOT,
        env=env(devices),
        stdout=stdout or subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def launch_processes(workdir, mode, *overrides, num_processes=2, devices=1, stdout=None, port=None):
    """`num_processes` cooperating processes of one run (a local coordinator), started."""
    port = port or free_ports()[0]
    return [
        subprocess.Popen(
            main_cmd(
                workdir,
                mode,
                *overrides,
                f"--coordinator_address=127.0.0.1:{port}",
                f"--num_processes={num_processes}",
                f"--process_id={i}",
            ),
            cwd=ROOT,
            env=env(devices),
            stdout=stdout or subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(num_processes)
    ]


def finish(procs, timeout=300):
    """Waits for every process; each must exit 0. Returns their (stdout, stderr)."""
    outputs = [p.communicate(timeout=timeout) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0] * len(procs), "\n".join((e or "")[-2000:] for _, e in outputs)
    return outputs


def last_line(proc):
    return proc.stderr.strip().splitlines()[-1]


def checkpoint_steps(workdir):
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def copy_run(src, dst):
    """A private copy of a session-wide workdir, for a test that writes into it."""
    shutil.copytree(src, dst, symlinks=True)
    return dst
