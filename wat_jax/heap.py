"""Keep freed memory in the process, so XLA:CPU stops faulting its buffers in every step.

XLA:CPU allocates each execution's temporaries in one block (2.8 GB for the paper-size
train step at batch 80) on a worker thread and frees it when the step ends. glibc serves
a block that large from a fresh `mmap` and returns it with `munmap`, so every step
touches 2.8 GB of new pages: ~735k page faults and ~1.2 s of kernel time per step on a
2-core CPU, a sixth of the step's CPU time (the step: 3.24 s -> 2.78 s kept). With one arena, no `mmap` for large blocks and no
trimming, the freed block stays in the heap and the next step reuses it: no faults, and
the process keeps its peak memory instead of returning it between steps.

`python -m wat_jax.<program>` applies this from `wat_jax/__init__.py` before numpy or
jax start threads (a thread that has already allocated keeps its own arena, so a later
call would not reach XLA's workers). `import wat_jax` in a user's process changes
nothing. `WAT_JAX_HEAP=release` opts out; so does any `MALLOC_*` setting of the caller's.
Other C libraries (macOS, musl) are left as they are.
"""

import ctypes
import os

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_applied = False


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


def keep_freed_memory() -> bool:
    """Sets glibc's allocator to reuse freed blocks in place; True when it is in effect.

    Call it before other threads allocate. One arena for every thread, large blocks from
    the heap instead of their own mappings, and no trimming of the heap's top (-1 reads as
    the largest threshold: mallopt takes an int, and the step's block is over 2 GB).
    """
    global _applied
    if _applied:
        return True
    if os.environ.get("WAT_JAX_HEAP", "keep") == "release" or not _glibc():
        return False
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False  # the caller tuned glibc themselves
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    _applied = all(
        mallopt(param, value) == 1
        for param, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    )
    return _applied


def state() -> str:
    """'kept' when `keep_freed_memory` is in effect in this process, else 'released'."""
    return "kept" if _applied else "released"
