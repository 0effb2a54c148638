"""AMASS SMPL-H sequences: find, load and validate the .npz, resample, featurise.

An AMASS SMPL-H file holds `poses` [T, 156] (axis-angle: 3 global orientation,
63 for the 21 body joints, 90 for the two hands), `trans` [T, 3], `betas`,
`gender` and the capture rate under `mocap_framerate` (older releases) or
`mocap_frame_rate` (newer ones). Only poses, trans and the rate are read.

Resampling is by time, so that BABEL's labels (in seconds) stay aligned: output
frame i is the pose at time i / out_fps, slerped between the two source frames
around that time (translation is interpolated linearly). For 60 and 120 fps
captures every output time falls on a source frame, so this is exact
subsampling; for rates like 100 or 59.94 fps it avoids the up-to-half-frame
jitter of nearest-frame picking.

Features per 30-fps frame, [25, 6]: the 6-D rotations (matrix_to_rot6d) of the
first 24 joints of the pose vector, i.e. poses[:, :72] as the reference used it
(global orientation, the 21 body joints, then the first two left-hand finger
joints, which stand in for SMPL's two hand joints), and a 25th row holding the
root translation relative to the first frame of the window, padded with zeros
to 6 values.
"""

import dataclasses
import os

import numpy as np

from wat_jax.data import rotations
from wat_jax.errors import fail

POSE_DIM = 156  # SMPL-H: 52 joints x 3
FEATURE_JOINTS = 24  # poses[:, :72]
FRAMERATE_KEYS = ("mocap_framerate", "mocap_frame_rate")

# BABEL's feat_p uses the dataset folder names of the AMASS release it was built
# on; later AMASS downloads renamed some of them.
DATASET_ALIASES = {
    "BioMotionLab_NTroje": "BMLrub",
    "DFaust_67": "DFaust",
    "MPI_HDM05": "HDM05",
    "MPI_Limits": "PosePrior",
    "MPI_mosh": "MoSh",
    "SSM_synced": "SSM",
    "TCD_handMocap": "TCDHands",
    "Transitions_mocap": "Transitions",
    "Eyes_Japan_Dataset": "EyesJapanDataset",
}


@dataclasses.dataclass(frozen=True)
class AmassMotion:
    path: str
    poses: np.ndarray  # [T, 156] float64 axis-angle
    trans: np.ndarray  # [T, 3] float64 metres
    fps: float

    @property
    def duration_s(self) -> float:
        return self.poses.shape[0] / self.fps


def resolve(amass_root: str, feat_p: str) -> str | None:
    """Finds BABEL's feat_p under an AMASS root; None when no layout matches.

    BABEL writes "KIT/KIT/572/jump_left05_poses.npz" while a user who unpacked
    AMASS has "<root>/KIT/572/jump_left05_poses.npz"; both are accepted, and so
    are the renamed dataset folders of later AMASS releases.

    Args:
      amass_root: the folder holding the AMASS dataset folders.
      feat_p: the relative path from a BABEL entry.

    Returns:
      The existing file's path, or None.
    """
    parts = [p for p in feat_p.replace("\\", "/").split("/") if p]
    candidates = [parts]
    if len(parts) > 1 and parts[0] == parts[1]:
        candidates.append(parts[1:])
    for cand in list(candidates):
        if cand and cand[0] in DATASET_ALIASES:
            candidates.append([DATASET_ALIASES[cand[0]]] + cand[1:])
    for cand in candidates:
        path = os.path.join(amass_root, *cand)
        if os.path.isfile(path):
            return path
    return None


def load_npz(path: str) -> AmassMotion:
    """Loads and validates one AMASS SMPL-H .npz.

    Args:
      path: the file.

    Returns:
      The motion, in float64.

    Raises:
      InputError naming the file when it is unreadable, lacks a key, has the
      wrong shapes, or holds NaN/inf.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            for key in ("poses", "trans"):
                if key not in keys:
                    raise fail(path, f"missing key '{key}' (keys: {sorted(keys)})")
            rate_key = next((k for k in FRAMERATE_KEYS if k in keys), None)
            if rate_key is None:
                raise fail(
                    path, f"missing frame rate: none of {FRAMERATE_KEYS} (keys: {sorted(keys)})"
                )
            poses = np.asarray(z["poses"], np.float64)
            trans = np.asarray(z["trans"], np.float64)
            fps = np.asarray(z[rate_key], np.float64)
    except (OSError, ValueError, EOFError) as e:
        raise fail(path, f"unreadable .npz ({e})") from e
    if poses.ndim != 2 or poses.shape[1] != POSE_DIM:
        raise fail(path, f"poses must be SMPL-H [T, {POSE_DIM}], got shape {poses.shape}")
    if trans.shape != (poses.shape[0], 3):
        raise fail(path, f"trans must be [T, 3] with T={poses.shape[0]}, got shape {trans.shape}")
    if poses.shape[0] < 1:
        raise fail(path, "poses has no frames")
    if fps.size != 1 or not np.isfinite(fps) or float(fps) <= 0:
        raise fail(path, f"{rate_key} must be one positive number, got {fps!r}")
    if not np.isfinite(poses).all():
        raise fail(path, f"poses contain NaN or inf ({int((~np.isfinite(poses)).sum())} values)")
    if not np.isfinite(trans).all():
        raise fail(path, f"trans contains NaN or inf ({int((~np.isfinite(trans)).sum())} values)")
    return AmassMotion(path, poses, trans, float(fps))


def resample(motion: AmassMotion, out_fps: float) -> tuple[np.ndarray, np.ndarray]:
    """The feature joints' rotations and the translation at out_fps, by time.

    Output frame i is at time i / out_fps; frames run while that time is within
    the capture (t <= (T - 1) / fps).

    Args:
      motion: a loaded sequence.
      out_fps: the target rate (30 for BABEL-60).

    Returns:
      rotations [T', 24, 3, 3] float64 and trans [T', 3] float64.
    """
    t_src = motion.poses.shape[0]
    # The epsilon keeps an exact multiple (e.g. 120 fps -> 30 fps) from losing its last frame.
    n_out = int(np.floor((t_src - 1) * out_fps / motion.fps + 1e-6)) + 1
    pos = np.arange(n_out) * (motion.fps / out_fps)  # fractional source frame
    i0 = np.minimum(np.floor(pos + 1e-9).astype(np.int64), t_src - 1)
    i1 = np.minimum(i0 + 1, t_src - 1)
    frac = np.clip(pos - i0, 0.0, 1.0)
    frac[frac < 1e-9] = 0.0
    aa = motion.poses[:, : FEATURE_JOINTS * 3].reshape(t_src, FEATURE_JOINTS, 3)
    if not frac.any():  # rate is a multiple of out_fps: pure subsampling
        rot = rotations.axis_angle_to_matrix(aa[i0])
        return rot, motion.trans[i0].copy()
    q0 = rotations.axis_angle_to_quaternion(aa[i0])
    q1 = rotations.axis_angle_to_quaternion(aa[i1])
    rot = rotations.quaternion_to_matrix(rotations.quaternion_slerp(q0, q1, frac[:, None]))
    trans = (1.0 - frac)[:, None] * motion.trans[i0] + frac[:, None] * motion.trans[i1]
    return rot, trans


def window_features(rot6d: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Per-frame features of one window.

    Args:
      rot6d: [W, 24, 6] 6-D rotations of the window's frames.
      trans: [W, 3] root translation of the same frames.

    Returns:
      [W, 25, 6] float32: the rotations, then the translation relative to the
      window's first frame padded with three zeros.
    """
    rel = trans - trans[:1]  # [W, 3]
    root = np.concatenate([rel, np.zeros_like(rel)], -1)[:, None, :]  # [W, 1, 6]
    return np.concatenate([rot6d, root], 1).astype(np.float32)
