"""The data-parallel step: 8 devices equal 1, the loss falls, one compilation, skips."""

import jax
import numpy as np
import pytest

from experiments import toy as toy_config
from wat_jax import parallel, train
from wat_jax.tasks import toy


def _setup(loss_name, num_devices, **loss_overrides):
    config = toy_config.get_config("smoke")
    config.model.dropout = 0.0  # dropout masks depend on the device layout
    config.loss.name = loss_name
    config.loss.update(loss_overrides)
    config.text.targets = ("description", "name")
    # Adam divides by sqrt(v): entries whose true gradient is zero (e.g. the
    # attention key bias) turn float rounding noise into lr-sized steps, whose
    # sign differs between any two summation orders. A larger eps keeps such
    # entries still, so the comparison tests the parallel step, not rounding.
    config.optim.eps = 1e-3
    if loss_name == "mse" and config.loss.ce_weight:
        config.optim.lr = 1e-3
    mesh = parallel.make_mesh(num_devices)
    batcher = toy.TASK.train_batcher(config, None, slice(0, config.batch_size))
    example = batcher.batch(0)
    model = train.create_model(config, example["text"].shape[-1], example["labels"].shape[-1])
    tx = train.make_optimizer(config.optim, config.total_steps)
    state = parallel.replicate(train.create_train_state(model, tx, config.seed, example), mesh)
    step = train.make_train_step(
        model, tx, config.loss, mesh, config.batch_size, threshold=config.data.threshold
    )
    return config, mesh, batcher, state, step


def _run(loss_name, num_devices, steps=3, **loss_overrides):
    config, mesh, batcher, state, step = _setup(loss_name, num_devices, **loss_overrides)
    losses = []
    for i in range(steps):
        batch = parallel.shard_batch(batcher.batch(i * config.batch_size), mesh, config.batch_size)
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return jax.tree.map(np.asarray, state.params), losses


@pytest.mark.parametrize(
    "loss_name,overrides",
    [
        ("infonce", dict(targets="soft")),
        ("infonce", dict(targets="multi_positive")),
        ("siglip", dict(targets="multi_positive")),
        ("triplet", dict(margin=1.0)),
        # One permutation of the global batch, drawn alike on every device.
        ("triplet", {"margin": 1.0, "mining": "reference"}),
        ("mse", dict(ce_weight=1.0, weight=0.4)),
    ],
)
def test_eight_devices_equal_one_device(loss_name, overrides):
    params8, losses8 = _run(loss_name, 8, **overrides)
    params1, losses1 = _run(loss_name, 1, **overrides)
    np.testing.assert_allclose(losses8, losses1, rtol=1e-5, atol=1e-6)
    flat8, flat1 = jax.tree.leaves(params8), jax.tree.leaves(params1)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(flat8, flat1))
    assert worst <= 1e-5, worst
    # The parameters moved, so the equality above says something.
    _, _, _, init_state, _ = _setup(loss_name, 1, **overrides)
    moved = max(
        float(np.abs(a - np.asarray(b)).max())
        for a, b in zip(flat1, jax.tree.leaves(init_state.params))
    )
    assert moved > 1e-4


def test_loss_falls_on_a_fixed_batch_and_the_step_compiles_once():
    config, mesh, batcher, state, step = _setup("infonce", 8, targets="multi_positive")
    batch = parallel.shard_batch(batcher.batch(0), mesh, config.batch_size)
    losses = []
    for _ in range(25):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0], losses
    assert step._cache_size() == 1


def test_non_finite_batch_skips_the_update_and_is_counted():
    config, mesh, batcher, state, step = _setup("mse", 8)
    host = batcher.batch(0)
    host["motion"][3, 0, 0, 0] = np.nan
    before = jax.tree.map(np.asarray, state.params)
    state, metrics = step(state, parallel.shard_batch(host, mesh, config.batch_size))
    assert int(state.skipped) == 1 and int(state.consecutive_skips) == 1
    assert float(metrics["skipped_steps"]) == 1.0
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, np.asarray(b))
    # A finite batch afterwards updates again and resets the consecutive count.
    state, _ = step(state, parallel.shard_batch(batcher.batch(16), mesh, config.batch_size))
    assert int(state.skipped) == 1 and int(state.consecutive_skips) == 0


def test_batch_not_divisible_by_devices_is_a_clear_error():
    from wat_jax.errors import InputError

    with pytest.raises(InputError, match="batch_size=12 is not divisible by the 8 devices"):
        parallel.check_batch_size(12, parallel.make_mesh(8))


def test_the_initial_state_is_one_compiled_program():
    # Run op by op, initialisation compiled ~140 small programs at every command's start.
    config = toy_config.get_config("smoke")
    config.model.width = 40  # shapes nothing else in the session compiles (nothing cached)
    config.model.mlp_dim = 72
    example = toy.TASK.train_batcher(config, None, slice(0, config.batch_size)).batch(0)
    model = train.create_model(config, example["text"].shape[-1], example["labels"].shape[-1])
    tx = train.make_optimizer(config.optim, config.total_steps)
    compiles = []

    def listen(event, seconds, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        state = jax.block_until_ready(train.create_train_state(model, tx, config.seed, example))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert len(compiles) == 1
    assert state.params["motion_encoder"]["frame_embed"]["kernel"].shape[-1] == 40


@pytest.mark.parametrize("decay, bias_moves", [("matrices", False), ("all", True)])
def test_weight_decay_reaches_every_parameter_only_with_decay_all(decay, bias_moves):
    """The reference's torch AdamW decays biases and norms too (optim.decay=all)."""
    import ml_collections
    import optax

    from wat_jax.errors import InputError

    optim = toy_config.get_config("smoke").optim
    optim.update(lr=0.1, weight_decay=0.5, schedule="constant", grad_clip=0.0, decay=decay)
    tx = train.make_optimizer(optim, total_steps=10)
    params = {"kernel": np.ones((2, 2), np.float32), "bias": np.ones(2, np.float32)}
    zeros = jax.tree.map(np.zeros_like, params)  # no gradient: only the decay moves a leaf
    updates, _ = tx.update(zeros, tx.init(params), params)
    moved = optax.apply_updates(params, updates)
    assert not np.allclose(moved["kernel"], 1.0)  # matrices decay either way
    assert (not np.allclose(moved["bias"], 1.0)) == bias_moves
    with pytest.raises(InputError, match="optim.decay"):
        train.make_optimizer(ml_collections.ConfigDict(dict(optim, decay="some")), 10)
