"""The zero-shot protocol: the shipped class splits, the command that runs them, the
held-out windows counted at prepare, and the aggregate tool's mean ± std."""

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import cli
from wat_jax.data import zero_shot
from wat_jax.errors import InputError
from wat_jax.tools import aggregate, protocol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- the splits -------------------------------------------------------------------------


def test_the_shipped_splits_are_the_documented_draw():
    with open(zero_shot.SPLITS_FILE) as f:
        shipped = json.load(f)
    assert shipped == zero_shot.protocol_splits()  # the file and its recipe agree
    assert set(shipped["babel60"]["protocols"]) == {"55/5", "48/12"}
    assert set(shipped["demo"]["protocols"]) == {"15/2", "14/3"}
    assert len(shipped["babel60"]["classes"]) == 60 and len(shipped["demo"]["classes"]) == 17
    for name in ("babel60", "demo"):
        classes = shipped[name]["classes"]
        for proto, drawn in shipped[name]["protocols"].items():
            seen, unseen = (int(n) for n in proto.split("/"))
            assert seen + unseen == len(classes) and len(drawn) == 3
            assert len({tuple(u) for u in drawn}) == 3  # three different splits
            for u in drawn:
                assert len(u) == len(set(u)) == unseen and set(u) <= set(classes)
                assert u == [c for c in classes if c in u]  # listed in class order


def test_the_draw_is_a_seeded_permutation():
    classes = [f"c{i}" for i in range(10)]
    perm = np.random.default_rng([3, 1]).permutation(10)[:3]
    assert zero_shot.draw_unseen(classes, 3, 1) == [classes[i] for i in sorted(perm)]
    assert zero_shot.num_unseen(60, 5 / 60) == 5 and zero_shot.num_unseen(60, 12 / 60) == 12
    assert zero_shot.num_unseen(17, 5 / 60) == 2 and zero_shot.num_unseen(17, 12 / 60) == 3
    with pytest.raises(InputError, match="--protocol"):
        zero_shot.split_classes("demo", "55/5", 0)


def test_the_protocol_command_runs_every_split_and_seed():
    runs = protocol.plan("experiments/babel60.py:demo", "demo", ["all"], [10, 11], "/tmp/zs")
    assert len(runs) == 2 * 3 * 2
    assert len({w for _, w, _ in runs}) == 12
    proto, workdir, command = runs[0]
    assert proto == "15/2" and workdir == "/tmp/zs/15-2/split0_seed10"
    assert "--config.seed=10" in command and "--mode=all" in command
    (held,) = [a for a in command if a.startswith("--config.eval.zero_shot_classes=")]
    value = ast.literal_eval(held.split("=", 1)[1])
    assert list(value) == zero_shot.split_classes("demo", "15/2", 0)
    with pytest.raises(InputError, match="--classes"):
        protocol.plan("x", "ntu60", ["all"], [0], "/tmp/zs")
    with pytest.raises(InputError, match="--protocol"):
        protocol.plan("x", "demo", ["55/5"], [0], "/tmp/zs")


def test_prepare_counts_the_windows_training_leaves_out(tmp_path):
    workdir = tmp_path / "run"
    proc = cli.run_main(
        workdir, "prepare", "--config.eval.zero_shot_classes=('wave','kick')", config=cli.BABEL
    )
    assert "zero-shot: kick, wave held out" in proc.stdout
    report = json.load(open(workdir / "data" / "report.json"))
    from wat_jax.data import prepared

    counts = {}
    for split in ("train", "val"):
        data = prepared.read_split(str(workdir), split)
        held = np.isin(data.classes, ["wave", "kick"])
        counts[split] = int((np.asarray(data.labels)[:, held] > 0.5).any(1).sum())
        assert report["splits"][split]["windows"]["with_held_out"] == counts[split]
    z = report["zero_shot"]
    assert z["classes"] == ["kick", "wave"] and z["train_windows_removed"] == counts["train"] > 0
    assert z["train_windows_left"] == report["splits"]["train"]["windows"]["kept"] - counts["train"]


# ---- aggregate ----------------------------------------------------------------------------


def _eval(folder, step, **values):
    path = folder / "eval" / f"step_{step}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": "babel60", "step": step, **values}))
    return path


def test_aggregate_gives_mean_and_sample_std_over_runs(tmp_path):
    a = tmp_path / "a"
    _eval(a, 2, top1=0.1)  # an older evaluation the workdir's newest replaces
    _eval(a, 10, top1=0.5, num_windows=10, zero_shot={"gzsl": {"harmonic": 0.2}},
          per_class_top1={"walk": 1.0})  # fmt: skip
    b = _eval(tmp_path / "b", 4, top1=0.7, num_windows=10, zero_shot={"gzsl": {"harmonic": 0.4}})
    c = _eval(tmp_path / "c", 4, top1=0.9, num_windows=12)  # no zero-shot block
    text, obj = aggregate.run_aggregate([str(a), str(b), str(c)])
    stats = obj["metrics"]
    assert obj["num_runs"] == 3 and obj["runs"][0].endswith("step_10.json")
    assert stats["top1"]["mean"] == pytest.approx(0.7)
    assert stats["top1"]["std"] == pytest.approx(0.2)  # sqrt((0.04 + 0 + 0.04) / 2)
    h = stats["zero_shot.gzsl.harmonic"]
    assert h["n"] == 2 and h["mean"] == pytest.approx(0.3)
    assert h["std"] == pytest.approx(np.sqrt(0.02))  # sqrt((0.01 + 0.01) / 1)
    assert "per_class_top1.walk" not in stats and "step" not in stats
    assert aggregate.cell(stats["top1"]) == "0.7000 ± 0.2000"
    assert aggregate.cell(stats["num_windows"]) == "10.7 ± 1.2"  # counts: one decimal
    rows = {line.split()[0]: line for line in text.splitlines()[2:]}
    assert rows["zero_shot.gzsl.harmonic"].split()[-1] == "2"  # its number of runs
    md = open(tmp_path / "aggregate.md").read()  # the runs' shared folder
    assert "| top1 | 0.7000 ± 0.2000 | 3 |" in md
    assert json.load(open(tmp_path / "aggregate.json"))["metrics"]["top1"]["n"] == 3
    one, _ = aggregate.run_aggregate([str(b)], str(tmp_path / "one"), match="^top1$")
    assert one.splitlines()[3].split() == ["top1", "0.7000", "1"]  # one run: no std


def test_aggregate_writes_the_protocol_tables_from_the_same_numbers(tmp_path):
    def zs(h, u):
        return {"zero_shot": {"by_prototype": {"centroid": {"gzsl": {"harmonic": h, "unseen": u}}}}}

    _eval(tmp_path / "a", 1, **zs(0.2, 0.5))
    _eval(tmp_path / "b", 1, **zs(0.4, 0.7))
    _, obj = aggregate.run_aggregate([str(tmp_path / "a"), str(tmp_path / "b")])
    with open(tmp_path / "aggregate.md") as f:
        md = f.read()
    assert "| | GZSL unseen | GZSL H |" in md  # only the columns the runs have
    assert "| description centroids | 0.6000 ± 0.1414 | 0.3000 ± 0.1414 |" in md
    assert "| class names |  |  |" in md and "grounding" not in md


def test_aggregate_bad_input_is_one_error_line(tmp_path):
    other = tmp_path / "d"
    path = other / "eval" / "step_1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"task": "densegait", "step": 1, "mAP": 0.1}))
    _eval(tmp_path / "e", 1, top1=0.5)
    with pytest.raises(InputError, match="different tasks"):
        aggregate.run_aggregate([str(other), str(tmp_path / "e")])
    with pytest.raises(InputError, match="has no eval"):
        aggregate.run_aggregate([str(tmp_path)])
    proc = subprocess.run(
        [sys.executable, "-m", "wat_jax.tools.aggregate", str(tmp_path / "nothing")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'nothing'}: ")
