"""First-stage weighting rules of the auxiliary particle filter: ``log p^(y | h_i)``.

The predictive likelihood ``p(y | h_i) = int p(y | x) p(x | h_i) dx`` is intractable for a
diffusion emulator.  Two approximations around the predictive mean ``mu_i``:

- [`DiracWeights`][]: ``p(x | h_i) ~= delta(x - mu_i)``, so ``p^(y | h_i) = N(y; A(mu_i), R)``
  (the reference method; it ignores the transition's spread);
- [`GaussianPredictiveWeights`][]: ``p(x | h_i) ~= N(mu_i, Q)`` with a known transition
  covariance ``Q``, so ``p^(y | h_i) = N(y; A(mu_i), R + H Q H^T)``, ``H = dA/dx (mu_i)``;
  exact for a linear-Gaussian model.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Scalar

from .observations import ObservationModel


class AbstractWeighting(eqx.Module):
    """``log p^(y | h_i)`` from the predictive mean ``mu_i`` of particle ``i``."""

    @abc.abstractmethod
    def __call__(
        self, observation: ObservationModel, y: Float[Array, " p"], mean: Float[Array, " d"]
    ) -> Scalar:
        """The log predictive likelihood of `y` for one particle."""


class DiracWeights(AbstractWeighting):
    """``log N(y; A(mu), R)``: the Dirac approximation of the transition at its mean."""

    def __call__(self, observation, y, mean):
        return observation.log_likelihood(y, mean)


def masked_gaussian_log_pdf(
    residual: Float[Array, " p"], covariance: Float[Array, "p p"], mask: Bool[Array, " p"]
) -> Scalar:
    """``log N(r[mask]; 0, S[mask][:, mask])`` with static shapes (missing rows -> identity)."""
    both = mask[:, None] & mask[None, :]
    s = jnp.where(both, covariance, jnp.eye(covariance.shape[0], dtype=covariance.dtype))
    r = jnp.where(mask, residual, 0.0)
    chol = jnp.linalg.cholesky(s)
    z = jax.scipy.linalg.solve_triangular(chol, r, lower=True)
    log_det = 2 * jnp.sum(jnp.log(jnp.diag(chol)))
    return -0.5 * (z @ z + log_det + jnp.sum(mask) * jnp.log(2 * jnp.pi))


class GaussianPredictiveWeights(AbstractWeighting):
    """``log N(y; A(mu), R + H Q H^T)`` with a known transition covariance ``Q`` (state space).

    ``H`` is the Jacobian of the observation operator at ``mu`` (exact for linear ``A``).
    """

    covariance: Float[Array, "d d"]

    def __init__(self, covariance: Float[ArrayLike, "d d"]):
        self.covariance = jnp.asarray(covariance)

    def __call__(self, observation, y, mean):
        operator = observation.operator
        jac = jax.jacrev if operator.obs_size <= mean.shape[0] else jax.jacfwd
        h = jac(operator)(mean)
        s = h @ self.covariance @ h.T + observation.noise.covariance()
        mask = jnp.isfinite(y)
        return masked_gaussian_log_pdf(jnp.where(mask, y, 0.0) - operator(mean), s, mask)
