"""config.json belongs to the run.

WORKDIR/config.json is written by the first training in a workdir, and after
that only by a training whose config differs in keys that may change between
sessions of one run (RUN_CONTROL_KEYS: how long, how often to log, checkpoint
and evaluate, on how many devices). Each such change is appended to
WORKDIR/config_history.jsonl. Every other key changes the model or the data the
checkpoints were trained on: a writing stage (prepare, describe, embed, train)
whose config differs from the run's in one of them is refused before it writes
anything, naming the keys. Evaluation never writes config.json; it evaluates
the run's model (the run's value of every model and data key, the command
line's run-control and eval keys) and says which keys it took from the run.
Search and export read config.json and never write it.
"""

import datetime
import json
import os
import socket
from typing import Any

from absl import logging

from wat_jax import fileio
from wat_jax.errors import fail

CONFIG_FILE = "config.json"
HISTORY_FILE = "config_history.jsonl"

# Keys (or prefixes ending in ".") that may differ from the run's config.json on a
# resume: they change how long and how observably a run goes, not what it learns
# from or what shape it has. Everything else is a model or data key.
RUN_CONTROL_KEYS = (
    "total_steps",
    "log_every_steps",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "keep_period",
    "num_devices",
    "init_from",
    "resume_from",
    "eval.",  # except EVAL_DATA_KEYS
    "optim.max_consecutive_skips",
    "text.batch_size",
    "text.cache_dir",
    "describe.base_url",
    "describe.api_key_env",
    "describe.concurrency",
    "describe.timeout_s",
    "describe.max_retries",
    "describe.backoff_s",
    "describe.max_backoff_s",
    "describe.local_batch_size",
)
# eval.* keys that change what the model is trained on (held-out classes leave training).
EVAL_DATA_KEYS = ("eval.zero_shot_classes",)


def config_path(workdir: str) -> str:
    return os.path.join(workdir, CONFIG_FILE)


def is_run_control(key: str) -> bool:
    """True for keys that may change between sessions of one run (see RUN_CONTROL_KEYS)."""
    if key in EVAL_DATA_KEYS or any(key.startswith(k + ".") for k in EVAL_DATA_KEYS):
        return False
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RUN_CONTROL_KEYS)


def to_json(config) -> dict:
    """The resolved config as config.json holds it (tuples as lists)."""
    return json.loads(config.to_json())


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# Keys added after runs had been trained, each with the value those runs were trained
# with. Reading an older config.json fills in the absent ones (`with_legacy_defaults`),
# so an old run reads back, embeds files and draws exactly as it trained.
LEGACY_DEFAULTS = {
    # flax's LayerNorm default; rot6d only matters to BABEL, whose own entry wins.
    "": {"model.norm_eps": 1e-6, "optim.decay": "matrices", "data.rot6d": "rows"},
    "babel60": {
        "data.rot6d": "columns",
        "data.feature_joints": list(range(24)),
        "data.translation": "root",
        "data.body_model": "",
        "data.partial_chunks": True,
    },
    "densegait": {"data.frames": "window", "data.padding": "mask", "data.transform": "gaitformer"},
}


def with_legacy_defaults(tree: dict) -> dict:
    """config.json's dict with LEGACY_DEFAULTS filled in where its keys are absent."""
    out = json.loads(json.dumps(tree))
    for task in (out.get("task", ""), ""):  # the task's own entry first
        for dotted, value in LEGACY_DEFAULTS.get(task, {}).items():
            *parents, leaf = dotted.split(".")
            node = out
            for name in parents:
                node = node.setdefault(name, {})
            node.setdefault(leaf, value)
    return out


def read(workdir: str) -> dict | None:
    """The run's config.json as a dict, or None when the workdir has none yet.

    The one place config.json is parsed: writers compare against it, readers `load` it.
    """
    path = config_path(workdir)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        raise fail(path, f"not valid JSON ({e}); restore it or use another workdir") from None
    if not isinstance(data, dict):
        raise fail(path, "not a config (a JSON object expected)")
    return data


def load(workdir: str):
    """The run's config as a ConfigDict, keys added since it was written filled in with
    the values it trained with (LEGACY_DEFAULTS); one error line when there is none."""
    import ml_collections

    tree = read(workdir)
    if tree is None:
        raise fail(
            config_path(workdir),
            "no config here; train in this workdir first (python -m wat_jax.main --mode=train)",
        )
    return ml_collections.ConfigDict(with_legacy_defaults(tree))


def diff(run: dict, new: dict) -> dict[str, tuple]:
    """key -> (run's value, new value) for every flattened key whose value differs.

    A key only one side has shows MISSING on the other (code that added or
    removed a config key since the run started).
    """
    a, b = flatten(run), flatten(new)
    out = {}
    for key in sorted(set(a) | set(b)):
        old, value = a.get(key, MISSING), b.get(key, MISSING)
        if old != value:
            out[key] = (old, value)
    return out


class _Missing:
    def __repr__(self):
        return "(absent)"


MISSING = _Missing()


def split_changes(changes: dict) -> tuple[dict, dict]:
    """(model or data changes, run-control changes). A key the run's config lacks, or
    that the new config lacks, counts as run control: code changed, not the run."""
    fixed, control = {}, {}
    for key, (old, new) in changes.items():
        added_or_removed = old is MISSING or new is MISSING
        (control if added_or_removed or is_run_control(key) else fixed)[key] = (old, new)
    return fixed, control


def _show(value) -> str:
    text = json.dumps(value) if not isinstance(value, _Missing) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_changes(changes: dict, limit: int = 6) -> str:
    items = [f"{k} {_show(a)} -> {_show(b)}" for k, (a, b) in changes.items()]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def check_writer(config, workdir: str, mode: str) -> dict:
    """Refuses a writing stage whose config changes a model or data key of the run.

    Returns:
      The run-control changes (key -> (run's value, new value)); empty when the
      workdir has no config.json yet.
    """
    run = read(workdir)
    if run is None:
        return {}
    fixed, control = split_changes(diff(run, to_json(config)))
    if fixed:
        raise fail(
            config_path(workdir),
            f"--mode={mode} refused: the config differs from this run's in keys that change "
            f"the model or data: {describe_changes(fixed)}; use the run's values or another "
            "--workdir (to start from this run's weights: --config.init_from=" + workdir + ")",
        )
    return control


def record_train(config, workdir: str, mode: str, control: dict) -> None:
    """Writes config.json for a training (process 0): the first time, or with the
    run-control changes `control`, which are appended to config_history.jsonl."""
    path = config_path(workdir)
    first = not os.path.exists(path)
    if not first and not control:
        return
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    entry = {"time": now, "mode": mode, "host": socket.gethostname()}
    if first:
        entry["created"] = True
    else:
        entry["changed"] = {
            k: [None if a is MISSING else a, None if b is MISSING else b]
            for k, (a, b) in control.items()
        }
        logging.info("config: run-control keys changed: %s", describe_changes(control))
    fileio.write_json(path, to_json(config))
    fileio.append_jsonl(os.path.join(workdir, HISTORY_FILE), entry)


def _as_field_value(current, value):
    """A JSON value typed like the config field it replaces (lists back to tuples)."""
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def config_for_eval(config, workdir: str):
    """The config to evaluate this run with: the command line's, with every model and
    data key replaced by the run's value (from config.json) where they differ.

    Returns `config` itself when nothing differs or the workdir has no config.json.
    """
    run = read(workdir)
    if run is None:
        return config
    fixed, _ = split_changes(diff(run, to_json(config)))
    if not fixed:
        return config
    merged = config.copy_and_resolve_references()
    run_flat = flatten(run)
    with merged.unlocked():
        for key, (old, _) in fixed.items():
            *parents, leaf = key.split(".")
            node = merged
            for p in parents:
                node = node[p]
            node[leaf] = _as_field_value(node.get(leaf), run_flat[key])
    logging.warning(
        "eval: using this run's config.json for keys that change the model or data: %s",
        describe_changes(fixed),
    )
    return merged
