"""The objective: one function per loss name; masked rows leave the global mean exact."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments import toy as toy_config
from wat_jax import objectives, parallel, train
from wat_jax.tasks import toy


def test_every_loss_name_has_one_function_and_unknown_names_fail():
    assert set(objectives.LOSSES) == {"mse", "infonce", "siglip", "triplet"}
    assert all(callable(f) for f in objectives.LOSSES.values())
    config = toy_config.get_config("smoke")
    config.loss.name = "cosine"
    with pytest.raises(ValueError, match="config.loss.name must be one of"):
        objectives.objective_terms(None, {}, {}, None, config.loss, config.data.threshold)


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
    step = train.make_train_step(
        model, tx, config.loss, mesh, config.batch_size, threshold=config.data.threshold
    )
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


def _drawn_on(num_devices, step_key, global_rows=16):
    """drawn_negatives on every device of a `num_devices` mesh, gathered in row order."""
    mesh = parallel.make_mesh(num_devices)
    local = global_rows // num_devices
    draw = jax.shard_map(
        lambda key: objectives.drawn_negatives(key, global_rows, parallel.global_row_index(local)),
        mesh=mesh,
        in_specs=P(),
        out_specs=P(parallel.AXIS),
        check_vma=False,
    )
    return np.asarray(jax.jit(draw)(step_key))


def test_reference_negatives_are_one_permutation_shared_by_every_device():
    key = jax.random.fold_in(jax.random.key(10), 3)
    drawn8, drawn1 = _drawn_on(8, key), _drawn_on(1, key)
    np.testing.assert_array_equal(drawn8, drawn1)
    np.testing.assert_array_equal(np.sort(drawn8), np.arange(16))  # a permutation
    expected = jax.random.permutation(objectives.shared_key(key), 16)
    np.testing.assert_array_equal(drawn8, np.asarray(expected))
    other = _drawn_on(8, jax.random.fold_in(jax.random.key(10), 4))
    assert (other != drawn8).any()  # a new draw every step


def _reference_triplet_by_hand(model, params, host, step_key, margin):
    """The step's reference triplet recomputed outside it: embeddings of the whole batch,
    the step's permutation, and the authors' rule in numpy (float64)."""
    variables = {"params": params}
    motion = np.asarray(
        model.apply(variables, host["motion"], host["mask"], train=False, method="embed_motion"),
        np.float64,
    )
    text = np.asarray(
        model.apply(variables, host["text"], train=False, method="embed_text")[:, 0], np.float64
    )
    sets = host["labels"] > 0.5
    perm = np.asarray(jax.random.permutation(objectives.shared_key(step_key), len(motion)))
    terms, replaced = [], 0
    for i, j in enumerate(perm):
        same = bool((sets[i] == sets[j]).all())
        replaced += same
        negative = motion[i] if same else text[j]
        d_pos = np.linalg.norm(motion[i] - text[i] + 1e-6)
        d_neg = np.linalg.norm(motion[i] - negative + 1e-6)
        terms.append(max(d_pos - d_neg + margin, 0.0))
    return float(np.mean(terms)), replaced


@pytest.mark.parametrize("num_devices", [8, 1])
def test_reference_triplet_in_the_step_is_the_authors_rule(num_devices):
    config = toy_config.get_config("smoke")
    config.model.dropout = 0.0
    config.loss.update(name="triplet", mining="reference", margin=2.0)
    mesh = parallel.make_mesh(num_devices)
    host = toy.TASK.train_batcher(config, None, slice(0, config.batch_size)).batch(0)
    model = train.create_model(config, host["text"].shape[-1], host["labels"].shape[-1])
    tx = train.make_optimizer(config.optim, config.total_steps)
    state = train.create_train_state(model, tx, config.seed, host)
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), 0)
    expected, replaced = _reference_triplet_by_hand(model, state.params, host, step_key, 2.0)
    assert 0 < replaced < config.batch_size  # some anchors drew their own attribute set
    step = train.make_train_step(
        model, tx, config.loss, mesh, config.batch_size, threshold=config.data.threshold
    )
    _, metrics = step(
        parallel.replicate(state, mesh), parallel.shard_batch(host, mesh, config.batch_size)
    )
    np.testing.assert_allclose(float(metrics["triplet"]), expected, rtol=1e-5)


def test_dropout_keys_are_the_step_key_folded_with_the_device():
    """Dropout masks as before the step passed one key to every device: fold_in(fold_in(
    train key, step), device), so runs trained before are reproduced bit for bit."""
    mesh = parallel.make_mesh(8)
    step_key = jax.random.fold_in(jax.random.key(10), 7)
    keys = jax.jit(
        jax.shard_map(
            lambda k: jax.random.key_data(objectives.dropout_key(k))[None],
            mesh=mesh,
            in_specs=P(),
            out_specs=P(parallel.AXIS),
            check_vma=False,
        )
    )(step_key)
    for device in range(8):
        expected = jax.random.key_data(jax.random.fold_in(step_key, device))
        np.testing.assert_array_equal(np.asarray(keys[device]), np.asarray(expected))
