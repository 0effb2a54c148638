"""SkeletonTransformer: shapes, padding invariance for every pooling, heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wat_jax.models.skeleton import MotionTextModel, SkeletonTransformer, sinusoidal_positions


def _inputs(batch=3, frames=12, joints=5, feats=6, seed=0):
    rng = np.random.default_rng(seed)
    motion = rng.standard_normal((batch, frames, joints, feats)).astype(np.float32)
    lengths = np.array([frames, 7, 3])[:batch]
    mask = np.arange(frames)[None] < lengths[:, None]
    return motion, mask


@pytest.mark.parametrize("pooling", ["cls", "mean", "first"])
@pytest.mark.parametrize("pre_norm", [True, False])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_padded_frames_never_change_the_embedding(pooling, pre_norm, positions):
    model = SkeletonTransformer(
        width=16,
        layers=2,
        heads=2,
        mlp_dim=32,
        dropout=0.0,
        pre_norm=pre_norm,
        positions=positions,
        pooling=pooling,
        max_len=16,
    )
    motion, mask = _inputs()
    params = model.init(jax.random.key(0), motion, mask)
    emb = model.apply(params, motion, mask)
    assert emb.shape == (3, 16)
    # Replace the padding with large garbage: the embedding must not move.
    garbage = np.where(mask[..., None, None], motion, 1e3 * np.ones_like(motion))
    emb2 = model.apply(params, garbage, mask)
    np.testing.assert_allclose(emb, emb2, atol=1e-5)
    # ... and a shorter padded length gives the same embedding as the full one.
    emb3 = model.apply(params, motion[2:3, :3], mask[2:3, :3])
    np.testing.assert_allclose(emb[2:3], emb3, atol=1e-5)
    # Real frames do matter (the test would pass for a constant model otherwise).
    moved = motion.copy()
    moved[:, 0] += 1.0
    assert np.abs(model.apply(params, moved, mask) - emb).max() > 1e-3


def test_sinusoidal_table_matches_formula():
    table = sinusoidal_positions(10, 8)
    pos, i = 7, 3
    assert np.isclose(table[pos, 2 * i], np.sin(pos / 10000 ** (2 * i / 8)))
    assert np.isclose(table[pos, 2 * i + 1], np.cos(pos / 10000 ** (2 * i / 8)))


def test_motion_text_model_heads_and_dtype():
    model = MotionTextModel(
        encoder=dict(width=16, layers=1, heads=2, mlp_dim=32, dropout=0.1),
        embed_dim=8,
        text_projection="head",
        num_classes=4,
        dtype=jnp.bfloat16,
    )
    motion, mask = _inputs()
    text = np.ones((3, 2, 5), np.float32)
    variables = model.init(jax.random.key(0), motion, mask, text)
    params = variables["params"]
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    m, t, logits = model.apply(variables, motion, mask, text)
    assert m.shape == (3, 8) and t.shape == (3, 2, 8) and logits.shape == (3, 4)
    assert m.dtype == jnp.float32
    # Dropout is active in training and needs a key; outputs differ from eval.
    m_train = model.apply(
        variables,
        motion,
        mask,
        method="embed_motion",
        train=True,
        rngs={"dropout": jax.random.key(1)},
    )
    assert np.abs(np.asarray(m_train) - np.asarray(m)).max() > 1e-4


def test_identity_text_projection_keeps_vectors():
    model = MotionTextModel(
        encoder=dict(width=16, layers=1, heads=2, mlp_dim=32),
        embed_dim=5,
        text_projection="identity",
    )
    motion, mask = _inputs()
    text = np.random.default_rng(0).standard_normal((3, 2, 5)).astype(np.float32)
    variables = model.init(jax.random.key(0), motion, mask, text)
    np.testing.assert_array_equal(model.apply(variables, text, method="embed_text"), text)


def test_hashed_dropout_masks_are_reproducible_and_uncorrelated():
    from wat_jax.models.skeleton import keep_mask

    key = jax.random.key(0)
    mask = np.asarray(keep_mask(key, (40, 60, 96), 0.1)).reshape(-1)
    np.testing.assert_array_equal(mask, np.asarray(keep_mask(key, (40, 60, 96), 0.1)).reshape(-1))
    assert abs(mask.mean() - 0.9) < 0.003
    bits = mask.astype(np.float64)
    for lag in (1, 96, 60 * 96):  # neighbours along each axis
        assert abs(np.corrcoef(bits[:-lag], bits[lag:])[0, 1]) < 0.01
    for other in (jax.random.key(1), jax.random.fold_in(key, 1)):
        draw = np.asarray(keep_mask(other, (40, 60, 96), 0.1)).reshape(-1)
        assert abs(np.corrcoef(bits, draw.astype(np.float64))[0, 1]) < 0.01


def test_dropout_keeps_the_expected_fraction_and_mean():
    from wat_jax.models.skeleton import Dropout

    x = jnp.ones((64, 257), jnp.float32)
    out = Dropout(0.3).apply({}, x, rngs={"dropout": jax.random.key(0)})
    kept = np.asarray(out) != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(np.asarray(out)[kept], 1 / 0.7, rtol=1e-6)
    assert abs(float(out.mean()) - 1.0) < 0.02  # inverted dropout keeps the expectation
    same = Dropout(0.3, deterministic=True).apply({}, x)
    np.testing.assert_array_equal(same, x)
