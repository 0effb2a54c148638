"""DenseGait text-to-gait retrieval by appearance (paper task B).

Every distinct attribute set (binarised at data.threshold) is a text key with
its phrase and descriptions. Evaluation ranks the whole val gallery for each
attribute-set query with graded relevance, the Jaccard overlap of attribute
sets (NDCG@10/100), and binary relevance (Jaccard >= eval.relevant_jaccard) for
mAP and R@k; single-attribute
queries ("a person carrying a backpack") give per-attribute NDCG@10; gait-to-
text ranks the query texts for each window. A seeded random ranking of the
same gallery is scored by the same code.
"""

import os

import numpy as np

from wat_jax import metrics
from wat_jax.data import gait_attributes, prepared
from wat_jax.data.pipeline import Batcher
from wat_jax.errors import fail
from wat_jax.tasks import common
from wat_jax.tasks.base import Bars, EvalInputs, Task
from wat_jax.text import bank as text_bank
from wat_jax.text.bank import TextBank

PICTURE_GROUP = "viewpoint"  # the attribute group the embedding picture colours by


def _sets(labels: np.ndarray, threshold: float) -> list[tuple]:
    return [gait_attributes.attribute_set(row, threshold) for row in np.asarray(labels)]


def attribute_phrases() -> tuple[list[str], list[str]]:
    """Each attribute's name and its single-attribute query ("a person carrying a backpack")."""
    names = [a[0] for a in gait_attributes.ATTRIBUTES]
    phrases = [
        f"a person {a[2]}" if not a[2].startswith("a ") else a[2]
        for a in gait_attributes.ATTRIBUTES
    ]
    return names, phrases


def _key_ids(labels, threshold, bank: TextBank) -> np.ndarray:
    lookup = {k: i for i, k in enumerate(bank.keys)}
    ids = [lookup.get(gait_attributes.attribute_set_key(s), -1) for s in _sets(labels, threshold)]
    return np.asarray(ids, np.int64)


GAIT_TO_TEXT_DEPTH = 10  # the deepest cut-off gait-to-text reads (ndcg@10)


def retrieval_rows(scores: np.ndarray, gains: np.ndarray, relevant: np.ndarray) -> dict:
    """Text-to-gait metrics per query row of a [Q, N] score matrix (NaN where undefined)."""
    return {
        "ndcg@10": metrics.ndcg_at_k(scores, gains, 10),
        "ndcg@100": metrics.ndcg_at_k(scores, gains, 100),
        "mAP": metrics.average_precision(scores, relevant),
        "R@1": metrics.recall_at_k(scores, relevant, 1),
        "R@5": metrics.recall_at_k(scores, relevant, 5),
        "R@10": metrics.recall_at_k(scores, relevant, 10),
    }


def summarise_retrieval(rows: dict) -> dict:
    """The means of `retrieval_rows` over the queries where each is defined."""
    return {
        k: metrics.nan_mean(v) if k == "mAP" else common.finite_mean(v) for k, v in rows.items()
    }


def retrieval(scores: np.ndarray, gains: np.ndarray, relevant: np.ndarray) -> dict:
    """Text-to-gait metrics of one [Q, N] score matrix."""
    return summarise_retrieval(retrieval_rows(scores, gains, relevant))


def _gait_to_text_rows(scores: np.ndarray, gains: np.ndarray, relevant: np.ndarray) -> dict:
    """Per window (row), its ranking of the query texts (columns)."""
    return {
        "R@1": metrics.recall_at_k(scores, relevant, 1),
        "R@5": metrics.recall_at_k(scores, relevant, 5),
        "ndcg@10": metrics.ndcg_at_k(scores, gains, 10),
    }


def _gait_to_text(scores: np.ndarray, gains: np.ndarray, relevant: np.ndarray) -> dict:
    """Each window [N] ranks the query texts [Q]."""
    rows = _gait_to_text_rows(scores, gains, relevant)
    return {m: common.finite_mean(v) for m, v in rows.items()}


def _keep_best(kept, values, ids, gains, k):
    """Each window's k best queries by `values` among those kept and a new block.

    Args:
      kept: (values, ids, gains) [N, <=k] from earlier blocks (rank order), or None.
      values: [N, b] the block's values (scores, or gains), one row per window.
      ids: [b] the block's query ids, ascending and above every kept id.
      gains: [N, b] the block's gains.

    Ties go to the lower query id, as in a ranking of the whole row: kept entries come
    first and equal values among them are already in id order.
    """
    ids = np.broadcast_to(ids, values.shape)
    if kept is not None:
        values, ids, gains = (np.concatenate([a, b], 1) for a, b in zip(kept, (values, ids, gains)))
    top = metrics.top_k(values, min(k, values.shape[1]))
    return tuple(np.take_along_axis(a, top, axis=1) for a in (values, ids, gains))


def _few_queries(by_score, by_gain, threshold: float, num_q: int) -> dict:
    """Each window's row of [N, 2k] (scores, gains, relevant) that decides its gait-to-text
    metrics: its k best-scored queries and its k highest-gain ones, each once, in query
    order; the other cells are padding (score -inf, gain 0).

    Ranking this row puts the k best-scored queries first in the same order as the whole
    row would (ties in query order), the ideal DCG sees the same k largest gains, and the
    row has a relevant query exactly when the whole row has one (the highest gain is in
    it), so recall@k <= k and ndcg@k come out as over all the queries. The floating-point
    sums see the same numbers in the same memory layout (column-major, as the transpose of
    the [Q, N] matrices was) and in the same chunks of windows as the whole matrix's
    (metrics.chunk_rows(num_q)), so the means are identical to the last bit.
    """
    scores = np.concatenate([by_score[0], np.full(by_gain[0].shape, -np.inf, by_score[0].dtype)], 1)
    ids = np.concatenate([by_score[1], by_gain[1]], 1)
    gains = np.concatenate([by_score[2], by_gain[2]], 1)
    order = np.argsort(ids, axis=1, kind="stable")  # a best-scored copy precedes its twin
    scores, ids, gains = (np.take_along_axis(a, order, axis=1) for a in (scores, ids, gains))
    twin = np.zeros(ids.shape, bool)
    twin[:, 1:] = ids[:, 1:] == ids[:, :-1]
    scores[twin], gains[twin] = -np.inf, 0.0
    scores, gains = np.asfortranarray(scores), np.asfortranarray(gains)
    relevant = gains >= threshold - 1e-9
    step = metrics.chunk_rows(num_q)
    parts = [
        _gait_to_text_rows(scores[a : a + step], gains[a : a + step], relevant[a : a + step])
        for a in range(0, len(scores), step)
    ]
    return {
        m: common.finite_mean(np.concatenate([p[m] for p in parts]))
        for m in ("R@1", "R@5", "ndcg@10")
    }


def score_retrieval(
    queries, motion, query_sets, gallery_sets, threshold: float, seed: int, rows: int = 0
) -> tuple[dict, dict]:
    """Text-to-gait and gait-to-text metrics, and the same for a seeded random ranking,
    with the [Q, N] matrices built `rows` query rows at a time.

    Args:
      queries: [Q, E] query embeddings.
      motion: [N, E] gallery embeddings.
      query_sets: [Q, A] bool, each query's attribute set.
      gallery_sets: [N, A] bool, each window's.
      threshold: binary relevance is a Jaccard overlap >= this.
      seed: the random ranking's seed; its [Q, N] uniform scores are drawn in row-major
        order, block after block, so they are the numbers one [Q, N] draw would give.
      rows: at least this many query rows per block (0: 32), rounded up to whole
        metrics chunks (metrics.block_rows).

    Returns:
      (text-to-gait results with `gait_to_text`, the same for the random ranking).

    Memory: O(rows x N) for a block's scores, gains, relevance and random scores, plus
    O(N x k) for what gait-to-text keeps per window (k = GAIT_TO_TEXT_DEPTH), never
    O(Q x N). Every query row's metrics are computed on the same numbers, in the same
    metrics chunks, as the whole matrix would give them, so the results are identical.
    """
    num_q, n = len(queries), len(motion)
    k = GAIT_TO_TEXT_DEPTH
    rows = metrics.block_rows(n, rows or 32)
    if num_q < 2 * k:  # too few queries for _few_queries' rows: one block
        rows = max(rows, num_q)
    whole = num_q <= rows  # one block: gait-to-text ranks the whole matrix, as it always did
    q_unit, m_unit = metrics.unit_rows(queries), metrics.unit_rows(motion)
    m_unit = m_unit.astype(np.float64)  # once, not per block (metrics.unit_dot sums in float64)
    rng = np.random.default_rng(seed)
    per_row = {"model": [], "random": []}
    kept = {"model": None, "random": None, "gain": None}
    for block in list(metrics.row_blocks(num_q, rows)) or [slice(0, 0)]:
        scores = metrics.unit_dot(q_unit[block], m_unit)  # [b, N], metrics.cosine's rows
        gains = metrics.jaccard_gains(query_sets[block], gallery_sets)  # [b, N]
        relevant = gains >= threshold - 1e-9
        rand = rng.random(scores.shape)  # metrics.random_scores' stream, continued
        per_row["model"].append(retrieval_rows(scores, gains, relevant))
        per_row["random"].append(retrieval_rows(rand, gains, relevant))
        if whole:
            model_g2t = _gait_to_text(scores.T, gains.T, relevant.T)
            random_g2t = _gait_to_text(rand.T, gains.T, relevant.T)
            continue
        ids = np.arange(block.start, block.stop, dtype=np.int32)
        gains_t = gains.T
        kept["model"] = _keep_best(kept["model"], scores.T, ids, gains_t, k)
        kept["random"] = _keep_best(kept["random"], rand.T, ids, gains_t, k)
        kept["gain"] = _keep_best(kept["gain"], gains_t, ids, gains_t, k)
        del scores, gains, relevant, rand, gains_t
    if not whole:
        model_g2t = _few_queries(kept["model"], kept["gain"], threshold, num_q)
        random_g2t = _few_queries(kept["random"], kept["gain"], threshold, num_q)
    out = {}
    for name, g2t in (("model", model_g2t), ("random", random_g2t)):
        joined = {m: np.concatenate([r[m] for r in per_row[name]]) for m in per_row[name][0]}
        out[name] = dict(summarise_retrieval(joined), gait_to_text=g2t)
    return out["model"], out["random"]


def per_attribute(
    single, motion, present: np.ndarray, names: list[str], seed: int, rows: int = 0
) -> tuple[dict, dict]:
    """Single-attribute queries' NDCG@10 over the gallery, and a seeded random ranking's,
    `rows` attributes at a time (memory O(rows x N)).

    Args:
      single: [A, E] the single-attribute query embeddings.
      motion: [N, E] gallery embeddings.
      present: [N, A] bool, the gallery's attributes (the gains).
      names: the A attribute names.
      seed: the random ranking's seed ([A, N] uniform scores, row-major).
      rows: at least this many attribute rows per block (0: 32), rounded up to whole
        metrics chunks (metrics.block_rows): the gains are column-major, as the
        transpose of `present` was, and their sums then depend on the chunks.

    Returns:
      (attribute -> NDCG@10, the same for the random ranking), undefined ones left out.
    """
    n = len(motion)
    rows = metrics.block_rows(n, rows or 32)
    s_unit, m_unit = metrics.unit_rows(single), metrics.unit_rows(motion).astype(np.float64)
    rng = np.random.default_rng(seed)
    model, rand = [], []
    for block in metrics.row_blocks(len(single), rows):
        scores = metrics.unit_dot(s_unit[block], m_unit)
        gains = np.asarray(present[:, block]).T.astype(np.float32)
        model.append(metrics.ndcg_at_k(scores, gains, 10))
        rand.append(metrics.ndcg_at_k(rng.random(scores.shape), gains, 10))
    results = []
    for ndcg in (model, rand):
        ndcg = np.concatenate(ndcg) if ndcg else np.zeros(0)
        results.append({a: float(v) for a, v in zip(names, ndcg) if np.isfinite(v)})
    return results[0], results[1]


class DenseGaitTask(Task):
    """DenseGait windows, attribute sets as text keys, retrieval by appearance."""

    name = "densegait"
    picture_caption = f"by {PICTURE_GROUP}"
    key_texts = "attribute phrases"

    def data_module(self):
        from wat_jax.data import densegait

        return densegait

    def text_keys(self, config, workdir):
        """One key per distinct attribute set in train and val, in first-seen order."""
        from wat_jax.text.describe import DescribeKey

        seen = {}
        for split in prepared.SPLITS:
            for s in _sets(prepared.read_split(workdir, split).labels, config.data.threshold):
                seen.setdefault(gait_attributes.attribute_set_key(s), s)
        return [
            DescribeKey(key=k, kind="appearance", phrase=gait_attributes.describe_attributes(s))
            for k, s in seen.items()
        ]

    def prototypes(self, config, workdir) -> dict:
        """The attributes' single-attribute query vectors: what classify ranks on a gait run."""
        names, phrases = attribute_phrases()
        vectors = text_bank.encode(phrases, config)
        return {"keys": names, "phrases": phrases, "prototype": "name", "vectors": vectors}

    def train_batcher(self, config, workdir, rows) -> Batcher:
        split = prepared.read_split(workdir, "train")
        bank = text_bank.load(workdir)
        ids = _key_ids(split.labels, config.data.threshold, bank)
        if (ids < 0).any():
            raise fail(
                text_bank.bank_path(workdir),
                "attribute sets missing from the text bank; run --mode=embed again",
            )
        return Batcher(
            split.motion,
            split.mask,
            np.asarray(split.labels, np.float32),
            ids[:, None],
            bank,
            tuple(config.text.targets),
            config.batch_size,
            rows,
            config.seed,
        )

    def key_phrases(self, config, keys: list[str]) -> list[str]:
        """Each attribute-set key's phrase (a key that names unknown columns stays as is)."""
        column = {name: i for i, name in enumerate(gait_attributes.COLUMNS)}
        phrases = []
        for key in keys:  # attribute_set_key: column names joined by "+", or "none"
            names = [] if key == "none" else key.split("+")
            known = all(n in column for n in names)
            phrases.append(
                gait_attributes.describe_attributes([column[n] for n in names]) if known else key
            )
        return phrases

    def layout(self, config) -> dict:
        from wat_jax.data import densegait

        return dict(
            frames=int(config.data.window_frames),
            joints=len(densegait.JOINTS),
            features=3,
            classes=list(gait_attributes.COLUMNS),
            why=f"densegait: data.window_frames frames x {len(densegait.JOINTS)} joints x 3",
        )

    def motion_file_kind(self) -> str:
        return "a DenseGait (T, 18, 3) .npy"

    def motion_file(self, config, path: str, dims, workdir: str | None = None):
        """A (T, 18, 3) tracklet .npy -> one window prepared as val windows are under the
        run's data keys: centred ("window" frames) or drawn with the seed of the file's
        name without .npy ("random": densegait.draw_seed, as val draws use the track id,
        so a file named after its track id gives that track's val window)."""
        if not path.endswith(".npy"):
            return None
        from wat_jax.data import densegait

        tracklet = densegait.load_tracklet(path)
        name = os.path.basename(path)[: -len(".npy")]
        motion, mask, _ = densegait.val_window(tracklet, config.data, name)
        return motion, mask

    def eval_inputs(self, config, workdir) -> EvalInputs:
        """The val gallery, one query per attribute set in it (with graded and binary
        relevance), and the single-attribute queries."""
        split = prepared.read_split(workdir, "val")
        bank = text_bank.load(workdir)
        threshold = config.data.threshold
        gallery_sets = np.asarray(split.labels) > threshold  # [N, A]
        ids = _key_ids(split.labels, threshold, bank)
        if (ids < 0).any():
            raise fail(
                text_bank.bank_path(workdir),
                "val attribute sets missing from the text bank; run --mode=embed again",
            )
        query_ids = np.unique(ids)  # every attribute set present in the gallery
        max_q = config.eval.max_queries
        if max_q and len(query_ids) > max_q:  # a seeded subset bounds the [Q, N] score matrix
            query_ids = np.sort(np.random.default_rng(config.seed).choice(query_ids, max_q, False))
        query_sets = np.zeros((len(query_ids), gallery_sets.shape[1]), bool)
        for q, key_id in enumerate(query_ids):
            query_sets[q] = gallery_sets[np.flatnonzero(ids == key_id)[0]]
        use = config.eval.prototype
        # only the queries' vectors are read: the bank stays on disk (memory-mapped)
        if use == "centroid":
            query_vectors = bank.centroids(normalize=True, keys=query_ids)
        else:
            query_vectors = np.asarray(bank.names[query_ids], np.float32)
        names, phrases = attribute_phrases()
        return EvalInputs(
            split.motion,
            split.mask,
            np.asarray(split.labels),
            split.classes,
            {"queries": query_vectors, "single": text_bank.encode(phrases, config)},
            dict(
                gallery_sets=gallery_sets,
                query_sets=query_sets,
                num_gallery=int(len(ids)),
                prototype=use,
                attributes=names,
            ),
            index=split.index,
        )

    def score(self, config, inputs, motion_emb, text_emb) -> dict:
        """The retrieval metrics and the random ranking's; the [Q, N] query-by-gallery
        matrices are built a block of query rows at a time (see score_retrieval)."""
        x = inputs.extra
        # Graded relevance is the Jaccard overlap of attribute sets. Soft annotator labels
        # make nearly every set unique, so exact-set relevance would leave one relevant
        # window per query; a Jaccard floor (eval.relevant_jaccard) keeps mAP and R@k
        # meaningful (1.0 restores exact matching).
        model, rand = score_retrieval(
            text_emb["queries"],
            motion_emb,
            x["query_sets"],
            x["gallery_sets"],
            config.eval.relevant_jaccard,
            config.seed,
        )
        results = {
            **{k: v for k, v in model.items() if k != "gait_to_text"},
            "num_queries": int(len(text_emb["queries"])),
            "num_gallery": x["num_gallery"],
            "prototype": x["prototype"],
            "describe_backend": config.describe.backend,
            "random": rand,
            "gait_to_text": model["gait_to_text"],
        }
        # Single-attribute queries: "a person carrying a backpack" against the gallery.
        results["per_attribute"], results["random"]["per_attribute"] = per_attribute(
            text_emb["single"], motion_emb, x["gallery_sets"], x["attributes"], config.seed + 1
        )
        return results

    def picture_texts(self, config) -> str:
        return "single"

    def picture_columns(self, class_names: list[str]) -> list[int]:
        """The viewpoint attributes (Front, Side, Back) present in the label columns."""
        return [
            class_names.index(a[0])
            for a in gait_attributes.ATTRIBUTES
            if a[1] == PICTURE_GROUP and a[0] in class_names
        ]

    def charts(self, config, inputs, motion_emb, text_emb, results, step):
        return [
            Bars(
                results["per_attribute"],
                "per_attribute",
                f"Single-attribute queries, NDCG@10, step {step}",
                "NDCG@10",
                baseline=results["random"]["per_attribute"],
            )
        ]


TASK = DenseGaitTask()
