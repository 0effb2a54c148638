"""Train state, the data-parallel step, and the training loop with auto-resume."""

import signal
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import PartitionSpec as P

from wat_jax import checkpointing, objectives, parallel
from wat_jax.errors import InputError
from wat_jax.models.skeleton import MotionTextModel
from wat_jax.run_log import MetricWriter, Progress


class TrainState(flax.struct.PyTreeNode):
    """Everything a step reads and writes; data, not behaviour."""

    step: jax.Array  # int32 scalar
    params: Any
    opt_state: Any
    rng: jax.Array  # uint32 [2] raw key data (checkpoints as a plain array)
    skipped: jax.Array  # int32: updates skipped for non-finite loss or gradient
    consecutive_skips: jax.Array  # int32
    position: jax.Array  # int32: examples consumed, the data position


def create_model(config: ml_collections.ConfigDict, text_dim: int, num_classes: int = 0):
    """Builds the model from config.model; embed_dim defaults to the text dim."""
    m = config.model
    encoder = dict(
        width=m.width,
        layers=m.layers,
        heads=m.heads,
        mlp_dim=m.mlp_dim,
        dropout=m.dropout,
        pre_norm=m.pre_norm,
        positions=m.positions,
        pooling=m.pooling,
        max_len=m.max_len,
    )
    embed_dim = m.embed_dim or text_dim
    if m.text_projection == "identity" and embed_dim != text_dim:
        raise InputError(
            f"config.model.embed_dim={embed_dim} must equal the text encoder's "
            f"dimension {text_dim} when model.text_projection='identity'"
        )
    init_scale = {"siglip": np.log(10.0)}.get(config.loss.name, np.log(1 / 0.07))
    return MotionTextModel(
        encoder=encoder,
        embed_dim=embed_dim,
        text_projection=m.text_projection,
        head_dropout=m.dropout,
        num_classes=num_classes if config.loss.ce_weight > 0 else 0,
        log_scale_init=float(init_scale),
        logit_bias_init=-10.0 if config.loss.name == "siglip" else 0.0,
        dtype=jnp.bfloat16 if m.dtype == "bfloat16" else jnp.float32,
    )


def make_optimizer(optim: ml_collections.ConfigDict, total_steps: int):
    """AdamW with warmup + cosine decay and global-norm clipping.

    Norm scales, biases and the loss scalars (all leaves with ndim < 2) get no
    weight decay, as is standard for transformers.
    """
    warmup = min(optim.warmup_steps, max(total_steps - 1, 0))
    if optim.schedule == "constant":
        schedule = optax.constant_schedule(optim.lr)
    elif optim.schedule == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, optim.lr, warmup, max(total_steps, warmup + 1), optim.lr * optim.final_lr_fraction
        )
    else:
        raise InputError(f"config.optim.schedule must be constant|cosine, got {optim.schedule!r}")
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
    return optax.chain(
        optax.clip_by_global_norm(optim.grad_clip) if optim.grad_clip > 0 else optax.identity(),
        optax.adamw(
            schedule,
            b1=optim.b1,
            b2=optim.b2,
            eps=optim.eps,
            weight_decay=optim.weight_decay,
            mask=decay_mask,
        ),
    )


def create_train_state(model, tx, seed: int, example: dict) -> TrainState:
    """Initialises params and optimizer state from an example batch's shapes."""
    init_key, train_key = jax.random.split(jax.random.key(seed))
    params = model.init(init_key, example["motion"][:1], example["mask"][:1], example["text"][:1])[
        "params"
    ]
    # Distinct buffers per counter: the step donates the state, and XLA refuses
    # to donate one buffer twice.
    zero = lambda: jnp.zeros((), jnp.int32)
    return TrainState(
        step=zero(),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.key_data(train_key),
        skipped=zero(),
        consecutive_skips=zero(),
        position=zero(),
    )


def abstract_state(make_state, mesh):
    """The structure, shapes and (replicated) shardings `make_state()` would produce.

    Restores target this, so a checkpoint of another structure fails loudly
    and no parameters are initialised just to be overwritten.
    """
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.replicated(mesh)),
        jax.eval_shape(make_state),
    )


def _all_finite(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def make_train_step(model, tx, loss_cfg, mesh, global_batch: int):
    """The jitted data-parallel step: (state, batch) -> (state, metrics).

    Written the pmap way inside `jax.shard_map`: each device embeds its rows,
    gathers embeddings for global negatives, computes its share of the loss,
    and gradients are `pmean`ed. A non-finite loss or gradient keeps the old
    params and optimizer state and counts a skip.
    """

    def per_device(state, batch):
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        key = jax.random.fold_in(key, jax.lax.axis_index(parallel.AXIS))
        grad_fn = jax.value_and_grad(
            lambda p: objectives.device_loss(model, p, batch, key, loss_cfg), has_aux=True
        )
        (loss, metrics), grads = grad_fn(state.params)
        grads = jax.lax.pmean(grads, parallel.AXIS)
        loss = jax.lax.pmean(loss, parallel.AXIS)
        metrics = jax.lax.pmean(metrics, parallel.AXIS)

        updates, new_opt = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        ok = jnp.isfinite(loss) & _all_finite(grads)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
        skipped = (~ok).astype(jnp.int32)
        new_state = state.replace(
            step=state.step + 1,
            params=keep(new_params, state.params),
            opt_state=keep(new_opt, state.opt_state),
            skipped=state.skipped + skipped,
            consecutive_skips=jnp.where(ok, 0, state.consecutive_skips + 1),
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
    """Set by SIGTERM: the loop saves a checkpoint and returns cleanly."""

    requested = False

    @classmethod
    def install(cls):
        def handler(signum, frame):
            logging.warning("SIGTERM received: saving a checkpoint and stopping")
            cls.requested = True

        cls.requested = False
        try:
            return signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread (e.g. under some test runners)
            return None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, task) -> TrainState:
    """Trains `task` under `config`, resuming from `workdir` when it has checkpoints.

    Args:
      config: the resolved experiment config.
      workdir: where checkpoints and metrics.jsonl live.
      task: the experiment module (see wat_jax/tasks); gives the data.

    Returns:
      The final train state (replicated on the mesh).
    """
    # SIGTERM from here on (compilation included) ends in a checkpoint.
    previous_handler = _Stop.install()
    try:
        return _train(config, workdir, task)
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def _train(config, workdir: str, task) -> TrainState:
    # Mesh: one 'data' axis over every device.
    mesh = parallel.make_mesh(config.get("num_devices") or None)
    parallel.check_batch_size(config.batch_size, mesh)

    # Data: every process builds the same global batch and loads its rows.
    rows = parallel.process_rows(config.batch_size, mesh)
    batcher = task.train_batcher(config, workdir, rows)
    example = batcher.batch(0)

    # State: model and optimizer, or the abstract structure for a restore.
    model = create_model(config, example["text"].shape[-1], example["labels"].shape[-1])
    tx = make_optimizer(config.optim, config.total_steps)
    make_state = lambda: create_train_state(model, tx, config.seed, example)
    ckpt = checkpointing.Checkpointer(
        workdir, config.checkpoint_every_steps, config.keep_checkpoints
    )

    # Restore, in this order: 1) the latest checkpoint in the workdir,
    # 2) config.init_from (another run's checkpoint dir, params only),
    # 3) a fresh init.
    abstract = abstract_state(make_state, mesh)
    latest = ckpt.latest_step()
    if latest is not None:
        state, _ = ckpt.restore(latest, abstract)
        logging.info("resuming from step %d (position %d)", int(state.step), int(state.position))
    else:
        state = parallel.replicate(make_state(), mesh)
        if config.get("init_from"):
            src = checkpointing.Checkpointer(config.init_from, 0, 1, read_only=True)
            if src.latest_step() is None:
                raise InputError(f"{config.init_from}: config.init_from has no checkpoint")
            loaded, _ = src.restore(src.latest_step(), abstract)
            state = state.replace(params=loaded.params)
            logging.info("initialised params from %s", config.init_from)

    # Loop: one compiled step; host reads metrics only at log steps.
    train_step = make_train_step(model, tx, config.loss, mesh, config.batch_size)
    writer = MetricWriter(workdir)
    start = int(state.step)
    progress = Progress("train", config.total_steps, start)
    max_skips = config.optim.max_consecutive_skips
    eval_every, embedder = int(config.eval.get("every_steps", 0)), None
    position = int(state.position)  # host copy; the step advances the device copy alike
    try:
        for step in range(start + 1, config.total_steps + 1):
            batch = parallel.shard_batch(batcher.batch(position), mesh, config.batch_size)
            position += config.batch_size
            state, metrics = train_step(state, batch)
            last = step == config.total_steps
            if step % config.log_every_steps == 0 or last or _Stop.requested:
                host = jax.tree.map(float, parallel.to_host(metrics))
                rate = progress.update(step)
                writer.write(
                    step, {f"train/{k}": v for k, v in host.items()} | {"train/steps_per_sec": rate}
                )
                if int(state.consecutive_skips) >= max_skips:
                    ckpt.close()
                    raise FloatingPointError(
                        f"{int(state.consecutive_skips)} consecutive steps had a non-finite "
                        f"loss or gradient (limit config.optim.max_consecutive_skips="
                        f"{max_skips}); lower optim.lr or check the data"
                    )
            if ckpt.should_save(step, config.total_steps) or _Stop.requested:
                ckpt.save(step, state, {"position": position, "step": step})
            if _Stop.requested:
                break
            # Periodic evaluation scores the live params; the last step is left to
            # the eval stage, which scores the saved checkpoint.
            if eval_every > 0 and step % eval_every == 0 and not last:
                from wat_jax import evaluate  # evaluate imports this module

                if embedder is None:  # built once, so its functions compile once
                    embedder = evaluate.make_embedder(config, model, state.params, mesh)
                embedder.params = state.params
                evaluate.score(config, workdir, task, embedder, step, writer)
    finally:
        # Final save: wait for async writes before the process exits.
        ckpt.close()
        writer.close()
    return state
