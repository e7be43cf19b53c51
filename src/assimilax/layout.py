"""The state layout: an xarray Dataset <-> the flat state vector the filters work on.

Filters, emulators and observation operators act on one flat vector ``x`` of size ``D``
per sample.  A [`StateLayout`][] records, from a template Dataset, how the data variables
(each with its own dimensions, e.g. ``t2m(lat, lon)`` and ``temperature(level, lat, lon)``)
are laid out in that vector, and restores coordinates and attributes on the way back.

**The flattening order.**  Variables in the order of the layout (the Dataset's order unless
given), each flattened in C order over its *state dimensions* in the template's order, and
concatenated: variable ``v`` occupies ``x[offset_v : offset_v + prod(shape_v)]`` (see
[`StateLayout.slice_of`][]).  All other dimensions are *sample dimensions* (time, ensemble
member, particle, ...): they become leading axes of the flat array.

A layout is an immutable, hashable Python object (coordinate values are stored as read-only
NumPy arrays), so it may be a static field of an `eqx.Module` or a static argument of `jax.jit`.
"""

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["Coordinate", "StateLayout", "VariableLayout"]


def _frozen_array(values: Any) -> np.ndarray:
    a = np.array(values, copy=True)
    a.setflags(write=False)
    return a


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
            return False
        if a.dtype.kind == "f" or a.dtype.kind == "c":
            return bool(np.array_equal(a, b, equal_nan=True))
        return bool(np.array_equal(a, b))
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _mapping_equal(a: Mapping, b: Mapping) -> bool:
    return a.keys() == b.keys() and all(_values_equal(a[k], b[k]) for k in a)


@dataclasses.dataclass(frozen=True, eq=False)
class Coordinate:
    """One coordinate of a state variable: name, dimensions, values and attributes."""

    name: str
    dims: tuple[str, ...]
    values: np.ndarray
    attrs: Mapping[str, Any]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Coordinate):
            return NotImplemented
        return (
            self.name == other.name
            and self.dims == other.dims
            and _values_equal(self.values, other.values)
            and _mapping_equal(self.attrs, other.attrs)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.dims, self.values.shape))


@dataclasses.dataclass(frozen=True, eq=False)
class VariableLayout:
    """Where one data variable lives in the flat state.

    The variable occupies ``x[offset : offset + size]`` and reads back as an array of
    `shape` over the dimensions `dims` (C order).
    """

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    offset: int
    coords: tuple[Coordinate, ...]
    attrs: Mapping[str, Any]

    @property
    def size(self) -> int:
        """``prod(shape)``."""
        return math.prod(self.shape)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VariableLayout):
            return NotImplemented
        return (
            (self.name, self.dims, self.shape, self.offset)
            == (other.name, other.dims, other.shape, other.offset)
            and self.coords == other.coords
            and _mapping_equal(self.attrs, other.attrs)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.dims, self.shape, self.offset))


@dataclasses.dataclass(frozen=True, eq=False)
class StateLayout:
    """The layout of a (multi-variable) xarray state in a flat vector.

    Build it with [`StateLayout.from_dataset`][] (gridded states) or
    [`StateLayout.vector`][] (a plain vector such as Lorenz-96), then move data with
    [`flatten`][] and [`unflatten`][].

    **Fields:**

    - `variables`: a [`VariableLayout`][] per data variable, in flattening order.
    - `sample_dims`: the sample dimensions named at construction (the default names of the
      leading axes in [`unflatten`][]).
    - `attrs`: the Dataset's attributes.
    """

    variables: tuple[VariableLayout, ...]
    sample_dims: tuple[str, ...] = ()
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        names = [v.name for v in self.variables]
        if len(set(names)) != len(names):
            raise ValueError(f"StateLayout: duplicate variable names in {names}.")
        offset = 0
        for v in self.variables:
            if v.offset != offset:
                raise ValueError(
                    f"StateLayout: variable {v.name!r} starts at {v.offset}, expected {offset}."
                )
            offset += v.size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StateLayout):
            return NotImplemented
        return (
            self.variables == other.variables
            and self.sample_dims == other.sample_dims
            and _mapping_equal(self.attrs, other.attrs)
        )

    def __hash__(self) -> int:
        return hash((self.variables, self.sample_dims))

    # ----------------------------------------------------------------------------------
    # Construction
    # ----------------------------------------------------------------------------------

    @classmethod
    def from_dataset(
        cls,
        ds: xr.Dataset | xr.DataArray,
        sample_dims: Sequence[str] = ("time",),
        variables: Sequence[str] | None = None,
    ) -> "StateLayout":
        """The layout of the data variables of the template `ds`.

        **Arguments:**

        - `ds`: the template Dataset (only names, dimensions, sizes, coordinates and
          attributes are read, not the data).
        - `sample_dims`: dimensions that are not part of the state (time, member, ...);
          they need not be present in `ds`.
        - `variables`: the variables to lay out, in this order (default: all data
          variables in the Dataset's order).
        """
        if isinstance(ds, xr.DataArray):
            raise TypeError(
                "StateLayout.from_dataset needs an xarray.Dataset; convert a DataArray with "
                "`da.to_dataset(name=...)`."
            )
        if not isinstance(ds, xr.Dataset):
            raise TypeError(f"StateLayout.from_dataset needs an xarray.Dataset, got {type(ds)}.")
        sample_dims = tuple(sample_dims)
        names = list(ds.data_vars) if variables is None else list(variables)
        if not names:
            raise ValueError("StateLayout.from_dataset: the Dataset has no data variables.")
        layouts = []
        offset = 0
        for name in names:
            if name not in ds.data_vars:
                raise ValueError(
                    f"StateLayout.from_dataset: variable {name!r} is not a data variable of the "
                    f"Dataset (it has {list(ds.data_vars)})."
                )
            da = ds[name]
            dims = tuple(str(d) for d in da.dims if d not in sample_dims)
            shape = tuple(int(da.sizes[d]) for d in dims)
            coords = tuple(
                Coordinate(
                    name=str(cname),
                    dims=tuple(str(d) for d in c.dims),
                    values=_frozen_array(c.values),
                    attrs=dict(c.attrs),
                )
                for cname, c in da.coords.items()
                if not set(c.dims) & set(sample_dims)
            )
            layouts.append(
                VariableLayout(
                    name=str(name),
                    dims=dims,
                    shape=shape,
                    offset=offset,
                    coords=coords,
                    attrs=dict(da.attrs),
                )
            )
            offset += math.prod(shape)
        return cls(variables=tuple(layouts), sample_dims=sample_dims, attrs=dict(ds.attrs))

    @classmethod
    def vector(cls, n: int, name: str = "x", dim: str = "variable") -> "StateLayout":
        """A single variable `name` of `n` components along `dim` (no coordinate), e.g. Lorenz-96.

        Its default sample dimension is ``("time",)``.
        """
        if n < 1:
            raise ValueError(f"StateLayout.vector needs n >= 1, got {n}.")
        var = VariableLayout(name=name, dims=(dim,), shape=(n,), offset=0, coords=(), attrs={})
        return cls(variables=(var,), sample_dims=("time",))

    # ----------------------------------------------------------------------------------
    # Queries
    # ----------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """``D``, the length of the flat state vector."""
        return sum(v.size for v in self.variables)

    @property
    def names(self) -> tuple[str, ...]:
        """The variable names, in flattening order."""
        return tuple(v.name for v in self.variables)

    def __getitem__(self, name: str) -> VariableLayout:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(f"StateLayout has no variable {name!r}; it has {list(self.names)}.")

    def slice_of(self, name: str) -> tuple[int, tuple[int, ...]]:
        """``(offset, shape)`` of variable `name`: it is ``x[offset : offset + prod(shape)]``.

        Grid-aware observation operators ([`assimilax.BlockMean`][assimilax.observations.BlockMean],
        [`assimilax.Interpolation`][assimilax.observations.Interpolation]) take exactly these two numbers.
        """
        v = self[name]
        return v.offset, v.shape

    def variable_index(self, dim: str = "component") -> xr.DataArray:
        """Label every component of the flat state, for plotting and selection.

        A DataArray along `dim` (size ``D``) whose values are ``0, ..., D - 1``, with the
        coordinates `var_name` (the variable name), `position` (the flat C-order position
        within the variable) and, for each state dimension ``dim_k`` of any variable,
        ``{dim_k}_index`` (the index along that dimension, -1 for variables without it).
        E.g. ``idx.where(idx.var_name == "t2m", drop=True)`` picks out one variable.
        """
        all_dims = list(dict.fromkeys(d for v in self.variables for d in v.dims))
        variable = np.concatenate([np.full(v.size, v.name, dtype=object) for v in self.variables])
        position = np.concatenate([np.arange(v.size) for v in self.variables])
        coords: dict[Hashable, Any] = {
            "var_name": (dim, variable.astype(str)),
            "position": (dim, position),
        }
        for d in all_dims:
            parts = []
            for v in self.variables:
                if d in v.dims:
                    grids = np.unravel_index(np.arange(v.size), v.shape) if v.shape else ()
                    parts.append(np.asarray(grids[v.dims.index(d)]))
                else:
                    parts.append(np.full(v.size, -1))
            coords[f"{d}_index"] = (dim, np.concatenate(parts))
        return xr.DataArray(np.arange(self.size), dims=(dim,), coords=coords, name=dim)

    # ----------------------------------------------------------------------------------
    # Data movement
    # ----------------------------------------------------------------------------------

    def flatten(
        self,
        ds: xr.Dataset,
        sample_dims: Sequence[str] | None = None,
        check_finite: bool = False,
        check_coords: bool = True,
        dtype: Any = None,
    ) -> np.ndarray:
        """The flat states of `ds`, an array of shape ``(*sample_shape, D)``.

        **Arguments:**

        - `ds`: a Dataset with every variable of the layout (others are ignored, so
          forcings may live in the same Dataset).  Each variable must have the layout's
          state dimensions with the same sizes (in any order: they are transposed by
          name), plus the same sample dimensions as every other variable.
        - `sample_dims`: the order of the leading axes; default: the non-state dimensions
          of the first variable, in its order.
        - `check_finite`: raise if any value is NaN or infinite (NaN are allowed
          otherwise, e.g. for missing observations on the state grid).
        - `check_coords`: raise if a dimension coordinate of `ds` differs from the
          template's (a flipped latitude axis, a different level set).
        - `dtype`: the output dtype (default: the common dtype of the variables).

        Raises `ValueError` naming the offending variable or dimension.
        """
        if not isinstance(ds, xr.Dataset):
            raise TypeError(f"StateLayout.flatten needs an xarray.Dataset, got {type(ds)}.")
        missing = [v.name for v in self.variables if v.name not in ds.data_vars]
        if missing:
            raise ValueError(
                f"StateLayout.flatten: variable(s) {missing} missing from the Dataset "
                f"(it has {list(ds.data_vars)})."
            )
        if sample_dims is None:
            first = self.variables[0]
            sample = tuple(str(d) for d in ds[first.name].dims if d not in first.dims)
        else:
            sample = tuple(sample_dims)
        sample_shape: tuple[int, ...] | None = None
        blocks = []
        for v in self.variables:
            da = ds[v.name]
            dims = tuple(str(d) for d in da.dims)
            absent = [d for d in v.dims if d not in dims]
            if absent:
                raise ValueError(
                    f"StateLayout.flatten: variable {v.name!r} lacks state dimension(s) {absent} "
                    f"(it has dims {dims}, the layout expects {v.dims} plus sample dims)."
                )
            extra = {d for d in dims if d not in v.dims}
            if extra != set(sample):
                raise ValueError(
                    f"StateLayout.flatten: variable {v.name!r} has sample dimensions "
                    f"{sorted(extra)}, expected {list(sample)} (state dims {v.dims})."
                )
            for d, n in zip(v.dims, v.shape):
                if da.sizes[d] != n:
                    raise ValueError(
                        f"StateLayout.flatten: dimension {d!r} of variable {v.name!r} has size "
                        f"{da.sizes[d]}, the layout expects {n}."
                    )
            if check_coords:
                self._check_coords(v, da)
            values = np.asarray(da.transpose(*sample, *v.dims).values)
            this_sample = values.shape[: len(sample)]
            if sample_shape is None:
                sample_shape = this_sample
            elif this_sample != sample_shape:
                raise ValueError(
                    f"StateLayout.flatten: variable {v.name!r} has sample shape {this_sample} "
                    f"over {sample}, another variable has {sample_shape}."
                )
            if check_finite and not np.all(np.isfinite(values)):
                bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
                raise ValueError(
                    f"StateLayout.flatten: variable {v.name!r} has {bad} non-finite value(s)."
                )
            blocks.append(values.reshape(*this_sample, v.size))
        out = np.concatenate(blocks, axis=-1)
        return out if dtype is None else out.astype(dtype)

    @staticmethod
    def _check_coords(v: VariableLayout, da: xr.DataArray) -> None:
        for c in v.coords:
            if c.dims != (c.name,) or c.name not in da.coords:
                continue
            got = np.asarray(da.coords[c.name].values)
            ok = got.shape == c.values.shape and (
                bool(np.allclose(got, c.values, equal_nan=True))
                if got.dtype.kind in "fc" and c.values.dtype.kind in "fc"
                else bool(np.array_equal(got, c.values))
            )
            if not ok:
                raise ValueError(
                    f"StateLayout.flatten: coordinate {c.name!r} of variable {v.name!r} differs "
                    "from the template's (reordered or different grid?); pass "
                    "check_coords=False to skip this check."
                )

    def unflatten(
        self,
        array: Any,
        sample_dims: Sequence[str] | None = None,
        sample_coords: Mapping[str, Any] | None = None,
    ) -> xr.Dataset:
        """The Dataset of flat states `array` of shape ``(*sample_shape, D)``.

        Coordinates and attributes of the template are restored.

        **Arguments:**

        - `array`: NumPy or JAX array whose last axis is the state.
        - `sample_dims`: names of the leading axes, e.g. ``("time", "particle")``.
          Default: none for a single state, the layout's `sample_dims` when their number
          matches the leading axes.
        - `sample_coords`: optional coordinates, e.g. ``{"time": times}``.
        """
        values = np.asarray(array)
        if values.ndim < 1 or values.shape[-1] != self.size:
            raise ValueError(
                f"StateLayout.unflatten: the last axis must have the state size {self.size}, "
                f"got an array of shape {values.shape}."
            )
        lead = values.shape[:-1]
        if sample_dims is None:
            if not lead:
                sample_dims = ()
            elif len(lead) == len(self.sample_dims):
                sample_dims = self.sample_dims
            else:
                raise ValueError(
                    f"StateLayout.unflatten: an array of shape {values.shape} has {len(lead)} "
                    f"leading axes; name them with sample_dims=(...)."
                )
        sample_dims = tuple(sample_dims)
        if len(sample_dims) != len(lead):
            raise ValueError(
                f"StateLayout.unflatten: sample_dims {sample_dims} do not match the "
                f"{len(lead)} leading axes of an array of shape {values.shape}."
            )
        data_vars = {}
        coords: dict[Hashable, Any] = {}
        for v in self.variables:
            block = values[..., v.offset : v.offset + v.size].reshape(*lead, *v.shape)
            data_vars[v.name] = xr.Variable(sample_dims + v.dims, block, attrs=dict(v.attrs))
            for c in v.coords:
                coords[c.name] = xr.Variable(c.dims, np.array(c.values), attrs=dict(c.attrs))
        for name, c in (sample_coords or {}).items():
            coords[name] = c if isinstance(c, (tuple, xr.Variable, xr.DataArray)) else (name, c)
        return xr.Dataset(data_vars, coords=coords, attrs=dict(self.attrs))
