"""Noise schedules and the grids of noise levels a sampler walks down.

Every schedule is expressed, for the sampler, in its *variance-exploding* (VE) form: a
noisy variable ``x_t = alpha_t x + sigma_t eps`` is the rescaled ``x_t / alpha_t = x +
(sigma_t / alpha_t) eps``, so any schedule is described by the levels of the VE noise
``s = sigma_t / alpha_t`` it visits.  EDM / VE models (GenCast) have ``alpha = 1`` and
``s = sigma``.  A denoiser trained on a variance-preserving schedule is wrapped by
[`assimilax.VPDenoiser`][assimilax.denoisers.VPDenoiser] so that the core only ever sees VE denoisers.
"""

import abc
import math

import equinox as eqx
from equinox import AbstractVar
import jax.numpy as jnp
from jaxtyping import Array, Float, ArrayLike

from . import _checks
from ._checks import F32_MAX, F32_TINY
from .errors import invalid


class AbstractSchedule(eqx.Module):
    """A noise schedule: the grid of VE noise levels ``s_0 > s_1 > ... > s_{n-1} > 0``.

    The grid returned by [`levels`][] does **not** include the final level 0: a sampler
    ends with one denoising step from ``s_{n-1}`` to 0.
    """

    sigma_max: AbstractVar[float]

    @abc.abstractmethod
    def levels(self, n: int) -> Float[Array, " n"]:
        """Return ``n`` decreasing, strictly positive VE noise levels."""


class EDMSchedule(AbstractSchedule):
    """Karras et al. (2022) levels for VE / EDM models.

    ``sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho``, ``i = 0..n-1``.
    The reference sampler of the FA-APF uses ``EDMSchedule(2e-5, 88.0, 6.0)`` with 32 levels;
    GenCast's own sampler ``EDMSchedule(0.03, 80.0, 7.0)`` with 20 levels.
    """

    sigma_min: float = 2e-5
    sigma_max: float = 88.0
    rho: float = 6.0

    def __check_init__(self):
        # The levels are used in float32: both ends must be normal, finite float32 numbers.
        _checks.scalar(
            "EDMSchedule", "sigma_max", self.sigma_max,
            f"a finite number in float32 (at most {F32_MAX:.3g})",
            lambda v: 0 < v <= F32_MAX,
        )
        if not _checks.is_tracer(self.sigma_max):
            _checks.scalar(
                "EDMSchedule", "sigma_min", self.sigma_min,
                f"in [{F32_TINY:.3g}, sigma_max = {float(self.sigma_max):.6g}) "
                "(0 < sigma_min < sigma_max, a normal float32 number)",
                lambda v: F32_TINY <= v < float(self.sigma_max),
            )
        _checks.scalar("EDMSchedule", "rho", self.rho, "finite, rho > 0", lambda v: 0 < v < math.inf)

    def levels(self, n: int) -> Float[Array, " n"]:
        _checks.integer("EDMSchedule.levels", "n", n, 1, why="at least one noise level")
        if n == 1:
            return jnp.asarray([self.sigma_max])
        i = jnp.arange(n) / (n - 1)
        a = self.sigma_max ** (1 / self.rho)
        b = self.sigma_min ** (1 / self.rho)
        return (a + i * (b - a)) ** self.rho


class CosineSchedule(AbstractSchedule):
    """Variance-preserving cosine schedule (Nichol & Dhariwal, 2021).

    ``alpha_t = cos(pi t / 2)``, ``sigma_t = sin(pi t / 2)`` for ``t in [t_min, t_max]``;
    the VE levels are ``s_t = sigma_t / alpha_t = tan(pi t / 2)`` on a uniform grid in ``t``.
    """

    t_min: float = 1e-3
    t_max: float = 0.99

    def __check_init__(self):
        if _checks.is_tracer(self.t_min) or _checks.is_tracer(self.t_max):
            return
        if not (0.0 < float(self.t_min) < float(self.t_max) < 1.0):
            bad = "t_min" if not 0.0 < float(self.t_min) < 1.0 else "t_max"
            raise invalid(
                bad, getattr(self, bad), "such that 0 < t_min < t_max < 1", owner="CosineSchedule"
            )

    def alpha(self, t: Float[ArrayLike, ""]) -> Float[Array, ""]:
        """``alpha_t = cos(pi t / 2)``."""
        return jnp.cos(0.5 * jnp.pi * t)

    def sigma(self, t: Float[ArrayLike, ""]) -> Float[Array, ""]:
        """``sigma_t = sin(pi t / 2)``."""
        return jnp.sin(0.5 * jnp.pi * t)

    def time(self, s: Float[ArrayLike, ""]) -> Float[Array, ""]:
        """Inverse of the VE level: ``t = (2 / pi) arctan(s)``."""
        return 2.0 / jnp.pi * jnp.arctan(s)

    @property
    def sigma_max(self) -> float:
        return float(jnp.tan(0.5 * jnp.pi * self.t_max))

    def levels(self, n: int) -> Float[Array, " n"]:
        _checks.integer("CosineSchedule.levels", "n", n, 1, why="at least one noise level")
        t = jnp.linspace(self.t_max, self.t_min, n)
        return jnp.tan(0.5 * jnp.pi * t)
