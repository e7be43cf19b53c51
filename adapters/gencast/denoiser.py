"""The GenCast denoiser as an [`assimilax.AbstractDenoiser`][assimilax.denoisers.AbstractDenoiser], loaded from an official checkpoint.

``D(x_t, sigma; c) = c_skip x_t + c_out F(c_in x_t, sigma; c)`` (EDM, ``sigma_data = 1``:
``c_in = (sigma^2 + 1)^-1/2``, ``c_out = sigma (sigma^2 + 1)^-1/2``, ``c_skip = 1 / (sigma^2 + 1)``,
as in the reference's ``gencast.py``), where the network ``F``:

1. encodes the noise level: Fourier features ``[cos(2 pi k log(sigma) / P), sin(...)]``,
   ``k = 1..num_frequencies``, ``P = base_period``, then a GELU MLP (``noise_encoder_config``);
   the result conditions every norm of the network;
2. stacks per grid node the inputs, then the target-time forcings and the scaled noisy
   targets together (see [`GenCastContext`][] for the channel order);
3. runs [`Grid2Mesh`][assimilax_adapters.gencast.graph_net.Grid2Mesh], the
   [`MeshTransformer`][assimilax_adapters.gencast.transformer.MeshTransformer] and
   [`Mesh2Grid`][assimilax_adapters.gencast.graph_net.Mesh2Grid].

**State layout.**  A sample ``x`` (the target: GenCast's normalised 12 h residual) is the
flat ``[n_lat * n_lon * n_out]`` vector of the ``(lat, lon, channel)`` array, latitude-major,
channels in the reference's stacking order: target variables sorted by name, each
contributing its pressure levels in order (one channel for a surface variable).
"""

import io
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray
from jaxtyping import Array, ArrayLike, Float, Int

from assimilax import AbstractDenoiser

from . import params as P
from .checkpoint import CheckpointFormatError, check_param_shapes, load_checkpoint
from .config import ALL_ATMOSPHERIC_VARS, CheckPoint, TaskConfig, num_outputs
from .graph_net import MLP, Grid2Mesh, Mesh2Grid, ParamReader
from .grid_mesh import check_mesh2grid_backend, grid2mesh_radius
from .mesh import gencast_mesh
from .transformer import MeshTransformer


class NoiseLevelEncoder(eqx.Module):
    """Fourier features of ``log sigma`` (or ``sigma``), then a GELU MLP (``FourierFeaturesMLP``)."""

    mlp: MLP
    base_period: float = eqx.field(static=True)
    num_frequencies: int = eqx.field(static=True)
    apply_log_first: bool = eqx.field(static=True)

    def __call__(self, sigma: Float[ArrayLike, ""]) -> Float[Array, " c"]:
        value = jnp.asarray(sigma, jnp.float32)
        if self.apply_log_first:
            value = jnp.log(value)
        frequencies = np.arange(1, self.num_frequencies + 1) / self.base_period
        angular = jnp.asarray(2 * np.pi * frequencies, dtype=value.dtype)
        phase = value[..., None] * angular
        return self.mlp(jnp.concatenate([jnp.cos(phase), jnp.sin(phase)], axis=-1))


class GenCastContext(eqx.Module):
    """What a GenCast denoiser conditions on, for one sample, stacked per grid node.

    - `inputs`: ``[n_lat * n_lon, c_inputs]``, the input variables (past states at each input
      step, forcings at the input times, static fields) stacked like the reference's
      ``dataset_to_stacked``: variables sorted by name, each contributing its non-grid axes
      in its own dimension order (``time`` then ``level``).
    - `forcings`: ``[n_lat * n_lon, c_forcings]``, the forcing variables at the target time,
      sorted by name.

    [`stack_dataset`][] builds both from xarray.
    """

    inputs: Float[Array, "g ci"]
    forcings: Float[Array, "g cf"]


def stack_dataset(
    dataset: xarray.Dataset, grid_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """``[n_lat * n_lon, channels]`` of one sample, in the reference's stacking order.

    Variables sorted by name; each variable's axes other than ``lat`` and ``lon`` are folded
    into channels in the variable's own order; variables without ``lat``/``lon`` are
    broadcast over the grid.  `dataset` must have no batch axis.  The grid is the dataset's
    ``lat``/``lon`` dimensions, or `grid_shape` ``(n_lat, n_lon)`` when the dataset has none
    (forcings such as ``year_progress_sin`` that depend on time only).
    """
    if "batch" in dataset.dims:
        raise ValueError("stack_dataset stacks one sample: select a batch element first.")
    sizes = {}
    for axis, dim in enumerate(("lat", "lon")):
        given = None if grid_shape is None else int(grid_shape[axis])
        if dim in dataset.sizes:
            if given is not None and given != dataset.sizes[dim]:
                raise ValueError(
                    f"grid_shape gives {given} for {dim!r} but the dataset has {dataset.sizes[dim]}."
                )
            sizes[dim] = dataset.sizes[dim]
        elif given is not None:
            sizes[dim] = given
        else:
            raise ValueError(
                f"The dataset has no {dim!r} dimension (variables {sorted(dataset.data_vars)}): "
                "pass grid_shape=(n_lat, n_lon) to broadcast it over the grid."
            )
    nlat, nlon = sizes["lat"], sizes["lon"]
    blocks = []
    for name in sorted(dataset.data_vars):
        var = dataset[name].variable
        other = [d for d in var.dims if d not in ("lat", "lon")]
        var = var.set_dims({**{d: var.sizes[d] for d in other}, "lat": nlat, "lon": nlon})
        data = np.asarray(var.transpose("lat", "lon", *other).values)
        blocks.append(data.reshape(nlat * nlon, -1))
    return np.concatenate(blocks, axis=-1)


def _segments(names, task: TaskConfig) -> list[tuple[str, int]]:
    return [(n, len(task.pressure_levels) if n in ALL_ATMOSPHERIC_VARS else 1) for n in names]


def forcing_channel_order(task: TaskConfig) -> np.ndarray:
    """Gather indices placing ``[forcings, noisy targets]`` in the reference's channel order.

    The reference stacks the target-time forcings and the noisy targets as one dataset, so
    their channels interleave by variable name (e.g. ``10m_u...``, ``2m_temperature``,
    ``day_progress_cos``, ``geopotential``, ...).
    """
    forcings = _segments(sorted(task.forcing_variables), task)
    targets = _segments(sorted(task.target_variables), task)
    clash = set(task.forcing_variables) & set(task.target_variables)
    if clash:
        raise ValueError(f"Variables both forcing and target: {sorted(clash)}.")
    starts, offset = {}, 0
    for name, n in forcings + targets:
        starts[name] = (offset, n)
        offset += n
    order = [
        starts[name][0] + i for name in sorted(starts) for i in range(starts[name][1])
    ]
    return np.asarray(order, np.int32)


class GenCastDenoiser(AbstractDenoiser):
    """GenCast's preconditioned denoiser on one flat sample (see the module docstring).

    Build it with [`from_checkpoint`][] (or [`from_params`][]) for a grid ``lat x lon``;
    call it as ``D(x_t, sigma, GenCastContext(inputs, forcings))``.
    """

    noise_encoder: NoiseLevelEncoder
    grid2mesh: Grid2Mesh
    processor: MeshTransformer
    mesh2grid: Mesh2Grid
    channel_order: Int[Array, " cf"]
    n_outputs: int = eqx.field(static=True)
    n_input_channels: int = eqx.field(static=True)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: "CheckPoint | str | os.PathLike | io.IOBase",
        lat: ArrayLike,
        lon: ArrayLike,
        *,
        mesh2grid_backend: str = "trimesh",
        attention: str = "auto",
    ) -> "GenCastDenoiser":
        """Load an official checkpoint (a path, a file object or a loaded `CheckPoint`).

        `mesh2grid_backend`: see [`grid_mesh.containing_faces`][]; `attention`: ``"dense"``,
        ``"banded"`` or ``"auto"`` (see [`transformer`][assimilax_adapters.gencast.transformer]).
        """
        if not isinstance(checkpoint, CheckPoint):
            checkpoint = load_checkpoint(checkpoint)
        return cls.from_params(
            checkpoint.params,
            checkpoint.task_config,
            checkpoint.denoiser_architecture_config,
            checkpoint.noise_encoder_config,
            lat,
            lon,
            mesh2grid_backend=mesh2grid_backend,
            attention=attention,
        )

    @classmethod
    def from_params(
        cls,
        params,
        task: TaskConfig,
        arch,
        noise_encoder_config,
        lat: ArrayLike,
        lon: ArrayLike,
        *,
        mesh2grid_backend: str = "trimesh",
        attention: str = "auto",
    ) -> "GenCastDenoiser":
        """Map every parameter by name; raise `CheckpointFormatError` naming any mismatch."""
        check_mesh2grid_backend(mesh2grid_backend)
        n_out = num_outputs(task)
        if arch.node_output_size is not None and arch.node_output_size != n_out:
            raise CheckpointFormatError(
                f"denoiser_architecture_config.node_output_size is {arch.node_output_size} but "
                f"the task has {n_out} output channels."
            )
        n_channels = P.grid_input_channels(task)
        check_param_shapes(params, P.expected_param_shapes(arch, noise_encoder_config, n_channels, n_out))
        read = ParamReader(params)
        mesh = gencast_mesh(arch.mesh_size)
        lat, lon = np.asarray(lat), np.asarray(lon)
        st = arch.sparse_transformer_config
        noise_encoder = NoiseLevelEncoder(
            MLP.load(read, P.NOISE_ENCODER, len(noise_encoder_config.output_sizes), jax.nn.gelu),
            base_period=float(noise_encoder_config.base_period),
            num_frequencies=int(noise_encoder_config.num_frequencies),
            apply_log_first=bool(noise_encoder_config.apply_log_first),
        )
        out = cls(
            noise_encoder=noise_encoder,
            grid2mesh=Grid2Mesh.load(
                read, P.GRID2MESH, lat=lat, lon=lon, mesh=mesh,
                radius=grid2mesh_radius(mesh, arch.radius_query_fraction_edge_length),
                hidden_layers=arch.hidden_layers,
                aggregate_normalization=arch.grid2mesh_aggregate_normalization,
            ),
            processor=MeshTransformer.load(
                read, mesh=mesh, attention_k_hop=st.attention_k_hop, num_layers=st.num_layers,
                num_heads=st.num_heads, name=P.transformer_name(arch), attention=attention,
            ),
            mesh2grid=Mesh2Grid.load(
                read, P.MESH2GRID, lat=lat, lon=lon, mesh=mesh, hidden_layers=arch.hidden_layers,
                backend=mesh2grid_backend,
            ),
            channel_order=jnp.asarray(forcing_channel_order(task)),
            n_outputs=n_out,
            n_input_channels=n_channels,
        )
        if read.unused():  # cannot happen after check_param_shapes, kept as a guard
            raise CheckpointFormatError(f"Unused parameters: {read.unused()}.")
        return out

    @property
    def n_grid(self) -> int:
        return self.grid2mesh.grid_node_features.shape[0]

    def network(
        self, x_in: Float[Array, "g o"], sigma: Float[ArrayLike, ""], context: GenCastContext
    ) -> Float[Array, "g o"]:
        """The raw network ``F``: scaled noisy targets ``[n_grid, n_out]`` -> ``[n_grid, n_out]``."""
        cond = self.noise_encoder(sigma)
        late = jnp.concatenate([context.forcings, x_in.astype(context.forcings.dtype)], axis=-1)
        features = jnp.concatenate([context.inputs, late[:, self.channel_order]], axis=-1)
        if features.shape[-1] != self.n_input_channels:
            raise ValueError(
                f"The context and target give {features.shape[-1]} channels per grid node, the "
                f"checkpoint expects {self.n_input_channels}."
            )
        mesh, grid = self.grid2mesh(features, cond)
        mesh = self.processor(mesh, cond)
        return self.mesh2grid(mesh, grid, cond)

    def __call__(
        self, x_t: Float[Array, " d"], sigma: Float[ArrayLike, ""], context: GenCastContext
    ) -> Float[Array, " d"]:
        sigma = jnp.asarray(sigma, x_t.dtype)
        c_in = (sigma**2 + 1) ** -0.5
        c_out = sigma * (sigma**2 + 1) ** -0.5
        c_skip = 1 / (sigma**2 + 1)
        x = x_t.reshape(self.n_grid, self.n_outputs)
        raw = self.network(x * c_in, sigma, context)
        return (raw * c_out + x * c_skip).reshape(-1)

