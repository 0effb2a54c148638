"""The train state and what builds it: the model, the optimizer, the abstract state.

Everything here is shared by training, evaluation and reading a run back
(`wat_jax.load`), so none of them imports another. A checkpoint records the
model's dimensions (`ModelDims`), so params restore from config.json and the
checkpoint folder alone, without the prepared data or the text bank.
"""

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from wat_jax import parallel
from wat_jax.errors import InputError
from wat_jax.models.skeleton import MotionTextModel


@dataclasses.dataclass(frozen=True)
class ModelDims:
    """The input and output sizes a model is built for (checkpoint metadata).

    frames, joints, features: one motion window [T, J, F].
    text_dim: the frozen text encoder's dimension D.
    num_classes: label columns C (classes, or gait attributes).
    """

    frames: int
    joints: int
    features: int
    text_dim: int
    num_classes: int

    @classmethod
    def of_batch(cls, batch: dict) -> "ModelDims":
        """The dims of a training batch (motion [B, T, J, F], text [B, D], labels [B, C])."""
        _, t, j, f = batch["motion"].shape
        return cls(
            int(t), int(j), int(f), int(batch["text"].shape[-1]), int(batch["labels"].shape[-1])
        )

    @classmethod
    def from_json(cls, d: dict) -> "ModelDims":
        return cls(**{k.name: int(d[k.name]) for k in dataclasses.fields(cls)})

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def example(self, batch: int = 1) -> dict:
        """Zero inputs of these shapes: what `model.init` needs."""
        return {
            "motion": np.zeros((batch, self.frames, self.joints, self.features), np.float32),
            "mask": np.ones((batch, self.frames), bool),
            "text": np.zeros((batch, self.text_dim), np.float32),
            "labels": np.zeros((batch, self.num_classes), np.float32),
        }


class TrainState(flax.struct.PyTreeNode):
    """Everything a step reads and writes; data, not behaviour."""

    step: jax.Array  # int32 scalar
    params: Any
    opt_state: Any
    rng: jax.Array  # uint32 [2] raw key data (checkpoints as a plain array)
    skipped: jax.Array  # int32: updates skipped for non-finite loss or gradient
    consecutive_skips: jax.Array  # int32
    position: jax.Array  # int32: examples consumed, the data position


# config.model.dtype: the motion tower's compute dtype (parameters stay float32).
MODEL_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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
        norm_eps=m.norm_eps,
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
        norm_eps=m.norm_eps,
        num_classes=num_classes if config.loss.ce_weight > 0 else 0,
        log_scale_init=float(init_scale),
        logit_bias_init=-10.0 if config.loss.name == "siglip" else 0.0,
        dtype=MODEL_DTYPES.get(m.dtype, jnp.float32),
    )


DECAY_MODES = ("matrices", "all")


def make_optimizer(optim: ml_collections.ConfigDict, total_steps: int):
    """AdamW with warmup + cosine decay and global-norm clipping (`grad_clip` > 0).

    `decay="matrices"`: norm scales, biases and the loss scalars (all leaves with
    ndim < 2) get no weight decay, as is standard for transformers. `decay="all"`:
    every parameter decays, as torch.optim.AdamW(model.parameters()) does in the
    reference.
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
    if optim.decay not in DECAY_MODES:
        raise InputError(f"config.optim.decay must be one of {DECAY_MODES}, got {optim.decay!r}")
    if optim.decay == "all":
        decay_mask = None
    else:
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
    """Initialises params and optimizer state from an example batch's shapes.

    One compiled program. Run op by op, initialisation compiled 117 small programs afresh
    at every start of a command (babel60 demo config, fresh process on a 2-core CPU: 3.7 s
    against 1.5 s compiled whole); the state's values were bitwise the same.
    """
    first = {name: example[name][:1] for name in ("motion", "mask", "text")}
    return jax.jit(lambda ex: _new_state(model, tx, seed, ex))(first)


def _new_state(model, tx, seed: int, example: dict) -> TrainState:
    _, train_key = jax.random.split(jax.random.key(seed))
    params = init_params(model, seed, example)
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


def init_params(model, seed: int, example: dict):
    """The model's initial params from an example batch's shapes (init's key as in the state)."""
    init_key, _ = jax.random.split(jax.random.key(seed))
    return model.init(init_key, example["motion"][:1], example["mask"][:1], example["text"][:1])[
        "params"
    ]


def abstract_params(model, dims: ModelDims, mesh=None):
    """Shapes and dtypes of `model`'s params (replicated on `mesh` when given); no compute."""
    example = dims.example()
    shapes = jax.eval_shape(lambda: init_params(model, 0, example))
    sharding = parallel.replicated(mesh) if mesh is not None else None
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def motion_tower_size(params) -> int:
    """Parameters of the motion tower (encoder and head): the model's size as papers quote it."""
    tower = {k: v for k, v in params.items() if k in ("motion_encoder", "motion_head")}
    return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(tower)))
