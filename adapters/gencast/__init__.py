"""GenCast (Price et al., Nature 2024) in JAX/Equinox, reading the official checkpoints.

In place so far (see ``README.md`` in this folder for the plan):

- [`mesh`][assimilax_adapters.gencast.mesh]: icosahedral meshes, the multi-mesh, GenCast's
  banded finest mesh ([`gencast_mesh`][]).
- [`grid_mesh`][assimilax_adapters.gencast.grid_mesh]: grid <-> mesh connectivity and the
  structural node/edge features.
- [`config`][assimilax_adapters.gencast.config]: the configuration records of a checkpoint.
- [`checkpoint`][assimilax_adapters.gencast.checkpoint]: [`load_checkpoint`][] /
  [`save_checkpoint`][] for the official ``.npz`` format.
- [`params`][assimilax_adapters.gencast.params]: the checkpoint's parameter names and shapes.
- [`graph_net`][assimilax_adapters.gencast.graph_net]: the grid2mesh / mesh2grid networks.
- [`transformer`][assimilax_adapters.gencast.transformer]: the k-hop masked mesh transformer.
- [`denoiser`][assimilax_adapters.gencast.denoiser]: [`GenCastDenoiser`][], an
  `assimilax.AbstractDenoiser` loaded from a checkpoint.
- [`normalization`][assimilax_adapters.gencast.normalization]: the statistics files and the residual target map.
- [`data`][assimilax_adapters.gencast.data]: progress forcings, ERA5-layout datasets.
- [`sampler`][assimilax_adapters.gencast.sampler]: GenCast's sampler and spherical noise.
- [`emulator`][assimilax_adapters.gencast.emulator]: [`GenCastEmulator`][], the core emulator.
- [`observations`][assimilax_adapters.gencast.observations]: lat-lon observation operators.
- [`networks`][assimilax_adapters.gencast.networks]: the reference experiment's observation networks and the user's files.
- [`experiment`][assimilax_adapters.gencast.experiment]: the reference experiment (`assimilax gencast`).
- [`testing`][assimilax_adapters.gencast.testing]: tiny configurations and synthetic data for tests.
"""

from . import (
    checkpoint as checkpoint,
    config as config,
    data as data,
    denoiser as denoiser,
    emulator as emulator,
    networks as networks,
    normalization as normalization,
    observations as observations,
    sampler as sampler,
    graph_net as graph_net,
    grid_mesh as grid_mesh,
    mesh as mesh,
    params as params,
    testing as testing,
    transformer as transformer,
)
from .checkpoint import (
    CheckpointFormatError as CheckpointFormatError,
    load_checkpoint as load_checkpoint,
    save_checkpoint as save_checkpoint,
)
from .config import (
    CheckPoint as CheckPoint,
    DenoiserArchitectureConfig as DenoiserArchitectureConfig,
    NoiseConfig as NoiseConfig,
    NoiseEncoderConfig as NoiseEncoderConfig,
    SamplerConfig as SamplerConfig,
    SparseTransformerConfig as SparseTransformerConfig,
    TaskConfig as TaskConfig,
)
from .mesh import TriangularMesh as TriangularMesh, gencast_mesh as gencast_mesh
from .denoiser import (
    GenCastContext as GenCastContext,
    GenCastDenoiser as GenCastDenoiser,
    stack_dataset as stack_dataset,
)
from .params import expected_param_shapes as expected_param_shapes
from .emulator import GenCastEmulator as GenCastEmulator
from .normalization import Statistics as Statistics
from .sampler import SphericalNoise as SphericalNoise, gencast_sampler as gencast_sampler
