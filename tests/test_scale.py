"""The scale tool runs every stage at two tiny sizes and reports time and memory for each."""

import json

import pytest

from tests import cli
from wat_jax.tools import scale


def _run(args, tmp_path, timeout=120):
    return cli.run(["wat_jax.tools.scale", *args], timeout=timeout, HF_HUB_OFFLINE="1")


def test_scale_reports_every_stage_at_each_size(tmp_path):
    out = tmp_path / "scale.jsonl"
    proc = _run(
        ["--task=densegait", "--variant=smoke", "--sizes=24,40", f"--out={out}"], tmp_path, 240
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["size"], r["stage"]) for r in records] == [
        (size, stage) for size in (24, 40) for stage in scale.STAGES
    ]
    for r in records:
        assert r["task"] == "densegait"
        assert r["seconds"] > 0 and r["cpu_seconds"] >= 0, r
        assert r["peak_rss_mb"] > 0 and r["peak_anon_mb"] > 0, r
        assert r["peak_rss_mb"] >= r["start_rss_mb"] - 1.0, r  # the peak is over the stage
        assert r["peak_anon_mb"] >= r["start_anon_mb"] - 1.0, r
    by = {(r["size"], r["stage"]): r["counts"] for r in records}
    for size in (24, 40):
        assert by[(size, "synth")] == {"tracklets": size}
        windows = by[(size, "prepare")]
        assert windows["train_windows"] + windows["val_windows"] >= size  # >= 1 window a track
        assert by[(size, "batches")]["windows"] == windows["train_windows"]
        assert by[(size, "eval")]["num_gallery"] == windows["val_windows"]
        assert by[(size, "search")]["gallery"] == windows["val_windows"]
        assert by[(size, "embed")]["keys"] <= size  # one key per distinct attribute set
    assert "peak MB" in proc.stdout  # the table follows the JSON lines


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sizes=0"], "--sizes: comma-separated positive integers"),
        (["--sizes=2k"], "--sizes: comma-separated positive integers"),
        (["--stages=eval,prepare"], "--stages: stages run in the order"),
        (["--stages=train"], "--stages: unknown stages ['train']"),
    ],
)
def test_bad_flags_are_one_error_line(tmp_path, args, message):
    proc = _run(args, tmp_path, 60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), proc.stderr


def test_measure_sees_an_allocation():
    """In a fresh interpreter: inside the suite's long-lived process a 64 MB block can land
    in memory the allocator already holds resident, and the peak then does not move (CI
    saw peak == start after 500 tests)."""
    import subprocess
    import sys

    program = (
        "import json, numpy as np\n"
        "from wat_jax.tools import scale\n"
        "def allocate():\n"
        "    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MB, touched\n"
        "    return float(block.sum())\n"
        "print(json.dumps(scale.measure(allocate)[1]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["peak_rss_mb"] - record["start_rss_mb"] >= 60, record


@pytest.mark.parametrize("metric", ["ndcg", "ap", "recall"])
def test_ranking_metrics_hold_one_chunk_not_the_whole_matrix(monkeypatch, metric):
    """The [Q, N] inputs are converted and checked a chunk of rows at a time: extra memory
    stays far below one full-size copy (the old float64 gains copy was 2x the input), and
    the numbers are exactly those of the input converted whole."""
    import tracemalloc

    import numpy as np

    from wat_jax import metrics

    rng = np.random.default_rng(0)
    q, n = 400, 20_000
    scores = rng.random((q, n), dtype=np.float32)
    gains = (rng.random((q, n), dtype=np.float32) < 0.05) * rng.random((q, n), dtype=np.float32)
    relevant = (gains > 0.5).astype(np.float32)  # float relevance: > 0 counts
    fn = {
        "ndcg": lambda g: metrics.ndcg_at_k(scores, g, 10),
        "ap": lambda g: metrics.average_precision(scores, g),
        "recall": lambda g: metrics.recall_at_k(scores, g, 5),
    }[metric]
    given = gains if metric == "ndcg" else relevant
    # What the metric computed from before: the input converted whole, up front.
    converted = given.astype(np.float64) if metric == "ndcg" else given.astype(bool)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 1 << 16)
    expected = fn(converted)
    tracemalloc.start()
    try:
        chunked = fn(given)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(chunked, expected)
    assert peak < gains.nbytes / 8, (peak, gains.nbytes)  # a full bool copy is 1/4


def test_annotations_reader_keeps_rows_compact(tmp_path):
    """read_annotations holds float32 rows, not lists of Python floats: its peak memory
    per CSV row stays well under the ~2 KB the lists took; the labels are unchanged."""
    import tracemalloc

    import numpy as np

    from wat_jax.data import densegait, gait_attributes

    rng = np.random.default_rng(1)
    n, columns = 5000, gait_attributes.COLUMNS
    values = rng.random((n, len(columns)))
    lines = [",".join([gait_attributes.TRACK_COLUMN, gait_attributes.FILE_COLUMN, *columns])]
    lines += [
        ",".join([str(i), f"t{i}.npy", *(f"{v:.4f}" for v in row)]) for i, row in enumerate(values)
    ]
    path = tmp_path / "annotations.csv"
    path.write_text("\n".join(lines) + "\n")
    tracemalloc.start()
    try:
        track_ids, files, labels, _ = densegait.read_annotations(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(track_ids) == len(files) == n
    assert labels.dtype == np.float32 and labels.shape == (n, len(columns))
    expected = np.asarray([[float(f"{v:.4f}") for v in row] for row in values], np.float32)
    np.testing.assert_array_equal(labels, expected)
    assert peak / n < 1000, f"{peak / n:.0f} bytes per row"


def test_babel_split_streams_its_windows_to_scratch(tmp_path):
    """build_split with a scratch folder gives the same split as in memory, memory-mapped,
    without holding the windows (the in-memory path holds them twice: list and stack)."""
    import tracemalloc

    import numpy as np

    from experiments import babel60 as experiment
    from wat_jax.data import babel, synthetic_babel

    cfg = experiment.get_config("smoke").data
    cfg.synthetic.num_train, cfg.synthetic.num_val = 60, 2
    amass_root, babel_dir = synthetic_babel.write_synthetic(str(tmp_path / "raw"), cfg, 0)

    def build(scratch):
        tracemalloc.start()
        try:
            data, report = babel.build_split(cfg, amass_root, babel_dir, "train", 0, scratch)
            return data, report, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    memory, report_a, peak_memory = build(None)
    streamed, report_b, peak_streamed = build(str(tmp_path / "scratch"))
    assert isinstance(streamed.motion, np.memmap)
    np.testing.assert_array_equal(streamed.motion, memory.motion)
    np.testing.assert_array_equal(streamed.labels, memory.labels)
    assert streamed.index == memory.index
    report_a.pop("seconds", None), report_b.pop("seconds", None)
    assert report_a == report_b
    nbytes = memory.motion.nbytes
    assert nbytes > 2_000_000  # enough windows for the peaks to tell the paths apart
    assert peak_memory > 1.5 * nbytes, (peak_memory, nbytes)  # list, then its stack
    assert peak_memory - peak_streamed > 0.75 * nbytes, (peak_streamed, peak_memory, nbytes)
