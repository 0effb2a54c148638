"""A tiny in-memory task that exercises the core training system.

    python -m wat_jax.main --config=experiments/toy.py:smoke --workdir=/tmp/toy --mode=train

Variants: smoke (seconds; the tests use it), demo (a minute on a laptop CPU).
"""

import ml_collections

from wat_jax.configs import base_config


def get_config(arg: str = "smoke") -> ml_collections.ConfigDict:
    c = base_config()
    c.task = "toy"
    c.data.update(
        dict(
            num_train=256,
            num_val=64,
            num_classes=6,
            frames=16,
            joints=5,
            features=3,
            noise=0.3,
            multi_label_fraction=0.2,
        )
    )
    c.text.dim = 32  # the toy task generates its text vectors (wat_jax/tasks/toy.py)
    c.describe.update(backend="names", per_key=4)
    c.model.update(
        width=32,
        layers=2,
        heads=4,
        mlp_dim=64,
        dropout=0.0,
        pooling="cls",
        pre_norm=True,
        max_len=32,
    )
    c.batch_size = 16
    c.total_steps = 20
    c.log_every_steps = 5
    c.checkpoint_every_steps = 10
    c.optim.lr = 3e-3
    if arg == "demo":
        c.data.num_train, c.total_steps, c.model.width = 2048, 400, 64
    elif arg != "smoke":
        raise ValueError(f"experiments/toy.py variants: smoke, demo (got {arg!r})")
    return c
