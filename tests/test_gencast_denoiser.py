"""The full GenCast denoiser, loaded from a checkpoint file, against DeepMind's reference.

A tiny random configuration (`assimilax_adapters.gencast.testing`) is written with
`save_checkpoint`, read back with `GenCastDenoiser.from_checkpoint` and evaluated on the synthetic
inputs; ``tests/data/gencast/tiny_golden.npz["denoised"]`` is the reference's
``GenCast._preconditioned_denoiser`` (graphcast 08cf736, haiku) for the same parameters, inputs
and noise levels (0.5 and 20).  Tolerance: float32, ``atol = rtol = 1e-5``; observed max abs
error 2e-6 on outputs of magnitude up to 4.
"""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray

import assimilax
from assimilax_adapters.gencast import (
    CheckPoint,
    NoiseConfig,
    SamplerConfig,
    denoiser as D,
    params as P,
    save_checkpoint,
    testing as T,
)
from assimilax_adapters.gencast.checkpoint import CheckpointFormatError

GOLDEN = Path(__file__).parent / "data" / "gencast" / "tiny_golden.npz"
TOL = dict(rtol=1e-5, atol=1e-5)


def tiny_checkpoint(params=None) -> CheckPoint:
    task, arch, nenc = T.tiny_task(), T.tiny_arch(), T.tiny_noise_encoder()
    if params is None:
        params = P.random_params(P.checkpoint_param_shapes(task, arch, nenc), seed=0)
    return CheckPoint(
        description="tiny random GenCast for tests", license="none", params=params,
        task_config=task, denoiser_architecture_config=arch, sampler_config=SamplerConfig(),
        noise_config=NoiseConfig(), noise_encoder_config=nenc,
    )


def sample(data, b):
    return xarray.Dataset(
        {k: (dims[1:], a[b]) if dims[0] == "batch" else (dims, a) for k, (dims, a) in data.items()}
    )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    path = tmp_path_factory.mktemp("gencast") / "tiny.npz"
    save_checkpoint(path, tiny_checkpoint())
    return D.GenCastDenoiser.from_checkpoint(path, T.LAT, T.LON)


def test_checkpoint_round_trip_matches_reference(loaded):
    assert isinstance(loaded, assimilax.AbstractDenoiser)
    inputs, targets, forcings = T.tiny_data()
    golden = np.load(GOLDEN)["denoised"]
    call = eqx.filter_jit(loaded)
    for b in range(T.BATCH):
        ctx = D.GenCastContext(
            jnp.asarray(D.stack_dataset(sample(inputs, b))),
            jnp.asarray(D.stack_dataset(sample(forcings, b))),
        )
        x = jnp.asarray(D.stack_dataset(sample(targets, b))).reshape(-1)
        out = call(x, T.SIGMA[b], ctx)
        assert out.shape == x.shape
        np.testing.assert_allclose(np.asarray(out).reshape(6, 12, 3), golden[b], **TOL)


def test_vmap_over_particles(loaded):
    inputs, targets, forcings = T.tiny_data()
    ctx = jax.tree.map(
        lambda *a: jnp.stack(a),
        *[D.GenCastContext(jnp.asarray(D.stack_dataset(sample(inputs, b))),
                           jnp.asarray(D.stack_dataset(sample(forcings, b)))) for b in range(2)],
    )
    x = jnp.stack([jnp.asarray(D.stack_dataset(sample(targets, b))).reshape(-1) for b in range(2)])
    out = eqx.filter_jit(eqx.filter_vmap(loaded))(x, jnp.asarray(T.SIGMA), ctx)
    np.testing.assert_allclose(np.asarray(out).reshape(2, 6, 12, 3), np.load(GOLDEN)["denoised"], **TOL)


def test_channel_order_interleaves_by_name():
    # forcings (day_progress_cos, year_progress_sin) then targets (2m_temperature, temperature x2)
    # -> sorted: 2m_temperature, day_progress_cos, temperature x2, year_progress_sin.
    np.testing.assert_array_equal(D.forcing_channel_order(T.tiny_task()), [2, 0, 3, 4, 1])


def _params():
    return P.random_params(
        P.checkpoint_param_shapes(T.tiny_task(), T.tiny_arch(), T.tiny_noise_encoder()), seed=1
    )


def _load(params):
    ck = tiny_checkpoint(params)
    return D.GenCastDenoiser.from_checkpoint(ck, T.LAT, T.LON)


def test_missing_parameter_is_named():
    params = _params()
    del params["mesh_transformer/~/transformer/block_01/ffw_up"]
    with pytest.raises(CheckpointFormatError, match="block_01/ffw_up"):
        _load(params)


def test_extra_parameter_is_named():
    params = _params()
    params["mesh_transformer/~/transformer/block_02/ffw_up"] = {"w": np.zeros((16, 32), np.float32)}
    with pytest.raises(CheckpointFormatError, match="unexpected module.*block_02/ffw_up"):
        _load(params)


def test_misshapen_parameter_is_named():
    params = _params()
    key = "grid2mesh_gnn/~_networks_builder/encoder_nodes_grid_nodes_mlp/~/linear_0"
    params[key]["w"] = np.zeros((18, 16), np.float32)
    with pytest.raises(CheckpointFormatError, match=r"encoder_nodes_grid_nodes_mlp/~/linear_0:w.*\(18, 16\)"):
        _load(params)


def test_default_denoiser_uses_the_reference_graph_on_a_tie_grid():
    """10-degree grid with the poles (tie points on the mesh's mirror planes), mesh 1.

    The default denoiser's mesh2grid edges are the reference's (``mesh2grid_ties.npz``, see
    test_gencast_grid_mesh), so its output is the reference's wherever the network is (the
    tiny golden above, 2e-6).  The NumPy backend's tie rule changes the output at the 4 tie
    nodes only, by far more than the 1e-4 tolerance: the ties matter.
    """
    lat = np.linspace(-90.0, 90.0, 19).astype(np.float32)
    lon = np.arange(0.0, 360.0, 10.0).astype(np.float32)
    params = _params()
    task, arch, nenc = T.tiny_task(), T.tiny_arch(), T.tiny_noise_encoder()
    exact = D.GenCastDenoiser.from_params(params, task, arch, nenc, lat, lon)
    approx = D.GenCastDenoiser.from_params(params, task, arch, nenc, lat, lon, mesh2grid_backend="numpy")
    faces = np.load(GOLDEN.with_name("mesh2grid_ties.npz"))["deg10_mesh1"].astype(np.int64)
    from assimilax_adapters.gencast.mesh import gencast_mesh

    np.testing.assert_array_equal(np.asarray(exact.mesh2grid.senders), gencast_mesh(1).faces[faces].reshape(-1))
    rng = np.random.default_rng(3)
    n_grid, n_forcing = lat.size * lon.size, 2
    n_in = exact.n_input_channels - n_forcing - exact.n_outputs
    ctx = D.GenCastContext(
        jnp.asarray(rng.standard_normal((n_grid, n_in)), jnp.float32),
        jnp.asarray(rng.standard_normal((n_grid, n_forcing)), jnp.float32),
    )
    x = jnp.asarray(rng.standard_normal(n_grid * exact.n_outputs), jnp.float32)
    tie_nodes = np.flatnonzero(np.any(
        np.asarray(exact.mesh2grid.senders).reshape(-1, 3) != np.asarray(approx.mesh2grid.senders).reshape(-1, 3), axis=1))
    assert tie_nodes.size == 4 and np.all(np.isin(tie_nodes % lon.size, [0, 6, 18, 30]))  # lon 0, 60, 180, 300
    for sigma in (80.0, 1.0, 0.05):
        a = np.asarray(eqx.filter_jit(exact)(x * sigma, sigma, ctx)).reshape(n_grid, -1)
        b = np.asarray(eqx.filter_jit(approx)(x * sigma, sigma, ctx)).reshape(n_grid, -1)
        off = np.setdiff1d(np.arange(n_grid), tie_nodes)
        np.testing.assert_allclose(a[off], b[off], rtol=0, atol=1e-6)
        assert np.abs(a[tie_nodes] - b[tie_nodes]).max() > 1e-3


def test_stack_dataset_without_grid_dimensions():
    # Time-only forcings (year_progress_*) have no lat/lon: broadcast over a given grid.
    ds = xarray.Dataset({"year_progress_sin": (("time",), np.array([0.25], np.float32)),
                         "year_progress_cos": (("time",), np.array([-0.5], np.float32))})
    out = D.stack_dataset(ds, grid_shape=(3, 4))
    assert out.shape == (12, 2)
    np.testing.assert_array_equal(out[:, 0], -0.5)  # sorted by name: cos before sin
    np.testing.assert_array_equal(out[:, 1], 0.25)
    with pytest.raises(ValueError, match="no 'lat' dimension.*grid_shape"):
        D.stack_dataset(ds)
    mixed = ds.assign(t=(("lat", "lon"), np.zeros((3, 4), np.float32)))
    assert D.stack_dataset(mixed).shape == (12, 3)
    with pytest.raises(ValueError, match="grid_shape gives 5 for 'lon'"):
        D.stack_dataset(mixed, grid_shape=(3, 5))
