"""The pictures evaluation writes: confusion matrices and per-class/attribute bars."""

import os

import numpy as np

from wat_jax import io


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    io.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
    _pyplot().close(fig)
    return path


def confusion_png(matrix: np.ndarray, names: list[str], path: str, title: str) -> str:
    """Row-normalised confusion matrix (rows: ground truth, columns: top-1)."""
    plt = _pyplot()
    rows = matrix.sum(1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros_like(matrix, float), where=rows > 0)
    size = max(4.0, 0.28 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted (top-1)")
    ax.set_ylabel("ground truth")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def bars_png(values: dict, path: str, title: str, xlabel: str, baseline: dict | None = None) -> str:
    """Horizontal bars, one per name, optionally beside a baseline (e.g. random)."""
    plt = _pyplot()
    names = [k for k, v in values.items() if np.isfinite(v)]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.25 * len(names) + 1)))
    ax.barh(y, [values[n] for n in names], height=0.4 if baseline else 0.8, label="model")
    if baseline:
        ax.barh(y + 0.4, [baseline.get(n, np.nan) for n in names], height=0.4,
                label="random", color="0.7")
        ax.legend(loc="lower right")
    ax.set_yticks(y + (0.2 if baseline else 0), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _save(fig, path)


def eval_dir(workdir: str) -> str:
    path = os.path.join(workdir, "eval")
    os.makedirs(path, exist_ok=True)
    return path
