"""BABEL-60 on AMASS: class list, BABEL JSON parsing, label intervals, windows, prepare.

Rules (each chosen so that a label in seconds means the same frames at any
capture rate):
- Frames: sequences are resampled to `data.fps` (30) by time (see amass.py);
  frame i is at time i / 30 s.
- Labels: a segment [start_t, end_t) in seconds covers frame i when
  start_t <= i / 30 < end_t, i.e. frames ceil(start_t * 30 - eps) up to, not
  including, ceil(end_t * 30 - eps), eps = 1e-6 absorbing float noise in the
  JSON. So 2.0 to 4.0 s covers frames 60 to 119. This is BABEL's own rule.
- BABEL's files (babel.is.tue.mpg.de/data.html): train.json and val.json map
  babel_sid -> entry with `feat_p`, `dur`, one `seq_ann` and a `frame_ann`
  that is null when the sequence holds one action; extra_train.json and
  extra_val.json carry lists `seq_anns` / `frame_anns` (either may be null)
  from further annotators. Labels have `act_cat` (a list, or null), and frame
  labels `start_t`/`end_t` in seconds; act_cat is what BABEL-60 counts
  (BABEL's action_recognition uses act_cat, not proc_label).
- A sequence takes the union of its frame labels from every file read; only
  when no file has frame labels for it do its sequence labels cover every
  frame. So an extra annotator who saw one action in a densely labelled
  sequence does not label all of it (BABEL's create_dataset.py likewise reads
  an extra entry with the annotation type of the sid's dense entry).
- Chunks: non-overlapping `chunk_frames` (100) from frame 0. The last, shorter
  chunk is used when it still holds `window_frames` (60) frames, so sequences
  of 2 to 3.3 s are kept, and shorter ones are counted as `short`.
- Windows: `window_frames` per chunk; training draws `train_windows_per_chunk`
  uniform random starts per chunk (seeded by seed and babel_sid, so a window
  does not move when other files come or go); evaluation takes the centred
  window, start (L - W) // 2, so scores are deterministic.
- A window's labels: every class of `data.classes` present in any of its
  frames; windows with none are dropped. act_cat values outside the classes
  ("transition", the rarer BABEL categories) are ignored and counted.
- Columns follow BABEL's index order (BABEL60_CLASSES), whatever order
  `data.classes` lists them in.
"""

import collections
import json
import math
import os
import time
import zlib

import ml_collections
import numpy as np
from absl import logging

from wat_jax import run_log
from wat_jax.data import amass, prepared, rotations, synthetic_babel
from wat_jax.errors import fail

# The 60 most frequent BABEL action categories, in BABEL's index order, spelled as
# the act_cat values in BABEL v1.0's JSON.
BABEL60_CLASSES = (
    "walk", "stand", "hand movements", "turn", "interact with/use object", "arm movements",
    "t pose", "step", "backwards movement", "raising body part", "look", "touch object",
    "leg movements", "forward movement", "circular movement", "stretch", "jump",
    "touching body part", "sit", "place something", "take/pick something up", "run", "bend",
    "throw", "foot movements", "a pose", "stand up", "lowering body part", "sideways movement",
    "move up/down incline", "action with ball", "kick", "gesture", "head movements", "jog",
    "grasp object", "waist movements", "lift something", "knee movement", "wave",
    "move something", "swing body part", "catch", "dance", "lean", "greet", "poses",
    "touching face", "sports move", "exercise/training", "clean something", "punch", "squat",
    "scratch", "hop", "play sport", "stumble", "crossing limbs", "perform", "martial art",
)  # fmt: skip

_EPS = 1e-6


def default_data_config(variant: str) -> ml_collections.ConfigDict:
    """`config.data` for experiments/babel60.py.

    Args:
      variant: "smoke" (tens of synthetic windows), "demo" (a few thousand
        synthetic windows) or "paper" (real AMASS + BABEL; set amass_root and
        babel_dir).

    Returns:
      The data config.
    """
    if variant not in ("smoke", "demo", "paper"):
        raise fail("config variant", f"unknown variant {variant!r}; expected smoke, demo or paper")
    c = ml_collections.ConfigDict()
    c.source = "amass_babel" if variant == "paper" else "synthetic"
    c.amass_root = ""  # folder holding the AMASS dataset folders (KIT/, CMU/, ...)
    c.babel_dir = ""  # folder holding BABEL v1.0's train.json, val.json, extra_train.json
    c.fps = 30
    c.chunk_frames = 100
    c.window_frames = 60
    c.train_windows_per_chunk = {"smoke": 1, "demo": 3, "paper": 1}[variant]
    c.max_missing_fraction = 0.05
    c.babel_splits = ml_collections.ConfigDict(dict(train=("train",), val=("val",)))
    c.synthetic = synthetic_babel.default_config(variant)
    if variant == "paper":
        c.classes = BABEL60_CLASSES
    else:
        c.classes = tuple(k for k in BABEL60_CLASSES if k in c.synthetic.classes)
    return c


def columns(classes) -> tuple[str, ...]:
    """The configured classes in BABEL-60 order; InputError on a name not in BABEL-60."""
    unknown = [k for k in classes if k not in BABEL60_CLASSES]
    if unknown:
        raise fail("data.classes", f"not BABEL-60 categories: {unknown}")
    if not classes:
        raise fail("data.classes", "is empty")
    return tuple(k for k in BABEL60_CLASSES if k in set(classes))


def frame_range(start_t: float, end_t: float, fps: float, n_frames: int) -> tuple[int, int]:
    """[start, stop) frames covered by a label from start_t to end_t seconds."""
    start = max(0, math.ceil(float(start_t) * fps - _EPS))
    stop = min(n_frames, math.ceil(float(end_t) * fps - _EPS))
    return start, max(start, stop)


# A segment: (start_t, end_t, act_cats); start_t None means the whole sequence.
Segment = tuple


def _segments_of(ann, whole: bool, where: str) -> list[Segment]:
    if not isinstance(ann, dict) or not isinstance(ann.get("labels"), list):
        raise fail(where, "annotation has no 'labels' list")
    out = []
    for label in ann["labels"]:
        cats = label.get("act_cat") if isinstance(label, dict) else None
        if not cats:
            continue  # BABEL has labels whose act_cat is null
        if whole:
            out.append((None, None, tuple(cats)))
            continue
        try:
            out.append((float(label["start_t"]), float(label["end_t"]), tuple(cats)))
        except (KeyError, TypeError, ValueError) as e:
            raise fail(where, f"frame label without numeric start_t/end_t ({e})") from e
    return out


def _annotations(entry: dict, key: str, where: str) -> list:
    """The entry's `key` (one annotation or null) and `key + "s"` (a list or null)."""
    many = entry.get(key + "s")
    if many is not None and not isinstance(many, list):
        raise fail(where, f"'{key}s' must be a list or null, got {type(many).__name__}")
    return [a for a in [entry.get(key)] + list(many or []) if a is not None]


def read_babel(babel_dir: str, names) -> dict[str, dict]:
    """Reads BABEL JSON files into {babel_sid: {"feat_p", "segments"}}.

    Args:
      babel_dir: the folder of BABEL's JSON files.
      names: file stems to read, e.g. ("train", "extra_train").

    Returns:
      Entries merged by babel_sid: the union of their frame labels, or of their
      sequence labels when no file has frame labels for that sid.
    """
    frame: dict[str, list] = {}
    seq: dict[str, list] = {}
    feat_p: dict[str, str] = {}
    for name in names:
        path = os.path.join(babel_dir, f"{name}.json")
        try:
            with open(path) as f:
                data = json.load(f)
        except OSError as e:
            raise fail(path, f"cannot read BABEL file ({e.strerror}); check data.babel_dir") from e
        except ValueError as e:
            raise fail(path, f"not valid JSON ({e})") from e
        if not isinstance(data, dict):
            raise fail(path, "expected a JSON object mapping babel_sid to entries")
        for sid, entry in data.items():
            where = f"{path} [babel_sid {sid}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("feat_p"), str):
                raise fail(where, "entry has no 'feat_p' string")
            sid = str(sid)
            feat_p.setdefault(sid, entry["feat_p"])
            frame.setdefault(sid, []).extend(
                s
                for a in _annotations(entry, "frame_ann", where)
                for s in _segments_of(a, False, where)
            )
            seq.setdefault(sid, []).extend(
                s
                for a in _annotations(entry, "seq_ann", where)
                for s in _segments_of(a, True, where)
            )
    return {
        sid: {"feat_p": feat_p[sid], "segments": frame[sid] if frame[sid] else seq[sid]}
        for sid in feat_p
    }


def frame_labels(segments, n_frames: int, fps: float, classes, ignored: collections.Counter):
    """[n_frames, C] bool per-frame labels; counts act_cat values not in classes."""
    col = {k: i for i, k in enumerate(classes)}
    out = np.zeros((n_frames, len(classes)), bool)
    for start_t, end_t, cats in segments:
        if start_t is None:
            start, stop = 0, n_frames
        else:
            start, stop = frame_range(start_t, end_t, fps, n_frames)
        for cat in cats:
            if cat in col:
                out[start:stop, col[cat]] = True
            else:
                ignored[cat] += 1
    return out


def window_starts(n_frames: int, chunk: int, window: int, per_chunk: int, rng) -> list[int]:
    """Window start frames: per chunk, `per_chunk` random ones (rng) or the centred one (None)."""
    starts = []
    for c0 in range(0, n_frames, chunk):
        length = min(chunk, n_frames - c0)
        if length < window:
            continue
        if rng is None:
            starts.append(c0 + (length - window) // 2)
        else:
            starts += [c0 + int(s) for s in rng.integers(0, length - window + 1, per_chunk)]
    return starts


def build_split(data_cfg, amass_root: str, babel_dir: str, split: str, seed: int):
    """Windows of one split.

    Returns:
      (prepared.PreparedSplit, stats dict).
    """
    classes = columns(data_cfg.classes)
    fps, chunk, window = (
        float(data_cfg.fps),
        int(data_cfg.chunk_frames),
        int(data_cfg.window_frames),
    )
    if not 0 < window <= chunk:
        raise fail("data.window_frames", f"must be in 1..chunk_frames={chunk}, got {window}")
    names = tuple(data_cfg.babel_splits[split])
    entries = read_babel(babel_dir, names)
    if not entries:
        raise fail(os.path.join(babel_dir, f"{names[0]}.json"), "has no entries")

    sids = sorted(entries)
    paths = {sid: amass.resolve(amass_root, entries[sid]["feat_p"]) for sid in sids}
    missing = [sid for sid in sids if paths[sid] is None]
    if len(missing) > data_cfg.max_missing_fraction * len(sids):
        first = entries[missing[0]]["feat_p"]
        raise fail(
            os.path.join(amass_root, first),
            f"missing: {len(missing)} of {len(sids)} BABEL '{split}' sequences have "
            f"no .npz under data.amass_root (max_missing_fraction="
            f"{data_cfg.max_missing_fraction}); {amass.missing_hint(amass_root, first)}",
        )
    for sid in missing[:5]:
        logging.warning(
            "babel %s: no .npz for %s (sid %s); skipped", split, entries[sid]["feat_p"], sid
        )

    ignored = collections.Counter()
    motion, labels, index = [], [], []
    short = 0
    t0 = time.time()
    todo = [sid for sid in sids if paths[sid] is not None]
    progress = run_log.Progress(f"babel {split}", len(todo), unit="sequences", every_s=10.0)
    for n, sid in enumerate(todo):
        feat_p = entries[sid]["feat_p"]
        rot, trans = amass.resample(amass.load_npz(paths[sid]), fps)  # [T, 24, 3, 3], [T, 3]
        per_frame = frame_labels(entries[sid]["segments"], len(rot), fps, classes, ignored)
        rng = np.random.default_rng([seed, zlib.crc32(f"{split}/{sid}".encode())])
        starts = window_starts(
            len(rot),
            chunk,
            window,
            int(data_cfg.train_windows_per_chunk),
            rng if split == "train" else None,
        )
        short += not starts
        rot6d = rotations.matrix_to_rot6d(rot)  # [T, 24, 6]
        for s in starts:
            y = per_frame[s : s + window].any(0)
            if not y.any():
                continue
            motion.append(amass.window_features(rot6d[s : s + window], trans[s : s + window]))
            labels.append(y)
            index.append(dict(source=feat_p, babel_sid=sid, start_frame=s, start_s=s / fps))
        progress.update(n + 1)
    if not motion:
        raise fail(
            babel_dir, f"split '{split}' ({names}) gave no window with a label in data.classes"
        )

    motion = np.stack(motion)  # [N, W, 25, 6]
    data = prepared.PreparedSplit(
        motion,
        np.ones(motion.shape[:2], bool),
        np.stack(labels).astype(np.float32),
        list(classes),
        index,
    )
    stats = dict(
        sequences=len(todo),
        windows=len(motion),
        skipped_missing=len(missing),
        skipped_short=short,
        ignored_act_cat=dict(ignored.most_common()),
        windows_per_class={k: int(v) for k, v in zip(classes, data.labels.sum(0))},
        seconds=round(time.time() - t0, 2),
    )
    return data, stats


def prepare(data_cfg, workdir: str, seed: int) -> dict:
    """Writes workdir/data/{train,val} from AMASS + BABEL, or from synthetic files in that format.

    Args:
      data_cfg: `config.data` (see default_data_config).
      workdir: the experiment folder.
      seed: draws the training windows (and the synthetic data).

    Returns:
      {split: stats}: windows, sequences, skipped_missing, skipped_short,
      ignored_act_cat (value -> count), windows_per_class, seconds.
    """
    if data_cfg.source == "synthetic":
        amass_root, babel_dir = synthetic_babel.write_synthetic(
            os.path.join(workdir, "raw"), data_cfg, seed
        )
    elif data_cfg.source == "amass_babel":
        amass_root, babel_dir = data_cfg.amass_root, data_cfg.babel_dir
        for key, path in (("data.amass_root", amass_root), ("data.babel_dir", babel_dir)):
            if not path or not os.path.isdir(path):
                raise fail(key, f"{path!r} is not a folder; point it at your AMASS/BABEL download")
    else:
        raise fail(
            "data.source", f"unknown source {data_cfg.source!r}; expected synthetic or amass_babel"
        )

    counts = {}
    for split in prepared.SPLITS:
        data, stats = build_split(data_cfg, amass_root, babel_dir, split, seed)
        prepared.write_split(workdir, split, data)
        top = list(stats["ignored_act_cat"].items())[:8]
        logging.info(
            "babel %s: %d windows from %d sequences (%d missing, %d short) in %.1f s; "
            "ignored act_cat (top): %s",
            split,
            stats["windows"],
            stats["sequences"],
            stats["skipped_missing"],
            stats["skipped_short"],
            stats["seconds"],
            top,
        )
        counts[split] = stats
    return counts
