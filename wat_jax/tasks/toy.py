"""A small in-memory task for exercising the core training system.

Generated on the fly from the seed, nothing on disk: class-dependent joint
oscillations with noise and variable lengths, one random unit text vector per
class plus a few noisy "descriptions" around it. Tests and the smoke config of
`experiments/toy.py` use it; the real experiments are babel60 and densegait.
"""

import os

import numpy as np
from absl import logging

from wat_jax import metrics
from wat_jax.data import prepared
from wat_jax.data.pipeline import Batcher, class_keys
from wat_jax.tasks.base import EvalInputs, Task
from wat_jax.text import bank
from wat_jax.text.bank import TextBank


def make_data(cfg, seed: int, split: str):
    """Returns motion [N, T, J, F], mask [N, T], labels [N, C] for one split."""
    d = cfg.data
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    n = d.num_train if split == "train" else d.num_val
    t = np.arange(d.frames) / 30.0
    # Each class: its own frequency and phase per joint and feature.
    class_rng = np.random.default_rng([seed, 99])
    freq = class_rng.uniform(0.5, 3.0, (d.num_classes, d.joints, d.features))
    phase = class_rng.uniform(0, 2 * np.pi, (d.num_classes, d.joints, d.features))
    labels = np.zeros((n, d.num_classes), np.float32)
    cls = rng.integers(0, d.num_classes, n)
    labels[np.arange(n), cls] = 1.0
    second = rng.random(n) < d.multi_label_fraction
    labels[second, rng.integers(0, d.num_classes, second.sum())] = 1.0
    motion = np.sin(2 * np.pi * freq[cls][:, None] * t[None, :, None, None] + phase[cls][:, None])
    motion += d.noise * rng.standard_normal(motion.shape)
    lengths = rng.integers(d.frames // 2, d.frames + 1, n)
    mask = np.arange(d.frames)[None] < lengths[:, None]
    motion = np.where(mask[..., None, None], motion, 0.0).astype(np.float32)
    return motion, mask, labels


def make_bank(cfg, seed: int) -> TextBank:
    """The toy bank: one random unit vector per class and describe.per_key noisy descriptions."""
    return bank.random_bank(cfg.data.num_classes, cfg.text.dim, cfg.describe.per_key, seed)


class ToyTask(Task):
    """Data and texts generated from the seed; nothing on disk unless prepared by hand."""

    name = "toy"
    has_text_encoder = False

    def prepare(self, config, workdir):
        logging.info("toy task: data is generated in memory; nothing to prepare")

    def describe(self, config, workdir):
        logging.info("toy task: text vectors are generated; nothing to describe")

    def embed(self, config, workdir):
        logging.info("toy task: text vectors are generated; nothing to embed")

    def prototypes(self, config, workdir) -> dict:
        """The class name vectors the toy evaluation ranks."""
        b = make_bank(config, config.seed)
        return {"keys": b.keys, "phrases": b.keys, "prototype": "name", "vectors": b.names}

    def train_batcher(self, config, workdir, rows) -> Batcher:
        motion, mask, labels = make_data(config, config.seed, "train")
        return Batcher(
            motion,
            mask,
            labels,
            class_keys(labels, config.data.threshold),
            make_bank(config, config.seed),
            tuple(config.text.targets),
            config.batch_size,
            rows,
            config.seed,
        )

    def windows(self, config, workdir: str, split: str) -> prepared.PreparedSplit:
        """The prepared files when there are any, else the in-memory data."""
        if split in prepared.SPLITS and not prepared.is_prepared(workdir, split):
            motion, mask, labels = make_data(config, config.seed, split)
            rows = [
                {"source": f"toy/{split}/{i}", "start_s": 0.0, "start_frame": 0}
                for i in range(len(motion))
            ]
            classes = [f"class_{i}" for i in range(labels.shape[1])]
            return prepared.PreparedSplit(motion, mask, labels, classes, rows)
        return super().windows(config, workdir, split)

    def bank(self, config, workdir: str) -> TextBank:
        """A bank written to the workdir when there is one, else the generated bank."""
        if not os.path.exists(bank.bank_path(workdir)):
            return make_bank(config, config.seed)
        return bank.load(workdir)

    def eval_inputs(self, config, workdir) -> EvalInputs:
        motion, mask, labels = make_data(config, config.seed, "val")
        classes = [f"class_{i}" for i in range(labels.shape[1])]
        names = make_bank(config, config.seed).names
        return EvalInputs(motion, mask, labels, classes, {"name": names})

    def score(self, config, inputs, motion_emb, text_emb) -> dict:
        """Top-1/Top-3 of val windows against the class texts, beside a random ranking."""
        scores = metrics.cosine(motion_emb, text_emb["name"])
        gt = inputs.labels > config.data.threshold
        rand = metrics.random_scores(scores.shape, config.seed)
        score = lambda s: {
            "top1": metrics.topk_accuracy(s, gt, 1),
            "top3": metrics.topk_accuracy(s, gt, 3),
        }
        return dict(score(scores), random=score(rand))


TASK = ToyTask()
