"""DenseGait: the raw format and its preparation into windows.

Raw format (the real dataset and `synthetic_densegait` both write it), as the DenseGait
authors' GaitFormer code reads it (cosmaadrian/gaitformer datasets/uwg_dense.py,
uwg_features.py, transforms/):
  annotations CSV   one row per tracklet: `track_id`, `file_name`, and the 42 attribute
                    columns of `gait_attributes.ATTRIBUTES` (RAP's names, typo included)
                    as probabilities in [0, 1], found by name in any order; extra columns
                    (a pandas index column, say) are ignored. The release keeps it at
                    <data root>/data-2.02/annotations.csv and `file_name` is relative to
                    the data root: set `data.tracklets_dir` to that root (an absolute
                    `file_name` is kept).
  tracklet .npy     float [T, 18, 3], time first: OpenPose-18 (x, y, confidence) per joint,
                    y pointing down (the reference negates y on load); (0, 0, 0) marks a
                    joint not detected. Only translation and scale of x, y are assumed
                    unknown, so pixel and pre-normalised coordinates read the same.

`prepare` writes the prepared-window format of `wat_jax.data.prepared`. Which frames a
window holds, how it is padded and how its coordinates are transformed are three keys;
the defaults are the GaitFormer-style windows, the alternatives the authors' code
(WalkAndText datasets/gait.py):
  data.frames     "window": W consecutive frames; train windows start at seeded random
                  frames (`train_windows_per_track` per track), val windows are centred.
                  "random": W frames drawn without replacement and sorted (every frame of
                  a tracklet no longer than W); train draws are seeded by (seed, row),
                  val draws by the track id alone (`draw_seed`), so evaluation windows do
                  not change between runs (the reference draws afresh at evaluation).
  data.padding    "mask": a tracklet shorter than W is zero-padded, mask False there.
                  "repeat_last": its last frame is repeated up to W, mask all True (the
                  reference: its transformer sees all W frames).
  data.transform  "gaitformer" (`normalize`): per joint (x, y, confidence), x right and
                  y up, centred per frame on the mid-hip and scaled by the window's median
                  torso length (neck to mid-hip), so the torso is 1 long; joints below
                  `data.min_confidence` are (0, 0, 0): missing.
                  "reference" (`subtract_origin`): the window minus its first frame's nose
                  (joint 0), all three channels, confidence included; pixels, y down,
                  nothing else.
  motion [N, W, 18, 3], mask [N, W] as above.
  labels [N, 42]: the CSV probabilities unchanged; binarise with
    `gait_attributes.attribute_set`.
  index.jsonl: source (track id), file, start_frame (the window's first frame),
    start_s = start_frame / data.fps (DenseGait gives no frame rate; 30 fps is assumed,
    set data.fps otherwise); with the reference transform also origin, the [x, y, c]
    subtracted (pixels = motion + origin). A random window's frames are not listed (60
    numbers a row would be most of the index): `select_frames` redraws them.
Tracks go to val by a hash of the track id (seed-independent), so a track never sits in
both splits. A track_id on two rows of the CSV would put its tracklet into its split twice:
an error naming the lines (`data.duplicates="error"`, the default); "allow" keeps the first
row of each track_id and the build report counts the rest (`duplicates`).
"""

import csv
import hashlib
import os

import numpy as np
from absl import logging

from wat_jax.data import gait_attributes, prepared
from wat_jax.data.skeletons import OpenPose18
from wat_jax.errors import fail
from wat_jax.reporting import run_log

JOINTS = OpenPose18.JOINTS
NOSE, NECK, R_HIP, L_HIP = OpenPose18.NOSE, OpenPose18.NECK, OpenPose18.R_HIP, OpenPose18.L_HIP
TRACK_COLUMN, FILE_COLUMN = gait_attributes.TRACK_COLUMN, gait_attributes.FILE_COLUMN
# Rounding in a tool that wrote the CSV may leave a probability a hair outside [0, 1].
_PROB_SLACK = 1e-6
# The values of data.frames, data.padding and data.transform (see the module docstring).
FRAMES = ("window", "random")
PADDINGS = ("mask", "repeat_last")
TRANSFORMS = ("gaitformer", "reference")


def read_annotations(path: str, max_tracks: int = 0):
    """Reads the annotations CSV.

    Returns:
      (track_ids, files, labels, lines): lists of str, labels float32 [N, 42] in the
      order of gait_attributes.COLUMNS, and each row's line number for messages.
    """
    if not os.path.isfile(path):
        raise fail(path, "annotations CSV not found (config.data.annotations)")
    columns = gait_attributes.COLUMNS
    track_ids, files, rows, lines = [], [], [], []
    # utf-8-sig: a CSV saved by a spreadsheet may start with a byte-order mark.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in (TRACK_COLUMN, FILE_COLUMN) + columns if c not in header]
        if missing:
            raise fail(path, f"missing columns: {', '.join(missing)}")
        for row in reader:
            if max_tracks and len(rows) >= max_tracks:
                break
            line = reader.line_num
            try:
                values = [float(row[c]) for c in columns]
            except (TypeError, ValueError):
                bad = next(c for c in columns if not _is_float(row[c]))
                problem = f"line {line}, column {bad!r}: {row[bad]!r} is not a number"
                raise fail(path, problem) from None
            for c, v in zip(columns, values, strict=True):
                if not -_PROB_SLACK <= v <= 1.0 + _PROB_SLACK:  # also rejects NaN
                    raise fail(
                        path, f"line {line}, column {c!r}: {v} is not a probability in [0, 1]"
                    )
            track_ids.append(row[TRACK_COLUMN])
            files.append(row[FILE_COLUMN])
            # float32 per row as read: 42 Python floats would hold ~1.3 KB a row (the real
            # CSV has ~217k rows), a float32 row ~0.3 KB; the values are the same.
            rows.append(np.asarray(values, np.float32))
            lines.append(line)
    labels = np.stack(rows) if rows else np.zeros((0, len(columns)), np.float32)
    return track_ids, files, np.clip(labels, 0.0, 1.0), lines


def _is_float(s) -> bool:
    try:
        float(s)
        return True
    except (TypeError, ValueError):
        return False


def tracklet_length(path: str) -> int:
    """Frames in a tracklet, from the .npy header alone; checks the (T, 18, 3) shape."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(f)
    except (OSError, ValueError) as e:
        raise fail(path, f"not a readable .npy file ({e})") from e
    if len(shape) != 3 or shape[1:] != (len(JOINTS), 3) or shape[0] < 1:
        raise fail(path, f"tracklet must have shape (T>=1, 18, 3), got {shape}")
    if dtype.kind not in "fiu":
        raise fail(path, f"tracklet must hold numbers, got dtype {dtype}")
    return int(shape[0])


def load_tracklet(path: str) -> np.ndarray:
    """[T, 18, 3] float32 tracklet; InputError on a bad shape, NaN or inf."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise fail(path, f"not a readable .npy file ({e})") from e
    if arr.ndim != 3 or arr.shape[1:] != (len(JOINTS), 3) or len(arr) < 1:
        raise fail(path, f"tracklet must have shape (T>=1, 18, 3), got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise fail(path, f"tracklet must hold numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise fail(path, "tracklet contains NaN or inf")
    return arr


def normalize(windows: np.ndarray, valid: np.ndarray, min_confidence: float) -> np.ndarray:
    """Centres each frame on the mid-hip and scales each window to torso length 1.

    Args:
      windows: [B, W, 18, 3] raw (x, y, confidence), image pixels, y down.
      valid: [B, W] real frames (padding is ignored and comes out zero).
      min_confidence: joints below it become (0, 0, 0).

    Returns:
      [B, W, 18, 3] float32 (x, y up, confidence). The centre is the mid-hip (one hip
      when only one is seen; the neck minus the window's median neck-to-hip offset when
      neither is; the mean seen joint when the neck is missing too). The scale is the
      median torso length over the window's frames that see the neck and a hip, or the
      median body height / 2.8 when none does.
    """
    xy = windows[..., :2].astype(np.float64) * np.array([1.0, -1.0])  # [B, W, 18, 2]
    conf = windows[..., 2]
    seen = (conf >= min_confidence) & valid[..., None]  # [B, W, 18]
    hips = seen[..., [R_HIP, L_HIP]]
    n_hips = hips.sum(-1)
    mid_hip = (xy[..., [R_HIP, L_HIP], :] * hips[..., None]).sum(-2) / np.maximum(n_hips, 1)[
        ..., None
    ]  # [B, W, 2]
    neck = xy[..., NECK, :]
    both = (n_hips > 0) & seen[..., NECK]
    offset = neck - mid_hip
    torso = _masked_median(np.linalg.norm(offset, axis=-1), both)  # [B]
    off_med = np.stack([_masked_median(offset[..., k], both) for k in range(2)], -1)  # [B, 2]
    n_seen = seen.sum(-1)
    mean_seen = (xy * seen[..., None]).sum(-2) / np.maximum(n_seen, 1)[..., None]
    from_neck = neck - np.nan_to_num(off_med)[:, None]
    centre = np.where(
        (n_hips > 0)[..., None], mid_hip, np.where(seen[..., NECK, None], from_neck, mean_seen)
    )

    ys = np.where(seen, xy[..., 1], np.nan)
    with np.errstate(invalid="ignore"):
        height = np.fmax.reduce(ys, -1, initial=-np.inf) - np.fmin.reduce(ys, -1, initial=np.inf)
    fallback = _masked_median(np.where(n_seen >= 2, height, 0.0), n_seen >= 2) / 2.8
    scale = np.where(
        np.isfinite(torso) & (torso > 1e-6),
        torso,
        np.where(np.isfinite(fallback) & (fallback > 1e-6), fallback, 1.0),
    )
    out_xy = (xy - centre[..., None, :]) / scale[:, None, None, None]
    out = np.concatenate([out_xy, conf[..., None]], -1)
    return np.where(seen[..., None], out, 0.0).astype(np.float32)


def subtract_origin(windows: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's transform: each window minus its first frame's nose, all channels.

    Args:
      windows: [B, W, 18, 3] raw (x, y, confidence), as read.
      valid: [B, W] real frames (padding comes out zero).

    Returns:
      ([B, W, 18, 3] float32 windows - windows[:, 0, NOSE], [B, 3] that origin).
    """
    windows = np.asarray(windows, np.float32)
    origin = windows[:, 0, NOSE, :]  # [B, 3]
    out = windows - origin[:, None, None, :]
    return np.where(valid[..., None, None], out, 0.0).astype(np.float32), origin


def transform(windows: np.ndarray, valid: np.ndarray, d) -> tuple[np.ndarray, np.ndarray | None]:
    """data.transform applied to raw windows [B, W, 18, 3] with real frames valid [B, W].

    Returns:
      (the prepared windows [B, W, 18, 3] float32, the subtracted origins [B, 3] under the
      reference transform, else None).
    """
    if d.transform == "reference":
        return subtract_origin(windows, valid)
    return normalize(windows, valid, float(d.min_confidence)), None


def _masked_median(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Median over the last axis of the entries where ok; NaN where none is."""
    v = np.sort(np.where(ok, values, np.inf), axis=-1)
    k = ok.sum(-1)
    lo = np.take_along_axis(v, np.maximum((k - 1) // 2, 0)[..., None], -1)[..., 0]
    hi = np.take_along_axis(v, np.maximum(k // 2, 0)[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore"):
        return np.where(k > 0, 0.5 * (lo + hi), np.nan)


def window_starts(length: int, window: int, count: int, rng) -> list[int]:
    """Start frames: centred when rng is None, else up to `count` distinct random ones."""
    room = length - window
    if room <= 0:
        return [0]
    if rng is None:
        return [room // 2]
    n = min(count, room + 1)
    return sorted(int(s) for s in rng.choice(room + 1, size=n, replace=False))


def random_frames(length: int, window: int, rng) -> np.ndarray:
    """`window` distinct frames drawn uniformly and sorted; every frame when there are no more."""
    if length <= window:
        return np.arange(length)
    return np.sort(rng.choice(length, size=window, replace=False))


def draw_seed(name: str) -> int:
    """The seed of a val window's random frames: a hash of the track id (or file name)."""
    return int.from_bytes(hashlib.sha1(f"frames/{name}".encode()).digest()[:8], "big")


def select_frames(length: int, d, split: str, seed: int, row: int, name: str) -> list:
    """The source frames of each window a tracklet gives, under data.frames.

    Args:
      length: the tracklet's frames.
      d: config.data (frames, window_frames, train_windows_per_track).
      split: "train" draws are seeded by (seed, row), `train_windows_per_track` of them;
        "val" gives one window, centred ("window") or drawn with `draw_seed(name)`
        ("random"), the same whatever the seed.
      seed, row: the run's seed and the tracklet's CSV row (train).
      name: the track id (val).

    Returns:
      A list of int arrays [<= W], each ascending: one per window, at least one.
    """
    window = int(d.window_frames)
    val = split == "val"
    if d.frames == "window":
        rng = None if val else np.random.default_rng([seed, row])
        starts = window_starts(length, window, int(d.train_windows_per_track), rng)
        return [np.arange(s, min(s + window, length)) for s in starts]
    rng = np.random.default_rng(draw_seed(name) if val else [seed, row])
    count = 1 if val or length <= window else int(d.train_windows_per_track)
    return [random_frames(length, window, rng) for _ in range(count)]


def take_frames(tracklet: np.ndarray, frames: np.ndarray, window: int, padding: str):
    """([W, 18, 3] the tracklet's `frames`, padded under data.padding; [W] real-frame mask).

    "mask" zero-pads and marks the padding False; "repeat_last" repeats the last taken
    frame and marks every frame real.
    """
    frames = np.asarray(frames, np.int64)
    if padding == "repeat_last":
        ix = np.concatenate([frames, np.full(window - len(frames), frames[-1])])
        return np.asarray(tracklet[ix], np.float32), np.ones(window, bool)
    out = np.zeros((window,) + tracklet.shape[1:], np.float32)
    out[: len(frames)] = tracklet[frames]
    return out, np.arange(window) < len(frames)


def val_window(tracklet: np.ndarray, d, name: str):
    """One tracklet's val window under config.data, prepared as `prepare` writes it.

    Returns:
      (motion [1, W, 18, 3] float32, mask [1, W] bool, origin [1, 3] or None).
    """
    frames = select_frames(len(tracklet), d, "val", 0, 0, name)[0]
    clip, valid = take_frames(tracklet, frames, int(d.window_frames), d.padding)
    motion, origin = transform(clip[None], valid[None], d)
    return motion, valid[None], origin


def in_val(track_id: str, val_fraction: float) -> bool:
    """Deterministic, seed-independent split: a hash of the track id."""
    h = int.from_bytes(hashlib.sha1(str(track_id).encode()).digest()[:8], "big")
    return h / 2.0**64 < val_fraction


def prepare(data_cfg, workdir: str, seed: int) -> dict:
    """Writes workdir/data/{train,val} from the DenseGait CSV + tracklets (or synthetic ones).

    With data.source == "synthetic" the raw files are first generated into workdir/raw/
    and then read by the same loader as the real data. Tracklets are streamed: pass 1
    reads only .npy headers (shape checks, window counts), pass 2 loads one file at a
    time and writes normalised windows into a memory-mapped temporary array.

    Returns:
      Counts: train/val windows and tracks, skipped_missing, short_tracks, and the rows
      whose track_id repeats an earlier row's (`duplicates`, see first_rows).
    """
    d = data_cfg
    _check_config(d)
    if d.source == "synthetic":
        from wat_jax.data.synthetic_densegait import write_synthetic

        csv_path, tracklets_dir = write_synthetic(os.path.join(workdir, "raw"), d, seed)
    else:
        csv_path, tracklets_dir = d.annotations, d.tracklets_dir
    track_ids, files, labels, lines = read_annotations(csv_path, d.max_tracks)
    if not track_ids:
        raise fail(csv_path, "no tracklet rows")
    rows_read = len(track_ids)
    keep, repeated = first_rows(d, csv_path, track_ids, lines)
    if repeated:  # allowed: the CSV as if the repeated rows were not there
        track_ids, files = [track_ids[r] for r in keep], [files[r] for r in keep]
        labels, lines = labels[keep], [lines[r] for r in keep]

    # Pass 1: headers only, so a bad or absent file fails before the long pass.
    window, skipped = d.window_frames, 0
    # (row, path, k): the k-th window of select_frames, redrawn in pass 2 (a plan row of
    # frame numbers would cost ~0.3 KB a window at the real set's size).
    plans = {"train": [], "val": []}
    short = 0
    for row, name in enumerate(files):
        path = os.path.join(tracklets_dir, name)
        if not os.path.exists(path):
            if d.missing == "skip":
                skipped += 1
                continue
            raise fail(
                path,
                f"tracklet named in {csv_path} line {lines[row]} is absent; file_name is "
                "read relative to config.data.tracklets_dir, the DenseGait data root "
                "(set config.data.missing=skip to leave such rows out)",
            )
        length = tracklet_length(path)
        short += length < window
        split = "val" if in_val(track_ids[row], d.val_fraction) else "train"
        windows = select_frames(length, d, split, seed, row, track_ids[row])
        plans[split].extend((row, path, k) for k in range(len(windows)))
    if skipped:
        logging.warning(
            "densegait: %s tracklets named in %s are absent; skipped", skipped, csv_path
        )
    counts = {
        "options": {"duplicates": d.duplicates},
        "skipped_missing": skipped,
        "short_tracks": int(short),
        # Rows whose track_id an earlier row already had (data.duplicates=allow drops them).
        "duplicates": {"track_id_repeated": len(repeated)},
        "duplicate_examples": {"track_id_repeated": repeated[:20]} if repeated else {},
    }
    for split, plan in plans.items():
        if not plan:
            raise fail(
                "config.data.val_fraction",
                f"no tracklet landed in {split} ({len(files)} rows, val_fraction={d.val_fraction})",
            )
        counts[f"{split}_tracks"] = len({track_ids[r] for r, _, _ in plan})
        counts[f"{split}_windows"] = len(plan)
    counts["rows_read"] = rows_read
    counts["splits"] = {}
    for split, plan in plans.items():
        rows = sorted({r for r, _, _ in plan})
        present = labels[rows] > d.threshold  # [tracklets, 42]
        counts["splits"][split] = {
            "tracklets": len(rows),
            "windows": len(plan),
            "tracklets_per_attribute": {
                c: int(n) for c, n in zip(gait_attributes.COLUMNS, present.sum(0))
            },
            "attribute_prevalence": {
                c: round(float(f), 4) for c, f in zip(gait_attributes.COLUMNS, present.mean(0))
            },
        }
    # Pass 2, val first: it is the smaller split, so a bad file surfaces sooner. All-or-nothing:
    # both splits and the report are staged and replace data/ together.
    with prepared.Staging(workdir) as stage:
        for split in ("val", "train"):
            frames = _write_split(stage, split, plans[split], track_ids, files, labels, d, seed)
            counts["splits"][split].update(frames)
        stage.write_report({"task": "densegait", "csv": csv_path, **counts})
        stage.commit()
    logging.info(
        "densegait prepare: %d rows, %d absent, %d short; train %d / val %d windows",
        len(files),
        skipped,
        short,
        counts["train_windows"],
        counts["val_windows"],
    )
    return counts


def first_rows(d, csv_path: str, track_ids: list, lines: list) -> tuple[list[int], list[str]]:
    """The rows to read under data.duplicates: each track_id's first row.

    Returns:
      (the rows kept, in order; a line per repeated row: "track_id X on line N (first
      on line M)"). With data.duplicates="error" a repeat raises one line instead.
    """
    first, keep, repeated = {}, [], []
    for row, tid in enumerate(track_ids):
        if tid in first:
            repeated.append((row, first[tid]))
        else:
            first[tid] = row
            keep.append(row)
    if repeated and d.duplicates == "error":
        row, was = repeated[0]
        more = f" ({len(repeated) - 1} more repeated rows)" if len(repeated) > 1 else ""
        raise fail(
            csv_path,
            f"track_id {track_ids[row]!r} is on line {lines[was]} and line {lines[row]}{more}: "
            "its tracklet would be prepared twice; remove the repeated rows, or set "
            "--config.data.duplicates=allow to keep the first row of each track_id and count "
            "the rest in data/report.json",
        )
    if repeated:
        logging.warning(
            "densegait: %d rows of %s repeat an earlier row's track_id (data.duplicates=allow: "
            "the first row of each is kept), e.g. track_id %r on line %d (first on line %d)",
            len(repeated),
            csv_path,
            track_ids[repeated[0][0]],
            lines[repeated[0][0]],
            lines[repeated[0][1]],
        )
    return keep, [
        f"track_id {track_ids[r]!r} on line {lines[r]} (first on line {lines[w]})"
        for r, w in repeated
    ]


def _check_config(d) -> None:
    if d.source not in ("synthetic", "densegait"):
        raise fail("config.data.source", f"use synthetic or densegait, got {d.source!r}")
    if d.missing not in ("error", "skip"):
        raise fail("config.data.missing", f"use error or skip, got {d.missing!r}")
    if d.duplicates not in prepared.DUPLICATES:
        raise fail("config.data.duplicates", f"use error or allow, got {d.duplicates!r}")
    if not 0.0 < d.val_fraction < 1.0:
        raise fail("config.data.val_fraction", f"must be in (0, 1), got {d.val_fraction}")
    if d.window_frames < 1 or d.train_windows_per_track < 1 or d.fps <= 0:
        raise fail("config.data", "window_frames, train_windows_per_track and fps must be > 0")
    for key, allowed in (("frames", FRAMES), ("padding", PADDINGS), ("transform", TRANSFORMS)):
        if d[key] not in allowed:
            raise fail(f"config.data.{key}", f"use {' or '.join(allowed)}, got {d[key]!r}")


def _write_split(
    stage, split, plan, track_ids, files, labels, d, seed: int, chunk: int = 512
) -> dict:
    """Streams the planned windows into a temporary memmap, then stages the split.

    Returns:
      Frame counts for the report: real frames in the windows, those with no joint at
      data.min_confidence ("low_confidence_frames": the tracker lost the person), and
      joints below it.
    """
    low = {"frames": 0, "low_confidence_frames": 0, "low_confidence_joints": 0}
    n, window = len(plan), d.window_frames
    shape = (n, window, len(JOINTS), 3)
    tmp = os.path.join(stage.root, f".{split}-motion.building.npy")
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    motion = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    try:
        mask = np.zeros((n, window), bool)
        raw = np.zeros((min(chunk, n),) + shape[1:], np.float32)
        index, loaded = [], (None, None, None)
        progress = run_log.Progress(f"densegait prepare {split}", n, unit="windows", every_s=10.0)
        for i, (row, path, k) in enumerate(plan):
            if loaded[0] != path:  # a track's windows are consecutive in the plan
                tracklet = load_tracklet(path)
                selected = select_frames(len(tracklet), d, split, seed, row, track_ids[row])
                loaded = (path, tracklet, selected)
            frames = loaded[2][k]
            raw[i % chunk], mask[i] = take_frames(loaded[1], frames, window, d.padding)
            seen = raw[i % chunk][mask[i], :, 2] >= d.min_confidence  # [real frames, 18]
            low["frames"] += len(seen)
            low["low_confidence_frames"] += int((~seen.any(1)).sum())
            low["low_confidence_joints"] += int((~seen).sum())
            start = int(frames[0])
            index.append(
                {
                    "source": track_ids[row],
                    "file": files[row],
                    "start_frame": start,
                    "start_s": start / d.fps,
                }
            )
            if (i + 1) % chunk == 0 or i + 1 == n:
                lo = i - i % chunk
                motion[lo : i + 1], origin = transform(raw[: i + 1 - lo], mask[lo : i + 1], d)
                for r, o in zip(index[lo : i + 1], origin if origin is not None else ()):
                    r["origin"] = [float(v) for v in o]
            progress.update(i + 1)
        motion.flush()
        rows = np.asarray([row for row, _, _ in plan], np.int64)
        data = prepared.PreparedSplit(
            motion, mask, labels[rows], list(gait_attributes.COLUMNS), index
        )
        stage.write_split(split, data)
        return low
    finally:
        del motion
        os.unlink(tmp)


def report_table(report: dict) -> str:
    """The build report as a short text table: rows read and skipped, then per split."""
    splits = list(report["splits"])
    parts = [report["splits"][s] for s in splits]
    rows = [
        ("rows read", [report["rows_read"]] + [None] * (len(parts) - 1)),
        ("  tracklet file absent", [report["skipped_missing"]] + [None] * (len(parts) - 1)),
    ]
    if "duplicates" in report:  # reports written before data.duplicates have no count
        repeated = report["duplicates"]["track_id_repeated"]
        rows.append(("  track_id repeated", [repeated] + [None] * (len(parts) - 1)))
    rows += [
        ("  shorter than a window", [report["short_tracks"]] + [None] * (len(parts) - 1)),
        ("tracklets", [p["tracklets"] for p in parts]),
        ("windows", [p["windows"] for p in parts]),
        ("frames in windows", [p["frames"] for p in parts]),
        ("  with no joint seen", [p["low_confidence_frames"] for p in parts]),
        ("joints below min_confidence", [p["low_confidence_joints"] for p in parts]),
        ("tracklets per attribute", [None] * len(parts)),
    ]
    for c in gait_attributes.COLUMNS:
        rows.append((f"  {c}", [p["tracklets_per_attribute"][c] for p in parts]))
    return prepared.format_table(
        "DenseGait build report; details in data/report.json", splits, rows
    )
