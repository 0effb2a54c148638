"""The one progress line: throttling by time, rate since the last line, ETA, finish."""

from absl import logging

from wat_jax import run_log


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
