"""Synthetic AMASS + BABEL data, written in the real formats and read by the real loaders.

Each sequence chains a few labelled action segments with smooth 0.5 s
cross-fades. Every action is a procedural motion of the SMPL body joints
(hips, knees, ankles, spine, shoulders, elbows, head) plus root translation,
heading and height: walking swings the legs at ~1 Hz and moves forward,
squatting folds hips and knees while the pelvis drops, waving raises one arm
and oscillates its forearm, and so on, so classes differ in posture, rhythm
and root motion. Each sequence has its own style: speed, amplitude, leading
side, facing direction, body size (betas and translation scale) and noise.

Written files:
  <out>/amass/SYNTH/<subject>/<name>_poses.npz   poses [T, 156] axis-angle,
      trans [T, 3] (z up, as in AMASS), betas [16], gender, and the rate under
      `mocap_framerate` or `mocap_frame_rate` (both occur in AMASS); 60 or 120 fps.
  <out>/smplh_standin.npz   a stand-in SMPL-H body model in the AMASS file layout
      (J_regressor, v_template, kintree_table and the skinning arrays), built on
      data/skeletons.py's proportions, so `data.translation="reference"` (forward
      kinematics through the body model) runs without the licensed SMPL-H files.
  <out>/babel/{train,val}.json   BABEL v1.0 entries whose feat_p repeats the
      dataset folder (SYNTH/SYNTH/...), as BABEL does. Most have frame_ann
      segments (action segments with "transition" segments between them, as in
      BABEL); some train sequences have a null frame_ann and one seq_ann label. Val
      sequences all have frame labels and at least `val_min_segments` actions, so
      the timeline's segmental F1 has transitions to score.

SMPL body frame: y up, z forward, x to the body's left. Joint angles are built
as x-y-z Euler triples per joint (R = Rx @ Ry @ Rz), blended between segments,
then turned into axis-angle through quaternions.
"""

import os
import time

import numpy as np
from absl import logging

from wat_jax import fileio
from wat_jax.data import rotations
from wat_jax.data.skeletons import SMPL

# SMPL joint ids (0 is the pelvis, whose row holds the body-frame root pitch/twist/roll).
PELVIS, SPINE1, SPINE2, SPINE3 = SMPL.PELVIS, SMPL.SPINE1, SMPL.SPINE2, SMPL.SPINE3
L_HIP, R_HIP, L_KNEE, R_KNEE = SMPL.L_HIP, SMPL.R_HIP, SMPL.L_KNEE, SMPL.R_KNEE
L_ANKLE, R_ANKLE, NECK, HEAD = SMPL.L_ANKLE, SMPL.R_ANKLE, SMPL.NECK, SMPL.HEAD
L_SHOULDER, R_SHOULDER = SMPL.L_SHOULDER, SMPL.R_SHOULDER
L_ELBOW, R_ELBOW = SMPL.L_ELBOW, SMPL.R_ELBOW
NUM_BODY = SMPL.BODY_JOINTS
X, Y, Z = 0, 1, 2
ARMS_DOWN = 1.3  # shoulder z angle from the T-pose to arms at the sides
HIP_HEIGHT = 0.93  # metres, scaled per body
TRANSITION_S = 0.5
ALL_CLASSES = ("walk", "stand", "turn", "t pose", "step", "stretch", "jump", "sit", "run", "bend",
               "throw", "kick", "jog", "wave", "punch", "squat", "hop")  # fmt: skip
SMOKE_CLASSES = ("walk", "turn", "jump", "sit", "run", "kick", "wave", "squat")


def _bump(x, centre, width):
    return np.exp(-(((x - centre) / width) ** 2))


def _arms_down(e, st):
    e[:, L_SHOULDER, Z] -= ARMS_DOWN
    e[:, R_SHOULDER, Z] += ARMS_DOWN
    e[:, L_ELBOW, Y] -= 0.15
    e[:, R_ELBOW, Y] += 0.15


def _elbows(e, left, right):
    e[:, L_ELBOW, Y] -= left
    e[:, R_ELBOW, Y] += right


def _gait(e, root, ph, amp, hip, knee, knee0, arm, elbow, lean, speed, bounce):
    """Shared by walk, jog and run: antiphase legs, counter-swinging arms."""
    for joint, knee_j, sh, sign in (
        (L_HIP, L_KNEE, L_SHOULDER, 1),
        (R_HIP, R_KNEE, R_SHOULDER, -1),
    ):
        e[:, joint, X] = -sign * hip * amp * np.sin(ph)
        e[:, knee_j, X] = knee0 + knee * amp * np.maximum(
            0.0, np.sin(ph + sign * np.pi / 2 + np.pi)
        )
        e[:, sh, X] += sign * arm * amp * np.sin(ph)
    _elbows(e, elbow, elbow)
    e[:, SPINE2, X] += lean
    e[:, PELVIS, Y] = 0.08 * np.sin(ph)
    root[:, 0] = speed
    root[:, 3] = bounce * np.abs(np.cos(ph))


class _Body:
    """What every class's motion reads of a body's style `st` at local times t."""

    def __init__(self, t, st):
        self.t, self.phase = t, st["phase"]
        self.a, self.s, self.side = st["amp"], st["speed"], st["side"]
        left = self.side > 0  # the leading side: the limbs that kick, wave and throw
        self.lead_hip, self.lead_knee = (L_HIP, L_KNEE) if left else (R_HIP, R_KNEE)
        self.lead_sh, self.lead_el = (L_SHOULDER, L_ELBOW) if left else (R_SHOULDER, R_ELBOW)

    def cyc(self, hz):
        """The phase of a cycle of `hz` (at speed 1) at each time."""
        return 2 * np.pi * hz * self.s * self.t + self.phase

    def cycle_fraction(self, period_s):
        """Where each time falls in a cycle of `period_s` (at speed 1), in [0, 1)."""
        return (self.s * self.t / period_s + self.phase / (2 * np.pi)) % 1.0


# ---- gaits: walk, jog, run ------------------------------------------------------------


def _walk(e, root, b):
    _gait(e, root, b.cyc(0.9), b.a, 0.45, 0.55, 0.1, 0.35, 0.3, 0.03, 1.3 * b.s, 0.02)


def _jog(e, root, b):
    _gait(e, root, b.cyc(1.35), b.a, 0.65, 0.9, 0.3, 0.45, 1.3, 0.12, 2.6 * b.s, 0.05)


def _run(e, root, b):
    _gait(e, root, b.cyc(1.6), b.a, 0.9, 1.3, 0.4, 0.7, 1.6, 0.28, 4.0 * b.s, 0.08)


# ---- standing in place, turning, stepping aside ---------------------------------------


def _stand(e, root, b):
    e[:, SPINE1, Z] = 0.04 * np.sin(b.cyc(0.25))
    e[:, HEAD, X] = 0.06 * np.sin(b.cyc(0.15))
    e[:, L_HIP, Z] = e[:, R_HIP, Z] = 0.04 * np.sin(b.cyc(0.2))


def _t_pose(e, root, b):
    e[:, HEAD, X] = 0.03 * np.sin(b.cyc(0.2))


def _turn(e, root, b):
    ph = b.cyc(1.2)
    e[:, L_HIP, X], e[:, R_HIP, X] = -0.18 * b.a * np.sin(ph), 0.18 * b.a * np.sin(ph)
    e[:, L_KNEE, X] = 0.25 * np.maximum(0, np.sin(ph))
    e[:, R_KNEE, X] = 0.25 * np.maximum(0, -np.sin(ph))
    e[:, HEAD, Y] = 0.35 * b.side
    root[:, 2] = 1.6 * b.s * b.side


def _step(e, root, b):  # sideways steps, feet apart and together
    ph = b.cyc(0.7)
    e[:, L_HIP, Z] = 0.35 * b.a * np.maximum(0, np.sin(ph))
    e[:, R_HIP, Z] = -0.35 * b.a * np.maximum(0, -np.sin(ph))
    e[:, L_KNEE, X] = e[:, R_KNEE, X] = 0.2
    root[:, 1] = 0.5 * b.s * b.side * (0.6 + 0.4 * np.sin(2 * ph))


# ---- leaving the ground: jump, hop ----------------------------------------------------


def _jump(e, root, b):
    ph = b.cycle_fraction(1.1)
    crouch = _bump(ph, 0.2, 0.1) + 0.5 * _bump(ph, 0.85, 0.08)
    air = np.where((ph > 0.32) & (ph < 0.72), np.sin(np.pi * (ph - 0.32) / 0.4), 0.0)
    e[:, L_HIP, X] = e[:, R_HIP, X] = -1.0 * b.a * crouch
    e[:, L_KNEE, X] = e[:, R_KNEE, X] = 1.6 * b.a * crouch
    e[:, L_ANKLE, X] = e[:, R_ANKLE, X] = 0.4 * crouch
    e[:, SPINE2, X] = 0.4 * crouch
    e[:, L_SHOULDER, X] = e[:, R_SHOULDER, X] = 0.8 * crouch - 2.2 * air
    root[:, 3] = -0.28 * b.a * crouch + 0.35 * b.a * air
    root[:, 0] = 0.4 * b.s * air


def _hop(e, root, b):
    ph = b.cyc(2.0)
    e[:, b.lead_hip, X], e[:, b.lead_knee, X] = -0.5, 1.4
    support_hip, support_knee = (R_HIP, R_KNEE) if b.side > 0 else (L_HIP, L_KNEE)
    bend = 0.5 + 0.5 * np.cos(ph)
    e[:, support_hip, X], e[:, support_knee, X] = -0.35 * bend * b.a, 0.6 * bend * b.a
    e[:, L_SHOULDER, Z] += 0.8
    e[:, R_SHOULDER, Z] -= 0.8
    root[:, 0] = 0.6 * b.s
    root[:, 3] = 0.12 * b.a * np.abs(np.sin(ph / 2))


# ---- one limb's action: kick, punch, wave, throw --------------------------------------


def _kick(e, root, b):
    ph = b.cycle_fraction(1.6)
    e[:, b.lead_hip, X] = -1.5 * b.a * _bump(ph, 0.5, 0.1)
    e[:, b.lead_knee, X] = 1.4 * _bump(ph, 0.4, 0.07) + 0.2
    e[:, SPINE2, X] = -0.25 * _bump(ph, 0.5, 0.12)
    e[:, L_SHOULDER, Z] += 0.6
    e[:, R_SHOULDER, Z] -= 0.6


def _punch(e, root, b):
    ph = b.cyc(1.4)
    hits = {
        L_SHOULDER: np.maximum(0, np.sin(ph)) ** 4,
        R_SHOULDER: np.maximum(0, -np.sin(ph)) ** 4,
    }
    for sh, el, sign in ((L_SHOULDER, L_ELBOW, 1), (R_SHOULDER, R_ELBOW, -1)):
        e[:, sh, X] = -0.7 - 0.9 * b.a * hits[sh]
        e[:, el, Y] -= sign * (2.0 - 1.8 * b.a * hits[sh])
    e[:, SPINE2, Y] = 0.3 * (hits[L_SHOULDER] - hits[R_SHOULDER])
    e[:, L_KNEE, X] = e[:, R_KNEE, X] = 0.3
    e[:, L_HIP, X] = e[:, R_HIP, X] = -0.2


def _wave(e, root, b):
    e[:, b.lead_sh, Z] += b.side * (ARMS_DOWN + 0.9)  # arm raised above the shoulder
    e[:, b.lead_el, Y] -= b.side * (1.1 + 0.5 * b.a * np.sin(b.cyc(2.0)))
    e[:, HEAD, Y] = 0.2 * b.side


def _throw(e, root, b):
    ph = b.cycle_fraction(2.2)
    wind = _bump(ph, 0.45, 0.15)
    release = _bump(ph, 0.7, 0.06)
    e[:, b.lead_sh, X] = 1.2 * b.a * wind - 1.6 * b.a * release
    e[:, b.lead_sh, Z] += b.side * 0.6 * wind
    e[:, b.lead_el, Y] -= b.side * (1.6 * wind + 0.2)
    e[:, SPINE2, Y] = b.side * (0.5 * wind - 0.6 * release)
    other_hip = R_HIP if b.side > 0 else L_HIP
    e[:, other_hip, X] = -0.45 * (wind + release)


# ---- bending the body: squat, sit, bend, stretch --------------------------------------


def _squat(e, root, b):
    d = 0.5 - 0.5 * np.cos(2 * np.pi * b.s * b.t / 2.6 + b.phase)
    e[:, L_HIP, X] = e[:, R_HIP, X] = -1.7 * b.a * d
    e[:, L_KNEE, X] = e[:, R_KNEE, X] = 2.2 * b.a * d
    e[:, L_ANKLE, X] = e[:, R_ANKLE, X] = 0.5 * d
    e[:, SPINE2, X] = 0.5 * d
    e[:, L_SHOULDER, X] = e[:, R_SHOULDER, X] = -1.4 * d
    root[:, 3] = -0.45 * b.a * d


def _sit(e, root, b):  # sit down over the first second, then stay seated
    d = np.clip(b.t / (1.0 / b.s), 0, 1)
    d = d * d * (3 - 2 * d)
    e[:, L_HIP, X] = e[:, R_HIP, X] = -1.55 * d
    e[:, L_KNEE, X] = e[:, R_KNEE, X] = 1.6 * d
    e[:, SPINE2, X] = 0.15 * d + 0.05 * np.sin(b.cyc(0.3))
    e[:, L_SHOULDER, X] = e[:, R_SHOULDER, X] = -0.4 * d
    _elbows(e, 0.9 * d, 0.9 * d)
    root[:, 3] = -0.47 * d


def _bend(e, root, b):
    bent = 0.5 - 0.5 * np.cos(2 * np.pi * b.s * b.t / 3.2 + b.phase)
    for joint in (SPINE1, SPINE2, SPINE3):
        e[:, joint, X] = 0.4 * b.a * bent
    e[:, PELVIS, X] = 0.5 * b.a * bent
    e[:, L_HIP, X] = e[:, R_HIP, X] = -0.3 * bent
    e[:, L_SHOULDER, X] = e[:, R_SHOULDER, X] = -0.9 * bent
    root[:, 3] = -0.1 * bent


def _stretch(e, root, b):
    e[:, L_SHOULDER, Z] += ARMS_DOWN + 1.45
    e[:, R_SHOULDER, Z] -= ARMS_DOWN + 1.45
    for joint in (SPINE1, SPINE2, SPINE3):
        e[:, joint, Z] = 0.12 * b.a * np.sin(b.cyc(0.25))
        e[:, joint, X] = -0.06
    root[:, 3] = 0.03 * (1 + np.sin(b.cyc(0.25)))


# Each class's motion: (euler [T, 22, 3], root [T, 4], _Body) -> filled in place.
CLASS_MOTIONS = {
    "walk": _walk,
    "jog": _jog,
    "run": _run,
    "stand": _stand,
    "t pose": _t_pose,
    "turn": _turn,
    "step": _step,
    "jump": _jump,
    "hop": _hop,
    "kick": _kick,
    "punch": _punch,
    "wave": _wave,
    "throw": _throw,
    "squat": _squat,
    "sit": _sit,
    "bend": _bend,
    "stretch": _stretch,
}


def _motion(name, t, st):
    """One class's motion at local times t (s since the segment start).

    Returns:
      euler [T, 22, 3] joint angles and root [T, 4]: forward speed, sideways
      speed (m/s), yaw rate (rad/s), height offset (m, before body scaling).
    """
    if name not in CLASS_MOTIONS:
        raise ValueError(f"no synthetic motion for class {name!r}")
    e = np.zeros((len(t), NUM_BODY, 3))
    root = np.zeros((len(t), 4))
    if name != "t pose":
        _arms_down(e, st)
    CLASS_MOTIONS[name](e, root, _Body(t, st))
    return e, root


def _segment_weights(t, bounds):
    """[K, T] cross-fade weights that sum to 1: segment k owns bounds[k]..bounds[k+1]."""

    def ramp(x):  # 0 -> 1 over [-TRANSITION_S/2, +TRANSITION_S/2], smoothstep
        u = np.clip(x / TRANSITION_S + 0.5, 0, 1)
        return u * u * (3 - 2 * u)

    k = len(bounds) - 1
    up = [np.ones_like(t)] + [ramp(t - b) for b in bounds[1:k]] + [np.zeros_like(t)]
    return np.stack([up[i] - up[i + 1] for i in range(k)])


def synth_sequence(classes, durations, fps, rng):
    """One sequence of the given segments.

    Returns:
      poses [T, 156] float32 axis-angle, trans [T, 3] float32 (z up), betas [16].
    """
    st = dict(
        speed=rng.uniform(0.8, 1.25),
        amp=rng.uniform(0.75, 1.2),
        side=rng.choice([-1, 1]),
        phase=rng.uniform(0, 2 * np.pi),
        scale=rng.uniform(0.85, 1.15),
        noise=rng.uniform(0.005, 0.03),
        yaw0=rng.uniform(0, 2 * np.pi),
    )
    bounds = np.concatenate([[0.0], np.cumsum(durations)])
    n = int(round(bounds[-1] * fps))
    t = np.arange(n) / fps
    weights = _segment_weights(t, bounds)  # [K, T]
    euler = np.zeros((n, NUM_BODY, 3))
    root = np.zeros((n, 4))
    for k, name in enumerate(classes):
        on = weights[k] > 0
        e, r = _motion(name, t[on] - bounds[k], st)
        euler[on] += weights[k][on, None, None] * e
        root[on] += weights[k][on, None] * r
    euler += st["noise"] * rng.standard_normal(euler.shape)
    euler[:, 1:] += rng.normal(0, 0.04, (NUM_BODY - 1, 3))  # this person's posture

    # Root: heading integrates the yaw rate; the body's y-up frame is turned to AMASS's z-up.
    yaw = st["yaw0"] + np.cumsum(root[:, 2]) / fps
    up = rotations.euler_xyz_to_quaternion(np.array([np.pi / 2, 0.0, 0.0]))
    heading = rotations.euler_xyz_to_quaternion(np.stack([np.zeros(n), np.zeros(n), yaw], -1))
    global_q = rotations.quaternion_multiply(
        heading,
        rotations.quaternion_multiply(up, rotations.euler_xyz_to_quaternion(euler[:, PELVIS])),
    )
    forward = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros(n)], -1)
    left = np.stack([np.cos(yaw), np.sin(yaw), np.zeros(n)], -1)
    velocity = root[:, :1] * forward + root[:, 1:2] * left
    trans = np.cumsum(velocity, 0) / fps * st["scale"] + rng.uniform(-2, 2, 3) * [1, 1, 0]
    trans[:, 2] = st["scale"] * (HIP_HEIGHT + root[:, 3])
    trans += 0.003 * rng.standard_normal(trans.shape)

    body = rotations.quaternion_to_axis_angle(rotations.euler_xyz_to_quaternion(euler[:, 1:]))
    hands = rng.uniform(0.0, 0.3, 90) + 0.01 * rng.standard_normal((n, 90))
    poses = np.concatenate(
        [rotations.quaternion_to_axis_angle(global_q), body.reshape(n, 63), hands], 1
    )
    betas = np.zeros(16)
    betas[0] = (st["scale"] - 1.0) * 10.0
    betas[1:10] = rng.normal(0, 0.5, 9)
    return poses.astype(np.float32), trans.astype(np.float32), betas


def _labels(classes, bounds, with_times):
    rows = []
    for k, name in enumerate(classes):
        label = dict(raw_label=name, proc_label=name, seg_id=f"seg{k}", act_cat=[name])
        if with_times:
            lo = bounds[k] + (TRANSITION_S / 2 if k else 0.0)
            hi = bounds[k + 1] - (TRANSITION_S / 2 if k < len(classes) - 1 else 0.0)
            label.update(start_t=round(float(lo), 3), end_t=round(float(hi), 3))
            rows.append(label)
            if k < len(classes) - 1:  # BABEL labels the blend between two actions itself
                rows.append(
                    dict(
                        raw_label="transition",
                        proc_label="transition",
                        seg_id=f"tr{k}",
                        act_cat=["transition"],
                        start_t=round(float(hi), 3),
                        end_t=round(float(bounds[k + 1] + TRANSITION_S / 2), 3),
                    )
                )
        else:
            rows.append(label)
    return rows


def _class_plan(classes, total, rng):
    """Segment classes for a split: shuffled rounds over all classes, so each appears."""
    out = []
    while len(out) < total:
        out += list(rng.permutation(classes))
    return out[:total]


STANDIN_BODY_MODEL = "smplh_standin.npz"
# SMPL-H's hands: five fingers of three joints each, per hand, after the 22 body joints.
_FINGER_SPREAD = np.linspace(-0.03, 0.03, 5)


def standin_body_model_path(out_dir: str) -> str:
    return os.path.join(out_dir, STANDIN_BODY_MODEL)


def standin_body_model() -> dict:
    """A small SMPL-H-shaped body model: 52 joints on our proportions, 2 vertices a joint.

    Its keys and shapes are those of the AMASS SMPL-H `model.npz`, so the real loader
    reads it (and human_body_prior's BodyModel would: posedirs has 51 x 9 columns).
    Each joint is the mean of two vertices placed around it, so J_regressor @ v_template
    gives the rest joints exactly; hands hang off the wrists, fingers along the arm.
    """
    parents = list(SMPL.PARENTS[: SMPL.BODY_JOINTS])
    offsets = [np.asarray(o) for o in SMPL.OFFSETS[: SMPL.BODY_JOINTS]]
    for wrist, side in ((SMPL.L_WRIST, 1.0), (SMPL.R_WRIST, -1.0)):
        for spread in _FINGER_SPREAD:
            parent = wrist
            for k in range(3):
                parents.append(parent)
                step = 0.08 if k == 0 else 0.03
                offsets.append(np.array([side * step, 0.0, spread if k == 0 else 0.0]))
                parent = len(parents) - 1
    rest = np.zeros((len(parents), 3))
    rest[0] = [0.0, HIP_HEIGHT, 0.0]
    for j in range(1, len(parents)):
        rest[j] = rest[parents[j]] + offsets[j]
    n = len(parents)
    jitter = np.tile([[0.0, 0.01, 0.0], [0.0, -0.01, 0.0]], (n, 1))
    vertices = np.repeat(rest, 2, axis=0) + jitter  # [2n, 3]
    regressor = np.zeros((n, 2 * n))
    regressor[np.arange(n), 2 * np.arange(n)] = 0.5
    regressor[np.arange(n), 2 * np.arange(n) + 1] = 0.5
    weights = np.repeat(np.eye(n), 2, axis=0)  # each vertex follows its joint
    faces = np.array([[i, i + 1, (i + 2) % (2 * n)] for i in range(0, 2 * n, 2)], np.int32)
    kintree = np.stack([np.array([2**32 - 1] + parents[1:], np.int64), np.arange(n)])
    return dict(
        J_regressor=regressor,
        v_template=vertices,
        kintree_table=kintree,
        weights=weights,
        f=faces,
        shapedirs=np.zeros((2 * n, 3, 16)),
        posedirs=np.zeros((2 * n, 3, (n - 1) * 9)),
    )


def write_synthetic(out_dir: str, cfg, seed: int) -> tuple[str, str]:
    """Writes synthetic AMASS .npz files and BABEL train/val JSON under out_dir.

    Args:
      out_dir: destination folder (prepare uses workdir/raw).
      cfg: `config.data`; reads cfg.synthetic.
      seed: the experiment seed; the generator uses seed + cfg.synthetic.seed_offset.

    Returns:
      (amass_root, babel_dir).
    """
    sc = cfg.synthetic
    for name in sc.classes:
        _motion(name, np.zeros(1), dict(amp=1, speed=1, side=1, phase=0))  # fail early on a typo
    amass_root, babel_dir = os.path.join(out_dir, "amass"), os.path.join(out_dir, "babel")
    model = standin_body_model()
    fileio.atomic_write(standin_body_model_path(out_dir), lambda f: np.savez(f, **model))
    rng = np.random.default_rng([seed + sc.seed_offset])
    t0 = time.time()
    sid = 0
    for split, count in (("train", sc.num_train), ("val", sc.num_val)):
        lo, hi, null = sc.min_segments, sc.max_segments, sc.null_frame_ann_fraction
        if split == "val":  # drawn after train, so train is the same whatever these are
            lo = max(lo, sc.val_min_segments)
            hi, null = max(hi, lo), sc.val_null_frame_ann_fraction
        num_segments = rng.integers(lo, hi + 1, count)
        single = rng.random(count) < null
        num_segments[single] = 1
        plan = _class_plan(list(sc.classes), int(num_segments.sum()), rng)
        entries = {}
        for i in range(count):
            classes, plan = plan[: num_segments[i]], plan[num_segments[i] :]
            for j in range(1, len(classes)):  # no segment repeats its predecessor
                if classes[j] == classes[j - 1]:
                    classes[j] = next(c for c in sc.classes if c != classes[j - 1])
            durations = rng.uniform(sc.min_segment_s, sc.max_segment_s, len(classes))
            fps = int(rng.choice(sc.fps_choices))
            poses, trans, betas = synth_sequence(classes, durations, fps, rng)
            subject = f"{split}_subject{i % 7:02d}"
            rel = os.path.join("SYNTH", subject, f"{split}{i:05d}_poses.npz")
            rate_key = "mocap_framerate" if i % 2 == 0 else "mocap_frame_rate"
            arrays = dict(
                poses=poses,
                trans=trans,
                betas=betas,
                dmpls=np.zeros((len(poses), 8)),
                gender=np.array(rng.choice(["male", "female", "neutral"])),
                **{rate_key: np.array(float(fps))},
            )
            fileio.atomic_write(os.path.join(amass_root, rel), lambda f, a=arrays: np.savez(f, **a))
            bounds = np.concatenate([[0.0], np.cumsum(durations)])
            dur = round(len(poses) / fps, 3)
            seq_names = sorted(set(classes))
            entries[str(sid)] = dict(
                babel_sid=sid,
                url=f"synthetic://{sid}",
                feat_p=f"SYNTH/{rel}",
                dur=dur,
                seq_ann=dict(
                    babel_lid=f"s{sid}",
                    anntr_id="synthetic",
                    mul_act=len(seq_names) > 1,
                    labels=_labels(seq_names, None, False),
                ),
                frame_ann=None
                if single[i]
                else dict(
                    babel_lid=f"f{sid}",
                    anntr_id="synthetic",
                    mul_act=True,
                    labels=_labels(classes, bounds, True),
                ),
            )
            sid += 1
        fileio.write_json(os.path.join(babel_dir, f"{split}.json"), entries)
    logging.info(
        "synthetic BABEL: %d train + %d val sequences written to %s in %.1f s",
        sc.num_train,
        sc.num_val,
        out_dir,
        time.time() - t0,
    )
    return amass_root, babel_dir
