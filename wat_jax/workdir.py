"""What a trained workdir holds, read back: the resolved config, the prepared
windows, the text bank and readable phrases for its keys. Search, export and the
pictures read a run through these, never through flags; what differs by task is
the task's (wat_jax/tasks/)."""

import os

from wat_jax.data import prepared


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
