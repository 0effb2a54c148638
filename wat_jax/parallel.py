"""Devices: the mesh, host-to-device batches, multi-host start-up, gathers.

The only module that builds meshes and turns host arrays into device arrays.
Data parallelism uses one mesh axis, `data`; parameters are replicated and
each device holds `global_batch / device_count` rows of every batch.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from wat_jax.errors import InputError

AXIS = "data"


def maybe_initialize_distributed(
    coordinator_address: str = "", num_processes: int = 0, process_id: int = -1
) -> None:
    """Starts multi-host JAX when flags or the cluster environment ask for it.

    Explicit flags win; otherwise SLURM (srun), Open MPI or a TPU pod is detected
    by jax.distributed itself when `WAT_JAX_DISTRIBUTED=1` is set by the launcher.
    """
    explicit = bool(coordinator_address) or num_processes > 1
    if not explicit and os.environ.get("WAT_JAX_DISTRIBUTED") != "1":
        return
    if jax.distributed.is_initialized():
        return
    # CPU collectives across processes need gloo (the default has none); the
    # setting only affects the CPU backend, so it is safe on GPU and TPU hosts.
    # (Asking jax which backend is in use would start it, which must not
    # happen before initialize.)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if explicit:
        kwargs = dict(
            coordinator_address=coordinator_address or None,
            num_processes=num_processes or None,
            process_id=process_id if process_id >= 0 else None,
        )
    jax.distributed.initialize(**kwargs)
    if jax.process_count() > 1 and jax.default_backend() == "cpu":
        # No persistent compilation cache across CPU processes: their cache keys differ
        # (only process 0 ever hits), and jax 0.12 hangs in the first collective of a
        # program that process 0 loaded from the cache while the others compiled it.
        jax.config.update("jax_enable_compilation_cache", False)
    logging.info(
        "distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A one-axis ('data',) mesh over all (or the first `num_devices`) devices."""
    devices = jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise InputError(
                f"config.num_devices={num_devices} but only {len(devices)} devices exist"
            )
        devices = devices[:num_devices]
    return jax.sharding.Mesh(np.asarray(devices), (AXIS,))


def check_batch_size(global_batch: int, mesh: jax.sharding.Mesh, key: str = "batch_size") -> int:
    """Returns the per-device batch; a clear error when it does not divide."""
    n = mesh.devices.size
    if global_batch <= 0 or global_batch % n:
        lower = max(n, global_batch // n * n)
        raise InputError(
            f"config.{key}={global_batch} is not divisible by the {n} devices; "
            f"use a multiple of {n} such as {lower} or {lower + n}"
        )
    return global_batch // n


def data_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def process_rows(global_batch: int, mesh) -> slice:
    """The rows of a global batch that this process feeds (its local devices' shards)."""
    per_process = global_batch // jax.process_count()
    start = jax.process_index() * per_process
    # Meshes built by make_mesh list devices in process order, so this
    # process's devices hold this contiguous block of rows.
    return slice(start, start + per_process)


def shard_batch(local_batch: dict, mesh, global_batch: int) -> dict:
    """Host arrays holding this process's rows -> global arrays sharded on `data`."""
    sharding = data_sharding(mesh)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x, (global_batch,) + x.shape[1:])

    return jax.tree.map(put, local_batch)


def replicate(tree, mesh):
    """Places a host or device pytree on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def gather(x):
    """Inside shard_map: this device's rows -> every device's rows, in device order."""
    return jax.lax.all_gather(x, AXIS, tiled=True)


def global_row_index(local_rows: int):
    """Inside shard_map: each local row's position in the global batch."""
    return jax.lax.axis_index(AXIS) * local_rows + jnp.arange(local_rows)


def to_host(tree):
    """Fully replicated or addressable arrays -> numpy on every process."""

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = multihost_utils.process_allgather(x, tiled=True)
        return np.asarray(x)

    return jax.tree.map(fetch, tree)


def runtime_summary() -> str:
    """Backend, device kind and count, and this process's place: for start-up headers."""
    devices = jax.devices()
    return (
        f"backend {jax.default_backend()}, {len(devices)} x {devices[0].device_kind} "
        f"({jax.local_device_count()} local), process {jax.process_index()} of "
        f"{jax.process_count()}"
    )
