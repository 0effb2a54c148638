"""The workdir lock: one writer at a time (prepare, describe, embed, train).

The lock is a file, WORKDIR/.workdir.lock, created with O_CREAT | O_EXCL and
holding JSON about its holder (host, pid, the process's start time, the mode,
since when). Exclusive creation is atomic on local filesystems and on NFS v3+
(and Lustre, GPFS, BeeGFS), so two hosts sharing the workdir cannot both hold
it; no fcntl/flock is needed, which shared filesystems implement unevenly.

A lock whose holder is dead is taken over with a warning, but only when that
can be known: the holder ran on this host (same hostname and boot id) and its
pid is gone or now belongs to a process started at another time. A lock held
on another host is never taken over on a guess (its process may be alive);
`--break_lock` (main.py) takes it explicitly once the user knows it is stale.
Taking over goes through a second exclusive file, so two processes finding the
same stale lock cannot both win.

Evaluation does not take the lock: it only reads the run and writes eval/
through atomic renames, so it may run beside a training. Multi-host runs take
it on process 0 only; the other processes learn the outcome (see
`hold_for_processes`).
"""

import contextlib
import dataclasses
import datetime
import json
import os
import socket
import time
import uuid

from absl import logging

from wat_jax.errors import disk_error, fail

LOCK_FILE = ".workdir.lock"
_BREAK_SUFFIX = ".break"
_BREAK_STALE_S = 60.0  # a takeover file older than this was left by a killed breaker
_UNREADABLE_GRACE_S = 2.0  # a holder writes its record right after creating the file

# Locks this process holds, by real path: a nested `hold` of the same workdir
# (main.py's lock around describe's own) is a no-op.
_HELD: dict[str, "Holder"] = {}


@dataclasses.dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    since: str  # UTC, ISO 8601
    mode: str
    boot_id: str = ""
    start_ticks: int = -1  # the process's start time in clock ticks since boot (Linux)
    token: str = ""

    def describe(self) -> str:
        return f"{self.mode or 'a run'} on host {self.host}, pid {self.pid}, since {self.since}"


def lock_path(workdir: str) -> str:
    return os.path.join(workdir, LOCK_FILE)


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int:
    """The process's start time (field 22 of /proc/<pid>/stat), or -1 when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return -1


def _me(mode: str) -> Holder:
    return Holder(
        host=socket.gethostname(),
        pid=os.getpid(),
        since=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        mode=mode,
        boot_id=_boot_id(),
        start_ticks=_start_ticks(os.getpid()),
        token=uuid.uuid4().hex,
    )


def _read(path: str) -> Holder | None:
    """The holder recorded in `path`; None when the file is empty or not a record.

    Raises FileNotFoundError when the file is gone.
    """
    with open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
        fields = {f.name for f in dataclasses.fields(Holder)}
        return Holder(**{k: v for k, v in data.items() if k in fields})
    except (ValueError, TypeError, AttributeError):
        return None


def _alive(holder: Holder) -> bool:
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    if holder.start_ticks >= 0:
        ticks = _start_ticks(holder.pid)
        if ticks >= 0 and ticks != holder.start_ticks:
            return False  # the pid was reused by a later process
    return True


def is_stale(holder: Holder) -> bool:
    """True when the holder is known to be dead: same host and boot, and its process is gone."""
    if holder.host != socket.gethostname():
        return False
    if not holder.boot_id or holder.boot_id != _boot_id():
        return False  # cannot compare pids across machines (or containers) safely
    return not _alive(holder)


def _break(path: str, seen: Holder | None, why: str) -> None:
    """Removes the lock `seen` (still the one in `path`), one breaker at a time."""
    breaker = path + _BREAK_SUFFIX
    try:
        fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            if time.time() - os.path.getmtime(breaker) > _BREAK_STALE_S:
                os.unlink(breaker)
        except FileNotFoundError:
            pass
        return  # another process is breaking it: look again
    os.close(fd)
    try:
        try:
            current = _read(path)
        except FileNotFoundError:
            return
        if (current is None and seen is None) or (
            current is not None and seen is not None and current.token == seen.token
        ):
            os.unlink(path)
            logging.warning(
                "%s: took over the workdir lock of %s (%s)",
                path,
                seen.describe() if seen else "an unreadable record",
                why,
            )
    finally:
        os.unlink(breaker)


def acquire(workdir: str, mode: str, break_lock: bool = False) -> Holder:
    """Takes the workdir lock for this process; InputError naming the holder when taken."""
    path = lock_path(workdir)
    me = _me(mode)
    unreadable_since = None
    for _ in range(100):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pass
        except OSError as e:
            raise _cannot_write(path, e, "create") from e
        else:
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(json.dumps(dataclasses.asdict(me), sort_keys=True) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                # An empty or torn record would read as a lock of an unknown process.
                with contextlib.suppress(OSError):
                    os.unlink(path)
                raise _cannot_write(path, e, "write") from e
            return me
        try:
            holder = _read(path)
        except FileNotFoundError:
            continue  # released meanwhile: try again
        if holder is None:  # being written right now, or left empty by a crash
            unreadable_since = unreadable_since or time.monotonic()
            age = time.time() - os.path.getmtime(path) if os.path.exists(path) else 0.0
            if time.monotonic() - unreadable_since < _UNREADABLE_GRACE_S:
                time.sleep(0.05)
                continue
            if break_lock or age > 10 * _UNREADABLE_GRACE_S:
                _break(path, None, "--break_lock" if break_lock else "empty record")
                continue
            raise fail(path, "the workdir is locked by an unknown process (unreadable lock file)")
        if holder.token and holder.token == me.token:
            return me
        if is_stale(holder):
            _break(path, holder, f"process {holder.pid} no longer runs")
            continue
        if break_lock:
            _break(path, holder, "--break_lock")
            continue
        hint = (
            "wait for it to finish"
            if holder.host == me.host
            else "if that process is gone, run again with --break_lock"
        )
        raise fail(
            path, f"the workdir is in use by {holder.describe()}; {hint} or use another --workdir"
        )
    raise fail(path, "could not take the workdir lock (it changed hands 100 times)")


def _cannot_write(path: str, error: OSError, what: str) -> Exception:
    """The one line for a lock that cannot be created or written (nothing of it is left)."""
    disk = disk_error(error, path, ["nothing in the workdir was changed"])
    return disk or fail(path, f"cannot {what} the workdir lock ({error.strerror or error})")


def release(workdir: str, holder: Holder) -> None:
    """Removes the lock if it is still `holder`'s (never another process's)."""
    path = lock_path(workdir)
    try:
        current = _read(path)
    except FileNotFoundError:
        current = None
    if current is not None and current.token == holder.token:
        os.unlink(path)
    else:
        logging.warning("%s: the workdir lock was no longer ours at exit", path)


@contextlib.contextmanager
def hold(workdir: str, mode: str, break_lock: bool = False):
    """Holds the workdir lock for the block; nested holds of one workdir are no-ops."""
    key = os.path.realpath(workdir)
    if key in _HELD:
        yield _HELD[key]
        return
    holder = acquire(workdir, mode, break_lock)
    _HELD[key] = holder
    try:
        yield holder
    finally:
        del _HELD[key]
        release(workdir, holder)


@contextlib.contextmanager
def hold_for_processes(workdir: str, mode: str, break_lock: bool = False):
    """`hold` for multi-host runs: process 0 holds the lock, and every process learns
    whether it got it (one broadcast), so a refusal stops all of them with exit 2."""
    import jax

    if jax.process_count() == 1:
        with hold(workdir, mode, break_lock) as holder:
            yield holder
        return
    import numpy as np
    from jax.experimental import multihost_utils

    error = None
    with contextlib.ExitStack() as stack:
        if jax.process_index() == 0:
            try:
                stack.enter_context(hold(workdir, mode, break_lock))
            except Exception as e:  # noqa: BLE001 - reported to every process, then re-raised
                error = e
        ok = multihost_utils.broadcast_one_to_all(np.int32(error is None))
        if error is not None:
            raise error
        if not int(ok):
            raise fail(
                lock_path(workdir), "process 0 could not take the workdir lock (see its error)"
            )
        yield None
