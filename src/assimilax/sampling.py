"""Reverse-time samplers: the probability-flow ODE in sigma, with optional churn and
Langevin corrector steps.

From ``x = sigma_0 eps`` the sampler integrates

    dx/dsigma = (x - D(x, sigma)) / sigma

down the levels ``sigma_0 > ... > sigma_{n-1}`` of a schedule with a diffrax solver, and
finishes with one denoising step ``x = D(x, sigma_{n-1})`` (the Euler step to sigma = 0).
``D`` is the prior denoiser for unconditional sampling or a guided posterior denoiser
(see [`assimilax.guidance`][]).  Between ODE steps:

- **EDM churn** (Karras et al., 2022): raise the level ``sigma -> sigma_hat = (1 + gamma)
  sigma`` by adding noise ``sqrt(sigma_hat^2 - sigma^2) S_noise eps``, with
  ``gamma = min(S_churn / n, sqrt(2) - 1)`` on ``[S_min, S_max]``;
- **Langevin corrector** steps at the new level: ``x += tau s + sqrt(2 tau) eps`` with
  ``s = (D - x) / sigma^2`` and ``tau = delta sigma^2``.

The loop is a `jax.lax.scan` over levels that calls the diffrax solver's ``step``
directly (diffrax's `diffeqsolve` has no hook for the stochastic moves between steps).
It can be unrolled (``Sampler(unroll=True)``), but rolled is the default: it compiles in
seconds where an unrolled loop of a network over tens of levels takes minutes, and it runs
as fast, provided the network's convolutions are channel-last: XLA:CPU runs channel-first
convolutions (`eqx.nn.Conv1d`, `Conv2d`) inside a loop body as naive loop nests, 6-10x
slower than unrolled (jax-ml/jax#12868; see the performance page of the docs).

A denoiser that is one function above a noise level and another below it
([`SwitchedDenoiser`][], what [`assimilax.GuidanceBelowLevel`][assimilax.guidance.GuidanceBelowLevel] builds: the prior above,
the guided posterior below) is split statically: the levels are known when the sampler is
traced, so the steps whose evaluations all lie above the switch run the first function only,
those all below it the second only, and a step straddling it picks one per evaluation with
`SwitchedDenoiser.__call__` (a `jax.lax.cond`).
"""

from collections.abc import Callable
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from . import _checks
from .errors import InvalidArgument
from .schedules import AbstractSchedule, EDMSchedule
from .solvers import DPMSolverPP3M, stage_levels

DenoiseFn = Callable[[Array, Array], Array]
NoiseFn = Callable[[PRNGKeyArray], Array]


class SwitchedDenoiser(eqx.Module):
    """``D(x, sigma) = below(x, sigma)`` for ``sigma <= level``, ``above(x, sigma)`` otherwise.

    [`Sampler`][] calls only the function each step needs (the levels are static) and this
    switch in the step that straddles `level`.  The switch is a `jax.lax.cond`: the level is
    the same for every particle, so under `vmap` over particles it stays a branch and only
    one function runs (a level batched by `vmap` makes it a select, both run).
    """

    above: DenoiseFn
    below: DenoiseFn
    level: float

    def __check_init__(self):
        _checks.scalar("SwitchedDenoiser", "level", self.level, "a number > 0 (inf: always below)", lambda v: v > 0)

    def __call__(self, x: Float[Array, " d"], sigma: Float[Array, ""]) -> Float[Array, " d"]:
        return jax.lax.cond(jnp.asarray(sigma) <= self.level, self.below, self.above, x, sigma)


class DenoiserCalls(NamedTuple):
    """Denoiser evaluations per sample: `above` and `below` count the evaluations of each
    function of a [`SwitchedDenoiser`][], each evaluation counted for the one it calls."""

    above: int
    below: int


class Churn(eqx.Module):
    """EDM stochastic churn: ``gamma = min(churn / n, sqrt(2) - 1)`` for ``sigma`` in
    ``[sigma_min, sigma_max]``, noise inflated by `noise_inflation` (``S_noise``)."""

    churn: float = 2.5
    sigma_min: float = 0.0
    sigma_max: float = float("inf")
    noise_inflation: float = 1.05

    def __check_init__(self):
        _checks.non_negative("Churn", "churn", self.churn)
        _checks.scalar("Churn", "sigma_min", self.sigma_min, "a number >= 0 (not NaN)", lambda v: v >= 0)
        if not _checks.is_tracer(self.sigma_min):
            _checks.scalar(
                "Churn", "sigma_max", self.sigma_max,
                f"a number >= sigma_min = {float(self.sigma_min):.6g} (inf: no upper bound)",
                lambda v: v >= float(self.sigma_min),
            )
        _checks.positive("Churn", "noise_inflation", self.noise_inflation)

    def gamma(self, sigma: Float[Array, ""], n_levels: int) -> Float[Array, ""]:
        """The level increase factor at `sigma`."""
        g = min(self.churn / n_levels, 2**0.5 - 1)
        inside = (sigma >= self.sigma_min) & (sigma <= self.sigma_max)
        return jnp.where(inside, g, 0.0)


class LangevinCorrector(eqx.Module):
    """`steps` Langevin moves ``x += delta (D - x) + sigma sqrt(2 delta) eps`` per level."""

    steps: int = eqx.field(static=True, default=2)
    delta: float = 0.2

    def __check_init__(self):
        _checks.integer(
            "LangevinCorrector", "steps", self.steps, 1, why="use corrector=None for no corrector"
        )
        _checks.positive("LangevinCorrector", "delta", self.delta)

    def __call__(
        self,
        key: PRNGKeyArray,
        x: Float[Array, " d"],
        sigma: Float[Array, ""],
        denoise: DenoiseFn,
        noise: NoiseFn,
        unroll: bool = False,
    ) -> Float[Array, " d"]:
        def move(x, k):
            d = denoise(x, sigma)
            return x + self.delta * (d - x) + sigma * jnp.sqrt(2 * self.delta) * noise(k), None

        x, _ = jax.lax.scan(move, x, jax.random.split(key, self.steps), unroll=unroll)
        return x


class Sampler(eqx.Module):
    """A reverse-diffusion sampler, configured once and used for any emulator.

    **Arguments:**

    - `schedule`: the noise levels (default: Karras et al.'s EDM levels
      ``EDMSchedule(2e-3, 80, 7)``; the FA-APF reference uses ``EDMSchedule(2e-5, 88, 6)``,
      the default of `EDMSchedule`).
    - `n_levels`: number of levels ``n`` (n - 1 ODE steps, then one denoising step;
      default 32).
    - `solver`: a diffrax solver for the probability-flow ODE: `diffrax.Euler()`,
      `diffrax.Heun()`, [`assimilax.AdamsBashforth3`][assimilax.solvers.AdamsBashforth3] (the reference's),
      [`assimilax.DPMSolverPP2S`][assimilax.solvers.DPMSolverPP2S] (GenCast's) or
      [`assimilax.DPMSolverPP3M`][assimilax.solvers.DPMSolverPP3M] (the default).
    - `corrector`: optional [`LangevinCorrector`][] applied after each ODE step.
    - `churn`: optional [`Churn`][] applied before each ODE step.
    - `unroll`: unroll the loop over levels.  The default rolled loop compiles in seconds
      and runs as fast as unrolled, unless the denoiser holds channel-first convolutions
      on CPU (see the module docstring); unrolling then compiles for minutes.

    The default, 32 levels of DPM-Solver++(3M) on the EDM levels (32 denoiser calls),
    draws an exact Gaussian ``N(m, s^2 I)`` with its closed-form denoiser with ``sd / s``
    within 0.25% for every ``s`` in [0.05, 2]; the reference's 32 levels of Adams-Bashforth
    3, at the same cost, are 1.5-4% under (``s`` = 1 to 0.1; tests/test_sampler_accuracy.py,
    docs/benchmarks.md section 8).
    """

    schedule: AbstractSchedule = EDMSchedule(2e-3, 80.0, 7.0)
    n_levels: int = eqx.field(static=True, default=32)
    solver: diffrax.AbstractSolver = DPMSolverPP3M()
    corrector: LangevinCorrector | None = None
    churn: Churn | None = None
    unroll: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        _checks.integer(
            "Sampler", "n_levels", self.n_levels, 2,
            why="n_levels >= 2: at least one ODE step before the final denoising step",
        )

    @property
    def sigma_max(self) -> float:
        return self.schedule.sigma_max

    def denoiser_calls(self) -> int:
        """Denoiser evaluations per sample (the cost floor of one proposal): the solver's
        stages per step ([`assimilax.solvers.stage_levels`][]), the corrector's, and the
        final denoising."""
        per_step = len(stage_levels(self.solver, 1.0, 0.5))
        steps = self.n_levels - 1
        corrector = 0 if self.corrector is None else self.corrector.steps * steps
        return per_step * steps + corrector + 1

    def _step_evaluations(self, levels: np.ndarray) -> list[np.ndarray]:
        """Per step, the levels at which it calls the denoiser: from ``sigma_i`` (raised to
        ``sigma_hat_i`` by churn) to ``sigma_{i+1}``, the solver's
        [`assimilax.solvers.stage_levels`][] and the corrector's ``sigma_{i+1}``."""
        top = levels[:-1]
        if self.churn is not None:
            g = min(self.churn.churn / self.n_levels, 2**0.5 - 1)
            inside = (top >= self.churn.sigma_min) & (top <= self.churn.sigma_max)
            top = top * (1 + np.where(inside, g, 0.0).astype(levels.dtype))
        steps = []
        for s0, s1 in zip(top, levels[1:]):
            ode = [float(v) for v in stage_levels(self.solver, float(s0), float(s1))]
            corrector = [s1] * (0 if self.corrector is None else self.corrector.steps)
            steps.append(np.array(ode + corrector, dtype=levels.dtype))
        return steps

    @staticmethod
    def _side(evaluations: np.ndarray, switch: float) -> str:
        """Which functions of a denoiser switched at `switch` a step needs."""
        if np.all(evaluations > switch):
            return "above"
        return "below" if np.all(evaluations <= switch) else "both"

    def _static_levels(self, dtype) -> np.ndarray | None:
        """The levels as a NumPy array in `dtype`, or None if the schedule is traced."""
        with jax.ensure_compile_time_eval():
            levels = self.schedule.levels(self.n_levels).astype(dtype)
        try:
            return np.asarray(levels)
        except jax.errors.TracerArrayConversionError:
            return None

    def calls(self, switch: float, dtype=jnp.float32) -> DenoiserCalls:
        """Evaluations per sample of each function of a [`SwitchedDenoiser`][] at level
        `switch` (for a guided denoiser: `below` is the number of guided evaluations, each a
        forward pass and the guidance's vector-Jacobian products).  Exact for the solvers
        named in the class docstring."""
        levels = self._static_levels(dtype)
        if levels is None:
            raise InvalidArgument("Sampler.calls needs a schedule with concrete (untraced) parameters.")
        evaluations = np.concatenate([*self._step_evaluations(levels), levels[-1:]])
        below = int(np.sum(evaluations <= switch))
        return DenoiserCalls(evaluations.size - below, below)

    def sample(
        self, key: PRNGKeyArray, denoise: DenoiseFn, noise: NoiseFn
    ) -> Float[Array, " d"]:
        """Draw one sample.

        **Arguments:**

        - `key`: a PRNG key.
        - `denoise`: ``(x_t, sigma) -> D(x_t, sigma)`` for one sample; a
          [`SwitchedDenoiser`][] is evaluated piecewise (see the module docstring).
        - `noise`: ``key -> eps``, unit-variance noise of the sample's shape.
        """
        levels = self.schedule.levels(self.n_levels)
        k_init, k_loop = jax.random.split(key)
        x0 = levels[0] * noise(k_init)
        dtype = x0.dtype
        levels = levels.astype(dtype)
        solver_state = self.solver.init(_ode_term(denoise), levels[0], levels[1], x0, None)
        inputs = (levels[:-1], levels[1:], jax.random.split(k_loop, self.n_levels - 1))

        segments, final = self._segments(denoise, dtype)
        carry = (x0, solver_state)
        for start, stop, fn in segments:
            part = jax.tree_util.tree_map(lambda a: a[start:stop], inputs)
            carry, _ = jax.lax.scan(self._body(fn, noise), carry, part, unroll=self.unroll)
        return final(carry[0], levels[-1])

    def _segments(self, denoise: DenoiseFn, dtype) -> tuple[list[tuple[int, int, DenoiseFn]], DenoiseFn]:
        """``[(first step, end step, function)]`` and the final denoising function: one run
        of all steps, or for a [`SwitchedDenoiser`][] with static levels, runs of consecutive
        steps that need the same function(s)."""
        static = self._static_levels(dtype) if isinstance(denoise, SwitchedDenoiser) else None
        if static is None:
            return [(0, self.n_levels - 1, denoise)], denoise
        pick = {"above": denoise.above, "below": denoise.below, "both": denoise}
        sides = [self._side(e, denoise.level) for e in self._step_evaluations(static)]
        segments, start = [], 0
        for i in range(1, len(sides) + 1):
            if i == len(sides) or sides[i] != sides[start]:
                segments.append((start, i, pick[sides[start]]))
                start = i
        return segments, denoise.below if static[-1] <= denoise.level else denoise.above

    def _body(self, denoise: DenoiseFn, noise: NoiseFn) -> Callable:
        """One step from ``s0`` to ``s1``: churn, the solver's step, the corrector."""
        term = _ode_term(denoise)

        def body(carry, inputs):
            x, solver_state = carry
            s0, s1, k = inputs
            k_churn, k_corr = jax.random.split(k)
            if self.churn is not None:
                s_hat = s0 * (1 + self.churn.gamma(s0, self.n_levels))
                bump = jnp.sqrt(jnp.maximum(s_hat**2 - s0**2, 0.0))
                x = x + bump * self.churn.noise_inflation * noise(k_churn)
                s0 = s_hat
            x, _, _, solver_state, _ = self.solver.step(
                term, s0, s1, x, None, solver_state, made_jump=self.churn is not None
            )
            if self.corrector is not None:
                x = self.corrector(k_corr, x, s1, denoise, noise, self.unroll)
            return (x, solver_state), None

        return body


def _ode_term(denoise: DenoiseFn) -> diffrax.ODETerm:
    """The probability-flow vector field ``(x - D(x, sigma)) / sigma``."""
    return diffrax.ODETerm(lambda s, x, args: (x - denoise(x, s)) / s)

