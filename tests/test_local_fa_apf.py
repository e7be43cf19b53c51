"""The localised FA-APF: it is the global FA-APF as the radius grows, and localises otherwise."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax
from assimilax_adapters.lorenz96.dynamics import oracle_emulator

D = 40


def _setup():
    observation = ax.ObservationModel(ax.Selection.every(2, D), ax.DiagonalGaussianNoise(1.0, D // 2))
    sampler = ax.Sampler(ax.EDMSchedule(2e-3, 80.0, 7.0), 6, ax.DPMSolverPP2S())
    emulator = oracle_emulator(0.3, D)
    state = ax.FAAPF(emulator, observation, sampler).init(8 + 2 * jax.random.normal(jax.random.key(0), (64, D)))
    y = 8 + 2 * jax.random.normal(jax.random.key(1), (D // 2,))
    return emulator, observation, sampler, state, y.at[3].set(np.nan)


def _local(emulator, observation, sampler, taper, **kw):
    loc = ax.DistanceLocalisation.from_operator(ax.Periodic1D(D), np.arange(D), observation.operator, taper)
    return ax.LocalFAAPF(emulator, observation, sampler, loc, ax.MMPS(iterations=1), **kw)


@eqx.filter_jit
def _step(filt, state, y, key):
    return filt.step(state, y, key)


@pytest.mark.usefixtures("x64")
def test_infinite_radius_is_the_global_fa_apf():
    emulator, observation, sampler, state, y = _setup()
    fa = ax.FAAPF(emulator, observation, sampler, ax.MMPS(iterations=1))
    want, dw = _step(fa, state, y, jax.random.key(2))
    for taper in (ax.NoTaper(), ax.GaspariCohn(1e7)):
        got, dg = _step(_local(emulator, observation, sampler, taper), state, y, jax.random.key(2))
        np.testing.assert_allclose(got.particles, want.particles, atol=1e-8)
        np.testing.assert_allclose([dg.ess, dg.alpha, dg.log_likelihood], [dw.ess, dw.alpha, dw.log_likelihood], rtol=1e-8)


def test_a_finite_radius_localises_the_weights():
    emulator, observation, sampler, state, y = _setup()
    local = _local(emulator, observation, sampler, ax.GaspariCohn(2.0))
    first, diag = local.first_stage(state, y, jax.random.key(2))
    a = np.asarray(local.update.ancestors(jax.random.key(3), first))
    assert a.shape == (D, 64)
    # Weighted by a few observations each, every component keeps more particles than the
    # global weights would (their ESS collapses with 19 observations) ...
    fa_ess = float(ax.effective_sample_size(_global_log_g(local, state, y)))
    assert float(diag.ess) > fa_ess
    # ... ancestors differ between distant components and agree more often between neighbours.
    same_next = np.mean(a == np.roll(a, -1, axis=0))
    same_far = np.mean(a == np.roll(a, -D // 2, axis=0))
    assert same_next > same_far


def _global_log_g(local, state, y):
    from assimilax.filters.local_fa_apf import observation_log_likelihoods

    mu = ax.filters.fa_apf.predictive_means(
        local.emulator, local.sampler.sigma_max, jax.random.split(jax.random.key(2), 3)[0], state.particles
    )
    return jax.vmap(lambda m: observation_log_likelihoods(local.observation, y, m).sum())(mu)


def test_bad_local_fa_apf_configuration_is_named():
    emulator, observation, sampler, _, _ = _setup()
    dense = ax.ObservationModel(observation.operator, ax.DenseGaussianNoise(np.eye(D // 2)))
    loc = ax.DistanceLocalisation.from_operator(ax.Periodic1D(D), np.arange(D), observation.operator, ax.NoTaper())
    with pytest.raises(ValueError, match="DiagonalGaussianNoise"):
        ax.LocalFAAPF(emulator, dense, sampler, loc)
    with pytest.raises(ValueError, match="inflation"):
        ax.LocalFAAPF(emulator, observation, sampler, loc, inflation=0.0)


def _job_scores(filters, seeds, **options):
    """RMSE, spread and drift per filter and seed of the Lorenz-96 job's own truths
    (``TwinExperiment(seed=s)``: not the benchmark's truths, which the settings were
    chosen on), N = 256, 300 cycles, scores over cycles 51-300."""
    from assimilax_adapters.lorenz96.experiment import TwinExperiment, run

    out = {f: [] for f in filters}
    for seed in seeds:
        cfg = TwinExperiment(particles=256, cycles=300, spinup=50, seed=seed, filters=filters, **options)
        ds = run(cfg, progress=False)
        truth = ds["truth"].values  # (cycles, d): the states the analyses estimate
        for f in filters:
            x = ds["analysis"].sel(filter=f).values
            err = np.sqrt(((x.mean(1) - truth) ** 2).mean(-1))[50:]
            spread = np.sqrt(x.var(1, ddof=1).mean(-1))[50:]
            out[f].append((err.mean(), spread.mean() / err.mean(), err[-50:].mean() / err.mean()))
    return {f: np.array(v) for f, v in out.items()}


@pytest.mark.parametrize("q", [0.1, 0.3])
def test_lorenz96_local_transform_is_within_5_percent_of_the_letkf(q):
    """Issue 11's bar on truths the settings were not chosen on: the job's
    ``fa-apf-local-oracle`` (second-order transform, length scale 3) against its LETKF
    (length scale 4) on the same truths and observations, 3 seeds.  Measured on 10 other
    truths (docs/benchmarks.md section 8): mean ratio 1.015 (q = 0.1) and 1.011 (q = 0.3),
    per-seed sd 0.01, largest 1.028.  Bound: the mean ratio over the 3 seeds below 1.05 (the
    issue's bar; the 3-seed mean has a standard error of about 0.006, so the bar is 5 of them
    above the measured mean); every seed's
    spread/skill in [0.8, 1.2] and no drift (last 50 cycles below twice the mean)."""
    s = _job_scores(("fa-apf-local-oracle", "letkf"), (11, 12, 13), q=q)
    local, letkf = s["fa-apf-local-oracle"], s["letkf"]
    ratio = local[:, 0] / letkf[:, 0]
    assert ratio.mean() < 1.05, ratio
    assert np.all((0.8 < local[:, 1]) & (local[:, 1] < 1.2)), local[:, 1]
    assert np.all(local[:, 2] < 2.0), local[:, 2]

