"""Gallery search: ranking with known nearest neighbours, the saved index and its
fingerprint, motion-to-text through a real checkpoint, and one-line CLI errors."""

import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from tests import cli
from wat_jax import artifact, checkpointing, fileio, gallery, metrics, parallel, tasks, train
from wat_jax.tools import search
from wat_jax.data import gait_attributes
from wat_jax.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_experiment(name: str, variant: str = "smoke"):
    path = os.path.join(ROOT, "experiments", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"{name}_cfg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    config.num_devices = 1
    return config


def write_init_checkpoint(config, workdir: str, step: int = 3) -> None:
    """Writes config.json and a checkpoint of freshly initialised params.

    Searching needs a checkpoint, not a trained one: a window's own embedding must
    come back first whatever the weights. Skipping training keeps the test fast.
    """
    fileio.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
    mesh = parallel.make_mesh(1)
    task = tasks.get_task(config.task)
    example = task.train_batcher(
        config, workdir, parallel.process_rows(config.batch_size, mesh)
    ).batch(0)
    model = train.create_model(config, example["text"].shape[-1], example["labels"].shape[-1])
    tx = train.make_optimizer(config.optim, config.total_steps)
    state = jax.jit(lambda: train.create_train_state(model, tx, config.seed, example))()
    ckpt = checkpointing.Checkpointer(workdir, 1, 3)
    meta = train.run_meta(config, workdir, task, train.ModelDims.of_batch(example))
    ckpt.save(step, parallel.replicate(state, mesh), dict(meta, position=0, step=step))
    ckpt.close()


@pytest.fixture(scope="module")
def babel_workdir(tmp_path_factory):
    """experiments/babel60.py:smoke prepared, described, embedded; an untrained checkpoint."""
    workdir = str(tmp_path_factory.mktemp("babel_search"))
    config = load_experiment("babel60")
    config.text.cache_dir = os.path.join(workdir, "text_cache")
    task = tasks.get_task("babel60")
    for stage in ("prepare", "describe", "embed"):
        getattr(task, stage)(config, workdir)
    write_init_checkpoint(config, workdir)
    return workdir, config


def _crafted_index(n=50, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rows = [
        {
            "row": i,
            "source": f"clip{i}",
            "start_s": i * 0.5,
            "start_frame": i * 15,
            "labels": [f"c{i % 3}"],
        }
        for i in range(n)
    ]
    texts = rng.standard_normal((4, dim)).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    return gallery.Index(
        emb,
        np.zeros((n, 3), np.float32),
        rows,
        texts,
        ["k0", "k1", "k2", "k3"],
        ["p0", "p1", "p2", "p3"],
        {},
    )


def test_search_returns_the_known_nearest_window_first():
    index = _crafted_index()
    rng = np.random.default_rng(1)
    targets = [7, 0, 49]
    # Each query is a window's embedding plus small noise, scaled: cosine ignores scale.
    queries = 3.0 * (index.embeddings[targets] + 0.05 * rng.standard_normal((3, 16)))
    hits = index.search(queries, k=5)
    assert [h[0]["row"] for h in hits] == targets
    assert [h[0]["source"] for h in hits] == [f"clip{t}" for t in targets]
    for h in hits:  # ranks 1..5, scores descending, agreeing with a brute-force ranking
        assert [x["rank"] for x in h] == [1, 2, 3, 4, 5]
        assert all(a["score"] >= b["score"] for a, b in zip(h, h[1:]))
    cos = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ index.embeddings.T
    np.testing.assert_array_equal(
        [[x["row"] for x in h] for h in hits], np.argsort(-cos, axis=1)[:, :5]
    )


def test_top_k_breaks_ties_by_row_and_caps_k():
    scores = np.array([[0.5, 0.9, 0.5, 0.9, 0.1, 0.5]])
    assert metrics.top_k(scores, 3).tolist() == [[1, 3, 0]]
    assert metrics.top_k(scores, 4).tolist() == [[1, 3, 0, 2]]
    assert metrics.top_k(scores, 100).tolist() == [[1, 3, 0, 2, 5, 4]]


def test_nearest_texts_ranks_the_bank():
    index = _crafted_index()
    hits = index.nearest_texts(index.text_emb[[2]] + 0.01, k=2)[0]
    assert hits[0]["key"] == "k2" and hits[0]["phrase"] == "p2" and len(hits) == 2


def test_index_is_built_once_then_loaded_and_rebuilt_when_the_checkpoint_changes(babel_workdir):
    workdir, config = babel_workdir
    timings = {}
    index = gallery.load_or_build_index(config, workdir, "val", timings=timings)
    assert "build_index" in timings
    assert index.path == gallery.index_dir(workdir, "val", 3)
    for name in gallery.INDEX_FILES + ("meta.json",):
        assert os.path.exists(os.path.join(index.path, name)), name
    windows = tasks.get_task(config.task).windows(config, workdir, "val")
    bank = tasks.get_task(config.task).bank(config, workdir)
    assert index.embeddings.shape == (len(windows), bank.dim)
    assert index.text_keys == bank.keys == windows.classes
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-5)
    assert [r["source"] for r in index.rows] == [r["source"] for r in windows.index]

    # A window's own embedding finds that window first (untrained weights suffice).
    rows = [0, 5, len(windows) - 1]
    hits = index.search(index.embeddings[rows], k=3)
    assert [h[0]["row"] for h in hits] == rows
    first = np.asarray(windows.labels[0]) > 0.5
    assert hits[0][0]["labels"] == [c for c, on in zip(windows.classes, first) if on]

    timings = {}
    again = gallery.load_or_build_index(config, workdir, "val", timings=timings)
    assert "load_index" in timings and "build_index" not in timings
    np.testing.assert_array_equal(again.embeddings, index.embeddings)
    assert again.meta["fingerprint"] == index.meta["fingerprint"]

    # A rewritten checkpoint (same step, new files) makes the saved index stale.
    ckpt_dir = os.path.join(checkpointing.checkpoint_dir(workdir), "3")
    some_file = next(os.path.join(b, f) for b, _, fs in os.walk(ckpt_dir) for f in fs)
    st = os.stat(some_file)
    os.utime(some_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    timings = {}
    rebuilt = gallery.load_or_build_index(config, workdir, "val", timings=timings)
    assert "build_index" in timings
    assert rebuilt.meta["fingerprint"] != index.meta["fingerprint"]


def test_text_queries_rank_by_cosine_to_the_encoded_query(babel_workdir):
    from wat_jax.text import bank

    workdir, config = babel_workdir
    queries = ["a person jumping up and down", "someone walks forward"]
    answer = search.run_search(workdir, queries=queries, k=4)
    index = gallery.load_or_build_index(config, workdir, "val")
    # The same ranking computed independently: encoder -> (identity) projection -> cosine.
    scores = metrics.cosine(bank.encode(queries, config), index.embeddings)
    for q, result in enumerate(answer["results"]):
        assert result["query"] == queries[q]
        assert [h["row"] for h in result["hits"]] == list(np.argsort(-scores[q])[:4])
        np.testing.assert_allclose(
            [h["score"] for h in result["hits"]], np.sort(scores[q])[::-1][:4], atol=1e-5
        )
    assert answer["timings_ms"]["rank"] < 1000


def test_motion_query_finds_the_text_nearest_its_window(babel_workdir, tmp_path):
    workdir, config = babel_workdir
    index = gallery.load_or_build_index(config, workdir, "val")
    windows = tasks.get_task(config.task).windows(config, workdir, "val")
    row = 5
    frames = int(windows.mask[row].sum())
    path = str(tmp_path / "window.npy")
    np.save(path, windows.motion[row][:frames][None])  # [1, T, J, F], real frames only
    answer = search.run_search(workdir, motion_path=path, k=3)
    hits = answer["results"][0]["hits"]
    expected = index.nearest_texts(index.embeddings[[row]], k=3)[0]
    assert [h["key"] for h in hits] == [h["key"] for h in expected]
    assert all(h["key"] in windows.classes and h["phrase"] == h["key"] for h in hits)
    np.testing.assert_allclose(
        [h["score"] for h in hits], [h["score"] for h in expected], atol=1e-5
    )


def test_densegait_keys_read_as_phrases():

    config = load_experiment("densegait")
    sets = [(0, 12), (5,), ()]
    keys = [gait_attributes.attribute_set_key(s) for s in sets]
    phrases = tasks.get_task(config.task).key_phrases(config, keys + ["NotAnAttribute"])
    assert phrases[:3] == [gait_attributes.describe_attributes(s) for s in sets]
    assert "backpack" in phrases[0] and phrases[3] == "NotAnAttribute"


def test_bad_input_raises_input_error(babel_workdir, tmp_path):
    workdir, config = babel_workdir
    with pytest.raises(InputError, match="empty query"):
        search.run_search(workdir, queries=["  "])
    with pytest.raises(InputError, match="top_k"):
        search.run_search(workdir, queries=["walk"], k=0)
    long = str(tmp_path / "long.npy")
    np.save(long, np.zeros((999, 25, 6), np.float32))
    with pytest.raises(InputError, match="999 frames"):
        search.run_search(workdir, motion_path=long)
    with pytest.raises(InputError, match="not both"):
        search.run_search(workdir, queries=["walk"], motion_path=long)
    with pytest.raises(InputError, match="no checkpoint at step 7"):
        gallery.load_or_build_index(config, workdir, "val", step=7)
    toy = tmp_path / "toy"
    fileio.write_json(str(toy / "config.json"), json.loads(load_experiment("toy").to_json()))
    with pytest.raises(InputError, match="toy task has no text encoder"):
        search.run_search(str(toy), queries=["walk"])


def _cli(*args):
    return cli.run(["wat_jax.tools.search", *args], timeout=120)


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return errors[0]


def test_cli_errors_are_one_line(babel_workdir, tmp_path):
    workdir, config = babel_workdir
    line = _one_error_line(_cli(f"--workdir={workdir}", "--query="))
    assert "empty query" in line

    bad = str(tmp_path / "bad.npy")
    np.save(bad, np.zeros((16, 4, 3), np.float32))
    line = _one_error_line(_cli(f"--workdir={workdir}", f"--motion={bad}"))
    assert bad in line and "[T, 25, 6]" in line and "[16, 4, 3]" in line

    empty = tmp_path / "untrained"
    fileio.write_json(str(empty / "config.json"), json.loads(config.to_json()))
    line = _one_error_line(_cli(f"--workdir={empty}", "--query=a person walking"))
    assert "no checkpoint" in line and "checkpoints" in line


def test_cli_queries_file_json(babel_workdir, tmp_path):
    workdir, config = babel_workdir
    queries = tmp_path / "queries.txt"
    queries.write_text("a person kicks\n\nsomeone sits down\n")
    proc = _cli(f"--workdir={workdir}", f"--queries={queries}", "--top_k=3", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout)
    assert [r["query"] for r in answer["results"]] == ["a person kicks", "someone sits down"]
    classes = set(tasks.get_task(config.task).windows(config, workdir, "val").classes)
    for result in answer["results"]:
        assert [h["rank"] for h in result["hits"]] == [1, 2, 3]
        assert all(set(h["labels"]) <= classes and h["source"] for h in result["hits"])
    assert answer["step"] == 3 and "load_index" in answer["timings_ms"]


# A run read from where wat_jax.load reads it, and from a read-only share.


def _read_only(monkeypatch, root):
    """Every file or folder creation under `root` fails with EROFS, as on a read-only
    mount. Tests run as root, which chmod does not stop, and mounting needs privileges,
    so this refuses the calls every Python writer goes through: os.open with a write or
    create flag (tempfile.mkstemp, fileio.atomic_write, the lock, describe's appends) and
    os.mkdir (os.makedirs). Reading is untouched."""
    import errno

    root = os.path.realpath(root)
    real_open, real_mkdir = os.open, os.mkdir
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def refused(path):
        path = os.path.realpath(os.fspath(path))
        if path == root or path.startswith(root + os.sep):
            return OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return None

    def open_(path, flags, *args, **kwargs):
        error = refused(path) if flags & writing else None
        if error:
            raise error
        return real_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        error = refused(path)
        if error:
            raise error
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "mkdir", mkdir)


def test_a_read_only_run_is_searched_with_its_index_in_memory(babel_workdir, tmp_path, monkeypatch):
    import shutil

    workdir, _ = babel_workdir
    run = tmp_path / "share"
    shutil.copytree(workdir, run)
    shutil.rmtree(run / "index", ignore_errors=True)
    listing = sorted(str(p) for p in run.rglob("*"))
    _read_only(monkeypatch, run)
    answer = search.run_search(str(run), queries=["a person walking"], k=3)
    assert answer["index"] == "in memory (the run's folder is not writable)"
    assert "build_index" in answer["timings_ms"] and len(answer["results"][0]["hits"]) == 3
    assert sorted(str(p) for p in run.rglob("*")) == listing  # nothing written, nothing left
    # The same ranking as a saved index gives.
    monkeypatch.undo()
    saved = search.run_search(workdir, queries=["a person walking"], k=3)
    assert saved["results"] == answer["results"]


def test_a_run_is_found_from_what_load_accepts(babel_workdir):
    workdir, _ = babel_workdir
    workdir = os.path.abspath(workdir)
    ckpts = os.path.join(workdir, "checkpoints")
    assert artifact.resolve(workdir) == (workdir, None)
    assert artifact.resolve(ckpts) == (workdir, None)
    assert artifact.resolve(os.path.join(ckpts, "3")) == (workdir, 3)
    assert artifact.resolve(f"{workdir}:3") == (workdir, 3)
    assert artifact.resolve(os.path.join(ckpts, "3"), 3) == (workdir, 3)
    with pytest.raises(InputError, match="names step 3, but the step asked for is 5"):
        artifact.resolve(os.path.join(ckpts, "3"), 5)
    answer = search.run_search(os.path.join(ckpts, "3"), queries=["a person walking"], k=2)
    assert answer["step"] == 3 and answer["index"] == gallery.index_dir(workdir, "val", 3)


def test_a_run_on_a_really_read_only_mount_is_searched(babel_workdir, tmpfs):
    # A tmpfs remounted read-only (tests/conftest.py; skipped where it cannot be mounted):
    # EROFS from the kernel itself, which root does not get around as it does chmod.
    import shutil
    import subprocess

    workdir, _ = babel_workdir
    mount = tmpfs("256m", "share")
    run = mount / "run"
    shutil.copytree(workdir, run)
    shutil.rmtree(run / "index", ignore_errors=True)
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    with pytest.raises(OSError, match="Read-only file system"):
        (run / "probe").write_text("x")
    answer = search.run_search(str(run / "checkpoints" / "3"), queries=["a person walking"])
    assert answer["index"] == "in memory (the run's folder is not writable)"
    assert answer["step"] == 3 and len(answer["results"][0]["hits"]) == 10
    assert not (run / "index").exists()
