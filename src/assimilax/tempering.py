"""Inflation of the first-stage weights by tempering, chosen to hit an ESS band.

The FA-APF's first-stage weights ``w_i ∝ W_i g_i^alpha`` (``g_i = p^(y | h_i)``, ``W_i`` the
previous weights) are tempered by ``alpha in (0, 1]``, equivalently the observation noise
is inflated to ``R / alpha``.  The effective sample size of the tempered weights falls as
``alpha`` grows, so ``alpha`` is found by bisection on ``log alpha`` until the ESS lies in
``[min_fraction n, max_fraction n]``; ``alpha = 1`` when the untempered ESS is already at
least ``min_fraction n`` (no inflation needed).  This is blackjax's adaptive tempering
for SMC samplers, applied to one filtering step.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from . import _checks
from .errors import invalid
from .resampling import effective_sample_size


class AbstractTempering(eqx.Module):
    """Chooses the tempering exponent ``alpha`` of the first-stage weights."""

    @abc.abstractmethod
    def __call__(
        self, log_likelihoods: Float[Array, " n"], log_prior_weights: Float[Array, " n"]
    ) -> Scalar:
        """``alpha`` for weights ``log W_i + alpha log g_i``."""

    def check_particles(self, n: int) -> None:
        """Raise an [`assimilax.errors.InvalidArgument`][] if the rule cannot work with `n`
        particles; filters call it at trace time, where `n` is a static shape."""


class NoTempering(AbstractTempering):
    """``alpha = 1``: the untempered weights."""

    def __call__(self, log_likelihoods, log_prior_weights):
        return jnp.ones((), log_likelihoods.dtype)


class ESSBandTempering(AbstractTempering):
    """Bisection on ``log alpha`` so that the ESS lands in ``[min_fraction, max_fraction] n``.

    The reference uses an ESS band of 50-60 of 256 particles, the default here.

    **Arguments:**

    - `min_fraction`, `max_fraction`: the band, as fractions of the number of particles.
    - `iterations`: at most this many bisection steps (each halves the bracket in
      ``log alpha``; 64 steps from ``[log_alpha_min, 0]`` reach float precision).
    - `log_alpha_min`: the bottom of the bracket, a finite number < 0 (``alpha <= 1``).

    The band must reach one particle at least for the ensemble size ``n``
    (``max_fraction n >= 1``, the ESS is never below 1): checked when a filter's step is
    traced.
    """

    min_fraction: float = 50 / 256
    max_fraction: float = 60 / 256
    iterations: int = eqx.field(static=True, default=64)
    log_alpha_min: float = -40.0

    def __check_init__(self):
        owner = "ESSBandTempering"
        band = "such that 0 < min_fraction <= max_fraction <= 1"
        _checks.scalar(owner, "min_fraction", self.min_fraction, band, lambda v: 0.0 < v <= 1.0)
        if not _checks.is_tracer(self.min_fraction):
            _checks.scalar(
                owner, "max_fraction", self.max_fraction,
                f"{band} (min_fraction = {float(self.min_fraction):.6g})",
                lambda v: float(self.min_fraction) <= v <= 1.0,
            )
        _checks.integer(owner, "iterations", self.iterations, 1, why="bisection steps")
        _checks.scalar(
            owner, "log_alpha_min", self.log_alpha_min,
            "a finite number < 0 (the bottom of the bracket of log alpha; alpha <= 1)",
            lambda v: -float("inf") < v < 0,
        )

    def check_particles(self, n: int) -> None:
        if _checks.is_tracer(self.max_fraction):
            return
        if float(self.max_fraction) * n < 1:
            raise invalid(
                "max_fraction", self.max_fraction,
                f"at least 1/n = {1 / n:.4g} for n = {n} particles: the ESS band "
                f"[{float(self.min_fraction) * n:.3g}, {float(self.max_fraction) * n:.3g}] lies below one "
                "particle (the ESS is at least 1)",
                owner="ESSBandTempering",
            )

    def __call__(self, log_likelihoods, log_prior_weights):
        n = log_likelihoods.shape[0]
        self.check_particles(n)
        low, high = self.min_fraction * n, self.max_fraction * n

        def ess(log_alpha):
            return effective_sample_size(log_prior_weights + jnp.exp(log_alpha) * log_likelihoods)

        def cond(carry):
            _, _, i, done = carry
            return (~done) & (i < self.iterations)

        def body(carry):
            lo, hi, i, _ = carry
            mid = 0.5 * (lo + hi)
            e = ess(mid)
            done = (e >= low) & (e <= high)
            lo = jnp.where(done | (e > high), mid, lo)
            hi = jnp.where(done | (e < low), mid, hi)
            return lo, hi, i + 1, done

        dtype = log_likelihoods.dtype
        init = (jnp.asarray(self.log_alpha_min, dtype), jnp.zeros((), dtype), 0, False)
        lo, hi, _, _ = jax.lax.while_loop(cond, body, init)
        alpha = jnp.exp(0.5 * (lo + hi))
        return jnp.where(ess(jnp.zeros((), dtype)) >= low, jnp.ones((), dtype), alpha)
