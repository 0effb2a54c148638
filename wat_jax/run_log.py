"""Run logging: metrics.jsonl (process 0 only) and progress lines with rate and ETA."""

import json
import os
import time

import jax
from absl import logging


class MetricWriter:
    """Appends one JSON object per logged step to WORKDIR/metrics.jsonl."""

    def __init__(self, workdir: str):
        self._file = None
        if jax.process_index() == 0:
            os.makedirs(workdir, exist_ok=True)
            self._file = open(os.path.join(workdir, "metrics.jsonl"), "a")

    def write(self, step: int, scalars: dict) -> None:
        if self._file is None:
            return
        row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        self._file.write(json.dumps(row, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Logs `name: done/total, rate, ETA`; rate measured since the last update."""

    def __init__(self, name: str, total: int, start: int = 0, unit: str = "steps"):
        self.name, self.total, self.unit = name, total, unit
        self._last_count, self._last_time = start, time.perf_counter()

    def update(self, count: int) -> float:
        """Records progress `count`; returns the rate (units per second)."""
        now = time.perf_counter()
        rate = (count - self._last_count) / max(now - self._last_time, 1e-9)
        self._last_count, self._last_time = count, now
        eta = (self.total - count) / rate if rate > 0 else float("inf")
        logging.info(
            "%s: %d/%d %s, %.2f %s/s, ETA %s",
            self.name,
            count,
            self.total,
            self.unit,
            rate,
            self.unit,
            format_seconds(eta) if rate > 0 else "?",
        )
        return rate


class _QuietLibraries:
    """Drops orbax's INFO lines (several per save) and its notes on read-only restores."""

    def filter(self, record) -> bool:
        if "/orbax/" not in record.pathname:
            return True
        return record.levelno > 30 or (
            record.levelno > 20 and "read only" not in str(record.msg).replace("_", " ").lower()
        )


def quiet_library_logs() -> None:
    logging.get_absl_handler().addFilter(_QuietLibraries())
