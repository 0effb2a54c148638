"""The benchmark CLI prints valid JSON lines with the expected keys (no timing
assertions), its FLOP and peak tables, and what bf16 compute really computes in."""

import json
import os
import subprocess
import sys

import pytest

from experiments import babel60
from wat_jax import heap
from wat_jax.tools import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config=experiments/babel60.py:paper",
    "--config.batch_size=8",
    "--config.model.width=32",
    "--config.model.layers=2",
    "--config.model.heads=4",
    "--config.model.mlp_dim=64",
    "--config.data.window_frames=16",
    "--joints=5",
    "--features=3",
    "--text_dim=32",
]


def _config(**model):
    """BABEL-60's paper config, 16-frame windows, batch 8, with `model` settings."""
    config = babel60.get_config("paper")
    config.batch_size = 8
    config.data.window_frames = 16
    config.model.update(model)
    return config


def _tiny(dtype="float32"):
    config = _config(width=32, layers=2, heads=4, mlp_dim=64, dtype=dtype)
    return config, benchmark.shape_of(config, joints=5, features=3, text_dim=32)


def _bench(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")  # keeps conftest's 8 simulated devices
    return subprocess.run(
        [sys.executable, "-m", "wat_jax.tools.benchmark", *TINY, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_prints_one_json_object_per_line():
    # text is left out: loading MiniLM is the text tower's test's business.
    proc = _bench(
        "--what=step,data,precision",
        "--steps=3",
        "--warmup=1",
        "--data_windows=64",
        "--data_batches=5",
        "--matmul_size=256",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    by_what = {r["what"]: r for r in records}
    assert list(by_what) == ["machine", "precision", "step", "data"]
    machine = by_what["machine"]
    assert machine["local_devices"] == 8
    # The machine's own limit, measured in the same run in the step's dtype.
    assert machine["matmul_size"] == 256 and machine["matmul_dtype"] == "float32"
    assert 1e8 < machine["matmul_flops_per_sec"] < 1e14
    assert machine["matmul_median_flops_per_sec"] <= machine["matmul_flops_per_sec"]
    assert machine["machine_matmul_flops_per_sec"] == machine["matmul_flops_per_sec"]  # CPU
    # `python -m wat_jax.tools.benchmark` keeps freed memory for reuse (wat_jax/heap.py).
    assert machine["heap"] == ("kept" if heap._glibc() else "released")
    step = by_what["step"]
    assert step["impl"] == "wat_jax" and step["steps"] == 3 and step["devices"] == 8
    for key in (
        "median_step_s",
        "sequences_per_sec",
        "flops_per_step",
        "model_flops_per_step",
        "compile_s",
        "loss",
    ):
        assert step[key] > 0, key
    assert step["flops_source"] in ("xla_cost_analysis", "analytic")
    assert step["peak_flops_per_device"] is None and step["mfu"] is None  # CPU: no peak
    # Analytic FLOPs/s over the matmul rate: a tiny step is far from the limit, never above it.
    fraction = step["fraction_of_matmul_peak"]
    expected = step["model_flops_per_step"] / step["median_step_s"]
    assert fraction == pytest.approx(expected / machine["machine_matmul_flops_per_sec"])
    assert 0 < fraction < 1
    data = by_what["data"]
    assert data["windows_per_sec"] > 0 and data["times_faster_than_step"] > 0


def test_matmul_rate_is_the_products_flops_over_its_time():
    record = benchmark.matmul_rate("float32", size=128, repeats=3)
    assert record["matmul_size"] == 128
    assert 1e8 < record["matmul_flops_per_sec"] < 1e14
    bf16 = benchmark.matmul_rate("bfloat16", size=128, repeats=1)
    assert bf16["matmul_dtype"] == "bfloat16" and bf16["matmul_flops_per_sec"] > 0


def test_machine_record_without_a_step_skips_the_matmul():
    record = benchmark.machine_record(None)
    assert "matmul_flops_per_sec" not in record and record["cpu_cores"] >= 1


def test_text_benchmark_passes_only_the_arguments_it_accepts(monkeypatch):
    from wat_jax.tools import text_bench as bench

    calls = []

    def fake(encoder="minilm", batch_size=64, num_sentences=256):
        calls.append((encoder, batch_size, num_sentences))
        return {"sentences_per_sec": 123.0}

    monkeypatch.setattr(bench, "benchmark_text_encoder", fake)
    record = benchmark.benchmark_text(16, 32, compare="torch")
    assert record == {"what": "text", "sentences_per_sec": 123.0}
    assert calls == [("minilm", 16, 32)]


def test_bad_what_is_a_usage_error():
    proc = _bench("--what=stepp")
    assert proc.returncode != 0 and "stepp" in proc.stderr


def test_model_flops_grow_with_the_model():
    flops = lambda **m: benchmark.model_flops(
        benchmark.shape_of(_config(**m), joints=5, features=3, text_dim=32)
    )
    small = flops(width=32, layers=2, mlp_dim=64)
    assert small > 0
    assert flops(width=64, layers=2, mlp_dim=64) > small
    assert flops(width=32, layers=4, mlp_dim=64) > small
    # The paper's step: about 0.93 TFLOP, dominated by the 8 layers' matmuls.
    paper = benchmark.shape_of(babel60.get_config("paper"))
    assert (paper.batch_size, paper.frames, paper.width, paper.layers) == (80, 60, 768, 8)
    assert 0.9e12 < benchmark.model_flops(paper) < 1.0e12


def test_torch_comparison_needs_the_reference_model():
    assert benchmark.reference_mismatch(babel60.get_config("paper")) == []
    demo = benchmark.reference_mismatch(babel60.get_config("demo"))
    assert any(m.startswith("model.pre_norm=True") for m in demo)
    assert any(m.startswith("loss.name='infonce'") for m in demo)


@pytest.mark.parametrize(
    "kind,dtype,peak",
    [
        ("NVIDIA H100 80GB HBM3", "bfloat16", 989e12),
        ("NVIDIA H200", "bfloat16", 989e12),
        ("NVIDIA A100-SXM4-80GB", "float32", 156e12),
        ("TPU v5 lite", "bfloat16", 197e12),
        ("TPU v4", "float32", None),
        ("cpu", "float32", None),
    ],
)
def test_peak_flops_table(kind, dtype, peak):
    assert benchmark.peak_flops(kind, dtype) == peak


def test_bfloat16_computes_in_bf16_with_float32_params_and_loss():
    config, shape = _tiny("bfloat16")
    report = benchmark.precision_report(config, shape)
    assert report["param_dtypes"] == ["float32"]
    assert report["loss_dtype"] == "float32"
    # Every dense matmul of the tower and head runs in bf16, forward and backward (the
    # MSE objective has none of its own); at most the attention-weights x values matmul
    # (forward and one backward, per layer) may run in float32 after a float32 softmax.
    dots = report["dot_general"]
    assert dots["bfloat16"] > 0 and dots.get("float32", 0) <= 2 * shape.layers
    # LayerNorm statistics stay float32.
    assert set(report["rsqrt"]) == {"float32"}
    f32 = benchmark.precision_report(*_tiny("float32"))
    assert "bfloat16" not in f32["dot_general"]


def test_bfloat16_softmax_runs_in_float32():
    report = benchmark.precision_report(*_tiny("bfloat16"))
    # softmax's max: only attention has one.
    assert set(report["reduce_max"]) == {"float32"}
