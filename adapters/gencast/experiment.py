"""The reference experiment on GenCast: the main job of ``assimilax gencast``.

Given a GenCast checkpoint, its statistics and an ERA5-layout truth (NetCDF or Zarr, 12 h
steps), the job

1. reads the truth states ``x[0..T]`` lazily, one time at a time, from NetCDF or Zarr (the
   first two are the initial history, given to every particle: GenCast ensembles start from
   one analysis);
2. draws observations of the truth at each later time: by default 2 m temperature and
   temperature on all levels at every 4th grid point, noise 0.1 in normalised units;
3. runs the FA-APF (Dirac weights at the predictive mean, ESS-band tempering, MMPS-guided
   proposals drawn with 40 levels of DPM-Solver++(3M) on the reference's Karras levels
   2e-5..88, rho 6 (``--preset reference``: the reference's 32 levels of third-order
   Adams-Bashforth with 2 Langevin corrector steps); optionally guided only below a noise level)
   and the unconditional GenCast ensemble (GenCast's own DPM-Solver++(2S) with churn, from
   the checkpoint's sampler config).  With ``block_tiles`` the FA-APF is replaced by the
   block FA-APF ([`assimilax.BlockFAAPF`][assimilax.filters.block_fa_apf.BlockFAAPF], labelled ``fa-apf-block``): weights, tempering
   and resampling per lat-lon tile ([`assimilax.localisation.tile_blocks`][]), same sampler and guidance;
4. writes ``gencast_assimilation.nc`` (ensemble mean and spread fields, truth,
   observations, per-cycle skill and spread per variable and level, latitude-weighted and
   not, CRPS too when the ensembles are kept, ESS, tempering alpha, timings; the
   configuration in the attributes), figures (``skill_spread.png``, ``maps.png``: truth /
   analysis mean / forecast mean) and ``summary.txt``; each filter checkpoints to
   ``checkpoints/<filter>.npz`` and resumes.

With ``keep="moments"`` only each cycle's ensemble mean and variance come back to the host
(2 states per cycle instead of N): every output above but the CRPS is the same.
"""

import dataclasses
import json
import math
import numbers
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Float

import assimilax as ax
from assimilax.assimilate import FilterMoments
from assimilax.localisation import tile_blocks

from assimilax.errors import FileFormatError, InvalidConfiguration

from ._files import READ_ERRORS, open_dataset
from .checkpoint import load_checkpoint
from .data import check_times, check_truth, prepare_dataset
from .emulator import GenCastEmulator
from .networks import PRESETS, Network, network_from_file, network_observation_model, reference_networks, regrid_network
from .normalization import Statistics
from .observations import Field, Normalised, all_levels, every_nth, observation_model
from .sampler import gencast_sampler

FILTERS = ("fa-apf", "forecast")
SOLVERS = ax.SOLVER_NAMES
KEEP = ("ensemble", "moments")
OBSERVATIONS = ("every-nth",) + PRESETS + ("files",)
MMPS_SOLVERS = ("cg", "bicgstab")
# The filter settings of the reference experiment (Savary, Rozet & Louppe, ICML 2026: its
# config/filtering.yaml): `GenCastExperiment.with_preset("reference")`, `--preset reference`.
PRESET_SETTINGS = {
    "reference": dict(
        particles=256, ess_band=(50 / 256, 60 / 256), levels=32, sigma_max=88.0, sigma_min=2e-5,
        rho=6.0, solver="ab3", corrector_steps=2, langevin_delta=0.2, mmps_solver="bicgstab",
        cg_iterations=2,
    ),
}


@dataclasses.dataclass(frozen=True)
class GenCastExperiment:
    """Configuration of the GenCast experiment (every field is recorded in the outputs)."""

    checkpoint: str
    stats: str
    truth: str
    particles: int = 8
    cycles: int | None = None
    start: str | None = None
    observe: tuple[str, ...] = ("2m_temperature", "temperature")
    observe_every: int = 4
    obs_std: float = 0.1
    space: str = "normalised"
    levels: int = 40  # 40 DPM-Solver++(3M) levels: sd within 0.1% of exact, 40 calls (docs/benchmarks.md section 8)
    sigma_min: float = 2e-5
    sigma_max: float = 88.0
    rho: float = 6.0
    solver: str = "dpm3m"
    corrector_steps: int = 0
    cg_iterations: int = 1
    guidance_max_sigma: float | None = None
    ess_band: tuple[float, float] = (50 / 256, 60 / 256)
    filters: tuple[str, ...] = FILTERS
    noise: str = "spherical"
    attention: str = "auto"
    seed: int = 0
    keep: str = "ensemble"
    block_tiles: tuple[int, int] | None = None
    observations: str = "every-nth"
    obs_dir: str | None = None
    obs_networks: tuple[str, ...] = ()
    regrid_observations: bool = False
    langevin_delta: float = 0.2
    mmps_solver: str = "cg"

    @classmethod
    def with_preset(cls, preset: str, **fields) -> "GenCastExperiment":
        """A configuration with the settings of `preset` (`PRESET_SETTINGS`), then `fields`.

        ``"reference"``: 256 particles, ESS band [50, 60], 32 Karras levels 88 -> 2e-5 with
        rho 6, Adams-Bashforth 3 with 2 Langevin corrections of delta 0.2, MMPS solved by
        BiCGStab with 2 iterations (tolerance 1e-10).
        """
        if preset not in PRESET_SETTINGS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESET_SETTINGS)}.")
        return cls(**{**PRESET_SETTINGS[preset], **fields})

    def __post_init__(self):
        problems = []

        def integer(name, low, high=None, optional=False):  # an integer in [low, high)
            v = getattr(self, name)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                problems.append(f"{name} must be an integer, got {v!r}")
            elif v < low:
                problems.append(f"{name} must be at least {low}, got {v}")
            elif high is not None and v >= high:
                problems.append(f"{name} must be below {high}, got {v}")

        def number(name, condition, optional=False):  # a finite real number satisfying `condition`
            v = getattr(self, name)
            if optional and v is None:
                return
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            if not (ok and condition(v)):
                problems.append(f"{name} must be {'positive' if condition is _positive else 'valid'}"
                                f"{' (or None)' if optional else ''}, got {v!r}")

        integer("particles", 2)
        integer("cycles", 1, optional=True)
        integer("observe_every", 1)
        number("obs_std", _positive)
        if self.space not in ("normalised", "physical"):
            problems.append(f"space must be 'normalised' or 'physical', got {self.space!r}")
        integer("levels", 2)
        v = self.guidance_max_sigma  # +inf (guidance at every level) allowed
        if v is not None and not (isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0):
            problems.append(f"guidance_max_sigma must be positive (or None), got {v!r}")
        number("rho", _positive)
        lo_hi = (self.sigma_min, self.sigma_max)
        if not all(isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x) for x in lo_hi) \
                or not 0 < self.sigma_min < self.sigma_max:
            problems.append(f"sigma_min and sigma_max must be finite with 0 < sigma_min < sigma_max, "
                            f"got {self.sigma_min!r} and {self.sigma_max!r}")
        integer("corrector_steps", 0)
        integer("seed", 0, 2**32)
        if self.keep not in KEEP:
            problems.append(f"keep must be one of {list(KEEP)}, got {self.keep!r}")
        if self.solver not in SOLVERS:
            problems.append(f"unknown solver {self.solver!r}; choose from {list(SOLVERS)}")
        unknown = sorted(set(self.filters) - set(FILTERS))
        if unknown or not self.filters:
            problems.append(f"unknown filters {unknown or '(none given)'}; choose from {list(FILTERS)}")
        band = tuple(self.ess_band) if isinstance(self.ess_band, (tuple, list)) else ()
        if len(band) != 2 or not all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in band) \
                or not 0 < band[0] <= band[1] <= 1:
            problems.append(f"ess_band must satisfy 0 < low <= high <= 1, got {self.ess_band}")
        if self.noise not in ("spherical", "white"):
            problems.append(f"noise must be 'spherical' or 'white', got {self.noise!r}")
        if self.block_tiles is not None and (
            len(self.block_tiles) != 2
            or any(isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t) or int(t) != t or t < 1
                   for t in self.block_tiles)
        ):
            problems.append(f"block_tiles must be two positive numbers of grid points (lat, lon), got {self.block_tiles}")
        if self.observations not in OBSERVATIONS:
            problems.append(f"observations must be one of {list(OBSERVATIONS)}, got {self.observations!r}")
        elif self.observations in PRESETS and self.obs_dir is None:
            problems.append(f"the observation preset {self.observations!r} needs obs_dir (--obs-dir), the folder of its files")
        elif self.observations == "files" and not self.obs_networks:
            problems.append("observations 'files' needs at least one obs_networks entry (--obs-network)")
        if self.obs_networks and self.observations != "files":
            problems.append(f"obs_networks (--obs-network) need observations 'files', got {self.observations!r}")
        for spec in self.obs_networks:
            try:
                parse_network_spec(spec)
            except ValueError as e:
                problems.append(str(e))
        if self.mmps_solver not in MMPS_SOLVERS:
            problems.append(f"mmps_solver must be one of {list(MMPS_SOLVERS)}, got {self.mmps_solver!r}")
        integer("cg_iterations", 1)
        number("langevin_delta", _positive)
        if problems:
            raise InvalidConfiguration("GenCast experiment", problems)


def _positive(v) -> bool:
    return v > 0


def parse_network_spec(spec: str) -> tuple[str, tuple[str, ...], str | None]:
    """``"FILE:VAR1,VAR2[:VARIANCES]"`` -> ``(file, variables, variances)``; `VARIANCES` is a
    file (physical units) or a number (a variance in physical units)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValueError(f"observation network {spec!r} must read FILE:VAR1,VAR2[:VARIANCES]")
    variables = tuple(v for v in parts[1].split(",") if v)
    return parts[0], variables, parts[2] if len(parts) == 3 and parts[2] else None


def _variances(value: str | None):
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def open_truth(path: str) -> xr.Dataset:
    """An ERA5-layout NetCDF file or Zarr store, opened lazily.

    Raises `MissingFile` (a `FileNotFoundError`) if it does not exist, and a
    `FileFormatError` naming it if it cannot be read (empty, truncated, not NetCDF, a Zarr
    store without the zarr package)."""
    return open_dataset(path, "truth dataset")


def setup(cfg: GenCastExperiment):
    """``(emulator, sampler config, stats, truth dataset (lazy), initial history (2, d))``.

    The truth is opened lazily (NetCDF or Zarr); only the two times of the initial history
    are read here (they also give the emulator its static fields and the SST land mask).
    """
    ckpt = load_checkpoint(cfg.checkpoint)
    stats = Statistics.from_dir(cfg.stats)
    stats.check_task(ckpt.task_config)
    raw = open_truth(cfg.truth)
    check_truth(raw, ckpt.task_config, cfg.truth)
    ds = prepare_dataset(raw, ckpt.task_config.pressure_levels)
    if cfg.block_tiles is not None:
        grid = (ds.sizes["lat"], ds.sizes["lon"])
        if any(t > n for t, n in zip(cfg.block_tiles, grid)):
            raise ax.errors.InvalidArgument(
                f"block_tiles (--block-tiles) = {tuple(cfg.block_tiles)} grid points exceeds the grid "
                f"of {grid[0]} x {grid[1]} (lat x lon) points."
            )
    if cfg.start is not None:
        ds = ds.sel(time=slice(np.datetime64(cfg.start), None))
    check_times(ds["time"].values, cfg.truth, 3 if cfg.cycles is None else cfg.cycles + 2)
    cycles = ds.sizes["time"] - 2 if cfg.cycles is None else cfg.cycles
    ds = ds.isel(time=slice(0, cycles + 2))  # still lazy: read one time at a time (truth_states)
    try:
        initial = ds.isel(time=slice(0, 2)).load()  # the initial history: 2 times
    except READ_ERRORS as e:
        raise FileFormatError(cfg.truth, f"cannot read the truth's first two times ({type(e).__name__}: {e}).") from None
    emulator = GenCastEmulator.from_checkpoint(ckpt, stats, initial, noise=cfg.noise, attention=cfg.attention)
    history = emulator.states(initial)
    return emulator, ckpt.sampler_config, stats, ds, history


def truth_states(emulator: GenCastEmulator, ds: xr.Dataset, start: int = 2):
    """The flat truth state ``(d,)`` of each time of `ds` from `start`, reading one time at a
    time from the (lazily opened) file or store: the trajectory is never loaded whole."""
    for k in range(start, ds.sizes["time"]):
        yield emulator.states(ds.isel(time=[k]))[0]


def observation_networks(cfg: GenCastExperiment, lat: np.ndarray, lon: np.ndarray) -> list[Network] | None:
    """The networks of `cfg` (``None`` for ``every-nth``), masks regridded to ``lat x lon``
    when `cfg.regrid_observations`."""
    if cfg.observations == "every-nth":
        return None
    if cfg.observations == "files":
        nets = []
        for spec in cfg.obs_networks:
            path, variables, var = parse_network_spec(spec)
            nets.append(network_from_file(path, variables, _variances(var)))
    else:
        nets = reference_networks(cfg.observations, cfg.obs_dir)
    if cfg.regrid_observations:
        nets = [regrid_network(n, lat, lon) for n in nets]
    return nets


def build_observation(cfg: GenCastExperiment, layout: ax.StateLayout, stats: Statistics) -> tuple[ax.ObservationModel, tuple[Field, ...]]:
    """The observation model of `cfg` on the state `layout`, and the field of each observation.

    ``every-nth``: `observe` (all levels) at every `observe_every`-th grid point, noise
    `obs_std` in the units of `space`.  Presets and files: [`network_observation_model`][]
    (variances in physical units, converted to the units of `space`; `obs_std` for a network
    without variances).
    """
    first = layout.variables[0]
    lat = np.asarray(next(c.values for c in first.coords if c.name == "lat"))
    lon = np.asarray(next(c.values for c in first.coords if c.name == "lon"))
    nets = observation_networks(cfg, lat, lon)
    if nets is not None:
        return network_observation_model(nets, layout, stats, cfg.space, default_std=cfg.obs_std)
    unknown = [v for v in cfg.observe if v not in layout.names]
    if unknown:
        raise ValueError(f"cannot observe {unknown}: not target variables ({list(layout.names)}).")
    fields = [f for v in cfg.observe for f in all_levels(layout, v)]
    return observation_model([every_nth(layout, fields, cfg.observe_every)], cfg.obs_std, stats, cfg.space)


def missing_over_land(observation: ax.ObservationModel, filled: np.ndarray) -> np.ndarray:
    """Observations that read a state component held at its fill value (SST over land).

    The operators are linear, so an observation touches a filled component iff its operator
    (in physical units) applied to the 0/1 indicator `filled` is non-zero; those observations
    are set to NaN (missing, dropped from the likelihood).
    """
    op = observation.operator
    op = op.inner if isinstance(op, Normalised) else op
    return np.asarray(op(jnp.asarray(filled, jnp.float32))) != 0


def build(cfg: GenCastExperiment, emulator: GenCastEmulator, sampler_config, stats):
    """The observation model (and the field of each observation) and the filters.

    The filters are keyed by their output label: ``fa-apf`` (``fa-apf-block`` with
    ``block_tiles``) and ``forecast``.
    """
    observation, obs_fields = build_observation(cfg, emulator.layout, stats)
    sampler = ax.Sampler(
        ax.EDMSchedule(cfg.sigma_min, cfg.sigma_max, cfg.rho),
        cfg.levels,
        ax.solver_by_name(cfg.solver),
        ax.LangevinCorrector(cfg.corrector_steps, cfg.langevin_delta) if cfg.corrector_steps else None,
    )
    if cfg.mmps_solver == "bicgstab":  # the reference's solver: a few BiCGStab steps, tolerance 1e-10
        import lineax as lx

        guidance = ax.MMPS(lx.BiCGStab(rtol=1e-10, atol=1e-10, max_steps=cfg.cg_iterations))
    else:
        guidance = ax.MMPS(iterations=cfg.cg_iterations)
    if cfg.guidance_max_sigma is not None:
        # A trained network's Jacobian is unreliable at the top noise levels (GuidanceBelowLevel).
        guidance = ax.GuidanceBelowLevel(guidance, cfg.guidance_max_sigma)
    tempering = ax.ESSBandTempering(*cfg.ess_band)
    filters: dict[str, ax.AbstractFilter] = {}
    for name in cfg.filters:
        if name == "fa-apf" and cfg.block_tiles is not None:
            localisation = ax.BlockLocalisation.from_state_blocks(
                tile_blocks(emulator.layout, cfg.block_tiles), observation.operator
            )
            filters["fa-apf-block"] = ax.BlockFAAPF(
                emulator, observation, sampler, localisation, guidance, tempering=tempering,
            )
        elif name == "fa-apf":
            filters[name] = ax.FAAPF(emulator, observation, sampler, guidance, tempering=tempering)
        elif name == "forecast":
            filters[name] = ax.EnsembleForecast(emulator, observation, gencast_sampler(sampler_config))
    return observation, obs_fields, filters


def analysis_moments(result: ax.FilterOutput | FilterMoments) -> tuple[Float[np.ndarray, "T d"], Float[np.ndarray, "T d"]]:
    """The weighted mean and (ddof = 1) variance ``(T, d)`` of each cycle's analysis.

    Kept as they are from a `FilterMoments`; from a `FilterOutput`, computed cycle by cycle
    with the same float32 functions that ``assimilate(..., keep="moments")`` compiles into
    its step ([`assimilax.metrics.ensemble_mean`][], `ensemble_variance`).
    """
    if isinstance(result, FilterMoments):
        return np.asarray(result.mean), np.asarray(result.variance)
    weights = jnp.exp(jnp.asarray(result.log_weights))
    mean, var = [], []
    for x, w in zip(jnp.asarray(result.particles), weights):
        m, v = _moments(x, w)
        mean.append(np.asarray(m))
        var.append(np.asarray(v))
    return np.stack(mean), np.stack(var)


@eqx.filter_jit
def _moments(x, w):
    return ax.metrics.ensemble_mean(x, w), ax.metrics.ensemble_variance(x, w)


def field_scores(emulator: GenCastEmulator, result: ax.FilterOutput | FilterMoments, truth: Float[np.ndarray, "T d"]) -> dict[str, np.ndarray]:
    """Per cycle and field: skill / spread, latitude-weighted and not (SST over sea only).

    [`assimilax.metrics.area_scores`][] of each field's slice, with area weights one or
    the latitude weights, zero over land where the field is filled (SST), accumulated in
    float64.  From a `FilterMoments` skill and spread; from a `FilterOutput` also the
    ensemble CRPS (``crps``, ``crps_latw``).  `truth` ``(T, d)``; returns arrays
    ``(T, n_fields)`` in the order of [`fields`][].
    """
    layout = emulator.layout
    lat = np.asarray(next(c.values for c in layout.variables[0].coords if c.name == "lat"))
    nlat, nlon = emulator.grid_shape
    g = nlat * nlon
    latw = np.broadcast_to(np.asarray(ax.metrics.latitude_weights(lat))[:, None], (nlat, nlon)).reshape(-1)
    sea = np.asarray(emulator.filled) == 0
    ensemble = not isinstance(result, FilterMoments)
    first, second = (result.particles, result.log_weights) if ensemble else (result.mean, result.variance)
    scores = []
    for name, level in fields(emulator):
        off = layout[name].offset + (0 if level is None else _level_index(layout, name, level) * g)
        sl = slice(off, off + g)
        area = np.stack([np.ones(g), latw]) * sea[sl]  # float64: float64 errors and sums
        with jax.enable_x64(True):
            scores.append(_area_scores(first[..., sl], second if ensemble else second[:, sl], truth[:, sl], area))
    keys = ("skill", "spread") + (("crps",) if ensemble else ())
    return {k + suffix: np.stack([np.asarray(s[k][i], np.float64) for s in scores], axis=1)
            for k in keys for i, suffix in enumerate(("", "_latw"))}


# One field's scores with the unweighted and the latitude weights (the ensemble's moments and CRPS once).
_area_scores = jax.jit(jax.vmap(ax.metrics.area_scores, in_axes=(None, None, None, 0)))


def _level_index(layout, name, level):
    levels = [int(x) for x in next(c.values for c in layout[name].coords if c.name == "level")]
    return levels.index(int(level))


def fields(emulator: GenCastEmulator) -> list[tuple[str, int | None]]:
    """Every field ``(variable, level)`` of the state, in state order."""
    return [f for name in emulator.layout.names for f in all_levels(emulator.layout, name)]


def run(
    cfg: GenCastExperiment,
    output: str | Path | None = None,
    progress: bool = True,
    options: ax.experiment.RunOptions | None = None,
) -> xr.Dataset:
    """The GenCast experiment of `cfg`, written to `output` (``gencast_assimilation.nc``,
    ``skill_spread.png``, ``maps.png``, ``summary.txt``, ``checkpoints/``) when given.

    How it runs (devices, restart, checkpoints, the non-finite policy) is `options`, an
    `assimilax.experiment.RunOptions` (by default one device, with `progress`); the job
    itself, failures included, is `assimilax.experiment.run_job`'s.
    """
    options = ax.experiment.RunOptions(progress=progress) if options is None else options
    if options.layout is not None:
        options.layout.check_particles(cfg.particles)
    emulator, sampler_config, stats, ds, history = setup(cfg)
    observation, obs_fields, filters = build(cfg, emulator, sampler_config, stats)
    target_times = ds["time"].values[2:]
    forcings = emulator.forcings(target_times, ds)
    k_obs, k_filter = jax.random.split(jax.random.key(cfg.seed))
    # One cycle's truth at a time: its state for the scores (T x d float32 on the host), its observations.
    obs_keys = jax.random.split(k_obs, target_times.size)
    sample = eqx.filter_jit(lambda model, key, x: model.sample(key, x))
    truth = np.empty((target_times.size, emulator.layout.size), np.float32)
    observations = np.empty((target_times.size, observation.operator.obs_size), np.float32)
    for i, x in enumerate(truth_states(emulator, ds)):
        truth[i] = x
        observations[i] = np.asarray(sample(observation, obs_keys[i], jnp.asarray(x)))
    observations[:, missing_over_land(observation, np.asarray(emulator.filled))] = np.nan
    ensemble = np.broadcast_to(history, (cfg.particles,) + history.shape)
    return ax.experiment.run_job(
        filters, ensemble, observations, k_filter, forcings,
        dataset=lambda runs: _dataset(cfg, emulator, filters, runs, truth, observations, obs_fields, target_times),
        output=output, netcdf="gencast_assimilation.nc", figures=lambda ds, out: _figures(cfg, ds, out),
        summary=summary_table, options=options, keep=cfg.keep,
    )


def _dataset(cfg, emulator, filters, runs, truth, observations, obs_fields, times) -> xr.Dataset:
    results = runs.results
    names = list(results)
    flds = fields(emulator)
    field_names = [f"{n}" if lv is None else f"{n}_{lv}" for n, lv in flds]
    coords = {"filter": names, "time": times, "field": field_names}
    data = {}
    moments = [analysis_moments(results[n]) for n in names]
    mean_ds = emulator.to_dataset(np.stack([m for m, _ in moments]), sample_dims=("filter", "time"))
    spread_ds = emulator.to_dataset(np.sqrt(np.stack([v for _, v in moments])), sample_dims=("filter", "time"))
    del moments
    truth_ds = emulator.to_dataset(truth, sample_dims=("time",))
    for v in emulator.layout.names:
        data[f"{v}_mean"] = mean_ds[v]
        data[f"{v}_spread"] = spread_ds[v]
        data[f"{v}_truth"] = truth_ds[v]
    per = {n: field_scores(emulator, results[n], truth) for n in names}
    for score in per[names[0]]:
        data[score] = (("filter", "time", "field"), np.stack([per[n][score] for n in names]))
    for diag in ("ess", "alpha", "log_likelihood", "dropped"):
        data[diag] = (("filter", "time"), np.stack([np.asarray(getattr(results[n].diagnostics, diag)) for n in names]))
    data["seconds"] = (("filter", "time"), np.stack([runs.seconds_per_cycle(n, len(times)) for n in names]))
    data["observations"] = (("time", "observation"), observations)
    data["observation_field"] = ("observation", np.array([f"{n}" if lv is None else f"{n}_{lv}" for n, lv in obs_fields]))
    ds = xr.Dataset(data, coords={**coords, **{k: v for k, v in mean_ds.coords.items() if k not in ("filter", "time")}})
    ds["field"].attrs["long_name"] = "variable_level (surface variables without level)"
    ds["skill"].attrs["long_name"] = "RMSE of the ensemble mean, plain mean over latitude and longitude as in the reference's figures (SST over sea only)"
    ds["spread"].attrs["long_name"] = "ensemble spread, plain mean over latitude and longitude (SST over sea only)"
    ds["spread_latw"].attrs["long_name"] = "ensemble spread, latitude-weighted"
    ds["skill_latw"].attrs["long_name"] = "RMSE of the ensemble mean, latitude-weighted"
    if "crps" in ds:
        ds["crps"].attrs["long_name"] = "ensemble CRPS, unweighted (SST over sea only)"
        ds["crps_latw"].attrs["long_name"] = "ensemble CRPS, latitude-weighted"
    ds["seconds"].attrs["long_name"] = "wall time of the cycle (the first includes compilation)"
    ds.attrs.update({
        "title": "assimilax GenCast assimilation experiment",
        "configuration": json.dumps(dataclasses.asdict(cfg)),
        "assimilax_version": ax.__version__,
        "observation_space": cfg.space,
        **{f"filter_{n}": ax.describe(f) for n, f in filters.items()},
        **{f"localisation_{n}": _describe_tiles(cfg, f.localisation) for n, f in filters.items() if isinstance(f, ax.BlockFAAPF)},
    })
    return ds


def _describe_tiles(cfg: GenCastExperiment, loc: ax.BlockLocalisation) -> str:
    per_block = np.bincount(np.asarray(loc.obs_blocks), minlength=loc.n_blocks)
    t_lat, t_lon = cfg.block_tiles
    return (f"lat-lon tiles of {t_lat} x {t_lon} grid points (index space, no wrap): {loc.n_blocks} blocks, "
            f"{per_block.min()} to {per_block.max()} observations per block")


def summary(ds: xr.Dataset) -> dict[str, dict[str, float]]:
    """Means over cycles per filter of each field's skill and spread: latitude-weighted
    (``skill``/``spread``) and plain means over latitude and longitude, as in the reference's
    figures (``skill_plain``/``spread_plain``)."""
    rows = {}
    for name in ds["filter"].values:
        f = ds.sel(filter=name)
        row = {}
        for field in ds["field"].values:
            row[f"skill {field}"] = float(f["skill_latw"].sel(field=field).mean())
            row[f"spread {field}"] = float(f["spread_latw"].sel(field=field).mean())
            row[f"skill_plain {field}"] = float(f["skill"].sel(field=field).mean())
            row[f"spread_plain {field}"] = float(f["spread"].sel(field=field).mean())
        row["ess"] = float(f["ess"].mean())
        row["alpha"] = float(f["alpha"].mean())
        sec = f["seconds"].values
        row["seconds_per_cycle"] = float(np.nanmedian(sec[1:])) if sec.size > 1 else float(sec[0])
        rows[str(name)] = row
    return rows


def summary_table(ds: xr.Dataset) -> str:
    """Skill (RMSE of the mean) and spread per field, means over cycles, one column pair per
    filter: latitude-weighted, then plain lat-lon means (the reference's figures)."""
    rows = summary(ds)
    names = list(rows)
    head = f"{'field':>34} | " + " | ".join(f"{n + ' skill':>16} {n + ' spread':>17}" for n in names)
    lines = []
    for title, prefix in (
        ("latitude-weighted RMSE of the mean and spread", ""),
        ("plain means over latitude and longitude (as in the reference's figures)", "_plain"),
    ):
        lines += [f"GenCast assimilation: {title}, means over cycles", head, "-" * len(head)]
        for field in ds["field"].values:
            lines.append(f"{field:>34} | " + " | ".join(
                f"{rows[n][f'skill{prefix} {field}']:16.4g} {rows[n][f'spread{prefix} {field}']:17.4g}" for n in names))
        lines.append("")
    for key in ("ess", "alpha", "seconds_per_cycle"):
        lines.append(f"{key:>34} | " + " | ".join(f"{rows[n][key]:16.4g} {'':>17}" for n in names))
    lines += ax.experiment.failed_lines(ds)
    return "\n".join(lines) + "\n"


def _figures(cfg: GenCastExperiment, ds: xr.Dataset, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from assimilax.plotting import plot_maps, plot_skill_spread

    shown = [f for f in ds["field"].values if f.startswith(("2m_temperature", "temperature_500", "geopotential_500", "10m_u"))]
    shown = shown or list(ds["field"].values[:3])
    scores = {
        str(f): {str(n): {"skill": ds["skill_latw"].sel(filter=n, field=f).values,
                          "spread": ds["spread_latw"].sel(filter=n, field=f).values} for n in ds["filter"].values}
        for f in shown
    }
    fig = plot_skill_spread(scores, np.arange(1, ds.sizes["time"] + 1), out_dir / "skill_spread.png",
                            title=f"GenCast, N = {cfg.particles}, observed: " + (f"{', '.join(cfg.observe)} every {cfg.observe_every} points" if cfg.observations == "every-nth" else cfg.observations)
                            + ("" if cfg.block_tiles is None else f", tiles {cfg.block_tiles[0]} x {cfg.block_tiles[1]}"))
    plt.close(fig)
    var = "2m_temperature" if "2m_temperature_truth" in ds else str(ds["field"].values[0])
    last = ds.isel(time=-1)
    panels = [("truth", last[f"{var}_truth"])] + [(f"{n} mean", last[f"{var}_mean"].sel(filter=n)) for n in ds["filter"].values]
    panels = [(title, p.isel(level=0) if "level" in p.dims else p) for title, p in panels]
    plt.close(plot_maps(panels, out_dir / "maps.png", title=f"{var} at {np.datetime_as_string(last['time'].values, unit='h')}",
                        shared_scale=True, cmap="viridis"))
