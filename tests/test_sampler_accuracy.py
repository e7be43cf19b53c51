"""Sampler accuracy as a tested property (issue 11, item 1).

Unguided draws from a Gaussian transition ``N(m, s^2 I)`` (d = 40) with the closed-form
denoiser, through `assimilax.sample_transition` as the filters draw them.  With the exact
denoiser the only error left is the sampler's discretisation, so the sample sd must be
``s`` and the mean ``m``.  Each configuration is measured on 4000 draws (160,000 scalars,
independent components): the standard error of ``sd / s`` is ``1 / sqrt(2 * 160000) =
0.0018`` and of the mean ``s / sqrt(160000) = 0.0025 s``.

- sd: ``|sd / s - 1| < 0.01`` (the issue's 1% bar; 5.7 standard errors wide);
- mean: ``|mean - m| / s < 5`` standard errors.

Scales: ``s = 0.3`` (the Lorenz-96 model noise ``q``) and ``s = 1`` (GenCast's normalised
residual; the trained Lorenz-96 emulator's target has the same order).  The shipped
defaults that miss the 1% bar are marked ``xfail(strict=True)`` with their measured sd:
the marker turns into a failure the day they are fixed, so it must then be removed.  The
cheapest configurations measured within 1% (bench/sampler_accuracy.py) must pass.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax
from assimilax_adapters.gencast.sampler import gencast_sampler

D, DRAWS = 40, 4000
L96_GRID = ax.EDMSchedule(2e-3, 80.0, 7.0)  # the Lorenz-96 job's levels
REF_GRID = ax.EDMSchedule(2e-5, 88.0, 6.0)  # the reference's levels (GenCast job, core default)

# name: (sampler, {scale: measured sd / s when it misses the 1% bar})
CONFIGURATIONS = {
    "core Sampler()": (ax.Sampler(), {0.3: 0.976, 1.0: 0.985}),
    "GenCast job / reference: 32 AB3 + 2 Langevin": (
        ax.Sampler(REF_GRID, 32, ax.AdamsBashforth3(), ax.LangevinCorrector(2, 0.2)),
        {0.3: 0.957, 1.0: 0.973},
    ),
    "Lorenz-96 job: 12 DPM-Solver++(2S)": (ax.Sampler(L96_GRID, 12, ax.DPMSolverPP2S()), {0.3: 0.938, 1.0: 0.954}),
    "GenCast native: 20 DPM-Solver++(2S) + churn": (gencast_sampler(), {0.3: 1.027, 1.0: 1.032}),
    "48 AB3 on the Lorenz-96 levels": (ax.Sampler(L96_GRID, 48, ax.AdamsBashforth3()), {}),
    "48 AB3 on the reference levels": (ax.Sampler(REF_GRID, 48, ax.AdamsBashforth3()), {}),
}


def _cases():
    for name, (sampler, misses) in CONFIGURATIONS.items():
        for scale in (0.3, 1.0):
            if name.startswith("48 AB3 on the reference") and scale == 0.3:
                continue  # 0.991: at the bar, so not a claim (measured in the benchmark)
            marks = ()
            if scale in misses:
                marks = pytest.mark.xfail(strict=True, reason=f"measured sd / s = {misses[scale]}")
            yield pytest.param(sampler, scale, id=f"{name} @ s={scale}", marks=marks)


def draw(sampler: ax.Sampler, scale: float, key=jax.random.key(11)) -> np.ndarray:
    """``DRAWS`` unguided draws of ``N(m, scale^2 I)`` minus ``m``, ``m = 2``."""
    emulator = ax.GaussianTransitionEmulator(lambda x: x + 2.0, scale**2 * jnp.eye(D))
    history = jnp.zeros((1, D))
    sample = jax.jit(jax.vmap(lambda k: ax.sample_transition(emulator, sampler, k, history)))
    return np.asarray(sample(jax.random.split(key, DRAWS))) - 2.0


@pytest.mark.parametrize("sampler, scale", list(_cases()))
def test_sampler_draws_the_exact_gaussian(sampler, scale):
    x = draw(sampler, scale) / scale
    se_mean = 1 / np.sqrt(x.size)
    assert abs(x.mean()) < 5 * se_mean, f"mean error {x.mean():.4f} s (se {se_mean:.4f})"
    assert abs(x.std() - 1) < 0.01, f"sd / s = {x.std():.4f} (se {1 / np.sqrt(2 * x.size):.4f})"
