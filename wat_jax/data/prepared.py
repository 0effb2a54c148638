"""The prepared-window format that training and evaluation read.

`--mode=prepare` writes, per split, `DIR/data/<split>/`:
  motion.npy   float32 [N, T, J, F]  the windows
  mask.npy     bool    [N, T]        True for real frames, False for padding
  labels.npy   float32 [N, C]        multi-hot classes or attribute values
  classes.json the C column names, in order
  index.jsonl  one object per window: source, start_s, start_frame

All of it is readable with numpy alone. A split is complete only when its
`classes.json` exists: it is written last, so an interrupted prepare is redone.

A prepare is all-or-nothing (`Staging`): every split and `report.json` (what was
read, skipped and dropped, and why) are built in `DIR/.data-staging-<host>-<pid>/`,
which replaces `DIR/data/` only when all of them succeeded; a failure removes the
staging folder and leaves the old `data/` as it was.
"""

import dataclasses
import json
import os
import shutil
import socket

import numpy as np

from wat_jax import fileio
from wat_jax.errors import fail

SPLITS = ("train", "val")
# data.duplicates, for every task's prepare: an id read more than once (a BABEL sid, a
# DenseGait track_id) is an error, or (allow) its first entry is kept and the rest counted.
DUPLICATES = ("error", "allow")


@dataclasses.dataclass(frozen=True)
class PreparedSplit:
    motion: np.ndarray  # [N, T, J, F] float32 (memory-mapped when read)
    mask: np.ndarray  # [N, T] bool
    labels: np.ndarray  # [N, C] float32
    classes: list[str]
    index: list[dict]

    def __len__(self) -> int:
        return self.motion.shape[0]


def data_dir(workdir: str) -> str:
    return os.path.join(workdir, "data")


def split_dir(workdir: str, split: str) -> str:
    return os.path.join(data_dir(workdir), split)


def is_prepared(workdir: str, split: str) -> bool:
    return os.path.exists(os.path.join(split_dir(workdir, split), "classes.json"))


def validate(split: PreparedSplit, where: str) -> None:
    """Raises InputError when the arrays disagree in shape, type or finiteness."""
    m, k, y = split.motion, split.mask, split.labels
    if m.ndim != 4:
        raise fail(where, f"motion must be [N, T, J, F], got shape {m.shape}")
    n, t = m.shape[:2]
    if k.shape != (n, t):
        raise fail(where, f"mask shape {k.shape} does not match motion {(n, t)}")
    if y.ndim != 2 or y.shape[0] != n or y.shape[1] != len(split.classes):
        raise fail(where, f"labels shape {y.shape} does not match N={n}, C={len(split.classes)}")
    if len(split.index) != n:
        raise fail(where, f"index has {len(split.index)} rows for {n} windows")
    for start in range(0, n, 4096):  # chunked: the real sets are memory-mapped GBs
        if not np.isfinite(m[start : start + 4096]).all():
            raise fail(where, "motion contains NaN or inf")
    if not np.isfinite(y).all() or (y < 0).any() or (y > 1).any():
        raise fail(where, "labels must be finite values in [0, 1]")


def write_split(workdir: str, split: str, data: PreparedSplit) -> str:
    """Validates and writes one split atomically; returns its directory."""
    return write_split_dir(split_dir(workdir, split), data)


def write_split_dir(out: str, data: PreparedSplit) -> str:
    """Validates and writes one split into the folder `out`; returns it."""
    validate(data, out)
    marker = os.path.join(out, "classes.json")
    if os.path.exists(marker):
        os.unlink(marker)  # mark incomplete while the arrays are replaced
    fileio.write_npy(os.path.join(out, "motion.npy"), np.asarray(data.motion, np.float32))
    fileio.write_npy(os.path.join(out, "mask.npy"), np.asarray(data.mask, bool))
    fileio.write_npy(os.path.join(out, "labels.npy"), np.asarray(data.labels, np.float32))
    fileio.write_jsonl(os.path.join(out, "index.jsonl"), data.index)
    fileio.write_json(marker, list(data.classes))
    return out


def read_split(workdir: str, split: str, mmap: bool = True) -> PreparedSplit:
    """Reads one prepared split; arrays are memory-mapped unless mmap=False."""
    d = split_dir(workdir, split)
    if not is_prepared(workdir, split):
        raise fail(d, "no prepared data here; run --mode=prepare first")
    mode = "r" if mmap else None
    try:
        motion = np.load(os.path.join(d, "motion.npy"), mmap_mode=mode)
        mask = np.load(os.path.join(d, "mask.npy"), mmap_mode=mode)
        labels = np.load(os.path.join(d, "labels.npy"), mmap_mode=mode)
        with open(os.path.join(d, "classes.json")) as f:
            classes = json.load(f)
        with open(os.path.join(d, "index.jsonl")) as f:
            index = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        raise fail(d, f"unreadable prepared data ({e})") from e
    data = PreparedSplit(motion, mask, labels, classes, index)
    if motion.dtype != np.float32 or mask.dtype != bool:
        raise fail(d, f"motion must be float32 and mask bool, got {motion.dtype}, {mask.dtype}")
    return data


REPORT_FILE = "report.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Staging:
    """Builds a prepare's splits beside DIR/data/ and swaps them in only when all succeeded.

    Usage:
        with prepared.Staging(workdir) as stage:
            stage.write_split("train", data)   # any number of splits, then the report
            stage.write_report(report)
            stage.commit()                     # DIR/data/ now holds exactly these
    Leaving the block without commit() (an error in any split) removes the staging folder
    and leaves DIR/data/ untouched. Staging folders of dead processes on this host (a
    killed prepare) are removed when the next one starts.
    """

    PREFIX, OLD_PREFIX = ".data-staging-", ".data-old-"

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.tag = f"{socket.gethostname()}-{os.getpid()}"
        self.root = os.path.join(workdir, self.PREFIX + self.tag)
        self.committed = False

    def __enter__(self) -> "Staging":
        self._remove_stale()
        if os.path.exists(self.root):
            shutil.rmtree(self.root)
        os.makedirs(self.root)
        return self

    def __exit__(self, *exc) -> None:
        if not self.committed:
            shutil.rmtree(self.root, ignore_errors=True)

    def _remove_stale(self) -> None:
        host = socket.gethostname()
        if not os.path.isdir(self.workdir):
            return
        for name in os.listdir(self.workdir):
            for prefix in (self.PREFIX, self.OLD_PREFIX):
                if not name.startswith(prefix + host + "-"):
                    continue
                pid = name[len(prefix + host + "-") :]
                if pid.isdigit() and not _alive(int(pid)):
                    shutil.rmtree(os.path.join(self.workdir, name), ignore_errors=True)

    def split_dir(self, split: str) -> str:
        return os.path.join(self.root, split)

    def write_split(self, split: str, data: PreparedSplit) -> str:
        return write_split_dir(self.split_dir(split), data)

    def write_report(self, report: dict) -> str:
        path = os.path.join(self.root, REPORT_FILE)
        fileio.write_json(path, report)
        return path

    def commit(self) -> str:
        """Replaces DIR/data/ by the staged folder; returns DIR/data."""
        final = data_dir(self.workdir)
        old = None
        if os.path.lexists(final):
            old = os.path.join(self.workdir, self.OLD_PREFIX + self.tag)
            if os.path.exists(old):
                shutil.rmtree(old)
            os.rename(final, old)
        try:
            os.rename(self.root, final)
        except BaseException:
            if old is not None:
                os.rename(old, final)
            raise
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return final


def read_report(workdir: str) -> dict:
    """DIR/data/report.json as written by the last successful prepare."""
    path = os.path.join(data_dir(workdir), REPORT_FILE)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise fail(path, f"no readable build report ({e}); run --mode=prepare") from e


def format_table(title: str, columns, rows) -> str:
    """A plain text table: `rows` are (label, [one value per column]); None leaves a blank.

    Args:
      title: the first line.
      columns: the column names (e.g. the splits).
      rows: (label, values) pairs; a label starting with spaces reads as a sub-row.

    Returns:
      The table as one string, without a trailing newline.
    """
    cells = [[("" if v is None else str(v)) for v in values] for _, values in rows]
    width = max([len(label) for label, _ in rows] + [5])
    col_w = [
        max([len(str(c))] + [len(r[i]) for r in cells if i < len(r)]) for i, c in enumerate(columns)
    ]
    head = " " * width + "".join(f"  {c:>{w}}" for c, w in zip(columns, col_w))
    lines = [title, head, "-" * len(head)]
    for (label, _), row in zip(rows, cells):
        lines.append(f"{label:<{width}}" + "".join(f"  {v:>{w}}" for v, w in zip(row, col_w)))
    return "\n".join(lines)
