"""Synthetic DenseGait: 2D walkers whose gait depends on their attributes.

Writes the real raw format (annotations CSV + one (T, 18, 3) .npy per tracklet, see
`densegait`), so `densegait.prepare` reads it through the real loader.

Each person draws one value per exclusive group (age, build, viewpoint, footwear, what
is carried) plus clothes and at most one arm action. A kinematic walker (hip and knee
angles, counter-swinging arms, trunk lean, pelvis bob and sway) is posed in 3D, in units
of body height, turned to the viewpoint and projected into image pixels with a random
size, position and perspective drift. Attributes act where they plausibly would:
  age: child smaller-headed and quicker, senior stooped, slow, short-stepped;
  build: fat wider, slower, arms held out; thin narrower; gender: mild proportions;
  backpack leans the trunk; bag / carrying by hand damp one arm's swing; hand trunk
  (pulling) holds one arm back; carrying by arm bends one elbow; holding objects in
  front fixes both forearms forward; calling lifts a hand to the head; dress or long
  coat shortens the stride; walking in a group slows; talking turns the head.
Footwear and the other clothes leave no trace. Labels are an automatic annotator's:
soft probabilities from noisy logits, a few flipped. Keypoints get pixel noise, low
confidence for the face from behind and the far side's face from the side, and
occasional dropped joints ((0, 0, 0) as OpenPose writes them).
"""

import csv
import io as io_text
import json
import os
import shutil
import tempfile

import numpy as np
from absl import logging

from wat_jax import fileio
from wat_jax.reporting import run_log
from wat_jax.data import gait_attributes
from wat_jax.data.skeletons import OpenPose18 as OP

_COL = {name: i for i, name in enumerate(gait_attributes.COLUMNS)}
_GROUPS = {  # exclusive groups: (columns, probabilities)
    "age": (
        ("AgeChild", "AgeYoungAdult", "AgeMediumAdult", "AgeOldAdult", "AgeSenior"),
        (0.1, 0.28, 0.28, 0.19, 0.15),
    ),
    "body": (("BodyThin", "BodyNormal", "BodyFat"), (0.25, 0.5, 0.25)),
    "view": (("Front", "Side", "Back"), (1 / 3, 1 / 3, 1 / 3)),
    "foot": (
        ("Sandals", "Shoes", "LeatherShoes", "SportShoes", "Boots", "Sneaker", "ClothShoes"),
        (0.08, 0.2, 0.14, 0.14, 0.1, 0.26, 0.08),
    ),
    "carry": (
        ("Backpack", "Bag", "HandTrunk", "OtherAttchment", "none"),
        (0.22, 0.2, 0.07, 0.06, 0.45),
    ),
    "arm": (
        ("none", "Calling", "Holding", "CarryingbyArm", "CarryingbyHand", "HoldObjectsInFront"),
        (0.6, 0.08, 0.07, 0.07, 0.09, 0.09),
    ),
}
_DEG = np.pi / 180


def write_synthetic(out_dir: str, cfg, seed: int) -> tuple[str, str]:
    """Writes out_dir/annotations.csv and out_dir/tracklets/*.npy (reused when unchanged).

    Args:
      out_dir: where the raw files go (prepare uses workdir/raw).
      cfg: the data config: reads data.fps and data.synthetic.* (num_tracks, min_frames,
        max_frames, keypoint_noise, drop_prob, label_confidence, flip_prob,
        view_jitter_deg).
      seed: everything is a function of it.

    Returns:
      (annotations_csv, tracklets_dir).
    """
    s = cfg.synthetic
    csv_path, tracklets_dir = (
        os.path.join(out_dir, "annotations.csv"),
        os.path.join(out_dir, "tracklets"),
    )
    stamp_path = os.path.join(out_dir, "synthetic.json")
    stamp = {"seed": seed, "fps": cfg.fps, "synthetic": s.to_dict()}
    if os.path.exists(csv_path) and os.path.exists(stamp_path):
        with open(stamp_path) as f:
            if json.load(f) == json.loads(json.dumps(stamp)):
                return csv_path, tracklets_dir
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(csv_path):
        os.unlink(csv_path)  # the CSV marks a complete set; drop it while files change
    # Tracklets land in a temporary folder renamed into place, and the CSV is written
    # last, so an interrupted run never leaves a CSV naming absent or partial files.
    tmp_dir = tempfile.mkdtemp(dir=out_dir, prefix=".tracklets-")
    os.chmod(tmp_dir, 0o777 & ~fileio.umask())  # mkdtemp's 0700 would hide the tracklets
    rng = np.random.default_rng([seed, 61])
    table = io_text.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(
        [gait_attributes.TRACK_COLUMN, gait_attributes.FILE_COLUMN, *gait_attributes.COLUMNS]
    )
    progress = run_log.Progress("synthetic densegait", s.num_tracks, unit="tracklets", every_s=10.0)
    try:
        for k in range(s.num_tracks):
            truth = sample_person(rng)
            length = int(rng.integers(s.min_frames, s.max_frames + 1))
            track = walk(truth, length, cfg.fps, s, rng)  # [T, 18, 3]
            name = f"trk{k:06d}.npy"
            np.save(os.path.join(tmp_dir, name), track)
            probs = annotate(truth, s, rng)
            writer.writerow([100000 + k, name, *(f"{p:.4f}" for p in probs)])
            progress.update(k + 1)
        if os.path.exists(tracklets_dir):
            shutil.rmtree(tracklets_dir)
        os.replace(tmp_dir, tracklets_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    fileio.write_json(stamp_path, stamp)
    fileio.write_text(csv_path, table.getvalue())
    logging.info("synthetic densegait: %s tracklets in %s", s.num_tracks, out_dir)
    return csv_path, tracklets_dir


def sample_person(rng) -> np.ndarray:
    """bool [42]: one value per exclusive group, clothes, and what goes with them."""
    truth = np.zeros(len(gait_attributes.COLUMNS), bool)
    pick = {g: cols[rng.choice(len(cols), p=p)] for g, (cols, p) in _GROUPS.items()}
    for value in pick.values():
        if value != "none":
            truth[_COL[value]] = True
    female = rng.random() < 0.48
    truth[_COL["Female"]] = female
    if pick["carry"] == "none":
        truth[[_COL["No accessory"], _COL["No carrying"]]] = True
    if pick["carry"] == "HandTrunk":
        truth[_COL["Pulling"]] = True
    if pick["carry"] == "OtherAttchment":
        truth[_COL["CarryingOther"]] = rng.random() < 0.5
    truth[_COL["Talking"]] = rng.random() < 0.1
    truth[_COL["Gathering"]] = rng.random() < 0.08
    formal = rng.random() < 0.25
    truth[_COL["FormalWear"]], truth[_COL["CasualWear"]] = formal, not formal
    outer = rng.choice(3, p=(0.55, 0.33, 0.12))  # none, jacket, long coat
    truth[_COL["Jacket"]], truth[_COL["LongCoat"]] = outer == 1, outer == 2
    dress = female and pick["age"] != "AgeSenior" and rng.random() < 0.3
    truth[_COL["Dress"]] = dress
    if not dress:
        long_ = rng.random() < 0.7
        truth[_COL["LongTrousers"]], truth[_COL["Trousers"]] = long_, True
    truth[_COL["LongSleeve"]] = outer > 0 or rng.random() < 0.4
    return truth


def annotate(truth: np.ndarray, s, rng) -> np.ndarray:
    """Soft probabilities [42] like an automatic annotator's: confident, noisy, a few wrong."""
    said = truth ^ (rng.random(truth.shape) < s.flip_prob)
    logits = np.where(said, 1.0, -1.0) * rng.normal(s.label_confidence, 0.9, truth.shape)
    return np.clip(1.0 / (1.0 + np.exp(-logits)), 0.001, 0.999)


def walk(truth: np.ndarray, length: int, fps: float, s, rng) -> np.ndarray:
    """One tracklet [length, 18, 3] in image pixels (y down) for a person's attributes."""
    has = {name for name, t in zip(gait_attributes.COLUMNS, truth, strict=True) if t}
    # Gait parameters; body height is 1.
    # cadence in steps/s; stride is the hip's swing amplitude.
    cadence, stride = 1.85 * rng.normal(1, 0.06), 24 * _DEG * rng.normal(1, 0.08)
    lean, head_fwd = 3 * _DEG, 0.0
    arm_amp, abduct, knee_bias = 22 * _DEG, 6 * _DEG, 0.0
    shoulder_w, hip_w, sway = 0.115, 0.085, 0.012
    head, torso = 0.12, 0.3
    lean += rng.normal(0, 1.5) * _DEG
    if "AgeChild" in has:
        cadence, stride, head, torso = cadence * 1.25, stride * 0.95, 0.17, 0.27
    elif "AgeOldAdult" in has:
        cadence, stride, lean = cadence * 0.95, stride * 0.9, lean + 3 * _DEG
    elif "AgeSenior" in has:
        cadence, stride, arm_amp = cadence * 0.8, stride * 0.62, arm_amp * 0.55
        lean, head_fwd, knee_bias = lean + 16 * _DEG, 15 * _DEG, 10 * _DEG
    elif "AgeYoungAdult" in has:
        stride *= 1.05
    if "BodyFat" in has:
        cadence, stride, arm_amp = cadence * 0.9, stride * 0.88, arm_amp * 0.8
        shoulder_w, hip_w, abduct, sway = shoulder_w * 1.25, hip_w * 1.35, 16 * _DEG, 0.03
    elif "BodyThin" in has:
        shoulder_w, hip_w = shoulder_w * 0.9, hip_w * 0.88
    if "Female" in has:
        cadence, shoulder_w, hip_w = cadence * 1.04, shoulder_w * 0.92, hip_w * 1.06
    if "Dress" in has or "LongCoat" in has:
        stride *= 0.75
    if "Backpack" in has:
        lean += 9 * _DEG
    if "Gathering" in has:
        cadence *= 0.92
    # Arms: per side (right, left) flexion offset, elbow bend, swing gain, abduction.
    arm = {side: [0.0, 15 * _DEG, 1.0, abduct] for side in (0, 1)}
    busy = int(rng.integers(2))  # which arm carries
    if "Bag" in has or "CarryingbyHand" in has:
        arm[busy][2], arm[busy][3] = 0.25, abduct + 8 * _DEG
    if "HandTrunk" in has:
        arm[busy] = [-25 * _DEG, 5 * _DEG, 0.05, abduct]
    if "CarryingbyArm" in has:
        arm[busy] = [5 * _DEG, 95 * _DEG, 0.15, abduct + 10 * _DEG]
    if "Holding" in has:
        arm[busy] = [15 * _DEG, 55 * _DEG, 0.2, abduct]
    if "Calling" in has:
        arm[busy] = [60 * _DEG, 120 * _DEG, 0.0, 25 * _DEG]  # elbow up, hand at the head
    if "HoldObjectsInFront" in has:
        arm = {side: [15 * _DEG, 75 * _DEG, 0.05, 10 * _DEG] for side in (0, 1)}

    t = np.arange(length) / fps
    psi = 2 * np.pi * (cadence / 2) * t + rng.uniform(0, 2 * np.pi)  # cycle = 2 steps
    pos = np.zeros((length, len(OP.JOINTS), 3))  # X to the person's left, Y up, Z forward
    leg = 0.53 - 0.04 - knee_bias * 0.1
    pelvis = np.stack([sway * np.sin(psi), leg + 0.012 * np.cos(2 * psi), 0 * t], -1)
    for side, sign, hip_j in ((0, -1, OP.R_HIP), (1, 1, OP.L_HIP)):
        phase = psi + np.pi * side
        hip = pelvis + [sign * hip_w, 0, 0]
        thigh = stride * np.sin(phase) + knee_bias * 0.5
        knee_flex = (
            5 * _DEG
            + knee_bias
            + 60 * _DEG * (stride / (24 * _DEG)) * np.maximum(0, np.cos(phase)) ** 2
        )
        knee = hip + 0.245 * _dir(thigh, 0)
        pos[:, hip_j], pos[:, hip_j + 1] = hip, knee
        pos[:, hip_j + 2] = knee + 0.245 * _dir(thigh - knee_flex, 0)
    neck = pelvis + torso * np.stack([0 * t, np.cos(lean) + 0 * t, np.sin(lean) + 0 * t], -1)
    pos[:, OP.NECK] = neck
    head_dir = _dir(np.pi - lean - head_fwd, 0)  # up, tipped forward with the trunk
    turn = 0.02 * np.sin(2 * np.pi * 0.3 * t) if "Talking" in has else 0 * t
    nose = neck + head * 0.7 * head_dir + np.stack([turn, 0 * t, 0.04 + 0 * t], -1)
    pos[:, OP.NOSE] = nose
    for sign, eye, ear in ((-1, OP.R_EYE, OP.R_EAR), (1, OP.L_EYE, OP.L_EAR)):
        pos[:, eye] = nose + [sign * 0.025, 0.02, -0.01]
        pos[:, ear] = nose + [sign * 0.06, 0.0, -0.06]
    for side, sign, sh_j in ((0, -1, OP.R_SHOULDER), (1, 1, OP.L_SHOULDER)):
        offset, elbow_bend, gain, abd = arm[side]
        swing = offset + gain * arm_amp * np.sin(psi + np.pi * (1 - side))  # opposite leg
        shoulder = neck + [sign * shoulder_w, -0.02, 0]
        elbow = shoulder + 0.17 * _dir(swing, sign * abd)
        pos[:, sh_j], pos[:, sh_j + 1] = shoulder, elbow
        bend = elbow_bend + 15 * _DEG * gain * np.maximum(0, np.sin(psi + np.pi * (1 - side)))
        pos[:, sh_j + 2] = elbow + 0.15 * _dir(swing + bend, sign * abd * 0.5)
    speed = cadence * 2 * 0.49 * np.sin(stride)  # steps/s x step length, body heights/s
    return _project(pos, truth, t, speed, s, rng)


def _dir(flex, abduct) -> np.ndarray:
    """Unit limb direction hanging down, flexed forward by `flex`, out sideways by `abduct`."""
    flex = np.asarray(flex) + 0 * np.asarray(abduct)
    return np.stack(
        [
            np.sin(abduct) * np.cos(flex),
            -np.cos(abduct) * np.cos(flex),
            np.sin(flex) + 0 * np.asarray(abduct),
        ],
        -1,
    )


def _project(pos, truth, t, speed, s, rng) -> np.ndarray:
    """Turns the walker to its viewpoint and projects into pixels with noise and dropouts."""
    view = next(v for v in ("Front", "Side", "Back") if truth[_COL[v]])
    heading = {"Front": 0.0, "Back": np.pi, "Side": rng.choice([-1, 1]) * np.pi / 2}[view]
    heading += rng.uniform(-1, 1) * s.view_jitter_deg * _DEG
    travel = speed * t  # body heights walked
    world_x = pos[..., 0] * np.cos(heading) + (pos[..., 2] + travel[:, None]) * np.sin(heading)
    depth0 = rng.uniform(12, 30)  # distance in body heights; perspective drift front/back
    scale = rng.uniform(60, 350) * depth0 / (depth0 - np.cos(heading) * travel)  # [T] px
    x0, y0 = rng.uniform(200, 1700), rng.uniform(400, 1000)
    noise = s.keypoint_noise * scale[:, None]
    x = x0 + scale[:, None] * world_x + noise * rng.standard_normal(world_x.shape)
    y = y0 - scale[:, None] * pos[..., 1] + noise * rng.standard_normal(world_x.shape)
    conf = np.clip(rng.normal(0.78, 0.1, x.shape), 0.15, 0.99)
    face = list(OP.FACE)
    if view == "Back":
        conf[:, face] *= 0.08
    elif view == "Side":  # the far side's eye and ear are hidden
        far = (OP.L_EYE, OP.L_EAR) if np.sin(heading) > 0 else (OP.R_EYE, OP.R_EAR)
        conf[:, far] *= 0.2
    track = np.stack([x, y, conf], -1)
    dropped = rng.random(conf.shape) < s.drop_prob
    track[dropped] = 0.0
    return track.astype(np.float32)
