"""What a trained workdir holds, read back: the resolved config, the prepared
windows, the text bank and readable phrases for its keys. Search, export and the
pictures read a run through these, never through flags."""

import json
import os

from wat_jax.data import gait_attributes, prepared
from wat_jax.errors import fail


def load_config(workdir: str):
    """The run's resolved config from WORKDIR/config.json (tuples come back as lists)."""
    from wat_jax import artifact

    return artifact.read_config(os.path.join(workdir, "config.json"))


def read_gallery(config, workdir: str, split: str) -> prepared.PreparedSplit:
    """The windows of `split`: the prepared files, or the toy task's in-memory data."""
    if split not in prepared.SPLITS:
        raise fail("--split", f"must be one of {prepared.SPLITS}, got {split!r}")
    if config.task == "toy" and not prepared.is_prepared(workdir, split):
        from wat_jax.tasks import toy

        motion, mask, labels = toy.make_data(config, config.seed, split)
        rows = [
            {"source": f"toy/{split}/{i}", "start_s": 0.0, "start_frame": 0}
            for i in range(len(motion))
        ]
        classes = [f"class_{i}" for i in range(labels.shape[1])]
        return prepared.PreparedSplit(motion, mask, labels, classes, rows)
    return prepared.read_split(workdir, split)


def read_bank(config, workdir: str):
    """The run's TextBank (the toy task generates its own)."""
    from wat_jax.data.pipeline import TextBank
    from wat_jax.tasks import common

    if config.task == "toy" and not os.path.exists(common.bank_path(workdir)):
        from wat_jax.tasks import toy

        return toy.make_bank(config, config.seed)
    return TextBank.load(common.bank_path(workdir))


def key_phrases(config, keys: list[str]) -> list[str]:
    """Readable text for each bank key: the class name, or the attribute set's phrase."""
    if config.task != "densegait":
        return list(keys)

    column = {name: i for i, name in enumerate(gait_attributes.COLUMNS)}
    phrases = []
    for key in keys:  # attribute_set_key: column names joined by "+", or "none"
        names = [] if key == "none" else key.split("+")
        known = all(n in column for n in names)
        phrases.append(
            gait_attributes.describe_attributes([column[n] for n in names]) if known else key
        )
    return phrases
