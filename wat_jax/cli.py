"""What the command lines share: the prologue, config-flag errors as one line, the
start-up checks of a stage run, and the header its log opens with.

main.py (the stages) and the tools (wat_jax/tools/) start through here, so a bad
flag, override or config value is one `error:` line (exit 2) however the program
was started, and the checks run before anything is read, compiled or written.
"""

import difflib
import errno
import math
import os
import sys

from absl import flags, logging

from wat_jax.errors import InputError, fail


def begin(argv, program: str) -> None:
    """A tool's first lines: no stray positional arguments, the console's log lines plain
    (run_log.console_logs)."""
    from wat_jax.reporting.run_log import console_logs

    if len(argv) > 1:
        raise fail(program, f"unexpected arguments {argv[1:]}")
    console_logs()


def read_run(path: str, step: int | None = None):
    """A tool's --workdir (what `wat_jax.load` accepts) -> (the run's workdir, the step it
    names or None, the run's config from its config.json)."""
    from wat_jax import artifact, run_config

    workdir, step = artifact.resolve(path, step)
    return workdir, step, run_config.load(workdir)


# ---- config-flag errors ---------------------------------------------------------------


def parse_flags(argv, flag_values=flags.FLAGS, name: str = "config"):
    """absl's parser for a program with a `--config` file flag, as app.run's flags_parser:
    config errors (a typo in a key, a bad value, a missing file) are one line and exit 2."""
    try:
        rest = flag_values(argv)
        flag_values[name].value.task  # a missing config file only raises when first read
        return rest
    except flags.Error as e:
        message = str(e)
        if "Traceback" in message:  # an exception inside get_config: keep its last line
            message = f"{message.split(':', 1)[0]}: {message.strip().splitlines()[-1]}"
    except OSError as e:
        message = f"--{name}: {str(e).splitlines()[0]}: {str(e).strip().splitlines()[-1].strip()}"
    except (KeyError, AttributeError) as e:  # ml_collections: an override names no key
        message = unknown_key(flag_values[name]) or f"bad --{name} override: {e}"
    except (TypeError, ValueError) as e:
        message = f"bad --{name} override: {e}"
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(2)


def unknown_key(config_flag) -> str | None:
    """The first `--config.<path>` override that names no key of the config, as one line
    with the nearest key; None when every override names one.

    The command line, its overrides and the config are the flag's own (the argv it read,
    --flagfile expanded; its list of overrides; its parser), so nothing is read out of
    the KeyError's text (ml_collections wraps it in repr() once per config level).
    `_GetArgv`, `_GetOverrides` and `_FindConfigSpecified` are private to ml_collections'
    config_flags: tests/test_flag_errors.py pins them on the version requirements.txt names.
    """
    import ml_collections

    argv = config_flag._GetArgv()
    at = config_flag._FindConfigSpecified(argv)
    if at < 0:
        return None
    arg = argv[at]
    source = arg.split("=", 1)[1] if "=" in arg else argv[at + 1]
    config = config_flag.parser.parse(source)
    for path in config_flag._GetOverrides(argv):
        node, parts = config, path.split(".")
        for depth, part in enumerate(parts):
            keys = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            if part in keys:
                node = node[part]
                continue
            message = f"--{config_flag.name}.{path}: unknown config key '{part}'"
            if not isinstance(node, ml_collections.ConfigDict):
                parent = ".".join(parts[:depth])
                return f"{message} (config.{parent} is a value, not a block of keys)"
            near = difflib.get_close_matches(part, keys, n=1)
            return message + (f'; did you mean "{near[0]}" instead of "{part}"?' if near else "")
    return None


# ---- start-up checks of a stage run ---------------------------------------------------


def check_workdir(workdir: str) -> None:
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


def check_values(config, stages) -> None:
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


def check_resources(config, stages) -> None:
    """The batch sizes divide over the devices, and a training's resume_from / init_from
    name checkpoint folders: before any stage runs or writes."""
    from wat_jax import checkpointing, parallel

    if "train" not in stages and "eval" not in stages:
        return
    mesh = parallel.make_mesh(config.num_devices or None)
    if "train" in stages:
        parallel.check_batch_size(config.batch_size, mesh)
        for key in ("resume_from", "init_from"):
            if config[key]:
                checkpointing.parse_source(config[key], f"config.{key}")
    if "eval" in stages:
        key = "eval.batch_size" if config.eval.batch_size else "batch_size"
        parallel.check_batch_size(config.eval.batch_size or config.batch_size, mesh, key)


# ---- the header of a stage's log ------------------------------------------------------


def header(config, workdir: str, stage: str, config_flag=None) -> list[str]:
    """What a log needs to say how this stage ran: config, overrides, runtime, workdir.

    `config_flag`: the `--config` flag the config came from (None: built in Python).
    """
    from ml_collections import config_flags

    from wat_jax import parallel, run_config

    source, overrides = "(in-process config)", {}
    if config_flag is not None and config_flag.present:
        source = config_flags.get_config_filename(config_flag)
        overrides = config_flags.get_override_values(config_flag)
    flat = ", ".join(f"{k}={v!r}" for k, v in sorted(run_config.flatten(overrides).items()))
    return [
        f"  config {source} (task {config.task}); overrides: {flat or 'none'}",
        f"  {parallel.runtime_summary()}; stage {stage}; workdir {os.path.abspath(workdir)}",
    ]
