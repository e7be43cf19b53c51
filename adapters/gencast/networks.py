"""Observation networks: the reference experiment's scenarios and the user's own files.

Savary, Rozet & Louppe ("Training-Free Bayesian Filtering with Generative Emulators", ICML 2026,
arXiv 2605.20028) observe GenCast's 1-degree ERA5 states with three scenarios, which are the
presets of ``assimilax gencast --observations``:

- ``stations+satellite``: the 5 surface variables (``10m_u/v_component_of_wind``,
  ``2m_temperature``, ``mean_sea_level_pressure``, ``sea_surface_temperature``) at the 6,054
  grid points of a weather-station network (``mask_ws_1.npy``), and ``temperature`` on every
  pressure level at the 33,898 grid points of satellite swaths (``mask_sat_1.npy``); error
  variances per variable (``weather_stations.npy``) and per level (``satellite.npy``), in
  physical units;
- ``subsampling-4x4``: ``2m_temperature`` and ``temperature`` on all levels at every 4th
  latitude and longitude (``grid_4x4.npy``, 4,140 points), variances
  ``coarsening_4_temperature.npy``;
- ``coarsening-4x4``: the same 14 fields averaged over 4 x 4 blocks of grid points, same
  variances.  181 latitudes are 45 blocks of 4 plus the north-pole row, which is left out
  (a single point of the sphere): 45 x 90 = 4,050 block means per field.

The files come from the ``data/observations`` folder of the reference's code (github
ThomasSavary08/FA-APF) and are not redistributed here; [`reference_networks`][] reads them from a
folder in that layout (``mask/``, ``covariance/``, ``coords/``) or flat.

A user's network ([`network_from_file`][]) is a boolean ``(lat, lon)`` mask (``.npy``, or
``.nc`` with ``lat``/``lon`` coordinates), or station coordinates (a ``(p, 2)`` ``.npy`` of
latitude/longitude pairs, or a CSV of latitude, longitude columns; values are then bilinear
interpolations, see [`stations`][assimilax_adapters.gencast.observations.stations]), with
optional variances in physical units (a scalar, one per variable, or ``(n_variables, n_levels)``).

**Units.**  Variances are given in physical units (K^2, Pa^2, m^2 s^-2).  The filter works in the
space of the observation model: with ``space="normalised"`` an observation of field ``f`` is
``(A x - mean_f) / std_f`` (``mean_by_level``/``stddev_by_level``), so its noise standard
deviation is ``sqrt(variance) / std_f``; with ``space="physical"`` it is ``sqrt(variance)``.
"""

import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from jaxtyping import Bool, Float

import assimilax as ax

from .config import ALL_ATMOSPHERIC_VARS, PRESSURE_LEVELS_WEATHERBENCH_13
from .normalization import Statistics
from .observations import Field, Instrument, all_levels, coarsened, gridded, observation_model, stations

SURFACE_5 = (
    "10m_u_component_of_wind", "10m_v_component_of_wind", "2m_temperature",
    "mean_sea_level_pressure", "sea_surface_temperature",
)
PRESETS = ("stations+satellite", "subsampling-4x4", "coarsening-4x4")
KINDS = ("mask", "points", "blocks")


@dataclasses.dataclass(frozen=True)
class Network:
    """One instrument: where it observes, which variables (all levels of atmospheric ones),
    and its error variances in physical units.

    - ``kind="mask"``: the grid points where `mask` (``(n_lat, n_lon)`` booleans) is true;
    - ``kind="points"``: bilinear values at `points` (``(p, 2)`` latitude, longitude in degrees);
    - ``kind="blocks"``: means over `block` ``(b_lat, b_lon)`` grid points (a remainder of
      latitude rows at the north end is left out; `b_lon` must divide the longitudes).

    `variances`: ``None`` (the experiment's default noise, in the filter's units), a scalar,
    one value per variable, one per observed field, or one per field on `variance_levels`
    (default the 13 WeatherBench levels of the reference's files, e.g. ``(1, 13)``; selected
    by level for a state on fewer levels); physical units.
    """

    name: str
    kind: str
    variables: tuple[str, ...]
    mask: np.ndarray | None = None
    points: np.ndarray | None = None
    block: tuple[int, int] | None = None
    variances: np.ndarray | None = None
    variance_levels: tuple[int, ...] = PRESSURE_LEVELS_WEATHERBENCH_13

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"network {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}.")
        need = {"mask": self.mask, "points": self.points, "blocks": self.block}[self.kind]
        if need is None:
            what = {"mask": "mask", "points": "points", "blocks": "block"}[self.kind]
            raise ValueError(f"network {self.name!r} of kind {self.kind!r} needs its {what}.")
        if not self.variables:
            raise ValueError(f"network {self.name!r} observes no variable.")
        if self.points is not None and (np.ndim(self.points) != 2 or np.shape(self.points)[1] != 2):
            raise ValueError(f"network {self.name!r}: points must be (p, 2) latitude/longitude, got {np.shape(self.points)}.")

    def fields(self, layout: ax.StateLayout) -> list[Field]:
        """The observed fields ``(variable, level)`` on the state `layout`, in order."""
        unknown = [v for v in self.variables if v not in layout.names]
        if unknown:
            raise ValueError(
                f"network {self.name!r} observes {unknown}, which are not target variables "
                f"({list(layout.names)})."
            )
        return [f for v in self.variables for f in all_levels(layout, v)]

    def instrument(self, layout: ax.StateLayout) -> Instrument:
        """The observation operator of the network on the state `layout`."""
        fields = self.fields(layout)
        if self.kind == "mask":
            return gridded(layout, fields, self.mask)
        if self.kind == "points":
            return stations(layout, fields, self.points[:, 0], self.points[:, 1])
        return coarsened(layout, fields, self.block, drop_remainder=True)

    def field_variances(self, layout: ax.StateLayout) -> np.ndarray | None:
        """The variance of each observed field (physical units), or ``None``."""
        if self.variances is None:
            return None
        v = np.asarray(self.variances, np.float64)
        fields = self.fields(layout)
        # Per field over the variance file's levels (the reference's: the 13 WeatherBench ones).
        file_fields = [
            (name, lv) for name in self.variables
            for lv in (self.variance_levels if name in ALL_ATMOSPHERIC_VARS else (None,))
        ]
        if v.ndim == 0:
            out = np.full(len(fields), float(v))
        elif v.size == len(fields):
            out = v.reshape(-1)
        elif v.ndim == 1 and v.size == len(self.variables):
            out = np.array([v[self.variables.index(name)] for name, _ in fields])
        elif v.size == len(file_fields) and set(fields) <= set(file_fields):
            by_field = dict(zip(file_fields, v.reshape(-1)))
            out = np.array([by_field[f] for f in fields])
        else:
            raise ValueError(
                f"network {self.name!r}: {v.shape} variances for {len(self.variables)} variables "
                f"({len(fields)} fields); give a scalar, one per variable, one per field, or one per "
                f"field on the levels {self.variance_levels}."
            )
        if not np.all(np.isfinite(out) & (out > 0)):
            raise ValueError(f"network {self.name!r}: variances must be positive, got {out}.")
        return out


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


def _find(folder: Path, name: str) -> Path:
    for sub in ("", "mask", "covariance", "coords"):
        path = folder / sub / name
        if path.exists():
            return path
    raise FileNotFoundError(
        f"{name!r} not found in {str(folder)!r} (nor in its mask/, covariance/, coords/ "
        "subfolders): the reference experiment's data/observations folder is expected."
    )


def reference_networks(preset: str, folder: "str | Path") -> list[Network]:
    """The networks of a reference scenario (`preset` in `PRESETS`) from the files in `folder`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown observation preset {preset!r}; choose from {list(PRESETS)}.")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"observation folder {str(folder)!r} does not exist.")
    load = lambda name: np.load(_find(folder, name))  # noqa: E731
    if preset == "stations+satellite":
        return [
            Network("stations", "mask", SURFACE_5, mask=load("mask_ws_1.npy") > 0,
                    variances=load("weather_stations.npy")),
            Network("satellite", "mask", ("temperature",), mask=load("mask_sat_1.npy") > 0,
                    variances=load("satellite.npy")),
        ]
    variables = ("2m_temperature", "temperature")
    variances = load("coarsening_4_temperature.npy")
    if preset == "subsampling-4x4":
        return [Network("subsampling-4x4", "mask", variables, mask=load("grid_4x4.npy") > 0, variances=variances)]
    return [Network("coarsening-4x4", "blocks", variables, block=(4, 4), variances=variances)]


def load_mask(path: "str | Path") -> Bool[np.ndarray, "n_lat n_lon"]:
    """A boolean ``(lat, lon)`` mask from ``.npy`` (in the grid's order: latitude increasing)
    or ``.nc`` (one data variable on ``lat``/``lon``, or ``latitude``/``longitude``; sorted
    to increasing latitude and longitude in [0, 360))."""
    path = Path(path)
    if path.suffix == ".npy":
        mask = np.load(path)
    elif path.suffix == ".nc":
        ds = xr.open_dataset(path)
        ds = ds.rename({a: b for a, b in (("latitude", "lat"), ("longitude", "lon")) if a in ds.dims})
        names = [n for n, v in ds.data_vars.items() if set(v.dims) == {"lat", "lon"}]
        if len(names) != 1:
            raise ValueError(f"{str(path)!r}: expected one (lat, lon) variable, found {names or list(ds.data_vars)}.")
        da = ds[names[0]].assign_coords(lon=np.mod(ds["lon"], 360.0)).sortby("lat").sortby("lon")
        mask = np.asarray(da.transpose("lat", "lon").values)
    else:
        raise ValueError(f"{str(path)!r}: a mask must be a .npy or .nc file.")
    if mask.ndim != 2:
        raise ValueError(f"{str(path)!r}: a mask must be 2-D (lat, lon), got shape {mask.shape}.")
    if not np.all(np.isin(mask, (0, 1))):
        raise ValueError(f"{str(path)!r}: a mask must hold 0/1 or booleans.")
    return mask.astype(bool)


def load_points(path: "str | Path") -> Float[np.ndarray, "p 2"]:
    """Station ``(latitude, longitude)`` pairs from a ``(p, 2)`` ``.npy`` or a CSV file (two
    columns, latitude first, or columns named ``lat``/``latitude`` and ``lon``/``longitude``)."""
    path = Path(path)
    if path.suffix == ".npy":
        points = np.asarray(np.load(path), np.float64)
    elif path.suffix == ".csv":
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and not r[0].lstrip().startswith("#")]
        header = [c.strip().lower() for c in rows[0]] if rows else []
        try:
            [float(c) for c in header[:2]]
            cols, body = (0, 1), rows
        except ValueError:
            find = lambda names: next((i for i, c in enumerate(header) if c in names), None)  # noqa: E731
            cols = (find(("lat", "latitude")), find(("lon", "longitude")))
            if None in cols:
                raise ValueError(f"{str(path)!r}: columns lat/latitude and lon/longitude not found in {header}.") from None
            body = rows[1:]
        points = np.array([[float(r[cols[0]]), float(r[cols[1]])] for r in body], np.float64)
    else:
        raise ValueError(f"{str(path)!r}: station coordinates must be a .npy or .csv file.")
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
        raise ValueError(f"{str(path)!r}: expected (p, 2) latitude/longitude pairs, got shape {points.shape}.")
    if np.any(np.abs(points[:, 0]) > 90):
        raise ValueError(f"{str(path)!r}: latitudes must lie in [-90, 90].")
    return points


def load_variances(path: "str | Path") -> np.ndarray:
    """Error variances (physical units) from ``.npy``, ``.nc`` (one data variable) or a CSV of numbers."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.asarray(np.load(path), np.float64)
    if path.suffix == ".nc":
        ds = xr.open_dataset(path)
        if len(ds.data_vars) != 1:
            raise ValueError(f"{str(path)!r}: expected one data variable of variances, found {list(ds.data_vars)}.")
        return np.asarray(next(iter(ds.data_vars.values())).values, np.float64)
    if path.suffix == ".csv":
        return np.loadtxt(path, delimiter=",", ndmin=1)
    raise ValueError(f"{str(path)!r}: variances must be a .npy, .nc or .csv file.")


def network_from_file(
    path: "str | Path", variables: Sequence[str], variances: "str | Path | float | None" = None
) -> Network:
    """A user's network: a mask (``.npy``/``.nc``) or station coordinates (``(p, 2)`` ``.npy``,
    ``.csv``) observing `variables`, with `variances` (a file, a number or ``None``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"observation network file {str(path)!r} does not exist.")
    if path.suffix == ".csv":
        kind, data = "points", load_points(path)
    elif path.suffix == ".npy" and np.load(path).ndim == 2 and np.load(path).shape[1] == 2 and not np.all(np.isin(np.load(path), (0, 1))):
        kind, data = "points", load_points(path)
    else:
        kind, data = "mask", load_mask(path)
    if isinstance(variances, (str, Path)):
        variances = load_variances(variances)
    elif variances is not None:
        variances = np.asarray(float(variances))
    return Network(path.stem, kind, tuple(variables), mask=data if kind == "mask" else None,
                   points=data if kind == "points" else None, variances=variances)


# ---------------------------------------------------------------------------------------
# Grids and the observation model
# ---------------------------------------------------------------------------------------


def regrid_mask(
    mask: Bool[np.ndarray, "m_lat m_lon"], lat: Float[np.ndarray, " n_lat"], lon: Float[np.ndarray, " n_lon"]
) -> Bool[np.ndarray, "n_lat n_lon"]:
    """A mask on the equiangular grid with poles (``m_lat`` latitudes -90..90, ``m_lon``
    longitudes from 0) moved to the grid ``lat x lon``: a target point is observed if an
    observed source point is nearer to it than to any other target point (nearest latitude,
    nearest periodic longitude).  For running a 1-degree network on a test grid."""
    mask = np.asarray(mask, bool)
    src_lat = np.linspace(-90.0, 90.0, mask.shape[0])
    src_lon = np.arange(mask.shape[1]) * (360.0 / mask.shape[1])
    i, j = np.nonzero(mask)
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    ti = np.abs(src_lat[i][:, None] - lat[None, :]).argmin(1)
    dlon = np.abs(np.mod(src_lon[j][:, None] - lon[None, :] + 180.0, 360.0) - 180.0)
    out = np.zeros((lat.size, lon.size), bool)
    out[ti, dlon.argmin(1)] = True
    return out


def regrid_network(network: Network, lat: np.ndarray, lon: np.ndarray) -> Network:
    """`network` with its mask moved to the grid ``lat x lon`` ([`regrid_mask`][]); others as they are."""
    if network.kind != "mask" or network.mask.shape == (len(lat), len(lon)):
        return network
    return dataclasses.replace(network, mask=regrid_mask(network.mask, lat, lon))


def _field_std(stats: Statistics, field: Field) -> float:
    name, level = field
    _, std = stats.location_scale(name, (level,) if name in ALL_ATMOSPHERIC_VARS else None)
    return float(std[0])


def network_observation_model(
    networks: Sequence[Network],
    layout: ax.StateLayout,
    stats: Statistics | None,
    space: str = "normalised",
    default_std: float = 0.1,
) -> tuple[ax.ObservationModel, tuple[Field, ...]]:
    """Stack the `networks` into one observation model on `layout`, noise converted to `space`.

    Per observation of field ``f``: noise standard deviation ``sqrt(var_f) / std_f`` in
    normalised units, ``sqrt(var_f)`` in physical units, or `default_std` (already in the
    units of `space`) for a network without variances.
    """
    if not networks:
        raise ValueError("network_observation_model needs at least one network.")
    instruments, stds = [], []
    for net in networks:
        ins = net.instrument(layout)
        var = net.field_variances(layout)
        fields = net.fields(layout)
        if var is None:
            per_field = {f: default_std for f in fields}
        elif space == "normalised":
            if stats is None:
                raise ValueError("Variances in physical units need the statistics to convert them to normalised units.")
            per_field = {f: float(np.sqrt(v)) / _field_std(stats, f) for f, v in zip(fields, var)}
        else:
            per_field = {f: float(np.sqrt(v)) for f, v in zip(fields, var)}
        instruments.append(ins)
        stds.append(np.array([per_field[f] for f in ins.fields]))
    return observation_model(instruments, np.concatenate(stds), stats, space)
