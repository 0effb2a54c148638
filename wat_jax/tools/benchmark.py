"""Throughput of the train step, the text encoder and the data pipeline.

    python -m wat_jax.tools.benchmark [--config=experiments/babel60.py:paper] \
        [--config.batch_size=80] [--config.model.dtype=bfloat16] \
        [--what=step,text,data,precision] [--steps=N] [--compare=torch]

The step is an experiment's own: the model, batch size, frames, compute dtype
and objective come from `--config` (default: BABEL-60's paper config, the
768-d, 8-layer post-norm tower on batches of 80 windows of 60 frames, MSE to two
1024-d text targets); only the input's joints, features and text dimension are
flags, since the config names a text encoder without its size. It times the
step on every local device and prints one JSON object per line: sequences/s,
the median step time (after warm-up, blocking on the results), FLOPs per step,
and model-FLOPs utilisation against the device's peak when it is known.
`--compare=torch` times the PyTorch reference (wat_jax/tools/bench_torch.py; the
paper's post-norm, first-frame, MSE model only) in the same process, in
alternating blocks of steps so that machine noise hits both, and prints the
ratio. launch/bench.sh runs it.
"""

import dataclasses
import importlib.util
import inspect
import json
import os
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

import wat_jax
from wat_jax import heap, parallel, train
from wat_jax.data import prepared
from wat_jax.data.pipeline import Batcher
from wat_jax.text.bank import TextBank
from wat_jax.errors import InputError, exits_on_input_error

# The checkout holding experiments/ (the default --config is one of its files).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(wat_jax.__file__)))

# Dense peak FLOP/s per device by compute dtype, matched against device_kind
# (first match wins). "float32" on NVIDIA is the TF32 tensor-core peak, which
# XLA uses for float32 matmuls at default precision; TPUs run float32 matmuls
# as several bf16 passes, so their float32 peak is left unknown.
PEAK_FLOPS = (
    ("H200", {"bfloat16": 989e12, "float32": 494e12}),
    ("H100 PCIe", {"bfloat16": 756e12, "float32": 378e12}),
    ("H100", {"bfloat16": 989e12, "float32": 494e12}),
    ("A100", {"bfloat16": 312e12, "float32": 156e12}),
    ("TPU v4", {"bfloat16": 275e12}),
    ("TPU v5 lite", {"bfloat16": 197e12}),
    ("TPU v5e", {"bfloat16": 197e12}),
    ("TPU v5p", {"bfloat16": 459e12}),
    ("TPU v5", {"bfloat16": 459e12}),  # v5p reports itself as "TPU v5"
)


@dataclasses.dataclass(frozen=True)
class Shape:
    """The benchmarked step's sizes: the experiment's model and batch, and its input."""

    batch_size: int
    frames: int
    joints: int
    features: int
    text_dim: int
    num_targets: int  # text targets per window (config.text.targets)
    num_classes: int
    width: int
    layers: int
    heads: int
    mlp_dim: int
    dropout: float
    dtype: str


def shape_of(config, joints: int = 25, features: int = 6, text_dim: int = 1024) -> Shape:
    """The step `config` trains, on windows [T, joints, features] and text_dim-d targets.

    The defaults are BABEL-60's (25 rows of 6 rotation values) and UAE-Large's 1024.
    """
    m, data = config.model, config.data
    return Shape(
        batch_size=config.batch_size,
        frames=data.window_frames,
        joints=joints,
        features=features,
        text_dim=text_dim,
        num_targets=len(config.text.targets),
        num_classes=len(data.classes) if "classes" in data else 60,
        width=m.width,
        layers=m.layers,
        heads=m.heads,
        mlp_dim=m.mlp_dim,
        dropout=m.dropout,
        dtype=m.dtype,
    )


def synthetic_batch(shape: Shape, seed: int = 0) -> dict:
    """A global batch of the train step's layout with random values (numpy)."""
    rng = np.random.default_rng(seed)
    b, t = shape.batch_size, shape.frames
    text = rng.standard_normal((b, shape.num_targets, shape.text_dim)).astype(np.float32)
    labels = np.zeros((b, shape.num_classes), np.float32)
    labels[np.arange(b), rng.integers(0, shape.num_classes, b)] = 1.0
    return {
        "motion": rng.standard_normal((b, t, shape.joints, shape.features)).astype(np.float32),
        "mask": np.ones((b, t), bool),  # the reference has no padding mask
        "labels": labels,
        "text": text / np.linalg.norm(text, axis=-1, keepdims=True),  # [B, K, D]
        "text_mask": np.ones((b, shape.num_targets), bool),
    }


def model_flops(shape: Shape) -> float:
    """Analytic matmul FLOPs of one train step (forward x 3: backward is twice forward)."""
    w, t, f = shape.width, shape.frames, shape.mlp_dim
    per_token_layer = 2 * (4 * w * w + 2 * t * w + 2 * w * f)  # qkv+out, scores+values, mlp
    per_token = shape.layers * per_token_layer + 2 * shape.joints * shape.features * w
    head = 2 * (w * shape.text_dim + shape.text_dim * shape.text_dim)
    forward = shape.batch_size * (t * per_token + head)
    return 3.0 * forward


def peak_flops(device_kind: str, dtype: str) -> float | None:
    """Dense peak FLOP/s of one device of `device_kind` in `dtype`; None when unknown."""
    for name, peaks in PEAK_FLOPS:
        if name.lower() in device_kind.lower():
            return peaks.get(dtype)
    return None


def xla_flops(compiled) -> float | None:
    """FLOPs XLA's cost analysis counts for one device's program; None when it has none."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):  # older jax: one dict per program
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


class JaxStep:
    """Our compiled train step on a fixed batch, timed step by step."""

    def __init__(self, config, shape: Shape, batch: dict, seed: int = 0):
        self.mesh = parallel.make_mesh()
        parallel.check_batch_size(shape.batch_size, self.mesh)
        model = train.create_model(config, shape.text_dim, shape.num_classes)
        tx = train.make_optimizer(config.optim, config.total_steps)
        self.state = parallel.replicate(train.create_train_state(model, tx, seed, batch), self.mesh)
        self.batch = parallel.shard_batch(batch, self.mesh, shape.batch_size)
        jitted = train.make_train_step(
            model, tx, config.loss, self.mesh, shape.batch_size, threshold=config.data.threshold
        )
        start = time.perf_counter()
        self.compiled = jitted.lower(self.state, self.batch).compile()
        self.compile_s = time.perf_counter() - start
        per_device = xla_flops(self.compiled)
        # The partitioned program is one device's share of the global batch.
        self.xla_flops = per_device * self.mesh.devices.size if per_device else None
        self.loss = float("nan")

    def run(self, steps: int) -> list[float]:
        """Times `steps` steps; returns each one's wall time in seconds."""
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self.state, metrics = self.compiled(self.state, self.batch)
            jax.block_until_ready((self.state, metrics))
            times.append(time.perf_counter() - start)
        self.loss = float(metrics["loss"])
        return times


def _summary(times: list[float], batch_size: int) -> dict:
    median = statistics.median(times)
    return {
        "steps": len(times),
        "median_step_s": median,
        "min_step_s": min(times),
        "mean_step_s": statistics.fmean(times),
        "sequences_per_sec": batch_size / median,
        "step_times_s": [round(t, 6) for t in times],
    }


def benchmark_step(
    config,
    shape: Shape,
    steps: int = 20,
    warmup: int = 2,
    compare: str = "",
    block: int = 5,
    threads: int = 0,
    matmul_flops_per_sec: float | None = None,
) -> list[dict]:
    """Times our train step (and the torch reference when `compare="torch"`).

    Args:
      config: the experiment config whose step is timed.
      shape: its sizes (`shape_of(config, ...)`).
      steps: timed steps per implementation.
      warmup: untimed steps first (our first call also waits for buffers).
      compare: "" or "torch".
      block: steps per block when alternating implementations.
      threads: torch intra-op threads (0: the machine's cores).
      matmul_flops_per_sec: the machine's matmul rate in the step's dtype (see
        `matmul_rate`); each record's `fraction_of_matmul_peak` is its analytic
        model FLOPs per second over it (None when not given).

    Returns:
      One record per implementation, and a `compare` record when comparing.
    """
    batch = synthetic_batch(shape)
    ours = JaxStep(config, shape, batch)
    runners = {"wat_jax": ours}
    if compare == "torch":
        from wat_jax.tools import bench_torch

        runners["torch"] = bench_torch.TorchStep(
            batch,
            shape.width,
            shape.layers,
            shape.heads,
            shape.mlp_dim,
            shape.dropout,
            threads=threads or _cores(),
        )
    elif compare:  # pragma: no cover - main's flag is an enum
        raise ValueError(f"--compare must be '' or 'torch', got {compare!r}")
    for runner in runners.values():
        runner.run(warmup)
    blocks = {name: [] for name in runners}
    order = list(runners)
    for i in range(0, steps, block):
        # ABBA order, so a slow drift in machine load does not favour either side.
        for name in order if (i // block) % 2 == 0 else order[::-1]:
            blocks[name].append(runners[name].run(min(block, steps - i)))
    times = {name: [t for b in runs for t in b] for name, runs in blocks.items()}

    device = jax.devices()[0]
    model = model_flops(shape)
    peak = peak_flops(device.device_kind, shape.dtype)
    records = []
    for name, runner in runners.items():
        record = {
            "what": "step",
            "impl": name,
            "batch_size": shape.batch_size,
            "dtype": shape.dtype,
            **_summary(times[name], shape.batch_size),
        }
        record["fraction_of_matmul_peak"] = (
            model / record["median_step_s"] / matmul_flops_per_sec if matmul_flops_per_sec else None
        )
        if name == "wat_jax":
            flops = ours.xla_flops or model
            median = record["median_step_s"]
            record.update(
                devices=ours.mesh.devices.size,
                device_kind=device.device_kind,
                compile_s=ours.compile_s,
                loss=ours.loss,
                flops_per_step=flops,
                flops_source="xla_cost_analysis" if ours.xla_flops else "analytic",
                model_flops_per_step=model,
                achieved_model_flops_per_sec=model / median,
                peak_flops_per_device=peak,
                mfu=model / median / (peak * ours.mesh.devices.size) if peak else None,
            )
        else:
            record.update(
                threads=runner.threads, torch_version=_torch_version(), model_flops_per_step=model
            )
        records.append(record)
    if compare:
        # Neighbouring blocks share the machine's load; their ratios are the fairest view.
        paired = [
            statistics.median(b) / statistics.median(a)
            for a, b in zip(blocks["wat_jax"], blocks[compare])
        ]
        ratio = statistics.median(paired)
        records.append(
            {
                "what": "compare",
                "against": compare,
                "torch_over_wat_jax_step_time": ratio,
                "block_ratios": paired,
                "median_ratio": records[1]["median_step_s"] / records[0]["median_step_s"],
                "min_ratio": records[1]["min_step_s"] / records[0]["min_step_s"],
                "wat_jax_faster": ratio >= 1.0,
            }
        )
    return records


def benchmark_data(
    shape: Shape,
    windows: int = 2048,
    batches: int = 200,
    descriptions_per_class: int = 16,
    *,
    threshold: float,
) -> dict:
    """Windows/s of Batcher.batch over a synthetic prepared split of `shape` (labels above
    `threshold`, config.data.threshold, are a window's classes).

    The split is written with prepared.write_split into a temporary directory
    and read back memory-mapped, as training reads it.
    """
    rng = np.random.default_rng(0)
    c, d = shape.num_classes, shape.text_dim
    labels = np.zeros((windows, c), np.float32)
    labels[np.arange(windows), rng.integers(0, c, windows)] = 1.0
    labels[rng.random(windows) < 0.2, rng.integers(0, c)] = 1.0
    lengths = rng.integers(shape.frames // 2, shape.frames + 1, windows)
    split = prepared.PreparedSplit(
        motion=rng.standard_normal((windows, shape.frames, shape.joints, shape.features)).astype(
            np.float32
        ),
        mask=np.arange(shape.frames)[None] < lengths[:, None],
        labels=labels,
        classes=[f"class_{i}" for i in range(c)],
        index=[{"source": "bench", "start_s": 0.0, "start_frame": 0}] * windows,
    )
    bank = TextBank(
        [f"class_{i}" for i in range(c)],
        rng.standard_normal((c, d)).astype(np.float32),
        rng.standard_normal((c * descriptions_per_class, d)).astype(np.float32),
        np.arange(c + 1) * descriptions_per_class,
    )
    order = np.argsort(-labels, axis=1, kind="stable")  # each window's classes first
    keys = np.where(np.take_along_axis(labels, order, 1) > threshold, order, -1)
    with tempfile.TemporaryDirectory(prefix="wat_jax_bench_") as workdir:
        prepared.write_split(workdir, "train", split)
        data = prepared.read_split(workdir, "train")
        batcher = Batcher(
            data.motion,
            data.mask,
            data.labels,
            keys,
            bank,
            ("name", "centroid"),
            shape.batch_size,
            slice(0, shape.batch_size),
            seed=0,
        )
        batcher.batch(0)
        times = []
        for i in range(1, batches + 1):
            start = time.perf_counter()
            batcher.batch(i * shape.batch_size)
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "what": "data",
        "windows": windows,
        "batches": batches,
        "batch_size": shape.batch_size,
        "median_batch_s": median,
        "windows_per_sec": shape.batch_size * len(times) / sum(times),
    }


def benchmark_text(batch_size: int, sentences: int = 256, compare: str = "") -> dict:
    """Sentences/s of the text encoder, from wat_jax.tools.text_bench when it exists."""
    if importlib.util.find_spec("wat_jax.tools.text_bench") is None:
        return {"what": "text", "skipped": "wat_jax.tools.text_bench is not in this checkout"}
    from wat_jax.tools import text_bench as bench

    wanted = {
        "batch_size": batch_size,
        "num_sentences": sentences,
        "compare_torch": compare == "torch",
    }
    accepted = inspect.signature(bench.benchmark_text_encoder).parameters
    try:
        result = bench.benchmark_text_encoder(**{k: v for k, v in wanted.items() if k in accepted})
    except InputError as e:  # e.g. the encoder's package is not installed here
        return {"what": "text", "skipped": str(e)}
    return {"what": "text", **(result if isinstance(result, dict) else {"result": result})}


def precision_report(config, shape: Shape) -> dict:
    """Dtypes the traced train step computes in, per primitive, and its params' and loss's.

    Matmuls are `dot_general`; softmax shows as `reduce_max` and `exp` (exact
    GELU's backward also uses `exp`), GELU as `erfc`, LayerNorm as `rsqrt`.
    """
    batch = synthetic_batch(shape)
    mesh = parallel.make_mesh()
    model = train.create_model(config, shape.text_dim, shape.num_classes)
    tx = train.make_optimizer(config.optim, config.total_steps)
    state = jax.eval_shape(lambda: train.create_train_state(model, tx, 0, batch))
    step = train.make_train_step(
        model, tx, config.loss, mesh, shape.batch_size, threshold=config.data.threshold
    )
    closed = jax.make_jaxpr(step)(state, batch)
    counts: dict[str, dict[str, int]] = {}
    _count_dtypes(closed.jaxpr, counts)
    new_state, metrics = jax.eval_shape(step, state, batch)
    return {
        "what": "precision",
        "dtype": shape.dtype,
        "param_dtypes": sorted({str(x.dtype) for x in jax.tree.leaves(new_state.params)}),
        "loss_dtype": str(metrics["loss"].dtype),
        "dot_general": counts.get("dot_general", {}),
        "exp": counts.get("exp", {}),
        "erfc": counts.get("erfc", {}),
        "rsqrt": counts.get("rsqrt", {}),
        "reduce_max": counts.get("reduce_max", {}),
    }


def _count_dtypes(jaxpr, counts: dict) -> None:
    """Per primitive, how many equations take an input of each dtype (recursing into sub-jaxprs)."""
    for eqn in jaxpr.eqns:
        dtype = str(eqn.invars[0].aval.dtype) if eqn.invars else "none"
        per = counts.setdefault(eqn.primitive.name, {})
        per[dtype] = per.get(dtype, 0) + 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(inner, "eqns"):
                    _count_dtypes(inner, counts)


def matmul_rate(dtype: str = "float32", size: int = 0, repeats: int = 5) -> dict:
    """The machine's own matmul limit: FLOP/s of a large square matmul in `dtype`.

    One jitted [size, size] x [size, size] product on the first device, timed
    `repeats` times after a warm-up (blocking on the result). On CPU one device
    already uses every core, so that is the machine's rate; on accelerators the
    rate is per device and `machine_matmul_flops_per_sec` multiplies it by the
    local device count. `size` 0 picks 2048 on CPU and 8192 elsewhere (big
    enough to be compute-bound).

    Returns:
      {"matmul_size", "matmul_dtype", "matmul_flops_per_sec" (best run, per
      device), "matmul_median_flops_per_sec", "machine_matmul_flops_per_sec"}.
    """
    device = jax.devices()[0]
    size = size or (2048 if device.platform == "cpu" else 8192)
    rng = np.random.default_rng(0)
    a, b = (
        jax.device_put(jax.numpy.asarray(rng.standard_normal((size, size)), dtype), device)
        for _ in range(2)
    )
    product = jax.jit(lambda x, y: x @ y).lower(a, b).compile()
    jax.block_until_ready(product(a, b))
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        jax.block_until_ready(product(a, b))
        times.append(time.perf_counter() - start)
    flops = 2.0 * size**3
    per_device = flops / min(times)
    devices = 1 if device.platform == "cpu" else jax.local_device_count()
    return {
        "matmul_size": size,
        "matmul_dtype": dtype,
        "matmul_flops_per_sec": per_device,
        "matmul_median_flops_per_sec": flops / statistics.median(times),
        "machine_matmul_flops_per_sec": per_device * devices,
    }


def machine_record(dtype: str | None = "float32", matmul_size: int = 0) -> dict:
    """Where the numbers come from, with the machine's matmul rate in `dtype` (None: skip)."""
    device = jax.devices()[0]
    record = {
        "what": "machine",
        "platform": device.platform,
        "device_kind": device.device_kind,
        "local_devices": jax.local_device_count(),
        "cpu_cores": _cores(),
        "cpu_model": _cpu_model(),
        "load_average": _load_average(),
        "jax_version": jax.__version__,
        "python": sys.version.split()[0],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # "kept": freed memory stays in the process for reuse (wat_jax/heap.py)
        "heap": heap.state(),
    }
    if dtype:
        record.update(matmul_rate(dtype, matmul_size))
    return record


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other work on a shared machine skews timings."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _torch_version() -> str | None:
    torch = sys.modules.get("torch")
    return torch.__version__ if torch else None


def reference_mismatch(config) -> list[str]:
    """How `config`'s step differs from the PyTorch reference's (empty: comparable)."""
    want = {"model.pre_norm": False, "model.pooling": "first", "loss.name": "mse"}
    have = {
        "model.pre_norm": config.model.pre_norm,
        "model.pooling": config.model.pooling,
        "loss.name": config.loss.name,
    }
    return [f"{k}={have[k]!r} (the reference has {v!r})" for k, v in want.items() if have[k] != v]


@exits_on_input_error
def main(argv):
    from absl import app, flags

    del argv
    f = flags.FLAGS
    config = f.config
    shape = shape_of(config, f.joints, f.features, f.text_dim)
    what = [w.strip() for w in f.what.split(",") if w.strip()]
    unknown = set(what) - {"step", "text", "data", "precision"}
    if unknown:
        raise app.UsageError(f"--what: unknown {sorted(unknown)}; use step,text,data,precision")
    compare = f.compare
    if compare == "torch" and importlib.util.find_spec("torch") is None:
        raise app.UsageError("--compare=torch needs torch importable (see launch/bench.sh)")
    mismatch = reference_mismatch(config) if compare == "torch" else []
    if mismatch:
        raise app.UsageError(
            "--compare=torch times the paper's model; this config has " + ", ".join(mismatch)
        )
    emit = lambda record: print(json.dumps(record), flush=True)
    machine = machine_record(shape.dtype if "step" in what else None, f.matmul_size)
    emit(machine)
    step_rate = None
    if "precision" in what:
        emit(precision_report(config, shape))
    if "step" in what:
        for record in benchmark_step(
            config,
            shape,
            f.steps,
            f.warmup,
            compare,
            f.block,
            f.threads,
            machine.get("machine_matmul_flops_per_sec"),
        ):
            emit(record)
            if record.get("impl") == "wat_jax":
                step_rate = record["sequences_per_sec"]
    if "data" in what:
        record = benchmark_data(
            shape, f.data_windows, f.data_batches, threshold=config.data.threshold
        )
        if step_rate:
            record["times_faster_than_step"] = record["windows_per_sec"] / step_rate
        emit(record)
    if "text" in what:
        emit(benchmark_text(f.text_batch_size, f.text_sentences, compare))


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file(
        "config",
        os.path.join(ROOT, "experiments", "babel60.py") + ":paper",
        "The experiment whose train step is timed (model, batch, frames, dtype, loss).",
        lock_config=True,
    )
    flags.DEFINE_string("what", "step,text,data", "Comma list of step, text, data, precision.")
    flags.DEFINE_integer("steps", 20, "Timed steps per implementation.")
    flags.DEFINE_integer("warmup", 2, "Untimed steps before timing.")
    flags.DEFINE_integer("block", 5, "Steps per block when alternating with --compare.")
    flags.DEFINE_enum("compare", "", ["", "torch"], "Also time the PyTorch reference.")
    flags.DEFINE_integer("threads", 0, "Torch intra-op threads; 0: the machine's cores.")
    flags.DEFINE_integer(
        "matmul_size", 0, "Side of the square matmul timed as the machine's limit; 0: auto."
    )
    flags.DEFINE_integer("joints", 25, "Skeleton rows per frame of the synthetic input.")
    flags.DEFINE_integer("features", 6, "Values per row of the synthetic input.")
    flags.DEFINE_integer("text_dim", 1024, "Text encoder dimension (the config's encoder's).")
    flags.DEFINE_integer("data_windows", 2048, "Windows in the synthetic prepared split.")
    flags.DEFINE_integer("data_batches", 200, "Batches timed for the data pipeline.")
    flags.DEFINE_integer("text_batch_size", 64, "Sentences per text encoder call.")
    flags.DEFINE_integer("text_sentences", 256, "Sentences per timed text encoder run.")


def run() -> None:
    """The command line (also the `wat-jax-benchmark` console script)."""
    from absl import app

    _define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
