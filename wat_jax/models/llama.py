"""A llama-family decoder (llama, mistral, SmolLM2) with a fixed-size KV cache.

The layer is the standard one: RMSNorm -> grouped-query attention with rotary
positions -> residual, RMSNorm -> SwiGLU MLP -> residual; the output head is the
token embedding (tied) or its own matrix. Rotary positions use the Hugging Face
"rotate half" layout; GGUF checkpoints store Q/K rows interleaved per pair and
are converted to this layout when loaded (`wat_jax.text.local_llm`).

Batches are left-padded: every row's prompt ends at the same cache slot, so one
decode step writes one slot for all rows. Row b's tokens start at slot
`start[b]`; its positions count from there, and slots before it are masked.
The cache is a list of per-layer (k, v) arrays [B, KVH, S, D] passed in and out
of the jitted steps (donated), so shapes never change between tokens.
"""

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Added to masked attention logits; finite so fully padded query rows stay NaN-free.
_MASK_VALUE = -1e30


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Architecture hyperparameters (hashable, so it can be a static jit argument)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    max_position: int = 2048


class RMSNorm(nn.Module):
    eps: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (x32 * scale).astype(self.dtype)


def rotary(x, positions, theta: float):
    """Rotates x [B, T, H, D] by positions [B, T] (Hugging Face rotate-half layout)."""
    dim = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, D/2]
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)


class Attention(nn.Module):
    config: LlamaConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, positions, layer_cache, cache_index, start):
        cfg = self.config
        batch, length, _ = x.shape
        dense = functools.partial(nn.Dense, use_bias=False, dtype=self.dtype)
        q = dense(cfg.num_heads * cfg.head_dim, name="q")(x)
        k = dense(cfg.num_kv_heads * cfg.head_dim, name="k")(x)
        v = dense(cfg.num_kv_heads * cfg.head_dim, name="v")(x)
        q = rotary(q.reshape(batch, length, cfg.num_heads, cfg.head_dim), positions, cfg.rope_theta)
        k = rotary(
            k.reshape(batch, length, cfg.num_kv_heads, cfg.head_dim), positions, cfg.rope_theta
        )
        v = v.reshape(batch, length, cfg.num_kv_heads, cfg.head_dim)
        # The cache is [B, KVH, S, D] so both attention matmuls read it without a
        # transposed copy (that copy dominated decode time at long cache lengths).
        cache_k, cache_v = layer_cache
        cache_k = jax.lax.dynamic_update_slice(
            cache_k, k.transpose(0, 2, 1, 3).astype(cache_k.dtype), (0, 0, cache_index, 0)
        )
        cache_v = jax.lax.dynamic_update_slice(
            cache_v, v.transpose(0, 2, 1, 3).astype(cache_v.dtype), (0, 0, cache_index, 0)
        )
        # Grouped-query attention: each of the KVH key heads serves G query heads.
        groups = cfg.num_heads // cfg.num_kv_heads
        q = q.reshape(batch, length, cfg.num_kv_heads, groups, cfg.head_dim)
        q = q.transpose(0, 2, 3, 1, 4).reshape(
            batch, cfg.num_kv_heads, groups * length, cfg.head_dim
        )  # [B, KVH, G*T, D]
        scores = jnp.einsum("bkqd,bksd->bkqs", q, cache_k.astype(self.dtype))
        scores = scores.astype(jnp.float32) / jnp.sqrt(jnp.float32(cfg.head_dim))
        slots = jnp.arange(cache_k.shape[2])
        query_slots = cache_index + jnp.arange(length)
        visible = (slots[None, None, :] <= query_slots[None, :, None]) & (
            slots[None, None, :] >= start[:, None, None]
        )  # [B, T, S]
        visible = jnp.tile(visible, (1, groups, 1))  # [B, G*T, S], rows ordered (g, t)
        scores = jnp.where(visible[:, None], scores, _MASK_VALUE)
        weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out = jnp.einsum("bkqs,bksd->bkqd", weights, cache_v.astype(self.dtype))
        out = out.reshape(batch, cfg.num_kv_heads, groups, length, cfg.head_dim)
        out = out.transpose(0, 3, 1, 2, 4).reshape(batch, length, cfg.num_heads * cfg.head_dim)
        return dense(cfg.hidden_size, name="o")(out), (cache_k, cache_v)


class Mlp(nn.Module):
    config: LlamaConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        dense = functools.partial(nn.Dense, use_bias=False, dtype=self.dtype)
        gate = dense(self.config.intermediate_size, name="gate")(x)
        up = dense(self.config.intermediate_size, name="up")(x)
        return dense(self.config.hidden_size, name="down")(nn.silu(gate) * up)


class DecoderLayer(nn.Module):
    config: LlamaConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, positions, layer_cache, cache_index, start):
        eps = self.config.rms_norm_eps
        h, layer_cache = Attention(self.config, self.dtype, name="attn")(
            RMSNorm(eps, self.dtype, name="attn_norm")(x),
            positions,
            layer_cache,
            cache_index,
            start,
        )
        x = x + h
        x = x + Mlp(self.config, self.dtype, name="mlp")(
            RMSNorm(eps, self.dtype, name="mlp_norm")(x)
        )
        return x, layer_cache


class Llama(nn.Module):
    """The decoder: tokens [B, T] at cache slots cache_index.. -> logits, updated cache."""

    config: LlamaConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens, cache, cache_index, start, *, last_only: bool = False):
        """Runs T new tokens through the model, writing their keys/values to the cache.

        Args:
          tokens: int32 [B, T], the tokens at slots cache_index .. cache_index+T-1.
          cache: list over layers of (k, v), each [B, KVH, S, D].
          cache_index: int scalar, the slot of tokens[:, 0].
          start: int32 [B], the first real (non-padding) slot of each row.
          last_only: return logits for the last position only ([B, 1, V]).

        Returns:
          (logits float32 [B, T or 1, V], new cache).
        """
        cfg = self.config
        embed = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=self.dtype, name="embed")
        x = embed(tokens)  # [B, T, H]
        slots = cache_index + jnp.arange(tokens.shape[1])
        positions = jnp.maximum(slots[None, :] - start[:, None], 0)  # [B, T]
        new_cache = []
        for i in range(cfg.num_layers):
            x, layer_cache = DecoderLayer(cfg, self.dtype, name=f"layer_{i}")(
                x, positions, cache[i], cache_index, start
            )
            new_cache.append(layer_cache)
        if last_only:
            x = x[:, -1:]
        x = RMSNorm(cfg.rms_norm_eps, self.dtype, name="final_norm")(x)
        if cfg.tie_word_embeddings:
            logits = embed.attend(x)
        else:
            logits = nn.Dense(cfg.vocab_size, use_bias=False, dtype=self.dtype, name="lm_head")(x)
        return logits.astype(jnp.float32), new_cache


def init_cache(config: LlamaConfig, batch: int, length: int, dtype=jnp.float32):
    """An empty KV cache: per layer (k, v) zeros [batch, KVH, length, D]."""
    shape = (batch, config.num_kv_heads, length, config.head_dim)
    return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(config.num_layers)]


def nucleus_threshold(scaled, top_p, iterations: int = 24):
    """Per row, the smallest logit inside the top-p nucleus of softmax(scaled).

    The nucleus is the smallest set of most likely tokens whose mass reaches
    top_p. Rather than sort the vocabulary (slow on CPU: ~20x this), bisect on the
    logit value: keep `lo` with mass(scaled >= lo) >= top_p and `hi` without.
    24 halvings of the logit range leave it below float32 resolution in practice.

    Args:
      scaled: float32 [B, V] temperature-scaled logits.
      top_p: float32 [B].

    Returns:
      float32 [B]: tokens with scaled >= threshold form the nucleus.
    """
    probs = jax.nn.softmax(scaled, axis=-1)
    hi = jnp.max(scaled, axis=-1)
    lo = jnp.min(scaled, axis=-1)

    def halve(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        mass = jnp.sum(jnp.where(scaled >= mid[:, None], probs, 0.0), axis=-1)
        enough = mass >= top_p
        return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

    lo, _ = jax.lax.fori_loop(0, iterations, halve, (lo, hi))
    # The most likely token is always kept, even for top_p <= 0 or a dominant token.
    return jnp.minimum(lo, hi)


def sample_tokens(logits, keys, temperature, top_p):
    """Samples one token per row: greedy where temperature == 0, else nucleus sampling.

    Args:
      logits: float32 [B, V].
      keys: typed PRNG keys [B], already specific to this step.
      temperature: float32 [B]; 0 means greedy (argmax).
      top_p: float32 [B]; the smallest set of tokens whose mass reaches top_p is kept.

    Returns:
      int32 [B] token ids.
    """
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)

    def sample(_):
        scaled = logits / jnp.maximum(temperature, 1e-6)[:, None]
        threshold = nucleus_threshold(scaled, top_p)
        probs = jax.nn.softmax(jnp.where(scaled >= threshold[:, None], scaled, -jnp.inf))
        # Inverse-CDF sampling: one uniform per row instead of a Gumbel per token (10x
        # faster on CPU). Outside the nucleus the CDF is flat, so it is never picked.
        cdf = jnp.cumsum(probs, axis=-1)  # [B, V]
        uniform = jax.vmap(jax.random.uniform)(keys) * cdf[:, -1]
        sampled = jnp.sum(cdf < uniform[:, None], axis=-1).astype(jnp.int32)
        return jnp.where(temperature > 0, sampled, greedy)

    # All-greedy batches (tests, references) skip the sampling work entirely.
    return jax.lax.cond(jnp.any(temperature > 0), sample, lambda _: greedy, None)


def _step_keys(keys, step):
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, step)


@functools.partial(jax.jit, static_argnames=("config", "dtype"), donate_argnames=("cache",))
def prefill(params, cache, tokens, start, keys, temperature, top_p, *, config, dtype):
    """Runs the left-padded prompts [B, P] from slot 0; returns (logits [B, V], token, cache)."""
    logits, cache = Llama(config, dtype).apply(
        {"params": params}, tokens, cache, 0, start, last_only=True
    )
    logits = logits[:, 0]
    return logits, sample_tokens(logits, _step_keys(keys, 0), temperature, top_p), cache


@functools.partial(jax.jit, static_argnames=("config", "dtype"), donate_argnames=("cache",))
def decode_step(
    params, cache, tokens, cache_index, start, keys, step, temperature, top_p, *, config, dtype
):
    """Feeds tokens [B] at slot cache_index; returns (next tokens [B], cache)."""
    logits, cache = Llama(config, dtype).apply(
        {"params": params}, tokens[:, None], cache, cache_index, start
    )
    return sample_tokens(logits[:, 0], _step_keys(keys, step), temperature, top_p), cache


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def generate(
    params,
    config: LlamaConfig,
    prompts,
    *,
    max_new_tokens,
    temperature,
    top_p,
    seeds,
    stop_ids,
    batch_size: int | None = None,
    dtype=jnp.float32,
    prompt_bucket: int = 64,
    length_bucket: int = 32,
):
    """Generates continuations of a batch of prompts with one compiled step.

    Shapes are bucketed (batch to `batch_size`, prompt length to a multiple of
    `prompt_bucket`, cache length to prompt + a multiple of `length_bucket`), so
    a step compiles once per bucket, never per token.

    Args:
      params: the model's parameters.
      config: the architecture.
      prompts: list of token-id lists (non-empty), one per row.
      max_new_tokens, temperature, top_p, seeds: per-row lists (or scalars).
      stop_ids: token ids that end a row (not included in its output).
      batch_size: pad the batch to this many rows (default: len(prompts)).
      dtype: compute dtype.

    Returns:
      list of generated token-id lists, one per prompt.
    """
    n = len(prompts)
    batch = max(batch_size or n, n)

    def per_row(value):
        values = list(value) if isinstance(value, (list, tuple)) else [value] * n
        return values + [values[0]] * (batch - n)

    limits = per_row(max_new_tokens)
    prompt_len = _round_up(max(len(p) for p in prompts), prompt_bucket)
    cache_len = prompt_len + _round_up(max(max(limits), 1), length_bucket)
    padded = [list(p) for p in prompts] + [list(prompts[0])] * (batch - n)
    rows = [[0] * (prompt_len - len(p)) + p for p in padded]
    tokens = jnp.asarray(rows, jnp.int32)  # [B, P], left-padded
    start = jnp.asarray([prompt_len - len(p) for p in padded], jnp.int32)
    keys = jax.vmap(jax.random.key)(jnp.asarray(per_row(seeds), jnp.uint32))
    temps = jnp.asarray(per_row(temperature), jnp.float32)
    top_ps = jnp.asarray(per_row(top_p), jnp.float32)
    cache = init_cache(config, batch, cache_len, dtype)
    statics = {"config": config, "dtype": dtype}

    _, token, cache = prefill(params, cache, tokens, start, keys, temps, top_ps, **statics)
    outputs = [[] for _ in range(n)]
    done = [False] * n
    for step in range(max(limits)):
        host_token = jax.device_get(token)
        for row in range(n):
            if done[row]:
                continue
            if int(host_token[row]) in stop_ids:
                done[row] = True
            else:
                outputs[row].append(int(host_token[row]))
                done[row] = len(outputs[row]) >= limits[row]
        if all(done):
            break
        token, cache = decode_step(
            params, cache, token, prompt_len + step, start, keys, step + 1, temps, top_ps, **statics
        )
    return outputs
