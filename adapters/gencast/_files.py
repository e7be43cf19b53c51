"""Opening the GenCast job's input files with errors that name the file.

Whatever xarray, netCDF4, h5py or zarr raise for a file that cannot be read (empty,
truncated, not NetCDF, a package missing) becomes an [`assimilax.errors.FileFormatError`][]
naming the file; a missing file is a [`MissingFile`][] (also a ``FileNotFoundError``).
"""

import zipfile
from pathlib import Path

import xarray as xr

from assimilax.errors import FileFormatError

# What the readers raise for a file that is not what it claims to be.
READ_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, RuntimeError, zipfile.BadZipFile)


class MissingFile(FileFormatError, FileNotFoundError):
    """An input file or folder that does not exist (a `FileFormatError` and a `FileNotFoundError`)."""


def reason(error: BaseException) -> str:
    """``"<type>: <first sentence of the message>"`` on one line, at most about 120 characters."""
    text = " ".join(str(error).split())
    text = text.split(". ")[0]
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def empty(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False


def load_netcdf(path: "str | Path", what: str) -> xr.Dataset:
    """`xr.load_dataset(path)`, with a `FileFormatError` naming `path` (`what` it is) when it
    cannot be read."""
    path = Path(path)
    if not path.exists():
        raise MissingFile(path, f"the {what} does not exist.")
    if empty(path):
        raise FileFormatError(path, f"the {what} is an empty file.")
    try:
        return xr.load_dataset(path)
    except READ_ERRORS as e:
        raise FileFormatError(
            path, f"cannot read the {what} as NetCDF ({reason(e)}); the file is truncated or not NetCDF."
        ) from None


def open_dataset(path: "str | Path", what: str) -> xr.Dataset:
    """A NetCDF file (opened lazily) or a Zarr store (a folder, or a name ending ``.zarr``)."""
    p = Path(path)
    if not p.exists():
        raise MissingFile(path, f"the {what} does not exist.")
    if p.is_dir() or p.suffix == ".zarr":
        try:
            import zarr  # noqa: F401
        except ImportError:
            raise FileFormatError(
                path, f"the {what} is a Zarr store, and reading it needs the zarr package: pip install zarr."
            ) from None
        try:
            return xr.open_zarr(p)
        except READ_ERRORS as e:
            raise FileFormatError(path, f"cannot read the {what} as a Zarr store ({reason(e)}).") from None
    if empty(p):
        raise FileFormatError(path, f"the {what} is an empty file.")
    try:
        return xr.open_dataset(p)
    except READ_ERRORS as e:
        raise FileFormatError(
            path, f"cannot read the {what} as NetCDF ({reason(e)}); the file is truncated or not NetCDF."
        ) from None
