"""Ensemble verification metrics: skill, spread, CRPS, rank histograms.

Every metric takes an ensemble with the **ensemble axis first**, ``x`` of shape
``(n, *d)``, and the verifying truth ``y`` of shape ``d`` (a flat state, a grid, or a stack
of times: every axis after the first is averaged over).  All functions are pure ``jnp`` code,
usable under `jax.jit` and `jax.vmap` (e.g. over cycles).

- `weights`: optional particle weights ``w_i`` of shape ``(n,)`` (normalised to sum to one
  here, so unnormalised non-negative weights are accepted too).  ``None`` means uniform.
- `area_weights`: optional area weights ``a_j`` broadcastable to ``d`` (e.g.
  ``latitude_weights(lat)[:, None]`` for a ``(lat, lon)`` grid), normalised to mean one over
  the state, so that the average ``(1/D) sum_j a_j f_j`` is a weighted mean.

The weighted forms reduce exactly to the unweighted ones for uniform weights
``w_i = 1/n`` (tested).  [`area_scores`][] gives the per-cycle skill, spread and CRPS of a
whole run, from its ensembles or from their moments, with flat area weights in which a zero
masks a component out.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

__all__ = [
    "area_scores",
    "crps",
    "crps_components",
    "ensemble_mean",
    "ensemble_variance",
    "latitude_weights",
    "rank_histogram",
    "skill",
    "spread",
    "spread_skill_ratio",
    "transition_scores",
]


def _normalised(weights: Float[ArrayLike, " n"] | None, n: int, dtype) -> Array:
    if weights is None:
        return jnp.full((n,), 1.0 / n, dtype=dtype)
    w = jnp.asarray(weights, dtype=dtype)
    return w / jnp.sum(w)


def state_average(
    values: Float[Array, "*d"], area_weights: Float[ArrayLike, "*#d"] | None
) -> Float[Array, ""]:
    """``(1/D) sum_j a_j v_j`` with ``a`` broadcast to ``v`` and normalised to mean one."""
    if area_weights is None:
        return jnp.mean(values)
    a = jnp.broadcast_to(jnp.asarray(area_weights, dtype=values.dtype), values.shape)
    return jnp.sum(a * values) / jnp.sum(a)


def _weights_along(w: Array, ndim: int) -> Array:
    """Reshape ``(n,)`` weights to broadcast against an ``(n, *d)`` ensemble."""
    return w.reshape((-1,) + (1,) * (ndim - 1))


def latitude_weights(lat_degrees: Float[ArrayLike, " lat"]) -> Float[Array, " lat"]:
    """``a(lat) = cos(lat) / mean(cos(lat))``: area weights of a regular lat-lon grid.

    For a ``(lat, lon)`` state pass ``latitude_weights(lat)[:, None]`` as `area_weights`.
    """
    c = jnp.cos(jnp.deg2rad(jnp.asarray(lat_degrees, dtype=float)))
    return c / jnp.mean(c)


def ensemble_mean(
    ensemble: Float[ArrayLike, "n *d"], weights: Float[ArrayLike, " n"] | None = None
) -> Float[Array, "*d"]:
    """``m = sum_i w_i x_i`` (``w_i = 1/n`` without weights)."""
    x = jnp.asarray(ensemble)
    if weights is None:
        return jnp.mean(x, axis=0)
    w = _normalised(weights, x.shape[0], x.dtype)
    return jnp.sum(_weights_along(w, x.ndim) * x, axis=0)


def ensemble_variance(
    ensemble: Float[ArrayLike, "n *d"], weights: Float[ArrayLike, " n"] | None = None
) -> Float[Array, "*d"]:
    """Unbiased per-component ensemble variance.

    Unweighted: ``sum_i (x_i - m)^2 / (n - 1)`` (ddof = 1).  Weighted, with reliability
    weights: ``sum_i w_i (x_i - m)^2 / (1 - sum_i w_i^2)``, which is the ddof = 1 estimate
    for ``w_i = 1/n``.  Undefined (NaN / inf) for one member or one particle carrying all
    the weight.
    """
    x = jnp.asarray(ensemble)
    n = x.shape[0]
    if weights is None:
        return jnp.var(x, axis=0, ddof=1)
    w = _normalised(weights, n, x.dtype)
    m = jnp.sum(_weights_along(w, x.ndim) * x, axis=0)
    biased = jnp.sum(_weights_along(w, x.ndim) * (x - m) ** 2, axis=0)
    return biased / (1.0 - jnp.sum(w**2))


def skill(
    ensemble: Float[ArrayLike, "n *d"],
    truth: Float[ArrayLike, "*d"],
    weights: Float[ArrayLike, " n"] | None = None,
    area_weights: Float[ArrayLike, "*#d"] | None = None,
) -> Float[Array, ""]:
    """RMSE of the ensemble mean: ``sqrt((1/D) sum_j a_j (m_j - y_j)^2)``."""
    err2 = (ensemble_mean(ensemble, weights) - jnp.asarray(truth)) ** 2
    return jnp.sqrt(state_average(err2, area_weights))


def spread(
    ensemble: Float[ArrayLike, "n *d"],
    weights: Float[ArrayLike, " n"] | None = None,
    area_weights: Float[ArrayLike, "*#d"] | None = None,
) -> Float[Array, ""]:
    """``sqrt((1/D) sum_j a_j var_j)`` with the unbiased variance of [`ensemble_variance`][]."""
    return jnp.sqrt(state_average(ensemble_variance(ensemble, weights), area_weights))


def spread_skill_ratio(
    ensemble: Float[ArrayLike, "n *d"],
    truth: Float[ArrayLike, "*d"],
    weights: Float[ArrayLike, " n"] | None = None,
    area_weights: Float[ArrayLike, "*#d"] | None = None,
    finite_ensemble_correction: bool = False,
) -> Float[Array, ""]:
    """``spread / skill``; about one for a calibrated ensemble.

    For a calibrated ensemble of finite size the mean error exceeds the spread:
    ``E (m - y)^2 = (1 + sum_i w_i^2) sigma^2`` (``1 + 1/n`` unweighted).  With
    `finite_ensemble_correction` the spread is multiplied by ``sqrt(1 + sum_i w_i^2)``
    (Fortin et al., 2014), so that the expected ratio is one for any ``n``.
    """
    ratio = spread(ensemble, weights, area_weights) / skill(ensemble, truth, weights, area_weights)
    if finite_ensemble_correction:
        x = jnp.asarray(ensemble)
        w = _normalised(weights, x.shape[0], x.dtype)
        ratio = ratio * jnp.sqrt(1.0 + jnp.sum(w**2))
    return ratio


def crps_components(
    ensemble: Float[ArrayLike, "n *d"],
    truth: Float[ArrayLike, "*d"],
    weights: Float[ArrayLike, " n"] | None = None,
    fair: bool = False,
) -> Float[Array, "*d"]:
    """Ensemble CRPS of each component: ``E|X - y| - (1/2) E|X - X'|``.

    With particle weights ``w`` (``1/n`` without), ``E|X - y| = sum_i w_i |x_i - y|`` and
    ``E|X - X'| = sum_{i,k} w_i w_k |x_i - x_k|`` (the standard estimator; ``1/n^2`` in the
    unweighted case).  `fair=True` gives the fair CRPS (Ferro, 2014), whose second sum is
    divided by ``1 - sum_i w_i^2`` (``sum over i != k`` normalised by ``n (n - 1)``
    unweighted); it is undefined for a single member.

    The pair sum is computed in ``O(n log n)`` by sorting each component:
    ``sum_{i,k} w_i w_k |x_i - x_k| = 2 sum_k w_(k) x_(k) (C_(k-1) + C_(k) - 1)`` with
    ``C`` the cumulative weights in sorted order.
    """
    x = jnp.asarray(ensemble)
    y = jnp.asarray(truth, dtype=x.dtype)
    n = x.shape[0]
    w = _normalised(weights, n, x.dtype)
    # Both terms are translation invariant: centring on y avoids cancellation in float32.
    x = x - y
    wb = _weights_along(w, x.ndim)
    term1 = jnp.sum(wb * jnp.abs(x), axis=0)
    order = jnp.argsort(x, axis=0)
    xs = jnp.take_along_axis(x, order, axis=0)
    ws = w[order]
    c_incl = jnp.cumsum(ws, axis=0)
    c_excl = c_incl - ws
    pair = 2.0 * jnp.sum(ws * xs * (c_excl + c_incl - 1.0), axis=0)
    if fair:
        pair = pair / (1.0 - jnp.sum(w**2))
    return term1 - 0.5 * pair


def crps(
    ensemble: Float[ArrayLike, "n *d"],
    truth: Float[ArrayLike, "*d"],
    weights: Float[ArrayLike, " n"] | None = None,
    area_weights: Float[ArrayLike, "*#d"] | None = None,
    fair: bool = False,
) -> Float[Array, ""]:
    """State average ``(1/D) sum_j a_j CRPS_j`` of [`crps_components`][]."""
    return state_average(crps_components(ensemble, truth, weights, fair), area_weights)


def _masked_average(values: Float[Array, "T d"], area: Array | None, dtype) -> Float[Array, " T"]:
    """``sum_j a_j v_tj / sum_j a_j`` in `dtype`; components with ``a_j = 0`` dropped, NaN or not."""
    values = values.astype(dtype)
    if area is None:
        return jnp.mean(values, axis=-1)
    return jnp.sum(jnp.where(area != 0, area * values, 0), axis=-1) / jnp.sum(area)


def area_scores(
    ensemble_or_mean: Float[ArrayLike, "T n d"] | Float[ArrayLike, "T d"],
    log_weights_or_variance: Float[ArrayLike, "T n"] | Float[ArrayLike, "T d"],
    truth: Float[ArrayLike, "T d"],
    area_weights: Float[ArrayLike, " d"] | None = None,
) -> dict[str, Float[Array, " T"]]:
    """Per-cycle skill, spread and CRPS as area-weighted means over the components.

    Two forms, told apart by the number of axes of the first argument:

    - ensembles: particles ``(T, n, d)`` and their log-weights ``(T, n)`` (a
      `FilterOutput`'s); the mean ``m``, variance ``v`` ([`ensemble_mean`][],
      [`ensemble_variance`][], weights ``exp(log_weights)``) and CRPS ``c``
      ([`crps_components`][]) of each component are computed in the particles' dtype;
    - moments: the mean ``m`` ``(T, d)`` and variance ``v`` ``(T, d)`` of each cycle's
      ensemble (a `FilterMoments`'); no CRPS, which needs the ensemble.

    With area weights ``a_j >= 0`` (``None``: all one), for each cycle ``t``:

    ``skill_t = sqrt(sum_j a_j (m_tj - y_tj)^2 / sum_j a_j)``,
    ``spread_t = sqrt(sum_j a_j v_tj / sum_j a_j)``,
    ``crps_t = sum_j a_j c_tj / sum_j a_j``.

    A component with ``a_j = 0`` is masked out: it does not change the scores whatever its
    values, NaN and infinities included (e.g. sea-surface temperature over land).  All-zero
    weights give NaN.  The errors and averages are computed in the dtype of the values
    promoted with those of `truth` and `area_weights`: float64 weights under
    ``jax_enable_x64`` give float64 sums of float32 ensembles.  Pure ``jnp``, usable under `jax.jit`; returns
    ``{"skill", "spread"}`` and, for ensembles, ``"crps"``, each of shape ``(T,)``.  For
    one field of a large state, pass its slice of the arrays (and of the area weights).
    """
    first = jnp.asarray(ensemble_or_mean)
    second = jnp.asarray(log_weights_or_variance)
    if first.ndim not in (2, 3):
        raise ValueError(f"expected particles (T, n, d) or a mean (T, d), got shape {first.shape}.")
    ensemble = first.ndim == 3
    y = jnp.asarray(truth)
    if ensemble:
        weights = jnp.exp(second)
        mean = jax.vmap(ensemble_mean)(first, weights)
        variance = jax.vmap(ensemble_variance)(first, weights)
    else:
        mean, variance = first, second
    area = None if area_weights is None else jnp.asarray(area_weights)
    dtype = jnp.result_type(mean.dtype, y.dtype, *([] if area is None else [area.dtype]))
    err2 = (mean.astype(dtype) - y.astype(dtype)) ** 2
    out = {
        "skill": jnp.sqrt(_masked_average(err2, area, dtype)),
        "spread": jnp.sqrt(_masked_average(variance, area, dtype)),
    }
    if ensemble:
        out["crps"] = _masked_average(jax.vmap(crps_components)(first, y.astype(first.dtype), weights), area, dtype)
    return out


def rank_histogram(
    ensemble: Float[ArrayLike, "n *d"],
    truth: Float[ArrayLike, "*d"],
    key: PRNGKeyArray | None = None,
) -> Int[Array, " n+1"]:
    """Counts of the rank of the truth among the ``n`` members, over all components.

    The rank of ``y_j`` is ``r_j = #{i : x_ij < y_j} + t_j`` in ``{0, ..., n}``, where
    ``t_j`` breaks ties with the ``e_j = #{i : x_ij = y_j}`` members equal to ``y_j``:

    - with a `key`, ``t_j`` is uniform on ``{0, ..., e_j}`` (random tie-breaking, which
      keeps the histogram of a calibrated discrete ensemble flat);
    - without, ``t_j = floor(e_j / 2)`` (deterministic, the middle of the tied block).

    Ties have probability zero for continuous data.  The histogram of a calibrated ensemble
    is flat with expected count ``D / (n + 1)`` per bin.
    """
    x = jnp.asarray(ensemble)
    y = jnp.asarray(truth, dtype=x.dtype)
    n = x.shape[0]
    below = jnp.sum(x < y, axis=0)
    equal = jnp.sum(x == y, axis=0)
    if key is None:
        ties = equal // 2
    else:
        ties = jax.random.randint(key, equal.shape, 0, equal + 1)
    ranks = (below + ties).reshape(-1)
    return jnp.bincount(ranks, length=n + 1)


def transition_scores(
    ensembles: Float[ArrayLike, "s n d"],
    exact_mean: Float[ArrayLike, "s d"],
    draws: Float[ArrayLike, "s d"],
) -> dict[str, float]:
    """Scores of one-step forecast ensembles against a known transition.

    For ``s`` start states: an ``n``-member ensemble each (``ensembles``), the transition's
    exact mean ``E[x[k+1] | x[k]]`` (``exact_mean``) and one draw of the true transition
    (``draws``).  Returns, averaged over starts and components:

    - ``mean_rmse``: ``sqrt(mean (xbar - m)^2)``, the ensemble mean against the exact mean;
    - ``mean_bias``: the same with the Monte Carlo part ``mean(var) / n`` removed,
      ``sqrt(max(mean_rmse^2 - mean(var) / n, 0))``;
    - ``skill``: ``sqrt(mean (xbar - y)^2)`` against the draw; ``spread``: ``sqrt(mean var)``
      (ddof 1);
    - ``spread_skill``: ``spread / skill * sqrt((n + 1) / n)`` (1 when calibrated: a
      calibrated ``n``-member ensemble has ``E[skill^2] = (1 + 1/n) spread^2``);
    - ``crps``: the fair CRPS (Ferro 2014) of [`crps_components`][], averaged.
    """
    ens = jnp.asarray(ensembles)
    m, y = jnp.asarray(exact_mean, ens.dtype), jnp.asarray(draws, ens.dtype)
    n = ens.shape[1]
    ens_mean = ens.mean(axis=1)
    var = ens.var(axis=1, ddof=1)
    mean_mse = float(jnp.mean((ens_mean - m) ** 2))
    mc_var = float(jnp.mean(var)) / n  # expected squared Monte Carlo error of the sample mean
    skill = float(jnp.sqrt(jnp.mean((ens_mean - y) ** 2)))
    spread = float(jnp.sqrt(jnp.mean(var)))
    crps_mean = float(jnp.mean(jax.lax.map(lambda a: crps_components(a[0], a[1], fair=True), (ens, y))))
    return {
        "mean_rmse": float(np.sqrt(mean_mse)),
        "mean_bias": float(np.sqrt(max(mean_mse - mc_var, 0.0))),
        "skill": skill,
        "spread": spread,
        "spread_skill": spread / skill * float(np.sqrt((n + 1) / n)),
        "crps": crps_mean,
    }
