"""Lat-lon observation operators for GenCast states, built from the core's operators.

Every field of a GenCast state (one variable at one pressure level) is a contiguous
``(lat, lon)`` block of the flat state (see [`state_layout`][assimilax_adapters.gencast.emulator.state_layout]),
so each instrument is a core operator on that block:

- [`stations`][]: values at arbitrary ``(lat, lon)`` points: bilinear interpolation in
  latitude and longitude, longitude periodic (360 degrees) ([`assimilax.Interpolation`][assimilax.observations.Interpolation]).
  This is interpolation on the lat-lon chart, not along great circles: adequate away from
  the poles for grids of 1 degree or finer; points must lie within the grid's latitudes.
- [`gridded`][]: the grid points where a boolean ``(lat, lon)`` mask is true (satellite
  swaths), [`assimilax.Selection`][assimilax.observations.Selection].
- [`coarsened`][]: means over non-overlapping ``(b_lat, b_lon)`` blocks, [`assimilax.BlockMean`][assimilax.observations.BlockMean].
- [`every_nth`][]: every n-th grid point of the flattened ``(lat, lon)`` field (``n``) or a
  regular sub-grid (``(n_lat, n_lon)``).

Each takes a list of fields ``(variable, level or None)`` and returns an [`Instrument`][]: the
operator and, per observation, the field it belongs to.  [`observation_model`][] stacks
instruments and attaches per-variable Gaussian noise in physical units, or in normalised
units (``std`` of ``stddev_by_level``): with ``space="normalised"`` the observations are
``(A x - mean) / std`` and the noise is given in those units.
"""

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from jaxtyping import ArrayLike

import assimilax as ax

from .config import ALL_ATMOSPHERIC_VARS
from .normalization import Statistics

Field = tuple[str, int | None]


@dataclasses.dataclass(frozen=True)
class Instrument:
    """An operator and the field ``(variable, level)`` of each of its observations."""

    operator: ax.AbstractObservationOperator
    fields: tuple[Field, ...]


def _field_offset(layout: ax.StateLayout, field: Field) -> tuple[int, tuple[int, int]]:
    name, level = field
    v = layout[name]
    nlat, nlon = v.shape[-2:]
    if "level" in v.dims:
        levels = next(c.values for c in v.coords if c.name == "level")
        if level is None or int(level) not in [int(x) for x in levels]:
            raise ValueError(f"Field {name!r} needs a level among {list(levels)}, got {level}.")
        i = [int(x) for x in levels].index(int(level))
        return v.offset + i * nlat * nlon, (nlat, nlon)
    if level is not None:
        raise ValueError(f"{name!r} is a surface variable: its level must be None, got {level}.")
    return v.offset, (nlat, nlon)


def all_levels(layout: ax.StateLayout, name: str) -> list[Field]:
    """The fields of `name` (each level of an atmospheric variable, or the surface field)."""
    v = layout[name]
    if "level" not in v.dims:
        return [(name, None)]
    return [(name, int(x)) for x in next(c.values for c in v.coords if c.name == "level")]


def _coords(layout: ax.StateLayout, name: str) -> tuple[np.ndarray, np.ndarray]:
    v = layout[name]
    get = lambda c: np.asarray(next(x.values for x in v.coords if x.name == c), np.float64)  # noqa: E731
    return get("lat"), get("lon")


def stations(layout: ax.StateLayout, fields: Sequence[Field], lat: ArrayLike | Sequence[float], lon: ArrayLike | Sequence[float]) -> Instrument:
    """Bilinear values of each field at the points ``(lat[i], lon[i])`` (degrees)."""
    points = np.stack([np.asarray(lat, np.float64), np.asarray(lon, np.float64)], axis=1)
    ops, out_fields = [], []
    for f in fields:
        offset, _ = _field_offset(layout, f)
        glat, glon = _coords(layout, f[0])
        ops.append(ax.Interpolation([glat, glon], points, layout.size, offset, periodic=[None, 360.0]))
        out_fields += [f] * points.shape[0]
    return Instrument(ax.Stack(ops) if len(ops) > 1 else ops[0], tuple(out_fields))


def gridded(layout: ax.StateLayout, fields: Sequence[Field], mask: ArrayLike | Sequence) -> Instrument:
    """The grid points where `mask` (``(lat, lon)`` booleans) is true."""
    mask = np.asarray(mask, bool)
    idx, out_fields = [], []
    for f in fields:
        offset, shape = _field_offset(layout, f)
        if mask.shape != shape:
            raise ValueError(f"gridded: mask of shape {mask.shape}, the grid is {shape}.")
        sel = offset + np.flatnonzero(mask.reshape(-1))
        idx.append(sel)
        out_fields += [f] * sel.size
    return Instrument(ax.Selection(np.concatenate(idx), layout.size), tuple(out_fields))


def every_nth(layout: ax.StateLayout, fields: Sequence[Field], n: int | tuple[int, int]) -> Instrument:
    """Every `n`-th point of each flattened field, or the sub-grid ``[::n_lat, ::n_lon]``."""
    name = fields[0][0]
    nlat, nlon = layout[name].shape[-2:]
    mask = np.zeros((nlat, nlon), bool)
    if isinstance(n, int):
        if n < 1:
            raise ValueError(f"every_nth needs n >= 1, got {n}.")
        mask.reshape(-1)[::n] = True
    else:
        mask[:: n[0], :: n[1]] = True
    return gridded(layout, fields, mask)


def coarsened(
    layout: ax.StateLayout, fields: Sequence[Field], block: tuple[int, int], drop_remainder: bool = False
) -> Instrument:
    """Means of each field over ``block = (b_lat, b_lon)`` blocks (each must divide the grid).

    With `drop_remainder`, latitude rows beyond the last whole block (at the north end:
    latitudes increase) are left out, e.g. the north-pole row of a 181-latitude grid with
    ``b_lat = 4``; `b_lon` must still divide the longitudes.
    """
    ops, out_fields = [], []
    for f in fields:
        offset, shape = _field_offset(layout, f)
        if drop_remainder:
            if shape[0] < block[0]:
                raise ValueError(f"coarsened: block {tuple(block)} is taller than the grid {shape}.")
            shape = (shape[0] - shape[0] % block[0], shape[1])  # the first rows are contiguous
        op = ax.BlockMean(shape, tuple(block), layout.size, offset)
        ops.append(op)
        out_fields += [f] * op.obs_size
    return Instrument(ax.Stack(ops) if len(ops) > 1 else ops[0], tuple(out_fields))


# The affine wrapper lives in the core (any model may report standardised observations).
Normalised = ax.Normalised


def _field_stat(stats: Statistics, field: Field) -> tuple[float, float]:
    name, level = field
    levels = (level,) if name in ALL_ATMOSPHERIC_VARS else None
    mean, std = stats.location_scale(name, levels)
    return float(mean[0]), float(std[0])


def observation_model(
    instruments: Sequence[Instrument],
    noise_std: Mapping[str, float] | float | np.ndarray,
    stats: Statistics | None = None,
    space: str = "normalised",
) -> tuple[ax.ObservationModel, tuple[Field, ...]]:
    """Stack `instruments` with diagonal noise `noise_std` (per variable name, one value, or
    one value per observation, in the units of `space`).

    `space`: ``"normalised"`` (observations ``(A x - mean) / std`` with `stats`, noise in
    those units) or ``"physical"`` (observations ``A x``, noise in physical units).
    Returns the model and the field of every observation.
    """
    if space not in ("normalised", "physical"):
        raise ValueError(f"space must be 'normalised' or 'physical', got {space!r}.")
    if not instruments:
        raise ValueError("observation_model needs at least one instrument.")
    fields = tuple(f for ins in instruments for f in ins.fields)
    ops = [ins.operator for ins in instruments]
    op = ax.Stack(ops) if len(ops) > 1 else ops[0]
    if isinstance(noise_std, np.ndarray):
        std = np.asarray(noise_std, np.float64).reshape(-1)
        if std.size != len(fields):
            raise ValueError(f"noise_std has {std.size} values for {len(fields)} observations.")
    else:
        std = np.array([noise_std if isinstance(noise_std, (int, float)) else noise_std[f[0]] for f in fields], np.float64)
    if space == "normalised":
        if stats is None:
            raise ValueError("Observations in normalised units need the statistics.")
        per_field = {f: _field_stat(stats, f) for f in dict.fromkeys(fields)}  # once per field
        loc_scale = np.array([per_field[f] for f in fields])
        op = Normalised(op, loc_scale[:, 0], loc_scale[:, 1])
    return ax.ObservationModel(op, ax.DiagonalGaussianNoise(std)), fields
