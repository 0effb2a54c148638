"""Whole BABEL sequences with their per-frame labels, read from a run's raw data.

Prepared splits hold fixed windows; the timeline (wat_jax/timeline.py) needs whole
recordings and every frame's label set. This module reads them through the same
functions prepare uses (data/babel.py for the JSON and the frame rule, data/amass.py
for loading, resampling to `data.fps` and window features), read-only, so a frame
here is the frame prepare cut its windows from. A frame's labels are the union over the
annotations that count (babel.sequence_labels; prepare may keep annotators apart).

Where the raw data is: `data.source=synthetic` writes it into WORKDIR/raw/amass and
WORKDIR/raw/babel at prepare time; `amass_babel` reads `data.amass_root` and
`data.babel_dir`.
"""

import dataclasses
import os

import numpy as np

from wat_jax.data import amass, babel
from wat_jax.errors import InputError, fail


@dataclasses.dataclass(frozen=True)
class Sequence:
    """One recording at the prepared frame rate.

    Attributes:
      sid: the BABEL sequence id ("" for a file outside the run's BABEL data).
      feat_p: BABEL's relative path (or the file's path).
      rot6d: [T, 24, 6] float32 6-D joint rotations.
      trans: [T, 3] float64 root translation (metres).
      labels: [T, C] bool frame labels over the run's classes, or None when unknown.
    """

    sid: str
    feat_p: str
    rot6d: np.ndarray
    trans: np.ndarray
    labels: np.ndarray | None

    @property
    def num_frames(self) -> int:
        return self.rot6d.shape[0]


def raw_dirs(data_cfg, workdir: str) -> tuple[str, str]:
    """(amass_root, babel_dir) the run's prepare read."""
    if data_cfg.source == "synthetic":
        amass_root = os.path.join(workdir, "raw", "amass")
        babel_dir = os.path.join(workdir, "raw", "babel")
        if not os.path.isdir(babel_dir):
            raise fail(babel_dir, "no synthetic BABEL files here; run --mode=prepare first")
        return amass_root, babel_dir
    if data_cfg.source == "amass_babel":
        for key, path in (
            ("data.amass_root", data_cfg.amass_root),
            ("data.babel_dir", data_cfg.babel_dir),
        ):
            if not path or not os.path.isdir(path):
                raise fail(key, f"{path!r} is not a folder; the run's raw BABEL data is needed")
        return data_cfg.amass_root, data_cfg.babel_dir
    raise fail("data.source", f"unknown source {data_cfg.source!r}")


def load_features(path: str, data_cfg, workdir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """An AMASS .npz as prepare reads it: rot6d [T, 24, 6] float32 and the track [T, 3]
    of the translation row, at data.fps (amass.sequence_features)."""
    return amass.sequence_features(amass.load_npz(path), data_cfg, workdir)


def window_batch(rot6d, trans, starts, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's input windows of one sequence, as prepare builds them.

    Args:
      rot6d: [T, 24, 6] rotations; trans: [T, 3] translation.
      starts: [K] window start frames.
      window: frames per window; a window running past the end is zero-padded and
        its mask is False there.

    Returns:
      motion [K, window, 25, 6] float32 and mask [K, window] bool.
    """
    t = rot6d.shape[0]
    motion = np.zeros((len(starts), window, rot6d.shape[1] + 1, 6), np.float32)
    mask = np.zeros((len(starts), window), bool)
    for i, s in enumerate(starts):
        stop = min(int(s) + window, t)
        motion[i, : stop - s] = amass.window_features(rot6d[s:stop], trans[s:stop])
        mask[i, : stop - s] = True
    return motion, mask


def _entries(data_cfg, babel_dir: str, split: str) -> dict:
    """{babel_sid: babel.Record} of a split's BABEL files."""
    return babel.read_babel(babel_dir, tuple(data_cfg.babel_splits[split]))[0]


def _pick(sids: list[str], max_sequences: int) -> list[str]:
    """At most max_sequences sids, evenly spaced over the sorted list (all when <= 0)."""
    if max_sequences <= 0 or len(sids) <= max_sequences:
        return sids
    return [sids[i] for i in np.linspace(0, len(sids) - 1, max_sequences).round().astype(int)]


def read_sequences(data_cfg, workdir: str, split: str, max_sequences: int = 0) -> list[Sequence]:
    """Whole sequences of a split with frame labels over `data.classes`.

    Args:
      data_cfg: the run's `config.data`.
      workdir: the run directory (for synthetic data's WORKDIR/raw).
      split: "train" or "val" (BABEL files per `data.babel_splits`).
      max_sequences: read at most this many, evenly spaced over the sorted sids (0: all).

    Returns:
      Sequences whose .npz exists and that have at least one labelled frame, in sid order.
    """
    amass_root, babel_dir = raw_dirs(data_cfg, workdir)
    entries = _entries(data_cfg, babel_dir, split)
    out = []
    for sid in _pick(sorted(entries), int(max_sequences)):
        path = amass.resolve(amass_root, entries[sid].feat_p)
        if path is None:
            continue  # prepare counts and reports missing files
        rot6d, trans = load_features(path, data_cfg, workdir)
        labels = babel.sequence_labels(data_cfg, entries[sid], len(rot6d))
        if labels.any():
            out.append(Sequence(sid, entries[sid].feat_p, rot6d, trans, labels))
    return out


def sequence_at(data_cfg, workdir: str, split: str, index: int) -> Sequence:
    """The index-th sequence (sorted sid order) of a split, with its frame labels."""
    amass_root, babel_dir = raw_dirs(data_cfg, workdir)
    entries = _entries(data_cfg, babel_dir, split)
    sids = [s for s in sorted(entries) if amass.resolve(amass_root, entries[s].feat_p)]
    if not 0 <= index < len(sids):
        raise fail("--motion", f"{split} has {len(sids)} sequences; index {index} is out of range")
    sid = sids[index]
    path = amass.resolve(amass_root, entries[sid].feat_p)
    rot6d, trans = load_features(path, data_cfg, workdir)
    labels = babel.sequence_labels(data_cfg, entries[sid], len(rot6d))
    return Sequence(sid, entries[sid].feat_p, rot6d, trans, labels)


def labels_for_file(data_cfg, workdir: str, path: str, num_frames: int):
    """The frame labels of an .npz when it is one of the run's BABEL sequences.

    Looks through every split's BABEL files for an entry whose feat_p resolves to the
    same file. Returns (sid, labels [num_frames, C] bool), or (None, None).
    """
    try:
        amass_root, babel_dir = raw_dirs(data_cfg, workdir)
    except InputError:  # no raw data: a file outside the run has no ground truth
        return None, None
    target = os.path.realpath(path)
    name = os.path.basename(target)
    for split in data_cfg.babel_splits:
        try:
            entries = _entries(data_cfg, babel_dir, split)
        except InputError:  # an unreadable split cannot hold the file
            continue
        for sid, rec in entries.items():
            if os.path.basename(rec.feat_p.replace("\\", "/")) != name:
                continue
            found = amass.resolve(amass_root, rec.feat_p)
            if found and os.path.realpath(found) == target:
                return sid, babel.sequence_labels(data_cfg, rec, num_frames)
    return None, None
