"""Emulators whose denoisers are exact: for testing against exact filters, and teaching.

Both model a Gaussian transition ``p(x[k+1] | x[k]) = N(f(x[k]), Q)``.  Like GenCast, the
diffusion target is the zero-mean residual ``z = x[k+1] - f(x[k]) ~ N(0, Q)`` (the map
``to_state(z, h) = f(x[k]) + z``), whose exact VE denoiser is the
[`assimilax.GaussianDenoiser`][assimilax.denoisers.GaussianDenoiser] of covariance ``Q``.  A zero-mean target matters: the
sampler starts from ``sigma_max eps``, which is off by ``|mean| / sigma_max`` for a target
with a mean (a 2% bias in the moments for a mean of 2 and ``sigma_max = 100``).  With these, the FA-APF with exact MMPS guidance and the
Gaussian-predictive weighting rule is the optimal-proposal particle filter, and on a
linear ``f`` it is exact in the limit of many particles (it matches the Kalman filter).
"""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree

from . import _checks
from .denoisers import DiagonalGaussianDenoiser, GaussianDenoiser
from .emulators import AbstractEmulator
from .errors import InvalidArgument


class LinearGaussianEmulator(AbstractEmulator):
    """``x[k+1] = F x[k] + w``, ``w ~ N(0, Q)``.

    **Arguments:**

    - `transition_matrix`: ``F``, shape ``(d, d)``.
    - `covariance`: ``Q``, shape ``(d, d)``, symmetric positive semi-definite.
    """

    transition_matrix: Float[Array, "d d"]
    denoiser: GaussianDenoiser
    history_length: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)

    def __init__(self, transition_matrix: Float[ArrayLike, "d d"], covariance: Float[ArrayLike, "d d"]):
        f = jnp.asarray(transition_matrix)
        q = jnp.asarray(covariance)
        if f.ndim != 2 or f.shape[0] != f.shape[1]:
            raise InvalidArgument(f"LinearGaussianEmulator: F must be square, got shape {f.shape}.")
        if q.shape != f.shape:
            raise InvalidArgument(f"LinearGaussianEmulator: Q has shape {q.shape}, F has {f.shape}.")
        _checks.finite_array("LinearGaussianEmulator", "transition_matrix", f)
        self.transition_matrix = f
        self.denoiser = GaussianDenoiser(q)
        self.history_length = 1
        self.state_size = f.shape[0]

    @property
    def transition_covariance(self) -> Float[Array, "d d"]:
        """``Q``."""
        return self.denoiser.covariance

    def context(self, history: Float[Array, "1 d"], forcing: PyTree = None) -> None:
        return None

    def to_state(self, z: Float[Array, " d"], history: Float[Array, "1 d"]) -> Float[Array, " d"]:
        return self.transition_matrix @ history[-1] + z

    def to_target(self, x: Float[Array, " d"], history: Float[Array, "1 d"]) -> Float[Array, " d"]:
        return x - self.transition_matrix @ history[-1]


class GaussianTransitionEmulator(AbstractEmulator):
    """``x[k+1] = f(x[k]) + w``, ``w ~ N(0, Q)``, for any deterministic map ``f``.

    The exact oracle of a stochastic model such as Lorenz-96 with additive model noise.

    **Arguments:**

    - `transition`: ``f``, a function of one flat state ``(d,) -> (d,)``.
    - `covariance`: ``Q``, shape ``(d, d)``; or its diagonal, shape ``(d,)``, for a diagonal
      ``Q`` (then the exact denoiser is the ``O(d)``
      [`assimilax.DiagonalGaussianDenoiser`][assimilax.denoisers.DiagonalGaussianDenoiser],
      with no ``d x d`` matrix: the oracle of a large grid).
    """

    transition: Callable[[Array], Array]
    denoiser: GaussianDenoiser | DiagonalGaussianDenoiser
    history_length: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)

    def __init__(
        self, transition: Callable[[Array], Array], covariance: Float[ArrayLike, "d d"] | Float[ArrayLike, " d"]
    ):
        q = jnp.asarray(covariance)
        if q.ndim == 1:
            self.denoiser = DiagonalGaussianDenoiser(q)
        elif q.ndim == 2 and q.shape[0] == q.shape[1]:
            self.denoiser = GaussianDenoiser(q)
        else:
            raise InvalidArgument(f"GaussianTransitionEmulator: Q must be square or a diagonal vector, got {q.shape}.")
        self.transition = transition
        self.history_length = 1
        self.state_size = q.shape[0]

    @property
    def transition_covariance(self) -> Float[Array, "d d"]:
        """``Q``."""
        return self.denoiser.covariance

    def context(self, history: Float[Array, "1 d"], forcing: PyTree = None) -> None:
        return None

    def to_state(self, z: Float[Array, " d"], history: Float[Array, "1 d"]) -> Float[Array, " d"]:
        return self.transition(history[-1]) + z

    def to_target(self, x: Float[Array, " d"], history: Float[Array, "1 d"]) -> Float[Array, " d"]:
        return x - self.transition(history[-1])
