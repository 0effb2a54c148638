"""A BERT-family sentence encoder in Linen, loaded from a Hugging Face model folder.

Serves any BERT-architecture checkpoint (all-MiniLM-L6-v2, UAE-Large-V1, the BGE
and E5 English families): word + position + token-type embeddings, post-norm
layers (attention -> residual -> LayerNorm, GELU MLP -> residual -> LayerNorm),
then masked mean or CLS pooling and optional L2 normalisation, as
sentence-transformers computes them. Weights come from `*.safetensors` through
safetensors' own reader, so no torch is needed. Parameter names follow Hugging
Face's (`encoder.layer.<i>.attention.self.query` -> `layer_<i>/query`), which
keeps the conversion a table rather than a search.
"""

import dataclasses
import functools
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from wat_jax.errors import fail

# Added to the attention logits of padded keys; finite, so no row is ever all -inf.
_MASK_VALUE = -1e30
_ACTIVATIONS = {
    "gelu": lambda x: nn.gelu(x, approximate=False),  # HF BERT's exact erf GELU
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
    "relu": nn.relu,
}


def _precision(dtype):
    # float32 means float32: GPUs would otherwise multiply in TF32 (~1e-3 relative error),
    # and the frozen tower's vectors should not depend on the machine that made them.
    return jax.lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else None


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Architecture hyperparameters (hashable, so a module can hold it)."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def read_config(folder: str) -> BertConfig:
    """Reads `folder/config.json` into a BertConfig; other architectures are an InputError."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise fail(folder, "no config.json: not a Hugging Face model folder")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise fail(path, f"not readable JSON ({e})") from e
    model_type = raw.get("model_type")
    if model_type != "bert":
        raise fail(
            path,
            f"model_type {model_type!r} is not supported; the text encoder "
            "serves BERT-architecture models (model_type 'bert') only",
        )
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise fail(
            path,
            f"position_embedding_type {raw['position_embedding_type']!r} is not "
            "supported (only 'absolute')",
        )
    act = raw.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise fail(path, f"hidden_act {act!r} is not supported ({', '.join(_ACTIVATIONS)})")
    try:
        config = BertConfig(
            vocab_size=int(raw["vocab_size"]),
            hidden_size=int(raw["hidden_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=int(raw["num_attention_heads"]),
            intermediate_size=int(raw["intermediate_size"]),
            max_position=int(raw.get("max_position_embeddings", 512)),
            type_vocab_size=int(raw.get("type_vocab_size", 2)),
            layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
            hidden_act=act,
            pad_token_id=int(raw.get("pad_token_id") or 0),
        )
    except KeyError as e:
        raise fail(path, f"missing key {e.args[0]!r}") from e
    if config.hidden_size % config.num_heads:
        raise fail(
            path,
            f"hidden_size {config.hidden_size} is not divisible by "
            f"num_attention_heads {config.num_heads}",
        )
    return config


class SelfAttention(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden, mask):
        c, p = self.config, _precision(self.dtype)

        def heads(name):  # [B, L, D] -> [B, L, H, Dh]
            projected = nn.Dense(c.hidden_size, dtype=self.dtype, precision=p, name=name)(hidden)
            return projected.reshape(*hidden.shape[:2], c.num_heads, c.head_dim)

        q, k, v = heads("query"), heads("key"), heads("value")
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=p).astype(jnp.float32)
        logits = scores / np.sqrt(c.head_dim)
        logits = jnp.where(mask, logits, _MASK_VALUE)  # mask [B, 1, 1 or L, L]
        probs = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        context = jnp.einsum("bhqk,bkhd->bqhd", probs, v, precision=p)  # [B, L, H, Dh]
        context = context.reshape(hidden.shape)  # [B, L, D]
        return nn.Dense(c.hidden_size, dtype=self.dtype, precision=p, name="output")(context)


class Layer(nn.Module):
    """One post-norm transformer layer, as in BERT."""

    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden, mask):
        c = self.config
        dense = functools.partial(nn.Dense, dtype=self.dtype, precision=_precision(self.dtype))
        attended = SelfAttention(c, self.dtype, name="attention")(hidden, mask)
        hidden = self.norm("attention_norm")(hidden + attended)
        inner = _ACTIVATIONS[c.hidden_act](dense(c.intermediate_size, name="intermediate")(hidden))
        out = dense(c.hidden_size, name="output")(inner)
        return self.norm("output_norm")(hidden + out)

    def norm(self, name: str) -> nn.LayerNorm:
        return nn.LayerNorm(self.config.layer_norm_eps, dtype=self.dtype, name=name)


class BertEncoder(nn.Module):
    """Token ids [B, L] and mask [B, L] -> sentence embeddings [B, D] (float32).

    Attributes:
      config: the architecture.
      pooling: "mean" (masked mean of the last layer) or "cls" (its first token).
      normalize: L2-normalise the pooled vectors.
      dtype: compute dtype; params stay float32, softmax and pooling run in float32.
    """

    config: BertConfig
    pooling: str = "mean"
    normalize: bool = True
    dtype: Any = jnp.float32

    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        """One text per row: input_ids, attention_mask [B, L] -> [B, D]."""
        mask = attention_mask.astype(bool)
        positions = jnp.arange(input_ids.shape[1])[None, :]
        hidden = self.encode_tokens(input_ids, positions, mask[:, None, None, :], token_type_ids)
        hidden = hidden.astype(jnp.float32)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "mean":
            weights = mask.astype(jnp.float32)[..., None]
            pooled = (hidden * weights).sum(1) / jnp.maximum(weights.sum(1), 1e-9)
        else:
            raise ValueError(f"pooling must be 'mean' or 'cls', not {self.pooling!r}")
        return self.finish(pooled)  # [B, D]

    def packed(self, input_ids, segments, positions, num_segments: int):
        """Several texts per row, as packed by the text encoder; same vectors as `__call__`.

        Args:
          input_ids: [R, L] token ids, texts laid end to end in each row.
          segments: [R, L] int, 1..num_segments for the text a token belongs to, 0 for padding.
          positions: [R, L] each token's position within its own text (0 at its [CLS]).
          num_segments: most texts one row may hold (static).

        Returns:
          [R, num_segments, D] float32, the vector of text s of row r at [r, s - 1]
          (rows of absent segments are zeros, or junk: the caller ignores them).

        Tokens attend only to their own text's tokens, and take positions from
        its start, so each text's vector is what it would be alone in a row;
        only the order of floating-point sums differs (~1e-7).
        """
        same = segments[:, :, None] == segments[:, None, :]
        mask = (same & (segments[:, None, :] > 0))[:, None]  # [R, 1, L, L]
        hidden = self.encode_tokens(input_ids, positions, mask).astype(jnp.float32)
        member = segments[..., None] == jnp.arange(1, num_segments + 1)  # [R, L, S]
        if self.pooling == "cls":
            member = member & (positions == 0)[..., None]
        elif self.pooling != "mean":
            raise ValueError(f"pooling must be 'mean' or 'cls', not {self.pooling!r}")
        weights = member.astype(jnp.float32)
        summed = jnp.einsum("rls,rld->rsd", weights, hidden, precision=jax.lax.Precision.HIGHEST)
        return self.finish(summed / jnp.maximum(weights.sum(1), 1e-9)[..., None])

    def finish(self, pooled):
        if self.normalize:
            norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
            pooled = pooled / jnp.maximum(norm, 1e-12)
        return pooled

    @nn.compact
    def encode_tokens(self, input_ids, positions, mask, token_type_ids=None):
        """The last layer's hidden states [B, L, D] (compute dtype); mask [B, 1, 1 or L, L]."""
        c = self.config
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        hidden = sum(
            nn.Embed(rows, c.hidden_size, dtype=self.dtype, name=name)(ids)
            for rows, name, ids in (
                (c.vocab_size, "word_embeddings", input_ids),
                (c.max_position, "position_embeddings", positions),
                (c.type_vocab_size, "token_type_embeddings", token_type_ids),
            )
        )  # [B, L, D]
        hidden = nn.LayerNorm(c.layer_norm_eps, dtype=self.dtype, name="embeddings_norm")(hidden)
        for i in range(c.num_layers):
            hidden = Layer(c, self.dtype, name=f"layer_{i}")(hidden, mask)  # [B, L, D]
        return hidden


def weight_files(folder: str) -> list[str]:
    """The safetensors files holding the model's weights (one, or the shards of an index)."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError) as e:
            raise fail(index, f"not a safetensors index ({e})") from e
        files = [os.path.join(folder, s) for s in shards]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise fail(index, f"names a shard that is not there: {missing[0]}")
        return files
    single = os.path.join(folder, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    if any(os.path.isfile(os.path.join(folder, n)) for n in ("pytorch_model.bin", "tf_model.h5")):
        raise fail(
            folder,
            "has weights only in PyTorch/TensorFlow format; this encoder reads "
            "model.safetensors (convert them once where torch is installed)",
        )
    raise fail(folder, "no model weights (model.safetensors) in this folder")


def _read_tensors(files: list[str]) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    tensors = {}
    for path in files:
        try:
            with safe_open(path, framework="numpy") as f:
                for name in f.keys():
                    if f.get_slice(name).get_dtype() == "BF16":  # numpy has no bfloat16
                        with safe_open(path, framework="flax") as g:
                            tensors[name] = np.asarray(g.get_tensor(name), np.float32)
                    else:
                        tensors[name] = f.get_tensor(name)
        except Exception as e:  # safetensors raises its own error types for bad files
            raise fail(path, f"not a readable safetensors file ({e})") from e
    return tensors


def _hf_name(flax_path: tuple[str, ...]) -> str:
    """Flax param path -> Hugging Face BertModel tensor name (without any 'bert.' prefix)."""
    *scope, leaf = flax_path
    suffix = {"kernel": "weight", "scale": "weight", "bias": "bias", "embedding": "weight"}[leaf]
    if scope[0] == "embeddings_norm":
        return f"embeddings.LayerNorm.{suffix}"
    if scope[0].endswith("_embeddings"):
        return f"embeddings.{scope[0]}.{suffix}"
    layer = f"encoder.layer.{scope[0].split('_')[1]}"
    inner = {
        ("attention", "query"): "attention.self.query",
        ("attention", "key"): "attention.self.key",
        ("attention", "value"): "attention.self.value",
        ("attention", "output"): "attention.output.dense",
        ("attention_norm",): "attention.output.LayerNorm",
        ("intermediate",): "intermediate.dense",
        ("output",): "output.dense",
        ("output_norm",): "output.LayerNorm",
    }[tuple(scope[1:])]
    return f"{layer}.{inner}.{suffix}"


def _find(tensors: dict, name: str):
    """Looks `name` up under the usual variants: a model prefix, LayerNorm gamma/beta."""
    legacy = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
        "LayerNorm.bias", "LayerNorm.beta"
    )
    for prefix in ("", "bert.", "model."):
        for candidate in (name, legacy):
            if prefix + candidate in tensors:
                return tensors[prefix + candidate]
    return None


def load_params(folder: str, config: BertConfig) -> dict:
    """Reads the folder's safetensors into a float32 param tree for BertEncoder.

    Every tensor's shape is checked against `config`; a mismatch or a missing
    tensor is an InputError naming the weights file and the tensor.
    """
    files = weight_files(folder)
    tensors = _read_tensors(files)
    shapes = jax.eval_shape(
        lambda: BertEncoder(config).init(
            jax.random.key(0), jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2), jnp.int32)
        )
    )["params"]
    where = files[0] if len(files) == 1 else os.path.join(folder, "model.safetensors.index.json")

    def convert(path, spec):
        keys = tuple(p.key for p in path)
        name = _hf_name(keys)
        value = _find(tensors, name)
        if value is None:
            raise fail(where, f"no tensor {name!r} (is this a BERT model?)")
        value = np.asarray(value, np.float32)
        if keys[-1] == "kernel":
            value = value.T  # torch Linear stores [out, in]
        if value.shape != spec.shape:
            raise fail(
                where,
                f"tensor {name!r} has shape {tuple(value.shape)}, but config.json "
                f"implies {tuple(spec.shape)}",
            )
        return value

    params = jax.tree_util.tree_map_with_path(convert, shapes)
    logging.info("loaded %d tensors from %s", len(jax.tree_util.tree_leaves(params)), folder)
    return params
