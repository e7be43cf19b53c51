"""GenCast's grid-to-mesh encoder and mesh-to-grid decoder: one-step interaction networks.

Both follow the reference's ``DeepTypedGraphNet`` (``deep_typed_graph_net.py``,
``typed_graph_net.py``) as GenCast configures it: swish MLPs with ``hidden_layers`` hidden
layers of width ``L``; after each MLP a LayerNorm without scale/offset followed by
``LinearNormConditioning`` (scale ``1 + a`` and offset ``b`` from a linear map of the
noise-level encoding); one message-passing step (interaction network) with sum aggregation
over incoming edges and residual connections on every node and edge set.

One step on a bipartite graph ``senders -> receivers`` with edge latents ``e``, sender
latents ``s`` and receiver latents ``r``:

    e' = e + phi_e([e, s[snd], r[rcv]])
    r' = r + phi_r([r, sum_{edges into r} phi_e(...) / k])
    s' = s + phi_s(s)                      (senders receive nothing)

``k`` is ``grid2mesh_aggregate_normalization`` (grid2mesh only; 1 when unset).  The
grid2mesh network first embeds the structural features: edges ``[|d|, d]`` (4), grid nodes
``[inputs, cos lat, cos lon, sin lon]`` and mesh nodes ``[0 ... 0, cos lat, cos lon, sin lon]``
(zeros in place of the inputs, so both embedders have the same width).  The mesh2grid
network embeds only its edges and ends with a decoder MLP (no norm) on the grid nodes.

Modules act on one sample: ``[nodes, features]`` arrays and a ``[C]`` conditioning vector.
Parameters come from a checkpoint's parameter dict by name (see
[`params`][assimilax_adapters.gencast.params]).
"""

from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from . import grid_mesh as gm
from .mesh import TriangularMesh

LAYER_NORM_EPS = 1e-5  # haiku's LayerNorm default


class ParamReader:
    """Hands out a checkpoint's modules by path and records which ones were taken.

    [`unused`][] lists what no module asked for, so a loader can prove every parameter of
    the file is used.
    """

    def __init__(self, params: Mapping[str, Mapping[str, np.ndarray]]):
        self._params = params
        self._taken: set[str] = set()

    def __call__(self, module: str) -> Mapping[str, np.ndarray]:
        if module not in self._params:
            raise KeyError(f"The checkpoint has no parameters for module {module!r}.")
        self._taken.add(module)
        return self._params[module]

    def unused(self) -> list[str]:
        return sorted(set(self._params) - self._taken)


class Linear(eqx.Module):
    """``y = x w + b`` (haiku's ``Linear``: ``w`` is ``[in, out]``; ``b`` optional)."""

    w: Float[Array, "i o"]
    b: Float[Array, " o"] | None

    @classmethod
    def load(cls, params: Mapping[str, np.ndarray]) -> "Linear":
        b = params.get("b")
        return cls(jnp.asarray(params["w"]), None if b is None else jnp.asarray(b))

    def __call__(self, x: Float[Array, "*n i"]) -> Float[Array, "*n o"]:
        y = jnp.dot(x, self.w)
        return y if self.b is None else y + self.b


class MLP(eqx.Module):
    """Linear layers with `activation` between them (not after the last)."""

    layers: tuple[Linear, ...]
    activation: Callable[[Array], Array] = eqx.field(static=True)

    @classmethod
    def load(cls, read: ParamReader, prefix: str, n_layers: int, activation) -> "MLP":
        return cls(
            tuple(Linear.load(read(f"{prefix}/~/linear_{i}")) for i in range(n_layers)), activation
        )

    def __call__(self, x: Float[Array, "*n i"]) -> Float[Array, "*n o"]:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.activation(x)
        return x


def layer_norm(x: Float[Array, "*n f"]) -> Float[Array, "*n f"]:
    """LayerNorm over the last axis without scale or offset (eps ``1e-5``)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    variance = jnp.var(x, axis=-1, keepdims=True)
    return jax.lax.rsqrt(variance + jnp.asarray(LAYER_NORM_EPS, variance.dtype)) * (x - mean)


class LinearNormConditioning(eqx.Module):
    """``x (1 + a) + b`` with ``[a, b] = W c + beta`` from the conditioning vector ``c``."""

    linear: Linear

    @classmethod
    def load(cls, read: ParamReader, module: str) -> "LinearNormConditioning":
        return cls(Linear.load(read(module)))

    def __call__(self, x: Float[Array, "*n f"], cond: Float[Array, " c"]) -> Float[Array, "*n f"]:
        scale_minus_one, offset = jnp.split(self.linear(cond), 2, axis=-1)
        return x * (scale_minus_one + 1.0) + offset


class ConditionedMLP(eqx.Module):
    """A swish MLP, then LayerNorm and ``LinearNormConditioning`` (the GNN's building block)."""

    mlp: MLP
    norm: LinearNormConditioning

    @classmethod
    def load(cls, read: ParamReader, scope: str, net: str, hidden_layers: int) -> "ConditionedMLP":
        return cls(
            MLP.load(read, f"{scope}/{net}_mlp", hidden_layers + 1, jax.nn.swish),
            LinearNormConditioning.load(read, f"{scope}/{net}_norm_conditioning/linear"),
        )

    def __call__(self, x: Float[Array, "n i"], cond: Float[Array, " c"]) -> Float[Array, "n o"]:
        return self.norm(layer_norm(self.mlp(x)), cond)


def _aggregate(
    messages: Float[Array, "e f"], receivers: Int[Array, " e"], n: int, normalization: float | None
) -> Float[Array, "n f"]:
    out = jax.ops.segment_sum(messages.astype(jnp.float32), receivers, num_segments=n)
    if normalization:
        out = out / normalization
    return out.astype(messages.dtype)


class Grid2Mesh(eqx.Module):
    """The encoder: embeds grid and mesh nodes and grid->mesh edges, one message-passing step.

    Returns the latent mesh nodes (which received the messages) and the latent grid nodes
    (updated by their own MLP), both ``[*, L]``.
    """

    edge_embed: ConditionedMLP
    grid_embed: ConditionedMLP
    mesh_embed: ConditionedMLP
    edge_update: ConditionedMLP
    grid_update: ConditionedMLP
    mesh_update: ConditionedMLP
    senders: Int[Array, " e"]  # grid node of each edge
    receivers: Int[Array, " e"]  # mesh node of each edge
    edge_features: Float[Array, "e 4"]
    grid_node_features: Float[Array, "g 3"]
    mesh_node_features: Float[Array, "m 3"]
    aggregate_normalization: float | None = eqx.field(static=True)

    @classmethod
    def load(
        cls,
        read: ParamReader,
        scope: str,
        *,
        lat: np.ndarray,
        lon: np.ndarray,
        mesh: TriangularMesh,
        radius: float,
        hidden_layers: int,
        aggregate_normalization: float | None,
    ) -> "Grid2Mesh":
        """Build the graph for the grid ``lat x lon`` and take the weights under `scope`."""
        lat32, lon32 = np.asarray(lat, np.float32), np.asarray(lon, np.float32)
        grid_idx, mesh_idx = gm.radius_query_edges(lat32, lon32, mesh, radius)
        g_lat, g_lon = gm.grid_node_lat_lon(lat32, lon32)
        m_lat, m_lon = gm.mesh_node_lat_lon(mesh)
        g_feat, m_feat, e_feat = gm.bipartite_spatial_features(
            senders_lat=g_lat.astype(np.float32), senders_lon=g_lon.astype(np.float32),
            receivers_lat=m_lat, receivers_lon=m_lon, senders=grid_idx, receivers=mesh_idx,
        )
        net = lambda name: ConditionedMLP.load(read, scope, name, hidden_layers)  # noqa: E731
        return cls(
            edge_embed=net("encoder_edges_grid2mesh"),
            grid_embed=net("encoder_nodes_grid_nodes"),
            mesh_embed=net("encoder_nodes_mesh_nodes"),
            edge_update=net("processor_edges_0_grid2mesh"),
            grid_update=net("processor_nodes_0_grid_nodes"),
            mesh_update=net("processor_nodes_0_mesh_nodes"),
            senders=jnp.asarray(grid_idx, jnp.int32),
            receivers=jnp.asarray(mesh_idx, jnp.int32),
            edge_features=jnp.asarray(e_feat, jnp.float32),
            grid_node_features=jnp.asarray(g_feat, jnp.float32),
            mesh_node_features=jnp.asarray(m_feat, jnp.float32),
            aggregate_normalization=aggregate_normalization,
        )

    @property
    def n_mesh(self) -> int:
        return self.mesh_node_features.shape[0]

    def __call__(
        self, grid_inputs: Float[Array, "g f"], cond: Float[Array, " c"]
    ) -> tuple[Float[Array, "m l"], Float[Array, "g l"]]:
        dtype = grid_inputs.dtype
        grid = jnp.concatenate([grid_inputs, self.grid_node_features.astype(dtype)], axis=-1)
        dummy = jnp.zeros((self.n_mesh, grid_inputs.shape[-1]), dtype)
        mesh = jnp.concatenate([dummy, self.mesh_node_features.astype(dtype)], axis=-1)
        edges = self.edge_embed(self.edge_features.astype(dtype), cond)
        grid = self.grid_embed(grid, cond)
        mesh = self.mesh_embed(mesh, cond)

        messages = self.edge_update(
            jnp.concatenate([edges, grid[self.senders], mesh[self.receivers]], axis=-1), cond
        )
        received = _aggregate(messages, self.receivers, self.n_mesh, self.aggregate_normalization)
        new_mesh = self.mesh_update(jnp.concatenate([mesh, received], axis=-1), cond)
        new_grid = self.grid_update(grid, cond)
        # (The updated edge latents, edges + messages, are not used further.)
        return mesh + new_mesh, grid + new_grid


class Mesh2Grid(eqx.Module):
    """The decoder: embeds the mesh->grid edges, one message-passing step, grid-node MLP.

    `mesh_update` is the reference's update of the mesh nodes (which receive nothing in
    this graph); its output is discarded there as here, so it is loaded but not evaluated.
    """

    edge_embed: ConditionedMLP
    edge_update: ConditionedMLP
    grid_update: ConditionedMLP
    mesh_update: ConditionedMLP
    decoder: MLP
    senders: Int[Array, " e"]  # mesh node of each edge
    receivers: Int[Array, " e"]  # grid node of each edge
    edge_features: Float[Array, "e 4"]

    @classmethod
    def load(
        cls,
        read: ParamReader,
        scope: str,
        *,
        lat: np.ndarray,
        lon: np.ndarray,
        mesh: TriangularMesh,
        hidden_layers: int,
        backend: str = "trimesh",
    ) -> "Mesh2Grid":
        """Build the graph (`backend`: see [`grid_mesh.containing_faces`][]) and the weights."""
        lat32, lon32 = np.asarray(lat, np.float32), np.asarray(lon, np.float32)
        grid_idx, mesh_idx = gm.in_mesh_triangle_edges(lat32, lon32, mesh, backend=backend)
        g_lat, g_lon = gm.grid_node_lat_lon(lat32, lon32)
        m_lat, m_lon = gm.mesh_node_lat_lon(mesh)
        _, _, e_feat = gm.bipartite_spatial_features(
            senders_lat=m_lat, senders_lon=m_lon,
            receivers_lat=g_lat.astype(np.float32), receivers_lon=g_lon.astype(np.float32),
            senders=mesh_idx, receivers=grid_idx,
        )
        net = lambda name: ConditionedMLP.load(read, scope, name, hidden_layers)  # noqa: E731
        return cls(
            edge_embed=net("encoder_edges_mesh2grid"),
            edge_update=net("processor_edges_0_mesh2grid"),
            grid_update=net("processor_nodes_0_grid_nodes"),
            mesh_update=net("processor_nodes_0_mesh_nodes"),
            decoder=MLP.load(
                read, f"{scope}/decoder_nodes_grid_nodes_mlp", hidden_layers + 1, jax.nn.swish
            ),
            senders=jnp.asarray(mesh_idx, jnp.int32),
            receivers=jnp.asarray(grid_idx, jnp.int32),
            edge_features=jnp.asarray(e_feat, jnp.float32),
        )

    def __call__(
        self, mesh: Float[Array, "m l"], grid: Float[Array, "g l"], cond: Float[Array, " c"]
    ) -> Float[Array, "g o"]:
        edges = self.edge_embed(self.edge_features.astype(grid.dtype), cond)
        messages = self.edge_update(
            jnp.concatenate([edges, mesh[self.senders], grid[self.receivers]], axis=-1), cond
        )
        received = jax.ops.segment_sum(messages, self.receivers, num_segments=grid.shape[0])
        grid = grid + self.grid_update(jnp.concatenate([grid, received], axis=-1), cond)
        return self.decoder(grid)
