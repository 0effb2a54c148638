"""The text bank: every key's frozen text vectors, its file and its build, in one place.

A key is a class (BABEL) or an attribute set (DenseGait). The embed stage writes
WORKDIR/text_bank.npz (`build`): each key's phrase and each of its stored
descriptions through the frozen text encoder (`encode`). Training draws its text
targets from it, evaluation and the gallery index rank its vectors (`load`). The
toy task's bank is generated (`random_bank`), never written.

The file is an ordinary uncompressed `np.savez` archive (np.load reads it), and `load`
memory-maps its arrays in place: each member of such an archive is a .npy file stored
as is, so its data is a run of bytes at a known offset of the .npz. Reading a bank
therefore costs memory for its keys (a Python string each) and offsets, not for its
vectors (1 GB at DenseGait's ~217k keys with MiniLM, ~8 GB with the paper's encoder
and 8 texts a key); a batch reads only its rows. A bank stored compressed (not what
`save` writes) is read whole, as before.
"""

import dataclasses
import os
import struct
import zipfile
import zlib

import numpy as np
from absl import logging

from wat_jax import errors, fileio, metrics
from wat_jax.errors import fail

BANK_FILE = "text_bank.npz"


@dataclasses.dataclass(frozen=True)
class TextBank:
    """Frozen text vectors per key (a class, or an attribute set).

    Attributes:
      keys: the K key ids, in column order for classes.
      names: [K, D] the embedding of each key's own name or phrase.
      descriptions: [M, D] every description's embedding, grouped by key.
      offsets: [K + 1] key k's descriptions are rows offsets[k]:offsets[k+1].

    A loaded bank's names and descriptions are read-only memory maps of the file.
    """

    keys: list[str]
    names: np.ndarray
    descriptions: np.ndarray
    offsets: np.ndarray

    @property
    def dim(self) -> int:
        return self.names.shape[1]

    def centroids(self, normalize: bool = True, keys=None) -> np.ndarray:
        """[K, D] mean description per key (the name where a key has none).

        Args:
          normalize: scale each row to unit length.
          keys: the key indices whose rows to compute (all when None); each row is the
            one the whole [K, D] array would have, and only these rows are read.
        """
        keys = np.arange(len(self.keys)) if keys is None else np.asarray(keys, np.int64)
        out = np.array(self.names[keys], np.float32)
        for i, k in enumerate(keys):
            rows = self.descriptions[self.offsets[k] : self.offsets[k + 1]]
            if len(rows):
                out[i] = rows.mean(0)
        return metrics.unit_rows(out) if normalize else out

    def save(self, path: str) -> None:
        arrays = dict(
            keys=np.asarray(self.keys),
            names=self.names,
            descriptions=self.descriptions,
            offsets=self.offsets,
        )
        fileio.atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str) -> "TextBank":
        """Reads a bank; its vectors stay on disk (memory-mapped, read-only)."""
        if not os.path.exists(path):
            raise fail(path, "no text embeddings here; run --mode=embed first")
        try:
            with zipfile.ZipFile(path) as z:
                arrays = {name: _member(path, z, name) for name in _ARRAYS}
            bank = cls(
                [str(k) for k in arrays["keys"]],
                _float32(arrays["names"], path, "names"),
                _float32(arrays["descriptions"], path, "descriptions"),
                np.array(arrays["offsets"], np.int64),
            )
        except KeyError as e:
            raise fail(path, f"not a text bank (no array {e}); run --mode=embed again") from e
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            detail = " ".join(str(e).split()) or type(e).__name__
            raise fail(
                path, f"unreadable text bank ({detail}); run --mode=embed again to rebuild it"
            ) from e
        k, m = len(bank.keys), len(bank.descriptions)
        if (
            bank.names.ndim != 2
            or bank.names.shape[0] != k
            or bank.descriptions.ndim != 2
            or bank.descriptions.shape[1] != bank.names.shape[1]
            or bank.offsets.shape != (k + 1,)
            or bank.offsets[0] != 0
            or bank.offsets[-1] != m
            or (np.diff(bank.offsets) < 0).any()
        ):
            raise fail(
                path,
                f"inconsistent text bank ({k} keys, names {list(bank.names.shape)}, "
                f"descriptions {list(bank.descriptions.shape)}, offsets "
                f"{list(bank.offsets.shape)}); run --mode=embed again",
            )
        return bank


_ARRAYS = ("keys", "names", "descriptions", "offsets")
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # a zip member's local file header, 30 bytes


def _member(path: str, archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """The array `name` of an .npz: memory-mapped when stored uncompressed, else read.

    Raises:
      KeyError: no such array. ValueError: the member is not a whole .npy file.
    """
    try:
        info = archive.getinfo(name + ".npy")
    except KeyError:
        raise KeyError(name) from None
    if info.compress_type != zipfile.ZIP_STORED:  # np.savez_compressed: no bytes to map
        logging.info("%s: %s is compressed; reading it whole", path, name)
        with archive.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise ValueError(f"{name}: no zip entry at offset {info.header_offset}")
        name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        f.seek(start)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"{name}: .npy format version {version} is not supported")
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"{name}: holds Python objects")
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offset - start + size != info.file_size:
        raise ValueError(
            f"{name}: {info.file_size} bytes stored, its header says {offset - start + size}"
        )
    if os.path.getsize(path) < offset + size:
        raise ValueError(f"{name}: the file ends inside the array (truncated)")
    if size == 0:
        return np.zeros(shape, dtype)
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)


def _float32(array: np.ndarray, path: str, name: str) -> np.ndarray:
    """float32 vectors as they are (a memory map stays one); other dtypes are converted."""
    if array.dtype == np.float32:
        return array
    logging.info("%s: %s is %s; converting it to float32 in memory", path, name, array.dtype)
    return np.asarray(array, np.float32)


def bank_path(workdir: str) -> str:
    """WORKDIR/text_bank.npz."""
    return os.path.join(workdir, BANK_FILE)


def load(workdir: str) -> TextBank:
    """The run's bank, as the embed stage wrote it (one error line when it cannot be read)."""
    return TextBank.load(bank_path(workdir))


def encode(texts, config) -> np.ndarray:
    """Frozen text encoder over `texts` with config.text's settings, through the cache."""
    from wat_jax.text import encoder

    t = config.text
    return encoder.embed_texts(
        list(texts),
        encoder=t.encoder,
        pooling=t.pooling,
        normalize=t.normalize,
        max_length=t.max_length or None,
        batch_size=t.batch_size,
        cache_dir=t.cache_dir or None,
        dtype=t.dtype,
    )


def build(keys, config, workdir: str) -> TextBank:
    """Embeds each key's phrase and its stored descriptions; writes DIR/text_bank.npz.

    Args:
      keys: the DescribeKey list (key id and phrase), in bank order.
      config: the run's config (describe.backend, text.*).
      workdir: the run directory (descriptions.jsonl in, text_bank.npz out).

    With describe.backend == "names" there are no descriptions: every key's
    only text is its phrase, which is the paper's names-only ablation.
    """
    from wat_jax.text import describe

    by_key = {}
    if config.describe.backend != "names":
        store = os.path.join(workdir, "descriptions.jsonl")
        if not os.path.exists(store):
            raise fail(store, "no descriptions; run --mode=describe first")
        by_key = describe.load_descriptions(store)
        missing = [k.key for k in keys if not by_key.get(k.key)]
        if missing:
            raise fail(
                store,
                f"{len(missing)} keys have no descriptions, e.g. {missing[0]!r}; "
                "run --mode=describe again",
            )
    path = bank_path(workdir)
    # The bank is written whole at the end: a Ctrl-C or a full disk before then keeps
    # the old file, which the one line says (fileio.atomic_write says the same when it fails).
    kept = (
        f"the old {BANK_FILE} is unchanged"
        if os.path.exists(path)
        else f"no {BANK_FILE} was written"
    )
    with errors.keeping(kept):
        return _build(keys, config, by_key, path)


def _build(keys, config, by_key: dict, path: str) -> TextBank:
    """`build` after its checks: encode the phrases and descriptions, save at `path`."""
    phrases = [k.phrase for k in keys]
    texts, offsets = [], [0]
    for k in keys:
        texts.extend(by_key.get(k.key, []))
        offsets.append(len(texts))
    logging.info(
        "embedding %d phrases and %d descriptions with %s",
        len(phrases),
        len(texts),
        config.text.encoder,
    )
    names = encode(phrases, config)
    descriptions = encode(texts, config) if texts else np.zeros((0, names.shape[1]), np.float32)
    bank = TextBank(
        [k.key for k in keys],
        np.asarray(names, np.float32),  # no copy: encode returns float32
        np.asarray(descriptions, np.float32),
        np.asarray(offsets, np.int64),
    )
    bank.save(path)
    return bank


def random_bank(num_keys: int, dim: int, per_key: int, seed: int) -> TextBank:
    """A generated bank (the toy task's): one random unit vector per key ("class_<i>") and
    `per_key` noisy descriptions around it."""
    rng = np.random.default_rng([seed, 7])
    names = rng.standard_normal((num_keys, dim)).astype(np.float32)
    names /= np.linalg.norm(names, axis=1, keepdims=True)
    desc = names[np.repeat(np.arange(num_keys), per_key)] + 0.3 * rng.standard_normal(
        (num_keys * per_key, dim)
    )
    return TextBank(
        [f"class_{i}" for i in range(num_keys)],
        names,
        desc.astype(np.float32),
        np.arange(num_keys + 1) * per_key,
    )
