"""Observation operators ``A`` and Gaussian observation noise ``R``, composable.

The observation model is ``y = A(x) + e``, ``e ~ N(0, R)``.  An operator acts on **one**
flat state vector (size ``d``) and returns a flat observation vector (size ``p``).  Grid-aware
operators ([`BlockMean`][], [`Interpolation`][]) read one variable of the flat state as an
array of a given ``shape`` starting at ``offset`` (see [`assimilax.StateLayout.slice_of`][assimilax.layout.StateLayout.slice_of]).

Missing observations are NaN in ``y``: they are dropped from the likelihood (the marginal
of the Gaussian over the observed entries), never propagated.  The same
[`ObservationModel`][] serves the filter weights and the guidance, so the observation logic
is written once.
"""

import abc
import itertools
import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from equinox import AbstractVar
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, Scalar

from . import _checks
from ._checks import VARIANCE_RANGE
from .errors import InvalidArgument, InvalidData, invalid

# --------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------


class AbstractObservationOperator(eqx.Module):
    """An observation operator ``A: R^d -> R^p``, linear or any differentiable function.

    `obs_size` is ``p``; `state_size` is ``d`` (``None`` if the operator accepts any size).
    """

    obs_size: AbstractVar[int]
    state_size: AbstractVar[int | None]

    @abc.abstractmethod
    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " p"]:
        """Apply ``A`` to one flat state."""

    def check_state_size(self, d: int) -> None:
        """Raise an [`assimilax.errors.InvalidArgument`][] naming the operator if it cannot
        act on states of size `d`."""
        if self.state_size is not None and self.state_size != d:
            raise InvalidArgument(
                f"{type(self).__name__} acts on states of size {self.state_size}, but the "
                f"state has size {d}."
            )


class MatrixOperator(AbstractObservationOperator):
    """A dense linear operator ``A(x) = H x`` with ``H`` of shape ``(p, d)``."""

    matrix: Float[Array, "p d"]
    obs_size: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)

    def __init__(self, matrix: Float[ArrayLike, "p d"]):
        matrix = jnp.asarray(matrix)
        if matrix.ndim != 2 or 0 in matrix.shape:
            raise InvalidArgument(
                f"MatrixOperator: matrix has shape {matrix.shape}: must be a non-empty 2-D matrix (p, d)."
            )
        self.matrix = matrix
        self.obs_size, self.state_size = matrix.shape

    def __check_init__(self):
        _checks.finite_array("MatrixOperator", "matrix", self.matrix)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " p"]:
        return self.matrix @ x


class Selection(AbstractObservationOperator):
    """Observe a subset of the state components: ``A(x) = x[indices]``.

    Masks and regular subsampling are selections too: see [`Selection.from_mask`][] and
    [`Selection.every`][].
    """

    indices: Int[Array, " p"] = eqx.field(converter=jnp.asarray)
    state_size: int = eqx.field(static=True)
    obs_size: int = eqx.field(static=True, init=False)

    def __post_init__(self):
        self.obs_size = int(self.indices.shape[0])

    def __check_init__(self):
        if _is_tracer(self.indices):
            return
        _checks.integer("Selection", "state_size", self.state_size, 1)
        idx = np.asarray(self.indices)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise invalid("indices", idx, "a 1-D integer array", owner="Selection")
        if idx.size == 0:
            raise InvalidArgument("Selection observes nothing: indices is empty.")
        if idx.min() < 0 or idx.max() >= self.state_size:
            raise InvalidArgument(
                f"Selection: indices must lie in [0, {self.state_size}), got min {idx.min()} "
                f"and max {idx.max()}."
            )

    @classmethod
    def from_mask(cls, mask: Bool[ArrayLike, " d"]) -> "Selection":
        """Observe the components where the boolean `mask` is true."""
        mask = np.asarray(mask, dtype=bool)
        return cls(np.flatnonzero(mask), mask.size)

    @classmethod
    def every(cls, n: int, state_size: int, offset: int = 0) -> "Selection":
        """Observe every `n`-th component, starting at `offset`."""
        _checks.integer("Selection.every", "n", n, 1, why="n >= 1")
        _checks.integer("Selection.every", "state_size", state_size, 1)
        _checks.integer("Selection.every", "offset", offset, 0, state_size - 1)
        return cls(np.arange(offset, state_size, n), state_size)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " p"]:
        return x[self.indices]


class BlockMean(AbstractObservationOperator):
    """Coarsening: the mean of non-overlapping blocks of one gridded variable.

    The variable is ``x[offset : offset + prod(shape)]`` read as an array of `shape`;
    `block` gives the block size along each axis (each must divide the axis length).
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    block: tuple[int, ...] = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    offset: int = eqx.field(static=True, default=0)
    obs_size: int = eqx.field(static=True, init=False)

    def __post_init__(self):
        self.obs_size = math.prod(n // b for n, b in zip(self.shape, self.block))

    def __check_init__(self):
        if len(self.shape) != len(self.block) or not self.shape:
            raise InvalidArgument(f"BlockMean: block {self.block} and shape {self.shape} differ in rank.")
        for n, b in zip(self.shape, self.block):
            if n < 1 or b < 1 or n % b:
                raise InvalidArgument(f"BlockMean: block {self.block} does not divide shape {self.shape}.")
        _checks.integer("BlockMean", "offset", self.offset, 0)
        if self.offset + math.prod(self.shape) > self.state_size:
            raise InvalidArgument(
                f"BlockMean: a variable of shape {self.shape} at offset {self.offset} does not fit"
                f" in a state of size {self.state_size}."
            )

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " p"]:
        field = x[self.offset : self.offset + math.prod(self.shape)].reshape(self.shape)
        split = []
        for n, b in zip(self.shape, self.block):
            split += [n // b, b]
        blocks = field.reshape(split)
        return blocks.mean(axis=tuple(range(1, 2 * len(self.shape), 2))).reshape(-1)


class Interpolation(AbstractObservationOperator):
    """Multilinear interpolation of one gridded variable to arbitrary points.

    The variable is ``x[offset : offset + prod(shape)]`` on the rectilinear grid whose axis
    coordinates are `axes` (each increasing).  Axes flagged `periodic` wrap around with the
    given period (a ring for Lorenz-96, longitude on the sphere).  The weights are computed
    once, in NumPy, at construction; applying the operator is a gather and a weighted sum.
    """

    indices: Int[Array, "p corners"]
    weights: Float[Array, "p corners"]
    state_size: int = eqx.field(static=True)
    obs_size: int = eqx.field(static=True)

    def __init__(
        self,
        axes: Sequence[ArrayLike],
        points: Float[ArrayLike, "p ndim"],
        state_size: int,
        offset: int = 0,
        periodic: Sequence[float | None] | None = None,
    ):
        axes = [np.asarray(a, dtype=np.float64) for a in axes]
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        ndim = len(axes)
        if points.shape[1] != ndim:
            raise InvalidArgument(
                f"Interpolation: points have {points.shape[1]} coordinates but the grid has "
                f"{ndim} axes."
            )
        _checks.finite_array("Interpolation", "points", points)
        for k, a in enumerate(axes):
            _checks.finite_array("Interpolation", f"axes[{k}]", a)
            if a.ndim != 1 or a.size < 2:
                raise invalid(f"axes[{k}]", a, "a 1-D array of at least 2 coordinates", owner="Interpolation")
        periodic = [None] * ndim if periodic is None else list(periodic)
        if len(periodic) != ndim:
            raise invalid("periodic", periodic, f"None or one period (or None) per axis ({ndim})", owner="Interpolation")
        for k, period in enumerate(periodic):
            if period is not None:
                _checks.positive("Interpolation", f"periodic[{k}]", period)
        _checks.integer("Interpolation", "offset", offset, 0)
        shape = tuple(a.size for a in axes)
        if offset + math.prod(shape) > state_size:
            raise InvalidArgument(
                f"Interpolation: a grid of shape {shape} at offset {offset} does not fit in a"
                f" state of size {state_size}."
            )
        lo_idx, hi_idx, frac = [], [], []
        for k, (a, period) in enumerate(zip(axes, periodic)):
            if np.any(np.diff(a) <= 0):
                raise InvalidArgument(f"Interpolation: axis {k} coordinates must be increasing.")
            p = points[:, k]
            if period is not None:
                ext = np.concatenate([a, [a[0] + period]])
                p = a[0] + np.mod(p - a[0], period)
            else:
                ext = a
                if np.any(p < a[0]) or np.any(p > a[-1]):
                    raise InvalidArgument(
                        f"Interpolation: points outside axis {k} range [{a[0]}, {a[-1]}]."
                    )
            i = np.clip(np.searchsorted(ext, p, side="right") - 1, 0, ext.size - 2)
            f = (p - ext[i]) / (ext[i + 1] - ext[i])
            lo_idx.append(i % a.size)
            hi_idx.append((i + 1) % a.size)
            frac.append(f)
        corner_idx, corner_w = [], []
        for corner in itertools.product((0, 1), repeat=ndim):
            idx = [hi_idx[k] if c else lo_idx[k] for k, c in enumerate(corner)]
            w = np.prod([frac[k] if c else 1 - frac[k] for k, c in enumerate(corner)], axis=0)
            corner_idx.append(offset + np.ravel_multi_index(idx, shape))
            corner_w.append(w)
        self.indices = jnp.asarray(np.stack(corner_idx, axis=1))
        self.weights = jnp.asarray(np.stack(corner_w, axis=1), dtype=jnp.result_type(float))
        self.state_size = state_size
        self.obs_size = points.shape[0]

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " p"]:
        return jnp.sum(self.weights * x[self.indices], axis=1)


class Stack(AbstractObservationOperator):
    """Several instruments observing the same state: ``A(x) = concat(A_1(x), ..., A_k(x))``."""

    operators: tuple[AbstractObservationOperator, ...]
    state_size: int | None = eqx.field(static=True, init=False)
    obs_size: int = eqx.field(static=True, init=False)

    def __init__(self, operators: Sequence[AbstractObservationOperator]):
        if len(operators) == 0:
            raise InvalidArgument("Stack needs at least one operator.")
        self.operators = tuple(operators)
        sizes = {op.state_size for op in operators} - {None}
        if len(sizes) > 1:
            raise InvalidArgument(f"Stack: operators act on different state sizes {sorted(sizes)}.")
        self.state_size = sizes.pop() if sizes else None
        self.obs_size = sum(op.obs_size for op in operators)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " p"]:
        return jnp.concatenate([op(x) for op in self.operators])


class Normalised(AbstractObservationOperator):
    """An operator in standardised units: ``(A(x) - location) / scale``, per observation.

    For observations reported as anomalies (GenCast's normalised units: ``location`` the
    climatological mean, ``scale`` the std of each observed field).  `location` and `scale`
    are ``(p,)`` (or scalars); `scale` finite and non-zero.
    """

    inner: AbstractObservationOperator
    location: Float[Array, " p"]
    scale: Float[Array, " p"]
    obs_size: int = eqx.field(static=True)
    state_size: int | None = eqx.field(static=True)

    def __init__(self, inner: AbstractObservationOperator, location: ArrayLike, scale: ArrayLike):
        p = inner.obs_size
        self.inner = inner
        self.location = jnp.broadcast_to(jnp.asarray(location, jnp.float32), (p,))
        self.scale = jnp.broadcast_to(jnp.asarray(scale, jnp.float32), (p,))
        self.obs_size, self.state_size = p, inner.state_size

    def __check_init__(self):
        for name in ("location", "scale"):
            value = getattr(self, name)
            if isinstance(value, jax.core.Tracer):
                continue
            a = np.asarray(value)
            bad = ~np.isfinite(a) | ((a == 0) if name == "scale" else False)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise invalid(f"{name}[{i}]", float(a[i]), "finite" + (" and non-zero" if name == "scale" else ""), owner="Normalised")

    def check_state_size(self, d: int) -> None:
        self.inner.check_state_size(d)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " p"]:
        return (self.inner(x) - self.location) / self.scale


class Absolute(AbstractObservationOperator):
    """The magnitude of another operator's observations: ``|A(x)|``, a non-Gaussian,
    non-invertible observation (the sign is lost), where particle filters can beat
    ensemble Kalman filters.  Guidance linearises it like any differentiable operator
    (``d|u|/du = sign(u)``, 1 at 0 in JAX)."""

    inner: AbstractObservationOperator
    obs_size: int = eqx.field(static=True)
    state_size: int | None = eqx.field(static=True)

    def __init__(self, inner: AbstractObservationOperator):
        self.inner = inner
        self.obs_size, self.state_size = inner.obs_size, inner.state_size

    def check_state_size(self, d: int) -> None:
        self.inner.check_state_size(d)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " p"]:
        return jnp.abs(self.inner(x))


class FunctionOperator(AbstractObservationOperator):
    """Any differentiable ``A``, given as a function of one flat state.

    Guidance linearises it around the denoised mean with `jax.vjp` / `jax.jvp`.
    """

    fn: Callable[[Array], Array]
    obs_size: int = eqx.field(static=True)
    state_size: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        _checks.integer("FunctionOperator", "obs_size", self.obs_size, 1)
        _checks.optional_integer("FunctionOperator", "state_size", self.state_size, 1)
        if self.state_size is not None:
            self.check_output(self.state_size)

    def check_output(self, d: int) -> None:
        """Raise an [`assimilax.errors.InvalidArgument`][] if `fn` does not map a state of
        size `d` to `obs_size` values (checked with `jax.eval_shape`: nothing runs)."""
        x = jax.ShapeDtypeStruct((d,), jnp.result_type(float))
        out = jax.eval_shape(self.fn, x)
        shape = getattr(out, "shape", None)
        if shape != (self.obs_size,):
            what = f"shape {shape}" if shape is not None else f"{type(out).__name__}"
            raise invalid(
                "obs_size", self.obs_size,
                f"the size of fn's output: fn maps a state of size {d} to {what}, not "
                f"({self.obs_size},)",
                owner="FunctionOperator",
            )

    def check_state_size(self, d: int) -> None:
        super().check_state_size(d)
        self.check_output(d)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " p"]:
        return self.fn(x)


# --------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------


def _masked(r: Float[Array, " p"], mask: Bool[Array, " p"]) -> Float[Array, " p"]:
    return jnp.where(mask, r, 0.0)


class AbstractObservationNoise(eqx.Module):
    """Zero-mean Gaussian observation noise ``e ~ N(0, R)`` on ``p`` entries.

    Every method takes a `mask` of observed entries: the missing ones are dropped, i.e.
    the methods act on the marginal ``R[mask][:, mask]`` while keeping static shapes
    (missing rows and columns of ``R`` are replaced by the identity and the corresponding
    vector entries by zero).
    """

    size: AbstractVar[int]

    @abc.abstractmethod
    def matvec(self, v: Float[Array, " p"], mask: Bool[Array, " p"]) -> Float[Array, " p"]:
        """``R_m v`` with ``R_m`` the masked covariance."""

    @abc.abstractmethod
    def shifted_solve(
        self, r: Float[Array, " p"], mask: Bool[Array, " p"], shift: Float[ArrayLike, ""]
    ) -> Float[Array, " p"]:
        """``(R_m + shift I)^{-1} r``."""

    def solve(self, r: Float[Array, " p"], mask: Bool[Array, " p"]) -> Float[Array, " p"]:
        """``R_m^{-1} r``."""
        return self.shifted_solve(r, mask, 0.0)

    @abc.abstractmethod
    def log_det(self, mask: Bool[Array, " p"]) -> Scalar:
        """``log det R[mask][:, mask]``."""

    @abc.abstractmethod
    def covariance(self) -> Float[Array, "p p"]:
        """The dense covariance ``R``."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray) -> Float[Array, " p"]:
        """Draw ``e ~ N(0, R)``."""

    def log_prob(
        self, residual: Float[Array, " p"], mask: Bool[Array, " p"]
    ) -> Scalar:
        """``log N(residual[mask]; 0, R[mask][:, mask])``."""
        r = _masked(residual, mask)
        quad = r @ self.solve(r, mask)
        count = jnp.sum(mask)
        return -0.5 * (quad + self.log_det(mask) + count * jnp.log(2 * jnp.pi))


class DiagonalGaussianNoise(AbstractObservationNoise):
    """Independent Gaussian noise, ``R = diag(std^2)``."""

    std: Float[Array, " p"]
    size: int = eqx.field(static=True)

    def __init__(self, std: Float[ArrayLike, "p"] | float, size: int | None = None):
        # The values are checked before the cast to the working dtype: 1e39 would be inf
        # in float32, and 1e-30 a standard deviation whose variance underflows.
        _check_std(std)
        std = jnp.asarray(std, dtype=jnp.result_type(float))
        if std.ndim == 0:
            if size is None:
                raise InvalidArgument("DiagonalGaussianNoise with a scalar std needs `size`.")
            _checks.integer("DiagonalGaussianNoise", "size", size, 1)
            std = jnp.full((size,), std)
        elif size is not None and std.shape != (size,):
            raise InvalidArgument(f"DiagonalGaussianNoise: std has shape {std.shape}, expected ({size},).")
        if std.ndim != 1 or std.shape[0] == 0:
            raise InvalidArgument(f"DiagonalGaussianNoise: std must be a non-empty 1-D array, got shape {std.shape}.")
        self.std = std
        self.size = std.shape[0]

    def matvec(self, v, mask):
        return jnp.where(mask, self.std**2 * v, v)

    def shifted_solve(self, r, mask, shift):
        return jnp.where(mask, r / (self.std**2 + shift), r / (1.0 + shift))

    def log_det(self, mask):
        return jnp.sum(jnp.where(mask, 2 * jnp.log(self.std), 0.0))

    def covariance(self):
        return jnp.diag(self.std**2)

    def sample(self, key):
        return self.std * jax.random.normal(key, self.std.shape, self.std.dtype)


class DenseGaussianNoise(AbstractObservationNoise):
    """Correlated Gaussian noise with a dense covariance ``R``."""

    cov: Float[Array, "p p"]
    size: int = eqx.field(static=True)

    def __init__(self, covariance: Float[ArrayLike, "p p"]):
        if jnp.ndim(covariance) != 2 or jnp.shape(covariance)[0] != jnp.shape(covariance)[1] or not jnp.size(covariance):
            raise InvalidArgument(
                f"DenseGaussianNoise: covariance must be square, got {jnp.shape(covariance)}."
            )
        if not _is_tracer(covariance):
            # Checked in float64, before the cast to the working dtype (see DiagonalGaussianNoise).
            c = np.asarray(covariance, dtype=np.float64)
            _checks.symmetric_psd("DenseGaussianNoise", "covariance", c, definite=True, tolerance=1e-8)
            _checks.float32_variances(
                "DenseGaussianNoise", "covariance", np.diag(c),
                lambda i: f"covariance[{i[0]}, {i[0]}] = {c[i[0], i[0]]:.3g}",
            )
        cov = jnp.asarray(covariance, dtype=jnp.result_type(float))
        self.cov = cov
        self.size = cov.shape[0]

    def _masked_cov(self, mask):
        both = mask[:, None] & mask[None, :]
        return jnp.where(both, self.cov, jnp.eye(self.size, dtype=self.cov.dtype))

    def matvec(self, v, mask):
        return self._masked_cov(mask) @ v

    def shifted_solve(self, r, mask, shift):
        shifted = self._masked_cov(mask) + shift * jnp.eye(self.size, dtype=self.cov.dtype)
        chol = jnp.linalg.cholesky(shifted)
        return jax.scipy.linalg.cho_solve((chol, True), r)

    def log_det(self, mask):
        chol = jnp.linalg.cholesky(self._masked_cov(mask))
        return 2 * jnp.sum(jnp.log(jnp.diag(chol)))

    def covariance(self):
        return self.cov

    def sample(self, key):
        chol = jnp.linalg.cholesky(self.cov)
        return chol @ jax.random.normal(key, (self.size,), self.cov.dtype)


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_std(std: object) -> None:
    """A diagonal noise's standard deviations: finite, > 0, and a variance ``std**2`` that
    is a normal, finite float32 number (``std`` in about ``[1.1e-19, 1.8e19]``)."""
    if _is_tracer(std):
        return
    a = np.asarray(std, dtype=np.float64)

    def show(index: tuple[int, ...]) -> str:
        return f"{_checks.index_text('std', index)} = {a[index]:.6g}"

    bad = ~np.isfinite(a)
    if np.any(bad):
        raise InvalidArgument(
            f"DiagonalGaussianNoise: {show(_checks.first_bad(bad))}: observation noise std "
            "contains NaN or inf; must be finite and strictly positive."
        )
    if np.any(a <= 0):
        raise InvalidArgument(
            f"DiagonalGaussianNoise: {show(_checks.first_bad(a <= 0))}: observation noise std "
            f"must be strictly positive, with a variance std**2 that is {VARIANCE_RANGE}."
        )
    with np.errstate(over="ignore"):  # std**2 = inf is refused as an overflow
        variances = a**2
    _checks.float32_variances("DiagonalGaussianNoise", "std", variances, lambda i: f"{show(i)}, std**2")


# --------------------------------------------------------------------------------------
# The observation model
# --------------------------------------------------------------------------------------


class ObservationModel(eqx.Module):
    """``y = A(x) + e``, ``e ~ N(0, R)``: one operator and one noise, used everywhere.

    **Arguments:**

    - `operator`: an [`AbstractObservationOperator`][].
    - `noise`: an [`AbstractObservationNoise`][] of the same size as the operator output.
    """

    operator: AbstractObservationOperator
    noise: AbstractObservationNoise

    def __check_init__(self):
        if self.operator.obs_size != self.noise.size:
            raise InvalidArgument(
                f"ObservationModel: operator {type(self.operator).__name__} returns "
                f"{self.operator.obs_size} values but the noise has size {self.noise.size}."
            )

    @property
    def obs_size(self) -> int:
        return self.operator.obs_size

    def log_likelihood(
        self, y: Float[Array, " p"], x: Float[Array, " d"]
    ) -> Scalar:
        """``log N(y; A(x), R)`` over the observed (non-NaN) entries of `y`."""
        mask = jnp.isfinite(y)
        return self.noise.log_prob(jnp.where(mask, y, 0.0) - self.operator(x), mask)

    def sample(self, key: PRNGKeyArray, x: Float[Array, " d"]) -> Float[Array, " p"]:
        """Draw ``y = A(x) + e``."""
        return self.operator(x) + self.noise.sample(key)

    def check(
        self, y: ArrayLike, state_size: int, name: str = "observations", dtype: object = None
    ) -> None:
        """Validate observations ``y`` of shape ``(..., p)`` before any long computation.

        Raises an [`assimilax.errors.InvalidArgument`][] if the operator cannot act on
        states of size `state_size` (a [`FunctionOperator`][] is traced once with
        `jax.eval_shape` to check its output size), and an
        [`assimilax.errors.InvalidData`][] for observations of the wrong shape, with inf
        (NaN marks a missing value), or beyond the range of `dtype`, the working dtype
        they are cast to (default: the default float dtype, float32 unless x64 is on): a
        float64 value above 3.4e38 would become inf in float32.  The message names the
        index of the first bad value (time and observation for a ``(T, p)`` sequence).

        Shapes are checked always; values only when `y` is concrete, i.e. not a tracer
        inside a caller's `jit`.
        """
        shape = jnp.shape(y)
        self.operator.check_state_size(state_size)
        if len(shape) == 0 or shape[-1] != self.obs_size:
            raise InvalidData(
                f"{name} have shape {shape}, but the observation operator "
                f"{type(self.operator).__name__} returns {self.obs_size} values per time."
            )
        if _is_tracer(y):
            return
        values = np.asarray(y)
        if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
            raise InvalidData(f"{name} must hold real numbers, got dtype {values.dtype}.")
        if np.any(np.isinf(values)):
            index = _checks.first_bad(np.isinf(values))
            raise InvalidData(
                f"{name} contain inf {_where(name, index)} (use NaN for missing observations)."
            )
        dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
        with np.errstate(over="ignore"):
            cast = values.astype(dtype)
        overflow = np.isinf(cast) & np.isfinite(values)
        if np.any(overflow):
            index = _checks.first_bad(overflow)
            raise InvalidData(
                f"{name} hold {values[index]:.6g} {_where(name, index)}, beyond the range of the "
                f"working dtype {dtype} (largest {jnp.finfo(dtype).max:.3g}): it would become inf "
                "and be read as missing; rescale the observations (or use float64 particles)."
            )


def _where(name: str, index: tuple[int, ...]) -> str:
    """``at time t, observation j (observations[t, j])`` for a ``(T, p)`` index."""
    at = f"({_checks.index_text(name, index)})"
    if len(index) == 2:
        return f"at time {index[0]}, observation {index[1]} {at}"
    if len(index) == 1:
        return f"at observation {index[0]} {at}"
    return at
