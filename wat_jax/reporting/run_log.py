"""Run logging: metrics.jsonl and TensorBoard scalars (process 0 only), the progress
line with rate and ETA, and how the command lines' log lines look on the console."""

import json
import logging as std_logging
import os
import time

import jax
from absl import logging

from wat_jax.reporting import event_file


class MetricWriter:
    """Appends one JSON object per logged step to WORKDIR/metrics.jsonl, and the same
    scalars to WORKDIR/tensorboard/ (`tensorboard --logdir=WORKDIR/tensorboard`).

    A training passes `resume_step`, the step its state starts from (0 for a fresh
    start). When earlier sessions already logged, the writer marks the resume:
    metrics.jsonl gets a line {"step": resume_step, "resumed": true} (readers merge
    the lines of a step, the later value winning), and the TensorBoard file starts
    with a SessionLog START at resume_step + 1, so TensorBoard drops the earlier
    sessions' points from there on and shows each step once.
    """

    def __init__(self, workdir: str, resume_step: int | None = None):
        self._file = self._events = None
        if jax.process_index() == 0:
            os.makedirs(workdir, exist_ok=True)
            path = os.path.join(workdir, "metrics.jsonl")
            logged_before = os.path.exists(path) and os.path.getsize(path) > 0
            self._file = open(path, "a")
            self._events = event_file.EventFile(os.path.join(workdir, "tensorboard"))
            if resume_step is not None and logged_before:
                self._file.write(
                    json.dumps({"step": int(resume_step), "resumed": True}, sort_keys=True) + "\n"
                )
                self._file.flush()
                self._events.restart(int(resume_step) + 1)
                logging.info("metrics: resuming at step %d", int(resume_step))

    def write(self, step: int, scalars: dict) -> None:
        if self._file is None:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        self._file.write(json.dumps({"step": int(step), **scalars}, sort_keys=True) + "\n")
        self._file.flush()
        self._events.write(step, scalars)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._events.close()
            self._file = self._events = None


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """The one progress line of long work: `name: done/total unit, rate unit/s, ETA m:ss`.

    `update(count)` logs at most every `every_s` seconds (0: every call) unless
    `force`d; the rate is measured since the last line, so compile time and stalls
    age out of it.
    """

    def __init__(
        self, name: str, total: int, start: int = 0, unit: str = "steps", every_s: float = 0.0
    ):
        self.name, self.total, self.unit, self.every_s = name, total, unit, every_s
        self.count = start
        self._last_count, self._last_time = start, time.perf_counter()

    def update(self, count: int, force: bool = False, note: str = "") -> float | None:
        """Records that `count` of `total` are done.

        Args:
          count: units done so far.
          force: log even when less than `every_s` passed since the last line.
          note: appended to the line (e.g. a second rate).

        Returns:
          The rate in units per second when a line was logged, else None.
        """
        self.count = count
        now = time.perf_counter()
        if not force and now - self._last_time < self.every_s:
            return None
        rate = (count - self._last_count) / max(now - self._last_time, 1e-9)
        self._last_count, self._last_time = count, now
        eta = format_seconds((self.total - count) / rate) if rate > 0 else "?"
        logging.info(
            "%s: %d/%d %s, %.2f %s/s, ETA %s%s",
            self.name,
            count,
            self.total,
            self.unit,
            rate,
            self.unit,
            eta,
            f", {note}" if note else "",
        )
        return rate

    def add(self, count: int, force: bool = False) -> float | None:
        """Records `count` more units done; see `update`."""
        return self.update(self.count + count, force=force)

    def finish(self) -> None:
        """Logs the final count unless the last line already showed it."""
        if self.count != self._last_count:
            self.update(self.count, force=True)

    def restart(self, count: int) -> None:
        """Measures the next rate from `count`, now, without a line: training calls it
        after the first step, so compilation stays out of the rate and ETA."""
        self.count = self._last_count = count
        self._last_time = time.perf_counter()


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


# `WAT_JAX_LOG_PREFIX=absl` keeps absl's prefixes (as does an explicit --showprefixforinfo).
PREFIX_ENV = "WAT_JAX_LOG_PREFIX"


class ConsoleFormatter(std_logging.Formatter):
    """`I 20:11:50 message`: absl's level letter and the time, without its date,
    microseconds, thread id and source line (the tests and scripts that read a log
    by its level letter still can)."""

    def format(self, record) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"{record.levelname[:1]} {when} {super().format(record)}"


def console_logs() -> None:
    """A command line's log as a person reads it: orbax's chatter dropped, and each line
    `I 20:11:50 message` unless absl's prefixes are asked for (WAT_JAX_LOG_PREFIX=absl,
    or --showprefixforinfo / --noshowprefixforinfo given, which absl's formatter reads)."""
    from absl import flags

    quiet_library_logs()
    asked = os.environ.get(PREFIX_ENV, "").lower() in ("absl", "1", "true", "yes")
    names = flags.FLAGS  # FlagValues has no .get(); `in` asks whether absl defined it
    flag = names["showprefixforinfo"] if "showprefixforinfo" in names else None
    if asked or (flag is not None and flag.present):
        return
    logging.get_absl_handler().setFormatter(ConsoleFormatter())
