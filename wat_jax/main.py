"""The one entry point: python -m wat_jax.main --config=... --workdir=... --mode=...

The only module that reads FLAGS. Hyperparameters live in the config file and
are overridden with --config.<key>=<value>; the config is locked, so a typo in
a key is an error, not a silently ignored flag.
"""

import ast
import errno
import math
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from wat_jax.errors import InputError, exits_on_input_error

MODES = ("prepare", "describe", "embed", "train", "eval", "all")

config_flags.DEFINE_config_file(
    "config", None, "Experiment config file[:variant].", lock_config=True
)
flags.DEFINE_string("workdir", None, "Directory for data, checkpoints, metrics and results.")
flags.DEFINE_enum("mode", "all", MODES, "Which stage to run; `all` runs them in order.")
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


WRITING_STAGES = ("prepare", "describe", "embed", "train")


def _check_workdir(workdir: str) -> None:
    """The workdir exists (or is created) and is writable; one line when it cannot be."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise InputError(f"{workdir}: workdir is a file, not a directory")
    parent = os.path.dirname(os.path.abspath(workdir))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise InputError(
            f"{workdir}: workdir is not writable ({parent} is a file, not a directory)"
        )
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write-probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno == errno.ENOTDIR:
            reason = "a part of the path is a file, not a directory"
        raise InputError(f"{workdir}: workdir is not writable ({reason})") from e


def _check_values(config, stages) -> None:
    """Config values that would fail late or with a misleading message, checked first."""

    def at_least(key: str, value, low: int, what: str) -> None:
        if not isinstance(value, int) or value < low:
            raise InputError(f"config.{key}={value}: {what}")

    at_least("seed", config.seed, 0, "must be 0 or more (it seeds numpy's generators)")
    at_least("batch_size", config.batch_size, 1, "must be a positive number of windows per step")
    at_least("eval.batch_size", config.eval.batch_size, 0, "must be 0 (batch_size) or positive")
    at_least("num_devices", config.num_devices, 0, "must be 0 (every device) or more")
    _check_model(config)
    _check_optim(config.optim)
    if "train" in stages:
        at_least("total_steps", config.total_steps, 1, "must be at least 1")
        at_least("log_every_steps", config.log_every_steps, 1, "must be at least 1")
        at_least("checkpoint_every_steps", config.checkpoint_every_steps, 0, "must be 0 or more")
        at_least("keep_checkpoints", config.keep_checkpoints, 1, "must be at least 1")
        at_least("eval.every_steps", config.eval.every_steps, 0, "must be 0 or more")
        _check_loss(config.loss)


def _check_model(config) -> None:
    """Every model key, so a bad one fails here and not in flax after prepare/describe/embed."""
    m = config.model

    def positive(key: str, what: str) -> None:
        value = m[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"config.model.{key}={value!r}: must be a positive {what}")

    positive("width", "number of features per frame")
    positive("layers", "number of transformer layers")
    positive("heads", "number of attention heads")
    positive("mlp_dim", "feed-forward width")
    positive("max_len", "number of frames (the position table's length)")
    if isinstance(m.embed_dim, bool) or not isinstance(m.embed_dim, int) or m.embed_dim < 0:
        raise InputError(
            f"config.model.embed_dim={m.embed_dim!r}: must be 0 (the text encoder's "
            "dimension) or a positive size"
        )
    if m.width % m.heads:
        raise InputError(
            f"config.model.heads={m.heads}: must divide config.model.width={m.width} "
            "(each head gets width / heads features)"
        )
    if not 0.0 <= m.dropout < 1.0:
        raise InputError(f"config.model.dropout={m.dropout!r}: must be in [0, 1)")
    if not (m.norm_eps > 0.0 and math.isfinite(m.norm_eps)):
        raise InputError(f"config.model.norm_eps={m.norm_eps!r}: must be a positive number")
    if not isinstance(m.pre_norm, bool):
        raise InputError(f"config.model.pre_norm={m.pre_norm!r}: must be True or False")
    # The names are declared beside the code that reads them (which imports flax).
    from wat_jax.models.skeleton import POOLINGS, POSITIONS, TEXT_PROJECTIONS
    from wat_jax.state import MODEL_DTYPES

    _one_of("model.text_projection", m.text_projection, TEXT_PROJECTIONS)
    _one_of("model.dtype", m.dtype, tuple(MODEL_DTYPES))
    _one_of("model.positions", m.positions, POSITIONS)
    _one_of("model.pooling", m.pooling, POOLINGS)
    from wat_jax import tasks

    _one_of("task", config.task, tasks.TASKS)
    layout = tasks.get_task(config.task).layout(config)
    if layout is not None and layout["frames"] > m.max_len:
        raise InputError(
            f"config.model.max_len={m.max_len}: shorter than the {layout['frames']}-frame "
            "windows (config.data.window_frames); the position table needs one row a frame"
        )


def _check_optim(optim) -> None:
    if not (optim.grad_clip >= 0.0 and math.isfinite(optim.grad_clip)):
        raise InputError(
            f"config.optim.grad_clip={optim.grad_clip!r}: must be 0 (no clipping) or a "
            "positive global norm"
        )
    from wat_jax.state import DECAY_MODES

    _one_of("optim.decay", optim.decay, DECAY_MODES)


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise InputError(
            f"config.{key}={value!r}: must be one of {', '.join(repr(a) for a in allowed)}"
        )


def _check_loss(loss) -> None:
    """An unknown triplet mining is refused; one the named loss does not read is said."""
    from wat_jax.losses import MINING_MODES

    if loss.mining not in MINING_MODES:
        raise InputError(f"config.loss.mining={loss.mining!r}: must be one of {MINING_MODES}")
    if loss.mining != "all" and loss.name != "triplet":
        logging.warning(
            "config.loss.mining=%r shapes loss.name='triplet' only; this run trains with "
            "loss.name=%r, which has no negatives to mine (add --config.loss.name=triplet)",
            loss.mining,
            loss.name,
        )


def _check_devices(config, stages) -> None:
    """The batch sizes divide over the devices, before any stage runs."""
    from wat_jax import parallel

    mesh = parallel.make_mesh(config.num_devices or None)
    if "train" in stages:
        parallel.check_batch_size(config.batch_size, mesh)
    if "eval" in stages:
        key = "eval.batch_size" if config.eval.batch_size else "batch_size"
        parallel.check_batch_size(config.eval.batch_size or config.batch_size, mesh, key)


def run(config, workdir: str, mode: str, break_lock: bool = False) -> None:
    """Runs one stage (or all) of `config`'s experiment in `workdir`.

    Checks come first (config values, the workdir, batch sizes against the devices);
    writing stages then hold the workdir lock (wat_jax/lock.py), and are refused when
    the config changes a model or data key of the run (wat_jax/run_config.py); the
    prepared data is checked against the config before training or evaluation.
    """
    stages = ("prepare", "describe", "embed", "train", "eval") if mode == "all" else (mode,)
    _check_values(config, stages)
    _check_workdir(workdir)
    # Imported here so --help and flag errors answer without starting JAX.
    import jax

    from wat_jax import lock, parallel, run_config, tasks

    parallel.maybe_initialize_distributed(
        FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
    )
    task = tasks.get_task(config.task)
    if "train" in stages or "eval" in stages:
        _check_devices(config, stages)
    if "train" in stages:  # a bad source folder is refused before anything is written
        from wat_jax import checkpointing

        for key in ("resume_from", "init_from"):
            if config[key]:
                checkpointing.parse_source(config[key], f"config.{key}")
    if not any(s in WRITING_STAGES for s in stages):  # eval: reads the run, writes eval/
        _run_stages(run_config.config_for_eval(config, workdir), workdir, task, stages)
        return
    with lock.hold_for_processes(workdir, mode, break_lock):
        control = run_config.check_writer(config, workdir, mode)
        if "train" in stages and jax.process_index() == 0:
            on_train = lambda: run_config.record_train(config, workdir, mode, control)
        else:
            on_train = None
        _run_stages(config, workdir, task, stages, on_train)


def _run_stages(config, workdir: str, task, stages, on_train=None) -> None:
    import jax

    from wat_jax import evaluate, train
    from wat_jax.data import checks

    for stage in stages:
        logging.info("stage %s: %s", stage, workdir)
        for line in _header(config, workdir, stage):
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
        elif stage == "prepare":
            from wat_jax import errors

            # prepare stages every split and swaps data/ in whole (prepared.Staging).
            with errors.keeping("the old data/ is unchanged"):
                task.prepare(config, workdir)
        else:
            getattr(task, stage)(config, workdir)


def _header(config, workdir: str, stage: str) -> list[str]:
    """What a log needs to say how this stage ran: config, overrides, runtime, workdir."""
    from wat_jax import parallel

    try:
        source = config_flags.get_config_filename(FLAGS["config"])
        overrides = config_flags.get_override_values(FLAGS["config"])
    except (KeyError, AttributeError):  # run() called from Python, not the command line
        source, overrides = "(in-process config)", {}
    flat = ", ".join(f"{k}={v!r}" for k, v in sorted(_flatten(overrides).items())) or "none"
    return [
        f"  config {source} (task {config.task}); overrides: {flat}",
        f"  {parallel.runtime_summary()}; stage {stage}; workdir {os.path.abspath(workdir)}",
    ]


def _flatten(tree, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _override_message(error: Exception, argv) -> str:
    """ml_collections' error for a bad override as one readable line (an unknown key's
    KeyError arrives repr()-wrapped once per config level, with a literal newline)."""
    detail = error
    while isinstance(detail, BaseException):  # AttributeError(KeyError(...)) for nested keys
        detail = detail.args[0] if detail.args else str(detail)
    for _ in range(4):
        if isinstance(detail, str) and len(detail) > 1 and detail[0] == detail[-1] in "'\"":
            try:
                unwrapped = ast.literal_eval(detail)
            except (ValueError, SyntaxError):
                break
            if not isinstance(unwrapped, str) or unwrapped.strip("'\"") == detail.strip("'\""):
                break
            detail = unwrapped
        else:
            break
    lines = [line.strip() for line in str(detail).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    name, _, rest = first.partition(" ")
    hint = " ".join([rest] + lines[1:]).strip()
    quoted = len(name) > 2 and name[0] == name[-1] and name[0] in "'\""
    if not quoted or (hint and not hint.startswith("Did you mean")):
        return "bad --config override: " + " ".join(lines)
    name = name[1:-1]
    flag = next(
        (
            a.split("=", 1)[0]
            for a in argv[1:]
            if a.startswith("--config.") and name in a.split("=", 1)[0].split(".")
        ),
        "--config",
    )
    message = f"{flag}: unknown config key '{name}'"
    return message + (f"; {hint[0].lower()}{hint[1:]}" if hint else "")


def parse_flags(argv):
    """absl's parser, with config errors (typos, bad values) as one line and exit 2."""
    try:
        rest = FLAGS(argv)
        FLAGS.config.task  # a missing config file only raises when first read
        return rest
    except flags.Error as e:
        message = str(e)
        if "Traceback" in message:  # an exception inside get_config: keep its last line
            message = f"{message.split(':', 1)[0]}: {message.strip().splitlines()[-1]}"
    except OSError as e:
        message = f"--config: {str(e).splitlines()[0]}: {str(e).strip().splitlines()[-1].strip()}"
    except (KeyError, AttributeError) as e:
        message = _override_message(e, argv)
    except (TypeError, ValueError) as e:
        message = f"bad --config override: {e}"
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(2)


@exits_on_input_error
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from wat_jax.reporting.run_log import quiet_library_logs

    quiet_library_logs()
    run(FLAGS.config, FLAGS.workdir, FLAGS.mode, FLAGS.break_lock)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
