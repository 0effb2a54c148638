"""Runs the BABEL-60 zero-shot protocol: every split of a protocol, for chosen seeds.

    python -m wat_jax.tools.protocol --config=experiments/babel60.py:demo --classes=demo \
        --protocol=all --seeds=10,11 --root=runs/zero_shot [--override=--config.k=v ...]
        [--dry_run]

For each protocol ("15/2" and "14/3" of the demo's classes, "55/5" and "48/12" of
BABEL-60's: experiments/zero_shot_splits.json, wat_jax/data/zero_shot.py), each of its
splits i and each seed s, one run `python -m wat_jax.main --mode=all` in
ROOT/<protocol>/split<i>_seed<s> with `--config.seed=s` and the split's unseen classes
as `--config.eval.zero_shot_classes` (they leave training; evaluation scores them). A
run that already has an evaluation is kept, so the command continues where it stopped.
Then `wat_jax.tools.aggregate` writes ROOT/<protocol>/aggregate.{md,json}: mean ± std
over splits and seeds of every metric, ZSL/GZSL included. The class descriptions depend
on describe.seed, not the run's seed, so the first run's descriptions.jsonl is copied
into the next ones and their describe stage has nothing left to ask.
"""

import os
import shutil
import subprocess
import sys

from wat_jax.data import zero_shot
from wat_jax.errors import InputError, exits_on_input_error, fail
from wat_jax.tools import aggregate


def workdir_of(root: str, protocol: str, index: int, seed: int) -> str:
    return os.path.join(root, protocol.replace("/", "-"), f"split{index}_seed{seed}")


def classes_arg(unseen: list[str]) -> str:
    """The --config.eval.zero_shot_classes value: a Python tuple of the names."""
    return "(" + "".join(f"{c!r}," for c in unseen) + ")"


def plan(config: str, class_set: str, protocols, seeds, root: str, overrides=()) -> list:
    """[(protocol, workdir, command)] for every split and seed, in order."""
    splits = zero_shot.read_splits()
    if class_set not in splits or class_set == "how":
        names = [k for k in splits if k != "how"]
        raise fail("--classes", f"{class_set!r} is not one of {names}")
    known = splits[class_set]["protocols"]
    protocols = list(known) if list(protocols) == ["all"] else list(protocols)
    for p in protocols:
        if p not in known:
            raise fail("--protocol", f"{p!r} is not one of {sorted(known)} or all")
    if not seeds:
        raise fail("--seeds", "give at least one seed, e.g. --seeds=10,11")
    out = []
    for p in protocols:
        for index in range(len(known[p])):
            unseen = zero_shot.split_classes(class_set, p, index)
            for seed in seeds:
                workdir = workdir_of(root, p, index, seed)
                command = [
                    sys.executable,
                    "-m",
                    "wat_jax.main",
                    f"--config={config}",
                    f"--workdir={workdir}",
                    "--mode=all",
                    f"--config.seed={seed}",
                    f"--config.eval.zero_shot_classes={classes_arg(unseen)}",
                    *overrides,
                ]
                out.append((p, workdir, command))
    return out


def _evaluated(workdir: str) -> bool:
    try:
        aggregate.eval_json(workdir)
        return True
    except InputError:  # no eval yet: run it
        return False


def run_protocol(config, class_set, protocols, seeds, root, overrides=(), dry_run=False) -> str:
    """Runs (or with dry_run lists) every split and seed, then aggregates per protocol."""
    runs = plan(config, class_set, protocols, seeds, root, overrides)
    lines, descriptions = [], None
    for _, workdir, command in runs:
        shown = " ".join(command[1:])
        if dry_run:
            lines.append(shown)
            continue
        if _evaluated(workdir):
            print(f"kept {workdir} (evaluated)", flush=True)
        else:
            os.makedirs(workdir, exist_ok=True)
            mine = os.path.join(workdir, "descriptions.jsonl")
            if descriptions and not os.path.exists(mine):
                shutil.copyfile(descriptions, mine)
            print(f"running {shown}", flush=True)
            proc = subprocess.run(command, check=False)
            if proc.returncode != 0:
                raise fail(
                    workdir, f"the run failed (exit {proc.returncode}); see its output above"
                )
        found = os.path.join(workdir, "descriptions.jsonl")
        if descriptions is None and os.path.exists(found):
            descriptions = found
    if dry_run:
        return "\n".join(lines)
    for protocol in dict.fromkeys(p for p, _, _ in runs):
        dirs = [w for p, w, _ in runs if p == protocol]
        prefix = os.path.join(root, protocol.replace("/", "-"), "aggregate")
        text, _ = aggregate.run_aggregate(dirs, prefix)
        lines.append(f"protocol {protocol} ({class_set}), seeds {list(seeds)}:\n{text}")
    return "\n\n".join(lines)


@exits_on_input_error
def main(argv):
    from absl import flags

    from wat_jax import cli

    FLAGS = flags.FLAGS
    cli.begin(argv, "wat_jax.tools.protocol")
    try:
        seeds = [int(s) for s in FLAGS.seeds.split(",") if s.strip()]
    except ValueError:
        raise fail("--seeds", f"comma-separated integers, got {FLAGS.seeds!r}") from None
    print(
        run_protocol(
            FLAGS.config,
            FLAGS.classes,
            FLAGS.protocol.split(","),
            seeds,
            FLAGS.root,
            list(FLAGS.override or ()),
            FLAGS.dry_run,
        )
    )


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("config", "experiments/babel60.py:demo", "The experiment config.")
    flags.DEFINE_string("classes", "demo", "The class set of the splits: demo or babel60.")
    flags.DEFINE_string("protocol", "all", "Comma-separated protocols (e.g. 15/2), or all.")
    flags.DEFINE_string("seeds", "10,11", "Comma-separated seeds (config.seed).")
    flags.DEFINE_string("root", "runs/zero_shot", "Folder of the runs and the aggregates.")
    flags.DEFINE_multi_string("override", [], "A --config.k=v passed to every run.")
    flags.DEFINE_bool("dry_run", False, "Print the commands only.")


def run() -> None:
    """The command line (python -m wat_jax.tools.protocol)."""
    from absl import app

    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
