"""Run logging: the one progress line (throttling, rate since the last line, ETA,
finish) and the TensorBoard event file, decoded here by an independent parser."""

import struct

import pytest
from absl import logging

from wat_jax.reporting import event_file, run_log


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _progress_lines(monkeypatch):
    clock, lines = _Clock(), []
    monkeypatch.setattr(run_log.time, "perf_counter", clock)
    monkeypatch.setattr(logging, "info", lambda fmt, *args: lines.append(fmt % args))
    return clock, lines


def test_throttled_lines_carry_rate_since_last_line_and_eta(monkeypatch):
    clock, lines = _progress_lines(monkeypatch)
    progress = run_log.Progress("embed", 100, unit="texts", every_s=10.0)
    clock.now += 5
    assert progress.update(10) is None and not lines  # under 10 s: no line
    clock.now += 5
    assert progress.update(20) == 2.0  # 20 texts in 10 s
    assert lines == ["embed: 20/100 texts, 2.00 texts/s, ETA 0:40"]
    clock.now += 20
    progress.add(60)  # 60 more in the 20 s since the line: 3/s, 20 left
    assert lines[-1] == "embed: 80/100 texts, 3.00 texts/s, ETA 0:06"


def test_finish_logs_the_last_count_once(monkeypatch):
    clock, lines = _progress_lines(monkeypatch)
    progress = run_log.Progress("describe", 4, unit="texts", every_s=10.0)
    clock.now += 1
    progress.add(4)
    progress.finish()
    assert lines == ["describe: 4/4 texts, 4.00 texts/s, ETA 0:00"]
    progress.finish()  # already shown: no second line
    assert len(lines) == 1


def test_unthrottled_lines_and_notes(monkeypatch):
    clock, lines = _progress_lines(monkeypatch)
    progress = run_log.Progress("train", 10, start=2)
    clock.now += 2
    assert progress.update(6, note="1.5 tokens/s overall") == 2.0
    assert lines == ["train: 6/10 steps, 2.00 steps/s, ETA 0:02, 1.5 tokens/s overall"]
    progress.update(6)  # no time passed and no progress: the rate is 0, the ETA unknown
    assert lines[-1] == "train: 6/10 steps, 0.00 steps/s, ETA ?"


def test_crc32c_check_value():
    # The CRC-32C (Castagnoli) check value of the ASCII digits 1-9.
    assert event_file.crc32c(b"123456789") == 0xE3069283


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> list:
    """(field number, value) pairs of a protobuf message: an independent decoder."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 1:
            value, pos = struct.unpack("<d", data[pos : pos + 8])[0], pos + 8
        elif wire == 5:
            value, pos = struct.unpack("<f", data[pos : pos + 4])[0], pos + 4
        else:
            assert wire == 2, wire
            size, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        out.append((number, value))
    return out


def _records(path: str) -> list[bytes]:
    data, out, pos = open(path, "rb").read(), [], 0
    while pos < len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[pos + 8 : pos + 12])[0] == event_file.masked_crc32c(header)
        body = data[pos + 12 : pos + 12 + length]
        crc = data[pos + 12 + length : pos + 16 + length]
        assert struct.unpack("<I", crc)[0] == event_file.masked_crc32c(body)
        out.append(body)
        pos += 16 + length
    assert pos == len(data)
    return out


def test_event_file_holds_framed_scalar_events(tmp_path):
    events = event_file.EventFile(str(tmp_path / "tb"))
    events.write(7, {"train/loss": 0.25, "eval/top1": 0.9})
    events.write(2**40, {"train/loss": -1.5})
    events.close()
    header, first, second = [dict(_fields(r)) for r in _records(events.path)]
    assert header[3] == b"brain.Event:2" and header[2] == 0
    assert first[2] == 7 and second[2] == 2**40 and first[1] > 1.6e9  # step, wall time
    values = [dict(_fields(v)) for n, v in _fields(first[5]) if n == 1]
    assert [(v[1], v[2]) for v in values] == [
        (b"train/loss", 0.25),
        (b"eval/top1", pytest.approx(0.9, rel=1e-7)),  # float32 on the wire
    ]
    (value,) = [dict(_fields(v)) for n, v in _fields(second[5]) if n == 1]
    assert value == {1: b"train/loss", 2: -1.5}


def _points(directory) -> list[tuple[int, str]]:
    """(step, tag) of every scalar TensorBoard shows: its purge rule applied to our files
    in name order (a SessionLog START at step s drops earlier points at step >= s)."""
    import os

    shown = []
    for name in sorted(os.listdir(directory)):
        for body in _records(os.path.join(directory, name)):
            event = dict(_fields(body))
            if 7 in event and dict(_fields(event[7])).get(1) == event_file.SESSION_START:
                shown = [(s, t) for s, t in shown if s < event[2]]
            if 5 in event:
                tags = [dict(_fields(v))[1].decode() for n, v in _fields(event[5]) if n == 1]
                shown += [(event[2], t) for t in tags]
    return shown


def test_resumed_writer_marks_the_resume_and_each_step_shows_once(tmp_path, monkeypatch):
    import json

    first = run_log.MetricWriter(str(tmp_path), resume_step=0)
    for step in range(1, 13):  # logged to 12, checkpointed at 6, then killed
        first.write(step, {"train/loss": 1.0 / step})
    first.close()
    times = iter([2e9, 2e9 + 1])  # the second file is named later, as in a real resume
    monkeypatch.setattr(event_file.time, "time", lambda: next(times, 2e9 + 2))
    second = run_log.MetricWriter(str(tmp_path), resume_step=6)
    for step in range(7, 13):
        second.write(step, {"train/loss": 2.0 / step})
    second.close()
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert {"step": 6, "resumed": True} in lines and lines.index({"step": 6, "resumed": True}) == 12
    points = _points(tmp_path / "tensorboard")
    assert sorted(points) == [(s, "train/loss") for s in range(1, 13)]  # 12 points, not 18
    # A fresh run writes no marker.
    fresh = tmp_path / "fresh"
    run_log.MetricWriter(str(fresh), resume_step=0).close()
    assert (fresh / "metrics.jsonl").read_text() == ""


def test_tensorboard_reader_purges_at_the_start_event(tmp_path, monkeypatch):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    times = iter([1e9, 1e9 + 5, 1e9 + 9])
    monkeypatch.setattr(event_file.time, "time", lambda: next(times, 2e9))
    first = run_log.MetricWriter(str(tmp_path), resume_step=0)
    for step in range(1, 13):
        first.write(step, {"train/loss": float(step)})
    first.close()
    monkeypatch.setattr(event_file.time, "time", lambda: 2e9)
    second = run_log.MetricWriter(str(tmp_path), resume_step=6)
    for step in range(7, 13):
        second.write(step, {"train/loss": 100.0 + step})
    second.close()
    acc = accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    events = acc.Scalars("train/loss")
    assert [e.step for e in events] == list(range(1, 13))
    assert [e.value for e in events] == [float(s) for s in range(1, 7)] + [
        100.0 + s for s in range(7, 13)
    ]
