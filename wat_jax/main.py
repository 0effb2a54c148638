"""The one entry point: python -m wat_jax.main --config=... --workdir=... --mode=...

The only module that reads FLAGS. Hyperparameters live in the config file and
are overridden with --config.<key>=<value>; the config is locked, so a typo in
a key is an error, not a silently ignored flag.
"""

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from wat_jax.errors import InputError

MODES = ("prepare", "describe", "embed", "train", "eval", "all")

config_flags.DEFINE_config_file(
    "config", None, "Experiment config file[:variant].", lock_config=True
)
flags.DEFINE_string("workdir", None, "Directory for data, checkpoints, metrics and results.")
flags.DEFINE_enum("mode", "all", MODES, "Which stage to run; `all` runs them in order.")
flags.DEFINE_string("coordinator_address", "", "Multi-host: host:port of process 0.")
flags.DEFINE_integer("num_processes", 0, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", -1, "Multi-host: this process's index.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def _check_workdir(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write-probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"{workdir}: workdir is not writable ({e.strerror})") from e


def run(config, workdir: str, mode: str) -> None:
    """Runs one stage (or all) of `config`'s experiment in `workdir`."""
    # Imported here so --help and flag errors answer without starting JAX.
    import jax

    from wat_jax import evaluate, io, parallel, tasks, train

    parallel.maybe_initialize_distributed(
        FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
    )
    _check_workdir(workdir)
    task = tasks.get_task(config.task)
    if jax.process_index() == 0:
        io.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
    stages = ("prepare", "describe", "embed", "train", "eval") if mode == "all" else (mode,)
    for stage in stages:
        logging.info("stage %s: %s", stage, workdir)
        if stage == "train":
            train.train_and_evaluate(config, workdir, task)
        elif stage == "eval":
            result_path = evaluate.evaluate(config, workdir, task)
            if jax.process_index() == 0:
                print(evaluate.summary_table(result_path))
        else:
            getattr(task, stage)(config, workdir)


def parse_flags(argv):
    """absl's parser, with config errors (typos, bad values) as one line and exit 2."""
    try:
        rest = FLAGS(argv)
        FLAGS.config.get("task")  # a missing config file only raises when first read
        return rest
    except flags.Error as e:
        message = str(e)
        if "Traceback" in message:  # an exception inside get_config: keep its last line
            message = f"{message.split(':', 1)[0]}: {message.strip().splitlines()[-1]}"
    except OSError as e:
        message = f"--config: {str(e).splitlines()[0]}: {str(e).strip().splitlines()[-1].strip()}"
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        detail = e.args[0] if isinstance(e, KeyError) and e.args else e
        message = f"bad --config override: {detail}"
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from wat_jax.run_log import quiet_library_logs

    quiet_library_logs()
    try:
        run(FLAGS.config, FLAGS.workdir, FLAGS.mode)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
