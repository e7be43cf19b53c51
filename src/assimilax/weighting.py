"""First-stage weighting rules of the auxiliary particle filter: ``log p^(y | h_i)``.

The predictive likelihood ``p(y | h_i) = int p(y | x) p(x | h_i) dx`` is intractable for a
diffusion emulator.  Two approximations around the predictive mean ``mu_i``:

- [`DiracWeights`][]: ``p(x | h_i) ~= delta(x - mu_i)``, so ``p^(y | h_i) = N(y; A(mu_i), R)``
  (the reference method; it ignores the transition's spread);
- [`GaussianPredictiveWeights`][]: ``p(x | h_i) ~= N(mu_i, Q)`` with a known transition
  covariance ``Q``, so ``p^(y | h_i) = N(y; A(mu_i), R + H Q H^T)``, ``H = dA/dx (mu_i)``;
  exact for a linear-Gaussian model;
- [`DiagonalPredictiveWeights`][]: the same with ``H Q H^T`` reduced to its diagonal, given
  per observation: ``O(p)`` per particle, for large states whose observations share no
  state component (a selection, disjoint block means) and a diagonal ``Q``.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Scalar

from . import _checks
from .errors import InvalidArgument
from .observations import AbstractObservationOperator, DiagonalGaussianNoise, ObservationModel


class AbstractWeighting(eqx.Module):
    """``log p^(y | h_i)`` from the predictive mean ``mu_i`` of particle ``i``."""

    @abc.abstractmethod
    def __call__(
        self, observation: ObservationModel, y: Float[Array, " p"], mean: Float[Array, " d"]
    ) -> Scalar:
        """The log predictive likelihood of `y` for one particle."""

    def blocks(
        self,
        observation: ObservationModel,
        y: Float[Array, " p"],
        mean: Float[Array, " d"],
        obs_blocks: Int[Array, " p"],
        n_blocks: int,
    ) -> Float[Array, " b"]:
        """``log p^(y_b | h_i)`` for every block ``b`` of observations (block localisation).

        Each is the rule applied to the observations of block ``b`` alone (the others
        marked missing), i.e. the marginal predictive likelihood of ``y_b``.
        """
        in_block = obs_blocks[None, :] == jnp.arange(n_blocks)[:, None]
        return jax.vmap(lambda m: self(observation, jnp.where(m, y, jnp.nan), mean))(in_block)


class DiracWeights(AbstractWeighting):
    """``log N(y; A(mu), R)``: the Dirac approximation of the transition at its mean."""

    def __call__(self, observation, y, mean):
        return observation.log_likelihood(y, mean)

    def blocks(self, observation, y, mean, obs_blocks, n_blocks):
        if not isinstance(observation.noise, DiagonalGaussianNoise):
            return super().blocks(observation, y, mean, obs_blocks, n_blocks)
        # Independent noise: the log-likelihood is a sum over observations, so one
        # evaluation of A and a segment sum replace n_blocks masked evaluations.
        mask = jnp.isfinite(y)
        z = (jnp.where(mask, y, 0.0) - observation.operator(mean)) / observation.noise.std
        terms = -0.5 * z**2 - jnp.log(observation.noise.std) - 0.5 * jnp.log(2 * jnp.pi)
        return jax.ops.segment_sum(jnp.where(mask, terms, 0.0), obs_blocks, n_blocks)


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

    def __check_init__(self):
        # Q may be singular (a noise-free component) but not indefinite.
        _checks.symmetric_psd("GaussianPredictiveWeights", "covariance", self.covariance, definite=False)

    def __call__(self, observation, y, mean):
        operator = observation.operator
        jac = jax.jacrev if operator.obs_size <= mean.shape[0] else jax.jacfwd
        h = jac(operator)(mean)
        s = h @ self.covariance @ h.T + observation.noise.covariance()
        mask = jnp.isfinite(y)
        return masked_gaussian_log_pdf(jnp.where(mask, y, 0.0) - operator(mean), s, mask)


class DiagonalPredictiveWeights(AbstractWeighting):
    """``log N(y; A(mu), R + diag(s))``: predictive weights with a per-observation variance.

    ``s_j`` is the transition's variance seen by observation ``j``, the diagonal of
    ``H Q H^T``; with a diagonal ``Q`` and observations that share no state component (a
    selection, disjoint block means) ``H Q H^T`` is diagonal and this equals
    [`GaussianPredictiveWeights`][] without its ``d x d`` matrix.  With diagonal noise ``R``
    the terms are independent, so the per-block rule is one segment sum.

    **Arguments:**

    - `variances`: ``s``, shape ``(p,)``, finite and non-negative; see
      [`from_transition_variance`][assimilax.weighting.DiagonalPredictiveWeights.from_transition_variance].
    """

    variances: Float[Array, " p"]

    def __init__(self, variances: Float[ArrayLike, " p"]):
        self.variances = jnp.asarray(variances)

    def __check_init__(self):
        _checks.finite_array("DiagonalPredictiveWeights", "variances", self.variances)
        if not _checks.is_tracer(self.variances) and bool(jnp.any(self.variances < 0)):
            raise InvalidArgument("DiagonalPredictiveWeights: variances: must be >= 0.")

    @classmethod
    def from_transition_variance(
        cls, operator: AbstractObservationOperator, variances: Float[ArrayLike, " d"] | float
    ) -> "DiagonalPredictiveWeights":
        """``s = diag(H diag(v) H^T)``, ``s_j = sum_i H_ji^2 v_i``, for a linear `operator`
        (its Jacobian ``H`` at zero, computed once) and the transition's per-component
        variance `v` (a scalar for ``Q = v I``)."""
        h = jax.jacrev(operator)(jnp.zeros(operator.state_size))
        v = jnp.broadcast_to(jnp.asarray(variances, h.dtype), (operator.state_size,))
        return cls((h**2) @ v)

    def _terms(self, observation, y, mean):
        """``log N(y_j; A(mu)_j, r_j + s_j)`` per observation (0 where `y` is missing)."""
        if not isinstance(observation.noise, DiagonalGaussianNoise):
            raise InvalidArgument(
                f"DiagonalPredictiveWeights: observation noise = {type(observation.noise).__name__}: "
                "must be DiagonalGaussianNoise (use GaussianPredictiveWeights for correlated noise)."
            )
        mask = jnp.isfinite(y)
        var = observation.noise.std**2 + self.variances
        z2 = (jnp.where(mask, y, 0.0) - observation.operator(mean)) ** 2 / var
        return jnp.where(mask, -0.5 * (z2 + jnp.log(2 * jnp.pi * var)), 0.0)

    def __call__(self, observation, y, mean):
        return jnp.sum(self._terms(observation, y, mean))

    def blocks(self, observation, y, mean, obs_blocks, n_blocks):
        return jax.ops.segment_sum(self._terms(observation, y, mean), obs_blocks, n_blocks)
