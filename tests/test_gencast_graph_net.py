"""Grid2mesh and mesh2grid graph networks against DeepMind's reference, piece by piece.

Golden values (``tests/data/gencast/tiny_golden.npz``): intermediate arrays of the reference's
``_DenoiserArchitecture`` (graphcast 08cf736, haiku) for the tiny configuration of
`assimilax_adapters.gencast.testing`, parameters ``random_params(seed=0)``, batch of 2.  Each
piece is fed the reference's own input to it, so errors do not accumulate across pieces.

Tolerance: float32, ``atol = rtol = 1e-5`` (outputs are O(1)-O(10)); observed: grid2mesh and the
noise encoder agree bit for bit, mesh2grid to 1.5e-6 (summation order of the scatter-add).
"""

from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax_adapters.gencast import testing as T

GOLDEN = Path(__file__).parent / "data" / "gencast" / "tiny_golden.npz"
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def setup():
    return T.tiny_denoiser(seed=0), dict(np.load(GOLDEN))


def batch_first(a):
    return jnp.asarray(np.swapaxes(a, 0, 1))


def test_graphs_match_reference(setup):
    den, g = setup
    np.testing.assert_array_equal(den.grid2mesh.senders, g["g2m_s"])
    np.testing.assert_array_equal(den.grid2mesh.receivers, g["g2m_r"])
    np.testing.assert_array_equal(den.mesh2grid.senders, g["m2g_s"])
    np.testing.assert_array_equal(den.mesh2grid.receivers, g["m2g_r"])


def test_noise_level_encoder(setup):
    den, g = setup
    np.testing.assert_allclose(eqx.filter_vmap(den.noise_encoder)(T.SIGMA), g["cond"], **TOL)


def test_grid2mesh(setup):
    den, g = setup
    mesh, grid = eqx.filter_jit(eqx.filter_vmap(den.grid2mesh))(batch_first(g["grid_features"]), jnp.asarray(g["cond"]))
    np.testing.assert_allclose(np.swapaxes(mesh, 0, 1), g["latent_mesh"], **TOL)
    np.testing.assert_allclose(np.swapaxes(grid, 0, 1), g["latent_grid"], **TOL)


def test_mesh2grid(setup):
    den, g = setup
    out = eqx.filter_jit(eqx.filter_vmap(den.mesh2grid))(
        batch_first(g["transformer_out"]), batch_first(g["latent_grid"]), jnp.asarray(g["cond"])
    )
    np.testing.assert_allclose(np.swapaxes(out, 0, 1), g["raw_out"], **TOL)


def test_aggregate_normalization_matters(setup):
    den, g = setup
    other = den.grid2mesh.__class__(**{**vars(den.grid2mesh), "aggregate_normalization": None})
    mesh, _ = eqx.filter_jit(other)(batch_first(g["grid_features"])[0], jnp.asarray(g["cond"][0]))
    assert not np.allclose(mesh, g["latent_mesh"][:, 0], atol=1e-3)
