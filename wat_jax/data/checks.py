"""Prepared data checked against the config and the model before anything compiles.

Training and evaluation read DIR/data/<split>/ as written by an earlier
prepare, possibly under another config, another version of the code, or edited
by hand. `check_prepared` compares each split with what the config asks for:
  motion.npy  float32 [N, T, J, F] with T = data.window_frames (J, F fixed by the
              task: BABEL 25 joints x 6 features, DenseGait 18 x 3), T within the
              model's position table (model.max_len), and every value finite
  mask.npy    bool [N, T]
  labels.npy  [N, C] with C = len(classes.json), classes.json the config's classes
and raises one InputError naming the file and what was expected. The finiteness
scan reads the memory-mapped motion in chunks of ~64 MB, so a multi-GB split
costs seconds and little memory.
"""

import os

import numpy as np
from absl import logging

from wat_jax.data import prepared
from wat_jax.errors import fail

_CHUNK_BYTES = 64 << 20


def _shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def first_nonfinite(motion: np.ndarray) -> int | None:
    """The first window (row) holding NaN or inf, scanning in bounded chunks; None if none."""
    n = motion.shape[0]
    row_bytes = max(int(np.prod(motion.shape[1:])) * motion.itemsize, 1)
    step = max(_CHUNK_BYTES // row_bytes, 1)
    for start in range(0, n, step):
        chunk = np.asarray(motion[start : start + step])
        bad = ~np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)
        if bad.any():
            return start + int(np.argmax(bad))
    return None


def check_split(config, workdir: str, split: str, layout: dict) -> int:
    """Checks one prepared split against `layout`; returns its number of windows."""
    d = prepared.split_dir(workdir, split)
    data = prepared.read_split(workdir, split)  # absent, unreadable, dtype: one line already
    motion_file = os.path.join(d, "motion.npy")
    frames, joints, features = layout["frames"], layout["joints"], layout["features"]
    m = data.motion
    if m.ndim != 4 or tuple(m.shape[1:]) != (frames, joints, features):
        raise fail(
            motion_file,
            f"shape {_shape(m.shape)}, but the config expects [N, {frames}, {joints}, "
            f"{features}] ({layout['why']}); run --mode=prepare again with this config",
        )
    if m.dtype != np.float32:
        raise fail(motion_file, f"dtype {m.dtype}, expected float32")
    max_len = int(config.model.max_len)
    if frames > max_len:
        raise fail(
            "config.model.max_len",
            f"{max_len} is shorter than the {frames}-frame windows of {motion_file}",
        )
    n = m.shape[0]
    mask = data.mask
    if tuple(mask.shape) != (n, frames) or mask.dtype != bool:
        raise fail(
            os.path.join(d, "mask.npy"),
            f"{mask.dtype} {_shape(mask.shape)}, expected bool [{n}, {frames}] like motion.npy",
        )
    labels_file = os.path.join(d, "labels.npy")
    classes_file = os.path.join(d, "classes.json")
    y = data.labels
    if y.ndim != 2 or y.shape[0] != n or y.shape[1] != len(data.classes):
        raise fail(
            labels_file,
            f"shape {_shape(y.shape)}, expected [{n}, {len(data.classes)}] "
            f"({n} windows, {len(data.classes)} names in classes.json)",
        )
    if list(data.classes) != layout["classes"]:
        extra = [c for c in data.classes if c not in layout["classes"]]
        missing = [c for c in layout["classes"] if c not in data.classes]
        detail = (
            f"names the config lacks {extra[:3]}"
            if extra
            else f"lacks the config's {missing[:3]}"
            if missing
            else "the same names in another order"
        )
        raise fail(
            classes_file,
            f"{len(data.classes)} classes, {detail} (config: {len(layout['classes'])} classes); "
            "run --mode=prepare again with this config",
        )
    if len(data.index) != n:
        raise fail(os.path.join(d, "index.jsonl"), f"{len(data.index)} rows for {n} windows")
    bad = first_nonfinite(m)
    if bad is not None:
        raise fail(
            motion_file,
            f"window {bad} (source {data.index[bad].get('source')!r}) holds NaN or inf; "
            "fix the source data and run --mode=prepare again",
        )
    bad_rows = ~np.isfinite(np.asarray(y, np.float32)).all(axis=1)
    if bad_rows.any():
        raise fail(labels_file, f"window {int(np.argmax(bad_rows))} has a NaN or inf label")
    return n


def check_prepared(config, workdir: str, layout: dict | None, splits=prepared.SPLITS) -> None:
    """Checks every split in `splits` against the config (see the module docstring).

    `layout`: {"frames", "joints", "features", "classes", "why"} the config's task expects
    (its Task.layout), or None for a task without prepared files (toy): nothing to check.
    """
    if layout is None:
        return
    counts = {split: check_split(config, workdir, split, layout) for split in splits}
    logging.info("prepared data matches the config: %s windows", counts)
