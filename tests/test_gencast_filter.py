"""THE GenCast end-to-end test (issue 4): a randomly initialised tiny GenCast is written to a
checkpoint file in the official format, loaded back with the statistics files through
`GenCastEmulator.from_files`, and driven by the core FA-APF for two cycles with a few particles
on a synthetic ERA5-layout dataset (7 x 12 grid, 2 levels, SST with NaN over land, precipitation
that is not an input), on CPU in seconds.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import assimilax as ax
from assimilax_adapters.gencast import save_checkpoint, testing as T
from assimilax_adapters.gencast.emulator import GenCastEmulator
from assimilax_adapters.gencast.normalization import Statistics
from assimilax_adapters.gencast.observations import all_levels, every_nth, observation_model

N_PARTICLES = 4
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gencast_files")
    save_checkpoint(root / "tiny.npz", T.filter_checkpoint(seed=3))
    T.write_synthetic_statistics(root / "stats")
    T.synthetic_era5(n_times=4, seed=2).to_netcdf(root / "era5.nc")
    return root


def test_two_fa_apf_cycles_from_checkpoint_file(files):
    ds = xr.load_dataset(files / "era5.nc")
    emulator = GenCastEmulator.from_files(files / "tiny.npz", files / "stats", ds)
    stats = Statistics.from_dir(files / "stats")
    states = jnp.asarray(emulator.states(ds))  # (4, d): history x[0], x[1]; truth x[2], x[3]
    fields = all_levels(emulator.layout, "2m_temperature") + all_levels(emulator.layout, "temperature")
    observation, obs_fields = observation_model([every_nth(emulator.layout, fields, 4)], 0.1, stats)
    assert observation.obs_size == len(obs_fields) == 3 * 21
    y = jax.vmap(observation.sample)(jax.random.split(jax.random.key(0), 2), states[2:])
    sampler = ax.Sampler(ax.EDMSchedule(0.05, 80.0, 7.0), 2, diffrax.Euler())
    filt = ax.FAAPF(emulator, observation, sampler, ax.MMPS(iterations=1), tempering=ax.ESSBandTempering(0.5, 0.75))
    forcings = jax.tree.map(jnp.asarray, emulator.forcings(ds.time.values[2:]))
    state = filt.init(jnp.broadcast_to(states[:2], (N_PARTICLES, 2, emulator.state_size)))
    args = (filt, state, y, jax.random.key(1), forcings)
    # XLA's CPU backend optimisations take 23 s to compile this (guided) scan and are not needed
    # for a tiny model: without them compilation takes about 5 s (the results are the same
    # computation, only less optimised machine code).
    final, out = eqx.filter_jit(ax.filter_scan).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)
    particles = np.asarray(out.particles)
    assert particles.shape == (2, N_PARTICLES, emulator.state_size)
    assert np.all(np.isfinite(particles))
    ess = np.asarray(out.diagnostics.ess)
    assert np.all((ess >= 1 - 1e-4) & (ess <= N_PARTICLES + 1e-4))
    alpha = np.asarray(out.diagnostics.alpha)
    assert np.all((alpha > 0) & (alpha <= 1))
    assert int(final.cycle) == 2
    np.testing.assert_array_equal(np.asarray(final.particles[:, -1]), particles[-1])
    # SST stays at its fill value over land; the xarray view puts NaN back there
    land = np.asarray(emulator.filled) > 0
    assert land.any()
    np.testing.assert_allclose(particles[..., land], np.broadcast_to(np.asarray(emulator.fill)[land], particles[..., land].shape))
    analysis = emulator.to_dataset(particles, sample_dims=("time", "particle"))
    assert np.isnan(analysis["sea_surface_temperature"].values).any()
    assert set(analysis.data_vars) == {"2m_temperature", "sea_surface_temperature", "temperature", "total_precipitation_12hr"}
