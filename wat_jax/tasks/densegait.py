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

import jax
import numpy as np
from absl import logging

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


def _keys(config, workdir):
    """One DescribeKey per distinct attribute set in train and val, in first-seen order."""
    from wat_jax.text.describe import DescribeKey

    seen = {}
    for split in prepared.SPLITS:
        for s in _sets(prepared.read_split(workdir, split).labels, config.data.threshold):
            seen.setdefault(gait_attributes.attribute_set_key(s), s)
    return [
        DescribeKey(key=k, kind="appearance", phrase=gait_attributes.describe_attributes(s))
        for k, s in seen.items()
    ]


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


def retrieval(scores: np.ndarray, gains: np.ndarray, relevant: np.ndarray) -> dict:
    """Text-to-gait metrics of one [Q, N] score matrix."""
    return {
        "ndcg@10": common.finite_mean(metrics.ndcg_at_k(scores, gains, 10)),
        "ndcg@100": common.finite_mean(metrics.ndcg_at_k(scores, gains, 100)),
        "mAP": metrics.mean_average_precision(scores, relevant),
        "R@1": common.finite_mean(metrics.recall_at_k(scores, relevant, 1)),
        "R@5": common.finite_mean(metrics.recall_at_k(scores, relevant, 5)),
        "R@10": common.finite_mean(metrics.recall_at_k(scores, relevant, 10)),
    }


def _gait_to_text(scores: np.ndarray, gains: np.ndarray, relevant: np.ndarray) -> dict:
    """Each window [N] ranks the query texts [Q]."""
    return {
        "R@1": common.finite_mean(metrics.recall_at_k(scores, relevant, 1)),
        "R@5": common.finite_mean(metrics.recall_at_k(scores, relevant, 5)),
        "ndcg@10": common.finite_mean(metrics.ndcg_at_k(scores, gains, 10)),
    }


def _per_attribute(scores: np.ndarray, present: np.ndarray, names: list[str]) -> dict:
    ndcg = metrics.ndcg_at_k(scores, present.T.astype(np.float32), 10)
    return {n: float(v) for n, v in zip(names, ndcg) if np.isfinite(v)}


class DenseGaitTask(Task):
    """DenseGait windows, attribute sets as text keys, retrieval by appearance."""

    name = "densegait"
    picture_caption = f"by {PICTURE_GROUP}"

    def prepare(self, config, workdir):
        from wat_jax.data import densegait

        counts = densegait.prepare(config.data, workdir, config.seed)
        if jax.process_index() == 0:  # the short table; the full report is data/report.json
            print(densegait.report_table(counts))

    def describe(self, config, workdir):
        if config.describe.backend == "names":
            logging.info("describe.backend=names: attribute phrases are the only texts")
            return
        common.describe_keys(_keys(config, workdir), config, workdir)

    def embed(self, config, workdir):
        text_bank.build(_keys(config, workdir), config, workdir)

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

    def motion_file(self, config, path: str, dims):
        """A (T, 18, 3) tracklet .npy -> its centred window, normalised."""
        if not path.endswith(".npy"):
            return None
        from wat_jax.data import densegait

        d = config.data
        tracklet = densegait.load_tracklet(path)
        window = int(d.window_frames)
        start = densegait.window_starts(len(tracklet), window, 1, None)[0]
        clip, valid = densegait.cut_window(tracklet, start, window)
        motion = densegait.normalize(clip[None], valid[None], float(d.min_confidence))
        return motion, valid[None]

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
        gains = metrics.jaccard_gains(query_sets, gallery_sets)  # [Q, N]
        # Soft annotator labels make nearly every attribute set unique, so exact-set
        # relevance would leave one relevant window per query; a Jaccard floor keeps
        # mAP and R@k meaningful (1.0 restores exact matching).
        relevant = gains >= config.eval.relevant_jaccard - 1e-9

        use = config.eval.prototype
        texts = bank.centroids(normalize=True) if use == "centroid" else bank.names
        names, phrases = attribute_phrases()
        return EvalInputs(
            split.motion,
            split.mask,
            np.asarray(split.labels),
            split.classes,
            {"queries": texts[query_ids], "single": text_bank.encode(phrases, config)},
            dict(
                gallery_sets=gallery_sets,
                gains=gains,
                relevant=relevant,
                num_gallery=int(len(ids)),
                prototype=use,
                attributes=names,
            ),
        )

    def score(self, config, inputs, motion_emb, text_emb) -> dict:
        x = inputs.extra
        gains, relevant = x["gains"], x["relevant"]
        scores = metrics.cosine(text_emb["queries"], motion_emb)  # [Q, N]
        rand = metrics.random_scores(scores.shape, config.seed)
        results = {
            **retrieval(scores, gains, relevant),
            "num_queries": int(len(scores)),
            "num_gallery": x["num_gallery"],
            "prototype": x["prototype"],
            "describe_backend": config.describe.backend,
        }
        results["random"] = retrieval(rand, gains, relevant)

        # Gait-to-text: each window ranks the query texts.
        results["gait_to_text"] = _gait_to_text(scores.T, gains.T, relevant.T)
        results["random"]["gait_to_text"] = _gait_to_text(rand.T, gains.T, relevant.T)

        # Single-attribute queries: "a person carrying a backpack" against the gallery.
        single = metrics.cosine(text_emb["single"], motion_emb)
        names = x["attributes"]
        results["per_attribute"] = _per_attribute(single, x["gallery_sets"], names)
        rand_single = metrics.random_scores(single.shape, config.seed + 1)
        results["random"]["per_attribute"] = _per_attribute(rand_single, x["gallery_sets"], names)
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
