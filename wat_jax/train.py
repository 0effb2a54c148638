"""The data-parallel step and the training loop with auto-resume (the state: state.py)."""

import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import PartitionSpec as P

from wat_jax import checkpointing, objectives, parallel
from wat_jax.errors import InputError
from wat_jax.reporting.run_log import MetricWriter, Progress
from wat_jax.state import (
    ModelDims,
    TrainState,
    abstract_state,
    create_model,
    create_train_state,
    make_optimizer,
    motion_tower_size,
)


def _all_finite(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def make_train_step(model, tx, loss_cfg, mesh, global_batch: int, *, threshold: float):
    """The jitted data-parallel step: (state, batch) -> (state, metrics).

    `threshold` is config.data.threshold: a label above it is in a window's set.

    Written the pmap way inside `jax.shard_map`: each device embeds its rows,
    gathers embeddings for global negatives, computes its share of the loss,
    and gradients are `pmean`ed. A non-finite loss or gradient keeps the old
    params and optimizer state and counts a skip.
    """

    def per_device(state, batch):
        # The step's key, the same on every device: objectives folds in the axis index
        # for dropout and draws what must agree across devices from the key itself.
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        grad_fn = jax.value_and_grad(
            lambda p: objectives.device_loss(model, p, batch, key, loss_cfg, threshold),
            has_aux=True,
        )
        (loss, metrics), grads = grad_fn(state.params)
        # Each device's loss is its share of the global mean (objectives.device_loss), so
        # the mean of the devices' gradients is the global gradient: one update everywhere.
        grads = jax.lax.pmean(grads, parallel.AXIS)
        loss = jax.lax.pmean(loss, parallel.AXIS)
        metrics = jax.lax.pmean(metrics, parallel.AXIS)

        updates, new_opt = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        # A non-finite loss or gradient keeps the old params and optimizer state: one bad
        # batch is skipped, not written into the weights (max_consecutive_skips ends a run).
        ok = jnp.isfinite(loss) & _all_finite(grads)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
        skipped = (~ok).astype(jnp.int32)
        new_state = state.replace(
            step=state.step + 1,
            params=keep(new_params, state.params),
            opt_state=keep(new_opt, state.opt_state),
            skipped=state.skipped + skipped,
            consecutive_skips=jnp.where(ok, 0, state.consecutive_skips + 1),
            # The device copy of the data position, saved with the state; the loop keeps
            # a host copy in step, so the host never waits on the device to read it.
            position=state.position + global_batch,
        )
        metrics = dict(
            metrics, loss=loss, grad_norm=optax.tree.norm(grads), skipped_steps=new_state.skipped
        )
        return new_state, metrics

    step = jax.shard_map(
        per_device,
        mesh=mesh,
        in_specs=(P(), P(parallel.AXIS)),
        out_specs=(P(), P()),
        check_vma=False,
    )
    return jax.jit(step, donate_argnums=(0,))


class _Stop:
    """SIGTERM and SIGINT ask the loop to save a checkpoint and return cleanly.

    A second SIGINT (Ctrl-C twice) aborts at once with KeyboardInterrupt.
    """

    requested = False

    @classmethod
    def install(cls) -> dict:
        def handler(signum, frame):
            name = signal.Signals(signum).name
            if cls.requested and signum == signal.SIGINT:
                raise KeyboardInterrupt(f"second {name}: stopping without a checkpoint")
            logging.warning("%s received: saving a checkpoint and stopping", name)
            cls.requested = True

        cls.requested = False
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread (e.g. under some test runners)
                pass
        return previous


def stop_agreed(step: int, every: int) -> bool:
    """Whether every process has been asked to stop, decided the same way everywhere.

    One process: its own flag, every step. Several: the flags are all-reduced
    every `every` steps (a small blocking collective), so all processes stop
    and save at the same step even when only one received the signal.
    """
    if jax.process_count() == 1:
        return _Stop.requested
    if step % max(every, 1):
        return False
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.asarray([_Stop.requested], np.int32))
    return bool(np.asarray(flags).any())


def run_meta(config, workdir: str, task, dims: ModelDims) -> dict:
    """What each checkpoint records beside the state, so a run reads back from it alone.

    task: the experiment's task. dims: the model's input and output sizes.
    texts: the class (or attribute) names, readable phrases and frozen prototype
    vectors [C, D] that classification ranks, as the eval stage builds them.
    """
    texts = task.prototypes(config, workdir)
    return {
        "task": config.task,  # readers refuse a config.json of another task beside it
        "dims": dims.to_json(),
        "texts": {
            "keys": list(texts["keys"]),
            "phrases": list(texts["phrases"]),
            "prototype": texts["prototype"],
            "vectors": np.asarray(texts["vectors"], np.float32).tolist(),
        },
    }


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, task, evaluator=None, on_start=None
) -> TrainState:
    """Trains `task` under `config`, resuming from `workdir` when it has checkpoints.

    Args:
      config: the resolved experiment config.
      workdir: where checkpoints and metrics.jsonl live.
      task: the experiment module (see wat_jax/tasks); gives the data.
      evaluator: called as evaluator(step, model, params, mesh, writer) every
        config.eval.every_steps steps (evaluate.periodic builds one); training
        itself never imports the evaluation code.
      on_start: called once the state is restored or initialised, before the first
        step (main.py writes config.json there: only a training sure to start does).

    Returns:
      The final train state (replicated on the mesh).
    """
    # SIGTERM/SIGINT from here on (compilation included) end in a checkpoint.
    previous = _Stop.install()
    try:
        return _train(config, workdir, task, evaluator, on_start)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _source_checkpointer(spec: str, key: str):
    root, step = checkpointing.parse_source(spec, key)
    src = checkpointing.Checkpointer(root, read_only=True, root=True)
    if not src.all_steps():
        src.close()
        raise InputError(f"{key}: {root} has no checkpoint")
    return src, step


def _restore(config, workdir, ckpt, model, make_state, mesh, dims):
    """The state to start from, in this order:

    1) the newest checkpoint in the workdir that restores (damaged ones set aside),
    2) config.resume_from: the full state of another run's checkpoint,
    3) config.init_from: params only (the optimizer and schedule start fresh),
    4) a fresh init.
    """
    abstract = abstract_state(make_state, mesh)
    step, restored = ckpt.restore_newest(lambda s: ckpt.restore(s, abstract))
    if step is not None:
        state = restored[0]
        logging.info("resuming from step %d (position %d)", int(state.step), int(state.position))
        return state
    if config.resume_from:
        src, step = _source_checkpointer(config.resume_from, "config.resume_from")
        try:
            step, restored = src.restore_newest(lambda s: src.restore(s, abstract), step)
        finally:
            src.close()
        if step is None:
            raise InputError(f"config.resume_from: no checkpoint of {config.resume_from} restores")
        logging.info("resumed from %s step %d", src.directory, step)
        return restored[0]
    state = parallel.replicate(make_state(), mesh)
    if config.init_from:
        src, step = _source_checkpointer(config.init_from, "config.init_from")
        try:
            step, params = src.restore_newest(
                lambda s: _restore_params_named(src, s, abstract.params), step
            )
        finally:
            src.close()
        if step is None:
            raise InputError(f"config.init_from: no checkpoint of {config.init_from} restores")
        state = state.replace(params=params)
        logging.info("initialised params from %s step %d", src.directory, step)
    return state


def _restore_params_named(src, step, abstract_params):
    """Params of another run; a shape mismatch names the parameter (config.init_from)."""
    try:
        return src.restore_params(step, abstract_params)
    except InputError as e:
        raise InputError(f"config.init_from: {e}") from None


def _train(config, workdir: str, task, evaluator=None, on_start=None) -> TrainState:
    # Mesh: one 'data' axis over every device.
    mesh = parallel.make_mesh(config.num_devices or None)
    parallel.check_batch_size(config.batch_size, mesh)

    # Data: every process builds the same global batch and loads its rows.
    rows = parallel.process_rows(config.batch_size, mesh)
    batcher = task.train_batcher(config, workdir, rows)
    example = batcher.batch(0)
    dims = ModelDims.of_batch(example)

    # State: model and optimizer, or the abstract structure for a restore.
    model = create_model(config, dims.text_dim, dims.num_classes)
    tx = make_optimizer(config.optim, config.total_steps)
    make_state = lambda: create_train_state(model, tx, config.seed, example)
    ckpt = checkpointing.Checkpointer(
        workdir,
        config.checkpoint_every_steps,
        config.keep_checkpoints,
        keep_period=config.keep_period,
    )
    try:
        state = _restore(config, workdir, ckpt, model, make_state, mesh, dims)
        if on_start is not None:
            on_start()
    except BaseException:
        ckpt.close()
        raise
    meta = run_meta(config, workdir, task, dims)
    logging.info(
        "train: motion tower %s parameters, windows %s, %s",
        f"{motion_tower_size(state.params):,}",
        [dims.frames, dims.joints, dims.features],
        parallel.runtime_summary(),
    )

    # Loop: one compiled step; host reads metrics only at log steps.
    train_step = make_train_step(
        model, tx, config.loss, mesh, config.batch_size, threshold=config.data.threshold
    )
    start = int(state.step)
    writer = MetricWriter(workdir, resume_step=start)
    progress = Progress("train", config.total_steps, start)
    max_skips = config.optim.max_consecutive_skips
    eval_every = int(config.eval.every_steps)
    position = int(state.position)  # host copy; the step advances the device copy alike
    if start < config.total_steps:
        logging.info("train: initial compilation, this may take a few minutes")
    began = time.perf_counter()
    try:
        for step in range(start + 1, config.total_steps + 1):
            batch = parallel.shard_batch(batcher.batch(position), mesh, config.batch_size)
            position += config.batch_size  # the host copy, as the step advances its own
            state, metrics = train_step(state, batch)
            last = step == config.total_steps
            # Every process must stop at the same step, or the next collective hangs.
            stop = stop_agreed(step, config.log_every_steps)
            if step % config.log_every_steps == 0 or last or stop:
                host = jax.tree.map(float, parallel.to_host(metrics))
                rate = progress.update(step)
                writer.write(
                    step, {f"train/{k}": v for k, v in host.items()} | {"train/steps_per_sec": rate}
                )
                if int(state.consecutive_skips) >= max_skips:
                    raise FloatingPointError(
                        f"{int(state.consecutive_skips)} consecutive steps had a non-finite "
                        f"loss or gradient (limit config.optim.max_consecutive_skips="
                        f"{max_skips}); lower optim.lr or check the data"
                    )
            if step == start + 1:  # the one host sync outside log steps: says compile time
                jax.block_until_ready(metrics)
                logging.info(
                    "train: first step took %.1f s (compilation included)",
                    time.perf_counter() - began,
                )
                progress.restart(step)  # later rates and ETAs leave compilation out
            if ckpt.should_save(step, config.total_steps) or stop:
                ckpt.save(step, state, dict(meta, position=position, step=step))
            if stop:
                logging.warning("stopped at step %d after saving its checkpoint", step)
                break
            # Periodic evaluation scores the live params; the last step is left to
            # the eval stage, which scores the saved checkpoint.
            if evaluator is not None and eval_every > 0 and step % eval_every == 0 and not last:
                evaluator(step, model, state.params, mesh, writer)
    finally:
        # Final save: wait for async writes before the process exits.
        try:
            ckpt.close()
        finally:
            writer.close()
    return state
