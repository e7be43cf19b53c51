"""The checks every job's configuration shares, by field name and annotation.

A job's configuration is a frozen dataclass of plain fields (see
[`add_config_options`][assimilax.experiment.config_cli.add_config_options]).  Its
``__post_init__`` calls [`check_config`][] with its filter names, the fields that must be
positive and its own checks; every problem is listed in one
[`assimilax.errors.InvalidConfiguration`][] before anything runs.
"""

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Callable, Iterable, Sequence

from ..errors import InvalidConfiguration
from ..solvers import SOLVER_NAMES


def _type_problems(name: str, hint: object, value: object) -> list[str]:
    """``{name} must be an integer`` / ``must be finite`` for fields annotated int / float
    (``X | None``: None allowed; ``tuple[float, ...]``: every item)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        hint = next((a for a in args if a is not type(None)), hint)
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and isinstance(value, tuple):
        inner = [a for a in args if a is not Ellipsis]
        return [p for item in value for p in _type_problems(name, inner[0], item)][:1] if inner else []
    if hint is int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        return [f"{name} must be an integer, got {value!r}"]
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return [f"{name} must be a number, got {value!r}"]
        if not math.isfinite(value):
            return [f"{name} must be finite, got {value}"]
    return []


def check_config(
    cfg: object,
    owner: str,
    filters: Sequence[str],
    positive: Sequence[str] = (),
    checks: Callable[[], Iterable[tuple[bool, str]]] | None = None,
) -> None:
    """Raise [`assimilax.errors.InvalidConfiguration`][] naming every invalid field of `cfg`.

    **Arguments:**

    - `cfg`: a dataclass instance.  Fields annotated ``int`` must be integers (not bools),
      ``float`` finite numbers; where present, ``particles >= 2``, ``cycles >= 1``,
      ``0 <= seed < 2**32``, ``levels >= 2``, ``solver`` one of
      [`assimilax.SOLVER_NAMES`][assimilax.solvers.SOLVER_NAMES], ``filters`` a non-empty
      subset of `filters`, and every field whose name ends in ``ess_band`` a pair
      ``0 < low <= high <= 1``.
    - `owner`: what the configuration is, for the message (``"Lorenz-96 experiment"``).
    - `filters`: the job's filter names.
    - `positive`: fields that must be ``> 0``.
    - `checks`: the job's own checks, ``() -> [(ok, message), ...]``, evaluated only once
      the types are right.
    """
    hints = typing.get_type_hints(type(cfg))
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    problems = [p for name, value in fields.items() for p in _type_problems(name, hints[name], value)]
    if problems:  # comparisons below need the right types
        raise InvalidConfiguration(owner, problems)
    rules = {
        "particles": (lambda v: v >= 2, "particles must be at least 2, got {}"),
        "cycles": (lambda v: v >= 1, "cycles must be at least 1, got {}"),
        "seed": (lambda v: 0 <= v < 2**32, "seed must be in [0, 2**32), got {}"),
        "levels": (lambda v: v >= 2, "levels must be at least 2, got {}"),
        "solver": (lambda v: v in SOLVER_NAMES, "unknown solver {!r}; choose from " + str(list(SOLVER_NAMES))),
    }
    for name, (ok, message) in rules.items():
        if name in fields and not ok(fields[name]):
            problems.append(message.format(fields[name]))
    if "filters" in fields:
        unknown = sorted(set(fields["filters"]) - set(filters))
        if unknown or not fields["filters"]:
            problems.append(f"unknown filters {unknown or '(none given)'}; choose from {list(filters)}")
    for name, value in fields.items():
        if name.endswith("ess_band") and not (len(value) == 2 and 0 < value[0] <= value[1] <= 1):
            problems.append(f"{name} must satisfy 0 < low <= high <= 1, got {value}")
    problems += [f"{name} must be positive, got {fields[name]}" for name in positive if not fields[name] > 0]
    problems += [message for ok, message in (checks() if checks is not None else ()) if not ok]
    if problems:
        raise InvalidConfiguration(owner, problems)
