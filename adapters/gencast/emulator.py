"""GenCast as an [`assimilax.AbstractEmulator`][assimilax.emulators.AbstractEmulator]: states in physical units, the residual target.

**State.**  ``x[k]`` is the flat vector of every target variable in physical units (ERA5
units), laid out by a [`assimilax.StateLayout`][assimilax.layout.StateLayout]: variables sorted by name (the reference's
stacking order), each as ``(level, lat, lon)`` or ``(lat, lon)``, so that every field (one
variable at one level) is a contiguous ``(lat, lon)`` block, the shape the core's grid
operators read.  Sea-surface temperature holds ``min_by_level`` over land (the reference
fills the NaN of its inputs with it); [`GenCastEmulator.to_dataset`][] puts the NaN back.

**History and context.**  ``h[k] = (x[k-1], x[k])`` (12 h apart).  The context normalises
the input variables of both states with ``mean/stddev_by_level``, the forcings at the two
input times and at the target time, and the static fields, and stacks them per grid node in
the reference's channel order ([`GenCastContext`][assimilax_adapters.gencast.denoiser.GenCastContext]).
`forcing` is the dict ``name -> (3, 1 or n_lat, 1 or n_lon)`` of one transition
([`data.transition_forcings`][assimilax_adapters.gencast.data.transition_forcings]).

**Target.**  The denoiser's target ``z`` (``(lat, lon, channel)`` order, see
[`GenCastDenoiser`][assimilax_adapters.gencast.denoiser.GenCastDenoiser]) is the
normalised residual: ``x[k+1] = x[k] + diffs_std z`` for targets that are inputs,
``x[k+1] = mean + std z`` for the others (precipitation), then SST reset to its fill value
over land.  Both maps are affine in ``z``.

**Noise.**  [`SphericalNoise`][assimilax_adapters.gencast.sampler.SphericalNoise] per
channel (``noise="spherical"``, GenCast's), or i.i.d. normal (``noise="white"``).
"""

import io
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

import assimilax as ax

from .checkpoint import load_checkpoint
from .config import ALL_ATMOSPHERIC_VARS, CheckPoint, TaskConfig
from .data import prepare_dataset, transition_forcings
from .denoiser import GenCastContext, GenCastDenoiser
from .normalization import NAN_VARIABLE, Statistics
from .sampler import SphericalNoise, gencast_sampler


def state_layout(task: TaskConfig, lat: np.ndarray, lon: np.ndarray) -> ax.StateLayout:
    """The state layout of `task` on the grid ``lat x lon`` (see the module docstring)."""
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    levels = np.asarray(task.pressure_levels, np.int64)
    template = {}
    for name in sorted(task.target_variables):
        if name in ALL_ATMOSPHERIC_VARS:
            template[name] = (("level", "lat", "lon"), np.zeros((levels.size, lat.size, lon.size), np.float32))
        else:
            template[name] = (("lat", "lon"), np.zeros((lat.size, lon.size), np.float32))
    ds = xr.Dataset(template, coords={"level": levels, "lat": lat, "lon": lon})
    return ax.StateLayout.from_dataset(ds, sample_dims=("time",))


def _levels(name: str, task: TaskConfig):
    return tuple(task.pressure_levels) if name in ALL_ATMOSPHERIC_VARS else None


class _InputSpec(eqx.Module):
    # One input variable of the context: where its values come from.
    name: str = eqx.field(static=True)
    kind: str = eqx.field(static=True)  # "state", "forcing" or "static"
    offset: int = eqx.field(static=True)  # state offset (kind "state") or static column
    n_levels: int = eqx.field(static=True)


class GenCastEmulator(ax.AbstractEmulator):
    """GenCast's transition ``p(x[k+1] | x[k-1], x[k])`` (see the module docstring).

    Build it with [`from_files`][] or [`from_checkpoint`][]; move data with [`states`][],
    [`forcings`][] and [`to_dataset`][].
    """

    denoiser: GenCastDenoiser
    noise_sampler: SphericalNoise | None
    target_index: Int[Array, " d"]  # state component i is target component target_index[i]
    state_index: Int[Array, " d"]  # target component j is state component state_index[j]
    residual: Float[Array, " d"]
    offset: Float[Array, " d"]
    scale: Float[Array, " d"]
    filled: Float[Array, " d"]  # 1 where the state is held at its fill value (SST over land)
    fill: Float[Array, " d"]
    input_mean: Float[Array, " ci"]
    input_std: Float[Array, " ci"]
    forcing_mean: Float[Array, " cf"]
    forcing_std: Float[Array, " cf"]
    static: Float[Array, "g cs"]
    inputs: tuple[_InputSpec, ...]
    forcing_names: tuple[str, ...] = eqx.field(static=True)
    layout: ax.StateLayout = eqx.field(static=True)
    task: TaskConfig = eqx.field(static=True)
    grid_shape: tuple[int, int] = eqx.field(static=True)
    history_length: int = eqx.field(static=True, default=2)
    state_size: int = eqx.field(static=True, default=0)

    # ----------------------------------------------------------------------------------
    # Construction
    # ----------------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        checkpoint: "str | os.PathLike | io.IOBase | CheckPoint",
        stats: "str | os.PathLike | Statistics",
        dataset: xr.Dataset,
        **kwargs,
    ) -> "GenCastEmulator":
        """Load the checkpoint file and the statistics folder; `dataset` (ERA5 layout) gives
        the grid, the static fields and the land points of SST.  `kwargs` as [`from_checkpoint`][]."""
        ckpt = checkpoint if isinstance(checkpoint, CheckPoint) else load_checkpoint(checkpoint)
        stats = stats if isinstance(stats, Statistics) else Statistics.from_dir(stats)
        return cls.from_checkpoint(ckpt, stats, dataset, **kwargs)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: CheckPoint,
        stats: Statistics,
        dataset: xr.Dataset,
        *,
        noise: str = "spherical",
        attention: str = "auto",
        mesh2grid_backend: str = "trimesh",
    ) -> "GenCastEmulator":
        """Build the emulator; see [`from_files`][].  `noise`: ``"spherical"`` or ``"white"``."""
        if noise not in ("spherical", "white"):
            raise ValueError(f"noise must be 'spherical' or 'white', got {noise!r}.")
        task = checkpoint.task_config
        ds = prepare_dataset(dataset, task.pressure_levels)
        lat, lon = np.asarray(ds["lat"].values), np.asarray(ds["lon"].values)
        den = GenCastDenoiser.from_checkpoint(
            checkpoint, lat, lon, attention=attention, mesh2grid_backend=mesh2grid_backend
        )
        layout = state_layout(task, lat, lon)
        g = lat.size * lon.size
        inputs = set(task.input_variables)

        # Target <-> state permutation and the affine residual map, per state component.
        n = layout.size
        target_index = np.zeros(n, np.int64)
        residual, offset, scale = np.zeros(n), np.zeros(n), np.ones(n)
        filled, fill = np.zeros(n), np.zeros(n)
        channel = 0
        n_out = den.n_outputs
        grid = np.arange(g)
        for var in layout.variables:
            levels = _levels(var.name, task)
            is_res, off, sc = stats.target_map(var.name, levels, var.name in inputs)
            for i in range(off.size):
                sl = slice(var.offset + i * g, var.offset + (i + 1) * g)
                target_index[sl] = grid * n_out + channel
                residual[sl], offset[sl], scale[sl] = float(is_res), off[i], sc[i]
                channel += 1
        if channel != n_out:
            raise ValueError(f"The task has {channel} target channels, the denoiser {n_out}.")
        if NAN_VARIABLE in layout.names and NAN_VARIABLE in ds:
            sst = ds[NAN_VARIABLE]
            mask = sst.isnull().any([d for d in sst.dims if d not in ("lat", "lon")])
            mask = np.asarray(mask.transpose("lat", "lon").values).reshape(-1)
            if mask.any():
                off0 = layout[NAN_VARIABLE].offset
                filled[off0 : off0 + g] = mask
                fill[off0 : off0 + g] = stats.fill_value(NAN_VARIABLE)[0]
        state_index = np.argsort(target_index)

        # Context: input variables in sorted order.
        specs, in_mean, in_std, static_cols = [], [], [], []
        for name in sorted(task.input_variables):
            levels = _levels(name, task)
            mean, std = stats.location_scale(name, levels)
            if name in task.forcing_variables:
                specs.append(_InputSpec(name, "forcing", 0, 1))
                reps = 2
            elif name in layout.names:
                specs.append(_InputSpec(name, "state", layout[name].offset, mean.size))
                reps = 2
            else:
                if name not in ds:
                    raise ValueError(f"The static field {name!r} is not in the dataset.")
                da = ds[name]
                extra = [d for d in da.dims if d not in ("lat", "lon")]
                if extra:
                    da = da.isel({d: 0 for d in extra})
                values = np.asarray(da.transpose("lat", "lon").values, np.float64).reshape(-1)
                specs.append(_InputSpec(name, "static", len(static_cols), 1))
                static_cols.append((values - mean[0]) / std[0])
                continue
            in_mean.append(np.tile(mean, reps))
            in_std.append(np.tile(std, reps))
        f_mean, f_std = [], []
        for name in sorted(task.forcing_variables):
            m, s = stats.location_scale(name, None)
            f_mean.append(m[0])
            f_std.append(s[0])
        static = np.stack(static_cols, axis=1) if static_cols else np.zeros((g, 0))
        f32 = lambda a: jnp.asarray(np.asarray(a, np.float64), jnp.float32)  # noqa: E731
        return cls(
            denoiser=den,
            noise_sampler=SphericalNoise(lat, lon) if noise == "spherical" else None,
            target_index=jnp.asarray(target_index, jnp.int32),
            state_index=jnp.asarray(state_index, jnp.int32),
            residual=f32(residual),
            offset=f32(offset),
            scale=f32(scale),
            filled=f32(filled),
            fill=f32(fill),
            input_mean=f32(np.concatenate(in_mean) if in_mean else np.zeros(0)),
            input_std=f32(np.concatenate(in_std) if in_std else np.ones(0)),
            forcing_mean=f32(f_mean),
            forcing_std=f32(f_std),
            static=f32(static),
            inputs=tuple(specs),
            forcing_names=tuple(sorted(task.forcing_variables)),
            layout=layout,
            task=task,
            grid_shape=(lat.size, lon.size),
            state_size=n,
        )

    # ----------------------------------------------------------------------------------
    # The emulator protocol
    # ----------------------------------------------------------------------------------

    @property
    def n_grid(self) -> int:
        return self.grid_shape[0] * self.grid_shape[1]

    def _forcing_grid(self, forcing: PyTree, name: str, t: int) -> Float[Array, " g"]:
        if forcing is None or name not in forcing:
            raise ValueError(f"GenCast needs the forcing {name!r} (see data.transition_forcings).")
        return jnp.broadcast_to(jnp.asarray(forcing[name])[t], self.grid_shape).reshape(-1)

    def context(self, history: Float[Array, "m d"], forcing: PyTree) -> GenCastContext:
        g = self.n_grid
        blocks = []
        for spec in self.inputs:
            if spec.kind == "static":
                blocks.append(self.static[:, spec.offset : spec.offset + 1])
            elif spec.kind == "forcing":
                blocks.append(jnp.stack([self._forcing_grid(forcing, spec.name, t) for t in (0, 1)], axis=1))
            else:
                fields = [
                    history[t, spec.offset : spec.offset + spec.n_levels * g].reshape(spec.n_levels, g)
                    for t in (0, 1)
                ]
                blocks.append(jnp.concatenate(fields, axis=0).T)
        dynamic = [b for b, s in zip(blocks, self.inputs) if s.kind != "static"]
        dyn = jnp.concatenate(dynamic, axis=1) if dynamic else jnp.zeros((g, 0))
        dyn = (dyn - self.input_mean) / self.input_std
        out, i = [], 0
        for b, s in zip(blocks, self.inputs):
            if s.kind == "static":
                out.append(b)
            else:
                out.append(dyn[:, i : i + b.shape[1]])
                i += b.shape[1]
        f = jnp.stack([self._forcing_grid(forcing, n, 2) for n in self.forcing_names], axis=1)
        f = (f - self.forcing_mean) / self.forcing_std
        return GenCastContext(inputs=jnp.concatenate(out, axis=1), forcings=f)

    def to_state(self, z: Float[Array, " dz"], history: Float[Array, "m d"]) -> Float[Array, " d"]:
        x = self.offset + self.residual * history[-1] + self.scale * z[self.target_index]
        return jnp.where(self.filled > 0, self.fill, x)

    def to_target(self, x: Float[Array, " d"], history: Float[Array, "m d"]) -> Float[Array, " dz"]:
        zs = (x - self.offset - self.residual * history[-1]) / self.scale
        return zs[self.state_index]

    def noise(self, key: PRNGKeyArray) -> Float[Array, " dz"]:
        n_out = self.denoiser.n_outputs
        if self.noise_sampler is None:
            return jax.random.normal(key, (self.n_grid * n_out,))
        fields = self.noise_sampler(key, n_out)  # (channel, lat, lon)
        return jnp.moveaxis(fields, 0, -1).reshape(-1)

    # ----------------------------------------------------------------------------------
    # Data
    # ----------------------------------------------------------------------------------

    def sampler(self, config=None) -> ax.Sampler:
        """GenCast's own sampler ([`sampler.gencast_sampler`][assimilax_adapters.gencast.sampler.gencast_sampler])."""
        return gencast_sampler() if config is None else gencast_sampler(config)

    def states(self, dataset: xr.Dataset) -> np.ndarray:
        """Flat states ``(n_times, d)`` of an ERA5-layout dataset (NaN SST filled)."""
        ds = prepare_dataset(dataset, self.task.pressure_levels)
        values = self.layout.flatten(ds[list(self.layout.names)], sample_dims=("time",), dtype=np.float32)
        filled, fill = np.asarray(self.filled) > 0, np.asarray(self.fill)
        values = np.where(filled, fill, values)
        if not np.all(np.isfinite(values)):
            raise ValueError("The dataset's target variables have NaN outside the SST land mask.")
        return values

    def forcings(self, target_times, dataset: xr.Dataset | None = None) -> dict[str, np.ndarray]:
        """The forcings of the transitions to `target_times` (``name -> (C, 3, ., .)``)."""
        lat = self.layout.variables[0].coords
        lat = next(c.values for c in lat if c.name == "lat")
        lon = next(c.values for c in self.layout.variables[0].coords if c.name == "lon")
        return transition_forcings(self.forcing_names, target_times, lat, lon, dataset)

    def to_dataset(self, states, sample_dims=None, sample_coords=None, nan_land: bool = True) -> xr.Dataset:
        """States ``(..., d)`` as an xarray Dataset, NaN SST over land (if `nan_land`)."""
        values = np.array(states, dtype=np.float32)
        if nan_land:
            values[..., np.asarray(self.filled) > 0] = np.nan
        return self.layout.unflatten(values, sample_dims=sample_dims, sample_coords=sample_coords)
