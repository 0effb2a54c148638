"""Atomic file writes: a reader never sees a half-written file.

Every file the project writes into a workdir goes through here: the bytes land
in a temporary file in the same directory and are renamed over the target, so
an interrupted run leaves either the old file or the new one.
"""

import json
import os
import tempfile
from typing import Any, Iterable

import numpy as np


def atomic_write(path: str, write_fn, mode: str = "wb") -> None:
    """Calls write_fn(file) on a temporary file, then renames it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), "w")


def write_json(path: str, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def write_npy(path: str, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False), "wb")


def append_jsonl(path: str, row: dict) -> None:
    """Appends one line; a single write() of a short line is atomic on POSIX."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
