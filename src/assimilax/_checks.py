"""Validation helpers for the Python boundary of the core's constructors and functions.

Each helper raises an [`assimilax.errors.InvalidArgument`][] (or `InvalidData`) whose
message names the owner, the argument, its value and what is allowed, and does nothing
for a JAX tracer (a module built inside `jit` is checked where its values are concrete,
or not at all).  Used from `__check_init__` methods and at trace time in filter steps.
"""

import math
import operator
from collections.abc import Callable

import jax
import numpy as np

from .errors import InvalidArgument, invalid

FLOAT32 = np.finfo(np.float32)
F32_TINY, F32_MAX = float(FLOAT32.tiny), float(FLOAT32.max)  # Python floats: no casts in comparisons
# Variances must be normal, finite float32 numbers: the working dtype is float32 by
# default, and a variance below the smallest normal number (std < 1.1e-19) underflows to
# zero or a denormal in the solves of the likelihood, one above the largest overflows.
VARIANCE_RANGE = f"a normal, finite float32 number, in [{FLOAT32.tiny:.3g}, {FLOAT32.max:.3g}]"

POSITIVE = "a finite number > 0"
NON_NEGATIVE = "a finite number >= 0"


def is_tracer(x: object) -> bool:
    """Whether `x` is a JAX tracer (abstract inside `jit`, `vmap`, `grad`...)."""
    return isinstance(x, jax.core.Tracer)


def scalar(owner: str, argument: str, value: object, allowed: str, ok: Callable[[float], bool]) -> None:
    """Raise unless `value` is a real scalar with ``ok(float(value))`` (skipped for tracers).

    NaN fails every comparison, so ``ok = lambda v: v > 0`` refuses NaN as well.
    """
    if is_tracer(value):
        return
    if isinstance(value, bool):
        raise invalid(argument, value, allowed, owner=owner)
    try:
        a = np.asarray(value)
    except Exception:  # not convertible at all
        raise invalid(argument, value, allowed, owner=owner) from None
    if a.ndim != 0 or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise invalid(argument, value, allowed, owner=owner)
    v = float(a)
    if not ok(v):
        raise invalid(argument, value, allowed, owner=owner)


def positive(owner: str, argument: str, value: object) -> None:
    """`value` must be finite and > 0."""
    scalar(owner, argument, value, POSITIVE, lambda v: 0 < v < math.inf)


def non_negative(owner: str, argument: str, value: object) -> None:
    """`value` must be finite and >= 0."""
    scalar(owner, argument, value, NON_NEGATIVE, lambda v: 0 <= v < math.inf)


def integer(
    owner: str, argument: str, value: object, minimum: int, maximum: int | None = None, why: str = ""
) -> int:
    """`value` must be an integer (a Python or NumPy integer, not a bool) in
    ``[minimum, maximum]``; returns it as an `int`.  `why` is appended to the message."""
    allowed = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    allowed += f" ({why})" if why else ""
    if isinstance(value, bool):
        raise invalid(argument, value, allowed, owner=owner)
    try:
        i = operator.index(value)
    except TypeError:
        raise invalid(argument, value, allowed, owner=owner) from None
    if i < minimum or (maximum is not None and i > maximum):
        raise invalid(argument, value, allowed, owner=owner)
    return i


def optional_integer(owner: str, argument: str, value: object, minimum: int) -> None:
    """None, or an integer >= `minimum`."""
    if value is not None:
        integer(owner, argument, value, minimum)


def first_bad(mask: object) -> tuple[int, ...]:
    """The index of the first true entry of `mask` (``()`` for a true scalar)."""
    return tuple(int(i) for i in np.argwhere(np.asarray(mask))[0])


def index_text(argument: str, index: tuple[int, ...]) -> str:
    """``argument[i, j]``."""
    return f"{argument}[{', '.join(map(str, index))}]" if index else argument


def finite_array(owner: str, argument: str, value: object, allowed: str = "finite (no NaN or inf)") -> None:
    """Every entry of `value` must be finite; the message names the first bad entry."""
    if is_tracer(value):
        return
    a = np.asarray(value)
    bad = ~np.isfinite(a)
    if np.any(bad):
        index = first_bad(bad)
        raise invalid(index_text(argument, index), a[index].item(), allowed, owner=owner)


def symmetric_psd(
    owner: str, argument: str, value: object, *, definite: bool, tolerance: float = 1e-6
) -> np.ndarray | None:
    """A finite, symmetric, positive (semi-)definite square matrix; returns its eigenvalues
    (None for a tracer).  Symmetry is checked to `tolerance` relative to the largest entry;
    semi-definiteness allows eigenvalues down to ``-tolerance`` times the largest one."""
    if is_tracer(value):
        return None
    c = np.asarray(value, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise InvalidArgument(f"{owner}: {argument} must be a square matrix, got shape {c.shape}.")
    finite_array(owner, argument, c, "finite: the covariance contains NaN or inf")
    scale = float(np.abs(c).max()) if c.size else 0.0
    asym = np.abs(c - c.T)
    if np.any(asym > tolerance * scale):
        i, j = first_bad(asym > tolerance * scale)
        raise InvalidArgument(
            f"{owner}: {argument} is not symmetric: {argument}[{i}, {j}] = {c[i, j]:.6g} but "
            f"{argument}[{j}, {i}] = {c[j, i]:.6g}; must be a symmetric positive "
            f"{'definite' if definite else 'semi-definite'} matrix."
        )
    lam = np.linalg.eigvalsh(0.5 * (c + c.T))
    low = lam.min() if lam.size else 1.0
    if (definite and low <= 0) or (not definite and low < -tolerance * max(np.abs(lam).max(), 0.0)):
        kind = "positive definite" if definite else "positive semi-definite"
        raise InvalidArgument(
            f"{owner}: {argument} is not {kind} (smallest eigenvalue {low:.3g}); must be a "
            f"symmetric {kind} matrix."
        )
    return lam


def float32_variances(owner: str, argument: str, variances: object, show: Callable[[tuple[int, ...]], str]) -> None:
    """Every variance must be a normal, finite float32 number; `show(index)` names the entry."""
    variances = np.asarray(variances, dtype=np.float64)
    bad = (variances < F32_TINY) | (variances > F32_MAX)
    if np.any(bad):
        index = first_bad(bad)
        v = variances[index]
        how = "underflows" if v < F32_TINY else "overflows"
        raise InvalidArgument(
            f"{owner}: {show(index)}: the variance {v:.3g} {how} in float32; must be {VARIANCE_RANGE}."
        )
