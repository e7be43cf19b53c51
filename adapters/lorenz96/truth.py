"""A given truth and observation sequence for the twin experiment (``--truth FILE``).

So that results can be set beside another code's (e.g. DAPPER's) on identical data, the
job reads:

- ``xx``: ``(K + 1, d)`` the truth, row 0 the start (the filters start from
  ``xx[0] + init_std eps``);
- ``yy``: ``(K, p)`` the observations of times ``1..K`` (NaN = missing);
- ``obs_idx``: ``(p,)`` the observed components (column ``j`` of ``yy`` observes
  ``x[obs_idx[j]]``);
- ``q``: the model-noise standard deviation, ``x[k+1] = M(x[k]) + q eps``;
- ``r``: the observation-noise *variance*, ``R = r I`` (DAPPER's convention); a file may
  give ``obs_std`` (its square root) instead.

from an ``.npz`` file or a NetCDF file (``.nc``: variables ``xx``, ``yy``, ``obs_idx``,
with ``q`` and ``r`` as scalar variables or global attributes).  The model is Lorenz-96
with ``F = 8`` and one RK4 step of ``dt = 0.05`` per cycle (the job's model).
"""

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from assimilax.errors import FileFormatError, InvalidData


@dataclasses.dataclass(frozen=True)
class Truth:
    """A truth trajectory with its observations (see the module docstring)."""

    xx: np.ndarray
    yy: np.ndarray
    obs_idx: np.ndarray
    q: float
    obs_std: float
    observe: str = "identity"  # "abs": yy observes |x[obs_idx]|

    @property
    def cycles(self) -> int:
        return self.yy.shape[0]

    @property
    def dim(self) -> int:
        return self.xx.shape[1]


def _scalar(get, names, path):
    for name in names:
        value = get(name)
        if value is not None:
            a = np.asarray(value, dtype=float)
            if a.size != 1:
                raise InvalidData(f"truth file {path}: '{name}' must be a scalar, got shape {a.shape}.")
            return name, float(a.reshape(()))
    return None, None


def load_truth(path: str | Path) -> Truth:
    """Read and check a truth file; raises `FileNotFoundError` or a `ValueError` naming
    the offending entry."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"truth file {path} not found.")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError, AttributeError, zipfile.BadZipFile) as e:
            raise FileFormatError(path, f"not a readable .npz truth file ({type(e).__name__}: truncated, empty or of another format).") from None
        get = data.get
        keys = set(data)
    elif path.suffix in (".nc", ".nc4", ".netcdf"):
        import xarray as xr

        try:
            with xr.open_dataset(path) as ds:
                data = {k: ds[k].values for k in ds.variables}
                attrs = dict(ds.attrs)
        except (OSError, ValueError, RuntimeError, EOFError) as e:
            raise FileFormatError(path, f"not a readable NetCDF truth file ({type(e).__name__}: truncated, empty or of another format).") from None
        keys = set(data) | set(attrs)

        def get(name):
            return data.get(name, attrs.get(name))
    else:
        raise InvalidData(f"truth file {path}: expected a .npz or .nc file, got suffix {path.suffix!r}.")
    missing = [k for k in ("xx", "yy", "obs_idx") if k not in keys]
    if missing:
        raise InvalidData(f"truth file {path} lacks {missing}; it needs xx, yy, obs_idx, q and r.")
    xx, yy = np.asarray(get("xx"), float), np.asarray(get("yy"), float)
    obs_idx = np.asarray(get("obs_idx"))
    if xx.ndim != 2 or xx.shape[0] < 2:
        raise InvalidData(f"truth file {path}: xx must be (K + 1, d) with K >= 1, got shape {xx.shape}.")
    if yy.ndim != 2 or yy.shape[0] != xx.shape[0] - 1:
        raise InvalidData(
            f"truth file {path}: yy must be (K, p) = ({xx.shape[0] - 1}, p) for xx of shape "
            f"{xx.shape} (row 0 of xx is the start), got shape {yy.shape}."
        )
    d = xx.shape[1]
    if obs_idx.ndim != 1 or obs_idx.shape[0] != yy.shape[1] or not np.issubdtype(obs_idx.dtype, np.integer):
        raise InvalidData(
            f"truth file {path}: obs_idx must be {yy.shape[1]} integers (one per column of yy), "
            f"got dtype {obs_idx.dtype} and shape {obs_idx.shape}."
        )
    if obs_idx.size and (obs_idx.min() < 0 or obs_idx.max() >= d or np.unique(obs_idx).size != obs_idx.size):
        raise InvalidData(f"truth file {path}: obs_idx must be distinct components in [0, {d}).")
    if not np.all(np.isfinite(xx)):
        raise InvalidData(f"truth file {path}: xx contains NaN or inf.")
    if np.any(np.isinf(yy)):
        raise InvalidData(f"truth file {path}: yy contains inf (use NaN for missing observations).")
    _, q = _scalar(get, ("q",), path)
    name, r = _scalar(get, ("r", "obs_std"), path)
    if q is None or r is None:
        raise InvalidData(f"truth file {path} lacks {'q' if q is None else 'r'} (model noise std q, observation variance r).")
    if not q > 0 or not r > 0:
        raise InvalidData(f"truth file {path}: q and r must be positive, got q = {q}, {name} = {r}.")
    obs_std = float(np.sqrt(r)) if name == "r" else r
    observe = get("observe")
    observe = "identity" if observe is None else str(np.asarray(observe))
    if observe not in ("identity", "abs"):
        raise InvalidData(f"truth file {path}: observe = {observe!r}: must be 'identity' or 'abs'.")
    order = np.argsort(obs_idx)  # the job's Selection lists components in increasing order
    return Truth(xx, yy[:, order], obs_idx[order].astype(int), q, obs_std, observe)


def save_truth(path: str | Path, xx, yy, obs_idx, q: float, r: float, observe: str = "identity") -> None:
    """Write a truth file (``.npz`` or ``.nc``) that [`load_truth`][] reads (`observe`
    ``"abs"``: `yy` observes ``|x[obs_idx]|``)."""
    path = Path(path)
    arrays = {"xx": np.asarray(xx), "yy": np.asarray(yy), "obs_idx": np.asarray(obs_idx, dtype=np.int64)}
    if path.suffix == ".npz":
        np.savez(path, **arrays, q=np.float64(q), r=np.float64(r), observe=np.asarray(observe))
    else:
        import xarray as xr

        xr.Dataset(
            {
                "xx": (("time", "variable"), arrays["xx"]),
                "yy": (("obs_time", "obs"), arrays["yy"]),
                "obs_idx": (("obs",), arrays["obs_idx"]),
            },
            attrs={"q": float(q), "r": float(r), "observe": observe},
        ).to_netcdf(path)
