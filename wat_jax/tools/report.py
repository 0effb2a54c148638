"""The report's command line: one self-contained HTML page of a run
(wat_jax/reporting/report.py builds it; the eval stage writes it too).

    python -m wat_jax.tools.report --workdir=W [--out=W/report.html] [--examples=4] [--step=N]
"""

import os

from wat_jax.errors import exits_on_input_error, fail
from wat_jax.reporting.report import write_report


@exits_on_input_error
def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise fail("wat_jax.tools.report", f"unexpected arguments {argv[1:]}")
    if not FLAGS.workdir:
        raise fail("--workdir", "required: the run's workdir")
    if FLAGS.examples < 0:
        raise fail("--examples", f"must be 0 or more, got {FLAGS.examples}")
    from wat_jax.reporting.run_log import console_logs

    console_logs()
    path = write_report(
        FLAGS.workdir,
        FLAGS.out or None,
        FLAGS.step if FLAGS.step >= 0 else None,
        FLAGS.examples,
    )
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB)")


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("workdir", "", "The run's workdir (config.json, metrics, eval/).")
    flags.DEFINE_string("out", "", "The page to write; default WORKDIR/report.html.")
    flags.DEFINE_integer("step", -1, "The evaluated step to show; -1: the latest.")
    flags.DEFINE_integer(
        "examples", 4, "Val windows animated with the model's answer (0: none, no model load)."
    )


def run() -> None:
    """The command line (also the `wat-jax-report` console script)."""
    from absl import app

    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
