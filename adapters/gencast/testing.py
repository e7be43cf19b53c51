"""A tiny GenCast configuration and synthetic inputs, for tests and examples.

The golden files under ``tests/data/gencast/`` were produced by DeepMind's reference
implementation (google-deepmind/graphcast at 08cf736, run with haiku in a scratch environment)
for exactly this configuration, these parameters (`params.random_params(..., seed=0)`) and these
inputs (`tiny_data`, NumPy PCG64 seed 0): a 6 x 12 irregular grid (no point on a mesh mirror
plane, so the mesh2grid faces are unambiguous), mesh refinement 1 (42 nodes), latent size 16,
2 transformer layers with 2 heads and a 2-hop attention mask, ``grid2mesh_aggregate_normalization``
4, noise encoder with 4 frequencies and sizes (8, 8), and a batch of two noise levels.
"""

import numpy as np

from . import config as C

LAT = np.array([-80.0, -47.0, -13.0, 21.0, 55.0, 83.0], np.float32)
LON = (7.0 + 31.0 * np.arange(12)).astype(np.float32)
LEVELS = (500, 850)
SIGMA = np.array([0.5, 20.0], np.float32)
BATCH = 2


def tiny_task() -> C.TaskConfig:
    return C.TaskConfig(
        input_variables=(
            "2m_temperature", "temperature", "day_progress_cos", "year_progress_sin", "land_sea_mask",
        ),
        target_variables=("2m_temperature", "temperature"),
        forcing_variables=("day_progress_cos", "year_progress_sin"),
        pressure_levels=LEVELS,
        input_duration="24h",
    )


def tiny_arch() -> C.DenoiserArchitectureConfig:
    st = C.SparseTransformerConfig(
        attention_k_hop=2, d_model=16, num_layers=2, num_heads=2, attention_type="mha", ffw_hidden=32
    )
    return C.DenoiserArchitectureConfig(
        sparse_transformer_config=st, mesh_size=1, latent_size=16, hidden_layers=1,
        grid2mesh_aggregate_normalization=4.0,
    )


def tiny_noise_encoder() -> C.NoiseEncoderConfig:
    return C.NoiseEncoderConfig(num_frequencies=4, output_sizes=(8, 8))


def tiny_data(seed: int = 0):
    """``(inputs, targets, forcings)``: ``{name: (dims, float32 array)}`` with a batch axis."""
    rng = np.random.default_rng(seed)
    g = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    nlat, nlon = len(LAT), len(LON)
    b = BATCH
    inputs = {
        "2m_temperature": (("batch", "time", "lat", "lon"), g(b, 2, nlat, nlon)),
        "temperature": (("batch", "time", "lat", "lon", "level"), g(b, 2, nlat, nlon, 2)),
        "day_progress_cos": (("batch", "time", "lat", "lon"), g(b, 2, nlat, nlon)),
        "year_progress_sin": (("batch", "time", "lat", "lon"), g(b, 2, nlat, nlon)),
        "land_sea_mask": (("lat", "lon"), g(nlat, nlon)),
    }
    targets = {
        "2m_temperature": (("batch", "time", "lat", "lon"), g(b, 1, nlat, nlon)),
        "temperature": (("batch", "time", "lat", "lon", "level"), g(b, 1, nlat, nlon, 2)),
    }
    forcings = {
        "day_progress_cos": (("batch", "time", "lat", "lon"), g(b, 1, nlat, nlon)),
        "year_progress_sin": (("batch", "time", "lat", "lon"), g(b, 1, nlat, nlon)),
    }
    return inputs, targets, forcings
