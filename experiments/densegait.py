"""DenseGait text-to-gait retrieval by appearance (paper task B).

    python -m wat_jax.main --config=experiments/densegait.py:demo --workdir=/tmp/densegait --mode=all

Variants:
  smoke  seconds; synthetic tracklets, template texts, a tiny model (the tests run it).
  demo   minutes on a laptop CPU, offline: synthetic DenseGait-format tracklets,
         template descriptions per attribute set, MiniLM text vectors.
  paper  the authors' code (WalkAndText, walk_text.py and datasets/gait.py) on real data:
         --config.data.annotations=/data/densegait/attributes.csv
         --config.data.tracklets_dir=/data/densegait/tracklets
         60 frames drawn at random and sorted, the last frame repeated for short
         tracklets, minus the first frame's nose; the reference triplet (one drawn
         negative, margin 10) on raw CLS vectors; no gradient clipping, decay on every
         parameter. Val draws are seeded by the track id (the reference's are random).

Every key not set here has base_config's value (wat_jax/configs.py), which
holds the paper's motion tower; the gait model differs from it only in depth.
"""

import ml_collections

from wat_jax.configs import base_config

VARIANTS = ("smoke", "demo", "paper")


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
    if arg not in VARIANTS:
        raise ValueError(f"experiments/densegait.py variants: smoke, demo, paper (got {arg!r})")
    smoke, paper = arg == "smoke", arg == "paper"
    c = base_config()
    c.task = "densegait"

    # Data: OpenPose-18 tracklets and the 42 appearance attributes (wat_jax/data/densegait.py).
    c.data.update(
        source="densegait" if paper else "synthetic",  # synthetic | densegait
        # The release's layout: tracklets under a data root, the CSV inside it.
        annotations="data/densegait/data-2.02/annotations.csv" if paper else "",
        tracklets_dir="data/densegait" if paper else "",
        window_frames=60,
        # Which frames a window holds, its padding and its coordinates
        # (wat_jax/data/densegait.py): GaitFormer-style windows here, the authors' code in
        # paper: "random", "repeat_last", "reference".
        frames="random" if paper else "window",  # window | random
        padding="repeat_last" if paper else "mask",  # mask | repeat_last
        transform="reference" if paper else "gaitformer",  # gaitformer | reference
        fps=30.0,
        threshold=0.5,  # an attribute above this is present
        min_confidence=0.1,
        val_fraction={"smoke": 0.25, "demo": 0.2, "paper": 0.1}[arg],
        train_windows_per_track=2 if arg == "demo" else 1,
        missing="error",  # error | skip: a file named in the CSV but absent
        # A track_id on two CSV rows is an error; "allow" keeps its first row (counted).
        duplicates="error",
        max_tracks=0,  # 0: every CSV row
        # The synthetic DenseGait-format files (wat_jax/data/synthetic_densegait.py).
        synthetic=ml_collections.ConfigDict(
            dict(
                num_tracks=48 if smoke else 2500,
                min_frames=20,
                max_frames=150,
                keypoint_noise=0.006,
                drop_prob=0.02,
                label_confidence=2.6,
                flip_prob=0.03,
                view_jitter_deg=20.0,
            )
        ),
    )

    c.eval.prototype = "centroid"
    c.eval.relevant_jaccard = 0.5  # mAP/R@k: relevant when attribute sets overlap this much
    c.eval.max_queries = 2000  # seeded subset of val attribute sets used as queries

    # The paper's gait objective on base_config's model at 12 layers: triplet loss with
    # margin 10 (loss.mining "all": every in-batch negative whose attribute set differs;
    # paper: "reference", the authors' one drawn negative).
    c.model.update(layers=12, max_len=64)
    c.loss.update(name="triplet", margin=10.0)
    c.text.targets = ("description",)
    c.optim.update(lr=1e-5, weight_decay=0.1, schedule="constant")
    c.batch_size = 128

    if paper:
        # The reference triplets against raw AnglE CLS vectors with one drawn negative.
        c.text.update(encoder="hf:WhereIsAI/UAE-Large-V1", pooling="cls", normalize=False)
        c.loss.mining = "reference"
        c.optim.update(grad_clip=0.0, decay="all")  # torch AdamW, no clipping
        c.describe.update(backend="openai", per_key=8, temperature=0.7)
        c.total_steps = 300_000  # ~200 epochs of ~190k train tracklets at batch 128
        c.log_every_steps = 200
        c.checkpoint_every_steps = 5_000
        c.eval.every_steps = 25_000  # eval/* curves in metrics.jsonl and TensorBoard
        return c

    # Laptop scale: a small pre-norm tower trained contrastively.
    c.text.encoder = "minilm"
    c.model.update(width=128, layers=3, heads=4, mlp_dim=256, pre_norm=True, pooling="mean")
    c.loss.update(name="infonce", targets="soft")
    c.optim.update(lr=1e-3, schedule="cosine", warmup_steps=20, weight_decay=0.05)
    # ~2.5k attribute sets in the demo: 5k descriptions to embed on CPU.
    c.describe.update(backend="template", per_key=2)
    if smoke:
        c.model.update(width=32, layers=1, heads=2, mlp_dim=64)
        c.batch_size = 16
        c.total_steps = 12
        c.log_every_steps = 4
        c.checkpoint_every_steps = 6
    else:
        c.batch_size = 64
        c.total_steps = 500
        c.log_every_steps = 50
        c.checkpoint_every_steps = 200
    return c
