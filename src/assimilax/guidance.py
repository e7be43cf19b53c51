"""Likelihood-score approximations: turning a prior denoiser into a posterior denoiser.

With ``alpha = 1`` (VE), Bayes' rule on scores gives the posterior denoiser

    D_y(x_t) = D(x_t) + sigma^2 grad_{x_t} log p(y | x_t),

and each guidance is a Gaussian approximation ``p(y | x_t) ~= N(y; A(D(x_t)), Sigma_y)``:

- [`DPS`][]: ``Sigma_y = R`` (Chung et al., 2023), gradient through ``D``;
- [`PseudoInverse`][]: ``Sigma_y = R + gamma sigma^2 I`` (Song et al., 2023; SDA);
- [`MMPS`][]: ``Sigma_y = R + sigma^2 A J A^T`` with ``J = dD/dx_t`` (Rozet et al., 2024), which
  is exact for a Gaussian prior and a linear ``A``;
- [`IsotropicMMPS`][]: MMPS with ``sigma^2 J`` replaced by the Tweedie covariance of a target
  ``N(mu, v I)``, Jacobian-free.

All three return ``D_y = D + sigma^2 J^T A^T v`` with ``Sigma_y v = y - A(D)``; they differ
in ``Sigma_y`` and how it is solved.  ``A`` is linearised at ``D`` by `jax.vjp`/`jax.jvp`,
``J^T`` is one vector-Jacobian product of the denoiser (shared by the solve and the final
update).  Missing (NaN) observations are masked out.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, ArrayLike, Float

from . import _checks
from .observations import AbstractObservationNoise
from .sampling import SwitchedDenoiser

Denoise = Callable[[Array], Array]


class AbstractGuidance(eqx.Module):
    """Approximates ``grad log p(y | x_t)`` to build a posterior denoiser."""

    @abc.abstractmethod
    def __call__(
        self,
        denoise: Denoise,
        x_t: Float[Array, " d"],
        sigma: Float[ArrayLike, ""],
        y: Float[Array, " p"],
        observe: Callable[[Array], Array],
        noise: AbstractObservationNoise,
    ) -> Float[Array, " d"]:
        """The posterior denoiser ``D_y(x_t)``.

        **Arguments:**

        - `denoise`: the prior denoiser at this noise level, ``x_t -> D(x_t)``.
        - `x_t`: the noisy sample.
        - `sigma`: the VE noise level.
        - `y`: observations (NaN where missing).
        - `observe`: the observation operator applied to the denoiser's output space.
        - `noise`: the observation noise ``R``.
        """


class _Linearised(eqx.Module):
    """Everything the guidance rules share: ``D``, ``J^T``, ``A`` linearised at ``D``."""

    denoised: Array
    residual: Array
    mask: Array
    vjp_denoise: Callable
    vjp_observe: Callable
    jvp_observe: Callable

    def pullback(self, v: Array) -> Array:
        """``J^T A^T v`` (masked)."""
        (u,) = self.vjp_observe(jnp.where(self.mask, v, 0.0))
        (w,) = self.vjp_denoise(u)
        return w


def _linearise(denoise, x_t, y, observe) -> _Linearised:
    d, vjp_denoise = jax.vjp(denoise, x_t)
    a_d, vjp_observe = jax.vjp(observe, d)
    _, jvp_observe = jax.linearize(observe, d)
    mask = jnp.isfinite(y)
    residual = jnp.where(mask, y - a_d, 0.0)
    return _Linearised(d, residual, mask, vjp_denoise, vjp_observe, jvp_observe)


class DPS(AbstractGuidance):
    """Diffusion posterior sampling: ``D_y = D + scale sigma^2 J^T A^T R^{-1} (y - A(D))``.

    `scale` multiplies the likelihood score (1 is the plain Gaussian approximation).
    """

    scale: float = 1.0

    def __check_init__(self):
        _checks.non_negative("DPS", "scale", self.scale)

    def __call__(self, denoise, x_t, sigma, y, observe, noise):
        lin = _linearise(denoise, x_t, y, observe)
        v = noise.solve(lin.residual, lin.mask)
        return lin.denoised + self.scale * sigma**2 * lin.pullback(v)


class PseudoInverse(AbstractGuidance):
    """Pseudo-inverse / SDA guidance: ``Sigma_y = R + gamma sigma^2 I``.

    ``D_y = D + sigma^2 J^T A^T (R + gamma sigma^2 I)^{-1} (y - A(D))``.
    """

    gamma: float = 1.0

    def __check_init__(self):
        _checks.non_negative("PseudoInverse", "gamma", self.gamma)

    def __call__(self, denoise, x_t, sigma, y, observe, noise):
        lin = _linearise(denoise, x_t, y, observe)
        v = noise.shifted_solve(lin.residual, lin.mask, self.gamma * sigma**2)
        return lin.denoised + sigma**2 * lin.pullback(v)


def conjugate_gradient(
    matvec: Callable[[Array], tuple[Array, Array]], b: Float[Array, " p"], iterations: int
) -> tuple[Float[Array, " p"], Array]:
    """``iterations`` steps of conjugate gradients for ``M v = b`` from ``v = 0``.

    `matvec` returns ``(M p, g(p))`` for a linear map ``g``; the solver returns ``v`` and
    ``g(v)``, accumulated from the ``g(p)`` of its search directions.  MMPS uses this to get
    ``J^T A^T v`` without one more vector-Jacobian product of the denoiser.

    Unrolled in Python on purpose: inside `vmap` over particles, XLA on CPU runs a
    `while_loop` whose body holds a network's vector-Jacobian product 4-6 times slower
    than the same steps unrolled (measured: one MMPS step on the Lorenz-96 emulator,
    256 particles, 0.65 s with lineax's CG vs 0.13 s unrolled), and MMPS only needs a
    few fixed iterations.  For a convergence-controlled or direct solve, give MMPS a
    lineax solver instead.
    """
    v = jnp.zeros_like(b)
    g_v = None
    r, p = b, b
    rr = r @ r
    tiny = jnp.finfo(b.dtype).tiny
    live = jnp.asarray(True)
    for _ in range(iterations):
        mp, g_p = matvec(p)
        curvature = p @ mp
        # A trained denoiser's Jacobian can make the system indefinite at high noise
        # levels; stop at the first direction of non-positive curvature (Steihaug's rule)
        # instead of stepping along it.
        live = live & (curvature > 0)
        step = jnp.where(live, rr / jnp.where(live, curvature, 1.0), 0.0)
        v = v + step * p
        g_v = step * g_p if g_v is None else g_v + step * g_p
        r = r - step * mp
        rr_new = r @ r
        p = r + (rr_new / jnp.maximum(rr, tiny)) * p
        rr = rr_new
    return v, g_v


class MMPS(AbstractGuidance):
    """Moment-matching posterior sampling (Rozet et al., 2024).

    Solves ``(R + sigma^2 A J A^T) v = y - A(D)`` matrix-free and returns
    ``D_y = D + sigma^2 J^T A^T v``.  ``J^T`` is applied by a vector-Jacobian product (the
    Tweedie covariance ``sigma^2 J`` is symmetric for an exact denoiser).

    **Arguments:**

    - `solver`: a lineax solver, or None (the default) for `iterations` steps of
      unrolled conjugate gradients (the reference method's choice: a few iterations).
      `lx.BiCGStab` suits denoisers whose Jacobian is far from symmetric; a direct solver
      (`lx.LU()`) materialises the ``p x p`` system and is exact, for small problems and
      tests.
    - `iterations`: conjugate-gradient steps when `solver` is None (exact once it reaches
      the number of distinct eigenvalues of the system, at most the observation count).

    With a trained denoiser, ``sigma^2 J`` is only loosely constrained by training at high
    noise levels and the system can be indefinite there; the unrolled CG then stops at the
    first direction of non-positive curvature, so the guidance stays finite.  A lineax
    solver gets no such protection.
    """

    solver: lx.AbstractLinearSolver | None = None
    iterations: int = eqx.field(static=True, default=3)

    def __check_init__(self):
        _checks.integer("MMPS", "iterations", self.iterations, 1, why="at least one CG iteration")

    def __call__(self, denoise, x_t, sigma, y, observe, noise):
        lin = _linearise(denoise, x_t, y, observe)
        mask = lin.mask

        def covariance_and_pullback(v: Array) -> tuple[Array, Array]:
            # R_m v + sigma^2 M A J^T A^T M v: the identity on missing rows keeps the
            # system non-singular, and their right-hand side is zero.
            pulled = lin.pullback(v)
            a_j_at_v = lin.jvp_observe(pulled)
            return noise.matvec(v, mask) + sigma**2 * jnp.where(mask, a_j_at_v, 0.0), pulled

        if self.solver is None:
            _, pulled = conjugate_gradient(covariance_and_pullback, lin.residual, self.iterations)
            return lin.denoised + sigma**2 * pulled
        structure = jax.ShapeDtypeStruct(lin.residual.shape, lin.residual.dtype)
        operator = lx.FunctionLinearOperator(
            lambda v: covariance_and_pullback(v)[0], structure, tags=lx.positive_semidefinite_tag
        )
        v = lx.linear_solve(operator, lin.residual, self.solver, throw=False).value
        return lin.denoised + sigma**2 * lin.pullback(v)


class IsotropicMMPS(AbstractGuidance):
    """MMPS with the Tweedie covariance of an isotropic Gaussian target: no Jacobian.

    For a target ``x ~ N(mu, v I)`` the Tweedie covariance is exact and constant over
    ``x_t``: ``Cov[x | x_t] = sigma^2 J = c I`` with ``c = v sigma^2 / (v + sigma^2)``.  This
    guidance uses it for any denoiser:

        (R + c A A^T) u = y - A(D),    D_y = D + c A^T u,

    the MMPS update of Rozet et al. (2024) with ``sigma^2 J`` replaced by ``c I``.  It is
    exact for the Gaussian transition ``N(f(x[k]), v I)`` (the oracle emulators) and, for a
    trained emulator of such a transition, it needs one network evaluation per level and
    no vector-Jacobian product through it: a trained network's Jacobian is only loosely
    fitted (see [`GuidanceBelowLevel`][]) and, for a convolutional U-Net on a CPU, its
    products cost 5-10 network evaluations.  ``A`` (with the emulator's map to the state,
    which `observe` includes) is linearised at ``D``; the ``p x p`` system, which holds no
    network, is solved by `iterations` steps of unrolled conjugate gradients (exact in as
    many steps as it has distinct eigenvalues: one for a selection with equal noise).

    **Arguments:**

    - `variance`: ``v``, the per-component variance of the diffusion target given its
      context, in the target's units (an emulator that normalises its target by ``s``
      models ``q^2 / s^2`` for a model noise ``q``).
    - `iterations`: conjugate-gradient steps.
    """

    variance: float
    iterations: int = eqx.field(static=True, default=8)

    def __check_init__(self):
        _checks.positive("IsotropicMMPS", "variance", self.variance)
        _checks.integer("IsotropicMMPS", "iterations", self.iterations, 1, why="at least one CG iteration")

    def __call__(self, denoise, x_t, sigma, y, observe, noise):
        d = denoise(x_t)
        a_d, vjp_observe = jax.vjp(observe, d)
        _, jvp_observe = jax.linearize(observe, d)
        mask = jnp.isfinite(y)
        residual = jnp.where(mask, y - a_d, 0.0)
        c = self.variance * sigma**2 / (self.variance + sigma**2)

        def covariance_and_pullback(u: Array) -> tuple[Array, Array]:
            (pulled,) = vjp_observe(jnp.where(mask, u, 0.0))
            return noise.matvec(u, mask) + c * jnp.where(mask, jvp_observe(pulled), 0.0), pulled

        _, pulled = conjugate_gradient(covariance_and_pullback, residual, self.iterations)
        return d + c * pulled


class GuidanceBelowLevel(AbstractGuidance):
    """Apply `guidance` only at noise levels ``sigma <= max_sigma``; above, ``D_y = D``.

    Guidance rules read the denoiser's Jacobian: MMPS's Tweedie covariance ``sigma^2 J`` is
    exact for an exact denoiser, but a trained network's Jacobian is only loosely fitted
    at high noise levels, where its errors are amplified by ``sigma`` (measured on the
    shipped Lorenz-96 emulator: the symmetric part of ``sigma^2 J`` has eigenvalues in
    ``[-1.08, 2.04]`` at ``sigma = 80`` and ``[0.004, 0.19]`` at ``sigma = 5``, against about
    ``0.085`` for the true law), and the guided sampler can then leave the data
    distribution.  Below `max_sigma` the likelihood still steers every remaining step.

    The noise levels are static, so the guided value is not computed above `max_sigma`:
    [`posterior_denoiser`][] returns an [`assimilax.SwitchedDenoiser`][assimilax.sampling.SwitchedDenoiser] (the prior above
    `max_sigma`, the guided denoiser below) and [`assimilax.Sampler`][assimilax.sampling.Sampler] runs the levels
    above the switch unguided and those below it guided (on the default Lorenz-96 sampler,
    10 of the 23 guided evaluations are saved).  Called directly, the switch is a
    `jnp.where` and both values are computed (a `lax.cond` under `vmap` computes both as
    well).
    """

    guidance: AbstractGuidance
    max_sigma: float

    def __check_init__(self):
        _checks.scalar(
            "GuidanceBelowLevel", "max_sigma", self.max_sigma, "a number > 0 (inf: guide at every level)",
            lambda v: v > 0,
        )

    def __call__(self, denoise, x_t, sigma, y, observe, noise):
        guided = self.guidance(denoise, x_t, sigma, y, observe, noise)
        return jnp.where(jnp.asarray(sigma) <= self.max_sigma, guided, denoise(x_t))


def posterior_denoiser(
    guidance: AbstractGuidance | None,
    denoise: Callable[[Array, Array], Array],
    y: Float[Array, " p"] | None,
    observe: Callable[[Array], Array] | None,
    noise: AbstractObservationNoise | None,
) -> Callable[[Array, Array], Array]:
    """``(x_t, sigma) -> D_y(x_t, sigma)``, or the prior denoiser when `guidance` is None.

    For [`GuidanceBelowLevel`][] it is an [`assimilax.SwitchedDenoiser`][assimilax.sampling.SwitchedDenoiser] from the prior
    denoiser to the guided one at `max_sigma`, which [`assimilax.Sampler`][assimilax.sampling.Sampler] evaluates
    piecewise; it equals `guidance`'s own switch.
    """
    if guidance is None:
        return denoise
    if isinstance(guidance, GuidanceBelowLevel):
        below = posterior_denoiser(guidance.guidance, denoise, y, observe, noise)
        return SwitchedDenoiser(above=denoise, below=below, level=guidance.max_sigma)

    def guided(x_t: Array, sigma: Array) -> Array:
        return guidance(lambda x: denoise(x, sigma), x_t, sigma, y, observe, noise)

    return guided

