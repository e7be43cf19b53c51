"""GenCast's normalisation statistics and its residual target map.

DeepMind publishes four NetCDF files next to the checkpoints (bucket ``dm_graphcast``,
``gencast/stats/``).  Each is an xarray Dataset with one data variable per ERA5 / derived
variable: a scalar for surface, static and forcing variables, a ``level`` vector (hPa, a
superset of the model's pressure levels, selected by value) for atmospheric ones.

- ``mean_by_level.nc`` and ``stddev_by_level.nc``: location and scale of the values;
- ``diffs_stddev_by_level.nc``: scale of the 12 h differences ``x[k+1] - x[k]``;
- ``min_by_level.nc``: minima, used to fill NaN sea-surface temperature over land.

The maps are those of the reference's ``normalization.InputsAndResiduals`` wrapped by
``nan_cleaning.NaNCleaner`` (see the GenCast demo notebook):

- inputs and forcings: ``(x - mean) / std`` (a variable absent from the statistics is left
  as it is, as in the reference);
- a target that is also an input (every GenCast target except ``total_precipitation_12hr``)
  is predicted as the normalised residual ``z = (x[k+1] - x[k]) / diffs_std``, so
  ``x[k+1] = x[k] + diffs_std z``;
- a target that is not an input is predicted directly: ``x[k+1] = mean + std z``;
- NaN in ``sea_surface_temperature`` (land) is replaced by ``min_by_level`` before
  normalising, and the prediction is set back to NaN where any input time was NaN.
"""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from assimilax.errors import FileFormatError, InvalidData

from ._files import MissingFile, load_netcdf

FILES = {
    "mean": "mean_by_level.nc",
    "std": "stddev_by_level.nc",
    "diffs_std": "diffs_stddev_by_level.nc",
    "minimum": "min_by_level.nc",
}
NAN_VARIABLE = "sea_surface_temperature"


_POSITIVE = ("std", "diffs_std")  # scales: finite and > 0; locations and minima: finite


def _check_values(path: Path, key: str, ds: xr.Dataset) -> None:
    """Refuse a non-finite statistic, or a scale (std, diffs std) that is not positive."""
    for name, da in ds.data_vars.items():
        values = np.asarray(da.values)
        if values.dtype.kind not in "fiu":
            continue
        bad = ~np.isfinite(values) | ((values <= 0) if key in _POSITIVE else False)
        if not np.any(bad):
            continue
        index = np.unravel_index(int(np.flatnonzero(bad)[0]), values.shape) if values.ndim else ()
        at = ""
        if "level" in da.dims and "level" in da.coords:
            at = f" at level {int(da['level'].values[index[da.dims.index('level')]])}"
        value = float(values[index])
        kind = {"std": "standard deviation", "diffs_std": "standard deviation of the 12 h differences",
                "minimum": "minimum"}.get(key, "mean")
        must = "finite and positive" if key in _POSITIVE else "finite"
        raise FileFormatError(path, f"the {kind} of {name!r}{at} is {value!r}: it must be {must}.")


class Statistics:
    """The four statistics Datasets (``minimum`` may be ``None``).

    Load them with [`Statistics.from_dir`][]; query per-variable vectors with [`mean`][],
    [`std`][], [`diffs_std`][] and [`fill_value`][].
    """

    def __init__(
        self,
        mean: xr.Dataset,
        std: xr.Dataset,
        diffs_std: xr.Dataset,
        minimum: xr.Dataset | None = None,
    ):
        self.mean_ds, self.std_ds, self.diffs_std_ds, self.minimum_ds = mean, std, diffs_std, minimum

    @classmethod
    def from_dir(
        cls,
        path: "str | os.PathLike",
        *,
        mean: str = FILES["mean"],
        std: str = FILES["std"],
        diffs_std: str = FILES["diffs_std"],
        minimum: str | None = FILES["minimum"],
    ) -> "Statistics":
        """Read the four statistics files from the folder `path`.

        File names default to the official ones (``mean_by_level.nc``, ``stddev_by_level.nc``,
        ``diffs_stddev_by_level.nc``, ``min_by_level.nc``); pass others by keyword.  The
        minimum file is optional under its default name (it is only needed to fill NaN SST),
        required when named explicitly; ``minimum=None`` skips it.  Any number of pressure
        levels (the official 37, the 13 of WeatherBench) is accepted: levels are selected by
        value.
        """
        path = Path(path)
        if not path.is_dir():
            raise MissingFile(path, "the GenCast statistics folder does not exist.")
        names = {"mean": mean, "std": std, "diffs_std": diffs_std, "minimum": minimum}
        optional = {"minimum"} if minimum == FILES["minimum"] else set()
        missing = [
            f"{key}: {name}" for key, name in names.items()
            if name is not None and key not in optional and not (path / name).exists()
        ]
        if missing:
            raise MissingFile(
                path, f"GenCast statistics file(s) {missing} missing from the folder "
                f"(official names: {sorted(FILES.values())}; the minimum file is optional)."
            )
        loaded, paths = {}, {}
        for key, name in names.items():
            f = None if name is None else path / name
            if f is not None and f.exists():
                loaded[key] = load_netcdf(f, f"GenCast statistics file ({key})")
                _check_values(f, key, loaded[key])
                paths[key] = f
            else:
                loaded[key] = None
        stats = cls(**loaded)
        stats.paths = paths
        return stats

    paths: dict[str, Path] = {}  # the file of each statistic read by `from_dir`

    def check_task(self, task) -> None:
        """Refuse statistics that lack what the task (a `TaskConfig`) needs, naming the file,
        the variable and the levels: the mean and std of every input and forcing, the diffs
        std of every target that is an input, the mean and std of the other targets."""
        need: dict[str, set[str]] = {"mean": set(), "std": set(), "diffs_std": set()}
        inputs = set(task.input_variables)
        for name in task.input_variables:
            need["mean"].add(name)
            need["std"].add(name)
        for name in task.target_variables:
            if name in inputs:
                need["diffs_std"].add(name)
            else:
                need["mean"].add(name)
                need["std"].add(name)
        levels = [int(v) for v in task.pressure_levels]
        datasets = {"mean": self.mean_ds, "std": self.std_ds, "diffs_std": self.diffs_std_ds}
        for key, names in need.items():
            ds = datasets[key]
            where = self.paths.get(key, FILES[key])
            absent = sorted(n for n in names if ds is None or n not in ds.data_vars)
            if absent:
                raise FileFormatError(
                    where, f"the statistics lack the variable(s) {absent} that the checkpoint's task needs "
                    f"(its {'inputs' if key != 'diffs_std' else 'residual targets'})."
                )
            for name in sorted(names):
                da = ds[name]
                if "level" in da.dims:
                    have = set(int(v) for v in da["level"].values)
                    lacking = sorted(set(levels) - have)
                    if lacking:
                        raise FileFormatError(
                            where, f"{name!r} lacks the pressure level(s) {lacking} hPa of the checkpoint's task."
                        )


    def _vector(self, ds: xr.Dataset | None, name: str, levels: Sequence[int] | None) -> np.ndarray | None:
        if ds is None or name not in ds.data_vars:
            return None
        da = ds[name]
        if "level" in da.dims:
            if levels is None:
                raise InvalidData(f"Statistics of {name!r} are per level: give the pressure levels.")
            missing = sorted(set(levels) - set(int(v) for v in da["level"].values))
            if missing:
                raise InvalidData(f"Statistics of {name!r} lack pressure level(s) {missing}.")
            return np.asarray(da.sel(level=list(levels)).values, np.float64).reshape(-1)
        return np.asarray(da.values, np.float64).reshape(1)

    def mean(self, name: str, levels: Sequence[int] | None = None) -> np.ndarray | None:
        """Mean of `name` (``(n_levels,)`` or ``(1,)``), ``None`` if absent."""
        return self._vector(self.mean_ds, name, levels)

    def std(self, name: str, levels: Sequence[int] | None = None) -> np.ndarray | None:
        """Standard deviation of `name`, ``None`` if absent."""
        return self._vector(self.std_ds, name, levels)

    def diffs_std(self, name: str, levels: Sequence[int] | None = None) -> np.ndarray | None:
        """Standard deviation of the 12 h differences of `name`, ``None`` if absent."""
        return self._vector(self.diffs_std_ds, name, levels)

    def fill_value(self, name: str, levels: Sequence[int] | None = None) -> np.ndarray:
        """The NaN fill value of `name` (its minimum); raises if ``min_by_level.nc`` lacks it."""
        v = self._vector(self.minimum_ds, name, levels)
        if v is None:
            raise InvalidData(
                f"{name!r} has NaN values to fill but min_by_level.nc is missing or lacks it."
            )
        return v

    def location_scale(self, name: str, levels: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` for inputs, with ``(0, 1)`` where a statistic is absent."""
        m, s = self.mean(name, levels), self.std(name, levels)
        n = len(levels) if levels is not None and self._has_levels(name) else 1
        return (np.zeros(n) if m is None else m), (np.ones(n) if s is None else s)

    def _has_levels(self, name: str) -> bool:
        return any(
            ds is not None and name in ds.data_vars and "level" in ds[name].dims
            for ds in (self.mean_ds, self.std_ds, self.diffs_std_ds)
        )

    def target_map(
        self, name: str, levels: Sequence[int] | None, is_input: bool
    ) -> tuple[bool, np.ndarray, np.ndarray]:
        """``(residual, offset, scale)`` of target `name`: ``x[k+1] = offset + scale z``
        (plus ``x[k]`` when ``residual``)."""
        if is_input:
            s = self.diffs_std(name, levels)
            if s is None:
                raise InvalidData(f"diffs_stddev_by_level.nc lacks the residual target {name!r}.")
            return True, np.zeros_like(s), s
        m, s = self.mean(name, levels), self.std(name, levels)
        if m is None or s is None:
            raise InvalidData(f"mean/stddev_by_level.nc lack the target {name!r}.")
        return False, m, s


# ---------------------------------------------------------------------------------------
# xarray forms (the reference's functions, for one Dataset at a time)
# ---------------------------------------------------------------------------------------


def _sel_levels(stat: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    if "level" in stat.dims and "level" in like.coords:
        stat = stat.sel(level=like["level"].values)
    return stat


def normalize(values: xr.Dataset, scales: xr.Dataset, locations: xr.Dataset | None) -> xr.Dataset:
    """``(x - location) / scale`` per variable; variables without statistics are unchanged."""
    out = {}
    for name, da in values.data_vars.items():
        if locations is not None and name in locations:
            da = da - _sel_levels(locations[name], da).astype(da.dtype)
        if name in scales:
            da = da / _sel_levels(scales[name], da).astype(da.dtype)
        out[name] = da
    return values.assign(out)


def unnormalize(values: xr.Dataset, scales: xr.Dataset, locations: xr.Dataset | None) -> xr.Dataset:
    """Inverse of [`normalize`][]."""
    out = {}
    for name, da in values.data_vars.items():
        if name in scales:
            da = da * _sel_levels(scales[name], da).astype(da.dtype)
        if locations is not None and name in locations:
            da = da + _sel_levels(locations[name], da).astype(da.dtype)
        out[name] = da
    return values.assign(out)


def fill_nans(ds: xr.Dataset, stats: Statistics, name: str = NAN_VARIABLE) -> xr.Dataset:
    """Replace NaN of `name` by its ``min_by_level`` value (the reference's ``NaNCleaner``)."""
    if name not in ds.data_vars:
        return ds
    fill = stats.minimum_ds[name] if stats.minimum_ds is not None and name in stats.minimum_ds else None
    if fill is None:
        if bool(ds[name].isnull().any()):
            stats.fill_value(name)  # raises with a clear message
        return ds
    return ds.assign({name: ds[name].fillna(_sel_levels(fill, ds[name]))})


def normalized_target(inputs: xr.Dataset, targets: xr.Dataset, stats: Statistics) -> xr.Dataset:
    """The diffusion target of ``InputsAndResiduals``: residuals of input variables over
    ``diffs_std``, other targets normalised (inputs and targets already NaN-filled)."""
    out = {}
    for name, da in targets.data_vars.items():
        if name in inputs:
            res = da - inputs[name].isel(time=-1)
            out[name] = normalize(res.to_dataset(name=name), stats.diffs_std_ds, None)[name]
        else:
            out[name] = normalize(da.to_dataset(name=name), stats.std_ds, stats.mean_ds)[name]
    return xr.Dataset(out)


def prediction_from_target(
    inputs: xr.Dataset, z: xr.Dataset, stats: Statistics, raw_inputs: xr.Dataset | None = None
) -> xr.Dataset:
    """Inverse of [`normalized_target`][]; with `raw_inputs` (before NaN filling), NaN
    positions of the SST input are reintroduced in the prediction."""
    out = {}
    for name, da in z.data_vars.items():
        if name in inputs:
            pred = unnormalize(da.to_dataset(name=name), stats.diffs_std_ds, None)[name]
            out[name] = pred + inputs[name].isel(time=-1)
        else:
            out[name] = unnormalize(da.to_dataset(name=name), stats.std_ds, stats.mean_ds)[name]
    pred = xr.Dataset(out)
    if raw_inputs is not None and NAN_VARIABLE in pred and NAN_VARIABLE in raw_inputs:
        mask = raw_inputs[NAN_VARIABLE].isnull().any(dim="time")
        pred = pred.assign({NAN_VARIABLE: pred[NAN_VARIABLE].where(~mask)})
    return pred
