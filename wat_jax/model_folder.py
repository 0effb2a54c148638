"""A trained run as a folder anyone can pick up, laid out as Hugging Face model folders are:

    DIR/config.json        the run's resolved config, as its workdir holds it
    DIR/model.safetensors  every parameter, named by its path (`motion_head.Dense_0.kernel`),
                           and the class texts' frozen prototype vectors [C, D]
                           (`texts.vectors`); the checkpoint's metadata (task, model
                           dimensions, class names, step, eval headline) is JSON in the
                           file's header, under "wat_jax"
    DIR/README.md          the model card (wat_jax/model_card.py)

`run.save(DIR)` writes it and `wat_jax.load(DIR)` reads it back: the same float32
params and prototype vectors as the checkpoint, so the same scores. safetensors is
read with numpy alone, so the weights are inspectable (and loadable by other
frameworks) without JAX or orbax.
"""

import json
import os

import jax
import numpy as np

from wat_jax import fileio, run_config
from wat_jax.errors import fail

WEIGHTS = "model.safetensors"
CARD = "README.md"
FILES = (run_config.CONFIG_FILE, WEIGHTS, CARD)
VECTORS = "texts.vectors"  # the prototype vectors' tensor; no parameter is named "texts"
META_KEY = "wat_jax"
FORMAT_VERSION = 1


def is_folder(path: str) -> bool:
    """True when `path` is a saved folder (it holds model.safetensors)."""
    return os.path.isfile(os.path.join(path, WEIGHTS))


def param_names(params) -> tuple[list[str], list]:
    """(names, leaves) of a params tree: each leaf's dict keys joined by dots."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    names = [".".join(str(getattr(k, "key", k)) for k in path) for path, _ in flat]
    return names, [leaf for _, leaf in flat]


def check_destination(directory: str) -> None:
    """One line, before any work, when `directory` cannot take a saved run: it cannot be
    written, or it is a run's workdir (or another folder with files of its own) whose
    config.json would be overwritten. An earlier saved folder may be replaced."""
    if os.path.isfile(directory):
        raise fail(directory, "is a file; give a folder to save the run in")
    if not os.path.isdir(directory):
        return
    others = sorted(set(os.listdir(directory)) - set(FILES))
    if "checkpoints" in others or (others and not is_folder(directory)):
        raise fail(
            directory,
            f"holds other files ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); "
            "save into a new or empty folder (a run's workdir is never overwritten)",
        )
    fileio.check_writable(os.path.join(directory, WEIGHTS), "give a writable folder")


def save(run, directory: str, card: str, meta: dict) -> str:
    """Writes config.json, model.safetensors and README.md into `directory`.

    Each file is written whole (fileio); when one fails after another was replaced, the
    folder's three files are removed, since weights beside another run's config would
    load as a model of the wrong classes. One error line says so.

    Args:
      run: a wat_jax.load Run (its config, params and prototype vectors are saved).
      directory: the folder; created, or an earlier saved folder replaced.
      card: README.md's text.
      meta: the JSON stored in the weights' header (see `header_meta`).

    Returns:
      `directory`.
    """
    from safetensors.numpy import save as to_bytes

    check_destination(directory)
    names, leaves = param_names(jax.device_get(run.params))
    # C order, as safetensors stores them; np.ascontiguousarray would make a scalar [1].
    tensors = {n: np.asarray(leaf, order="C") for n, leaf in zip(names, leaves)}
    tensors[VECTORS] = np.asarray(run.prototype_vectors, np.float32)
    blob = to_bytes(tensors, metadata={"format": "np", META_KEY: json.dumps(meta)})
    config_path, weights_path, card_path = (os.path.join(directory, name) for name in FILES)
    fileio.write_together(
        [
            (weights_path, lambda p: fileio.atomic_write(p, lambda f: f.write(blob))),
            (config_path, lambda p: fileio.write_json(p, run_config.to_json(run.config))),
            (card_path, lambda p: fileio.write_text(p, card)),
        ],
        f"the folder's {', '.join(FILES)} were removed, as they would not match; save again",
    )
    return directory


def read_meta(directory: str) -> dict:
    """The "wat_jax" JSON of DIR/model.safetensors' header; one error line when the file
    is not a safetensors file of ours."""
    from safetensors import SafetensorError, safe_open

    path = os.path.join(directory, WEIGHTS)
    try:
        with safe_open(path, framework="np") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise fail(path, f"not a readable safetensors file ({e})") from None
    if META_KEY not in header:
        raise fail(path, "no wat_jax metadata in its header; save it with run.save(DIR)")
    meta = json.loads(header[META_KEY])
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise fail(path, f"written by a newer wat_jax (format {meta['format_version']})")
    return meta


def read_params(directory: str, abstract) -> tuple[dict, np.ndarray]:
    """(params shaped as `abstract`, prototype vectors [C, D]) from DIR/model.safetensors.

    A missing, extra or differently shaped tensor is one line naming it (a folder whose
    config.json describes another model).
    """
    from safetensors.numpy import load_file

    path = os.path.join(directory, WEIGHTS)
    tensors = load_file(path)
    vectors = tensors.pop(VECTORS, np.zeros((0, 0), np.float32))
    names, leaves = param_names(abstract)
    missing = [n for n in names if n not in tensors]
    extra = sorted(set(tensors) - set(names))
    if missing or extra:
        what = f"no tensor {missing[0]!r}" if missing else f"an unknown tensor {extra[0]!r}"
        raise fail(
            path,
            f"has {what} for the model config.json describes; keep the folder's files together",
        )
    for name, leaf in zip(names, leaves):
        if tuple(tensors[name].shape) != tuple(leaf.shape):
            raise fail(
                path,
                f"tensor {name!r} has shape {list(tensors[name].shape)}, but config.json's "
                f"model needs {list(leaf.shape)}; keep the folder's files together",
            )
    treedef = jax.tree_util.tree_structure(abstract)
    params = jax.tree_util.tree_unflatten(
        treedef, [np.asarray(tensors[n], leaf.dtype) for n, leaf in zip(names, leaves)]
    )
    return params, vectors
