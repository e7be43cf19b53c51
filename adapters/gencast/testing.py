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


def tiny_denoiser(seed: int = 0):
    """The tiny GenCast denoiser with the random parameters the golden files were made with."""
    from . import denoiser as D, params as P

    task, arch, nenc = tiny_task(), tiny_arch(), tiny_noise_encoder()
    params = P.random_params(P.checkpoint_param_shapes(task, arch, nenc), seed=seed)
    return D.GenCastDenoiser.from_params(params, task, arch, nenc, LAT, LON)


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


# ---------------------------------------------------------------------------------------
# A small task with every kind of variable, synthetic statistics and ERA5-layout data
# ---------------------------------------------------------------------------------------

FILTER_LAT = np.linspace(-90.0, 90.0, 7)  # equiangular with poles: 2 * (7 - 1) = 12 longitudes
FILTER_LON = np.arange(12) * 30.0
FILTER_LEVELS = (500, 850)


def filter_task(surface: tuple[str, ...] = ("2m_temperature", "sea_surface_temperature")) -> C.TaskConfig:
    """Surface, atmospheric, NaN-holding (SST), non-input (precipitation) targets, derived
    forcings and both static fields: every path of the emulator on a tiny grid.

    `surface`: the surface targets that are also inputs; [`PRESET_SURFACE`][] (GenCast's 5)
    makes a task that the reference experiment's networks can observe."""
    return C.TaskConfig(
        input_variables=tuple(surface) + (
            "temperature", "year_progress_sin", "day_progress_cos", "land_sea_mask", "geopotential_at_surface",
        ),
        target_variables=tuple(surface) + ("total_precipitation_12hr", "temperature"),
        forcing_variables=("year_progress_sin", "day_progress_cos"),
        pressure_levels=FILTER_LEVELS,
        input_duration="24h",
    )


PRESET_SURFACE = (
    "10m_u_component_of_wind", "10m_v_component_of_wind", "2m_temperature",
    "mean_sea_level_pressure", "sea_surface_temperature",
)


_CLIMATE = {  # name: (mean, std, diffs_std, min); per-level values get a level trend
    "2m_temperature": (288.0, 15.0, 2.0, 200.0),
    "10m_u_component_of_wind": (0.0, 5.0, 2.0, -40.0),
    "10m_v_component_of_wind": (0.0, 4.0, 2.0, -40.0),
    "mean_sea_level_pressure": (1.01e5, 1.0e3, 2.0e2, 9.5e4),
    "sea_surface_temperature": (290.0, 8.0, 0.3, 271.0),
    "total_precipitation_12hr": (1e-3, 2e-3, 2.5e-3, 0.0),
    "temperature": (250.0, 20.0, 1.5, 180.0),
    "geopotential": (5e4, 3e4, 500.0, -5e3),
    "year_progress_sin": (0.0, 0.7, 0.01, -1.0),
    "day_progress_cos": (0.0, 0.7, 1.4, -1.0),
    "land_sea_mask": (0.33, 0.46, 0.0, 0.0),
    "geopotential_at_surface": (3.7e3, 8.6e3, 0.0, -4e3),
}
STATS_LEVELS = (50, 300, 500, 700, 850, 1000)  # a superset, as in the official files


def synthetic_statistics_datasets() -> dict[str, "xr.Dataset"]:
    """The four statistics Datasets in the official layout (scalars, or per ``level``)."""
    import xarray as xr

    levels = np.asarray(STATS_LEVELS)
    out = {k: {} for k in ("mean", "std", "diffs_std", "minimum")}
    for name, values in _CLIMATE.items():
        for key, v in zip(out, values):
            if name in C.ALL_ATMOSPHERIC_VARS:
                out[key][name] = ("level", v * (1.0 + 0.1 * np.arange(levels.size)))
            else:
                out[key][name] = ((), np.float64(v))
    # A zero diffs std is meaningless (static fields): drop them as the official files do.
    for name in ("land_sea_mask", "geopotential_at_surface"):
        del out["diffs_std"][name]
    return {k: xr.Dataset(v, coords={"level": levels}) for k, v in out.items()}


def write_synthetic_statistics(folder) -> None:
    """Write the synthetic statistics in the official file names into `folder`."""
    from pathlib import Path

    from .normalization import FILES

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for key, ds in synthetic_statistics_datasets().items():
        ds.to_netcdf(folder / FILES[key])


def synthetic_era5(n_times: int = 4, seed: int = 0, start: str = "2019-01-01T00", lat=None, lon=None):
    """An ERA5-layout Dataset for `filter_task` (12 h steps, NaN SST over land)."""
    import xarray as xr

    lat = FILTER_LAT if lat is None else np.asarray(lat)
    lon = FILTER_LON if lon is None else np.asarray(lon)
    rng = np.random.default_rng(seed)
    times = np.datetime64(start) + np.arange(n_times) * np.timedelta64(12, "h")
    levels = np.asarray(FILTER_LEVELS)
    shape = (n_times, lat.size, lon.size)
    coslat = np.cos(np.deg2rad(lat))[None, :, None]
    smooth = np.cumsum(rng.standard_normal(shape), axis=0) * 0.5
    land = (np.sin(np.deg2rad(lon))[None, :] * np.cos(np.deg2rad(2 * lat))[:, None]) > 0.2
    t2m = 250.0 + 40.0 * coslat + 2.0 * smooth
    sst = np.where(land[None], np.nan, 271.0 + 25.0 * coslat + 0.3 * smooth)
    precip = np.abs(rng.standard_normal(shape)) * 1e-3
    temp = (220.0 + 30.0 * coslat)[:, None] + 2.0 * rng.standard_normal((n_times, levels.size, lat.size, lon.size)).cumsum(0) * 0.5
    temp = temp + 10.0 * np.arange(levels.size)[None, :, None, None]
    ds = xr.Dataset(
        {
            "2m_temperature": (("time", "lat", "lon"), t2m.astype(np.float32)),
            "sea_surface_temperature": (("time", "lat", "lon"), sst.astype(np.float32)),
            "total_precipitation_12hr": (("time", "lat", "lon"), precip.astype(np.float32)),
            "temperature": (("time", "level", "lat", "lon"), temp.astype(np.float32)),
            "10m_u_component_of_wind": (("time", "lat", "lon"), (3.0 * smooth).astype(np.float32)),
            "10m_v_component_of_wind": (("time", "lat", "lon"), (-2.0 * smooth).astype(np.float32)),
            "mean_sea_level_pressure": (("time", "lat", "lon"), (1.01e5 + 300.0 * smooth).astype(np.float32)),
            "land_sea_mask": (("lat", "lon"), land.astype(np.float32)),
            "geopotential_at_surface": (("lat", "lon"), (land * 2000.0 * coslat[0]).astype(np.float32)),
        },
        coords={"time": times, "lat": lat, "lon": lon, "level": levels},
    )
    return ds


def filter_checkpoint(
    seed: int = 0, sampler_config: "C.SamplerConfig | None" = None, task: "C.TaskConfig | None" = None
) -> C.CheckPoint:
    """A randomly initialised tiny GenCast for `task` (default `filter_task()`; the tiny architecture)."""
    from . import params as P

    task, arch, nenc = filter_task() if task is None else task, tiny_arch(), tiny_noise_encoder()
    params = P.random_params(P.checkpoint_param_shapes(task, arch, nenc), seed=seed)
    return C.CheckPoint(
        description="randomly initialised tiny GenCast (assimilax tests)",
        license="CC BY-NC-SA 4.0 does not apply: random weights",
        params=params,
        task_config=task,
        denoiser_architecture_config=arch,
        sampler_config=C.SamplerConfig() if sampler_config is None else sampler_config,
        noise_config=C.NoiseConfig(),
        noise_encoder_config=nenc,
    )


# ---------------------------------------------------------------------------------------
# The reference experiment's shared data (statistics, observation networks)
# ---------------------------------------------------------------------------------------


def reference_data_dir():
    """The folder of the reference experiment's data, or ``None`` where it is absent.

    ``$ASSIMILAX_GENCAST_REFERENCE`` if set, else ``../shared/gencast-reference`` beside the
    repository (where CI and the project's machines keep it; a user's install has none).  The
    repository is the working directory (pytest runs there) or, for an editable install,
    the one this file is in; a regular install lives in site-packages, far from it.  It
    holds ``stats/`` (GenCast's official statistics on 13 levels) and ``observations/`` (the
    observation networks of Savary, Rozet & Louppe, ICML 2026); it is never copied into the
    repository.
    """
    import os
    from pathlib import Path

    env = os.environ.get("ASSIMILAX_GENCAST_REFERENCE")
    if env:
        return Path(env) if Path(env).is_dir() else None
    for repository in (Path.cwd(), Path(__file__).resolve().parents[2]):
        folder = repository.parent / "shared" / "gencast-reference"
        if folder.is_dir():
            return folder
    return None
