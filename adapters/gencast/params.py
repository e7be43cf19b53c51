"""The parameter tree of a GenCast checkpoint: every module path, parameter name and shape.

A checkpoint stores its parameters as ``{haiku module path: {name: array}}``.  This module
states, for a configuration, exactly which entries the denoiser must find; the loader
([`denoiser`][assimilax_adapters.gencast.denoiser]) refuses a file with any entry missing,
extra or of another shape.  The names are those the reference's haiku modules create
(``denoiser.py``, ``deep_typed_graph_net.py``, ``sparse_transformer.py``, ``mlp.py`` of
google-deepmind/graphcast) and were confirmed against a haiku ``init`` of the reference
denoiser (``tests/test_gencast_params.py`` holds the tree of a tiny configuration).

Notation: ``L`` = `latent_size`, ``h`` = `hidden_layers`, ``C`` = the width of the noise
encoding (last of ``noise_encoder_config.output_sizes``), ``F`` = grid input channels.

- ``fourier_features_mlp/~/mlp/~/linear_{i}``: the noise-level encoder, an MLP on
  ``2 num_frequencies`` Fourier features.
- ``grid2mesh_gnn/~_networks_builder/<net>_mlp/~/linear_{0..h}`` and
  ``<net>_norm_conditioning/linear`` (``C -> 2 x width``) for ``<net>`` in
  ``encoder_edges_grid2mesh`` (4 inputs), ``encoder_nodes_{grid,mesh}_nodes`` (``F + 3``
  inputs; mesh nodes get ``F`` zeros), ``processor_edges_0_grid2mesh`` (``3L``),
  ``processor_nodes_0_grid_nodes`` (``L``: grid nodes receive nothing),
  ``processor_nodes_0_mesh_nodes`` (``2L``).
- ``mesh2grid_gnn/~_networks_builder/``: ``encoder_edges_mesh2grid`` (4),
  ``processor_edges_0_mesh2grid`` (``3L``), ``processor_nodes_0_grid_nodes`` (``2L``),
  ``processor_nodes_0_mesh_nodes`` (``L``; computed by the reference but its output is not
  used), and ``decoder_nodes_grid_nodes_mlp`` (no norm, last layer ``node_output_size``).
- ``mesh_transformer/~/<name>/block_{ii}/``: ``block_{ii}_norm_conditioning/linear`` (before
  attention) and ``block_{ii}_norm_conditioning_1/linear`` (before the MLP), ``mha_proj_{q,k,v}``
  (``w`` only), ``mha_final``, ``ffw_up``, ``ffw_down``; then
  ``<name>_final_norm_conditioning/linear``.  ``<name>`` is ``sparse_transformer_config.name``
  or ``"transformer"``.
"""

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .config import (
    ALL_ATMOSPHERIC_VARS,
    STATIC_VARS,
    DenoiserArchitectureConfig,
    NoiseEncoderConfig,
    TaskConfig,
    num_outputs,
)

ParamShapes = dict[str, dict[str, tuple[int, ...]]]

# GenCast steps 12 hours at a time; the inputs are the states in the input window.
TIMESTEP = pd.Timedelta("12h")
# Structural node features (cos lat, cos lon, sin lon) and edge features (|d|, d).
NODE_STRUCTURAL_FEATURES = 3
EDGE_STRUCTURAL_FEATURES = 4

GRID2MESH = "grid2mesh_gnn/~_networks_builder"
MESH2GRID = "mesh2grid_gnn/~_networks_builder"
NOISE_ENCODER = "fourier_features_mlp/~/mlp"


def num_input_steps(task: TaskConfig) -> int:
    """Number of past states the model sees: ``input_duration / 12h`` (2 for GenCast)."""
    steps = pd.Timedelta(task.input_duration) / TIMESTEP
    if steps != int(steps) or steps < 1:
        raise ValueError(f"input_duration {task.input_duration!r} is not a multiple of 12h.")
    return int(steps)


def variable_channels(name: str, task: TaskConfig, n_times: int) -> int:
    """Channels one variable contributes when stacked: times x levels (static: 1)."""
    if name in STATIC_VARS:
        return 1
    levels = len(task.pressure_levels) if name in ALL_ATMOSPHERIC_VARS else 1
    return n_times * levels


def grid_input_channels(task: TaskConfig) -> int:
    """Channels per grid node fed to the network: inputs, forcings and the noisy targets.

    Inputs at every input step (static fields once), the forcings at the target time and
    the targets (one step).  264 for GenCast (176 + 4 + 84).
    """
    n_in = num_input_steps(task)
    inputs = sum(variable_channels(v, task, n_in) for v in task.input_variables)
    forcings = sum(variable_channels(v, task, 1) for v in task.forcing_variables)
    return inputs + forcings + num_outputs(task)


def _linear(in_size: int, out_size: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    return {"w": (in_size, out_size), "b": (out_size,)} if bias else {"w": (in_size, out_size)}


def mlp_shapes(prefix: str, in_size: int, sizes: list[int]) -> ParamShapes:
    """A haiku ``MLP``: ``{prefix}/~/linear_{i}`` with the given layer sizes."""
    out: ParamShapes = {}
    for i, size in enumerate(sizes):
        out[f"{prefix}/~/linear_{i}"] = _linear(in_size, size)
        in_size = size
    return out


def _conditioned_mlp(
    scope: str, net: str, in_size: int, arch: DenoiserArchitectureConfig, cond: int
) -> ParamShapes:
    """An MLP followed by LayerNorm (no parameters) and ``LinearNormConditioning``."""
    latent = arch.latent_size
    out = mlp_shapes(f"{scope}/{net}_mlp", in_size, [latent] * (arch.hidden_layers + 1))
    out[f"{scope}/{net}_norm_conditioning/linear"] = _linear(cond, 2 * latent)
    return out


def transformer_name(arch: DenoiserArchitectureConfig) -> str:
    """The haiku name of the sparse transformer module (``"transformer"`` by default)."""
    return arch.sparse_transformer_config.name or "transformer"


def expected_param_shapes(
    arch: DenoiserArchitectureConfig,
    noise_encoder: NoiseEncoderConfig,
    n_grid_channels: int,
    n_outputs: int | None = None,
) -> ParamShapes:
    """Every parameter of the GenCast denoiser: ``{module path: {name: shape}}``.

    `n_grid_channels` is the number of grid input channels ([`grid_input_channels`][]);
    `n_outputs` defaults to ``arch.node_output_size``.
    """
    if n_outputs is None:
        n_outputs = arch.node_output_size
    if n_outputs is None:
        raise ValueError("n_outputs is needed when the config has no node_output_size.")
    latent, cond = arch.latent_size, noise_encoder.output_sizes[-1]
    st = arch.sparse_transformer_config
    if st.d_model != latent:
        raise ValueError(
            f"sparse_transformer_config.d_model ({st.d_model}) must equal latent_size ({latent})."
        )
    if st.d_model % st.num_heads:
        raise ValueError(f"num_heads ({st.num_heads}) must divide d_model ({st.d_model}).")

    shapes = mlp_shapes(NOISE_ENCODER, 2 * noise_encoder.num_frequencies, list(noise_encoder.output_sizes))

    node_in = n_grid_channels + NODE_STRUCTURAL_FEATURES
    for net, in_size in [
        ("encoder_edges_grid2mesh", EDGE_STRUCTURAL_FEATURES),
        ("encoder_nodes_grid_nodes", node_in),
        ("encoder_nodes_mesh_nodes", node_in),
        ("processor_edges_0_grid2mesh", 3 * latent),
        ("processor_nodes_0_grid_nodes", latent),
        ("processor_nodes_0_mesh_nodes", 2 * latent),
    ]:
        shapes.update(_conditioned_mlp(GRID2MESH, net, in_size, arch, cond))

    name = transformer_name(arch)
    scope = f"mesh_transformer/~/{name}"
    for i in range(st.num_layers):
        block = f"{scope}/block_{i:02d}"
        shapes[f"{block}/block_{i:02d}_norm_conditioning/linear"] = _linear(cond, 2 * latent)
        shapes[f"{block}/block_{i:02d}_norm_conditioning_1/linear"] = _linear(cond, 2 * latent)
        for qkv in "qkv":
            shapes[f"{block}/mha_proj_{qkv}"] = _linear(latent, latent, bias=False)
        shapes[f"{block}/mha_final"] = _linear(latent, latent)
        shapes[f"{block}/ffw_up"] = _linear(latent, st.ffw_hidden)
        shapes[f"{block}/ffw_down"] = _linear(st.ffw_hidden, latent)
    shapes[f"{scope}/{name}_final_norm_conditioning/linear"] = _linear(cond, 2 * latent)

    for net, in_size in [
        ("encoder_edges_mesh2grid", EDGE_STRUCTURAL_FEATURES),
        ("processor_edges_0_mesh2grid", 3 * latent),
        ("processor_nodes_0_grid_nodes", 2 * latent),
        ("processor_nodes_0_mesh_nodes", latent),
    ]:
        shapes.update(_conditioned_mlp(MESH2GRID, net, in_size, arch, cond))
    shapes.update(
        mlp_shapes(
            f"{MESH2GRID}/decoder_nodes_grid_nodes_mlp",
            latent,
            [latent] * arch.hidden_layers + [n_outputs],
        )
    )
    return shapes


def checkpoint_param_shapes(
    task: TaskConfig, arch: DenoiserArchitectureConfig, noise_encoder: NoiseEncoderConfig
) -> ParamShapes:
    """[`expected_param_shapes`][] for a checkpoint's task (input channels and outputs)."""
    return expected_param_shapes(
        arch, noise_encoder, grid_input_channels(task), num_outputs(task)
    )


def count_params(shapes: Mapping[str, Mapping[str, tuple[int, ...]]]) -> int:
    """Total number of scalars in a parameter-shape tree."""
    return sum(math.prod(s) for names in shapes.values() for s in names.values())


def random_params(
    shapes: Mapping[str, Mapping[str, tuple[int, ...]]], seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """Random float32 parameters for `shapes` (tests and examples; not a trained model).

    Weights ``w ~ N(0, 1 / fan_in)``, biases ``b ~ N(0, 0.1^2)``, drawn with NumPy's PCG64
    in sorted module/name order, so a seed gives the same tree on every platform.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, np.ndarray]] = {}
    for module in sorted(shapes):
        out[module] = {}
        for name in sorted(shapes[module]):
            shape = tuple(shapes[module][name])
            scale = 1.0 / math.sqrt(shape[0]) if name == "w" else 0.1
            out[module][name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return out
