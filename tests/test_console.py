"""What a person sees on the console (issue 26): log lines without absl's thread and
source prefixes unless asked, training's compile note and first step's time, and the
report written at the end of eval. Read from the session's smoke run's own output."""

import logging
import os
import re
import subprocess
import sys

from wat_jax.reporting import run_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# absl's prefix: `I1206 20:11:50.123456 140234 train.py:280] `
ABSL_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+:\d+\] ")


def test_console_lines_are_level_time_message():
    record = logging.LogRecord("x", logging.WARNING, "/a/train.py", 280, "saved %d", (3,), None)
    line = run_log.ConsoleFormatter().format(record)
    assert re.fullmatch(r"W \d\d:\d\d:\d\d saved 3", line), line


def test_a_smoke_run_logs_plainly_says_compilation_and_writes_the_report(babel_smoke):
    lines = babel_smoke.proc.stderr.splitlines()
    assert not [ln for ln in lines if ABSL_PREFIX.match(ln)], lines[:5]
    logged = [ln for ln in lines if re.match(r"^[IWE] \d\d:\d\d:\d\d ", ln)]
    assert logged, babel_smoke.proc.stderr[-2000:]
    text = "\n".join(logged)
    note = text.index("train: initial compilation, this may take a few minutes")
    first = re.search(r"train: first step took \d+\.\d s \(compilation included\)", text)
    assert first and first.start() > note
    report = os.path.join(babel_smoke.workdir, "report.html")
    assert f"report: wrote {report}" in text and os.path.getsize(report) > 10_000


_PROGRAM = (
    "from absl import app, logging\n"
    "from wat_jax.reporting.run_log import console_logs\n"
    "def main(argv):\n"
    "    console_logs()\n"
    "    logging.info('hello %d', 3)\n"
    "app.run(main)\n"
)


def _log_of(*args, prefix=None):
    """The line `hello 3` of a small absl program that sets up its console as ours do."""
    env = {k: v for k, v in os.environ.items() if k != run_log.PREFIX_ENV}
    if prefix is not None:
        env[run_log.PREFIX_ENV] = prefix
    proc = subprocess.run(
        [sys.executable, "-c", _PROGRAM, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [ln for ln in proc.stderr.splitlines() if "hello 3" in ln]


def test_absl_prefixes_only_when_asked():
    (plain,) = _log_of()
    assert re.fullmatch(r"I \d\d:\d\d:\d\d hello 3", plain), plain
    (asked,) = _log_of(prefix="absl")
    assert ABSL_PREFIX.match(asked), asked
    (flag,) = _log_of("--showprefixforinfo")
    assert ABSL_PREFIX.match(flag), flag
