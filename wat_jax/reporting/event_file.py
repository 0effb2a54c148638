"""TensorBoard scalars without TensorFlow: a TFRecord file of `Event` protos.

`tensorboard --logdir=WORKDIR/tensorboard` reads what `EventFile` writes. The
format is small enough to write by hand, so plotting curves needs no package
beyond TensorBoard itself, and only on the machine that views them:
  record   uint64 length, uint32 masked CRC-32C of the length, the bytes,
           uint32 masked CRC-32C of the bytes (all little-endian)
  Event    1: wall_time (double), 2: step (int64), 3: file_version (string),
           5: summary (Summary), 7: session_log (SessionLog)
  Summary  1: value (repeated Value); Value 1: tag (string), 2: simple_value (float)
  SessionLog 1: status (enum; START = 1)

A resumed training opens its file with a SessionLog START event at the first
step it will log again: TensorBoard's reader (with its default
purge_orphaned_data) then drops every point at or after that step from earlier
files, so each step shows once after a resume.
"""

import os
import socket
import struct
import time


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):  # Castagnoli polynomial, reflected
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's CRC: rotated and offset, so CRCs of CRCs do not degenerate."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # int64 on the wire: negatives as two's complement
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


SESSION_START = 1  # tensorflow.SessionLog.SessionStatus.START


def encode_event(
    wall_time: float, step: int, scalars=None, file_version: str = "", session_status: int = 0
) -> bytes:
    """One serialized Event proto with `scalars` (tag -> float) as simple values, or a
    file version, or a SessionLog with `session_status`."""
    out = b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(int(step))
    if file_version:
        out += _field(3, file_version.encode())
    if session_status:
        out += _field(7, b"\x08" + _varint(session_status))
    if scalars:
        values = b"".join(
            _field(1, _field(1, tag.encode()) + b"\x15" + struct.pack("<f", float(value)))
            for tag, value in scalars.items()
        )
        out += _field(5, values)
    return out


def record(data: bytes) -> bytes:
    """`data` framed as one TFRecord."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


class EventFile:
    """Appends scalar events to DIR/events.out.tfevents.<time>.<host>.<pid>, flushed per write."""

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(directory, name)
        self._file = open(self.path, "ab")
        self._file.write(record(encode_event(now, 0, file_version="brain.Event:2")))
        self._file.flush()

    def restart(self, step: int) -> None:
        """Marks a restart at `step`: TensorBoard forgets earlier files' points at step >= it."""
        self._file.write(record(encode_event(time.time(), step, session_status=SESSION_START)))
        self._file.flush()

    def write(self, step: int, scalars: dict) -> None:
        finite = {k: float(v) for k, v in scalars.items() if v is not None}
        self._file.write(record(encode_event(time.time(), step, finite)))
        self._file.flush()

    def close(self) -> None:
        self._file.close()
