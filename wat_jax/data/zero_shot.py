"""The BABEL-60 zero-shot protocol: seen/unseen class splits, drawn once and shipped.

No published seen/unseen protocol exists for BABEL-60. The zero-shot skeleton
literature (SynSE, SMIE, SA-DVAE, PURLS, STAR, TDSM) holds out 5 and 12 of NTU-60's 60
classes (55/5 and 48/12), three random splits each; ours does the same with BABEL-60's
60 classes, and builds the synthetic demo's splits the same way on its 17 classes.

How a split is drawn (`draw_unseen`): the classes in BABEL's index order, permuted by
`numpy.random.default_rng([num_unseen, i]).permutation(C)` for split i = 0, 1, 2; the
first `num_unseen` of the permutation are the unseen classes, listed in class order.
How many are unseen: round(C * f) for f = 5/60 and 12/60, at least 2 (the ranking
among unseen classes needs two): 5 and 12 of BABEL-60's 60; 2 and 3 of the demo's 17.

The splits live in experiments/zero_shot_splits.json (`write_splits` writes it, and a
test checks the file against `protocol_splits`, so neither can drift). A run holds a
split's unseen classes out with `--config.eval.zero_shot_classes=(...)`, which
`split_classes` reads and the protocol tool (tools/protocol.py) passes for every split
and seed.
"""

import json
import os

import numpy as np

from wat_jax.data.babel import BABEL60_CLASSES
from wat_jax.data.synthetic_babel import ALL_CLASSES
from wat_jax.errors import fail

SPLITS_FILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "experiments",
    "zero_shot_splits.json",
)
FRACTIONS = (5 / 60, 12 / 60)  # NTU-60's 55/5 and 48/12
NUM_SPLITS = 3
DEMO_CLASSES = tuple(c for c in BABEL60_CLASSES if c in ALL_CLASSES)  # the demo's 17


def num_unseen(num_classes: int, fraction: float) -> int:
    """How many of `num_classes` a protocol holds out: round(C * f), at least 2."""
    return max(2, int(round(num_classes * fraction)))


def draw_unseen(classes, unseen: int, index: int) -> list[str]:
    """Split `index`'s unseen classes: the first `unseen` of a permutation of `classes`
    seeded by (unseen, index), in the classes' own order."""
    classes = list(classes)
    if not 2 <= unseen < len(classes):
        raise ValueError(f"unseen must be in 2..{len(classes) - 1}, got {unseen}")
    picked = np.random.default_rng([unseen, index]).permutation(len(classes))[:unseen]
    return [classes[i] for i in sorted(picked.tolist())]


def protocol_splits() -> dict:
    """The contents of experiments/zero_shot_splits.json: per class set (babel60, demo),
    per protocol ("55/5", ...), NUM_SPLITS unseen-class lists."""
    out = {
        "how": (
            "unseen = the first U of numpy.random.default_rng([U, i]).permutation(C) over "
            "the classes in BABEL's index order, for split i = 0, 1, 2, listed in class "
            "order; U = max(2, round(C * f)) for f = 5/60 and 12/60 (NTU-60's 55/5 and "
            "48/12); written by wat_jax/data/zero_shot.py (write_splits)"
        ),
    }
    for name, classes in (("babel60", BABEL60_CLASSES), ("demo", DEMO_CLASSES)):
        protocols = {}
        for fraction in FRACTIONS:
            unseen = num_unseen(len(classes), fraction)
            protocols[f"{len(classes) - unseen}/{unseen}"] = [
                draw_unseen(classes, unseen, i) for i in range(NUM_SPLITS)
            ]
        out[name] = {"classes": list(classes), "protocols": protocols}
    return out


def write_splits(path: str = SPLITS_FILE) -> str:
    """Writes protocol_splits() to `path` (experiments/zero_shot_splits.json)."""
    splits, one = protocol_splits(), json.dumps  # one list of classes a line
    parts = [f' "how": {one(splits.pop("how"))}']
    for name, part in splits.items():
        protocols = [
            f"   {one(p)}: [\n" + ",\n".join(f"    {one(u)}" for u in drawn) + "\n   ]"
            for p, drawn in part["protocols"].items()
        ]
        parts.append(
            f' {one(name)}: {{\n  "classes": {one(part["classes"])},\n  "protocols": {{\n'
            + ",\n".join(protocols)
            + "\n  }\n }"
        )
    with open(path, "w") as f:
        f.write("{\n" + ",\n".join(parts) + "\n}\n")
    return path


def read_splits(path: str = SPLITS_FILE) -> dict:
    """experiments/zero_shot_splits.json (or `path`), checked for its layout."""
    try:
        with open(path) as f:
            splits = json.load(f)
    except (OSError, ValueError) as e:
        raise fail(path, f"cannot read the zero-shot splits ({e})") from None
    for name, part in splits.items():
        if name == "how":
            continue
        if not isinstance(part, dict) or not {"classes", "protocols"} <= set(part):
            raise fail(path, f"{name!r} needs 'classes' and 'protocols'")
    return splits


def split_classes(class_set: str, protocol: str, index: int, path: str = SPLITS_FILE) -> list:
    """The unseen classes of split `index` of `protocol` (e.g. "55/5") for `class_set`
    ("babel60" or "demo")."""
    splits = read_splits(path)
    sets = [k for k in splits if k != "how"]
    if class_set not in sets:
        raise fail("--classes", f"{class_set!r} is not one of {sets} ({path})")
    protocols = splits[class_set]["protocols"]
    if protocol not in protocols:
        raise fail("--protocol", f"{protocol!r} is not one of {sorted(protocols)} ({path})")
    drawn = protocols[protocol]
    if not 0 <= index < len(drawn):
        raise fail("--splits", f"split {index} of {protocol}: there are {len(drawn)}")
    return list(drawn[index])
