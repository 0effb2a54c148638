"""Every experiment config loads; each task runs end to end through the CLI on
synthetic data, as the smoke variant, as the names-only ablation, and as the
paper variant shrunk; bad data gives one clear line."""

import importlib
import json
import os

import numpy as np
import pytest

from tests import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(
    f[:-3]
    for f in os.listdir(os.path.join(ROOT, "experiments"))
    if f.endswith(".py") and not f.startswith("_")
)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_config_variant_loads(name):
    module = importlib.import_module(f"experiments.{name}")
    assert "python -m wat_jax.main --config=experiments/" in module.__doc__
    variants = ("smoke", "demo") + (("paper",) if name != "toy" else ())
    for variant in variants:
        config = module.get_config(variant)
        assert config.task and config.batch_size > 0 and config.total_steps > 0
        for key in (
            "seed",
            "checkpoint_every_steps",
            "data",
            "model",
            "text",
            "describe",
            "optim",
            "loss",
            "eval",
        ):
            assert key in config, (name, variant, key)
    with pytest.raises(ValueError):
        module.get_config("nope")


def test_paper_variants_carry_the_papers_settings():
    from experiments import babel60, densegait

    b = babel60.get_config("paper")
    assert (b.model.width, b.model.layers, b.model.heads, b.model.mlp_dim) == (768, 8, 4, 1024)
    assert (b.data.window_frames, b.batch_size, b.optim.lr, b.optim.weight_decay) == (
        60,
        80,
        2e-4,
        0.1,
    )
    assert b.text.encoder == "hf:WhereIsAI/UAE-Large-V1" and b.text.pooling == "mean"
    assert b.loss.name == "mse" and tuple(b.text.targets) == ("name", "centroid")
    assert b.model.pooling == "first" and not b.model.pre_norm and b.seed == 10
    d = densegait.get_config("paper")
    assert (d.model.width, d.model.layers, d.loss.name, d.loss.margin) == (768, 12, "triplet", 10)
    assert (d.optim.lr, d.batch_size, d.text.pooling) == (1e-5, 128, "cls")
    assert d.text.encoder == "hf:WhereIsAI/UAE-Large-V1"


def _main(workdir, config, *overrides, mode="all"):
    return cli.run_main(workdir, mode, *overrides, config=config, check=False, timeout=600)


def _eval(workdir):
    files = sorted(os.listdir(os.path.join(workdir, "eval")))
    (name,) = [f for f in files if f.startswith("step_") and f.endswith(".json")]
    return json.load(open(os.path.join(workdir, "eval", name))), files


def _check_prepared(workdir):
    for split in ("train", "val"):
        d = os.path.join(workdir, "data", split)
        motion, mask = np.load(f"{d}/motion.npy"), np.load(f"{d}/mask.npy")
        labels, classes = np.load(f"{d}/labels.npy"), json.load(open(f"{d}/classes.json"))
        index = [json.loads(line) for line in open(f"{d}/index.jsonl")]
        assert motion.dtype == np.float32 and mask.dtype == bool and motion.ndim == 4
        assert labels.shape == (len(motion), len(classes)) and len(index) == len(motion)
        assert {"source", "start_s", "start_frame"} <= set(index[0])


def test_babel60_smoke_end_to_end(babel_smoke):
    # The session's run of `--mode=all` (tests/conftest.py), shared with other modules.
    proc = babel_smoke.proc
    workdir = babel_smoke.workdir
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_prepared(workdir)
    result, files = _eval(workdir)
    for key in ("top1", "top5", "top1_norm", "mAP", "per_class_top1", "random"):
        assert key in result
    assert all(0.0 <= result[k] <= 1.0 for k in ("top1", "top5", "top1_norm", "mAP"))
    assert set(result["by_prototype"]) == {"name", "centroid"}
    assert any(f.startswith("confusion") and f.endswith(".png") for f in files)
    assert "top1" in proc.stdout  # the results table
    records = [json.loads(line) for line in open(workdir / "descriptions.jsonl")]
    assert {"key", "text", "backend", "model", "prompt_id", "prompt_hash"} <= set(records[0])


def test_babel60_names_only_ablation_and_zero_shot(tmp_path):
    proc = _main(
        tmp_path,
        "experiments/babel60.py:smoke",
        "--config.describe.backend=names",
        "--config.eval.zero_shot_classes=('wave','kick')",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "descriptions.jsonl").exists()
    result, _ = _eval(tmp_path)
    assert result["describe_backend"] == "names"
    zero_shot = result["zero_shot"]
    assert "zero-shot unseen-only top1" in proc.stdout  # the results table shows them
    assert zero_shot["classes"] == ["kick", "wave"] and zero_shot["num_windows"] > 0
    for part in (zero_shot, zero_shot["random"], *zero_shot["by_prototype"].values()):
        assert set(part["unseen_only"]) == {"top1", "top1_norm", "mAP"}
        assert all(0.0 <= v <= 1.0 for v in part["unseen_only"].values())
        assert 0.0 <= part["top1"] <= part["top5"] <= 1.0


def test_babel60_paper_variant_shrunk(tmp_path):
    proc = _main(
        tmp_path,
        "experiments/babel60.py:paper",
        "--config.data.source=synthetic",
        "--config.data.synthetic.num_train=8",
        "--config.data.synthetic.num_val=4",
        "--config.text.encoder=minilm",
        "--config.describe.backend=template",
        "--config.describe.per_key=2",
        "--config.model.width=32",
        "--config.model.layers=2",
        "--config.model.mlp_dim=64",
        "--config.batch_size=16",
        "--config.total_steps=4",
        "--config.checkpoint_every_steps=4",
        "--config.log_every_steps=2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.load(open(tmp_path / "config.json"))
    assert config["loss"]["name"] == "mse" and config["model"]["pooling"] == "first"
    result, _ = _eval(tmp_path)
    assert result["step"] == 4 and np.isfinite(result["top1"])


def test_densegait_smoke_end_to_end(densegait_smoke, tmp_path):
    # The session's run of `--mode=all` (tests/conftest.py); eval writes into this copy.
    proc = densegait_smoke.proc
    workdir = cli.copy_run(densegait_smoke.workdir, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_prepared(workdir)
    result, files = _eval(workdir)
    for key in ("ndcg@10", "ndcg@100", "mAP", "R@1", "R@5", "R@10"):
        assert 0.0 <= result[key] <= 1.0
        assert 0.0 <= result["random"][key] <= 1.0
    assert result["per_attribute"] and "gait_to_text" in result
    assert any(f.startswith("per_attribute") and f.endswith(".png") for f in files)

    # The same checkpoint evaluated on 1 device ranks the same gathered gallery.
    one = _main(workdir, "experiments/densegait.py:smoke", "--config.num_devices=1", mode="eval")
    assert one.returncode == 0, one.stderr[-3000:]
    single, _ = _eval(workdir)
    numbers = lambda r: {k: v for k, v in r.items() if isinstance(v, float)}
    assert numbers(single).keys() == numbers(result).keys()
    for key, value in numbers(result).items():
        assert abs(single[key] - value) < 1e-6, key
    for attr, value in result["per_attribute"].items():
        assert abs(single["per_attribute"][attr] - value) < 1e-6, attr


def test_densegait_paper_variant_shrunk(tmp_path):
    proc = _main(
        tmp_path,
        "experiments/densegait.py:paper",
        "--config.data.source=synthetic",
        "--config.data.synthetic.num_tracks=40",
        "--config.text.encoder=minilm",
        "--config.describe.backend=template",
        "--config.describe.per_key=1",
        "--config.model.width=32",
        "--config.model.layers=2",
        "--config.model.mlp_dim=64",
        "--config.batch_size=16",
        "--config.total_steps=4",
        "--config.checkpoint_every_steps=4",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.load(open(tmp_path / "config.json"))
    assert config["loss"]["name"] == "triplet" and config["loss"]["margin"] == 10.0
    result, _ = _eval(tmp_path)
    assert result["step"] == 4 and np.isfinite(result["ndcg@10"])


def test_bad_data_is_one_clear_line(tmp_path):
    proc = _main(
        tmp_path,
        "experiments/babel60.py:paper",
        f"--config.data.amass_root={tmp_path}/missing",
        f"--config.data.babel_dir={tmp_path}/missing",
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "missing" in last and "Traceback" not in proc.stderr
