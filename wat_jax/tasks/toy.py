"""A small in-memory task for exercising the core training system.

Generated on the fly from the seed, nothing on disk: class-dependent joint
oscillations with noise and variable lengths, one random unit text vector per
class plus a few noisy "descriptions" around it. Tests and the smoke config of
`experiments/toy.py` use it; the real experiments are babel60 and densegait.
"""

import numpy as np
from absl import logging

from wat_jax.data.pipeline import Batcher, TextBank, class_keys


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
    rng = np.random.default_rng([seed, 7])
    c, dim, per = cfg.data.num_classes, cfg.text.dim, cfg.describe.per_key
    names = rng.standard_normal((c, dim)).astype(np.float32)
    names /= np.linalg.norm(names, axis=1, keepdims=True)
    desc = names[np.repeat(np.arange(c), per)] + 0.3 * rng.standard_normal((c * per, dim))
    return TextBank(
        [f"class_{i}" for i in range(c)], names, desc.astype(np.float32), np.arange(c + 1) * per
    )


def prepare(config, workdir):
    logging.info("toy task: data is generated in memory; nothing to prepare")


def describe(config, workdir):
    logging.info("toy task: text vectors are generated; nothing to describe")


def embed(config, workdir):
    logging.info("toy task: text vectors are generated; nothing to embed")


def prototypes(config, workdir) -> dict:
    """The class name vectors the toy evaluation ranks."""
    bank = make_bank(config, config.seed)
    return {"keys": bank.keys, "phrases": bank.keys, "prototype": "name", "vectors": bank.names}


def train_batcher(config, workdir, rows) -> Batcher:
    motion, mask, labels = make_data(config, config.seed, "train")
    return Batcher(
        motion,
        mask,
        labels,
        class_keys(labels),
        make_bank(config, config.seed),
        tuple(config.text.targets),
        config.batch_size,
        rows,
        config.seed,
    )


def evaluate(config, workdir, embedder, step) -> dict:
    """Top-1/Top-3 of val windows against the class texts, beside a random ranking."""
    from wat_jax import metrics

    motion, mask, labels = make_data(config, config.seed, "val")
    motion_emb = embedder.motion(motion, mask)
    prototypes = embedder.text(make_bank(config, config.seed).names)
    scores = metrics.cosine(motion_emb, prototypes)
    gt = labels > 0.5
    rand = metrics.random_scores(scores.shape, config.seed)
    score = lambda s: {
        "top1": metrics.topk_accuracy(s, gt, 1),
        "top3": metrics.topk_accuracy(s, gt, 3),
    }
    return dict(score(scores), random=score(rand))
