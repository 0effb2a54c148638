"""DenseGait text-to-gait retrieval by appearance (paper task B).

    python -m wat_jax.main --config=experiments/densegait.py:demo --workdir=/tmp/densegait --mode=all

Variants:
  smoke  seconds; synthetic tracklets, template texts, a tiny model (the tests run it).
  demo   minutes on a laptop CPU, offline: synthetic DenseGait-format tracklets,
         template descriptions per attribute set, MiniLM text vectors.
  paper  the paper's settings on real data: --config.data.annotations=/data/densegait/attributes.csv
         --config.data.tracklets_dir=/data/densegait/tracklets
"""

import ml_collections

from wat_jax.configs import base_config
from wat_jax.data import densegait
from wat_jax.text.describe import default_describe_config


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
    if arg not in ("smoke", "demo", "paper"):
        raise ValueError(f"experiments/densegait.py variants: smoke, demo, paper (got {arg!r})")
    c = base_config()
    c.task = "densegait"
    c.data = densegait.default_data_config(arg)
    c.describe = default_describe_config()
    c.eval.prototype = "centroid"
    c.eval.relevant_jaccard = 0.5  # mAP/R@k: relevant when attribute sets overlap this much
    c.eval.max_queries = 2000  # seeded subset of val attribute sets used as queries

    # The paper's gait model and objective: 768-d, 12 layers, triplet loss with
    # margin 10 whose negatives never share the anchor's attribute set.
    c.model.update(
        width=768,
        layers=12,
        heads=4,
        mlp_dim=1024,
        dropout=0.1,
        pre_norm=False,
        pooling="first",
        positions="sinusoidal",
        max_len=64,
    )
    c.loss.update(name="triplet", margin=10.0, label_threshold=c.data.threshold)
    c.text.targets = ("description",)
    c.optim.update(lr=1e-5, weight_decay=0.1, schedule="constant")
    c.batch_size = 128

    if arg == "paper":
        c.text.update(encoder="hf:WhereIsAI/UAE-Large-V1", pooling="cls")
        c.describe.update(backend="openai", per_key=8, temperature=0.7)
        c.total_steps = 300_000  # ~200 epochs of ~190k train tracklets at batch 128
        c.log_every_steps = 200
        c.checkpoint_every_steps = 5_000
        c.eval.every_steps = 25_000  # eval/* curves in metrics.jsonl and TensorBoard
        return c

    c.text.encoder = "minilm"
    c.model.update(width=128, layers=3, heads=4, mlp_dim=256, pre_norm=True, pooling="mean")
    c.loss.update(name="infonce", targets="soft")
    c.optim.update(lr=1e-3, schedule="cosine", warmup_steps=20, weight_decay=0.05)
    c.describe.update(backend="template", per_key=4)
    if arg == "smoke":
        c.model.update(width=32, layers=1, heads=2, mlp_dim=64)
        c.describe.per_key = 2
        c.batch_size = 16
        c.total_steps = 12
        c.log_every_steps = 4
        c.checkpoint_every_steps = 6
    else:
        c.describe.per_key = 2  # ~2.5k attribute sets: 5k descriptions to embed on CPU
        c.batch_size = 64
        c.total_steps = 500
        c.log_every_steps = 50
        c.checkpoint_every_steps = 200
    return c
