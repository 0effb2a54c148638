"""wat_jax: aligning human motion with LLM-written text, in JAX/Flax.

import wat_jax
run = wat_jax.load("runs/babel60")     # config.json + the newest checkpoint
run.classify(motion, mask)             # per window: [(class, score), ...] best first
"""

import sys as _sys

if _sys.argv[:1] == ["-m"]:
    # `python -m wat_jax.<program>` (argv[0] is "-m" while the package is imported),
    # before numpy or jax start threads: keep freed memory for reuse (wat_jax/heap.py).
    from wat_jax import heap as _heap

    _heap.keep_freed_memory()


def load(path: str, step: int | None = None):
    """A trained run from a workdir or a checkpoints/<step>/ folder; see wat_jax/artifact.py."""
    from wat_jax import artifact  # imported on use: `import wat_jax` stays light

    return artifact.load(path, step)
