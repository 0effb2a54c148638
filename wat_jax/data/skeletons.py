"""Skeleton layouts: joint names and ids, the bones or kinematic tree, left and right.

Every body layout the project reads, generates or draws is written here once; the
loaders (data/densegait.py), the generators (data/synthetic_densegait.py,
data/synthetic_babel.py) and the pictures (reporting/pictures.py) import it. It holds the
constants and SMPL's forward kinematics, and imports nothing of the project but
data/rotations.py (numpy only), so any module may import it.

  OpenPose18  DenseGait's keypoints: a tracklet is [T, 18, 3], (x, y, confidence) per
              joint in OpenPose's COCO-18 order.
  SMPL        SMPL's 24-joint kinematic tree. BABEL features are [T, 25, 6]: the local
              rotations of 24 SMPL-H joints (config.data.feature_joints; the reference's
              0..22 and 37, whose rows 22 and 23 are left_index1 and right_index1, the
              first finger joints standing in for SMPL's two hands; see data/amass.py),
              then a row holding a translation track (the root's, or the right ankle's).
              The synthetic BABEL generator animates the first 22 (the body without
              hands).

Ids are plain ints, class attributes of the layout: `OpenPose18.NECK`, `SMPL.L_KNEE`.
"""

import numpy as np

from wat_jax.data import rotations


class OpenPose18:
    """OpenPose's COCO-18 keypoints, as DenseGait's tracklets hold them."""

    JOINTS = (
        "nose",
        "neck",
        "r_shoulder",
        "r_elbow",
        "r_wrist",
        "l_shoulder",
        "l_elbow",
        "l_wrist",
        "r_hip",
        "r_knee",
        "r_ankle",
        "l_hip",
        "l_knee",
        "l_ankle",
        "r_eye",
        "l_eye",
        "r_ear",
        "l_ear",
    )
    NOSE, NECK = 0, 1
    # Each limb's three joints are consecutive ids (shoulder, elbow, wrist; hip, knee, ankle).
    R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = range(2, 8)
    R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE = range(8, 14)
    R_EYE, L_EYE, R_EAR, L_EAR = range(14, 18)

    # The keypoints of the face, which a detector sees (confidently) only from the front.
    FACE = (NOSE, R_EYE, L_EYE)
    # OpenPose's drawing: a tree rooted at the neck.
    BONES = (
        (NECK, R_SHOULDER),
        (R_SHOULDER, R_ELBOW),
        (R_ELBOW, R_WRIST),
        (NECK, L_SHOULDER),
        (L_SHOULDER, L_ELBOW),
        (L_ELBOW, L_WRIST),
        (NECK, R_HIP),
        (R_HIP, R_KNEE),
        (R_KNEE, R_ANKLE),
        (NECK, L_HIP),
        (L_HIP, L_KNEE),
        (L_KNEE, L_ANKLE),
        (NECK, NOSE),
        (NOSE, R_EYE),
        (R_EYE, R_EAR),
        (NOSE, L_EYE),
        (L_EYE, L_EAR),
    )
    LEFT = (L_SHOULDER, L_ELBOW, L_WRIST, L_HIP, L_KNEE, L_ANKLE, L_EYE, L_EAR)
    RIGHT = (R_SHOULDER, R_ELBOW, R_WRIST, R_HIP, R_KNEE, R_ANKLE, R_EYE, R_EAR)


class SMPL:
    """SMPL's 24-joint kinematic tree, and BABEL's feature rows built on it.

    Body frame: y up, z forward, x to the body's left.
    """

    JOINTS = (
        "pelvis",
        "l_hip",
        "r_hip",
        "spine1",
        "l_knee",
        "r_knee",
        "spine2",
        "l_ankle",
        "r_ankle",
        "spine3",
        "l_foot",
        "r_foot",
        "neck",
        "l_collar",
        "r_collar",
        "head",
        "l_shoulder",
        "r_shoulder",
        "l_elbow",
        "r_elbow",
        "l_wrist",
        "r_wrist",
        "l_hand",
        "r_hand",
    )
    PELVIS, L_HIP, R_HIP, SPINE1, L_KNEE, R_KNEE, SPINE2, L_ANKLE, R_ANKLE, SPINE3 = range(10)
    L_FOOT, R_FOOT, NECK, L_COLLAR, R_COLLAR, HEAD = range(10, 16)
    L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST, L_HAND, R_HAND = range(16, 24)

    BODY_JOINTS = 22  # the body without the hands: what the synthetic generator animates
    FEATURE_ROWS = 25  # BABEL features: 24 joint rotations, then the root translation
    TRANSLATION_ROW = 24

    # Each joint's parent (-1 for the root, the pelvis); parents come before children.
    PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
    # Approximate rest-pose offset of each joint from its parent, in metres. Eyeballed from
    # a mean adult (ours, not SMPL's template); drawings need proportions, not precision.
    OFFSETS = np.array(
        [
            [0.0, 0.0, 0.0],  # 0 pelvis
            [0.06, -0.09, 0.0],
            [-0.06, -0.09, 0.0],  # 1, 2 hips
            [0.0, 0.11, -0.02],  # 3 spine1
            [0.04, -0.38, 0.0],
            [-0.04, -0.38, 0.0],  # 4, 5 knees
            [0.0, 0.13, 0.01],  # 6 spine2
            [-0.01, -0.40, -0.04],
            [0.01, -0.40, -0.04],  # 7, 8 ankles
            [0.0, 0.05, 0.02],  # 9 spine3
            [0.03, -0.06, 0.12],
            [-0.03, -0.06, 0.12],  # 10, 11 feet
            [0.0, 0.21, -0.03],  # 12 neck
            [0.08, 0.12, -0.01],
            [-0.08, 0.12, -0.01],  # 13, 14 collars
            [0.0, 0.09, 0.05],  # 15 head
            [0.12, 0.04, -0.02],
            [-0.12, 0.04, -0.02],  # 16, 17 shoulders
            [0.26, -0.01, -0.02],
            [-0.26, -0.01, -0.02],  # 18, 19 elbows
            [0.25, 0.01, 0.0],
            [-0.25, 0.01, 0.0],  # 20, 21 wrists
            [0.08, -0.01, -0.01],
            [-0.08, -0.01, -0.01],  # 22, 23 hands
        ]
    )
    OFFSETS.setflags(write=False)
    LEFT = (L_HIP, L_KNEE, L_ANKLE, L_FOOT, L_COLLAR, L_SHOULDER, L_ELBOW, L_WRIST, L_HAND)
    RIGHT = (R_HIP, R_KNEE, R_ANKLE, R_FOOT, R_COLLAR, R_SHOULDER, R_ELBOW, R_WRIST, R_HAND)


def forward_kinematics(parents, local: np.ndarray, offsets: np.ndarray, root) -> np.ndarray:
    """Joint positions of posed frames along a kinematic tree.

    Args:
      parents: [J] each joint's parent, -1 for the root; parents precede children.
      local: [T, J, 3, 3] each joint's rotation relative to its parent.
      offsets: [J, 3] each joint's rest offset from its parent (the root's is unused).
      root: [T, 3] or [3], the root's position.

    Returns:
      [T, J, 3] float64.
    """
    world_rot = np.empty_like(local)
    pos = np.empty(local.shape[:2] + (3,))
    for j, parent in enumerate(parents):
        if parent < 0:
            world_rot[:, j], pos[:, j] = local[:, j], root
        else:
            world_rot[:, j] = world_rot[:, parent] @ local[:, j]
            pos[:, j] = pos[:, parent] + world_rot[:, parent] @ offsets[j]
    return pos


def smpl_joints(features: np.ndarray, rot6d: str = "rows") -> np.ndarray:
    """Forward kinematics of BABEL features [T, 25, 6] -> joint positions [T, 24, 3] (world).

    SMPL's tree with the approximate rest offsets (SMPL.OFFSETS), the root at the
    translation row. `rot6d`: the features' 6-D convention (config.data.rot6d).
    """
    local = rotations.rot6d_to_matrix(features[:, : len(SMPL.JOINTS)], rot6d)  # [T, 24, 3, 3]
    trans = np.asarray(features[:, SMPL.TRANSLATION_ROW, :3], np.float64)  # [T, 3], from frame 0
    return forward_kinematics(SMPL.PARENTS, local, SMPL.OFFSETS, trans)
