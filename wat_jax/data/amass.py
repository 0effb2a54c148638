"""AMASS SMPL-H sequences: find, load and validate the .npz, resample, featurise.

An AMASS SMPL+H G file ("*_poses.npz", the release BABEL annotates) holds
`poses` [T, 156] (axis-angle: 3 global orientation, 63 for the 21 body joints,
90 for the two hands), `trans` [T, 3], `betas` [16], `dmpls` [T, 8], `gender`
and the capture rate under `mocap_framerate` (older downloads) or
`mocap_frame_rate` (newer ones). Only poses, trans and the rate are read. The
SMPL-X N release ("*_stageii.npz", poses [T, 165]) is a different body model
and is refused with a message saying so.

Resampling is by time, so that BABEL's labels (in seconds) stay aligned: output
frame i is the pose at time i / out_fps, slerped between the two source frames
around that time (translation is interpolated linearly). For 60 and 120 fps
captures every output time falls on a source frame, so this is exact
subsampling; for rates like 100 or 59.94 fps it avoids the up-to-half-frame
jitter of nearest-frame picking.

Features per 30-fps frame, [25, 6] (`sequence_features`, `window_features`), set by
config keys whose paper values are the reference's (WalkAndText at 2010743,
src/datasets/amass_parser.py and dataset.py):
- `data.feature_joints`: the 24 SMPL-H joints whose rotations fill rows 0-23. The
  reference's joints_to_use is (0..22, 37): the global orientation, the 21 body joints,
  left_index1 (22) and right_index1 (37), the two first finger joints standing in for
  SMPL's hands. (Before the audit wat_jax read poses[:, :72], joints 0..23.)
- `data.rot6d`: each rotation as 6 numbers, "rows" (rows 0 and 1 of the matrix,
  pytorch3d's matrix_to_rotation_6d, the reference's) or "columns".
- `data.translation`: row 24, padded with three zeros, relative to the window's first
  frame. "reference": the right ankle of SMPL-H forward kinematics run without `trans`
  (the reference's joints3d[:, 0] after its action2motion reordering is Jtr[8]), which
  needs the body model file `data.body_model`; "root": the root translation `trans`,
  the body's actual path (what wat_jax used before; the other variants keep it).

"""

import dataclasses
import os

import numpy as np

from wat_jax.data import rotations
from wat_jax.errors import fail

POSE_DIM = 156  # SMPL-H: 52 joints x 3
SMPLH_JOINTS = 52
# The reference's joints_to_use: global orientation, 21 body joints, left_index1, right_index1.
REFERENCE_JOINTS = tuple(range(23)) + (37,)
R_ANKLE = 8  # SMPL-H's right ankle: the reference's translation row follows it
TRANSLATIONS = ("reference", "root")
FRAMERATE_KEYS = ("mocap_framerate", "mocap_frame_rate")

# BABEL's feat_p is "<short name>/<release folder>/<subject>/<file>", e.g.
# "BMLrub/BioMotionLab_NTroje/rub018/0017_lifting_light1_poses.npz" or
# "CMU/CMU/07/07_05_poses.npz": the second part is the folder of the AMASS
# release BABEL was built on (BABEL's action_recognition/data_gen/create_dataset.py
# reads that part). Later AMASS downloads renamed some of those folders.
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
# The SMPL-X N release names its files "*_stageii.npz" where SMPL+H G has "*_poses.npz".
SMPLX_SUFFIX = "_stageii.npz"


@dataclasses.dataclass(frozen=True)
class AmassMotion:
    path: str
    poses: np.ndarray  # [T, 156] float64 axis-angle
    trans: np.ndarray  # [T, 3] float64 metres
    fps: float

    @property
    def duration_s(self) -> float:
        return self.poses.shape[0] / self.fps


def _candidates(feat_p: str) -> list[list[str]]:
    """Relative paths, most literal first, under which feat_p's file may lie."""
    parts = [p for p in feat_p.replace("\\", "/").split("/") if p]
    out = [parts]
    if len(parts) >= 3:  # <short name>/<release folder>/<subject>/<file>
        folder, rest = parts[1], parts[2:]
        out.append([folder] + rest)  # the release's own layout
        if folder in DATASET_ALIASES:
            out.append([DATASET_ALIASES[folder]] + rest)  # renamed in later releases
        if parts[0] != folder:
            out.append([parts[0]] + rest)
    return out


def resolve(amass_root: str, feat_p: str) -> str | None:
    """Finds BABEL's feat_p under an AMASS root; None when no layout matches.

    BABEL writes "BMLrub/BioMotionLab_NTroje/rub018/x_poses.npz" while a user who
    unpacked AMASS has "<root>/BioMotionLab_NTroje/rub018/x_poses.npz" (the
    release BABEL used) or "<root>/BMLrub/rub018/x_poses.npz" (later releases);
    all of these are accepted, and so is feat_p taken literally.

    Args:
      amass_root: the folder holding the AMASS dataset folders.
      feat_p: the relative path from a BABEL entry.

    Returns:
      The existing file's path, or None.
    """
    for cand in _candidates(feat_p):
        path = os.path.join(amass_root, *cand)
        if os.path.isfile(path):
            return path
    return None


def smplx_file(amass_root: str, feat_p: str) -> str | None:
    """The SMPL-X N file ("*_stageii.npz") lying where feat_p's SMPL+H G file should, or None."""
    for cand in _candidates(feat_p):
        if cand[-1].endswith("_poses.npz"):
            stem = cand[-1][: -len("_poses.npz")]
            path = os.path.join(amass_root, *cand[:-1], stem + SMPLX_SUFFIX)
            if os.path.isfile(path):
                return path
    return None


def missing_hint(amass_root: str, feat_p: str) -> str:
    """Why feat_p may be absent: a SMPL-X N file in its place, or which folders were tried."""
    smplx = smplx_file(amass_root, feat_p)
    if smplx is not None:
        return (
            f"found {smplx}, a SMPL-X N file; BABEL needs the SMPL+H G release of AMASS "
            "(*_poses.npz)"
        )
    tried = sorted({c[0] for c in _candidates(feat_p) if len(c) > 1})
    return f"looked under the dataset folders {tried} of data.amass_root"


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
        release = (
            " (SMPL-X: use the SMPL+H G release of AMASS)" if poses.shape[-1:] == (165,) else ""
        )
        raise fail(path, f"poses must be SMPL-H [T, {POSE_DIM}], got shape {poses.shape}{release}")
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


def resample(motion: AmassMotion, out_fps: float, joints=None) -> tuple[np.ndarray, np.ndarray]:
    """The joints' rotations and the translation at out_fps, by time.

    Output frame i is at time i / out_fps; frames run while that time is within
    the capture (t <= (T - 1) / fps).

    Args:
      motion: a loaded sequence.
      out_fps: the target rate (30 for BABEL-60).
      joints: the SMPL-H joint ids to return, in order; None: all 52.

    Returns:
      rotations [T', J, 3, 3] float64 (J = 52 or len(joints)) and trans [T', 3] float64.
    """
    t_src = motion.poses.shape[0]
    # The epsilon keeps an exact multiple (e.g. 120 fps -> 30 fps) from losing its last frame.
    n_out = int(np.floor((t_src - 1) * out_fps / motion.fps + 1e-6)) + 1
    pos = np.arange(n_out) * (motion.fps / out_fps)  # fractional source frame
    i0 = np.minimum(np.floor(pos + 1e-9).astype(np.int64), t_src - 1)
    i1 = np.minimum(i0 + 1, t_src - 1)
    frac = np.clip(pos - i0, 0.0, 1.0)
    frac[frac < 1e-9] = 0.0
    aa = motion.poses.reshape(t_src, SMPLH_JOINTS, 3)
    if joints is not None:
        aa = aa[:, list(joints)]
    if not frac.any():  # rate is a multiple of out_fps: pure subsampling
        rot = rotations.axis_angle_to_matrix(aa[i0])
        return rot, motion.trans[i0].copy()
    q0 = rotations.axis_angle_to_quaternion(aa[i0])
    q1 = rotations.axis_angle_to_quaternion(aa[i1])
    rot = rotations.quaternion_to_matrix(rotations.quaternion_slerp(q0, q1, frac[:, None]))
    trans = (1.0 - frac)[:, None] * motion.trans[i0] + frac[:, None] * motion.trans[i1]
    return rot, trans


def check_feature_config(data_cfg) -> None:
    """One clear line for a bad feature key, before any file is read."""
    joints = tuple(data_cfg.feature_joints)
    if len(joints) != 24 or not all(isinstance(j, int) and 0 <= j < SMPLH_JOINTS for j in joints):
        raise fail(
            "config.data.feature_joints",
            f"must be 24 SMPL-H joint ids in 0..51 (the reference's: {REFERENCE_JOINTS}), "
            f"got {joints}",
        )
    if data_cfg.rot6d not in rotations.ROT6D_CONVENTIONS:
        raise fail(
            "config.data.rot6d",
            f"must be one of {rotations.ROT6D_CONVENTIONS}, got {data_cfg.rot6d!r}",
        )
    if data_cfg.translation not in TRANSLATIONS:
        raise fail(
            "config.data.translation",
            f"must be one of {TRANSLATIONS}, got {data_cfg.translation!r}",
        )


def body_model_path(data_cfg, workdir: str | None = None) -> str:
    """The SMPL-H file the reference's translation row needs: `data.body_model`, or for
    the synthetic source the stand-in its generator wrote into `<workdir>/raw/`."""
    if data_cfg.body_model:
        return data_cfg.body_model
    if data_cfg.source == "synthetic" and workdir:
        from wat_jax.data import synthetic_babel

        return synthetic_babel.standin_body_model_path(os.path.join(workdir, "raw"))
    raise fail(
        "config.data.body_model",
        "data.translation='reference' (the reference's right-ankle translation row) needs "
        "the SMPL-H body model: set data.body_model to its .npz (smplh/neutral/model.npz of "
        "the SMPL+H download at mano.is.tue.mpg.de, as AMASS uses), or use "
        "data.translation=root",
    )


def sequence_features(motion: AmassMotion, data_cfg, workdir: str | None = None):
    """A whole sequence at data.fps: rot6d [T, 24, 6] float32 and the track [T, 3] that
    becomes the translation row (absolute; `window_features` makes it window-relative).

    Args:
      motion: a loaded sequence.
      data_cfg: `config.data` (fps, feature_joints, rot6d, translation, body_model).
      workdir: the run's folder, where the synthetic source keeps its body model.
    """
    joints = list(data_cfg.feature_joints)
    if data_cfg.translation == "root":  # only the feature joints are needed
        rot, trans = resample(motion, float(data_cfg.fps), joints)  # [T, 24, 3, 3], [T, 3]
        return rotations.matrix_to_rot6d(rot, data_cfg.rot6d).astype(np.float32), trans
    from wat_jax.data import body_model

    rot, _ = resample(motion, float(data_cfg.fps))  # [T, 52, 3, 3]: the whole skeleton
    rot6d = rotations.matrix_to_rot6d(rot[:, joints], data_cfg.rot6d).astype(np.float32)
    skeleton = body_model.load(body_model_path(data_cfg, workdir))
    return rot6d, body_model.forward_kinematics(skeleton, rot)[:, R_ANKLE]


def window_features(rot6d: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Per-frame features of one window.

    Args:
      rot6d: [W, 24, 6] 6-D rotations of the window's frames.
      trans: [W, 3] the translation track (root or right ankle) of the same frames.

    Returns:
      [W, 25, 6] float32: the rotations, then the track relative to the window's
      first frame padded with three zeros.
    """
    rel = trans - trans[:1]  # [W, 3]
    root = np.concatenate([rel, np.zeros_like(rel)], -1)[:, None, :]  # [W, 1, 6]
    return np.concatenate([rot6d, root], 1).astype(np.float32)
