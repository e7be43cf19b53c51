"""The denoiser protocol, EDM preconditioning and exact Gaussian denoisers.

A denoiser returns ``D(x_t, sigma; c) ~= E[x | x_t, c]`` for the VE noisy variable
``x_t = x + sigma eps`` and a conditioning context ``c`` (a pytree: the history of states,
forcings, ...).  The score follows by Tweedie's formula, ``s = (D - x_t) / sigma^2``.

Denoisers act on **one** sample: a flat vector of size ``d``.  Batches are formed with
``jax.vmap`` by the samplers and filters.
"""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree

from . import _checks
from .errors import InvalidArgument
from .schedules import CosineSchedule


class AbstractDenoiser(eqx.Module):
    """A (conditional) denoiser ``D(x_t, sigma; context) ~= E[x | x_t, context]``."""

    @abc.abstractmethod
    def __call__(
        self, x_t: Float[Array, " d"], sigma: Float[ArrayLike, ""], context: PyTree
    ) -> Float[Array, " d"]:
        """Denoise one sample ``x_t`` at VE noise level ``sigma`` given ``context``."""


def score(
    denoiser: AbstractDenoiser,
    x_t: Float[Array, " d"],
    sigma: Float[ArrayLike, ""],
    context: PyTree,
) -> Float[Array, " d"]:
    """Tweedie's formula: ``grad log p(x_t | c) = (D(x_t, sigma; c) - x_t) / sigma^2``."""
    return (denoiser(x_t, sigma, context) - x_t) / sigma**2


class EDMPreconditioned(AbstractDenoiser):
    """EDM preconditioning (Karras et al., 2022) of a raw network ``F``.

    ``D(x, sigma; c) = c_skip x + c_out F(c_in x, c_noise; c)`` with
    ``c_skip = sd^2 / (sigma^2 + sd^2)``, ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``,
    ``c_in = 1 / sqrt(sigma^2 + sd^2)``, ``c_noise = log(sigma) / 4``, ``sd = sigma_data``.

    **Arguments:**

    - `network`: a callable ``F(x_in: Float[Array, "d"], c_noise: Float[Array, ""],
      context) -> Float[Array, "d"]``; usually an `eqx.Module` whose weights are leaves.
    - `sigma_data`: the standard deviation of the (normalised) training targets.
    """

    network: Callable[[Array, Array, Any], Array]
    sigma_data: float = 1.0

    def __check_init__(self):
        _checks.positive("EDMPreconditioned", "sigma_data", self.sigma_data)

    def preconditioning(
        self, sigma: Float[ArrayLike, ""]
    ) -> tuple[Array, Array, Array, Array]:
        """Return ``(c_skip, c_out, c_in, c_noise)`` at ``sigma``."""
        sigma = jnp.asarray(sigma)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / jnp.sqrt(sigma**2 + sd2)
        c_in = 1.0 / jnp.sqrt(sigma**2 + sd2)
        c_noise = 0.25 * jnp.log(sigma)
        return c_skip, c_out, c_in, c_noise

    def __call__(
        self, x_t: Float[Array, " d"], sigma: Float[ArrayLike, ""], context: PyTree
    ) -> Float[Array, " d"]:
        c_skip, c_out, c_in, c_noise = self.preconditioning(sigma)
        return c_skip * x_t + c_out * self.network(c_in * x_t, c_noise, context)


class GaussianDenoiser(AbstractDenoiser):
    """Exact denoiser of a Gaussian ``x ~ N(m, P)`` whose mean is the context (zero if the
    context is None).

    ``D(x_t, sigma; m) = m + P (P + sigma^2 I)^{-1} (x_t - m)``, computed through the
    eigendecomposition ``P = U diag(lambda) U^T`` made once at construction, so that every
    call costs two matrix-vector products.  Used by the exact emulators
    ([`assimilax.LinearGaussianEmulator`][assimilax.exact_emulators.LinearGaussianEmulator], [`assimilax.GaussianTransitionEmulator`][assimilax.exact_emulators.GaussianTransitionEmulator]),
    on their zero-mean residual targets.
    """

    eigenvalues: Float[Array, " d"]
    eigenvectors: Float[Array, "d d"]

    def __init__(self, covariance: Float[ArrayLike, "d d"]):
        covariance = jnp.asarray(covariance)
        if covariance.ndim != 2 or covariance.shape[0] != covariance.shape[1] or not covariance.size:
            raise InvalidArgument(
                f"GaussianDenoiser needs a square covariance, got shape {covariance.shape}."
            )
        if not _checks.is_tracer(covariance):
            c = np.asarray(covariance)
            _checks.finite_array("GaussianDenoiser", "covariance", c, "finite: the covariance contains NaN or inf")
            if not np.allclose(c, c.T, atol=1e-6):
                raise InvalidArgument("GaussianDenoiser: covariance is not symmetric.")
        lam, u = jnp.linalg.eigh(covariance)
        if not _checks.is_tracer(lam) and bool(jnp.any(lam < -1e-8 * jnp.max(jnp.abs(lam)))):
            raise InvalidArgument(
                "GaussianDenoiser: covariance is not positive semi-definite "
                f"(smallest eigenvalue {float(lam.min()):.3g})."
            )
        self.eigenvalues = jnp.clip(lam, 0.0)
        self.eigenvectors = u

    @property
    def covariance(self) -> Float[Array, "d d"]:
        """The prior covariance ``P``."""
        u = self.eigenvectors
        return (u * self.eigenvalues) @ u.T

    def __call__(
        self, x_t: Float[Array, " d"], sigma: Float[ArrayLike, ""], context: PyTree
    ) -> Float[Array, " d"]:
        mean = jnp.zeros_like(x_t) if context is None else context
        u = self.eigenvectors
        gain = self.eigenvalues / (self.eigenvalues + jnp.asarray(sigma) ** 2)
        return mean + u @ (gain * (u.T @ (x_t - mean)))


class DiagonalGaussianDenoiser(AbstractDenoiser):
    """Exact denoiser of ``x ~ N(m, diag(v))`` whose mean is the context (zero if None).

    ``D(x_t, sigma; m) = m + v / (v + sigma^2) (x_t - m)``, componentwise: the
    [`assimilax.GaussianDenoiser`][assimilax.denoisers.GaussianDenoiser] of a diagonal
    covariance without its ``d x d`` eigenvectors, so a large state (a 64 x 64 field,
    ``d = 4096``) costs ``O(d)`` per call instead of two dense products and an ``eigh``.

    **Arguments:**

    - `variances`: ``v``, shape ``(d,)``, finite and non-negative.
    """

    variances: Float[Array, " d"]

    def __init__(self, variances: Float[ArrayLike, " d"]):
        v = jnp.asarray(variances)
        if v.ndim != 1 or not v.size:
            raise InvalidArgument(f"DiagonalGaussianDenoiser: variances must be a non-empty vector, got shape {v.shape}.")
        if not _checks.is_tracer(v):
            _checks.finite_array("DiagonalGaussianDenoiser", "variances", np.asarray(v))
            if bool(np.any(np.asarray(v) < 0)):
                raise InvalidArgument(
                    f"DiagonalGaussianDenoiser: variances = {float(np.min(np.asarray(v))):.3g} (smallest): must be >= 0."
                )
        self.variances = v

    @property
    def covariance(self) -> Float[Array, "d d"]:
        """The prior covariance ``diag(v)`` (dense: for tests and small states)."""
        return jnp.diag(self.variances)

    def __call__(
        self, x_t: Float[Array, " d"], sigma: Float[ArrayLike, ""], context: PyTree
    ) -> Float[Array, " d"]:
        mean = jnp.zeros_like(x_t) if context is None else context
        gain = self.variances / (self.variances + jnp.asarray(sigma) ** 2)
        return mean + gain * (x_t - mean)


class VPDenoiser(AbstractDenoiser):
    """Wrap a denoiser trained on a variance-preserving schedule as a VE denoiser.

    A VP model sees ``z_t = alpha_t x + sigma_t eps`` and returns ``E[x | z_t]``.  With
    ``x_t = z_t / alpha_t`` and ``s = sigma_t / alpha_t``:
    ``D_VE(x_t, s; c) = D_VP(alpha_t x_t, t; c)``, ``t = schedule.time(s)``.

    **Arguments:**

    - `vp_denoiser`: ``D_VP(z_t: Float[Array, "d"], t: Float[Array, ""], context)``.
    - `schedule`: the VP schedule it was trained with.
    """

    vp_denoiser: Callable[[Array, Array, Any], Array]
    schedule: CosineSchedule = CosineSchedule()

    def __call__(
        self, x_t: Float[Array, " d"], sigma: Float[ArrayLike, ""], context: PyTree
    ) -> Float[Array, " d"]:
        t = self.schedule.time(sigma)
        return self.vp_denoiser(self.schedule.alpha(t) * x_t, t, context)
