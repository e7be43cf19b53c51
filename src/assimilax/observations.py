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
        """Raise a `ValueError` naming the operator if it cannot act on states of size d."""
        if self.state_size is not None and self.state_size != d:
            raise ValueError(
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
        if matrix.ndim != 2:
            raise ValueError(f"MatrixOperator needs a 2-D matrix, got shape {matrix.shape}.")
        self.matrix = matrix
        self.obs_size, self.state_size = matrix.shape

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
        idx = np.asarray(self.indices)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"Selection indices must be a 1-D integer array, got {idx!r}.")
        if idx.size == 0:
            raise ValueError("Selection observes nothing: indices is empty.")
        if idx.min() < 0 or idx.max() >= self.state_size:
            raise ValueError(
                f"Selection indices must lie in [0, {self.state_size}), got min {idx.min()} "
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
        if n < 1:
            raise ValueError(f"Selection.every needs n >= 1, got {n}.")
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
        if len(self.shape) != len(self.block):
            raise ValueError(f"BlockMean: block {self.block} and shape {self.shape} differ in rank.")
        for n, b in zip(self.shape, self.block):
            if b < 1 or n % b:
                raise ValueError(f"BlockMean: block {self.block} does not divide shape {self.shape}.")
        if self.offset + math.prod(self.shape) > self.state_size:
            raise ValueError(
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
            raise ValueError(
                f"Interpolation: points have {points.shape[1]} coordinates but the grid has "
                f"{ndim} axes."
            )
        periodic = [None] * ndim if periodic is None else list(periodic)
        shape = tuple(a.size for a in axes)
        if offset + math.prod(shape) > state_size:
            raise ValueError(
                f"Interpolation: a grid of shape {shape} at offset {offset} does not fit in a"
                f" state of size {state_size}."
            )
        lo_idx, hi_idx, frac = [], [], []
        for k, (a, period) in enumerate(zip(axes, periodic)):
            if np.any(np.diff(a) <= 0):
                raise ValueError(f"Interpolation: axis {k} coordinates must be increasing.")
            p = points[:, k]
            if period is not None:
                ext = np.concatenate([a, [a[0] + period]])
                p = a[0] + np.mod(p - a[0], period)
            else:
                ext = a
                if np.any(p < a[0]) or np.any(p > a[-1]):
                    raise ValueError(
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
            raise ValueError("Stack needs at least one operator.")
        self.operators = tuple(operators)
        sizes = {op.state_size for op in operators} - {None}
        if len(sizes) > 1:
            raise ValueError(f"Stack: operators act on different state sizes {sorted(sizes)}.")
        self.state_size = sizes.pop() if sizes else None
        self.obs_size = sum(op.obs_size for op in operators)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " p"]:
        return jnp.concatenate([op(x) for op in self.operators])


class FunctionOperator(AbstractObservationOperator):
    """Any differentiable ``A``, given as a function of one flat state.

    Guidance linearises it around the denoised mean with `jax.vjp` / `jax.jvp`.
    """

    fn: Callable[[Array], Array]
    obs_size: int = eqx.field(static=True)
    state_size: int | None = eqx.field(static=True, default=None)

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
        std = jnp.asarray(std, dtype=jnp.result_type(float))
        if std.ndim == 0:
            if size is None:
                raise ValueError("DiagonalGaussianNoise with a scalar std needs `size`.")
            std = jnp.full((size,), std)
        elif size is not None and std.shape != (size,):
            raise ValueError(f"DiagonalGaussianNoise: std has shape {std.shape}, expected ({size},).")
        if std.ndim != 1:
            raise ValueError(f"DiagonalGaussianNoise: std must be 1-D, got shape {std.shape}.")
        _check_concrete_positive(std, "observation noise std")
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
        cov = jnp.asarray(covariance, dtype=jnp.result_type(float))
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
            raise ValueError(f"DenseGaussianNoise: covariance must be square, got {cov.shape}.")
        if not _is_tracer(cov):
            c = np.asarray(cov)
            if not np.all(np.isfinite(c)):
                raise ValueError("DenseGaussianNoise: covariance contains NaN or inf.")
            if not np.allclose(c, c.T, atol=1e-8 * np.abs(c).max()):
                raise ValueError("DenseGaussianNoise: covariance is not symmetric.")
            lam = np.linalg.eigvalsh(c)
            if lam.min() <= 0:
                raise ValueError(
                    "DenseGaussianNoise: covariance must be positive definite "
                    f"(smallest eigenvalue {lam.min():.3g})."
                )
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


def _check_concrete_positive(x: Array, what: str) -> None:
    if _is_tracer(x):
        return
    a = np.asarray(x)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or inf: {a}.")
    if np.any(a <= 0):
        raise ValueError(f"{what} must be strictly positive, got min {a.min()}.")


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
            raise ValueError(
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

    def check(self, y: ArrayLike, state_size: int, name: str = "observations") -> None:
        """Validate observations ``y`` of shape ``(..., p)`` before any long computation.

        Shapes are checked always; values (no inf) only when `y` is concrete, i.e. not a
        tracer inside a caller's `jit`.
        """
        shape = jnp.shape(y)
        self.operator.check_state_size(state_size)
        if len(shape) == 0 or shape[-1] != self.obs_size:
            raise ValueError(
                f"{name} have shape {shape}, but the observation operator "
                f"{type(self.operator).__name__} returns {self.obs_size} values per time."
            )
        if not _is_tracer(y) and np.any(np.isinf(np.asarray(y))):
            raise ValueError(f"{name} contain inf (use NaN for missing observations).")
