"""A restored model's two towers applied to host arrays: the one place that does it.

Evaluation, `wat_jax.load`'s Run, the search index, the timeline and the export
all embed through `Towers`, built from what `artifact.restore` returns (the model
and its params). With a mesh the motion tower runs data-parallel under shard_map
and every process gets every row back; without one it runs on the default device.
Either way motion goes in fixed-shape batches, so it compiles once.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from wat_jax import parallel
from wat_jax.reporting.run_log import Progress


def motion_fn(model):
    """The motion tower as a pure function: (params, motion [B, T, J, F], mask [B, T]) ->
    [B, E]. jax.export traces this same function (tools/export.py)."""
    return lambda params, motion, mask: model.apply(
        {"params": params}, motion, mask, method="embed_motion"
    )


class Towers:
    """`motion(motion, mask)` and `text(vectors)` of a model with `params` (swappable:
    periodic evaluation sets the live params and keeps the compiled functions)."""

    def __init__(self, model, params, mesh=None, batch_size: int = 64):
        self.model, self.params, self.mesh, self.batch_size = model, params, mesh, batch_size
        embed = motion_fn(model)
        if mesh is not None:
            embed = jax.shard_map(
                embed,
                mesh=mesh,
                in_specs=(P(), P(parallel.AXIS), P(parallel.AXIS)),
                out_specs=P(parallel.AXIS),
                check_vma=False,
            )
        self._motion = jax.jit(embed)
        self._text = jax.jit(lambda p, t: model.apply({"params": p}, t, method="embed_text"))

    def motion(self, motion: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """[N, T, J, F], [N, T] -> [N, E] (all rows, input order; not normalised).

        With a mesh every process passes the same full arrays (memory-mapped is fine)
        and feeds only its rows of each global batch.
        """
        n, b = motion.shape[0], self.batch_size
        rows = slice(0, b) if self.mesh is None else parallel.process_rows(b, self.mesh)
        out, progress = [], Progress("embed motion", n, unit="windows", every_s=10.0)
        for start in range(0, n, b):
            # The last batch is padded to the fixed shape with row 0, masked out: the
            # padded rows are computed and dropped, and nothing compiles a second time.
            idx = np.arange(start, start + b)
            valid = idx < n
            idx = np.where(valid, idx, 0)[rows]
            batch = {
                "motion": np.asarray(motion[idx], np.float32),
                "mask": np.asarray(mask[idx], bool) & valid[rows][:, None],
            }
            if self.mesh is None:
                emb = self._motion(self.params, *(jnp.asarray(batch[k]) for k in batch))
            else:
                batch = parallel.shard_batch(batch, self.mesh, b)
                emb = self._motion(self.params, batch["motion"], batch["mask"])
            out.append(parallel.to_host(emb)[valid])
            progress.update(min(start + b, n))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def text(self, vectors: np.ndarray) -> np.ndarray:
        """Frozen text vectors [M, D] -> the joint space [M, E] (not normalised)."""
        return np.asarray(self._text(self.params, jnp.asarray(vectors, jnp.float32)))
