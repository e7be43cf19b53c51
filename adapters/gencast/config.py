"""GenCast's configuration records, field for field as stored in the official checkpoints.

Field names, order, types and defaults follow the reference's ``TaskConfig``
(``graphcast.py``), ``SamplerConfig``, ``NoiseConfig`` and ``CheckPoint`` (``gencast.py``),
``NoiseEncoderConfig``, ``SparseTransformerConfig`` and ``DenoiserArchitectureConfig``
(``denoiser.py``), so that [`load_checkpoint`][assimilax_adapters.gencast.checkpoint.load_checkpoint]
maps a file's entries onto them by name.  Types drive decoding: ``tuple[str, ...]`` is a
variable-length tuple, ``tuple[int, int]`` a fixed-length one, ``X | None`` a field that may
be absent from the file (absent means ``None``).
"""

import dataclasses
from typing import Any

# Published GenCast variable sets (ERA5 names), as in the reference's ``gencast.TASK``.
TARGET_SURFACE_VARS = (
    "2m_temperature",
    "mean_sea_level_pressure",
    "10m_v_component_of_wind",
    "10m_u_component_of_wind",
    "total_precipitation_12hr",
    "sea_surface_temperature",
)
TARGET_SURFACE_NO_PRECIP_VARS = tuple(v for v in TARGET_SURFACE_VARS if "precipitation" not in v)
TARGET_ATMOSPHERIC_VARS = (
    "temperature",
    "geopotential",
    "u_component_of_wind",
    "v_component_of_wind",
    "vertical_velocity",
    "specific_humidity",
)
GENERATED_FORCING_VARS = (
    "year_progress_sin",
    "year_progress_cos",
    "day_progress_sin",
    "day_progress_cos",
)
STATIC_VARS = (
    "geopotential_at_surface",
    "land_sea_mask",
)
# Every ERA5 pressure-level variable name: decides which targets count once per level.
ALL_ATMOSPHERIC_VARS = (
    "potential_vorticity",
    "specific_rain_water_content",
    "specific_snow_water_content",
    "geopotential",
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
    "specific_humidity",
    "vertical_velocity",
    "vorticity",
    "divergence",
    "relative_humidity",
    "ozone_mass_mixing_ratio",
    "specific_cloud_liquid_water_content",
    "specific_cloud_ice_water_content",
    "fraction_of_cloud_cover",
)
PRESSURE_LEVELS_WEATHERBENCH_13 = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Inputs, targets, forcings, pressure levels and the input window (e.g. ``"24h"``)."""

    input_variables: tuple[str, ...]
    target_variables: tuple[str, ...]
    forcing_variables: tuple[str, ...]
    pressure_levels: tuple[int, ...]
    input_duration: str


GENCAST_TASK = TaskConfig(
    input_variables=TARGET_SURFACE_NO_PRECIP_VARS
    + TARGET_ATMOSPHERIC_VARS
    + GENERATED_FORCING_VARS
    + STATIC_VARS,
    target_variables=TARGET_SURFACE_VARS + TARGET_ATMOSPHERIC_VARS,
    forcing_variables=GENERATED_FORCING_VARS,
    pressure_levels=PRESSURE_LEVELS_WEATHERBENCH_13,
    input_duration="24h",
)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """DPM-Solver++(2S) with EDM churn: Karras levels ``sigma_max -> sigma_min`` (``rho``),
    churn ``S_churn`` applied for ``sigma`` in ``[churn_min, churn_max]`` with ``S_noise``."""

    max_noise_level: float = 80.0
    min_noise_level: float = 0.03
    num_noise_levels: int = 20
    rho: float = 7.0
    stochastic_churn_rate: float = 2.5
    churn_min_noise_level: float = 0.75
    churn_max_noise_level: float = float("inf")
    noise_level_inflation_factor: float = 1.05


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Training noise-level distribution (rho-spaced between min and max)."""

    training_noise_level_rho: float = 7.0
    training_max_noise_level: float = 88.0
    training_min_noise_level: float = 0.02


@dataclasses.dataclass(frozen=True)
class NoiseEncoderConfig:
    """Noise-level encoder: Fourier features of ``log sigma`` (if `apply_log_first`) at
    frequencies ``k / base_period``, ``k = 1..num_frequencies``, then an MLP of
    `output_sizes`."""

    apply_log_first: bool = True
    base_period: float = 16.0
    num_frequencies: int = 32
    output_sizes: tuple[int, int] = (32, 16)


@dataclasses.dataclass(frozen=True)
class SparseTransformerConfig:
    """The mesh processor: `num_layers` blocks of attention over `attention_k_hop`-hop mesh
    neighbourhoods (``num_heads`` heads, width `d_model`) and an MLP of `ffw_hidden` units.
    The ``block_*`` and ``mask_type`` fields tune TPU splash attention only.

    `upcast_attn_to_fp32` is carried by newer checkpoints written with google-deepmind/weathernext
    (absent, hence ``None``, in the graphcast-era files): attention's queries, keys and values in
    float32.  This adapter's attention runs in the dtype of its inputs (float32 unless the caller
    casts) with the softmax in float32, so in float32 both settings compute the same thing."""

    attention_k_hop: int
    d_model: int
    num_layers: int = 16
    num_heads: int = 4
    attention_type: str = "splash_mha"
    mask_type: str = "lazy"
    block_q: int = 1024
    block_kv: int = 512
    block_kv_compute: int = 256
    block_q_dkv: int = 512
    block_kv_dkv: int = 1024
    block_kv_dkv_compute: int = 1024
    ffw_winit_final_mult: float = 0.0
    attn_winit_final_mult: float = 0.0
    ffw_hidden: int = 2048
    name: str | None = None
    upcast_attn_to_fp32: bool | None = None


@dataclasses.dataclass(frozen=True)
class DenoiserArchitectureConfig:
    """The GenCast denoiser: mesh refinement `mesh_size`, MLP width `latent_size` and depth
    `hidden_layers`, grid2mesh radius ``radius_query_fraction_edge_length * max edge``."""

    sparse_transformer_config: SparseTransformerConfig
    mesh_size: int
    latent_size: int = 512
    hidden_layers: int = 1
    radius_query_fraction_edge_length: float = 0.6
    norm_conditioning_features: tuple[str, ...] = ("noise_level_encodings",)
    grid2mesh_aggregate_normalization: float | None = None
    node_output_size: int | None = None


@dataclasses.dataclass(frozen=True)
class CheckPoint:
    """An official GenCast checkpoint: parameters (``module path -> name -> array``) and
    the five configuration records, with a description and licence text."""

    description: str
    license: str
    params: dict[str, Any]
    task_config: TaskConfig
    denoiser_architecture_config: DenoiserArchitectureConfig
    sampler_config: SamplerConfig
    noise_config: NoiseConfig
    noise_encoder_config: NoiseEncoderConfig


def num_outputs(task: TaskConfig) -> int:
    """Output channels per grid node: ``n_surface + n_levels * n_atmospheric`` targets.

    Atmospheric targets are those named in `ALL_ATMOSPHERIC_VARS` (84 for GenCast:
    6 surface + 13 levels x 6 atmospheric).
    """
    targets = set(task.target_variables)
    n_atmos = len(targets & set(ALL_ATMOSPHERIC_VARS))
    return len(targets) - n_atmos + len(task.pressure_levels) * n_atmos


# Refinement level of the processor mesh of each published checkpoint (README of
# google-deepmind/graphcast).  GenCast's processor uses the finest level only.
PUBLISHED_MESH_SIZES = {
    "GenCast 0p25deg <2019": 6,
    "GenCast 0p25deg Operational <2022": 6,
    "GenCast 1p0deg <2019": 5,
    "GenCast 1p0deg Mini <2019": 4,
}
