"""Stages whose memory need not grow with the dataset do not (issue 19, item 4).

DenseGait evaluation scores its [Q, N] query-by-gallery matrices a block of query
rows at a time with the same numbers as the whole matrices; the text bank's vectors
stay on disk (memory-mapped); the batcher builds no per-key arrays its targets do not use.
"""

import functools
import tracemalloc

import numpy as np
import pytest

from wat_jax import metrics
from wat_jax.data import gait_attributes, prepared
from wat_jax.data.pipeline import Batcher
from wat_jax.tasks import densegait
from wat_jax.text import bank as text_bank

THRESHOLD = 0.5


def _whole_matrix(queries, motion, query_sets, gallery_sets, seed):
    """What DenseGait's eval computed before blocking: every [Q, N] array at once."""
    scores = metrics.cosine(queries, motion)
    gains = metrics.jaccard_gains(query_sets, gallery_sets)
    relevant = gains >= THRESHOLD - 1e-9
    rand = metrics.random_scores(scores.shape, seed)
    model = densegait.retrieval(scores, gains, relevant)
    model["gait_to_text"] = densegait._gait_to_text(scores.T, gains.T, relevant.T)
    random = densegait.retrieval(rand, gains, relevant)
    random["gait_to_text"] = densegait._gait_to_text(rand.T, gains.T, relevant.T)
    return model, random


def _retrieval_case(num_q, n, ties, seed=0, attrs=6, dim=8):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct embeddings and sets: many tied scores and gains
        motion = rng.integers(-1, 2, (n, dim)).astype(np.float32)
        queries = rng.integers(-1, 2, (num_q, dim)).astype(np.float32)
    else:
        motion = rng.standard_normal((n, dim)).astype(np.float32)
        queries = rng.standard_normal((num_q, dim)).astype(np.float32)
    gallery_sets = rng.random((n, attrs)) < 0.4
    query_sets = rng.random((num_q, attrs)) < 0.4
    return queries, motion, query_sets, gallery_sets


@pytest.fixture
def small_chunks(monkeypatch):
    """Metrics chunks of 1,024 scores, so small galleries take several blocks (the whole
    matrices in the reference are scored with the same chunks)."""
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 1024)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("rows", [0, 2, 20, 33, 64])
def test_blocked_scoring_equals_whole_matrices(small_chunks, ties, rows):
    queries, motion, query_sets, gallery_sets = _retrieval_case(97, 301, ties)
    want = _whole_matrix(queries, motion, query_sets, gallery_sets, seed=5)
    got = densegait.score_retrieval(
        queries, motion, query_sets, gallery_sets, THRESHOLD, 5, rows=rows
    )
    assert got == want  # exactly: same per-query numbers, same means, same random stream
    assert np.isfinite(got[0]["gait_to_text"]["ndcg@10"])


def test_blocked_scoring_at_default_chunks_equals_whole_matrices():
    queries, motion, query_sets, gallery_sets = _retrieval_case(70, 40000, ties=False)
    assert metrics.block_rows(40000) < 70  # several blocks
    want = _whole_matrix(queries, motion, query_sets, gallery_sets, seed=2)
    assert (
        densegait.score_retrieval(queries, motion, query_sets, gallery_sets, THRESHOLD, 2) == want
    )


def test_blocked_scoring_with_few_queries_ranks_them_whole(small_chunks):
    queries, motion, query_sets, gallery_sets = _retrieval_case(7, 50, ties=True)
    want = _whole_matrix(queries, motion, query_sets, gallery_sets, seed=1)
    got = densegait.score_retrieval(queries, motion, query_sets, gallery_sets, THRESHOLD, 1, rows=2)
    assert got == want


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_blocked_scoring_memory_does_not_grow_with_queries_times_gallery(monkeypatch):
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 1 << 14)  # blocks of 40 rows of 4,000
    n = 4000
    peaks = {}
    for num_q in (400, 1600):
        queries, motion, query_sets, gallery_sets = _retrieval_case(num_q, n, False, dim=16)
        args = (queries, motion, query_sets, gallery_sets, THRESHOLD, 0)
        peaks[num_q] = _peak_bytes(functools.partial(densegait.score_retrieval, *args, rows=40))
    # Before blocking: scores (4 B), gains (4 B), relevance (1 B) and random scores (8 B)
    # per query-gallery pair, ~109 MB at 1,600 queries; now a block of 40 rows and each
    # window's 10 best queries, the same at any number of queries (+ O(Q) results).
    assert peaks[1600] < 1.25 * peaks[400], peaks
    assert peaks[1600] < 1600 * n * 4 / 2, peaks  # well under one float32 [Q, N] matrix


def test_per_attribute_blocks_equal_whole_matrix(small_chunks):
    rng = np.random.default_rng(3)
    single = rng.standard_normal((13, 8)).astype(np.float32)
    motion = rng.standard_normal((120, 8)).astype(np.float32)
    present = rng.random((120, 13)) < 0.3
    names = [f"a{i}" for i in range(13)]
    whole = metrics.ndcg_at_k(metrics.cosine(single, motion), present.T.astype(np.float32), 10)
    rand = metrics.ndcg_at_k(metrics.random_scores((13, 120), 9), present.T.astype(np.float32), 10)
    want = tuple({a: float(v) for a, v in zip(names, x) if np.isfinite(v)} for x in (whole, rand))
    for rows in (0, 2, 4, 12):
        assert densegait.per_attribute(single, motion, present, names, 9, rows=rows) == want


def test_row_blocks_cover_rows_and_never_end_on_one_row():
    for num_rows, rows in [(10, 3), (9, 4), (1, 5), (0, 4), (100, 33), (67, 33)]:
        blocks = list(metrics.row_blocks(num_rows, rows))
        covered = np.concatenate([np.arange(num_rows)[b] for b in blocks] or [np.zeros(0)])
        np.testing.assert_array_equal(covered, np.arange(num_rows))
        assert all(b.stop - b.start >= 2 for b in blocks) or num_rows < 2
    assert metrics.block_rows(10) % (metrics._CHUNK_ELEMENTS // 10) == 0
    assert metrics.block_rows(10**7) >= 32


def _densegait_workdir(tmp_path, n):
    """A prepared val split with varied attribute sets and a random bank covering them."""
    rng = np.random.default_rng(0)
    columns = list(gait_attributes.COLUMNS)
    labels = (rng.random((n, len(columns))) < 0.3).astype(np.float32)
    index = [{"source": str(i), "start_s": 0.0, "start_frame": 0} for i in range(n)]
    split = prepared.PreparedSplit(
        np.zeros((n, 2, 1, 1), np.float32), np.ones((n, 2), bool), labels, columns, index
    )
    prepared.write_split(str(tmp_path), "val", split)
    keys = sorted(
        {
            gait_attributes.attribute_set_key(gait_attributes.attribute_set(row, THRESHOLD))
            for row in labels
        }
    )
    k = len(keys)
    bank = text_bank.TextBank(
        keys,
        rng.standard_normal((k, 16)).astype(np.float32),
        rng.standard_normal((2 * k, 16)).astype(np.float32),
        np.arange(k + 1) * 2,
    )
    bank.save(text_bank.bank_path(str(tmp_path)))
    return keys


def test_densegait_eval_inputs_hold_no_query_by_gallery_array(tmp_path, monkeypatch):
    from experiments import densegait as experiment

    n = 300
    _densegait_workdir(tmp_path, n)
    config = experiment.get_config("smoke")
    config.data.threshold = THRESHOLD
    config.eval.max_queries = 50
    monkeypatch.setattr(
        text_bank, "encode", lambda texts, config: np.ones((len(list(texts)), 16), np.float32)
    )
    inputs = densegait.TASK.eval_inputs(config, str(tmp_path))
    num_q = len(inputs.texts["queries"])
    assert num_q == 50
    for name, value in inputs.extra.items():
        assert not (isinstance(value, np.ndarray) and value.size >= num_q * n), name
    rng = np.random.default_rng(1)
    motion_emb = rng.standard_normal((n, 8)).astype(np.float32)
    text_emb = {
        k: rng.standard_normal((len(v), 8)).astype(np.float32) for k, v in inputs.texts.items()
    }
    results = densegait.TASK.score(config, inputs, motion_emb, text_emb)
    model, random = _whole_matrix(
        text_emb["queries"], motion_emb, inputs.extra["query_sets"],
        inputs.extra["gallery_sets"], config.seed,
    )  # fmt: skip
    assert {k: results[k] for k in model} == model
    assert {k: results["random"][k] for k in random} == random
    assert results["num_queries"] == 50 and results["num_gallery"] == n


def test_loaded_bank_is_memory_mapped_and_the_file_stays_an_npz(tmp_path):
    bank = text_bank.random_bank(40, 12, 3, seed=0)
    path = str(tmp_path / "text_bank.npz")
    bank.save(path)
    loaded = text_bank.TextBank.load(path)
    assert isinstance(loaded.names, np.memmap) and isinstance(loaded.descriptions, np.memmap)
    assert loaded.keys == bank.keys
    np.testing.assert_array_equal(loaded.names, bank.names)
    np.testing.assert_array_equal(loaded.descriptions, bank.descriptions)
    np.testing.assert_array_equal(loaded.offsets, bank.offsets)
    np.testing.assert_array_equal(loaded.centroids(), bank.centroids())
    np.testing.assert_array_equal(loaded.centroids(keys=[5, 2]), bank.centroids()[[5, 2]])
    with np.load(path, allow_pickle=False) as z:  # still an ordinary .npz for numpy
        assert sorted(z.files) == ["descriptions", "keys", "names", "offsets"]
        np.testing.assert_array_equal(z["descriptions"], bank.descriptions)


def test_loading_a_bank_does_not_read_its_vectors_into_memory(tmp_path):
    rng = np.random.default_rng(0)
    k, per_key, dim = 4000, 4, 256  # 4 MB of names, 16 MB of descriptions
    bank = text_bank.TextBank(
        [f"key_{i}" for i in range(k)],
        rng.standard_normal((k, dim)).astype(np.float32),
        rng.standard_normal((k * per_key, dim)).astype(np.float32),
        np.arange(k + 1) * per_key,
    )
    path = str(tmp_path / "text_bank.npz")
    bank.save(path)
    del bank
    tracemalloc.start()
    try:
        loaded = text_bank.TextBank.load(path)
        rows = loaded.descriptions[[7, 3, 9000]]  # what a batch reads
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows.shape == (3, dim)
    assert peak < 3 * 2**20, f"peak {peak / 2**20:.1f} MiB"  # keys and offsets only


def test_compressed_bank_is_still_read(tmp_path):
    bank = text_bank.random_bank(6, 4, 2, seed=1)
    path = str(tmp_path / "text_bank.npz")
    np.savez_compressed(
        path,
        keys=np.asarray(bank.keys),
        names=bank.names,
        descriptions=bank.descriptions,
        offsets=bank.offsets,
    )
    loaded = text_bank.TextBank.load(path)
    np.testing.assert_array_equal(loaded.descriptions, bank.descriptions)


def test_bank_member_cut_short_is_one_error_line(tmp_path):
    from wat_jax.errors import InputError

    bank = text_bank.random_bank(30, 8, 2, seed=2)
    path = tmp_path / "text_bank.npz"
    bank.save(str(path))
    data = bytearray(path.read_bytes())
    # The names member's header claims more rows than are stored: shape (30, 8) -> (99, 8).
    at = data.index(b"'shape': (30, 8)")
    data[at : at + 16] = b"'shape': (99, 8)"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="unreadable text bank"):
        text_bank.TextBank.load(str(path))


def test_batcher_builds_no_centroids_when_no_target_uses_them(monkeypatch):
    bank = text_bank.random_bank(5, 4, 2, seed=0)

    def no_centroids(*args, **kwargs):
        raise AssertionError("centroids of every key built for description targets")

    monkeypatch.setattr(text_bank.TextBank, "centroids", no_centroids)
    n = 8
    batcher = Batcher(
        np.zeros((n, 2, 1, 1), np.float32),
        np.ones((n, 2), bool),
        np.zeros((n, 1), np.float32),
        np.arange(n)[:, None] % 5,
        bank,
        ("description",),
        4,
        slice(0, 4),
        0,
    )
    assert batcher.batch(0)["text"].shape == (4, 1, 4)


def test_loaded_search_index_maps_its_vectors(tmp_path):
    from wat_jax import gallery

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((40, 8)).astype(np.float32)
    texts = rng.standard_normal((3, 8)).astype(np.float32)
    rows = [{"row": i, "source": f"s{i}"} for i in range(40)]
    index = gallery.Index(
        emb, np.zeros((40, 3), np.float32), rows, texts, list("abc"), list("abc"), {}
    )
    path = str(tmp_path / "index")
    index.save(path)
    loaded = gallery.Index.load(path)
    for name in ("embeddings", "labels", "text_emb"):
        assert isinstance(getattr(loaded, name), np.memmap), name
    np.testing.assert_array_equal(loaded.embeddings, emb)
    np.testing.assert_array_equal(loaded.text_emb, texts)
    assert loaded.search(emb[[5]], k=1)[0][0]["row"] == 5


class _OnesEncoder:
    """Stands in for the text encoder: one float32 vector of ones per text."""

    dim = 384

    def encode(self, texts, batch_size=64):
        return np.ones((len(texts), self.dim), np.float32)


def test_the_bank_holds_its_vectors_once(monkeypatch, tmp_path):
    from wat_jax import configs
    from wat_jax.text import describe, encoder

    monkeypatch.setattr(encoder, "_loaded", lambda spec: _OnesEncoder())
    n = 20_000
    vectors = n * _OnesEncoder.dim * 4  # 30.7 MB
    texts = [f"a person walking, number {i}" for i in range(n)]
    # The encoder's output is returned as it is; before, a stacked list of its rows was then
    # cast to float32, holding the vectors three times over.
    peak = _peak_bytes(lambda: encoder.embed_texts(texts, cache_dir=""))
    assert peak < 1.25 * vectors, peak / vectors
    # Duplicates and cached texts: one more array, in texts' order.
    cache = str(tmp_path / "cache")
    encoder.embed_texts(texts[: n // 2], cache_dir=cache)
    mixed = texts + texts[:10]
    got = encoder.embed_texts(mixed, cache_dir=cache)
    assert got.shape == (len(mixed), _OnesEncoder.dim) and got.dtype == np.float32
    # The bank stage keeps the encoder's arrays (no float32 copies) and writes them.
    config = configs.base_config()
    config.describe.backend = "names"
    config.text.cache_dir = ""
    keys = [describe.DescribeKey(f"k{i}", "appearance", t) for i, t in enumerate(texts)]
    peak = _peak_bytes(lambda: text_bank.build(keys, config, str(tmp_path)))
    # (np.savez writes an array through 16 MiB chunks: a fixed extra, not a copy.)
    assert peak < 1.25 * vectors + 2 * 16 * 2**20, peak / vectors
    assert text_bank.load(str(tmp_path)).names.shape == (n, _OnesEncoder.dim)
