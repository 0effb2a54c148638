"""What a trained workdir holds, read back: the resolved config, the prepared
windows, the text bank and readable phrases for its keys. Search, export and the
pictures read a run through these, never through flags; what differs by task is
the task's (wat_jax/tasks/)."""

import os
import re

from wat_jax.data import prepared
from wat_jax.errors import fail


def resolve(path: str, step: int | None = None, key: str = "--workdir") -> tuple[str, int | None]:
    """What `wat_jax.load` accepts -> (the run's workdir, the checkpoint step or None).

    PATH is a workdir, its checkpoints/ or one checkpoints/<step>/, with an optional
    `:STEP` (checkpointing.parse_source); the workdir is the folder of checkpoints/,
    where config.json and the prepared data are. A folder that is none of these comes
    back as it is, so its own error ("no config here; train ...") is said. A step in
    the path and a different `step` (the CLI's --step) are refused.
    """
    from wat_jax import checkpointing

    folder, named = path, None
    match = re.fullmatch(r"(.*):(\d+)", path)
    if match and not os.path.exists(path):
        folder, named = match.group(1), int(match.group(2))
    if os.path.isdir(folder) and not os.path.exists(os.path.join(folder, "config.json")):
        steps = os.path.isdir(os.path.join(folder, "state")) or any(
            name.isdigit() for name in os.listdir(folder)
        )
        if steps:  # a checkpoints/ folder or one step of it
            root, named = checkpointing.parse_source(path, key)
            if os.path.basename(root) != "checkpoints":
                raise fail(
                    key,
                    f"{root}: a run's checkpoints sit in WORKDIR/checkpoints/, beside its "
                    "config.json and data/; give that workdir",
                )
            folder = os.path.dirname(root)
    if named is not None and step is not None and step >= 0 and step != named:
        raise fail(key, f"{path} names step {named}, but the step asked for is {step}")
    return folder, named if named is not None else step


def load_config(workdir: str):
    """The run's resolved config from WORKDIR/config.json (tuples come back as lists)."""
    from wat_jax import artifact

    return artifact.read_config(os.path.join(workdir, "config.json"))


def _task(config):
    from wat_jax import tasks

    return tasks.get_task(config.task)


def read_gallery(config, workdir: str, split: str) -> prepared.PreparedSplit:
    """The windows of `split`: the prepared files (the toy task: else its in-memory data)."""
    return _task(config).gallery(config, workdir, split)


def read_bank(config, workdir: str):
    """The run's TextBank (the toy task generates its own)."""
    return _task(config).bank(config, workdir)


def key_phrases(config, keys: list[str]) -> list[str]:
    """Readable text for each bank key: the class name, or the attribute set's phrase."""
    return _task(config).key_phrases(config, keys)
