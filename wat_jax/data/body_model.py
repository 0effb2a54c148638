"""The SMPL-H body model's skeleton: rest joints and forward kinematics, in numpy.

The reference (WalkAndText at 2010743, src/datasets/amass_parser.py) ran every AMASS
sequence through SMPL-H (human_body_prior's BodyModel, betas 0, no `trans`) and took
the right ankle's path as the BABEL features' translation row. Only the skeleton part
of the body model reaches the joints: with betas 0 the rest joints are
`J_regressor @ v_template`, and forward kinematics chains each joint's local rotation
along `kintree_table`. Pose blend shapes and skinning move vertices, not joints, so
they are not read.

The file is the SMPL-H `.npz` as distributed for AMASS (e.g. smplh/neutral/model.npz
from mano.is.tue.mpg.de): `J_regressor` [52, V], `v_template` [V, 3],
`kintree_table` [2, 52] (row 0 the parents, the root's a large number or -1).
"""

import dataclasses
import functools
import os

import numpy as np

from wat_jax.data import skeletons
from wat_jax.errors import fail

NUM_JOINTS = 52  # SMPL-H: 22 body joints, then 15 per hand
KEYS = ("J_regressor", "v_template", "kintree_table")


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """A body model's skeleton at betas 0."""

    path: str
    rest: np.ndarray  # [52, 3] float64 rest-pose joint positions
    parents: np.ndarray  # [52] int64, -1 for the root; every parent precedes its child


def load(path: str) -> Skeleton:
    """Reads and checks an SMPL-H `.npz`; InputError naming the file when it is not one."""
    stat = os.stat(path) if os.path.isfile(path) else None
    if stat is None:
        raise fail(path, "SMPL-H body model not found (config.data.body_model)")
    return _load(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> Skeleton:
    del mtime_ns, size  # cache keys: a rewritten file is read again
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise fail(
                    path, f"not an SMPL-H body model: missing {missing} (keys: {sorted(z.files)})"
                )
            regressor = np.asarray(z["J_regressor"], np.float64)
            template = np.asarray(z["v_template"], np.float64)
            kintree = np.asarray(z["kintree_table"]).astype(np.int64)
    except ValueError as e:
        # allow_pickle=False refuses object arrays, e.g. a J_regressor stored as a
        # scipy sparse matrix (the SMPL .pkl layout).
        raise fail(
            path, f"unreadable body model ({e}); use the AMASS SMPL-H .npz with dense arrays"
        ) from e
    except OSError as e:
        raise fail(path, f"unreadable body model ({e})") from e
    if template.ndim != 2 or template.shape[1] != 3:
        raise fail(path, f"v_template must be [V, 3], got {template.shape}")
    if regressor.shape != (NUM_JOINTS, template.shape[0]):
        raise fail(
            path,
            f"J_regressor must be [{NUM_JOINTS}, {template.shape[0]}] for SMPL-H, got "
            f"{regressor.shape} (an SMPL or SMPL-X model?)",
        )
    if kintree.shape != (2, NUM_JOINTS):
        raise fail(path, f"kintree_table must be [2, {NUM_JOINTS}], got {kintree.shape}")
    parents = kintree[0].copy()
    parents[0] = -1  # the files store 2**32 - 1 (or -1) for the root
    if not all(0 <= p < j for j, p in enumerate(parents[1:], start=1)):
        raise fail(path, "kintree_table: every joint's parent must come before it")
    if not (np.isfinite(regressor).all() and np.isfinite(template).all()):
        raise fail(path, "J_regressor or v_template holds NaN or inf")
    rest = regressor @ template
    rest.setflags(write=False)
    parents.setflags(write=False)
    return Skeleton(path, rest, parents)


def forward_kinematics(skeleton: Skeleton, rotations: np.ndarray) -> np.ndarray:
    """Joint positions of posed frames, without global translation.

    Args:
      skeleton: the body model's skeleton.
      rotations: [T, 52, 3, 3] each joint's rotation relative to its parent (the
        AMASS pose vector's axis-angles as matrices; joint 0 the global orientation).

    Returns:
      [T, 52, 3] float64: joint j at R_0..j applied along the chain to the rest
      offsets, with the root at its rest position (SMPL's batch_rigid_transform).
    """
    rot = np.asarray(rotations, np.float64)
    if rot.shape[1:] != (NUM_JOINTS, 3, 3):
        raise ValueError(f"rotations must be [T, {NUM_JOINTS}, 3, 3], got {rot.shape}")
    rest, parents = skeleton.rest, skeleton.parents
    offsets = rest - rest[np.maximum(parents, 0)]  # each joint from its parent, at rest
    return skeletons.forward_kinematics(parents, rot, offsets, rest[0])
