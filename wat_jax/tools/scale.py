"""How every stage grows with the dataset: time and peak memory per stage per size.

    python -m wat_jax.tools.scale --task=densegait --sizes=2500,25000
    python -m wat_jax.tools.scale --task=babel60 --sizes=280,1400 --out=scale.jsonl

For each size, a fresh process in a fresh temporary workdir runs the library's own
stages on synthetic data written in the real formats:
  synth       the synthetic raw files (DenseGait CSV + .npy; AMASS .npz + BABEL .json)
  prepare     the task's real loader over those files (task.prepare)
  describe    descriptions with the template backend (task.describe)
  embed       the text bank through the frozen text encoder (task.embed), cache empty
  batches     one epoch of train batches from data.pipeline.Batcher (no training step)
  checkpoint  an untrained model's state and metadata saved as step 1 (what eval reads)
  eval        the eval stage on that checkpoint (evaluate.evaluate: restore, embed the
              val gallery, rank, metrics, pictures)
  search      the gallery index build (gallery.build_index)
A size is DenseGait tracklets (data.synthetic.num_tracks) or BABEL sequences per split
(data.synthetic.num_train = num_val; the demo has 280).

Each stage prints one JSON line: seconds (wall), cpu_seconds, peak_rss_mb (the
process's VmHWM over the stage, reset before it through /proc/self/clear_refs; it
counts pages of memory-mapped files read), peak_anon_mb (the largest anonymous resident
memory sampled every 20 ms), start_rss_mb and start_anon_mb (before the stage: the
difference from the peak is what the stage itself allocates), and the stage's item
counts. A table follows at the end.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from absl import app, flags

from wat_jax.errors import InputError, exits_on_input_error, fail

TASKS = ("densegait", "babel60")
STAGES = ("synth", "prepare", "describe", "embed", "batches", "checkpoint", "eval", "search")
VARIANTS = ("smoke", "demo")

flags.DEFINE_enum("task", "densegait", TASKS, "Which task's data and stages.")
flags.DEFINE_string(
    "sizes",
    "",
    "Comma-separated sizes: DenseGait tracklets, or BABEL sequences per split. "
    "Default: the demo's (2500 or 280).",
)
flags.DEFINE_enum(
    "variant", "demo", VARIANTS, "Experiment variant for model, describe and text settings."
)
flags.DEFINE_string("stages", ",".join(STAGES), "Comma-separated stages, in order.")
flags.DEFINE_string("out", "", "Also write the JSON lines to this file.")
flags.DEFINE_string("workdir_root", "", "Where the per-size workdirs go (a temp folder if empty).")
flags.DEFINE_bool("keep", False, "Keep the per-size workdirs.")
flags.DEFINE_integer("timeout_s", 0, "Give up on a size after this many seconds (0: never).")
flags.DEFINE_string("worker", "", "Internal: run the stages of one size in this workdir.")
FLAGS = flags.FLAGS

DEMO_SIZE = {"densegait": 2500, "babel60": 280}
_MB = 1024.0 * 1024.0


# ----------------------------------------------------------------- memory readings


def _status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (0 where the kernel does not give it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _AnonSampler:
    """Samples RssAnon every `every_s` on a thread; `peak_kb` is the largest seen."""

    def __init__(self, every_s: float = 0.02):
        self.every_s, self.peak_kb = every_s, _status_kb("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.every_s):
            self.peak_kb = max(self.peak_kb, _status_kb("RssAnon"))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _status_kb("RssAnon"))


def measure(fn):
    """Runs fn(); returns (its result, {seconds, cpu_seconds, peak/start memory in MB})."""
    reset = _reset_peak()
    start_rss, start_anon = _status_kb("VmRSS"), _status_kb("RssAnon")
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with _AnonSampler() as sampler:
        result = fn()
    seconds = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    peak = _status_kb("VmHWM") if reset else usage1.ru_maxrss
    return result, {
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "peak_rss_mb": round(peak / 1024.0, 1),
        "peak_anon_mb": round(sampler.peak_kb / 1024.0, 1),
        "start_rss_mb": round(start_rss / 1024.0, 1),
        "start_anon_mb": round(start_anon / 1024.0, 1),
    }


# ----------------------------------------------------------------- one size, in-process


def experiment_config(task: str, variant: str, size: int, workdir: str):
    """The experiment's config at `variant`, resized to `size`, texts cached in the workdir."""
    import importlib.util

    import wat_jax

    root = os.path.dirname(os.path.dirname(os.path.abspath(wat_jax.__file__)))
    path = os.path.join(root, "experiments", f"{task}.py")
    spec = importlib.util.spec_from_file_location(f"_scale_experiment_{task}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    if task == "densegait":
        config.data.synthetic.num_tracks = size
    else:
        config.data.synthetic.num_train = size
        config.data.synthetic.num_val = size
    config.describe.backend = "template"
    config.text.cache_dir = os.path.join(workdir, "text_cache")  # every size embeds afresh
    config.total_steps = 1
    return config


def _synth(task_name: str, config, workdir: str) -> dict:
    """The --task's synthetic raw files at the config's size (the tool picks the generator)."""
    raw = os.path.join(workdir, "raw")
    if task_name == "densegait":
        from wat_jax.data.synthetic_densegait import write_synthetic

        write_synthetic(raw, config.data, config.seed)
        return {"tracklets": int(config.data.synthetic.num_tracks)}
    from wat_jax.data.synthetic_babel import write_synthetic

    write_synthetic(raw, config.data, config.seed)
    s = config.data.synthetic
    return {"sequences": int(s.num_train + s.num_val)}


def _prepare(config, workdir: str, task) -> dict:
    import contextlib
    import io as text_io

    from wat_jax.data import prepared

    with contextlib.redirect_stdout(text_io.StringIO()):  # the report table
        task.prepare(config, workdir)
    return {
        f"{split}_windows": len(prepared.read_split(workdir, split)) for split in prepared.SPLITS
    }


def _bank_counts(workdir: str) -> dict:
    from wat_jax.text import bank as text_bank

    bank = text_bank.load(workdir)
    return {"keys": len(bank.keys), "texts": len(bank.keys) + len(bank.descriptions)}


def _descriptions(workdir: str) -> dict:
    path = os.path.join(workdir, "descriptions.jsonl")
    with open(path) as f:
        return {"descriptions": sum(1 for line in f if line.strip())}


def _batches(config, workdir: str, task) -> dict:
    from wat_jax import parallel

    mesh = parallel.make_mesh(config.num_devices or None)
    rows = parallel.process_rows(config.batch_size, mesh)
    batcher = task.train_batcher(config, workdir, rows)
    n, b = batcher.num_examples, config.batch_size
    count = 0
    for position in range(0, n, b):
        batch = batcher.batch(position)
        count += 1
    del batch
    return {"batches": count, "windows": n, "batch_size": b}


def _checkpoint(config, workdir: str, task) -> dict:
    from wat_jax import checkpointing, parallel, train
    from wat_jax.state import (
        ModelDims,
        create_model,
        create_train_state,
        make_optimizer,
    )

    mesh = parallel.make_mesh(config.num_devices or None)
    rows = parallel.process_rows(config.batch_size, mesh)
    example = task.train_batcher(config, workdir, rows).batch(0)
    dims = ModelDims.of_batch(example)
    model = create_model(config, dims.text_dim, dims.num_classes)
    tx = make_optimizer(config.optim, config.total_steps)
    state = parallel.replicate(create_train_state(model, tx, config.seed, example), mesh)
    meta = train.run_meta(config, workdir, task, dims)
    ckpt = checkpointing.Checkpointer(workdir, 0, 1)
    try:
        ckpt.save(1, state, dict(meta, position=0, step=1))
    finally:
        ckpt.close()
    return {"step": 1}


def _eval(config, workdir: str, task) -> dict:
    from wat_jax import evaluate

    path = evaluate.evaluate(config, workdir, task)
    with open(path) as f:
        result = json.load(f)
    keys = ("num_gallery", "num_queries", "num_windows")
    return {k: result[k] for k in keys if k in result}


def _search(config, workdir: str) -> dict:
    from wat_jax import gallery

    index = gallery.build_index(config, workdir, "val", 1)
    return {"gallery": int(index.meta["num_windows"])}


def run_size(task_name: str, variant: str, size: int, workdir: str, stages, emit) -> None:
    """Runs `stages` of one size in `workdir`, calling emit(record) after each."""
    from absl import logging

    from wat_jax import tasks
    from wat_jax.reporting.run_log import quiet_library_logs

    quiet_library_logs()
    logging.set_verbosity(logging.WARNING)
    config = experiment_config(task_name, variant, size, workdir)
    task = tasks.get_task(config.task)
    steps = {
        "synth": lambda: _synth(task_name, config, workdir),
        "prepare": lambda: _prepare(config, workdir, task),
        "describe": lambda: (task.describe(config, workdir), _descriptions(workdir))[1],
        "embed": lambda: (task.embed(config, workdir), _bank_counts(workdir))[1],
        "batches": lambda: _batches(config, workdir, task),
        "checkpoint": lambda: _checkpoint(config, workdir, task),
        "eval": lambda: _eval(config, workdir, task),
        "search": lambda: _search(config, workdir),
    }
    for stage in stages:
        counts, record = measure(steps[stage])
        emit({"task": task_name, "size": size, "stage": stage, **record, "counts": counts})


# ----------------------------------------------------------------- the driver


def parse_sizes(text: str, task: str) -> list[int]:
    if not text.strip():
        return [DEMO_SIZE[task]]
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise fail("--sizes", f"comma-separated positive integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise fail("--sizes", f"comma-separated positive integers, got {text!r}")
    return sizes


def parse_stages(text: str) -> list[str]:
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise fail("--stages", f"unknown stages {unknown}; use some of {', '.join(STAGES)}")
    order = [s for s in STAGES if s in stages]
    if stages != order:
        raise fail("--stages", f"stages run in the order {', '.join(STAGES)}")
    return stages


def run_worker(task: str, variant: str, size: int, workdir: str, stages, emit, timeout_s=0):
    """Runs one size in a fresh process, passing each stage's record to emit() as soon as
    the stage ends (so a run cut short keeps what it measured); returns the records."""
    cmd = [
        sys.executable,
        "-m",
        "wat_jax.tools.scale",
        f"--task={task}",
        f"--variant={variant}",
        f"--sizes={size}",
        f"--stages={','.join(stages)}",
        f"--worker={workdir}",
    ]
    records = []
    # glibc returns freed memory in the worker, so each stage's peak is its own rather than
    # the high-water mark of the stages before it (wat_jax/heap.py).
    env = dict(os.environ, WAT_JAX_HEAP="release")
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        timer = None
        if timeout_s:
            timer = threading.Timer(timeout_s, proc.kill)
            timer.start()
        try:
            for line in proc.stdout:
                if line.startswith("{"):
                    records.append(json.loads(line))
                    emit(records[-1])
            code = proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if code != 0:
            err.seek(0)
            tail = err.read().strip().splitlines()[-1:] or ["(no output)"]
            raise fail(f"--sizes={size}", f"the {task} run failed (exit {code}): {tail[0]}")
    return records


def table(records: list[dict]) -> str:
    """Records as a text table: one row per (size, stage); `+anon MB` is the stage's own
    growth of anonymous memory (its peak less what was resident before it)."""
    head = f"{'task':<10} {'size':>7} {'stage':<10} {'s':>8} {'cpu s':>8} {'peak MB':>8} "
    head += f"{'anon MB':>8} {'+anon MB':>8}  counts"
    lines = [head, "-" * len(head)]
    for r in records:
        counts = " ".join(f"{k}={v}" for k, v in r["counts"].items())
        grown = r["peak_anon_mb"] - r.get("start_anon_mb", r["peak_anon_mb"])
        lines.append(
            f"{r['task']:<10} {r['size']:>7} {r['stage']:<10} {r['seconds']:>8.2f} "
            f"{r['cpu_seconds']:>8.2f} {r['peak_rss_mb']:>8.1f} {r['peak_anon_mb']:>8.1f} "
            f"{grown:>8.1f}  {counts}"
        )
    return "\n".join(lines)


@exits_on_input_error
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    sizes = parse_sizes(FLAGS.sizes, FLAGS.task)
    stages = parse_stages(FLAGS.stages)
    if FLAGS.worker:
        if len(sizes) != 1:
            raise InputError("--worker: runs exactly one size")

        def emit(record):
            print(json.dumps(record), flush=True)

        run_size(FLAGS.task, FLAGS.variant, sizes[0], FLAGS.worker, stages, emit)
        return
    root = FLAGS.workdir_root or tempfile.mkdtemp(prefix="wat_jax_scale_")
    os.makedirs(root, exist_ok=True)
    records = []
    out = open(FLAGS.out, "a") if FLAGS.out else None  # noqa: SIM115 (closed below)

    def emit(record):
        print(json.dumps(record), flush=True)
        if out is not None:
            out.write(json.dumps(record) + "\n")
            out.flush()

    try:
        for size in sizes:
            workdir = tempfile.mkdtemp(prefix=f"{FLAGS.task}_{size}_", dir=root)
            try:
                records += run_worker(
                    FLAGS.task, FLAGS.variant, size, workdir, stages, emit, FLAGS.timeout_s
                )
            finally:
                if not FLAGS.keep:
                    shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if out is not None:
            out.close()
        if not FLAGS.keep and not FLAGS.workdir_root:
            shutil.rmtree(root, ignore_errors=True)
    print(table(records))


def run() -> None:
    """The command line (also the `wat-jax-scale` console script)."""
    app.run(main)


if __name__ == "__main__":
    run()
