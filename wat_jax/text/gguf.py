"""A reader for GGUF model files (llama.cpp's format), with numpy dequantisation.

A GGUF file is a header (magic, version, counts), a list of typed metadata
key/values, a list of tensor infos (name, dims, ggml type, offset), then the
tensor data, aligned to `general.alignment` bytes. Tensors are memory-mapped and
dequantised to float32 on request. Supported ggml types: F32, F16, BF16, Q8_0,
Q4_0, Q4_1, Q4_K and Q6_K; anything else is a clear InputError naming the type.

GGUF lists dims fastest-first (ne0 = row length); `TensorInfo.shape` is the
numpy (row-major) shape, i.e. the dims reversed.
"""

import dataclasses
import os
import struct
from typing import Any

import numpy as np

from wat_jax.errors import InputError, fail
from wat_jax.fileio import atomic_write

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# ggml type id -> name, for messages about types we cannot read.
GGML_TYPE_NAMES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    9: "Q8_1",
    10: "Q2_K",
    11: "Q3_K",
    12: "Q4_K",
    13: "Q5_K",
    14: "Q6_K",
    15: "Q8_K",
    16: "IQ2_XXS",
    17: "IQ2_XS",
    18: "IQ3_XXS",
    19: "IQ1_S",
    20: "IQ4_NL",
    21: "IQ3_S",
    22: "IQ2_S",
    23: "IQ4_XS",
    24: "I8",
    25: "I16",
    26: "I32",
    27: "I64",
    28: "F64",
    29: "IQ1_M",
    30: "BF16",
    34: "TQ1_0",
    35: "TQ2_0",
    39: "MXFP4",
}
GGML_TYPES = {name: tid for tid, name in GGML_TYPE_NAMES.items()}

QK_K = 256
# Block layouts (numpy structured dtypes mirroring ggml's C structs) and values per block.
_BLOCKS = {
    GGML_TYPES["F32"]: (np.dtype("<f4"), 1),
    GGML_TYPES["F16"]: (np.dtype("<f2"), 1),
    GGML_TYPES["BF16"]: (np.dtype("<u2"), 1),
    GGML_TYPES["Q8_0"]: (np.dtype([("d", "<f2"), ("qs", "i1", 32)]), 32),
    GGML_TYPES["Q4_0"]: (np.dtype([("d", "<f2"), ("qs", "u1", 16)]), 32),
    GGML_TYPES["Q4_1"]: (np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)]), 32),
    GGML_TYPES["Q4_K"]: (
        np.dtype([("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", 12), ("qs", "u1", 128)]),
        QK_K,
    ),
    GGML_TYPES["Q6_K"]: (
        np.dtype([("ql", "u1", 128), ("qh", "u1", 64), ("scales", "i1", 16), ("d", "<f2")]),
        QK_K,
    ),
}

# Metadata value types: id -> struct format (None for string/array).
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in the file and how it is encoded."""

    name: str
    shape: tuple[int, ...]  # numpy order (GGUF dims reversed)
    ggml_type: int
    offset: int  # absolute byte offset in the file
    nbytes: int

    @property
    def type_name(self) -> str:
        return GGML_TYPE_NAMES.get(self.ggml_type, f"type {self.ggml_type}")


def tensor_nbytes(ggml_type: int, shape: tuple[int, ...], where: object = "gguf") -> int:
    """Bytes a tensor of `shape` takes in `ggml_type`; InputError if unsupported."""
    if ggml_type not in _BLOCKS:
        name = GGML_TYPE_NAMES.get(ggml_type, f"unknown type id {ggml_type}")
        supported = ", ".join(GGML_TYPE_NAMES[t] for t in _BLOCKS)
        raise fail(where, f"unsupported quantisation {name} (supported: {supported})")
    block, per_block = _BLOCKS[ggml_type]
    count = int(np.prod(shape, dtype=np.int64))
    if shape and shape[-1] % per_block:
        raise fail(
            where,
            f"row length {shape[-1]} is not a multiple of the block size "
            f"{per_block} of {GGML_TYPE_NAMES[ggml_type]}",
        )
    return count // per_block * block.itemsize


class GGUFFile:
    """A parsed GGUF file: `metadata` (dict), `tensors` (name -> TensorInfo)."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.isfile(path):
            raise fail(path, "no such GGUF file")
        self._data = np.memmap(path, dtype=np.uint8, mode="r")
        self._pos = 0
        self.metadata: dict[str, Any] = {}
        self.value_types: dict[str, tuple[int, int | None]] = {}  # key -> (type, element type)
        self.tensors: dict[str, TensorInfo] = {}
        self._parse()

    # -- low-level reads; every one checks the file is long enough ------------------------

    def _take(self, n: int, what: str) -> bytes:
        end = self._pos + n
        if end > self._data.size:
            raise fail(
                self.path,
                f"truncated file: {what} needs bytes {self._pos}..{end} "
                f"but the file has only {self._data.size} bytes",
            )
        out = self._data[self._pos : end].tobytes()
        self._pos = end
        return out

    def _scalar(self, fmt: str, what: str):
        return struct.unpack(fmt, self._take(struct.calcsize(fmt), what))[0]

    def _string(self, what: str) -> str:
        length = self._scalar("<Q", what)
        return self._take(length, what).decode("utf-8", errors="replace")

    def _value(self, vtype: int, what: str):
        if vtype in _SCALARS:
            return self._scalar(_SCALARS[vtype], what)
        if vtype == _STRING:
            return self._string(what)
        if vtype == _ARRAY:
            etype = self._scalar("<I", what)
            count = self._scalar("<Q", what)
            if etype in _SCALARS and etype != 7:
                # Numeric arrays (token scores, types) in one read rather than per element.
                dtype = np.dtype(_SCALARS[etype])
                raw = self._take(count * dtype.itemsize, what)
                return np.frombuffer(raw, dtype).tolist()
            return [self._value(etype, what) for _ in range(count)]
        raise fail(self.path, f"{what}: unknown metadata value type {vtype}")

    def _parse(self) -> None:
        if self._take(4, "magic") != MAGIC:
            raise fail(self.path, "not a GGUF file (magic bytes are not 'GGUF')")
        self.version = self._scalar("<I", "version")
        if self.version not in (2, 3):
            raise fail(self.path, f"unsupported GGUF version {self.version} (need 2 or 3)")
        n_tensors = self._scalar("<Q", "tensor count")
        n_kv = self._scalar("<Q", "metadata count")
        for i in range(n_kv):
            key = self._string(f"metadata key {i}")
            vtype = self._scalar("<I", f"metadata '{key}'")
            etype = None
            if vtype == _ARRAY:  # peek at the element type, kept for faithful rewriting
                etype = struct.unpack("<I", self._data[self._pos : self._pos + 4].tobytes())[0]
            self.value_types[key] = (vtype, etype)
            self.metadata[key] = self._value(vtype, f"metadata '{key}'")
        infos = []
        for i in range(n_tensors):
            name = self._string(f"tensor info {i}")
            n_dims = self._scalar("<I", f"tensor '{name}'")
            dims = [self._scalar("<Q", f"tensor '{name}'") for _ in range(n_dims)]
            ggml_type = self._scalar("<I", f"tensor '{name}'")
            offset = self._scalar("<Q", f"tensor '{name}'")
            infos.append((name, tuple(reversed(dims)), ggml_type, offset))
        alignment = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        data_start = -(-self._pos // alignment) * alignment
        for name, shape, ggml_type, offset in infos:
            # Size is only known for supported types; others fail when read, not here,
            # so that metadata of any GGUF can still be inspected.
            try:
                nbytes = tensor_nbytes(ggml_type, shape, f"{self.path}: tensor '{name}'")
            except InputError:
                nbytes = 0
            self.tensors[name] = TensorInfo(name, shape, ggml_type, data_start + offset, nbytes)
            end = data_start + offset + nbytes
            if end > self._data.size:
                raise fail(
                    self.path,
                    f"truncated file: tensor '{name}' needs bytes up to "
                    f"{end} but the file has only {self._data.size} bytes",
                )

    # -- tensors -----------------------------------------------------------------------------

    def tensor(self, name: str) -> np.ndarray:
        """Dequantises tensor `name` to a float32 array of its numpy shape."""
        if name not in self.tensors:
            raise fail(self.path, f"missing tensor '{name}'")
        info = self.tensors[name]
        where = f"{self.path}: tensor '{name}'"
        nbytes = tensor_nbytes(info.ggml_type, info.shape, where)
        raw = self._data[info.offset : info.offset + nbytes]
        return dequantize(raw, info.ggml_type, info.shape, where)


def read_gguf(path: str) -> GGUFFile:
    """Parses the header, metadata and tensor infos of a GGUF file (data stays mapped)."""
    return GGUFFile(path)


def dequantize(
    raw: np.ndarray, ggml_type: int, shape: tuple[int, ...], where: object = "gguf"
) -> np.ndarray:
    """Decodes ggml-encoded bytes to float32.

    Args:
      raw: uint8 array holding exactly the tensor's encoded bytes.
      ggml_type: ggml type id (see GGML_TYPES).
      shape: numpy shape of the decoded tensor.
      where: names the tensor in error messages.

    Returns:
      float32 array of `shape`.
    """
    nbytes = tensor_nbytes(ggml_type, shape, where)
    if raw.size != nbytes:
        raise fail(
            where, f"expected {nbytes} bytes of {GGML_TYPE_NAMES[ggml_type]}, got {raw.size}"
        )
    block_dtype, _ = _BLOCKS[ggml_type]
    blocks = np.frombuffer(raw, dtype=block_dtype)
    name = GGML_TYPE_NAMES[ggml_type]
    if name in ("F32", "F16"):
        out = blocks.astype(np.float32)
    elif name == "BF16":
        out = (blocks.astype(np.uint32) << 16).view(np.float32)
    else:
        out = _DECODERS[name](blocks)
    return out.reshape(shape)


def _f16(field: np.ndarray) -> np.ndarray:
    return field.astype(np.float32)[:, None]  # [N, 1]


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """[N, 16] packed bytes -> [N, 32]: low nibbles are values 0..15, high are 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _q8_0(b):
    return _f16(b["d"]) * b["qs"].astype(np.float32)


def _q4_0(b):
    return _f16(b["d"]) * (_nibbles(b["qs"]).astype(np.float32) - 8.0)


def _q4_1(b):
    return _f16(b["d"]) * _nibbles(b["qs"]).astype(np.float32) + _f16(b["m"])


def _q4_k(b):
    # 8 sub-blocks of 32 values, each with a 6-bit scale and 6-bit min packed in 12 bytes.
    s = b["scales"].astype(np.uint8)  # [N, 12]
    sc = np.empty((len(b), 8), np.uint8)
    mn = np.empty((len(b), 8), np.uint8)
    sc[:, :4] = s[:, 0:4] & 63
    mn[:, :4] = s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    scale = _f16(b["d"]) * sc.astype(np.float32)  # [N, 8]
    offset = _f16(b["dmin"]) * mn.astype(np.float32)
    # 4 chunks of 32 bytes: low nibbles -> sub-block 2c, high nibbles -> sub-block 2c+1.
    qs = b["qs"].reshape(-1, 4, 32)
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32)
    return (scale[:, :, None] * q - offset[:, :, None]).reshape(-1, QK_K)


def _q6_k(b):
    # Two halves of 128 values; each value = 4 low bits from ql + 2 high bits from qh, minus 32.
    ql = b["ql"].reshape(-1, 2, 64)
    qh = b["qh"].reshape(-1, 2, 32)
    low = np.stack(
        [ql[:, :, :32] & 0x0F, ql[:, :, 32:] & 0x0F, ql[:, :, :32] >> 4, ql[:, :, 32:] >> 4], axis=2
    )  # [N, 2, 4, 32]
    high = np.stack([(qh >> shift) & 3 for shift in (0, 2, 4, 6)], axis=2)  # [N, 2, 4, 32]
    q = (low | (high << 4)).astype(np.float32) - 32.0
    # 16 scales, one per 16 values, in the same order the values are laid out.
    scales = b["scales"].astype(np.float32).reshape(-1, 2, 4, 2, 1)
    values = q.reshape(-1, 2, 4, 2, 16) * scales * _f16(b["d"])[:, :, None, None, None]
    return values.reshape(-1, QK_K)


_DECODERS = {"Q8_0": _q8_0, "Q4_0": _q4_0, "Q4_1": _q4_1, "Q4_K": _q4_k, "Q6_K": _q6_k}


def _infer_type(value) -> int:
    if isinstance(value, bool):
        return 7
    if isinstance(value, int):
        return 4 if 0 <= value < 2**32 else 11
    if isinstance(value, float):
        return 6
    if isinstance(value, str):
        return _STRING
    if isinstance(value, (list, tuple)):
        return _ARRAY
    raise TypeError(f"cannot store {type(value).__name__} in GGUF metadata")


def _encode_value(value, vtype: int, etype: int | None) -> bytes:
    if vtype in _SCALARS:
        return struct.pack(_SCALARS[vtype], value)
    if vtype == _STRING:
        raw = value.encode("utf-8")
        return struct.pack("<Q", len(raw)) + raw
    etype = etype if etype is not None else (_infer_type(value[0]) if value else 4)
    if etype in _SCALARS and etype != 7:
        body = np.asarray(value, dtype=np.dtype(_SCALARS[etype])).tobytes()
    else:
        body = b"".join(_encode_value(v, etype, None) for v in value)
    return struct.pack("<IQ", etype, len(value)) + body


def write_gguf(
    path: str,
    metadata: dict,
    tensors: dict,
    value_types: dict | None = None,
    alignment: int = DEFAULT_ALIGNMENT,
) -> None:
    """Writes a GGUF v3 file (for tests and for re-encoding a model's weights).

    Args:
      path: output file.
      metadata: key -> value (bool, int, float, str or a list of them).
      tensors: name -> float32/float16 array, or (ggml_type, numpy shape, raw bytes)
        for data already encoded.
      value_types: key -> (GGUF value type, element type) to keep a read file's exact
        types (`GGUFFile.value_types`); others are inferred (ints as uint32).
      alignment: tensor data alignment (general.alignment, when not the default).
    """
    value_types = value_types or {}
    header = [MAGIC, struct.pack("<IQQ", 3, len(tensors), len(metadata))]
    for key, value in metadata.items():
        vtype, etype = value_types.get(key, (_infer_type(value), None))
        header += [
            _encode_value(key, _STRING, None),
            struct.pack("<I", vtype),
            _encode_value(value, vtype, etype),
        ]
    blobs, offset = [], 0
    for name, tensor in tensors.items():
        if isinstance(tensor, tuple):
            ggml_type, shape, raw = tensor
        else:
            array = np.ascontiguousarray(tensor)
            ggml_type = GGML_TYPES["F16"] if array.dtype == np.float16 else GGML_TYPES["F32"]
            shape, raw = (
                array.shape,
                array.astype(
                    np.float16 if ggml_type == GGML_TYPES["F16"] else np.float32
                ).tobytes(),
            )
        dims = list(reversed(shape))
        header += [
            _encode_value(name, _STRING, None),
            struct.pack("<I", len(dims)),
            struct.pack(f"<{len(dims)}Q", *dims),
            struct.pack("<IQ", ggml_type, offset),
        ]
        padded = raw + b"\0" * (-len(raw) % alignment)
        blobs.append(padded)
        offset += len(padded)
    head = b"".join(header)

    def write(f):
        f.write(head + b"\0" * (-len(head) % alignment))
        for blob in blobs:
            f.write(blob)

    atomic_write(path, write)
