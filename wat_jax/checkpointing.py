"""Orbax checkpoints: the only module that imports orbax.

A checkpoint holds two items: `state` (params, optimizer state, step, rng,
skip counters, data position) and `meta` (JSON, readable without JAX: the
model's dimensions, the class texts' prototype vectors, the data position and
the params' shapes). Saves are asynchronous; Orbax writes each step into a
temporary directory and renames it when complete, so a run killed mid-save
leaves the previous checkpoint intact, and the next writer removes the partial
one.

Reading picks the newest step that restores: a damaged step (a truncated or
missing file) is reported, skipped and, by a writer, moved aside into
W/checkpoints_damaged/ (never deleted).
"""

import contextlib
import errno
import os
import re
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from wat_jax.errors import InputError, disk_fault, fail

DAMAGED_DIR = "checkpoints_damaged"


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def shape_signature(tree) -> dict:
    """Path -> shape of every leaf: compared before restoring."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): list(np.shape(leaf)) for path, leaf in flat}


def parse_source(spec: str, key: str) -> tuple[str, int | None]:
    """`PATH[:STEP]` -> (checkpoints root, step or None for the newest).

    PATH is a workdir (holding checkpoints/), a checkpoints/ folder, or one
    checkpoints/<step>/ folder. `key` names the config key in errors.
    """
    path, step = spec, None
    match = re.fullmatch(r"(.*):(\d+)", spec)
    if match and not os.path.exists(spec):
        path, step = match.group(1), int(match.group(2))
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise fail(key, f"{path}: no such folder")
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return os.path.join(path, "checkpoints"), step
    name = os.path.basename(path)
    if name.isdigit() and os.path.isdir(os.path.join(path, "state")):
        if step is not None and step != int(name):
            raise fail(key, f"{spec}: names step {step} inside the folder of step {name}")
        return os.path.dirname(path), int(name)
    if any(n.isdigit() for n in os.listdir(path)):
        return path, step
    raise fail(key, f"{path}: neither a workdir with checkpoints/ nor a checkpoint folder")


def _is_disk_full(e: BaseException) -> bool:
    """A full or over-quota disk behind `e` (orbax wraps its writer threads' OSErrors)."""
    return disk_fault(e) in (errno.ENOSPC, errno.EDQUOT)


class Checkpointer:
    """Saves and restores the train state under one checkpoints/ folder.

    Args:
      directory: a workdir (its checkpoints/ is used) or, with `root=True`, the
        checkpoints folder itself.
      every_steps: save cadence (the last step is always saved).
      keep: the newest `keep` checkpoints are kept (None: all).
      keep_period: also keep every checkpoint whose step is a multiple of this.
      read_only: never writes, creates or deletes anything.
    """

    def __init__(
        self,
        directory: str,
        every_steps: int = 0,
        keep: int | None = None,
        read_only: bool = False,
        keep_period: int = 0,
        root: bool = False,
    ):
        self.directory = os.path.abspath(directory) if root else checkpoint_dir(directory)
        self.read_only = read_only
        self._every = every_steps
        self._pending = None  # the step of the async save in flight
        with _quiet(read_only):  # orbax warns that a read-only manager is read-only
            options = ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                keep_period=keep_period or None,
                create=not read_only,
                read_only=read_only,
                enable_async_checkpointing=not read_only,
                cleanup_tmp_directories=not read_only,  # a save cut short by a crash or full disk
            )
            self._manager = ocp.CheckpointManager(
                self.directory, item_names=("state", "meta"), options=options
            )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def should_save(self, step: int, last_step: int) -> bool:
        return step == last_step or (self._every > 0 and step % self._every == 0)

    def save(self, step: int, state, meta: dict) -> None:
        """Starts an async save of `state` at `step` (waits for the previous one).

        Raises InputError (one line) when the disk is full; the earlier
        checkpoints stay as they were.
        """
        meta = dict(meta, shapes=shape_signature(state.params))
        self._check_room(step, state)
        self._guard(
            lambda: self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            ),
            step,
        )
        self._pending = step

    def _check_room(self, step: int, state) -> None:
        """Refuses a save that cannot fit, before orbax's writer threads start on it.

        The estimate is the state's uncompressed bytes (an upper bound of what
        orbax writes) plus 1 MiB of metadata; a full disk found later, mid-save,
        is caught by _guard.
        """
        need = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(state))
        need += 1 << 20
        free = shutil.disk_usage(self.directory).free
        if free < need:
            raise fail(
                self.step_dir(step),
                f"could not save the checkpoint: no space left on device (needs about "
                f"{need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free); the earlier checkpoints "
                f"{self.all_steps()} are intact",
            )

    def _guard(self, fn, step: int):
        """Runs fn; a full disk (now or in the async save before) becomes one error line."""
        try:
            return fn()
        except Exception as e:  # orbax wraps the OSError of its writer threads
            if not _is_disk_full(e):
                raise
            failed = self._pending if self._pending is not None else step
            raise fail(
                self.step_dir(failed),
                "could not save the checkpoint: no space left on device; the earlier "
                f"checkpoints {self.all_steps()} are intact (the next run removes the partial one)",
            ) from None

    def read_meta(self, step: int) -> dict:
        out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return out["meta"]

    def _check_shapes(self, step: int, meta: dict, abstract_params) -> None:
        want = shape_signature(abstract_params)
        have = meta.get("shapes", {})
        if have and have != want:
            diff = sorted(set(want) ^ set(have)) or sorted(
                k for k in want if want[k] != have.get(k)
            )
            key = diff[0]
            raise fail(
                self.step_dir(step),
                f"checkpoint has a different model shape at {key} (checkpoint "
                f"{have.get(key)}, config {want.get(key)}); use a fresh --workdir or the "
                "config it was trained with",
            )

    def restore(self, step: int, abstract_state):
        """Restores `step` into the structure, shapes and shardings of `abstract_state`.

        Raises InputError when the checkpoint was written by a model of
        another shape (names the first parameter that differs).
        """
        meta = self.read_meta(step)
        self._check_shapes(step, meta, abstract_state.params)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        logging.info("restored checkpoint %s", self.step_dir(step))
        return restored["state"], restored["meta"]

    def restore_params(self, step: int, abstract_params, meta: dict | None = None):
        """Restores only the params of `step` (no optimizer state) into `abstract_params`."""
        meta = self.read_meta(step) if meta is None else meta
        self._check_shapes(step, meta, abstract_params)
        path = os.path.join(self.step_dir(step), "state")
        restore_args = jax.tree.map(
            lambda x: (
                ocp.ArrayRestoreArgs(sharding=x.sharding)
                if getattr(x, "sharding", None) is not None
                else ocp.RestoreArgs(restore_type=np.ndarray)
            ),
            abstract_params,
        )
        with ocp.PyTreeCheckpointer() as reader:
            out = reader.restore(
                path,
                args=ocp.args.PyTreeRestore(
                    item={"params": abstract_params},
                    restore_args={"params": restore_args},
                    partial_restore=True,
                ),
            )
        logging.info("restored params of checkpoint %s", self.step_dir(step))
        return out["params"]

    def restore_newest(self, restore_fn, step: int | None = None):
        """restore_fn(step) on `step`, or on the newest step that restores when None.

        A step that fails to read (a truncated or missing file) is reported in a
        warning and skipped; a writer moves it aside into checkpoints_damaged/.
        An explicit step that is damaged is one error line.

        Returns:
          (step, restore_fn's result), or (None, None) when there is no checkpoint.
        """
        if step is not None:
            if step not in self.all_steps():
                raise fail(self.directory, f"no checkpoint at step {step}; have {self.all_steps()}")
            try:
                return step, restore_fn(step)
            except InputError:
                raise
            except Exception as e:
                raise fail(
                    self.step_dir(step), f"checkpoint is damaged ({_first_line(e)})"
                ) from None
        for candidate in reversed(self.all_steps()):
            try:
                return candidate, restore_fn(candidate)
            except InputError:
                raise
            except Exception as e:
                logging.warning(
                    "checkpoint %s does not restore (%s); skipping it",
                    self.step_dir(candidate),
                    _first_line(e),
                )
                if not self.read_only:
                    self._set_aside(candidate)
        return None, None

    def _set_aside(self, step: int) -> None:
        aside = os.path.join(
            os.path.dirname(self.directory), DAMAGED_DIR, f"{step}-{time.strftime('%Y%m%dT%H%M%S')}"
        )
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        os.replace(self.step_dir(step), aside)
        logging.warning("moved the damaged checkpoint %d to %s", step, aside)
        self._manager.reload()

    def wait(self) -> None:
        self._guard(self._manager.wait_until_finished, -1)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._manager.close()


@contextlib.contextmanager
def _quiet(enabled: bool):
    level = logging.get_verbosity()
    if enabled:
        logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _first_line(e: BaseException) -> str:
    """A short cause for a message: the first line, without TensorStore's appended details."""
    text = str(e).strip().splitlines()
    first = text[0].split(" See full TensorStore details")[0][:200] if text else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def resolve_step(workdir: str, step: int | None, purpose: str) -> int:
    """The checkpoint step to read: `step`, or the latest when None or negative.

    Args:
      workdir: the run directory.
      step: a saved step, or None / -1 for the latest.
      purpose: what the step is for, e.g. "evaluate" (it goes into the error).

    Returns:
      A step that exists; otherwise an InputError naming the checkpoint folder.
    """
    ckpt = Checkpointer(workdir, read_only=True)
    steps = ckpt.all_steps()
    ckpt.close()
    if not steps:
        raise fail(checkpoint_dir(workdir), f"no checkpoint to {purpose}; run --mode=train first")
    if step is None or step < 0:
        return steps[-1]
    if step not in steps:
        raise fail(checkpoint_dir(workdir), f"no checkpoint at step {step}; have {steps}")
    return step


def read_state_numpy(workdir: str, step: int | None = None) -> tuple[int, dict]:
    """Reads a checkpoint's state as nested numpy arrays, with no model at hand.

    For inspection, tests and tools; training and evaluation restore against an
    abstract target instead, so structure mismatches fail loudly.
    """
    ckpt = Checkpointer(workdir, read_only=True)
    step = ckpt.latest_step() if step is None else step
    ckpt.close()
    if step is None:
        raise fail(checkpoint_dir(workdir), "no checkpoint")
    # Restoring as numpy arrays skips device placement, so a checkpoint written
    # by any number of processes and devices reads back on this one.
    path = os.path.join(checkpoint_dir(workdir), str(step), "state")
    with ocp.PyTreeCheckpointer() as reader:
        meta = reader.metadata(path).item_metadata.tree
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
        state = reader.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    return step, jax.tree.map(np.asarray, state)
