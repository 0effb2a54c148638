"""The objective: one function per loss name; masked rows leave the global mean exact."""

import jax
import numpy as np
import pytest

from experiments import toy as toy_config
from wat_jax import objectives, parallel, train
from wat_jax.tasks import toy


def test_every_loss_name_has_one_function_and_unknown_names_fail():
    assert set(objectives.LOSSES) == {"mse", "infonce", "siglip", "triplet"}
    assert all(callable(f) for f in objectives.LOSSES.values())
    config = toy_config.get_config("smoke")
    config.loss.name = "cosine"
    with pytest.raises(ValueError, match="config.loss.name must be one of"):
        objectives.objective_terms(None, {}, {}, None, config.loss)


def _one_step(num_devices, text_mask):
    """Loss and params after one MSE step on the toy batch with `text_mask` rows [B] kept."""
    config = toy_config.get_config("smoke")
    config.model.dropout = 0.0  # dropout masks depend on the device layout
    config.loss.name = "mse"
    config.optim.eps = 1e-3  # as tests/test_step.py: keeps zero-gradient entries still
    mesh = parallel.make_mesh(num_devices)
    batcher = toy.TASK.train_batcher(config, None, slice(0, config.batch_size))
    host = batcher.batch(0)
    host["text_mask"] = host["text_mask"] & text_mask[:, None]
    model = train.create_model(config, host["text"].shape[-1], host["labels"].shape[-1])
    tx = train.make_optimizer(config.optim, config.total_steps)
    state = parallel.replicate(train.create_train_state(model, tx, config.seed, host), mesh)
    step = train.make_train_step(model, tx, config.loss, mesh, config.batch_size)
    state, metrics = step(state, parallel.shard_batch(host, mesh, config.batch_size))
    return float(metrics["loss"]), jax.tree.leaves(jax.tree.map(np.asarray, state.params))


def test_mse_rows_without_a_target_leave_eight_devices_equal_to_one():
    # 16 rows, 2 per device: device 0 has no row with a text target, device 1 one.
    # A per-device mean scaled back by the row count (what objectives did before
    # losses had one form) would weigh device 1's row twice and device 0's none.
    keep = np.ones(toy_config.get_config("smoke").batch_size, bool)
    keep[:3] = False
    loss8, params8 = _one_step(8, keep)
    loss1, params1 = _one_step(1, keep)
    np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(params8, params1))
    assert worst <= 1e-5, worst
