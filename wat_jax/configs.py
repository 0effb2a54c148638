"""The keys every experiment config has, with defaults; experiments override them.

Experiment files (experiments/*.py) start from `base_config()` so a key exists
everywhere it is read, and `--config.<key>=<value>` overrides fail loudly on
typos (the config is locked after loading).
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = ""
    c.seed = 10  # the paper's seed
    c.batch_size = 80  # global, across all devices and hosts
    c.total_steps = 1000
    c.log_every_steps = 50
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 3
    c.num_devices = 0  # 0: every device
    # Checkpoint controls; PATH is a workdir, its checkpoints/ or one checkpoints/<step>/,
    # and :STEP picks a step (the newest that restores when absent).
    c.resume_from = ""  # PATH[:STEP]: the full state of another run; training continues here
    c.init_from = ""  # PATH[:STEP]: params only; optimizer, schedule and loss start fresh
    c.keep_period = 0  # >0: also keep every checkpoint whose step is a multiple of this

    c.model = ml_collections.ConfigDict(
        dict(
            width=768,
            layers=8,
            heads=4,
            mlp_dim=1024,
            dropout=0.1,
            pre_norm=False,
            positions="sinusoidal",
            pooling="first",
            max_len=512,
            embed_dim=0,  # 0: the text encoder's dimension
            text_projection="identity",
            dtype="float32",
        )
    )

    c.text = ml_collections.ConfigDict(
        dict(
            encoder="minilm",
            pooling="mean",
            normalize=True,
            max_length=0,
            batch_size=64,
            dtype="float32",  # text encoder compute: float32 | bfloat16
            cache_dir="",  # "": $WAT_JAX_CACHE or ~/.cache/wat_jax/text_embeddings
            targets=("name", "centroid"),  # text targets per window, see data/pipeline.py
            dim=0,
        )
    )  # only the toy task reads it (its vectors are generated)

    c.optim = ml_collections.ConfigDict(
        dict(
            lr=2e-4,
            weight_decay=0.1,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            schedule="constant",
            warmup_steps=0,
            final_lr_fraction=0.0,
            grad_clip=1.0,
            max_consecutive_skips=10,
        )
    )

    c.loss = ml_collections.ConfigDict(
        dict(
            name="mse",  # mse | infonce | siglip | triplet
            weight=1.0,  # weight of the named loss
            ce_weight=0.0,  # >0 adds a class head trained with cross-entropy
            targets="multi_positive",  # contrastive positives: identity | multi_positive | soft
            label_threshold=0.5,
            margin=10.0,
            mining="all",
        )
    )

    c.eval = ml_collections.ConfigDict(
        dict(
            step=-1,  # --mode=eval: the checkpoint to score; -1: the latest
            batch_size=0,  # 0: batch_size
            every_steps=0,  # > 0: also score the live params every N training steps
            prototype="centroid",  # a class's text: "centroid" of its descriptions, or "name"
        )
    )
    c.describe = ml_collections.ConfigDict(dict(backend="names", per_key=1))
    c.data = ml_collections.ConfigDict(dict(source="synthetic"))
    return c
