"""Orbax checkpoints: the only module that imports orbax.

A checkpoint holds two items: `state` (params, optimizer state, step, rng,
skip counters, data position) and `meta` (JSON: the model's shape signature
and the data position, readable without JAX). Saves are asynchronous; Orbax
writes each step into a temporary directory and renames it when complete, so
a run killed mid-save leaves the previous checkpoint intact.
"""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from wat_jax.errors import InputError


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def shape_signature(tree) -> dict:
    """Path -> shape of every leaf: compared before restoring."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): list(np.shape(leaf)) for path, leaf in flat}


def resolve_step(workdir: str, step: int | None, purpose: str) -> int:
    """The checkpoint step to read: `step`, or the latest when None or negative.

    Args:
      workdir: the run directory.
      step: a saved step, or None / -1 for the latest.
      purpose: what the step is for, e.g. "evaluate" (it goes into the error).

    Returns:
      A step that exists; otherwise an InputError naming the checkpoint folder.
    """
    ckpt = Checkpointer(workdir, 0, None, read_only=True)
    steps = sorted(ckpt.all_steps())
    ckpt.close()
    if not steps:
        raise InputError(
            f"{checkpoint_dir(workdir)}: no checkpoint to {purpose}; run --mode=train first"
        )
    if step is None or step < 0:
        return steps[-1]
    if step not in steps:
        raise InputError(f"{checkpoint_dir(workdir)}: no checkpoint at step {step}; have {steps}")
    return step


class Checkpointer:
    """Saves and restores the train state of one workdir."""

    def __init__(self, workdir: str, every_steps: int, keep: int, read_only: bool = False):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=not read_only,
        )
        self._every = every_steps
        self._manager = ocp.CheckpointManager(
            checkpoint_dir(workdir), item_names=("state", "meta"), options=options
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def should_save(self, step: int, last_step: int) -> bool:
        return step == last_step or (self._every > 0 and step % self._every == 0)

    def save(self, step: int, state, meta: dict) -> None:
        """Starts an async save of `state` at `step` (waits for the previous one)."""
        meta = dict(meta, shapes=shape_signature(state.params))
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )

    def read_meta(self, step: int) -> dict:
        out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return out["meta"]

    def restore(self, step: int, abstract_state):
        """Restores `step` into the structure, shapes and shardings of `abstract_state`.

        Raises InputError when the checkpoint was written by a model of
        another shape (names the first parameter that differs).
        """
        meta = self.read_meta(step)
        want = shape_signature(abstract_state.params)
        have = meta.get("shapes", {})
        if have and have != want:
            diff = sorted(set(want) ^ set(have)) or sorted(
                k for k in want if want[k] != have.get(k)
            )
            key = diff[0]
            raise InputError(
                f"{checkpoint_dir_of(self._manager)}/{step}: checkpoint has a different model "
                f"shape at {key} (checkpoint {have.get(key)}, config {want.get(key)}); "
                "use a fresh --workdir or the config it was trained with"
            )
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        logging.info("restored checkpoint step %d", step)
        return restored["state"], restored["meta"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def checkpoint_dir_of(manager) -> str:
    return str(manager.directory)


def read_state_numpy(workdir: str, step: int | None = None) -> tuple[int, dict]:
    """Reads a checkpoint's state as nested numpy arrays, with no model at hand.

    For inspection, tests and tools; training and evaluation restore against an
    abstract target instead, so structure mismatches fail loudly.
    """
    ckpt = Checkpointer(workdir, 0, None, read_only=True)
    step = ckpt.latest_step() if step is None else step
    if step is None:
        raise InputError(f"{checkpoint_dir(workdir)}: no checkpoint")
    # Restoring as numpy arrays skips device placement, so a checkpoint written
    # by any number of processes and devices reads back on this one.
    path = os.path.join(checkpoint_dir(workdir), str(step), "state")
    with ocp.PyTreeCheckpointer() as reader:
        meta = reader.metadata(path).item_metadata.tree
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
        state = reader.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    ckpt.close()
    return step, jax.tree.map(np.asarray, state)
