"""BABEL-60 action recognition from LLM-described class texts (paper task A).

    python -m wat_jax.main --config=experiments/babel60.py:demo --workdir=/tmp/babel60 --mode=all

Variants:
  smoke  seconds; synthetic data, template texts, a tiny model (the tests run it).
  demo   minutes on a laptop CPU, offline: synthetic AMASS/BABEL files, SmolLM2
         descriptions in JAX, MiniLM text vectors.
  paper  the paper's settings on real data: point data.amass_root and
         data.babel_dir at AMASS and BABEL v1.0, e.g.
         --config.data.amass_root=/data/amass --config.data.babel_dir=/data/babel_v1.0_release
Names-only ablation: --config.describe.backend=names.
"""

import ml_collections

from wat_jax.configs import base_config
from wat_jax.data import babel
from wat_jax.text.describe import default_describe_config


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
    if arg not in ("smoke", "demo", "paper"):
        raise ValueError(f"experiments/babel60.py variants: smoke, demo, paper (got {arg!r})")
    c = base_config()
    c.task = "babel60"
    c.data = babel.default_data_config(arg)
    c.describe = default_describe_config()
    c.eval.prototype = "centroid"  # class text: description centroid (or "name")
    c.eval.zero_shot_classes = ()
    # The action timeline over whole val sequences (wat_jax/timeline.py): frame accuracy,
    # frame mAP and segmental F1 beside random; the sequence cap bounds its cost.
    c.eval.timeline = True
    c.eval.timeline_max_sequences = 64
    c.eval.timeline_stride_s = 0.5
    c.eval.timeline_smooth_s = 0.5

    # The paper's model and objective: 768-d, 8 post-norm layers, 4 heads,
    # feed-forward 1024, first-frame output, mean of the MSE to the class-name
    # embedding and to the description centroid.
    c.model.update(
        width=768,
        layers=8,
        heads=4,
        mlp_dim=1024,
        dropout=0.1,
        pre_norm=False,
        pooling="first",
        positions="sinusoidal",
        max_len=64,
    )
    c.loss.name = "mse"
    c.text.targets = ("name", "centroid")
    c.optim.update(lr=2e-4, weight_decay=0.1, schedule="constant")
    c.batch_size = 80

    if arg == "paper":
        c.text.update(encoder="hf:WhereIsAI/UAE-Large-V1", pooling="mean")
        c.describe.update(backend="openai", per_key=64, strategy="paraphrase", temperature=0.7)
        c.total_steps = 50_000  # ~200 epochs of ~20k windows at batch 80
        c.log_every_steps = 100
        c.checkpoint_every_steps = 2_000
        c.eval.every_steps = 5_000  # eval/* curves in metrics.jsonl and TensorBoard
        return c

    c.text.encoder = "minilm"
    c.model.update(
        width=128, layers=3, heads=4, mlp_dim=256, pre_norm=True, pooling="mean", dropout=0.1
    )
    c.loss.name = "infonce"  # contrastive targets train faster than MSE at this scale
    c.loss.targets = "multi_positive"
    c.text.targets = ("description",)
    c.optim.update(lr=1e-3, schedule="cosine", warmup_steps=20, weight_decay=0.05)
    if arg == "smoke":
        c.describe.update(backend="template", per_key=3)
        c.model.update(width=32, layers=1, heads=2, mlp_dim=64)
        c.batch_size = 16
        c.total_steps = 12
        c.log_every_steps = 4
        c.checkpoint_every_steps = 6
    else:
        # SmolLM2-135M in JAX: 17 classes x 4 short descriptions, batched 32 at a time.
        c.describe.update(
            backend="local", per_key=4, max_tokens=96, local_batch_size=32, samples_per_request=4
        )
        c.batch_size = 64
        c.total_steps = 600
        c.log_every_steps = 50
        c.checkpoint_every_steps = 200
    return c
