"""The pictures evaluation writes: confusion matrices, per-class/attribute bars and the
embedding space (a 2-D PCA of motion embeddings and text prototypes)."""

import os

import numpy as np

from wat_jax import fileio, metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    fileio.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
    _pyplot().close(fig)
    return path


# What a cell of metrics.confusion_matrix counts, said under the picture: with windows of
# several labels its diagonal is stricter than the per-class top-1 (a window labelled
# stand and walk whose top-1 is walk is right for both classes there, off-diagonal here).
CONFUSION_NOTE = (
    "Row: the windows whose labels include that class (a window with several labels is in "
    "each of their rows). Cell: the share of them whose top-1 is the column's class, so the "
    "diagonal is the windows whose top-1 is exactly that class. Per-class top-1 counts a "
    "window right when its top-1 is any of its labels, so a class that shares windows with "
    "another (stand within walk) reads lower on this diagonal than in per-class top-1."
)


def confusion_png(
    matrix: np.ndarray, names: list[str], path: str, title: str, note: str = CONFUSION_NOTE
) -> str:
    """Row-normalised confusion matrix (rows: ground truth, columns: top-1), with `note`
    (what the cells count) under it; each diagonal cell is written as a number."""
    import textwrap

    plt = _pyplot()
    rows = matrix.sum(1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros_like(matrix, float), where=rows > 0)
    size = max(4.0, 0.28 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    if len(names) <= 30:  # the diagonal's values: the number a reader compares
        for i in range(len(names)):
            if rows[i, 0] > 0:
                colour = "black" if norm[i, i] > 0.6 else "white"
                ax.text(i, i, f"{norm[i, i]:.2f}", ha="center", va="center", fontsize=5,
                        color=colour)  # fmt: skip
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted (top-1)")
    ax.set_ylabel("ground truth (every label of a window)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    if note:
        width = max(60, int(size * 13))  # characters a line, about the figure's width
        fig.text(0.02, -0.01, textwrap.fill(note, width), fontsize=7, va="top", wrap=False)
    return _save(fig, path)


def bars_png(
    values: dict,
    path: str,
    title: str,
    xlabel: str,
    baseline: dict | None = None,
    note: str = "",
) -> str:
    """Horizontal bars, one per name, optionally beside a baseline (e.g. random), and a
    `note` under them (what a bar counts)."""
    plt = _pyplot()
    names = [k for k, v in values.items() if np.isfinite(v)]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.25 * len(names) + 1)))
    ax.barh(y, [values[n] for n in names], height=0.4 if baseline else 0.8, label="model")
    if baseline:
        ax.barh(
            y + 0.4,
            [baseline.get(n, np.nan) for n in names],
            height=0.4,
            label="random",
            color="0.7",
        )
        ax.legend(loc="lower right")
    ax.set_yticks(y + (0.2 if baseline else 0), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if note:
        import textwrap

        fig.text(0.02, -0.01, textwrap.fill(note, 95), fontsize=7, va="top")
    return _save(fig, path)


def pca_2d(points: np.ndarray, fit: np.ndarray | None = None) -> np.ndarray:
    """Projects points [N, E] onto the top two principal axes of `fit` (default: points).

    Rows are L2-normalised first (the model scores by cosine). The sign of each
    axis is fixed (largest loading positive) so pictures of reruns look alike.

    Returns:
      [N, 2] coordinates.
    """

    points = metrics.unit_rows(points, np.float64)
    fit = points if fit is None else metrics.unit_rows(fit, np.float64)
    mean = fit.mean(0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    axes = vt[:2]  # [2, E]
    if axes.shape[0] < 2:  # a single point or one-dimensional embeddings
        axes = np.concatenate([axes, np.zeros((2 - axes.shape[0], axes.shape[1]))])
    signs = np.sign(axes[np.arange(2), np.abs(axes).argmax(1)])
    return (points - mean) @ (axes * np.where(signs == 0, 1, signs)[:, None]).T


def _palette(count: int):
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if count <= 10 else "tab20" if count <= 20 else "hsv")
    return [cmap(i % cmap.N if count <= 20 else i / count) for i in range(count)]


def embedding_png(
    motion_emb: np.ndarray,
    groups: np.ndarray,
    group_names: list[str],
    path: str,
    title: str,
    prototypes: np.ndarray | None = None,
    prototype_groups: np.ndarray | None = None,
    prototype_names: list[str] | None = None,
    max_points: int = 3000,
) -> str:
    """The embedding space: motion windows as dots coloured by group, texts as stars.

    Args:
      motion_emb: [N, E] motion embeddings; the PCA is fitted on them.
      groups: [N] int group id per window (-1: no group, drawn grey).
      group_names: names of the group ids, for the legend.
      path: the PNG to write.
      title: the figure title.
      prototypes: optional [K, E] text embeddings in the same space.
      prototype_groups: [K] group id per prototype (-1: grey); colours match windows.
      prototype_names: optional labels written beside the stars (up to 60 are written).
      max_points: windows beyond this are subsampled (seeded) to keep the plot readable.

    Returns:
      path.
    """
    plt = _pyplot()
    motion_emb, groups = np.asarray(motion_emb), np.asarray(groups)
    if len(motion_emb) > max_points:
        keep = np.sort(np.random.default_rng(0).choice(len(motion_emb), max_points, False))
        motion_emb, groups = motion_emb[keep], groups[keep]
    xy = pca_2d(motion_emb)
    colours = _palette(max(len(group_names), 1))
    fig, ax = plt.subplots(figsize=(8, 7))
    ungrouped = groups < 0
    if ungrouped.any():
        ax.scatter(*xy[ungrouped].T, s=8, c="0.75", label="none", alpha=0.6)
    for g, name in enumerate(group_names):
        sel = groups == g
        if sel.any():
            ax.scatter(
                *xy[sel].T,
                s=10,
                color=colours[g],
                alpha=0.7,
                label=name if len(group_names) <= 20 else None,
            )
    if prototypes is not None and len(prototypes):
        pxy = pca_2d(prototypes, fit=motion_emb)
        pg = np.full(len(pxy), -1) if prototype_groups is None else np.asarray(prototype_groups)
        face = [colours[g] if g >= 0 else "0.3" for g in pg]
        ax.scatter(
            *pxy.T,
            s=160,
            marker="*",
            c=face,
            edgecolors="black",
            linewidths=0.8,
            zorder=3,
            label="text prototypes",
        )
        if prototype_names is not None and len(prototype_names) <= 60:
            _ring_labels(ax, pxy, prototype_names, face, xy)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    if len(group_names) <= 20 or prototypes is not None:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=0.8)
    return _save(fig, path)


def ring_positions(points: np.ndarray, radius: float, centre: np.ndarray) -> np.ndarray:
    """[K, 2] label positions on a circle of `radius` around `centre`, evenly spaced and in
    the angular order of `points`, turned so that each label sits near its point's angle."""
    count = len(points)
    angles = np.arctan2(*(points - centre)[:, ::-1].T)  # [K], each point's direction
    order = np.argsort(angles, kind="stable")
    slots = 2 * np.pi * np.arange(count) / count
    # The turn of the evenly spaced slots that moves the labels least (circular mean).
    offset = np.angle(np.exp(1j * (angles[order] - slots)).mean())
    placed = np.empty(count)
    placed[order] = offset + slots
    return centre + radius * np.stack([np.cos(placed), np.sin(placed)], 1)


def _ring_labels(ax, pxy: np.ndarray, names: list[str], colours, cloud: np.ndarray) -> None:
    """Prototype names around the plot, each joined to its star by a thin line.

    The text prototypes sit close together (the modality gap puts every text near the
    middle of the motion cloud), so names written beside the stars pile up unreadably;
    evenly spaced on a circle just outside the windows, in the stars' angular order, none
    overlaps, and each line shows which star it names.
    """
    centre = pxy.mean(0)
    everything = np.concatenate([cloud, pxy])
    radius = 1.08 * float(np.linalg.norm(everything - centre, axis=1).max() or 1.0)
    spots = ring_positions(pxy, radius, centre)
    for (x, y), (tx, ty), name, colour in zip(pxy, spots, names, colours):
        ax.plot([x, tx], [y, ty], color=colour, lw=0.6, alpha=0.7, zorder=2)
        ax.text(
            tx, ty, name, fontsize=7, ha="left" if tx >= centre[0] else "right", va="center",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": colour, "alpha": 0.9},
            zorder=4,
        )  # fmt: skip
    reach = radius * 1.3  # room for the names outside the ring
    ax.set_xlim(centre[0] - reach, centre[0] + reach)
    ax.set_ylim(centre[1] - radius * 1.08, centre[1] + radius * 1.08)


def eval_dir(workdir: str) -> str:
    path = os.path.join(workdir, "eval")
    os.makedirs(path, exist_ok=True)
    return path


def _lanes(spans) -> list[int]:
    """Greedy lane per (start, stop) span so that spans in one lane do not overlap."""
    ends, lanes = [], []
    for start, stop in spans:
        lane = next((i for i, end in enumerate(ends) if end <= start), len(ends))
        if lane == len(ends):
            ends.append(stop)
        else:
            ends[lane] = stop
        lanes.append(lane)
    return lanes


def timeline_png(
    scores: np.ndarray,
    classes: list[str],
    fps: float,
    path: str,
    title: str,
    true_segments: list[dict] | None = None,
    query: tuple | None = None,
    max_curves: int = 8,
) -> str:
    """An action timeline: predicted segments, ground truth, class and query curves.

    Args:
      scores: [T, C] per-frame (smoothed) class scores; segments are runs of the top-1.
      classes: the C names (one colour each, shared by strips and curves).
      fps: frames per second (the x axis is in seconds).
      path: the PNG to write.
      title: the figure title.
      true_segments: optional [{"start_s", "end_s", "class"}]; overlapping ones are
        drawn in separate lanes.
      query: optional (text, curve [T], intervals [{"start_s", "end_s", "rank"}]).
      max_curves: at most this many class curves (the classes predicted or true,
        by their peak score).

    Returns:
      path.
    """
    from wat_jax import metrics as m

    plt = _pyplot()
    scores = np.asarray(scores, np.float64)
    t = np.arange(len(scores)) / fps
    colours = _palette(len(classes))
    col = {c: i for i, c in enumerate(classes)}
    pred = [(c, a / fps, b / fps) for c, a, b in m.label_runs(np.argmax(scores, 1))]
    true = None
    if true_segments is not None:
        true = sorted(
            ((col[s["class"]], s["start_s"], s["end_s"]) for s in true_segments),
            key=lambda s: (s[1], s[2], s[0]),
        )
    rows = 3 if query is not None else 2
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(12, 2.2 + 2.2 * (rows - 1)),
        sharex=True,
        gridspec_kw=dict(height_ratios=[1.3] + [2] * (rows - 1)),
    )
    _segment_strip(axes[0], pred, true, classes, colours, len(scores) / fps, title)
    # The curves of the classes on the strips, the highest-peaking first.
    shown = sorted({c for c, _, _ in pred} | {c for c, _, _ in true or []})
    shown = sorted(shown, key=lambda c: -scores[:, c].max())[:max_curves]
    ax = axes[1]
    for c in shown:
        ax.plot(t, scores[:, c], color=colours[c], lw=1.2, label=classes[c])
    ax.set_ylabel("class score (cosine)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    if query is not None:
        _query_panel(axes[2], t, *query)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0, len(scores) / fps)
    fig.tight_layout()
    return _save(fig, path)


def _segment_strip(strip, pred, true, classes, colours, duration: float, title: str) -> None:
    """The top panel: predicted segments, and under them the true ones (when given) in as
    many lanes as overlap; a segment wide enough carries its class name."""

    def bars(items, y, height):
        for c, start, stop in items:
            strip.broken_barh([(start, stop - start)], (y, height), color=colours[c])
            if stop - start > 0.06 * duration:
                strip.text(
                    (start + stop) / 2, y + height / 2, classes[c], ha="center", va="center",
                    fontsize=7, clip_on=True,
                )  # fmt: skip

    bars(pred, 1.1, 0.8)
    ticks, labels = [1.5], ["predicted"]
    if true is not None:
        lanes = _lanes([(a, b) for _, a, b in true])
        n = max(lanes, default=0) + 1
        h = 0.8 / n
        for (c, a, b), lane in zip(true, lanes):
            bars([(c, a, b)], 0.1 + (n - 1 - lane) * h, h * 0.95)
        ticks, labels = [0.5, 1.5], ["BABEL labels", "predicted"]
    strip.set_yticks(ticks, labels, fontsize=8)
    strip.set_ylim(0 if true is not None else 1.0, 2.0)
    strip.set_title(title)


def _query_panel(ax, t, text: str, curve, intervals) -> None:
    """The bottom panel: the query's curve, its intervals shaded, the best three numbered."""
    ax.plot(t, curve, color="black", lw=1.2)
    for interval in intervals:
        ax.axvspan(interval["start_s"], interval["end_s"], color="tab:orange", alpha=0.25)
        if interval["rank"] <= 3:
            ax.text(interval["start_s"], float(np.max(curve)), f"#{interval['rank']}",
                    fontsize=7, va="top")  # fmt: skip
    ax.set_ylabel("query score")
    ax.set_title(f"query: {text!r}", fontsize=9)
