"""The one entry point: python -m wat_jax.main --config=... --workdir=... --mode=...

The only module that reads FLAGS. Hyperparameters live in the config file and
are overridden with --config.<key>=<value>; the config is locked, so a typo in
a key is an error, not a silently ignored flag. The checks, the header and the
one-line flag errors are wat_jax/cli.py's, which the tools share.
"""

import os
import re

from absl import app, flags, logging
from ml_collections import config_flags

from wat_jax import cli
from wat_jax.errors import exits_on_input_error

STAGES = ("prepare", "describe", "embed", "train", "eval")
WRITING_STAGES = ("prepare", "describe", "embed", "train")

config_flags.DEFINE_config_file(
    "config", None, "Experiment config file[:variant].", lock_config=True
)
flags.DEFINE_string("workdir", None, "Directory for data, checkpoints, metrics and results.")
flags.DEFINE_enum("mode", "all", STAGES + ("all",), "Which stage to run; `all` runs them in order.")
flags.DEFINE_string("coordinator_address", "", "Multi-host: host:port of process 0.")
flags.DEFINE_integer("num_processes", 0, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", -1, "Multi-host: this process's index.")
flags.DEFINE_bool(
    "break_lock",
    False,
    "Take the workdir lock even when a process on another host holds it (only once you "
    "know that process is gone; a dead holder on this host is taken over without it).",
)
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def run(config, workdir: str, mode: str, break_lock: bool = False) -> None:
    """Runs one stage (or all) of `config`'s experiment in `workdir`.

    Checks come first (config values, the workdir, batch sizes against the devices);
    writing stages then hold the workdir lock (wat_jax/lock.py), and are refused when
    the config changes a model or data key of the run (wat_jax/run_config.py); the
    prepared data is checked against the config before training or evaluation.
    """
    stages = STAGES if mode == "all" else (mode,)
    cli.check_values(config, stages)
    cli.check_workdir(workdir)
    # Imported here so --help and flag errors answer without starting JAX.
    import jax

    from wat_jax import lock, parallel, run_config, tasks

    parallel.maybe_initialize_distributed(
        FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
    )
    task = tasks.get_task(config.task)
    cli.check_resources(config, stages)
    if not any(s in WRITING_STAGES for s in stages):  # eval: reads the run, writes eval/
        # The run's own model and data keys: a command line that differs cannot change
        # what the checkpoints hold, only what is evaluated and how.
        _run_stages(run_config.config_for_eval(config, workdir), workdir, task, stages)
        return
    with lock.hold_for_processes(workdir, mode, break_lock):
        control = run_config.check_writer(config, workdir, mode)
        on_train = None
        if "train" in stages and jax.process_index() == 0:  # config.json: process 0 writes
            on_train = lambda: run_config.record_train(config, workdir, mode, control)
        _run_stages(config, workdir, task, stages, on_train)


def _run_stages(config, workdir: str, task, stages, on_train=None) -> None:
    import jax

    from wat_jax import errors, evaluate, train
    from wat_jax.data import checks

    for stage in stages:
        logging.info("stage %s: %s", stage, workdir)
        for line in cli.header(config, workdir, stage, FLAGS["config"]):
            logging.info("%s", line)
        if stage == "train":
            checks.check_prepared(config, workdir, task.layout(config))
            train.train_and_evaluate(
                config,
                workdir,
                task,
                evaluator=evaluate.periodic(config, workdir, task),
                on_start=on_train,  # config.json: written once the state is restored
            )
        elif stage == "eval":
            checks.check_prepared(config, workdir, task.layout(config), ("val",))
            result_path = evaluate.evaluate(config, workdir, task)
            if jax.process_index() == 0:
                print(evaluate.summary_table(result_path))
                _write_report(workdir, result_path)
        elif stage == "prepare":
            # prepare stages every split and swaps data/ in whole (prepared.Staging).
            with errors.keeping("the old data/ is unchanged"):
                task.prepare(config, workdir)
        else:
            getattr(task, stage)(config, workdir)


def _write_report(workdir: str, result_path: str) -> None:
    """W/report.html of the evaluation just written. Its example windows (a model load
    and a GIF each) are left to the report's command line (tools/report.py): the page shows
    the example GIF evaluation drew. The eval JSON stands if the page cannot be written."""
    from wat_jax.errors import InputError
    from wat_jax.reporting import report

    step = int(re.fullmatch(r"step_(\d+)\.json", os.path.basename(result_path)).group(1))
    try:
        path = report.write_report(workdir, step=step, examples=0)
    except (InputError, OSError) as e:
        logging.warning("report: not written (%s); the eval JSON is complete", e)
        return
    logging.info("report: wrote %s (open it in a browser)", path)


@exits_on_input_error
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from wat_jax.reporting.run_log import console_logs

    console_logs()
    run(FLAGS.config, FLAGS.workdir, FLAGS.mode, FLAGS.break_lock)


def command_line() -> None:
    """`python -m wat_jax.main`, and the `wat-jax` console script."""
    from wat_jax import heap

    # `python -m` did this in wat_jax/__init__.py; a console script's argv[0] is its own
    # path, so it happens here, still before numpy or jax start threads.
    heap.keep_freed_memory()
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    command_line()
