"""A trained run as files to hand on: the motion tower as jax.export (StableHLO) plus a
numpy params file, or the whole run as a Hugging Face-style folder.

    python -m wat_jax.tools.export --workdir=W [--step=N] [--output=W/export/motion_tower.bin]
    python -m wat_jax.tools.export --workdir=W --format=folder [--output=W/export/model]

(--workdir also takes W/checkpoints or W/checkpoints/N, as `wat_jax.load` does; an
--output that cannot be written is refused before anything is restored.)

--format=folder writes what `run.save(DIR)` writes (wat_jax/model_folder.py):
config.json, model.safetensors and a README.md model card; `wat_jax.load(DIR)` reads it.

--format=stablehlo (the default) writes two files:
  motion_tower.bin         jax.export.Exported.serialize() of
                           f(params_leaves, motion [b, T, J, F], mask [b, T]) -> [b, E],
                           with a symbolic batch dimension `b`, lowered for CPU, CUDA and TPU.
  motion_tower.params.npz  the parameter leaves in the order f takes them (`leaf_0000`, ...)
                           and their tree paths (`names`), readable with numpy alone.

Params are passed, not baked in as constants: the StableHLO stays small whatever
the model size, XLA does not spend compile time constant-folding through
hundreds of megabytes of weights, and the weights stay inspectable with numpy.

`load_motion_tower(path)` runs the artefact with jax + numpy only; the module
imports nothing else from wat_jax at load time but errors.py (standard library
only; no flax, optax or orbax), so a serving process can copy this module's
loader or import it as is.
"""

import json
import os

import jax
import numpy as np

from wat_jax import errors
from wat_jax.errors import exits_on_input_error

PLATFORMS = ("cpu", "cuda", "tpu")


def params_path(path: str) -> str:
    """motion_tower.bin -> motion_tower.params.npz (beside it)."""
    root, _ = os.path.splitext(path)
    return root + ".params.npz"


def tower_params(params: dict) -> dict:
    """The subtree of the model's params that `embed_motion` reads.

    The model's setup() declares the loss scalars, so they come along (two
    floats); the text projection and the class head stay out.
    """
    keep = ("motion_encoder", "motion_head", "log_scale", "logit_bias")
    return {k: v for k, v in params.items() if k in keep}


def export_tower(model, params: dict, frames: int, joints: int, features: int, platforms=PLATFORMS):
    """Exports `model.embed_motion` with a symbolic batch dimension.

    Args:
      model: a MotionTextModel.
      params: its params (the whole tree or `tower_params` of it).
      frames, joints, features: the fixed window shape [T, J, F].
      platforms: the platforms to lower for.

    Returns:
      (exported, leaves, names): the jax.export.Exported of
      f(leaves, motion, mask), the host param leaves in the order f takes
      them, and each leaf's tree path.
    """
    params = tower_params(params)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [jax.tree_util.keystr(path) for path, _ in flat]
    leaves = [np.asarray(leaf) for _, leaf in flat]

    from wat_jax.towers import motion_fn

    embed_motion = motion_fn(model)

    def embed(leaves, motion, mask):
        return embed_motion(jax.tree_util.tree_unflatten(treedef, leaves), motion, mask)

    (b,) = jax.export.symbolic_shape("b")
    specs = (
        [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves],
        jax.ShapeDtypeStruct((b, frames, joints, features), np.float32),  # [b, T, J, F]
        jax.ShapeDtypeStruct((b, frames), np.bool_),  # [b, T]
    )
    exported = jax.export.export(jax.jit(embed), platforms=tuple(platforms))(*specs)
    return exported, leaves, names


def save(exported, leaves, names, path: str, meta: dict | None = None) -> str:
    """Writes the artefact, its params file and a small JSON description, atomically.

    Each file is replaced whole; when one fails (a full disk, Ctrl-C) after another was
    replaced, all three are removed, since a .bin beside another export's params would
    load and compute garbage. The one line of the error says so.
    """
    from wat_jax import fileio

    arrays = {f"leaf_{i:04d}": leaf for i, leaf in enumerate(leaves)}
    arrays["names"] = np.asarray(names)
    files = (params_path(path), path, os.path.splitext(path)[0] + ".json")
    fileio.write_together(
        [
            (files[0], lambda p: fileio.atomic_write(p, lambda f: np.savez(f, **arrays))),
            (files[1], lambda p: fileio.atomic_write(p, lambda f: f.write(exported.serialize()))),
            (files[2], lambda p: _write_description(exported, leaves, path, p, meta)),
        ],
        f"the export's files ({', '.join(os.path.basename(f) for f in files)}) were removed, "
        "as they would not match; export again",
    )
    return path


def _write_description(exported, leaves, path: str, json_path: str, meta: dict | None) -> None:
    """The export's JSON: window and output shapes, platforms, parameter count."""
    from wat_jax import fileio

    motion, mask = exported.in_avals[-2:]
    info = dict(
        meta or {},
        motion_shape=[str(d) for d in motion.shape],
        mask_shape=[str(d) for d in mask.shape],
        embed_dim=int(exported.out_avals[0].shape[-1]),
        platforms=list(exported.platforms),
        num_params=int(sum(x.size for x in leaves)),
        params_file=os.path.basename(params_path(path)),
    )
    fileio.write_json(json_path, info)


def load_motion_tower(path: str):
    """Loads an exported motion tower; needs only jax and numpy.

    Args:
      path: the .bin written by `save` (its .params.npz must sit beside it).

    Returns:
      A function (motion [B, T, J, F] float32, mask [B, T] bool) -> numpy [B, E]
      for any batch size B >= 1, with the window shape the tower was exported for.
    """
    with open(path, "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    with np.load(params_path(path), allow_pickle=False) as z:
        count = sum(1 for k in z.files if k.startswith("leaf_"))
        leaves = [jax.device_put(z[f"leaf_{i:04d}"]) for i in range(count)]
    motion_aval, _ = exported.in_avals[-2:]
    window = tuple(int(d) for d in motion_aval.shape[1:])  # (T, J, F)
    call = jax.jit(exported.call)

    def embed_motion(motion, mask) -> np.ndarray:
        motion = np.asarray(motion, np.float32)
        mask = np.asarray(mask, bool)
        if motion.ndim != 4 or motion.shape[1:] != window or mask.shape != motion.shape[:2]:
            raise ValueError(
                f"{path}: expects motion [B, {', '.join(map(str, window))}] and "
                f"mask [B, {window[0]}], got {motion.shape} and {mask.shape}"
            )
        return np.array(call(leaves, motion, mask))  # a writable host copy

    embed_motion.window = window
    embed_motion.embed_dim = int(exported.out_avals[0].shape[-1])
    return embed_motion


def export_motion_tower(
    config, workdir: str, step: int | None = None, output: str | None = None
) -> str:
    """Restores a checkpoint and exports its motion tower.

    Args:
      config: the workdir's resolved config.
      workdir: the run directory (config.json and checkpoints/ are enough).
      step: the checkpoint step; latest when None.
      output: the .bin path; WORKDIR/export/motion_tower.bin when None.

    Returns:
      The path written.

    Raises:
      InputError: the output cannot be written there (checked before the work), or the
        checkpoint cannot be read.
    """
    from absl import logging

    from wat_jax import artifact, checkpointing, fileio

    output = output or os.path.join(workdir, "export", "motion_tower.bin")
    fileio.check_writable(output, "give --output=PATH in a writable folder")
    # The same restore as wat_jax.load: config.json and the checkpoint are enough.
    restored = artifact.restore(config, checkpointing.checkpoint_dir(workdir), step)
    step, d = restored.step, restored.dims
    params = jax.tree.map(np.asarray, jax.device_get(restored.params))
    exported, leaves, names = export_tower(restored.model, params, d.frames, d.joints, d.features)
    save(
        exported,
        leaves,
        names,
        output,
        meta=dict(step=step, task=config.task, workdir=os.path.abspath(workdir)),
    )
    logging.info("exported the motion tower of step %d to %s", step, output)
    return output


def save_folder(workdir: str, step: int | None = None, output: str | None = None) -> str:
    """The run's checkpoint `step` (latest when None) saved as a folder (`run.save`).

    Returns:
      The folder written: `output`, or WORKDIR/export/model when None.
    """
    from wat_jax import artifact, model_folder

    output = output or os.path.join(workdir, "export", "model")
    model_folder.check_destination(output)  # before the checkpoint is read
    run = artifact.load(workdir, step)
    return run.save(output)


@exits_on_input_error
def main(argv):
    from absl import flags

    from wat_jax import cli

    FLAGS = flags.FLAGS
    cli.begin(argv, "wat_jax.tools.export")
    workdir, step, config = cli.read_run(FLAGS.workdir, FLAGS.step if FLAGS.step >= 0 else None)
    if FLAGS.format == "folder":
        with errors.keeping("the run is unchanged"):
            folder = save_folder(workdir, step, FLAGS.output or None)
        from wat_jax import model_folder

        sizes = sum(os.path.getsize(os.path.join(folder, n)) for n in model_folder.FILES)
        print(f"{folder}: {', '.join(model_folder.FILES)} ({sizes / 1e6:.1f} MB)")
        return
    with errors.keeping("the run is unchanged"):  # said by a Ctrl-C or a full disk
        path = export_motion_tower(config, workdir, step, FLAGS.output or None)
    with open(os.path.splitext(path)[0] + ".json") as f:
        info = json.load(f)
    print(
        f"{path}: step {info['step']}, motion {info['motion_shape']} -> "
        f"[b, {info['embed_dim']}], {info['num_params']} params, {info['platforms']}"
    )


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string(
        "workdir", None, "Run directory with checkpoints and config.json, or its checkpoints[/N]."
    )
    flags.DEFINE_integer("step", -1, "Checkpoint step; -1: latest.")
    flags.DEFINE_enum(
        "format",
        "stablehlo",
        ["stablehlo", "folder"],
        "stablehlo: the motion tower for jax.export; folder: config.json, model.safetensors "
        "and a README.md model card, which wat_jax.load reads.",
    )
    flags.DEFINE_string(
        "output",
        "",
        "Output .bin (stablehlo; default WORKDIR/export/motion_tower.bin) or folder "
        "(folder; default WORKDIR/export/model).",
    )
    flags.mark_flag_as_required("workdir")


def run() -> None:
    """The command line (also the `wat-jax-export` console script)."""
    from absl import app

    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
