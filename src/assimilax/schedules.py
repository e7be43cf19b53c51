"""Noise schedules and the grids of noise levels a sampler walks down.

Every schedule is expressed, for the sampler, in its *variance-exploding* (VE) form: a
noisy variable ``x_t = alpha_t x + sigma_t eps`` is the rescaled ``x_t / alpha_t = x +
(sigma_t / alpha_t) eps``, so any schedule is described by the levels of the VE noise
``s = sigma_t / alpha_t`` it visits.  EDM / VE models (GenCast) have ``alpha = 1`` and
``s = sigma``.  A denoiser trained on a variance-preserving schedule is wrapped by
[`assimilax.VPDenoiser`][assimilax.denoisers.VPDenoiser] so that the core only ever sees VE denoisers.
"""

import abc

import equinox as eqx
from equinox import AbstractVar
import jax.numpy as jnp
from jaxtyping import Array, Float, ArrayLike


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
        if not (0.0 < self.sigma_min < self.sigma_max):
            raise ValueError(
                f"EDMSchedule needs 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min},"
                f" sigma_max={self.sigma_max}."
            )
        if self.rho <= 0:
            raise ValueError(f"EDMSchedule needs rho > 0, got rho={self.rho}.")

    def levels(self, n: int) -> Float[Array, " n"]:
        if n < 1:
            raise ValueError(f"Need at least one noise level, got n={n}.")
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
        if not (0.0 < self.t_min < self.t_max < 1.0):
            raise ValueError(
                f"CosineSchedule needs 0 < t_min < t_max < 1, got {self.t_min}, {self.t_max}."
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
        if n < 1:
            raise ValueError(f"Need at least one noise level, got n={n}.")
        t = jnp.linspace(self.t_max, self.t_min, n)
        return jnp.tan(0.5 * jnp.pi * t)
