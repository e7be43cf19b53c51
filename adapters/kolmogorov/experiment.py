"""The Kolmogorov-flow twin experiment: the job of `assimilax kolmogorov`.

A truth of the stochastic model ``x[k+1] = M(x[k]) + q eps`` (vorticity on the periodic
64 x 64 grid, `dynamics`), observations of it with noise of std ``obs_fraction`` times the
field's std: every `stride`-th grid point in both directions (``observe="points"``) or
the means of `stride` x `stride` blocks (``"blocks"``), and these filters from the same
perturbed start:

- ``fa-apf-local``, ``fa-apf-local-oracle``: the localised FA-APF (Gaspari-Cohn of length
  scale `local_radius` grid points, the local update `local_update`: ``"transform"``,
  ``"transport"`` or ``"resample"``, see `assimilax.local_update_by_name`) with the shipped
  diffusion emulator and with the exact emulator ``N(M(x), q^2 I)``;
- ``fa-apf-block``, ``fa-apf-block-oracle``: the block FA-APF on `tile` x `tile` tiles, the
  same two ways;
- ``letkf``, ``enkf``: the LETKF (Gaspari-Cohn of length scale `localisation_radius` grid
  points on the torus) and the stochastic EnKF with the shipped emulator as forecast model;
- ``forecast``: the unconditional ensemble of the shipped emulator.

Running, checkpoints, failures and timings are the core's
([`assimilax.experiment.run_job`][assimilax.experiment.runner.run_job]); this module holds
the model's data, its filters and its figures.
"""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import assimilax as ax

from .dynamics import DOMAIN, oracle_emulator, simulate
from .emulator import load_emulator

FILTERS = ("fa-apf-local", "fa-apf-local-oracle", "fa-apf-block", "fa-apf-block-oracle", "letkf", "enkf", "forecast")
OBSERVE = ("points", "blocks")
N = 64  # grid points per side


@dataclasses.dataclass(frozen=True)
class KolmogorovExperiment:
    """Configuration of the twin experiment (every field is recorded in the outputs)."""

    particles: int = 32
    cycles: int = 40
    seed: int = 0
    q: float = 0.5
    observe: str = "points"
    stride: int = 4
    obs_fraction: float = 0.1
    init_std: float = 1.0
    filters: tuple[str, ...] = ("fa-apf-local", "letkf", "enkf", "forecast")
    levels: int = 16  # DPM-Solver++(3M) on EDM levels 2e-3..80, rho 8: the measured twin experiment
    solver: str = "dpm3m"
    tile: int = 8
    localisation_radius: float = 4.0
    local_radius: float = 8.0
    local_inflation: float = 1.0
    local_update: str = "transform"
    ess_band: tuple[float, float] = (0.2, 0.25)
    emulator_path: str | None = None

    def __post_init__(self):
        ax.experiment.check_config(self, "Kolmogorov experiment", FILTERS, positive=(
            "q", "localisation_radius", "local_radius", "local_inflation"), checks=lambda: [
            (self.observe in OBSERVE, f"observe must be one of {list(OBSERVE)}, got {self.observe!r}"),
            (self.local_update in ax.LOCAL_UPDATE_NAMES,
             f"local_update must be one of {list(ax.LOCAL_UPDATE_NAMES)}, got {self.local_update!r}"),
            (self.stride >= 1 and N % self.stride == 0, f"stride must divide {N}, got {self.stride}"),
            (self.tile >= 1 and N % self.tile == 0, f"tile must divide {N}, got {self.tile}"),
            (self.obs_fraction >= 1e-6, f"obs_fraction must be in [1e-6, inf), got {self.obs_fraction}"),
            (self.init_std >= 0, f"init_std must be finite and >= 0, got {self.init_std}"),
        ])


def observation_operator(cfg: KolmogorovExperiment) -> ax.AbstractObservationOperator:
    """Every `stride`-th grid point in both directions, or the means of stride x stride blocks."""
    if cfg.observe == "blocks":
        return ax.BlockMean((N, N), (cfg.stride, cfg.stride), N * N)
    mask = np.zeros((N, N), bool)
    mask[:: cfg.stride, :: cfg.stride] = True
    return ax.Selection.from_mask(mask.reshape(-1))


def twin_data(cfg: KolmogorovExperiment, operator: ax.AbstractObservationOperator):
    """Truth ``(cycles + 1, d)`` (row 0 the start), observations ``(cycles, p)``, the
    observation noise std, and the initial ensemble ``(particles, d)``."""
    k_truth, k_obs, k_init = jax.random.split(jax.random.key(cfg.seed), 3)
    truth = np.asarray(simulate(k_truth, cfg.cycles + 1, cfg.q), np.float32)
    obs_std = cfg.obs_fraction * float(truth.std())
    clean = np.asarray(jax.vmap(operator)(jnp.asarray(truth[1:])))
    observations = clean + obs_std * np.asarray(jax.random.normal(k_obs, clean.shape))
    ensemble = truth[0] + cfg.init_std * np.asarray(jax.random.normal(k_init, (cfg.particles, N * N)))
    return truth, observations.astype(np.float32), obs_std, ensemble.astype(np.float32)


def build_filters(cfg: KolmogorovExperiment, observation: ax.ObservationModel) -> dict[str, ax.AbstractFilter]:
    sampler = ax.Sampler(ax.EDMSchedule(2e-3, 80.0, 8.0), cfg.levels, ax.solver_by_name(cfg.solver))
    emulator = load_emulator(cfg.emulator_path) if any(not f.endswith("-oracle") for f in cfg.filters) else None
    i, j = np.divmod(np.arange(N * N), N)
    tiles = (i // cfg.tile) * (N // cfg.tile) + j // cfg.tile
    blocks = ax.BlockLocalisation.from_state_blocks(tiles, observation.operator)
    spacing = DOMAIN / N

    def distance(radius):  # Gaspari-Cohn of length scale `radius` grid points on the torus
        return ax.DistanceLocalisation.from_operator(
            ax.Periodic2D((DOMAIN, DOMAIN)), np.stack([i, j], 1) * spacing, observation.operator,
            ax.GaspariCohn.from_length_scale(radius * spacing),
        )

    # The transition is N(M(x), q^2 I): the Tweedie covariance of its target is known, so the
    # guidance needs no Jacobian of the U-Net (which costs 5-10 evaluations and is loosely
    # fitted), and the first-stage weights see the model noise, R + q^2 H H^T.
    weighting = ax.DiagonalPredictiveWeights.from_transition_variance(observation.operator, cfg.q**2)
    obs_variance = float(np.max(weighting.variances))  # q^2 (points) or q^2 / stride^2 (block means), every row alike
    tempering = ax.ESSBandTempering(*cfg.ess_band)

    def guidance(target_std):  # q^2 in the units of the emulator's target
        return ax.IsotropicMMPS((cfg.q / target_std) ** 2)

    def fa_apf(em, target_std):
        return ax.BlockFAAPF(em, observation, sampler, blocks, guidance(target_std), weighting, tempering)

    def local_fa_apf(em, target_std):
        return ax.LocalFAAPF(em, observation, sampler, distance(cfg.local_radius), guidance(target_std), tempering,
                             update=ax.local_update_by_name(cfg.local_update), predictive_variance=obs_variance,
                             inflation=cfg.local_inflation)

    make = {
        "fa-apf-local": lambda: local_fa_apf(emulator, emulator.increment_std),
        "fa-apf-local-oracle": lambda: local_fa_apf(oracle_emulator(cfg.q), 1.0),
        "fa-apf-block": lambda: fa_apf(emulator, emulator.increment_std),
        "fa-apf-block-oracle": lambda: fa_apf(oracle_emulator(cfg.q), 1.0),
        "letkf": lambda: ax.LETKF(emulator, observation, sampler, distance(cfg.localisation_radius)),
        "enkf": lambda: ax.StochasticEnKF(emulator, observation, sampler, 1.02),
        "forecast": lambda: ax.EnsembleForecast(emulator, observation, sampler),
    }
    return {name: make[name]() for name in cfg.filters}


def run(cfg: KolmogorovExperiment, output: str | Path | None = None, progress: bool = True,
        options: ax.experiment.RunOptions | None = None) -> xr.Dataset:
    """Run the twin experiment; with `output`, write ``kolmogorov_twin.nc``, figures and a summary."""
    options = ax.experiment.RunOptions(progress=progress) if options is None else options
    operator = observation_operator(cfg)
    truth, observations, obs_std, ensemble = twin_data(cfg, operator)
    observation = ax.ObservationModel(operator, ax.DiagonalGaussianNoise(obs_std, operator.obs_size))
    filters = build_filters(cfg, observation)
    return ax.experiment.run_job(
        filters, ensemble, observations, jax.random.key(cfg.seed + 1),
        dataset=lambda runs: _dataset(cfg, filters, runs, truth, obs_std),
        output=output, netcdf="kolmogorov_twin.nc", figures=_figures, summary=summary_table, options=options,
    )


def _dataset(cfg, filters, runs, truth, obs_std) -> xr.Dataset:
    axis = ("y", np.arange(N) * DOMAIN / N, {"long_name": "x_0 (row index i of the flat state)"})
    grid = {"y": axis, "x": ("x", axis[1], {"long_name": "x_1 (forcing direction)"})}
    layout = ax.StateLayout.from_dataset(xr.Dataset({"vorticity": (("y", "x"), np.zeros((N, N)))}, coords=grid))
    times = np.arange(1, cfg.cycles + 1)
    ds = runs.to_dataset(filters, truth[1:], layout, times, ensembles=False)
    ds["truth"] = (("time", "y", "x"), truth[1:].reshape(-1, N, N))
    ds.attrs.update(title="assimilax Kolmogorov-flow twin experiment", configuration=json.dumps(dataclasses.asdict(cfg)),
                    obs_std=obs_std, assimilax_version=ax.__version__)
    return ds


def summary_table(ds: xr.Dataset) -> str:
    """Means over all cycles per filter: RMSE of the mean (skill), spread, CRPS, ESS, s/cycle."""
    lines = [f"{'filter':>20} | {'skill':>7} {'spread':>7} {'crps':>7} | {'ESS':>6} | {'s/cycle':>8}"]
    for name in ds["filter"].values:
        f = ds.sel(filter=name)
        sec = f["seconds"].values
        per_cycle = float(np.nanmedian(sec[1:])) if sec.size > 1 else float(sec[0])
        lines.append(f"{name:>20} | {float(f['skill'].mean()):7.3f} {float(f['spread'].mean()):7.3f} "
                     f"{float(f['crps'].mean()):7.3f} | {float(f['ess'].mean()):6.1f} | {per_cycle:8.3f}")
    return "\n".join(lines + ax.experiment.failed_lines(ds)) + "\n"


def _figures(ds: xr.Dataset, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from assimilax.plotting import plot_maps, plot_skill_spread

    series = {"vorticity": {str(n): {"skill": ds["skill"].sel(filter=n).values, "spread": ds["spread"].sel(filter=n).values}
                            for n in ds["filter"].values}}
    plt.close(plot_skill_spread(series, ds["time"].values, out / "skill_spread.png", title="Kolmogorov flow, 64 x 64"))
    best, last = str(ds["filter"].values[0]), ds.isel(time=-1)
    mean = last["vorticity_mean"].sel(filter=best)
    panels = [("truth", last["truth"]), (f"{best} mean", mean), (f"{best} error", mean - last["truth"])]
    plt.close(plot_maps(panels, out / "maps.png", title=f"vorticity at cycle {int(last['time'])}", equal_aspect=True))
