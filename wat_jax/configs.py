"""The keys every experiment config has, with defaults; experiments override them.

Every key the library reads is declared here, so library code reads attributes
and never restates a default. The one exception is `data`: each experiment file
(experiments/*.py) declares its task's data keys inline. The model block is the
paper's (BABEL-60's) motion tower. `--config.<key>=<value>` overrides fail
loudly on typos (the config is locked after loading).
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
            norm_eps=1e-5,  # every LayerNorm's epsilon (torch's default, as the reference)
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
            grad_clip=1.0,  # global-norm clip; 0: none (the reference clips nothing)
            # Which parameters weight decay shrinks: "matrices" (ndim >= 2, the transformer
            # custom) or "all" (the reference's torch AdamW decays every parameter).
            decay="matrices",
            max_consecutive_skips=10,
        )
    )

    c.loss = ml_collections.ConfigDict(
        dict(
            name="mse",  # mse | infonce | siglip | triplet
            weight=1.0,  # weight of the named loss
            ce_weight=0.0,  # >0 adds a class head trained with cross-entropy
            targets="multi_positive",  # contrastive positives: identity | multi_positive | soft
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
            # babel60: classes held out of training and scored zero-shot.
            zero_shot_classes=(),
            # babel60: the action timeline over whole val sequences (wat_jax/timeline.py);
            # the sequence cap bounds its cost.
            timeline=False,
            timeline_max_sequences=64,
            timeline_stride_s=0.5,
            timeline_smooth_s=0.5,
            # densegait: relevant when attribute sets overlap this much (Jaccard), and a
            # seeded subset of val attribute sets as queries (0: all).
            relevant_jaccard=0.5,
            max_queries=0,
        )
    )
    c.describe = ml_collections.ConfigDict(
        dict(
            backend="template",  # names | template | openai | local
            per_key=4,  # texts per key (names: always 1)
            strategy="direct",  # direct | paraphrase (one description, then paraphrases of it)
            # Sampling, recorded with every text.
            temperature=0.7,
            top_p=0.95,
            max_tokens=256,
            seed=0,
            samples_per_request=8,  # `n` of one request
            # openai: any OpenAI-compatible server.
            base_url="http://127.0.0.1:8080/v1",
            model="",
            api_key_env="OPENAI_API_KEY",
            concurrency=4,
            timeout_s=120.0,
            max_retries=5,
            backoff_s=1.0,
            max_backoff_s=60.0,
            # local: our JAX decoder.
            local_model="smollm2",
            local_batch_size=8,
            local_dtype="float32",
            # Prompts: relative to experiments/prompts unless absolute.
            action_prompt="action_description.txt",
            appearance_prompt="appearance_description.txt",
            paraphrase_prompt="paraphrase.txt",
            # Cleaning, and rounds that re-ask for texts dropped by it.
            min_chars=20,
            max_chars=1200,
            extra_rounds=3,
        )
    )
    # Each experiment adds its task's data keys (experiments/*.py) to these two.
    c.data = ml_collections.ConfigDict(
        dict(
            source="synthetic",
            # A label value above this counts as present: in the losses' label sets, the
            # attribute sets, evaluation and the pictures (the one threshold).
            threshold=0.5,
            # The 6-D convention of rotation features: "rows" (the reference's) or
            # "columns" (data/rotations.py); BABEL's features use it, drawings read it.
            rot6d="rows",
        )
    )
    return c
