"""Resampling schemes and the effective sample size.

Each resampler maps ``(key, log_weights, n)`` to ``n`` ancestor indices such that the
expected number of copies of particle ``i`` is ``n w_i`` (unbiasedness), with ``w`` the
normalised weights.  See Douc, Cappe & Moulines (2005) for the comparison of schemes;
systematic resampling is the default (lowest variance in practice, one uniform draw).
"""

import abc
import contextlib
import contextvars
from collections.abc import Iterator

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar


def normalise(log_weights: Float[Array, " n"]) -> Float[Array, " n"]:
    """``log w_i - logsumexp(log w)``."""
    return log_weights - jax.nn.logsumexp(log_weights)


def effective_sample_size(log_weights: Float[Array, " n"]) -> Scalar:
    """``ESS = 1 / sum w_i^2`` for the normalised weights (between 1 and n)."""
    lw = normalise(log_weights)
    return jnp.exp(-jax.nn.logsumexp(2 * lw))


_ON_ERROR: contextvars.ContextVar[str] = contextvars.ContextVar("assimilax_on_error", default="default")


@contextlib.contextmanager
def weight_errors_as_nan() -> Iterator[None]:
    """While tracing: degenerate weights become NaN instead of raising from compiled code.

    For a run layer that checks every cycle's outputs on the host
    ([`assimilax.assimilate`][assimilax.assimilate.assimilate] does, naming the cycle).
    Compiled code without the runtime-error callback can also be kept in JAX's persistent
    compilation cache, which stores no executable with host callbacks.
    """
    token = _ON_ERROR.set("nan")
    try:
        yield
    finally:
        _ON_ERROR.reset(token)


def check_weights(log_weights: Float[Array, " n"]) -> Float[Array, " n"]:
    """Raise (inside jit) if the weights are degenerate: NaN, or all ``-inf``.

    Under [`weight_errors_as_nan`][] the weights become NaN instead.
    """
    on_error = _ON_ERROR.get()
    log_weights = eqx.error_if(
        log_weights,
        jnp.any(jnp.isnan(log_weights)),
        "particle log-weights contain NaN (a particle or the likelihood is NaN)",
        on_error=on_error,
    )
    return eqx.error_if(
        log_weights,
        ~jnp.any(jnp.isfinite(log_weights)),
        "all particle weights are zero (every log-weight is -inf): the observation is "
        "impossible under every particle; check the observation noise and operator",
        on_error=on_error,
    )


def _inverse_cdf(u: Float[Array, " n"], log_weights: Float[Array, " m"]) -> Int[Array, " n"]:
    """Ancestors ``a_j = min{i : W_i > u_j}`` for sorted uniforms `u` and cumulative ``W``."""
    cdf = jnp.cumsum(jnp.exp(normalise(log_weights)))
    idx = jnp.searchsorted(cdf, u, side="right")
    return jnp.clip(idx, 0, log_weights.shape[0] - 1)


class AbstractResampler(eqx.Module):
    """``(key, log_weights, n) -> ancestors``: ``n`` indices, unbiased for ``n w``."""

    @abc.abstractmethod
    def __call__(
        self, key: PRNGKeyArray, log_weights: Float[Array, " m"], n: int
    ) -> Int[Array, " n"]:
        """Draw `n` ancestor indices."""


class Multinomial(AbstractResampler):
    """``n`` independent draws from the categorical distribution ``w``."""

    def __call__(self, key, log_weights, n):
        return jax.random.categorical(key, log_weights, shape=(n,))


class Stratified(AbstractResampler):
    """One uniform in each stratum: ``u_j = (j + U_j) / n``, ``U_j ~ U[0, 1)`` i.i.d."""

    def __call__(self, key, log_weights, n):
        u = (jnp.arange(n) + jax.random.uniform(key, (n,))) / n
        return _inverse_cdf(u, log_weights)


class Systematic(AbstractResampler):
    """One shared uniform: ``u_j = (j + U) / n``, ``U ~ U[0, 1)``."""

    def __call__(self, key, log_weights, n):
        u = (jnp.arange(n) + jax.random.uniform(key, ())) / n
        return _inverse_cdf(u, log_weights)


class Residual(AbstractResampler):
    """``floor(n w_i)`` deterministic copies, the remaining ``r`` drawn multinomially from
    the residual weights ``n w_i - floor(n w_i)``."""

    def __call__(self, key, log_weights, n):
        m = log_weights.shape[0]
        w = jnp.exp(normalise(log_weights))
        copies = jnp.floor(n * w).astype(jnp.int32)
        n_det = jnp.sum(copies)
        # Deterministic part: index j < n_det goes to the particle whose cumulative count
        # first exceeds j.
        cum = jnp.cumsum(copies)
        j = jnp.arange(n)
        det = jnp.clip(jnp.searchsorted(cum, j, side="right"), 0, m - 1)
        residual = n * w - copies
        log_res = jnp.where(residual > 0, jnp.log(jnp.maximum(residual, 1e-38)), -jnp.inf)
        # Guard the (measure-zero) case of no residual mass: any index is unused then.
        log_res = jnp.where(jnp.any(residual > 0), log_res, jnp.zeros_like(log_res))
        rnd = jax.random.categorical(key, log_res, shape=(n,))
        return jnp.where(j < n_det, det, rnd)
