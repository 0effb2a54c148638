"""wat_jax/heap.py: `python -m wat_jax.<program>` keeps freed memory for reuse."""

import json
import os
import subprocess
import sys

import pytest

from wat_jax import heap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# In a fresh interpreter: import wat_jax as `python -m wat_jax.<program>` does (argv[0] is
# "-m" while the package is imported) or as a library, then let a worker thread do what
# XLA:CPU does with a step's buffers: malloc a block, write it, free it; five times, with
# a 64 MB block (above glibc's largest mmap threshold, 32 MB), counting the page faults of
# the last four. (numpy arrays would not do: numpy asks for huge pages on large blocks.)
PROBE = """
import ctypes, json, resource, sys, threading
if sys.argv[1] == "program":
    sys.argv[0] = "-m"
import wat_jax
from wat_jax import heap

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
size = 64 << 20

def cycles():
    for i in range(5):
        if i == 1:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

faults = []
worker = threading.Thread(target=cycles)
worker.start()
worker.join()
print(json.dumps({"heap": heap.state(), "faults": faults[0]}))
"""


def _probe(how: str, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "WAT_JAX_HEAP"))}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, how],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


needs_glibc = pytest.mark.skipif(not heap._glibc(), reason="mallopt is glibc's")


@needs_glibc
def test_a_program_reuses_freed_blocks_without_faulting_them_in_again():
    kept = _probe("program")
    assert kept["heap"] == "kept"
    assert kept["faults"] < 1_000  # the block is reused in place
    # Without it each 64 MB block is a fresh mapping: 16k pages to fault in, four times.
    released = _probe("library")
    assert released["heap"] == "released"
    assert released["faults"] > 4 * 10_000


@needs_glibc
def test_the_caller_can_opt_out():
    assert _probe("program", WAT_JAX_HEAP="release")["heap"] == "released"
    # A caller who tuned glibc through its environment keeps their settings.
    assert _probe("program", MALLOC_ARENA_MAX="2")["heap"] == "released"
