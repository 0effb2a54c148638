"""Atomic file writes: a reader never sees a half-written file.

Every file the project writes into a workdir goes through here: the bytes land
in a temporary file in the same directory and are renamed over the target, so
an interrupted run leaves either the old file or the new one.

A file gets the mode `open()` would give a new file (0o666 less the user's umask), not
mkstemp's 0o600, so a run's files on a shared cluster folder are as readable as the
user's other files (and a run written before this fix mends as its files are rewritten).

A disk that is full, over quota or read-only is one `errors.DiskError` line naming
the file and what is kept (the old file, or that none was written); callers add
what else they keep with `errors.keeping`. `check_writable` asks the question before
long work, so a read-only destination is refused first, not after the work.
"""

import json
import os
import tempfile
from typing import Any, Iterable

import numpy as np

from wat_jax import errors


def _kept(path: str, existed: bool) -> str:
    name = os.path.basename(path)
    return f"the old {name} is unchanged" if existed else f"no {name} was written"


def umask() -> int:
    """The process's umask, read without changing it where Linux says it (os.umask can
    only be read by setting it, which for a moment would apply to other threads' files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def new_file_mode() -> int:
    """What open() gives a new file: 0o666 less the umask."""
    return 0o666 & ~umask()


def atomic_write(path: str, write_fn, mode: str = "wb") -> None:
    """Calls write_fn(file) on a temporary file, then renames it over `path`.

    The file gets `new_file_mode()`, not the temporary file's 0o600.

    Raises:
      errors.DiskError: the disk is full, over quota or read-only; `path` is as it was
        and the temporary file is gone.
    """
    directory = os.path.dirname(os.path.abspath(path))
    existed = os.path.exists(path)
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
        error = (
            errors.disk_error(e, path, [_kept(path, existed)]) if isinstance(e, Exception) else None
        )
        if error is None or error is e:
            raise
        raise error from e


def write_together(writes, removed_note: str) -> None:
    """Runs each (path, write(path)) in order, each writing its file whole; when one fails
    (a full disk, Ctrl-C) after an earlier one was replaced, removes every path, since
    files of the set that no longer match each other would load wrong, and the one error
    line carries `removed_note`."""
    written = []

    def removed() -> str:
        if not written:
            return ""
        for path, _ in writes:
            if os.path.exists(path):
                os.unlink(path)
        return removed_note

    with errors.keeping(removed):
        for path, write in writes:
            write(path)
            written.append(path)


def write_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), "w")


def write_json(path: str, obj: Any, indent: int | None = 2) -> None:
    """`obj` as JSON with sorted keys; indent=None writes it compact (no spaces)."""
    separators = None if indent is not None else (",", ":")
    write_text(path, json.dumps(obj, indent=indent, sort_keys=True, separators=separators) + "\n")


def write_jsonl(path: str, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def write_npy(path: str, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False), "wb")


def append_jsonl(path: str, row: dict) -> None:
    """Appends one line; a single write() of a short line is atomic on POSIX."""
    with errors.keeping(f"the lines already in {os.path.basename(path)} are kept", where=path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def check_writable(path: str, fix: str) -> None:
    """One line, before any work, when no file can be written at `path`.

    Probes the nearest folder of `path` that exists with a temporary file (removed at
    once) and creates nothing else, so a refusal leaves no empty folders behind. A
    read-only or full disk is an errors.DiskError; any other refusal (no permission, a
    file where a folder should be) an InputError; `fix` says what to do instead.
    """
    if os.path.isdir(path):
        raise errors.fail(path, f"is a folder, not a file; {fix}")
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(directory):
        directory = os.path.dirname(directory)
    try:
        if not os.path.isdir(directory):
            raise NotADirectoryError(f"{directory} is a file, not a folder")
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        error = errors.disk_error(e, path, ["nothing was written"], fix)
        if error is not None:
            raise error from e
        raise errors.fail(path, f"cannot write there ({e.strerror or e}); {fix}") from e
