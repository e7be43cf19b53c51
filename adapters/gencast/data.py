"""ERA5-layout data for GenCast: derived forcings and the time windows of one transition.

GenCast's forcings are computed from the valid time (the reference's ``data_utils``):

- ``year_progress = mod(seconds / 86400 / 365.24219, 1)`` (one value per time),
- ``day_progress = mod(mod(seconds, 86400) / 86400 + lon_radians / (2 pi), 1)`` (per time
  and longitude: local solar time),

each entering as ``sin(2 pi p)`` and ``cos(2 pi p)``, computed in float32 like the
reference.  Times are ``datetime64`` (seconds since the UNIX epoch).  One transition
``x[k+1] ~ p(. | x[k-1], x[k])`` needs the forcings at the three times ``k-1, k, k+1``
(``input_duration = 24h``, 12 h steps); [`transition_forcings`][] returns them as a dict
``name -> (n_cycles, 3, 1 or n_lat, 1 or n_lon)`` ready for the filters' ``forcings``.

The expected dataset layout is WeatherBench/ERA5's: coordinates ``time`` (datetime64),
``lat`` (degrees, increasing), ``lon`` (degrees east), ``level`` (hPa); dimensions
``(time, lat, lon)`` for surface variables, ``(time, level, lat, lon)`` for atmospheric
ones, ``(lat, lon)`` for static fields.  [`prepare_dataset`][] normalises names and order.
"""

from collections.abc import Sequence

import numpy as np
import xarray as xr

from assimilax.errors import FileFormatError, InvalidData

SEC_PER_DAY = 86400
AVG_DAY_PER_YEAR = 365.24219
YEAR_PROGRESS = ("year_progress_sin", "year_progress_cos")
DAY_PROGRESS = ("day_progress_sin", "day_progress_cos")
STEP = np.timedelta64(12, "h")


def seconds_since_epoch(times) -> np.ndarray:
    """``datetime64`` values -> integer seconds since 1970-01-01."""
    return np.asarray(times).astype("datetime64[s]").astype(np.int64)


def year_progress(seconds: np.ndarray) -> np.ndarray:
    """Fraction of the (mean tropical) year elapsed, in ``[0, 1)``, float32."""
    years = np.asarray(seconds) / SEC_PER_DAY / np.float64(AVG_DAY_PER_YEAR)
    return np.mod(years, 1.0).astype(np.float32)


def day_progress(seconds: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Local fraction of the day, ``(n_times, n_lon)``, in ``[0, 1)``, float32."""
    greenwich = np.mod(np.asarray(seconds), SEC_PER_DAY) / SEC_PER_DAY
    offsets = np.deg2rad(np.asarray(lon)) / (2 * np.pi)
    return np.mod(greenwich[..., None] + offsets, 1.0).astype(np.float32)


def progress_features(times, lon: np.ndarray) -> dict[str, np.ndarray]:
    """``{year_progress_sin/cos: (T,), day_progress_sin/cos: (T, n_lon)}`` at `times`."""
    s = seconds_since_epoch(times)
    out = {}
    for names, p in ((YEAR_PROGRESS, year_progress(s)), (DAY_PROGRESS, day_progress(s, lon))):
        phase = p * (2 * np.pi)
        out[names[0]] = np.sin(phase)
        out[names[1]] = np.cos(phase)
    return out


def forcing_fields(names: Sequence[str], times, lat: np.ndarray, lon: np.ndarray, dataset: xr.Dataset | None = None) -> dict[str, np.ndarray]:
    """Forcings `names` at `times`, each ``(T, 1 or n_lat, 1 or n_lon)`` (broadcastable to
    the grid).  Derived progress features are computed; any other forcing (e.g.
    ``toa_incident_solar_radiation``) is read from `dataset`."""
    derived = progress_features(times, lon)
    out = {}
    for name in names:
        if name in YEAR_PROGRESS:
            out[name] = derived[name][:, None, None]
        elif name in DAY_PROGRESS:
            out[name] = derived[name][:, None, :]
        elif dataset is not None and name in dataset.data_vars:
            da = dataset[name].sel(time=np.asarray(times)).transpose("time", "lat", "lon")
            out[name] = np.asarray(da.values, np.float32)
        else:
            raise ValueError(
                f"Forcing {name!r} is neither a derived progress feature nor in the dataset."
            )
    return out


def transition_forcings(names: Sequence[str], target_times, lat, lon, dataset: xr.Dataset | None = None) -> dict[str, np.ndarray]:
    """Forcings of the transitions to each of `target_times`: ``name -> (C, 3, ., .)`` at the
    times ``t - 24h, t - 12h, t`` (the two inputs and the target)."""
    target_times = np.asarray(target_times).astype("datetime64[ns]")
    windows = np.stack([target_times - 2 * STEP, target_times - STEP, target_times], axis=1)
    flat = forcing_fields(names, windows.reshape(-1), lat, lon, dataset)
    return {k: v.reshape(windows.shape + v.shape[1:]) for k, v in flat.items()}


def prepare_dataset(ds: xr.Dataset, levels: Sequence[int] | None = None) -> xr.Dataset:
    """ERA5/WeatherBench layout: ``latitude/longitude`` renamed ``lat/lon``, latitude
    increasing, longitudes in ``[0, 360)`` sorted, the model's pressure levels selected,
    and a leading ``batch`` axis of size one dropped."""
    ren = {a: b for a, b in (("latitude", "lat"), ("longitude", "lon")) if a in ds.dims or a in ds.coords}
    ds = ds.rename(ren)
    if "batch" in ds.dims:
        if ds.sizes["batch"] != 1:
            raise InvalidData("prepare_dataset: a 'batch' axis must have size 1.")
        ds = ds.isel(batch=0)
    if "datetime" in ds.coords and not np.issubdtype(ds["time"].dtype, np.datetime64):
        ds = ds.assign_coords(time=np.asarray(ds["datetime"].values).reshape(-1)).drop_vars("datetime")
    for c in ("lat", "lon", "time"):
        if c not in ds.coords:
            raise InvalidData(f"The dataset has no {c!r} coordinate (ERA5 layout expected).")
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        raise InvalidData("The dataset's 'time' coordinate must be datetime64 valid times.")
    ds = ds.assign_coords(lon=np.mod(ds["lon"], 360.0)).sortby("lat").sortby("lon")
    if levels is not None and "level" in ds.dims:
        missing = sorted(set(levels) - set(int(v) for v in ds["level"].values))
        if missing:
            raise InvalidData(f"The dataset lacks pressure level(s) {missing}.")
        ds = ds.sel(level=list(levels))
    return ds


def truth_variables(task) -> dict[str, tuple[str, ...]]:
    """The variables a truth must hold for `task` (a `TaskConfig`), with the dimensions each
    needs besides ``time``: targets (the state), static inputs and forcings that are not
    derived from the time."""
    from .config import ALL_ATMOSPHERIC_VARS

    derived = set(YEAR_PROGRESS + DAY_PROGRESS)
    names = list(task.target_variables)
    names += [v for v in task.input_variables if v not in names and v not in task.forcing_variables]
    names += [v for v in task.forcing_variables if v not in names and v not in derived]
    return {v: ("level", "lat", "lon") if v in ALL_ATMOSPHERIC_VARS else ("lat", "lon") for v in names}


def check_truth(ds: xr.Dataset, task, path: str) -> None:
    """Refuse a truth (the Dataset read from `path`) that lacks what `task` needs: the
    coordinates ``time`` (datetime64), ``lat``, ``lon`` (``latitude``/``longitude`` accepted)
    and ``level`` (hPa, with every pressure level of the task), and every variable of
    [`truth_variables`][] with its dimensions.  Raises one
    [`FileFormatError`][assimilax.errors.FileFormatError] naming the file and every problem."""
    names = {a: b for a, b in (("latitude", "lat"), ("longitude", "lon"))}
    coords = {names.get(c, c) for c in ds.coords}
    problems = []
    needed = truth_variables(task)
    atmospheric = any("level" in dims for dims in needed.values())
    lacking = [c for c in ("time", "lat", "lon") + (("level",) if atmospheric else ()) if c not in coords]
    if lacking:
        problems.append(f"no coordinate(s) {lacking} (ERA5 layout: time, lat, lon, level)")
    if "time" in ds.coords and not np.issubdtype(ds["time"].dtype, np.datetime64) and "datetime" not in ds.coords:
        problems.append(f"the 'time' coordinate holds {ds['time'].dtype}, not datetime64 valid times")
    if atmospheric and "level" in ds.coords:
        try:
            have = set(int(v) for v in np.asarray(ds["level"].values).reshape(-1))
        except (TypeError, ValueError):
            have = set()
        missing = sorted(set(int(v) for v in task.pressure_levels) - have)
        if missing:
            problems.append(f"the 'level' coordinate lacks the pressure level(s) {missing} hPa of the checkpoint's task")
    absent = [v for v in needed if v not in ds.data_vars]
    if absent:
        problems.append(f"no variable(s) {absent}, which the checkpoint's task needs")
    for v, dims in needed.items():
        if v in ds.data_vars:
            have_dims = {names.get(d, d) for d in ds[v].dims}
            short = [d for d in dims if d not in have_dims]
            if short:
                problems.append(f"the variable {v!r} has dimensions {tuple(ds[v].dims)}, without {short}")
    if problems:
        raise FileFormatError(path, "not a GenCast truth: " + "; ".join(problems) + ".")


def check_times(times, path: str, needed: int) -> None:
    """Refuse truth `times` (from the file `path`) fewer than `needed` or not 12 h apart."""
    times = np.asarray(times)
    if times.size < needed:
        raise FileFormatError(
            path, f"the truth has {times.size} time(s) from the start; {needed} are needed "
            "(the two times of the initial history, then one per cycle)."
        )
    steps = np.diff(times).astype("timedelta64[m]").astype(np.int64)
    bad = np.flatnonzero(steps != 12 * 60)
    if bad.size:
        i = int(bad[0])
        raise FileFormatError(
            path, f"the truth's times must be 12 h apart (GenCast's step): "
            f"{np.datetime_as_string(times[i], unit='m')} to {np.datetime_as_string(times[i + 1], unit='m')} "
            f"is {steps[i] / 60:g} h."
        )


# ---------------------------------------------------------------------------------------
# ERA5 (WeatherBench 2 / ARCO-ERA5 layout) -> GenCast inputs
# ---------------------------------------------------------------------------------------

PRECIPITATION_12H = "total_precipitation_12hr"
_ACCUMULATIONS = {"total_precipitation": 1, "total_precipitation_1hr": 1, "total_precipitation_6hr": 6}


def era5_to_gencast(
    ds: xr.Dataset,
    *,
    stride: int = 1,
    levels: Sequence[int] | None = None,
    variables: Sequence[str] | None = None,
) -> xr.Dataset:
    """ERA5 fields as WeatherBench 2 / ARCO-ERA5 store them -> GenCast's inputs, lazily.

    - coordinates renamed and sorted as [`prepare_dataset`][] does (``lat`` increasing from
      -90, ``lon`` in ``[0, 360)``); ``stride`` keeps every `stride`-th latitude and longitude
      (``stride=4`` turns the 0.25-degree grid, 721 x 1440, into GenCast's 1-degree grid, 181 x
      360, which contains the poles and longitude 0);
    - ``total_precipitation_12hr`` (m), the accumulation over the 12 hours ending at each
      valid time ``t``, from hourly ``total_precipitation`` (ARCO-ERA5: each value the hour
      ending at its time, so ``sum_{h=0}^{11} tp(t - h)``) or from
      ``total_precipitation_6hr`` (``tp6(t) + tp6(t - 6h)``), unless already present;
    - the valid times at 00 and 12 UTC that have a full 12-hour window;
    - ``sea_surface_temperature`` NaN where ERA5 has no sea value (land: NaN or a
      non-physical value <= 0 K in the file); GenCast fills it with ``min_by_level`` itself;
    - static fields (``land_sea_mask``, ``geopotential_at_surface``) without a time axis;
    - `levels` (hPa) selected by value, and only `variables` (with the static fields and the
      precipitation they need) kept when given.

    Nothing is loaded: the result stays backed by the source files, and the accumulation is
    computed on the selected times only.
    """
    if stride < 1:
        raise ValueError(f"era5_to_gencast: stride must be a positive integer, got {stride}.")
    ren = {a: b for a, b in (("latitude", "lat"), ("longitude", "lon")) if a in ds.dims or a in ds.coords}
    ds = ds.rename(ren)
    for c in ("lat", "lon", "time"):
        if c not in ds.coords:
            raise ValueError(f"era5_to_gencast: the dataset has no {c!r} coordinate.")
    ds = ds.assign_coords(lon=np.mod(ds["lon"], 360.0)).sortby("lat").sortby("lon")
    ds = ds.isel(lat=slice(None, None, stride), lon=slice(None, None, stride))
    if levels is not None and "level" in ds.dims:
        missing = sorted(set(levels) - set(int(v) for v in ds["level"].values))
        if missing:
            raise ValueError(f"era5_to_gencast: the dataset lacks pressure level(s) {missing}.")
        ds = ds.sel(level=list(levels))

    times = ds["time"].values.astype("datetime64[h]")
    hours = times.astype(np.int64) % 24
    source = next((n for n in _ACCUMULATIONS if n in ds.data_vars), None) if PRECIPITATION_12H not in ds else None
    start = times[0] + np.timedelta64(12 - (_ACCUMULATIONS[source] if source else 12), "h")
    keep = np.flatnonzero(((hours == 0) | (hours == 12)) & (times >= start))
    if keep.size == 0:
        raise ValueError("era5_to_gencast: no valid time at 00 or 12 UTC with 12 hours of data before it.")
    valid = ds["time"].values[keep]

    out = {}
    if source is not None:
        step = _ACCUMULATIONS[source]
        lags = [np.asarray(valid) - np.timedelta64(h, "h") for h in range(0, 12, step)]
        tp = ds[source]
        missing = sorted(set(np.concatenate(lags).astype("datetime64[h]").tolist()) - set(times.tolist()))
        if missing:
            raise ValueError(f"era5_to_gencast: {source} lacks the times {missing[:3]}... of the 12-hour sums.")
        total = sum(tp.sel(time=lag).assign_coords(time=valid) for lag in lags)
        out[PRECIPITATION_12H] = total.astype(tp.dtype).assign_attrs(
            long_name="total precipitation over the 12 hours ending at the valid time", units="m")
    for name, da in ds.data_vars.items():
        if name in _ACCUMULATIONS:
            continue
        if name in ("land_sea_mask", "geopotential_at_surface"):
            out[name] = da.isel(time=0, drop=True) if "time" in da.dims else da
        elif "time" in da.dims:
            out[name] = da.sel(time=valid)
    if "sea_surface_temperature" in out:
        sst = out["sea_surface_temperature"]
        out["sea_surface_temperature"] = sst.where(sst > 0)
    result = xr.Dataset(out)
    if variables is not None:
        wanted = set(variables) | {"land_sea_mask", "geopotential_at_surface"}
        absent = sorted(set(variables) - set(result.data_vars))
        if absent:
            raise ValueError(f"era5_to_gencast: the dataset lacks {absent} (it has {sorted(result.data_vars)}).")
        result = result[[n for n in result.data_vars if n in wanted]]
    return result
