"""The emulator protocol: a conditional diffusion model of ``p(x[k+1] | h[k])``.

An emulator owns

- a history length ``m`` (``h[k] = (x[k-m+1], ..., x[k])``, stored oldest first as an
  array of shape ``(m, d)``),
- the context its denoiser is conditioned on, built from the history and forcings,
- the map between its diffusion *target* ``z`` and the next state ``x[k+1]``:
  ``x[k+1] = to_state(z, h)`` (GenCast: ``x[k] + S z``) and its inverse ``to_target``,
- the noise its sampler starts from (standard normal unless the model says otherwise,
  e.g. GenCast's spherical-harmonic noise).

Guidance and observations work in state space: the sampler guides the target through the
composition ``A(to_state(z, h))``.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from equinox import AbstractVar
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .denoisers import AbstractDenoiser


class AbstractEmulator(eqx.Module):
    """A conditional diffusion emulator of the transition ``p(x[k+1] | h[k])``.

    Concrete emulators declare `denoiser` (acting on targets of size `target_size`),
    `history_length` (``m``) and `state_size` (``d``), and implement [`context`][].
    `to_state`, `to_target` and `noise` default to the identity map and standard normal
    noise.
    """

    denoiser: AbstractVar[AbstractDenoiser]
    history_length: AbstractVar[int]
    state_size: AbstractVar[int]

    @property
    def target_size(self) -> int:
        """Size of the diffusion target ``z`` (the state size unless overridden)."""
        return self.state_size

    @abc.abstractmethod
    def context(self, history: Float[Array, "m d"], forcing: PyTree) -> PyTree:
        """The conditioning passed to the denoiser for history `history`."""

    def to_state(self, z: Float[Array, " dz"], history: Float[Array, "m d"]) -> Float[Array, " d"]:
        """Map a diffusion target to the next state (identity by default)."""
        del history
        return z

    def to_target(self, x: Float[Array, " d"], history: Float[Array, "m d"]) -> Float[Array, " dz"]:
        """Inverse of [`to_state`][] (identity by default)."""
        del history
        return x

    def noise(self, key: PRNGKeyArray) -> Float[Array, " dz"]:
        """Unit-variance noise the sampler starts from (standard normal by default)."""
        return jax.random.normal(key, (self.target_size,))


class AbstractIncrementEmulator(AbstractEmulator):
    """An emulator of the normalised one-step increment, conditioned on the normalised state.

    History length 1; the diffusion target is ``z = (x[k+1] - x[k] - mu_inc) / s_inc`` and the
    context ``(x[k] - mu_x) / s_x``: the small emulators trained by the Lorenz-96 and
    Kolmogorov adapters.  A concrete emulator declares the four normalisation fields (and
    the protocol's `denoiser`, `history_length`, `state_size`).
    """

    state_mean: AbstractVar[float]
    state_std: AbstractVar[float]
    increment_mean: AbstractVar[float]
    increment_std: AbstractVar[float]

    def __check_init__(self):
        if self.history_length != 1:
            raise ValueError(f"{type(self).__name__} has history length 1, got {self.history_length}.")
        if self.state_std <= 0 or self.increment_std <= 0:
            raise ValueError(f"{type(self).__name__} normalisation scales must be positive.")

    def context(self, history: Float[Array, "1 d"], forcing: PyTree = None) -> Float[Array, " d"]:
        """The normalised previous state ``(x[k] - mu_x) / s_x``."""
        del forcing
        return (history[-1] - self.state_mean) / self.state_std

    def to_state(self, z: Float[Array, " d"], history: Float[Array, "1 d"]) -> Float[Array, " d"]:
        """``x[k+1] = x[k] + mu_inc + s_inc z``."""
        return history[-1] + self.increment_mean + self.increment_std * z

    def to_target(self, x: Float[Array, " d"], history: Float[Array, "1 d"]) -> Float[Array, " d"]:
        """``z = (x[k+1] - x[k] - mu_inc) / s_inc``."""
        return (x - history[-1] - self.increment_mean) / self.increment_std


def push_history(history: Float[Array, "m d"], x: Float[Array, " d"]) -> Float[Array, "m d"]:
    """``(x[k-m+1], ..., x[k]), x[k+1] -> (x[k-m+2], ..., x[k+1])``."""
    return jnp.concatenate([history[1:], x[None]], axis=0)


def predictive_mean(
    emulator: AbstractEmulator,
    key: PRNGKeyArray,
    history: Float[Array, "m d"],
    forcing: PyTree,
    sigma_max: float,
) -> Float[Array, " d"]:
    """Mean dynamics ``E[x[k+1] | h] ~= to_state(D(sigma_max eps, sigma_max; c), h)``.

    One denoiser call at the top noise level: the conditional expectation is the limit of
    the denoiser as sigma grows, so this is the FA-APF's Dirac location ``mu_i``.
    """
    context = emulator.context(history, forcing)
    z = emulator.denoiser(sigma_max * emulator.noise(key), sigma_max, context)
    return emulator.to_state(z, history)
