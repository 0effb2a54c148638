"""towers.Towers: the one way a model meets host arrays; on a mesh and off it, the
rows the model gives, in input order, whatever the batch size."""

import jax
import numpy as np

from experiments import toy
from wat_jax import parallel, state
from wat_jax.towers import Towers


def _model_and_params():
    config = toy.get_config("smoke")
    config.model.text_projection = "head"  # a projection with params (identity has none)
    dims = state.ModelDims(frames=12, joints=3, features=4, text_dim=8, num_classes=0)
    model = state.create_model(config, dims.text_dim, dims.num_classes)
    params = state.init_params(model, 0, dims.example())
    return model, params, dims


def _windows(n, dims, seed=0):
    rng = np.random.default_rng(seed)
    motion = rng.standard_normal((n, dims.frames, dims.joints, dims.features)).astype(np.float32)
    mask = np.arange(dims.frames)[None] < rng.integers(1, dims.frames + 1, n)[:, None]
    return motion, mask


def test_motion_rows_equal_the_model_on_and_off_a_mesh():
    model, params, dims = _model_and_params()
    motion, mask = _windows(11, dims)  # not a multiple of either batch size: padded
    direct = np.asarray(model.apply({"params": params}, motion, mask, method="embed_motion"))
    off_mesh = Towers(model, params, batch_size=4).motion(motion, mask)
    mesh = parallel.make_mesh()
    on_mesh = Towers(model, parallel.replicate(params, mesh), mesh, batch_size=16)
    np.testing.assert_allclose(off_mesh, direct, atol=1e-5, rtol=0)
    np.testing.assert_allclose(on_mesh.motion(motion, mask), direct, atol=1e-5, rtol=0)
    assert Towers(model, params).motion(motion[:0], mask[:0]).shape[0] == 0


def test_text_is_the_projection_and_params_swap_without_a_new_compile():
    model, params, _ = _model_and_params()
    vectors = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    towers = Towers(model, params)
    direct = model.apply({"params": params}, vectors, method="embed_text")
    np.testing.assert_allclose(towers.text(vectors), direct, atol=1e-6, rtol=0)
    towers.params = jax.tree.map(lambda x: x * 2, params)  # periodic evaluation does this
    assert not np.allclose(towers.text(vectors), direct)
    assert towers._text._cache_size() == 1
