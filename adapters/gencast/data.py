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
            raise ValueError("prepare_dataset: a 'batch' axis must have size 1.")
        ds = ds.isel(batch=0)
    if "datetime" in ds.coords and not np.issubdtype(ds["time"].dtype, np.datetime64):
        ds = ds.assign_coords(time=np.asarray(ds["datetime"].values).reshape(-1)).drop_vars("datetime")
    for c in ("lat", "lon", "time"):
        if c not in ds.coords:
            raise ValueError(f"The dataset has no {c!r} coordinate (ERA5 layout expected).")
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        raise ValueError("The dataset's 'time' coordinate must be datetime64 valid times.")
    ds = ds.assign_coords(lon=np.mod(ds["lon"], 360.0)).sortby("lat").sortby("lon")
    if levels is not None and "level" in ds.dims:
        missing = sorted(set(levels) - set(int(v) for v in ds["level"].values))
        if missing:
            raise ValueError(f"The dataset lacks pressure level(s) {missing}.")
        ds = ds.sel(level=list(levels))
    return ds
