"""Skeleton animations of windows (GIF) and the pictures evaluation adds.

The command line (wat_jax/tools/visualize.py) draws one window with `window_gif`
or `skeleton_gif`.

What a window's features are decides the drawing:
  [T, 18, 3]  DenseGait: OpenPose-18 (x, y, confidence), x right and y up after
              preparation; joints with confidence 0 are hidden, and so are their bones.
              (data.transform="reference" windows are pixels minus an origin that
              index.jsonl records: window_gif adds it back and turns y up.)
  [T, 25, 6]  BABEL: 24 SMPL joints' local 6-D rotations and the root translation.
              Forward kinematics over SMPL's kinematic tree with approximate rest-pose
              bone offsets (data/skeletons.py: smpl_joints) gives 3-D joints,
              drawn from the side that shows the most of the motion, up axis vertical.
  otherwise   the first two features of each joint as points (the toy task).
"""

import os

import numpy as np

from wat_jax import fileio
from wat_jax.data.skeletons import SMPL, OpenPose18, smpl_joints
from wat_jax.errors import fail

SIDE_COLOURS = {"left": "tab:blue", "right": "tab:red", "centre": "black"}


def project_side_view(
    joints: np.ndarray, head: int = SMPL.HEAD, root: int = SMPL.PELVIS
) -> np.ndarray:
    """[T, J, 3] -> [T, J, 2]: the up axis (root to head) vertical, and horizontally the
    remaining axis along which the window spreads most (shows a walk from the side)."""
    up_vec = (joints[:, head] - joints[:, root]).mean(0)
    up = int(np.abs(up_vec).argmax())
    rest = [a for a in range(3) if a != up]
    spread = [np.ptp(joints[..., a]) for a in rest]
    across = rest[int(np.argmax(spread))]
    return np.stack([joints[..., across], np.sign(up_vec[up] or 1.0) * joints[..., up]], -1)


def _sides(count: int, left, right) -> list[str]:
    return ["left" if j in left else "right" if j in right else "centre" for j in range(count)]


def skeleton_frames(motion: np.ndarray, rot6d: str = "rows"):
    """A window's drawing: (points [T, J, 2], visible [T, J], bones, joint sides, kind).

    `rot6d`: the 6-D convention of BABEL features (config.data.rot6d).
    """
    motion = np.asarray(motion, np.float64)
    frames, joints, features = motion.shape
    if (joints, features) == (len(OpenPose18.JOINTS), 3):
        visible = motion[..., 2] > 0
        return (
            motion[..., :2],
            visible,
            OpenPose18.BONES,
            _sides(joints, OpenPose18.LEFT, OpenPose18.RIGHT),
            "openpose18",
        )
    if (joints, features) == (SMPL.FEATURE_ROWS, 6):
        points = project_side_view(smpl_joints(motion, rot6d))
        bones = [(p, j) for j, p in enumerate(SMPL.PARENTS) if p >= 0]
        return (
            points,
            np.ones((frames, len(SMPL.JOINTS)), bool),
            bones,
            _sides(len(SMPL.JOINTS), SMPL.LEFT, SMPL.RIGHT),
            "smpl24",
        )
    if features < 2:
        raise fail("motion", f"cannot draw features of shape {motion.shape}; need F >= 2")
    return motion[..., :2], np.ones((frames, joints), bool), (), ["centre"] * joints, "points"


def title_lines(title: str, size: int) -> list[str]:
    """The title's lines wrapped to a `size`-pixel-wide picture (7-point text: ~5.6 px a
    character), so that long sources and label lists are never cut at the edges."""
    import textwrap

    width = max(20, int(size / 5.6))
    return [part for line in title.split("\n") for part in (textwrap.wrap(line, width) or [""])]


def skeleton_gif(
    motion: np.ndarray,
    mask: np.ndarray | None,
    path: str,
    title: str = "",
    fps: float = 15.0,
    size: int = 320,
    max_frames: int = 60,
    rot6d: str = "rows",
) -> str:
    """Animates one window [T, J, F] (real frames by `mask` [T]) into a GIF of size x size px.

    Args:
      motion: the window's features.
      mask: which frames are real (None: all).
      path: the GIF to write.
      title: drawn above the skeleton.
      fps: playback rate.
      size: width and height in pixels.
      max_frames: longer windows are subsampled evenly to this many frames.
      rot6d: the 6-D convention of BABEL features (config.data.rot6d).

    Returns:
      path.
    """
    from PIL import Image

    from wat_jax.reporting.plots import _pyplot

    motion = np.asarray(motion)
    if motion.ndim != 3:
        raise fail("motion", f"expected one window [T, J, F], got shape {list(motion.shape)}")
    real = np.ones(len(motion), bool) if mask is None else np.asarray(mask, bool)
    motion = motion[real]
    if not len(motion):
        raise fail("motion", "the window has no real frames (its mask is all False)")
    keep = np.unique(np.linspace(0, len(motion) - 1, min(max_frames, len(motion))).round())
    points, visible, bones, sides, _ = skeleton_frames(motion, rot6d)
    points, visible = points[keep.astype(int)], visible[keep.astype(int)]

    plt = _pyplot()
    from matplotlib.collections import LineCollection

    heading = title_lines(title, size)
    top = max(0.5, 1 - (len(heading) * 11 + 6) / size)  # 7-point lines, ~11 px each
    fig = plt.figure(figsize=(size / 100, size / 100), dpi=100)
    ax = fig.add_axes((0.05, 0.04, 0.9, top - 0.05))
    shown = points[visible] if visible.any() else np.zeros((1, 2))
    lo, hi = shown.min(0), shown.max(0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-3) * 1.1
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.axhline(lo[1], color="0.8", lw=1)  # the lowest point reached: a ground line
    fig.text(0.5, 1 - 3 / size, "\n".join(heading), fontsize=7, ha="center", va="top")
    bone_colours = [SIDE_COLOURS[sides[j]] for _, j in bones]
    lines = ax.add_collection(LineCollection([], linewidths=2.5))
    dots = ax.scatter([], [], s=12, zorder=3)
    joint_colours = np.array([plt.matplotlib.colors.to_rgba(SIDE_COLOURS[s]) for s in sides])
    images = []
    for t in range(len(points)):
        shown_bones = [k for k, (a, b) in enumerate(bones) if visible[t, a] and visible[t, b]]
        lines.set_segments([points[t, list(bones[k])] for k in shown_bones])
        lines.set_color([bone_colours[k] for k in shown_bones])
        dots.set_offsets(points[t, visible[t]] if visible[t].any() else np.zeros((0, 2)))
        dots.set_color(joint_colours[visible[t]])
        fig.canvas.draw()
        rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
        images.append(Image.fromarray(np.ascontiguousarray(rgb)))
    plt.close(fig)
    duration = int(round(1000 / fps))
    fileio.atomic_write(
        path,
        lambda f: images[0].save(
            f, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0
        ),
    )
    return path


def _groups(config, labels: np.ndarray, class_names: list[str], columns=None):
    """Colour groups for the embedding picture: (window ids [N], names, column ids [G]).

    columns: the label columns that are groups (the task's picture_columns; all when None).
    A window joins the group of its highest such column above data.threshold, else none (-1).
    """
    labels = np.asarray(labels, np.float32)
    threshold = float(config.data.threshold)
    columns = list(range(len(class_names))) if columns is None else list(columns)
    sub = labels[:, columns]  # [N, G]
    ids = (
        np.where(sub.max(1) > threshold, sub.argmax(1), -1) if columns else np.full(len(labels), -1)
    )
    return ids, [class_names[c] for c in columns], columns


def eval_pictures(
    config,
    out_dir: str,
    step: int,
    windows,
    motion_emb: np.ndarray,
    prototypes: np.ndarray | None,
    columns: list[int] | None = None,
    coloured_by: str = "by class",
) -> list[str]:
    """Writes the embedding-space PNG and one example GIF into `out_dir` (WORKDIR/eval/).

    Args:
      config: the run's config.
      out_dir: the folder written.
      step: the checkpoint step (in the file names).
      windows: the val windows evaluation embedded (a prepared.PreparedSplit: motion,
        mask, labels [N, C], the C class names and index rows); window 0 is the GIF.
      motion_emb: [N, E] their embeddings, in the same row order.
      prototypes: [K, E] projected text prototypes; with K == C each is coloured as
        its class (for DenseGait, single-attribute texts: the picture group's shown).
      columns: the label columns that colour the picture (the task's
        picture_columns; every class when None).
      coloured_by: the caption's words for the colouring ("by class", "by viewpoint").

    Returns:
      The paths written.
    """
    from wat_jax.reporting import plots

    class_names = list(windows.classes)
    ids, names, columns = _groups(config, windows.labels, class_names, columns)
    proto_groups = proto_names = answer = None
    if prototypes is not None and len(prototypes) == len(class_names):
        answer = model_answer(motion_emb[0], prototypes, class_names)
        lookup = {c: g for g, c in enumerate(columns)}
        proto_groups = np.array([lookup.get(c, -1) for c in range(len(class_names))])
        shown = proto_groups >= 0
        prototypes, proto_groups = prototypes[shown], proto_groups[shown]
        proto_names = [class_names[c] for c in np.flatnonzero(shown)]
    paths = [
        plots.embedding_png(
            motion_emb,
            ids,
            names,
            os.path.join(out_dir, f"embedding_step_{step}.png"),
            f"val embeddings (PCA), {coloured_by}, step {step}",
            prototypes,
            proto_groups,
            proto_names,
        )
    ]
    paths.append(
        window_gif(
            windows,
            0,
            os.path.join(out_dir, f"example_step_{step}.gif"),
            float(config.data.threshold),
            rot6d=config.data.rot6d,
            answer=answer,
        )
    )
    return paths


def model_answer(
    motion_emb: np.ndarray, prototypes: np.ndarray, class_names: list[str], top_k: int = 3
) -> list[tuple[str, float]]:
    """One window's top_k (class, cosine) against the class prototypes, best first: what
    classification answers for it (ties: the lower column first, as Run.classify)."""
    from wat_jax import metrics

    scores = metrics.cosine(np.asarray(motion_emb)[None], np.asarray(prototypes))[0]  # [C]
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [(class_names[c], float(scores[c])) for c in order]


def window_gif(
    gallery,
    index: int,
    path: str,
    threshold: float = 0.5,
    fps: float = 15.0,
    rot6d: str = "rows",
    answer: list[tuple[str, float]] | None = None,
) -> str:
    """Animates window `index` of a prepared split, titled with its source and true labels
    and, given the model's `answer` (model_answer), the model's top classes beside them:
    a tick when the first is one of the true labels."""
    if not 0 <= index < len(gallery):
        raise fail("--index", f"must be in 0..{len(gallery) - 1}, got {index}")
    row = gallery.index[index]
    names = [c for c, v in zip(gallery.classes, np.asarray(gallery.labels[index])) if v > threshold]
    shown = ", ".join(names[:8]) + (f" +{len(names) - 8} more" if len(names) > 8 else "")
    title = f"{row.get('source')} @ {row.get('start_s', 0):.1f}s\ntrue: {shown or '-'}"
    if answer:
        mark = "\u2713" if answer[0][0] in names else "\u2717"
        title += "\nmodel: " + ", ".join(f"{c} {s:.2f}" for c, s in answer) + f" {mark}"
    motion = np.asarray(gallery.motion[index])
    if "origin" in row:  # DenseGait's reference transform: back to pixels, then y up
        motion = (motion + np.asarray(row["origin"], motion.dtype)) * np.array([1, -1, 1])
    return skeleton_gif(
        motion,
        np.asarray(gallery.mask[index]),
        path,
        title,
        fps,
        rot6d=rot6d,
    )
