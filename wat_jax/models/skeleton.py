"""The motion tower: a transformer over skeleton sequences, and projection heads.

`SkeletonTransformer` reads motion [B, T, J, F] with a frame mask [B, T] and
returns one embedding per sequence. Padded frames are excluded from attention
keys and from pooling, so they never change the embedding. The reference
(MotionCLIP fork) used post-norm layers and the first frame's output; both are
options here beside a learned class token and masked mean pooling.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

POOLINGS = ("cls", "mean", "first")
POSITIONS = ("sinusoidal", "learned")
TEXT_PROJECTIONS = ("identity", "linear", "head")


def sinusoidal_positions(length: int, width: int) -> np.ndarray:
    """Fixed sin/cos position table [length, width] (Vaswani et al.)."""
    pos = np.arange(length)[:, None]
    div = np.exp(np.arange(0, width, 2) * (-np.log(10000.0) / width))
    table = np.zeros((length, width), np.float32)
    table[:, 0::2] = np.sin(pos * div)
    table[:, 1::2] = np.cos(pos * div)[:, : width // 2]
    return table


def _mix32(x):
    """A low-bias 32-bit integer finaliser: every input bit flips each output bit ~half the time."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def keep_mask(key, shape, rate: float):
    """Dropout's keep mask: P(keep) = 1 - rate, a pure function of (key, shape).

    Two seed words come from the threefry key (one small draw); each element's
    bits are a counter hash of its flat index under those seeds. threefry
    per element (nn.Dropout's way) was an eighth of the paper-size CPU train
    step, computed twice because XLA fuses the mask into the backward pass too;
    the hash is a few vector integer ops per element. Masks are reproducible
    from the key, so a resumed run draws the same ones.
    """
    seeds = jax.random.bits(key, (2,), jnp.uint32)
    size = int(np.prod(shape))
    if size >= 2**32:
        raise ValueError(f"dropout over {size} elements: the counter is 32-bit")
    index = jax.lax.iota(jnp.uint32, size).reshape(shape)
    bits = _mix32(_mix32(index ^ seeds[0]) + seeds[1])
    # Uniform 32-bit words: P(bits < rate * 2**32) = rate is the drop probability.
    threshold = min(round(rate * 2**32), 2**32 - 1)
    return bits >= jnp.uint32(threshold)


class Dropout(nn.Module):
    """Inverted dropout with `keep_mask`'s hashed masks.

    Same interface as nn.Dropout; randomness from the "dropout" stream.
    """

    rate: float
    deterministic: bool = False

    @nn.compact
    def __call__(self, x):
        if self.deterministic or self.rate == 0.0:
            return x
        if self.rate >= 1.0:
            return jnp.zeros_like(x)
        keep = keep_mask(self.make_rng("dropout"), x.shape, self.rate)
        return jnp.where(keep, x / jnp.asarray(1.0 - self.rate, x.dtype), 0).astype(x.dtype)


class MlpBlock(nn.Module):
    """Feed-forward block: Dense -> GELU -> dropout -> Dense."""

    hidden: int
    dropout: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        width = x.shape[-1]
        x = nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(x)
        x = nn.gelu(x, approximate=False)
        x = Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(width, dtype=self.dtype, name="fc2")(x)


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward with residuals, pre- or post-norm."""

    heads: int
    mlp_dim: int
    dropout: float
    pre_norm: bool
    dtype: Any = jnp.float32
    norm_eps: float = 1e-5

    @nn.compact
    def __call__(self, x, attn_mask, *, train: bool):
        def attention(h):
            h = nn.MultiHeadDotProductAttention(
                num_heads=self.heads,
                dtype=self.dtype,
                dropout_rate=self.dropout,
                deterministic=not train,
                force_fp32_for_softmax=True,
                name="attn",
            )(h, h, mask=attn_mask)
            return Dropout(self.dropout, deterministic=not train)(h)

        def feed_forward(h):
            h = MlpBlock(self.mlp_dim, self.dropout, self.dtype, name="mlp")(h, train=train)
            return Dropout(self.dropout, deterministic=not train)(h)

        norm1 = nn.LayerNorm(epsilon=self.norm_eps, dtype=self.dtype, name="norm1")
        norm2 = nn.LayerNorm(epsilon=self.norm_eps, dtype=self.dtype, name="norm2")
        if self.pre_norm:
            x = x + attention(norm1(x))
            return x + feed_forward(norm2(x))
        x = norm1(x + attention(x))
        return norm2(x + feed_forward(x))


class SkeletonTransformer(nn.Module):
    """Transformer encoder over frames; one embedding per sequence.

    Attributes:
      width: model width (768 in the paper).
      layers, heads, mlp_dim, dropout: the encoder stack.
      pre_norm: pre-norm layers (GaitFormer) or post-norm (reference).
      positions: "sinusoidal" (reference) or "learned".
      pooling: "cls" (learned token), "mean" (masked mean) or "first" (the
        first frame's output, as the reference does).
      max_len: the longest sequence the position table covers.
      norm_eps: every LayerNorm's epsilon (1e-5: torch's, which the reference uses).
      dtype: compute dtype; parameters stay float32.
    """

    width: int = 256
    layers: int = 4
    heads: int = 4
    mlp_dim: int = 1024
    dropout: float = 0.1
    pre_norm: bool = True
    positions: str = "sinusoidal"
    pooling: str = "cls"
    max_len: int = 512
    norm_eps: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, motion, mask, *, train: bool = False):
        """Embeds motion [B, T, J, F] with frame mask [B, T] into [B, width]."""
        if self.pooling not in POOLINGS:
            raise ValueError(f"model.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"model.positions must be one of {POSITIONS}, got {self.positions!r}")
        batch, frames = motion.shape[:2]
        x = motion.reshape(batch, frames, -1).astype(self.dtype)  # [B, T, J*F]
        x = nn.Dense(self.width, dtype=self.dtype, name="frame_embed")(x)  # [B, T, W]
        mask = mask.astype(bool)

        if self.positions == "sinusoidal":
            table = jnp.asarray(sinusoidal_positions(self.max_len, self.width))
        else:
            table = self.param(
                "pos_embed", nn.initializers.normal(0.02), (self.max_len, self.width)
            )
        x = x + table[:frames].astype(self.dtype)

        if self.pooling == "cls":
            cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, self.width))
            x = jnp.concatenate(
                [jnp.broadcast_to(cls, (batch, 1, self.width)).astype(self.dtype), x], 1
            )
            mask = jnp.concatenate([jnp.ones((batch, 1), bool), mask], 1)
        x = Dropout(self.dropout, deterministic=not train)(x)

        # Padded frames are masked as keys; their own (query) outputs are junk
        # but never pooled, so they cannot reach the embedding.
        attn_mask = nn.make_attention_mask(mask, mask)  # [B, 1, T', T']
        for i in range(self.layers):
            x = EncoderLayer(
                self.heads,
                self.mlp_dim,
                self.dropout,
                self.pre_norm,
                self.dtype,
                self.norm_eps,
                name=f"layer_{i}",
            )(x, attn_mask, train=train)
        if self.pre_norm:
            x = nn.LayerNorm(epsilon=self.norm_eps, dtype=self.dtype, name="final_norm")(x)

        if self.pooling in ("cls", "first"):
            # "first" is the reference's rule; with a leading pad it would read
            # padding, so data is always left-aligned (padding at the end).
            return x[:, 0].astype(jnp.float32)
        weights = mask.astype(jnp.float32)[..., None]
        summed = jnp.sum(x.astype(jnp.float32) * weights, axis=1)
        return summed / jnp.maximum(weights.sum(axis=1), 1.0)


class ProjectionHead(nn.Module):
    """The reference's head: Dense, GELU, Dense, dropout, residual, LayerNorm."""

    dim: int
    dropout: float = 0.1
    dtype: Any = jnp.float32
    norm_eps: float = 1e-5

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        projected = nn.Dense(self.dim, dtype=self.dtype, name="proj")(x)
        h = nn.gelu(projected, approximate=False)
        h = nn.Dense(self.dim, dtype=self.dtype, name="fc")(h)
        h = Dropout(self.dropout, deterministic=not train)(h)
        norm = nn.LayerNorm(epsilon=self.norm_eps, dtype=jnp.float32, name="norm")
        return norm(h + projected).astype(jnp.float32)


class TextProjection(nn.Module):
    """Maps frozen text vectors into the joint space; `kind="identity"` keeps them."""

    dim: int
    kind: str = "identity"  # identity | linear | head
    dropout: float = 0.1

    @nn.compact
    def __call__(self, text_emb, *, train: bool = False):
        if self.kind == "identity":
            return text_emb
        if self.kind == "linear":
            return nn.Dense(self.dim, name="linear")(text_emb)
        if self.kind == "head":
            return ProjectionHead(self.dim, self.dropout, name="head")(text_emb, train=train)
        raise ValueError(
            f"model.text_projection must be one of {TEXT_PROJECTIONS}, got {self.kind!r}"
        )


class MotionTextModel(nn.Module):
    """The two towers that train: motion encoder + head, and the text projection.

    Texts arrive as frozen encoder vectors, so the text tower here is only the
    projection. `num_classes > 0` adds the optional classification head.
    """

    encoder: dict
    embed_dim: int
    text_projection: str = "identity"
    head_dropout: float = 0.1
    norm_eps: float = 1e-5
    num_classes: int = 0
    log_scale_init: float = 2.6593  # log(1 / 0.07), CLIP's initial temperature
    logit_bias_init: float = 0.0  # SigLIP starts at -10
    dtype: Any = jnp.float32

    def setup(self):
        # Scalars of the contrastive losses live with the model so they train,
        # checkpoint and restore like any other parameter.
        self.log_scale = self.param("log_scale", nn.initializers.constant(self.log_scale_init), ())
        self.logit_bias = self.param(
            "logit_bias", nn.initializers.constant(self.logit_bias_init), ()
        )
        self.motion_encoder = SkeletonTransformer(**self.encoder, dtype=self.dtype)
        self.motion_head = ProjectionHead(
            self.embed_dim, self.head_dropout, self.dtype, self.norm_eps
        )
        self.text_proj = TextProjection(self.embed_dim, self.text_projection, self.head_dropout)
        if self.num_classes:
            self.classifier = nn.Sequential(
                [nn.Dense(self.embed_dim), nn.gelu, nn.Dense(self.num_classes)]
            )

    def embed_motion(self, motion, mask, *, train: bool = False):
        """motion [B, T, J, F], mask [B, T] -> motion_emb [B, embed_dim]."""
        return self.motion_head(self.motion_encoder(motion, mask, train=train), train=train)

    def embed_text(self, text_emb, *, train: bool = False):
        """Frozen text vectors [..., D_text] -> [..., embed_dim]."""
        return self.text_proj(text_emb, train=train)

    def classify(self, motion_emb):
        return self.classifier(motion_emb) if self.num_classes else None

    def __call__(self, motion, mask, text_emb, *, train: bool = False):
        """Touches every parameter, for init: (motion_emb, text_emb, logits)."""
        motion_emb = self.embed_motion(motion, mask, train=train)
        return motion_emb, self.embed_text(text_emb, train=train), self.classify(motion_emb)
