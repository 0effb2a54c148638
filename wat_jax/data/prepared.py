"""The prepared-window format that training and evaluation read.

`--mode=prepare` writes, per split, `DIR/data/<split>/`:
  motion.npy   float32 [N, T, J, F]  the windows
  mask.npy     bool    [N, T]        True for real frames, False for padding
  labels.npy   float32 [N, C]        multi-hot classes or attribute values
  classes.json the C column names, in order
  index.jsonl  one object per window: source, start_s, start_frame

All of it is readable with numpy alone. A split is complete only when its
`classes.json` exists: it is written last, so an interrupted prepare is redone.
"""

import dataclasses
import json
import os

import numpy as np

from wat_jax import io
from wat_jax.errors import fail

SPLITS = ("train", "val")


@dataclasses.dataclass(frozen=True)
class PreparedSplit:
    motion: np.ndarray  # [N, T, J, F] float32 (memory-mapped when read)
    mask: np.ndarray  # [N, T] bool
    labels: np.ndarray  # [N, C] float32
    classes: list[str]
    index: list[dict]

    def __len__(self) -> int:
        return self.motion.shape[0]


def split_dir(workdir: str, split: str) -> str:
    return os.path.join(workdir, "data", split)


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
    out = split_dir(workdir, split)
    validate(data, out)
    marker = os.path.join(out, "classes.json")
    if os.path.exists(marker):
        os.unlink(marker)  # mark incomplete while the arrays are replaced
    io.write_npy(os.path.join(out, "motion.npy"), np.asarray(data.motion, np.float32))
    io.write_npy(os.path.join(out, "mask.npy"), np.asarray(data.mask, bool))
    io.write_npy(os.path.join(out, "labels.npy"), np.asarray(data.labels, np.float32))
    io.write_jsonl(os.path.join(out, "index.jsonl"), data.index)
    io.write_json(marker, list(data.classes))
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
