"""Sampler accuracy as a tested property (issue 11, item 1).

Unguided draws from a Gaussian transition ``N(m, s^2 I)`` (d = 40, m = 2) with the
closed-form denoiser, through `assimilax.sample_transition` as the filters draw them, at the
data scales ``s`` = 0.1, 0.3 and 1 (the levels are in the sampler's units: raw for the
oracle, normalised for the trained Lorenz-96 emulator and GenCast).  With the exact denoiser
the only error left is the sampler's discretisation, so the sample sd must be ``s`` and the
mean ``m``.

- Monte Carlo (`test_sampler_draws_the_exact_gaussian`): 4000 draws per scale (160,000
  independent scalars): standard error of ``sd / s`` ``1 / sqrt(2 * 160000) = 0.0018``, of
  the mean ``s / sqrt(160000) = 0.0025 s``.  Asserted: ``|sd / s - 1| < 0.01`` (the issue's
  1% bar; the configurations that pass are at most 0.12% off exactly, so the bar is 4.9
  standard errors away from them) and ``|mean - m| < 5`` standard errors.
- Exact (`test_deterministic_sampler_sd_is_exact`): without churn or corrector the sampler
  is a linear map of its initial noise, ``z = g sigma_0 eps``, so ``sd / s = g sigma_0 / s``
  is computed from one draw with ``eps = 1``, without Monte Carlo error, on 7 scales in
  [0.1, 1].  Asserted: within 0.3% (measured at most 0.12%: core default; Lorenz-96
  proposal 0.08%; GenCast proposal 0.07%).

`CONFIGURATIONS` is the table of the shipped defaults and the proposed job defaults.  The
shipped configurations that miss the 1% bar are ``xfail(strict=True)`` with their measured
sd (the marker turns into a failure the day they are fixed, so it must then be removed).
The Lorenz-96 and GenCast jobs' defaults live in `adapters/`; when a job switches to its
proposed configuration, delete the job's "current" entry and drop "proposed" from the other
(`test_the_job_defaults_are_measured_here` checks that the jobs' defaults are rows here).
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax
from assimilax_adapters.gencast.sampler import gencast_sampler

D, DRAWS, SCALES = 40, 4000, (0.1, 0.3, 1.0)
KARRAS = ax.EDMSchedule(2e-3, 80.0, 7.0)  # Karras et al.'s EDM levels: the core default's, the Lorenz-96 job's
REF = ax.EDMSchedule(2e-5, 88.0, 6.0)  # the FA-APF reference's levels, the GenCast job's

# name: (sampler, {scale: measured sd / s where it misses the 1% bar})
CONFIGURATIONS = {
    "core Sampler(): 32 DPM-Solver++(3M), Karras levels": (ax.Sampler(), {}),
    # the Lorenz-96 job until 2026-12-02: EDMSchedule(2e-3, 80, 7), levels=12, solver="dpm2s"
    "Lorenz-96 job (before): 12 DPM-Solver++(2S)": (
        ax.Sampler(KARRAS, 12, ax.DPMSolverPP2S()), {0.1: 0.920, 0.3: 0.938, 1.0: 0.954}),
    # adapters/lorenz96/experiment.py TwinExperiment: EDMSchedule(2e-3, 80, 8), 23 levels of
    # "dpm3m": the same 23 calls, 14 of them guided below sigma 5 (13 before)
    "Lorenz-96 job: 23 DPM-Solver++(3M), levels 2e-3..80, rho 8": (
        ax.Sampler(ax.EDMSchedule(2e-3, 80.0, 8.0), 23, ax.DPMSolverPP3M()), {}),
    # an alternative at the same cost, but 16 of its 23 calls fall below sigma 5 (guided)
    "23 DPM-Solver++(3M), levels 2e-3..20": (
        ax.Sampler(ax.EDMSchedule(2e-3, 20.0, 7.0), 23, ax.DPMSolverPP3M()), {}),
    # the GenCast job until 2026-12-02, and still the "reference" preset (what the reference ran)
    "GenCast reference preset: 32 AB3 + 2 Langevin": (
        ax.Sampler(REF, 32, ax.AdamsBashforth3(), ax.LangevinCorrector(2, 0.2)),
        {0.1: 0.941, 0.3: 0.960, 1.0: 0.975}),
    # adapters/gencast/experiment.py GenCastExperiment and cli.py DEFAULTS: levels=40,
    # solver="dpm3m", corrector_steps=0 (40 calls instead of 94)
    "GenCast job: 40 DPM-Solver++(3M)": (ax.Sampler(REF, 40, ax.DPMSolverPP3M()), {}),
    "GenCast native: 20 DPM-Solver++(2S) + churn": (gencast_sampler(), {0.1: 0.985, 0.3: 1.025, 1.0: 1.031}),
}


def _draw_fn(sampler: ax.Sampler):
    """``(scale, keys) -> draws - m``: one compiled function for all scales."""

    def draw(scale, key):
        emulator = ax.GaussianTransitionEmulator(lambda x: x + 2.0, scale**2 * jnp.eye(D))
        return ax.sample_transition(emulator, sampler, key, jnp.zeros((1, D))) - 2.0

    return jax.jit(jax.vmap(draw, (None, 0)))


def _cases():
    for name, (sampler, misses) in CONFIGURATIONS.items():
        marks = ()
        if misses:
            measured = ", ".join(f"{v} at s = {s}" for s, v in misses.items())
            marks = pytest.mark.xfail(strict=True, reason=f"measured sd / s = {measured}")
        yield pytest.param(sampler, misses, id=name, marks=marks)


@pytest.mark.parametrize("sampler, misses", list(_cases()))
def test_sampler_draws_the_exact_gaussian(sampler, misses):
    draw = _draw_fn(sampler)
    keys = jax.random.split(jax.random.key(11), DRAWS)
    failures = []
    for scale in SCALES:
        x = np.asarray(draw(scale, keys)) / scale
        se_mean = 1 / np.sqrt(x.size)
        if not abs(x.mean()) < 5 * se_mean:
            failures.append(f"s = {scale}: mean error {x.mean():.4f} s (se {se_mean:.4f})")
        if not abs(x.std() - 1) < 0.01:
            failures.append(f"s = {scale}: sd / s = {x.std():.4f} (se {1 / np.sqrt(2 * x.size):.4f})")
    assert not failures, "; ".join(failures)


def _exact_sd_ratio(sampler: ax.Sampler, scales) -> np.ndarray:
    """``g sigma_0 / s`` per scale: the sampler's linear map applied to ``eps = 1``."""

    def ratio(scale):
        den = lambda z, sigma: scale**2 / (scale**2 + sigma**2) * z  # noqa: E731
        return sampler.sample(jax.random.key(0), den, lambda k: jnp.ones(1))[0] / scale

    return np.asarray(jax.jit(jax.vmap(ratio))(jnp.asarray(scales)))


@pytest.mark.parametrize(
    "name", [n for n, (s, misses) in CONFIGURATIONS.items() if not misses and s.churn is None and s.corrector is None]
)
def test_deterministic_sampler_sd_is_exact(name):
    sampler = CONFIGURATIONS[name][0]
    scales = np.geomspace(0.1, 1.0, 7)
    ratio = _exact_sd_ratio(sampler, scales)
    assert np.all(np.abs(ratio - 1) < 0.003), dict(zip(scales.round(3), ratio.round(4)))


def test_exact_sd_agrees_with_the_draws():
    """The linear-map shortcut measures what the draws measure: the Lorenz-96 job's
    earlier sampler, 0.938 at s = 0.3 both ways (Monte Carlo within 5 se)."""
    sampler = CONFIGURATIONS["Lorenz-96 job (before): 12 DPM-Solver++(2S)"][0]
    x = np.asarray(_draw_fn(sampler)(0.3, jax.random.split(jax.random.key(3), DRAWS))) / 0.3
    exact = _exact_sd_ratio(sampler, [0.3])[0]
    assert abs(exact - 0.938) < 0.001
    assert abs(x.std() - exact) < 5 / np.sqrt(2 * x.size)


def _defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def test_the_job_defaults_are_measured_here():
    """The jobs' default samplers (their dataclass defaults, built as the jobs build them) are
    rows of `CONFIGURATIONS`: changing a job's default without measuring it here fails."""
    from assimilax_adapters.gencast.experiment import GenCastExperiment
    from assimilax_adapters.lorenz96.experiment import TwinExperiment

    g = _defaults(GenCastExperiment)
    gencast = ax.Sampler(
        ax.EDMSchedule(g["sigma_min"], g["sigma_max"], g["rho"]), g["levels"], ax.solver_by_name(g["solver"]),
        ax.LangevinCorrector(g["corrector_steps"], g["langevin_delta"]) if g["corrector_steps"] else None,
    )
    assert any(eqx.tree_equal(gencast, s) is True for s, _ in CONFIGURATIONS.values()), gencast
    t = _defaults(TwinExperiment)
    lorenz = ax.Sampler(
        ax.EDMSchedule(t["sigma_min"], t["sigma_max"], t["rho"]), t["levels"], ax.solver_by_name(t["solver"]),
        ax.LangevinCorrector(t["corrector_steps"], 0.2) if t["corrector_steps"] else None,
    )
    assert any(eqx.tree_equal(lorenz, s) is True for s, _ in CONFIGURATIONS.values()), lorenz
