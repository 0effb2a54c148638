"""BABEL-60 on AMASS: class list, BABEL JSON parsing, label rules, windows, prepare.

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
  (BABEL's action_recognition uses act_cat, not proc_label). An entry with the
  singular keys is a sequence's main entry, one with the plural keys an extra
  one, whichever file holds it.

Which annotations label a sequence follows BABEL's action_recognition/
data_gen/create_dataset.py (Babel_AR._update_dataset, lines 384-421 at commit
c012f42), with its two choices as options:
- The main entry gives one annotation: its frame_ann whenever that is not null,
  else its seq_ann over the whole sequence (lines 385-392). A frame_ann whose
  labels all have act_cat null therefore gives no label, and the sequence no
  window (`data.null_frame_labels="skip"`, the default); "sequence" treats such
  a frame_ann as absent, so the seq_ann labels the sequence instead.
- An extra entry is read with the main entry's annotation type (lines
  398-399): frame_anns when the main entry used frame_ann, seq_anns when it
  used seq_ann, the other list ignored; for a sid with no main entry, frame_anns
  unless null, else seq_anns (lines 401-404).
- Each annotation (main or extra annotator) makes its own samples (lines
  417-421): `data.extra_annotators="separate"`, the default, gives every window
  once per annotation, each with that annotator's labels; "union" gives it once
  with the union of all annotators' labels; "ignore" reads the main entries only.
- Segments: act_cat null or empty is dropped (create_dataset.py lines 262 and
  308), as is one with end_t < start_t (warned once per file), one whose
  act_cat values are all outside `data.classes`, and one that covers no frame of
  the resampled sequence; each is counted by reason in the build report.
- Chunks: non-overlapping `chunk_frames` (100) from frame 0. The last, shorter
  chunk is used when it still holds `window_frames` (60) frames, so sequences
  of 2 to 3.3 s are kept, and shorter ones are counted as too short.
- Windows: `window_frames` per chunk; training draws `train_windows_per_chunk`
  uniform random starts per chunk (seeded by seed and babel_sid, so a window
  does not move when other files come or go); evaluation takes the centred
  window, start (L - W) // 2, so scores are deterministic.
- A window's labels: every class of `data.classes` present in any of its
  frames; windows with none are dropped and counted.
- Columns follow BABEL's index order (BABEL60_CLASSES), whatever order
  `data.classes` lists them in.
- A babel_sid read more than once is an error naming the file(s) and the sid
  (`data.duplicates="error"`, the default): a key twice in one file (JSON would keep
  the last entry and drop the first without a word), main entries in two files of one
  split, or a sid in both the train and the val files (the model would be trained on
  what it is scored on). `data.duplicates="allow"` keeps the first entry of a file, the
  main entry of the first file of a split, and a sid in both splits in both; the build
  report counts each reason (`duplicates`) with examples.
"""

import collections
import dataclasses
import json
import math
import os
import time
import zlib

import numpy as np
from absl import logging

from wat_jax.reporting import run_log
from wat_jax.data import amass, body_model, prepared, synthetic_babel
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

NULL_FRAME_LABELS = ("skip", "sequence")
EXTRA_ANNOTATORS = ("separate", "union", "ignore")
# data.duplicates (prepared.DUPLICATES): a babel_sid read more than once is an error, or
# (allow) counted in the build report by reason and resolved as `Duplicate.allowed` says.
DUPLICATE_REASONS = ("sid_twice_in_file", "sid_twice_in_split", "sid_in_train_and_val")
_DUPLICATE_WORDS = {
    "sid_twice_in_file": "repeated as a key of one file",
    "sid_twice_in_split": "with main entries in two files of one split",
    "sid_in_train_and_val": "in both train and val",
}
SEQUENCE_SKIPS = ("missing_file", "smplx", "too_short", "no_label")
SEGMENT_DROPS = ("null_act_cat", "end_before_start", "outside_classes", "outside_sequence")
_EPS = 1e-6
_WARN_EACH = 5  # per kind of warning and split; the report holds every count


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


# ---------------------------------------------------------------- reading the files


@dataclasses.dataclass
class Entry:
    """One babel_sid's entry in one file."""

    path: str  # the JSON file
    sid: str
    feat_p: str
    raw: dict

    @property
    def where(self) -> str:
        return f"{self.path} [babel_sid {self.sid}]"

    def one(self, key: str):
        """The singular annotation `key` (frame_ann / seq_ann): a dict or None."""
        ann = self.raw.get(key)
        if ann is not None and not isinstance(ann, dict):
            raise fail(self.where, f"'{key}' must be an object or null, got {type(ann).__name__}")
        return ann

    def many(self, key: str):
        """The plural annotations `key` (frame_anns / seq_anns): a list or None."""
        anns = self.raw.get(key)
        if anns is not None and not isinstance(anns, list):
            raise fail(self.where, f"'{key}' must be a list or null, got {type(anns).__name__}")
        if anns is not None and not all(isinstance(a, dict) or a is None for a in anns):
            raise fail(self.where, f"'{key}' must hold objects")
        return anns


@dataclasses.dataclass
class Record:
    """Everything the files say about one babel_sid."""

    feat_p: str
    main: Entry | None = None
    extras: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Duplicate:
    """One babel_sid read more than once, for data.duplicates."""

    reason: str  # one of DUPLICATE_REASONS
    sid: str
    where: str  # the file or files
    problem: str  # what is wrong, in words
    allowed: str  # what data.duplicates=allow does with it

    @property
    def message(self) -> str:
        return f"{self.where}: {self.problem}"


class _JsonObject(dict):
    """A JSON object as json.load builds it (a repeated key: the last value), and in
    `repeats` every value of each key it holds more than once, in file order."""

    repeats: dict | None = None


def _json_object(pairs) -> _JsonObject:
    obj = _JsonObject(pairs)
    if len(obj) != len(pairs):
        seen = collections.defaultdict(list)
        for key, value in pairs:
            seen[key].append(value)
        obj.repeats = {k: v for k, v in seen.items() if len(v) > 1}
    return obj


def _load_json(path: str):
    """A BABEL file; repeated top-level keys keep their first value (json.load keeps the
    last). Returns (data, [(key, [values...]) of keys that repeat])."""
    try:
        with open(path) as f:
            data = json.load(f, object_pairs_hook=_json_object)
    except OSError as e:
        raise fail(path, f"cannot read BABEL file ({e.strerror}); check data.babel_dir") from e
    except ValueError as e:
        raise fail(path, f"not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise fail(path, "expected a JSON object mapping babel_sid to entries")
    repeats = list((data.repeats or {}).items())
    for key, values in repeats:
        data[key] = values[0]
    return data, repeats


def read_babel(babel_dir: str, names) -> tuple[dict[str, Record], list[Duplicate]]:
    """Reads BABEL JSON files.

    Args:
      babel_dir: the folder of BABEL's JSON files.
      names: file stems to read, e.g. ("train", "extra_train").

    Returns:
      ({babel_sid: Record}, the sids read more than once). An entry with
      `seq_ann`/`frame_ann` is the sid's main entry, one with `seq_anns`/`frame_anns`
      an extra one. A sid that is a key twice in one file keeps its first entry
      ("sid_twice_in_file"); a sid with main entries in two files keeps the first file's
      ("sid_twice_in_split"); `check_duplicates` decides whether either is an error.
    """
    records: dict[str, Record] = {}
    duplicates = []
    for name in names:
        path = os.path.join(babel_dir, f"{name}.json")
        data, repeats = _load_json(path)
        for sid, values in repeats:
            differ = any(v != values[0] for v in values[1:])
            duplicates.append(
                Duplicate(
                    "sid_twice_in_file",
                    str(sid),
                    path,
                    f"babel_sid {sid} is a key {len(values)} times in this file"
                    + (" with different entries" if differ else " (the same entry)")
                    + "; JSON keeps only one of them",
                    "keep the first entry",
                )
            )
        for sid, raw in data.items():
            sid = str(sid)
            where = f"{path} [babel_sid {sid}]"
            if not isinstance(raw, dict) or not isinstance(raw.get("feat_p"), str):
                raise fail(where, "entry has no 'feat_p' string")
            entry = Entry(path, sid, raw["feat_p"], raw)
            is_main = "frame_ann" in raw or "seq_ann" in raw
            is_extra = "frame_anns" in raw or "seq_anns" in raw
            if not (is_main or is_extra):
                raise fail(where, "entry has none of seq_ann, frame_ann, seq_anns, frame_anns")
            for key in ("frame_ann", "seq_ann"):
                entry.one(key)  # type checks now, so errors name the file early
            for key in ("frame_anns", "seq_anns"):
                entry.many(key)
            rec = records.setdefault(sid, Record(raw["feat_p"]))
            if is_main:
                if rec.main is None:
                    rec.main = entry
                    rec.feat_p = entry.feat_p
                else:
                    duplicates.append(
                        Duplicate(
                            "sid_twice_in_split",
                            sid,
                            f"{rec.main.path} and {path}",
                            f"babel_sid {sid} has a main entry (seq_ann/frame_ann) in both "
                            "files of one split",
                            f"keep the one in {os.path.basename(rec.main.path)}",
                        )
                    )
            if is_extra:
                rec.extras.append(entry)
    return records, duplicates


def _record_file(rec: Record) -> str:
    return rec.main.path if rec.main is not None else rec.extras[0].path


def split_overlaps(records: dict[str, dict[str, Record]]) -> list[Duplicate]:
    """The sids of both `records["train"]` and `records["val"]` ({split: read_babel's
    records}): the model would train on what it is scored on."""
    train, val = records["train"], records["val"]
    return [
        Duplicate(
            "sid_in_train_and_val",
            sid,
            f"{_record_file(train[sid])} and {_record_file(val[sid])}",
            f"babel_sid {sid} is in both the train and the val files (data.babel_splits): "
            "the model would be trained on what it is scored on",
            "prepare it into both splits",
        )
        for sid in sorted(set(train) & set(val))
    ]


def check_duplicates(data_cfg, found: list[Duplicate], context: str = "babel") -> dict:
    """data.duplicates applied to the sids read more than once: "error" raises one line
    (the first one found, the file or files, how many there are, what to do); "allow"
    logs them and returns the counts by reason for the build report."""
    mode = _duplicates_mode(data_cfg)
    counts = {reason: 0 for reason in DUPLICATE_REASONS}
    for d in found:
        counts[d.reason] += 1
    if not found:
        return counts
    first = found[0]
    if mode == "error":
        more = len(found) - 1
        also = f" ({more} more babel_sids read twice)" if more else ""
        raise fail(
            first.where,
            f"{first.problem}{also}; fix the files, or set --config.data.duplicates=allow "
            f"to {first.allowed} and count it in data/report.json",
        )
    for reason in DUPLICATE_REASONS:
        some = [d for d in found if d.reason == reason]
        if some:
            logging.warning(
                "%s: %d babel_sids %s (data.duplicates=allow: %s), e.g. %s",
                context,
                len(some),
                _DUPLICATE_WORDS[reason],
                some[0].allowed,
                some[0].message,
            )
    return counts


def _duplicates_mode(data_cfg) -> str:
    mode = data_cfg.duplicates
    if mode not in prepared.DUPLICATES:
        raise fail("data.duplicates", f"must be one of {prepared.DUPLICATES}, got {mode!r}")
    return mode


# ---------------------------------------------------------------- which annotations count


@dataclasses.dataclass
class Annotation:
    """One annotator's labels of one sequence."""

    entry: Entry
    kind: str  # "frame_ann" or "seq_ann"
    labels: list  # BABEL label objects
    name: str  # e.g. "val.json frame_ann", "extra_val.json frame_anns[1]"


def _any_act_cat(ann: dict) -> bool:
    labels = ann.get("labels") if isinstance(ann, dict) else None
    return any(isinstance(x, dict) and x.get("act_cat") for x in labels or [])


def _annotation(entry: Entry, kind: str, ann: dict, key: str) -> Annotation:
    if not isinstance(ann.get("labels"), list):
        raise fail(entry.where, f"{key} has no 'labels' list")
    return Annotation(entry, kind, ann["labels"], f"{os.path.basename(entry.path)} {key}")


def label_sources(
    rec: Record, null_frame_labels: str = "skip", extra_annotators: str = "separate"
) -> tuple[list[Annotation], collections.Counter]:
    """The annotations that label one sequence, by the rules of the module docstring.

    Args:
      rec: what the files say about the sid.
      null_frame_labels: "skip" or "sequence".
      extra_annotators: "separate", "union" or "ignore" ("separate" and "union" pick
        the same annotations; they differ in how windows are labelled).

    Returns:
      (annotations, main first; counts of annotations left out: "other_type" (an extra
      annotator's list of the type the main entry did not use), "extra_ignored",
      "frame_all_null" (a frame annotation whose act_cat are all null)).
    """
    left_out = collections.Counter()
    out, kind = [], None
    fallback = null_frame_labels == "sequence"
    if rec.main is not None:
        frame, seq = rec.main.one("frame_ann"), rec.main.one("seq_ann")
        all_null = frame is not None and not _any_act_cat(frame)
        left_out["frame_all_null"] += all_null
        if frame is not None and not (fallback and all_null):
            kind = "frame_ann"
            out.append(_annotation(rec.main, kind, frame, "frame_ann"))
        else:
            kind = "seq_ann"
            if seq is not None:
                out.append(_annotation(rec.main, kind, seq, "seq_ann"))
    for extra in rec.extras:
        frames = [a for a in extra.many("frame_anns") or [] if a is not None]
        seqs = [a for a in extra.many("seq_anns") or [] if a is not None]
        if extra_annotators == "ignore":
            left_out["extra_ignored"] += len(frames) + len(seqs)
            continue
        null_frames = [a for a in frames if not _any_act_cat(a)]
        left_out["frame_all_null"] += len(null_frames)
        if fallback:  # an all-null frame annotation counts as absent
            frames = [a for a in frames if _any_act_cat(a)]
        k = kind
        if k is None:  # a sid with extra entries only: frame_anns unless there are none
            has_frames = extra.many("frame_anns") is not None and (not fallback or frames)
            k = "frame_ann" if has_frames else "seq_ann"
        used, other = (frames, seqs) if k == "frame_ann" else (seqs, frames)
        left_out["other_type"] += len(other)
        key = k + "s"
        for i, ann in enumerate(extra.many(key) or []):
            if ann is not None and any(ann is a for a in used):
                out.append(_annotation(extra, k, ann, f"{key}[{i}]"))
    return out, left_out


# ---------------------------------------------------------------- segments and frames


@dataclasses.dataclass
class Segment:
    start_t: float | None  # None: the whole sequence (a seq_ann label)
    end_t: float | None
    cols: tuple  # column indices of its act_cat values inside the classes


class Tally:
    """The counts of one split's build report."""

    def __init__(self, classes):
        self.classes = classes
        self.sequences = collections.Counter()
        self.segments = collections.Counter()
        self.annotations = collections.Counter()
        self.windows = collections.Counter()
        self.outside_values = collections.Counter()
        self.per_class = np.zeros(len(classes), np.int64)
        self.warnings = []
        self.examples = collections.defaultdict(list)
        self.reversed_by_file = {}  # file -> [count, first sid, start_t, end_t]

    def warn(self, kind: str, message: str) -> None:
        """Logs the first few warnings of each kind; all are counted in the report."""
        self.examples[kind].append(message)
        if len(self.examples[kind]) <= _WARN_EACH:
            logging.warning("%s", message)
            self.warnings.append(message)


def parse_segments(ann: Annotation, col: dict, tally: Tally) -> list[Segment]:
    """The segments of one annotation that name a class, with the others counted by reason."""
    out = []
    for label in ann.labels:
        tally.segments["read"] += 1
        cats = label.get("act_cat") if isinstance(label, dict) else None
        if not cats:  # BABEL has labels whose act_cat is null
            tally.segments["null_act_cat"] += 1
            continue
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            raise fail(ann.entry.where, f"act_cat must be a list of names or null, got {cats!r}")
        start_t = end_t = None
        if ann.kind == "frame_ann":
            try:
                start_t, end_t = float(label["start_t"]), float(label["end_t"])
            except (KeyError, TypeError, ValueError) as e:
                raise fail(
                    ann.entry.where, f"frame label without numeric start_t/end_t ({e})"
                ) from e
            if not (math.isfinite(start_t) and math.isfinite(end_t)):
                raise fail(ann.entry.where, f"start_t/end_t must be finite, got {start_t}, {end_t}")
            if end_t < start_t:
                tally.segments["end_before_start"] += 1
                seen = tally.reversed_by_file.setdefault(
                    ann.entry.path, [0, ann.entry.sid, start_t, end_t]
                )
                seen[0] += 1
                continue
        for c in cats:
            if c not in col:
                tally.outside_values[c] += 1
        idx = tuple(sorted({col[c] for c in cats if c in col}))
        if not idx:
            tally.segments["outside_classes"] += 1
            continue
        out.append(Segment(start_t, end_t, idx))
    return out


def frame_labels(segments, n_frames: int, fps: float, num_classes: int, tally: Tally | None = None):
    """[n_frames, C] bool per-frame labels; segments covering no frame are counted."""
    out = np.zeros((n_frames, num_classes), bool)
    for seg in segments:
        if seg.start_t is None:
            start, stop = 0, n_frames
        else:
            start, stop = frame_range(seg.start_t, seg.end_t, fps, n_frames)
        if stop <= start:
            if tally is not None:
                tally.segments["outside_sequence"] += 1
            continue
        if tally is not None:
            tally.segments["kept"] += 1
        out[start:stop, list(seg.cols)] = True
    return out


def sequence_labels(data_cfg, rec: Record, n_frames: int) -> np.ndarray:
    """[n_frames, C] bool frame labels of one sequence: the union over the annotations
    that count, by the same rules as prepare (label_sources, parse_segments,
    frame_labels). The timeline scores whole sequences against these."""
    classes = columns(data_cfg.classes)
    col = {k: i for i, k in enumerate(classes)}
    null_mode, extra_mode = _options(data_cfg)
    anns, _ = label_sources(rec, null_mode, extra_mode)
    tally = Tally(classes)
    out = np.zeros((n_frames, len(classes)), bool)
    for ann in anns:
        segs = parse_segments(ann, col, tally)
        out |= frame_labels(segs, n_frames, float(data_cfg.fps), len(classes))
    return out


def window_starts(
    n_frames: int, chunk: int, window: int, per_chunk: int, rng, partial: bool = True
) -> list[int]:
    """Window start frames: per chunk, `per_chunk` random ones (rng) or the centred one (None).

    `partial`: the last, shorter chunk gives windows too when it holds `window` frames
    (the reference, `data.partial_chunks=False`, uses whole chunks only).
    """
    starts = []
    for c0 in range(0, n_frames, chunk):
        length = min(chunk, n_frames - c0)
        if length < window or (length < chunk and not partial):
            continue
        if rng is None:
            starts.append(c0 + (length - window) // 2)
        else:
            starts += [c0 + int(s) for s in rng.integers(0, length - window + 1, per_chunk)]
    return starts


# ---------------------------------------------------------------- one split


def _options(data_cfg) -> tuple[str, str]:
    null_mode = data_cfg.null_frame_labels
    extra_mode = data_cfg.extra_annotators
    if null_mode not in NULL_FRAME_LABELS:
        raise fail(
            "data.null_frame_labels", f"must be one of {NULL_FRAME_LABELS}, got {null_mode!r}"
        )
    if extra_mode not in EXTRA_ANNOTATORS:
        raise fail(
            "data.extra_annotators", f"must be one of {EXTRA_ANNOTATORS}, got {extra_mode!r}"
        )
    return null_mode, extra_mode


def _no_window_error(split: str, names, files, tally: Tally):
    seg = tally.segments
    read = seg["read"]
    where = files[0] if len(files) == 1 else f"{os.path.dirname(files[0])} ({', '.join(names)})"
    if read and seg["null_act_cat"] == read:
        return fail(
            where,
            f"split '{split}': every one of its {read} labels has act_cat null, i.e. its labels "
            "are withheld (as in BABEL's test.json); prepare train and val only",
        )
    skipped = {k: tally.sequences[k] for k in SEQUENCE_SKIPS if tally.sequences[k]}
    dropped = {k: seg[k] for k in SEGMENT_DROPS if seg[k]}
    return fail(
        where,
        f"split '{split}' gave no window with a label in data.classes: "
        f"{tally.sequences['read']} sequences (skipped: {skipped}), {read} labels "
        f"(dropped: {dropped})",
    )


class _Windows:
    """The windows of a split as they are cut: appended to a raw file in `scratch_dir` and
    memory-mapped at the end, so a large split is never held in memory (twice, with the
    list and its stack); in memory when `scratch_dir` is None. The same array either way."""

    def __init__(self, scratch_dir: str | None, name: str):
        self.count, self.shape, self.dtype, self.path = 0, None, None, None
        self._items, self._file = [], None
        if scratch_dir:
            os.makedirs(scratch_dir, exist_ok=True)
            self.path = os.path.join(scratch_dir, f".{name}-motion.raw")
            self._file = open(self.path, "wb")  # noqa: SIM115 (closed by array() or GC)

    def __len__(self) -> int:
        return self.count

    def append(self, feats: np.ndarray) -> None:
        feats = np.ascontiguousarray(feats)
        if self.shape is None:
            self.shape, self.dtype = feats.shape, feats.dtype
        elif feats.shape != self.shape or feats.dtype != self.dtype:
            raise ValueError(f"window {feats.shape} {feats.dtype}, expected {self.shape}")
        if self._file is not None:
            self._file.write(feats.tobytes())
        else:
            self._items.append(feats)
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def array(self) -> np.ndarray:
        """[N, W, 25, 6]: memory-mapped (read-only) from the scratch file, or stacked."""
        if self._file is None:
            return np.stack(self._items)
        self._file.close()
        return np.memmap(self.path, self.dtype, mode="r", shape=(self.count,) + self.shape)


def build_split(
    data_cfg,
    amass_root: str,
    babel_dir: str,
    split: str,
    seed: int,
    scratch_dir=None,
    workdir=None,
    records=None,
):
    """Windows of one split.

    Args:
      records: the split's read_babel records, their duplicates already checked (prepare
        reads both splits first, to check sids across them); None reads the files here
        and checks their duplicates under data.duplicates.
      workdir: the run's folder (where the synthetic source keeps its stand-in body model).
      scratch_dir: where the windows are streamed to while the split is read (prepare
        passes its staging folder); None keeps them in memory.

    Returns:
      (prepared.PreparedSplit, the split's build report: see `split_report`). With a
      scratch_dir its motion is memory-mapped from `<scratch_dir>/.<split>-motion.raw`,
      which the caller removes once the split is written.
    """
    t0 = time.time()
    # Options and records: the config's classes and windows, the split's BABEL entries.
    classes = columns(data_cfg.classes)
    null_mode, extra_mode = _options(data_cfg)
    chunk, window = int(data_cfg.chunk_frames), int(data_cfg.window_frames)
    if not 0 < window <= chunk:
        raise fail("data.window_frames", f"must be in 1..chunk_frames={chunk}, got {window}")
    names = tuple(data_cfg.babel_splits[split])
    files = [os.path.join(babel_dir, f"{n}.json") for n in names]
    if records is None:
        records, found = read_babel(babel_dir, names)
        check_duplicates(data_cfg, found, f"babel {split}")
    if not records:
        raise fail(files[0], "has no entries")
    tally = Tally(classes)
    sids = sorted(records)
    tally.sequences["read"] = len(sids)

    # Files: each sequence's AMASS .npz, too many absent ones refused before any is read.
    paths = _motion_files(data_cfg, amass_root, split, records, sids, tally)

    # Windows: cut from every sequence with a label, streamed to the scratch file. An
    # error below drops `motion`, whose file CPython then closes; the staging folder
    # holding it is removed by prepare.
    motion, labels, index = _Windows(scratch_dir, split), [], []
    cutter = _Cutter(data_cfg, split, seed, workdir, tally, null_mode, extra_mode)
    todo = [sid for sid in sids if paths[sid] is not None]
    progress = run_log.Progress(f"babel {split}", len(todo), unit="sequences", every_s=10.0)
    for n, sid in enumerate(todo):
        progress.update(n + 1)
        cut = cutter.windows(sid, records[sid], paths[sid])
        for feats, y, row in cut:
            motion.append(feats)
            labels.append(y)
            index.append(row)
        if cut:
            tally.sequences["used"] += 1
    _warn_totals(tally, split)
    if not motion:
        raise _no_window_error(split, names, files, tally)

    # The split: the windows as the prepared format holds them, and its report.
    motion = motion.array()  # [N, W, 25, 6]
    data = prepared.PreparedSplit(
        motion,
        np.ones(motion.shape[:2], bool),
        np.stack(labels).astype(np.float32),
        list(classes),
        index,
    )
    tally.windows["kept"] = len(motion)
    tally.per_class = data.labels.sum(0).astype(np.int64)
    return data, split_report(tally, files, time.time() - t0)


def _motion_files(data_cfg, amass_root: str, split: str, records, sids, tally) -> dict:
    """sid -> its AMASS .npz, or None when absent (a SMPL-X file, or none: tallied and
    warned); more absent than data.max_missing_fraction is one error naming the first."""
    paths, absent = {}, []
    for sid in sids:
        feat_p = records[sid].feat_p
        paths[sid] = amass.resolve(amass_root, feat_p)
        if paths[sid] is not None:
            continue
        smplx = amass.smplx_file(amass_root, feat_p)
        absent.append((sid, smplx))
        if smplx is not None:
            tally.sequences["smplx"] += 1
            tally.warn(
                "smplx",
                f"babel {split}: {smplx} (sid {sid}, feat_p {feat_p}) is a SMPL-X N file; "
                "BABEL needs the SMPL+H G release of AMASS (*_poses.npz); skipped",
            )
        else:
            tally.sequences["missing_file"] += 1
            tally.warn(
                "missing_file",
                f"babel {split}: no .npz for {feat_p} (sid {sid}); "
                f"{amass.missing_hint(amass_root, feat_p)}; skipped",
            )
    if len(absent) > data_cfg.max_missing_fraction * len(sids):
        sid = next((s for s, x in absent if x is not None), absent[0][0])
        first = records[sid].feat_p
        raise fail(
            os.path.join(amass_root, first),
            f"missing: {len(absent)} of {len(sids)} BABEL '{split}' sequences have "
            f"no SMPL+H .npz under data.amass_root (max_missing_fraction="
            f"{data_cfg.max_missing_fraction}); {amass.missing_hint(amass_root, first)}",
        )
    return paths


@dataclasses.dataclass
class _Cutter:
    """Cuts one split's sequences into labelled windows (what `windows` reads beside the
    sequence: the split's settings, and the tally it counts into)."""

    data_cfg: object
    split: str
    seed: int
    workdir: str | None
    tally: Tally
    null_mode: str
    extra_mode: str

    def windows(self, sid: str, rec: Record, path: str) -> list[tuple]:
        """The sequence's windows as (features [W, 25, 6], labels [C] bool, index row), one
        per window and label source (annotator, or their union) with a label in it."""
        d, tally = self.data_cfg, self.tally
        classes = self.tally.classes
        col = {k: i for i, k in enumerate(classes)}
        fps, chunk, window = float(d.fps), int(d.chunk_frames), int(d.window_frames)
        anns, left_out = label_sources(rec, self.null_mode, self.extra_mode)
        tally.annotations.update(left_out)
        parsed = [(a, parse_segments(a, col, tally)) for a in anns]
        tally.annotations["main"] += sum(a.entry is rec.main for a in anns)
        tally.annotations["extra"] += sum(a.entry is not rec.main for a in anns)
        if not any(segs for _, segs in parsed):
            tally.sequences["no_label"] += 1
            return []
        rot6d, track = amass.sequence_features(amass.load_npz(path), d, self.workdir)
        per_frame = [frame_labels(segs, len(rot6d), fps, len(classes), tally) for _, segs in parsed]
        sample_names = [a.name for a, _ in parsed]
        if self.extra_mode == "union":
            per_frame = [np.any(per_frame, axis=0)]
            sample_names = ["+".join(sample_names)]
        # Train draws its window starts from a generator of (seed, split/sid): the same
        # windows whatever order or subset of sequences is read. Val takes chunk centres.
        rng = np.random.default_rng([self.seed, zlib.crc32(f"{self.split}/{sid}".encode())])
        starts = window_starts(
            len(rot6d),
            chunk,
            window,
            int(d.train_windows_per_chunk),
            rng if self.split == "train" else None,
            partial=bool(d.partial_chunks),
        )
        if not starts:
            tally.sequences["too_short"] += 1
            return []
        out = []
        for s in starts:
            feats = None
            for frames, name in zip(per_frame, sample_names):
                y = frames[s : s + window].any(0)
                if not y.any():
                    tally.windows["no_label"] += 1
                    continue
                if feats is None:  # computed once, shared by the window's label sources
                    feats = amass.window_features(rot6d[s : s + window], track[s : s + window])
                row = dict(
                    source=rec.feat_p,
                    babel_sid=sid,
                    start_frame=s,
                    start_s=s / fps,
                    annotation=name,
                )
                out.append((feats, y, row))
        if not out:
            tally.sequences["no_label"] += 1
        return out


def _warn_totals(tally: Tally, split: str) -> None:
    """The warnings said once per split: reversed labels per file, and how many more of
    each kind were counted than were logged."""
    for path, (count, sid, start_t, end_t) in tally.reversed_by_file.items():
        tally.warn(
            "end_before_start",
            f"babel {split}: {path}: {count} labels with end_t < start_t, e.g. sid {sid} "
            f"(start_t {start_t}, end_t {end_t}); dropped",
        )
    for kind, found in tally.examples.items():
        if len(found) > _WARN_EACH:
            logging.warning(
                "babel %s: %d more warnings of kind %s (counts in data/report.json)",
                split,
                len(found) - _WARN_EACH,
                kind,
            )


def split_report(tally: Tally, files, seconds: float) -> dict:
    """One split's part of report.json."""
    seq, seg, ann = tally.sequences, tally.segments, tally.annotations
    return {
        "files": list(files),
        "sequences": {
            "read": seq["read"],
            "used": seq["used"],
            "skipped": {k: seq[k] for k in SEQUENCE_SKIPS},
        },
        "annotations": {
            "main": ann["main"],
            "extra": ann["extra"],
            "left_out": {k: ann[k] for k in ("frame_all_null", "other_type", "extra_ignored")},
        },
        "segments": {
            "read": seg["read"],
            "kept": seg["kept"],
            "dropped": {k: seg[k] for k in SEGMENT_DROPS},
        },
        "act_cat_outside_classes": dict(tally.outside_values.most_common()),
        "end_before_start_by_file": {p: v[0] for p, v in tally.reversed_by_file.items()},
        "windows": {
            "kept": tally.windows["kept"],
            "dropped_no_label": tally.windows["no_label"],
            "per_class": {k: int(v) for k, v in zip(tally.classes, tally.per_class)},
        },
        "warnings": {k: len(v) for k, v in tally.examples.items()},
        "examples": {k: v[:20] for k, v in tally.examples.items()},
        "seconds": round(seconds, 2),
    }


def report_table(report: dict) -> str:
    """The build report as a short text table, one column per split."""
    splits = list(report["splits"])
    parts = [report["splits"][s] for s in splits]

    def row(label, get):
        return (label, [get(p) for p in parts])

    names = {
        "missing_file": "missing file",
        "smplx": "SMPL-X file",
        "too_short": "too short",
        "no_label": "no label",
        "null_act_cat": "act_cat null",
        "end_before_start": "end before start",
        "outside_classes": "outside the classes",
        "outside_sequence": "outside the sequence",
    }
    rows = [row("sequences read", lambda p: p["sequences"]["read"])]
    rows += [
        row(f"  skipped: {names[k]}", lambda p, k=k: p["sequences"]["skipped"][k])
        for k in SEQUENCE_SKIPS
    ]
    rows.append(row("  used", lambda p: p["sequences"]["used"]))
    rows.append(
        row(
            "annotations used (extra)",
            lambda p: (
                f"{p['annotations']['main'] + p['annotations']['extra']} ({p['annotations']['extra']})"
            ),
        )
    )
    rows.append(row("segments read", lambda p: p["segments"]["read"]))
    rows += [
        row(f"  dropped: {names[k]}", lambda p, k=k: p["segments"]["dropped"][k])
        for k in SEGMENT_DROPS
    ]
    rows.append(row("  kept", lambda p: p["segments"]["kept"]))
    rows.append(row("windows kept", lambda p: p["windows"]["kept"]))
    rows.append(row("  dropped: no label", lambda p: p["windows"]["dropped_no_label"]))
    if "zero_shot" in report:  # training leaves these out; val scores them as unseen
        rows.append(row("  with a held-out class", lambda p: p["windows"].get("with_held_out", 0)))
    rows.append(("windows per class", [None] * len(parts)))
    for k in parts[0]["windows"]["per_class"]:
        rows.append(row(f"  {k}", lambda p, k=k: p["windows"]["per_class"].get(k, 0)))
    if "duplicates" in report:  # babel_sids read twice: counts for the whole read
        blank = [None] * (len(parts) - 1)
        rows.append(
            (f"babel_sids read twice ({report['options']['duplicates']})", [None] * len(parts))
        )
        rows += [
            (f"  {_DUPLICATE_WORDS[r]}", [report["duplicates"][r]] + blank)
            for r in DUPLICATE_REASONS
        ]
    o = report["options"]
    title = (
        f"BABEL build report (null_frame_labels={o['null_frame_labels']}, "
        f"extra_annotators={o['extra_annotators']}); details in data/report.json"
    )
    if "zero_shot" in report:
        z = report["zero_shot"]
        title += (
            f"\nzero-shot: {', '.join(z['classes'])} held out; training leaves out the "
            f"{z['train_windows_removed']} train windows that carry one and keeps "
            f"{z['train_windows_left']}"
        )
    return prepared.format_table(title, splits, rows)


def held_out_columns(data_cfg, held_out) -> np.ndarray:
    """Boolean [C] over data.classes' columns: the zero-shot classes `held_out` (names);
    an InputError names any that is not one of the classes."""
    classes = columns(data_cfg.classes)
    unknown = [n for n in held_out if n not in classes]
    if unknown:
        raise fail("config.eval.zero_shot_classes", f"unknown classes {unknown}")
    return np.isin(np.asarray(classes), list(held_out))


def prepare(data_cfg, workdir: str, seed: int, held_out=()) -> dict:
    """Writes workdir/data/{train,val} and report.json from AMASS + BABEL (or synthetic files).

    Every split is built in a staging folder that replaces workdir/data only when all
    succeeded (prepared.Staging), so a failure leaves the previous data as it was.

    Args:
      data_cfg: `config.data` (see experiments/babel60.py).
      workdir: the experiment folder.
      seed: draws the training windows (and the synthetic data).

    Returns:
      The build report (also written to workdir/data/report.json): options, and per
      split the files read, sequences read/used/skipped by reason, annotations used and
      left out, segments read/kept/dropped by reason, act_cat values outside the classes,
      windows kept, dropped for want of a label, and per class; and the babel_sids
      read more than once, by reason (`duplicates`, see check_duplicates). With
      `held_out` (zero-shot class names, config.eval.zero_shot_classes) each split counts
      its windows that carry one of them (`windows.with_held_out`), and `zero_shot` says
      how many training windows training leaves out for them (the windows stay on disk:
      training drops them, tasks/babel60.py) and how many it keeps.
    """
    held = held_out_columns(data_cfg, held_out)
    null_mode, extra_mode = _options(data_cfg)
    _duplicates_mode(data_cfg)
    amass.check_feature_config(data_cfg)
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

    # Both splits' files first: a sid read twice, or in both splits, fails before the long read.
    records, found = {}, []
    for split in prepared.SPLITS:
        records[split], more = read_babel(babel_dir, tuple(data_cfg.babel_splits[split]))
        found += more
    found += split_overlaps(records)
    duplicates = check_duplicates(data_cfg, found)

    if data_cfg.translation == "reference":  # a missing body model fails before the long read
        skeleton = body_model.load(amass.body_model_path(data_cfg, workdir))
        logging.info("babel: translation row from the right ankle of %s", skeleton.path)
    report = {
        "task": "babel60",
        "source": data_cfg.source,
        "amass_root": amass_root,
        "babel_dir": babel_dir,
        "options": {
            "null_frame_labels": null_mode,
            "extra_annotators": extra_mode,
            "feature_joints": list(data_cfg.feature_joints),
            "rot6d": data_cfg.rot6d,
            "translation": data_cfg.translation,
            "partial_chunks": bool(data_cfg.partial_chunks),
            "duplicates": data_cfg.duplicates,
        },
        # babel_sids read more than once, by reason (DUPLICATE_REASONS), and a few of each.
        "duplicates": duplicates,
        "duplicate_examples": {
            r: [f"{d.message} ({d.allowed})" for d in found if d.reason == r][:20]
            for r in DUPLICATE_REASONS
            if duplicates[r]
        },
        "splits": {},
    }
    with prepared.Staging(workdir) as stage:
        for split in prepared.SPLITS:
            data, report["splits"][split] = build_split(
                data_cfg,
                amass_root,
                babel_dir,
                split,
                seed,
                scratch_dir=stage.root,
                workdir=workdir,
                records=records.pop(split),
            )
            if held.any():
                carry = (np.asarray(data.labels)[:, held] > data_cfg.threshold).any(1)
                report["splits"][split]["windows"]["with_held_out"] = int(carry.sum())
            stage.write_split(split, data)
            del data  # the memory map of the scratch file, now copied into the split
            os.unlink(os.path.join(stage.root, f".{split}-motion.raw"))
            s = report["splits"][split]
            logging.info(
                "babel %s: %d windows from %d of %d sequences in %.1f s",
                split,
                s["windows"]["kept"],
                s["sequences"]["used"],
                s["sequences"]["read"],
                s["seconds"],
            )
        if held.any():
            train = report["splits"]["train"]["windows"]
            report["zero_shot"] = {
                "classes": [c for c, h in zip(columns(data_cfg.classes), held) if h],
                "train_windows_removed": train["with_held_out"],
                "train_windows_left": train["kept"] - train["with_held_out"],
            }
        stage.write_report(report)
        stage.commit()
    return report
