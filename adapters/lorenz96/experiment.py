"""The Lorenz-96 twin experiment: the main job of `assimilax lorenz96`.

A truth trajectory of the stochastic model ``x[k+1] = M(x[k]) + q eps``, noisy observations
of every `observe_every`-th component ``y[k] = x[k][::observe_every] + obs_std eps`` (with
``observe="abs"``, ``|x[k][::observe_every]| + obs_std eps``: the sign is lost, a
non-Gaussian posterior where particle filters should beat the ensemble Kalman filters), and a
set of filters run from the same perturbed start on the same observations:

- ``fa-apf``: the FA-APF with the shipped diffusion emulator (Dirac weights, ESS-band
  tempering, MMPS-guided proposals);
- ``fa-apf-oracle``: the same filter with the exact emulator ``N(M(x), q^2 I)``;
- ``fa-apf-block``, ``fa-apf-block-oracle``: the block (localised) FA-APF with the shipped
  and the exact emulator: first-stage weights, tempering and resampling per block of
  `block_size` consecutive components, with the observations of that block only;
- ``fa-apf-local``, ``fa-apf-local-oracle``: the localised FA-APF (shipped and exact
  emulator): first-stage weights per component from the observations around it, tapered
  by Gaspari-Cohn of length scale `local_radius`, with the variance ``r + v`` (``v`` =
  `local_predictive_variance`: ``q^2``, the Gaussian predictive, for linear observations;
  ``r / 2`` for ``|x|``, see `TwinExperiment.local_weight_variance`), tempering per
  component to `local_ess_band`, and the local update
  `local_update`: ``"transform"``, the second-order exact ensemble transform (the
  weighted mean and covariance at every component; no inflation), ``"transport"``, the
  optimal transport of every component's weighted marginal (rescaled to the weighted
  variance, then inflated by `local_inflation`), or ``"resample"``, coupled resampling
  with an inflation `local_inflation` of the resampled histories; ``"auto"`` (the
  default) takes the transform for linear observations, which are near-Gaussian, and the
  transport for ``observe="abs"``, whose two sign modes a two-moment transform merges;
- ``optimal-pf``: the optimal-proposal particle filter (oracle emulator, exact
  Gaussian-predictive weights, no tempering, exact MMPS proposal);
- ``bootstrap``: the bootstrap PF with the shipped emulator;
- ``enkf``: a stochastic EnKF with the true stochastic model (an outside reference);
- ``etkf``, ``letkf``: the ETKF and the LETKF (Hunt et al. 2007; Gaspari-Cohn
  R-localisation of length scale `localisation_radius` on the ring) with the true model;
- ``enkf-emulator``, ``letkf-emulator``: the same ensemble Kalman filters with the shipped
  diffusion emulator as forecast model (the fair baseline of the FA-APF);
- ``forecast``: the unconditional ensemble of the shipped emulator.
"""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import assimilax as ax

from .dynamics import Lorenz96, oracle_emulator, simulate
from .emulator import DEFAULT_WEIGHTS, load_emulator

FILTERS = (
    "fa-apf",
    "fa-apf-block",
    "fa-apf-oracle",
    "fa-apf-block-oracle",
    "fa-apf-local",
    "fa-apf-local-oracle",
    "optimal-pf",
    "bootstrap",
    "enkf",
    "etkf",
    "letkf",
    "enkf-emulator",
    "letkf-emulator",
    "forecast",
)
TRAINED = ("fa-apf", "fa-apf-block", "fa-apf-local", "bootstrap", "forecast", "enkf-emulator", "letkf-emulator")
SOLVERS = ax.SOLVER_NAMES
OBSERVE = ("identity", "abs")
LOCAL_UPDATES = ("auto", *ax.LOCAL_UPDATE_NAMES)


@dataclasses.dataclass(frozen=True)
class TwinExperiment:
    """Configuration of a twin experiment (every field is recorded in the outputs)."""

    particles: int = 256
    cycles: int = 100
    observe_every: int = 2
    obs_std: float = 1.0
    q: float = 0.3
    dim: int = 40
    seed: int = 0
    spinup: int | None = None  # default: min(20, cycles // 5)
    init_std: float = 1.0
    filters: tuple[str, ...] = FILTERS
    # 23 levels of DPM-Solver++(3M) on EDM levels 2e-3..80 with rho 8: 23 denoiser calls
    # (14 guided below sigma 5, against 13 of 23 for the 12 levels of 2S before), sd within 0.3% of exact (docs/benchmarks.md section 8).
    levels: int = 23
    solver: str = "dpm3m"
    sigma_min: float = 2e-3
    sigma_max: float = 80.0
    rho: float = 8.0
    corrector_steps: int = 0
    cg_iterations: int = 1
    guidance_max_sigma: float = 5.0
    ess_band: tuple[float, float] = (0.2, 0.25)
    block_size: int = 5
    emulator_path: str | None = None
    inflation: float = 1.0
    localisation_radius: float = 4.0
    # One setting for all local updates (docs/benchmarks.md section 8): the transform
    # within 2% of the LETKF at q = 0.1 and 0.3 (10 truths); for |x| the transport, with
    # the inflation, below the LETKF and the EnKF where resampling and the transform lose
    # the sign (80 truths).  Coupled resampling was measured with local_inflation 1.04.
    local_radius: float = 3.0
    local_inflation: float = 1.02  # transport and resampling; the transform needs none
    local_ess_band: tuple[float, float] = (0.1, 0.15)
    local_update: str = "auto"
    # v added to R in the first-stage weights of the localised FA-APF (None: q^2 for
    # linear observations, obs_std^2 / 2 for |x|; see local_weight_variance).
    local_predictive_variance: float | None = None
    obs_indices: tuple[int, ...] | None = None
    truth_path: str | None = None
    observe: str = "identity"  # or "abs": observe |x| of the observed components

    def __post_init__(self):
        if self.spinup is None and isinstance(self.cycles, int):
            object.__setattr__(self, "spinup", min(20, max(self.cycles, 0) // 5))
        ax.experiment.check_config(self, "Lorenz-96 experiment", FILTERS, positive=(
            "rho", "guidance_max_sigma", "inflation", "local_inflation", "local_radius", "localisation_radius"),
            checks=self._checks)

    def _checks(self) -> list[tuple[bool, str]]:
        indices = self.obs_indices
        return [
            (self.corrector_steps >= 0, f"corrector_steps must be at least 0, got {self.corrector_steps}"),
            (self.init_std >= 0, f"init_std must be at least 0, got {self.init_std}"),
            (self.obs_std >= 1e-6, f"obs_std must be at least 1e-6 (its square must be a normal float32), got {self.obs_std}"),
            (self.obs_std > 0, f"obs_std (observation noise) must be positive, got {self.obs_std}"),
            (self.q > 0, f"q (model noise) must be positive, got {self.q}"),
            (self.observe in OBSERVE, f"observe must be one of {list(OBSERVE)}, got {self.observe!r}"),
            (self.local_update in LOCAL_UPDATES,
             f"local_update must be one of {list(LOCAL_UPDATES)}, got {self.local_update!r}"),
            (self.local_predictive_variance is None or self.local_predictive_variance >= 0,
             f"local_predictive_variance must be at least 0 (or None), got {self.local_predictive_variance}"),
            (1 <= self.observe_every <= self.dim, f"observe_every must be in [1, {self.dim}], got {self.observe_every}"),
            (self.dim >= 4, f"dim must be at least 4, got {self.dim}"),
            (0 <= self.spinup < self.cycles, f"spinup must be in [0, cycles) = [0, {self.cycles}), got {self.spinup}"),
            (0 < self.sigma_min < self.sigma_max,
             f"sigma_min and sigma_max must satisfy 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}"),
            (self.cg_iterations >= 1, f"cg_iterations must be at least 1, got {self.cg_iterations}"),
            (1 <= self.block_size <= self.dim, f"block_size must be in [1, {self.dim}], got {self.block_size}"),
            (indices is None or (bool(indices) and 0 <= min(indices) and max(indices) < self.dim
                                 and len(set(indices)) == len(indices)),
             f"obs_indices must be distinct components in [0, {self.dim})"),
        ]

    @property
    def observed(self) -> np.ndarray:
        """Boolean mask of the observed components (`obs_indices` if given, else every
        `observe_every`-th)."""
        if self.obs_indices is not None:
            return np.isin(np.arange(self.dim), self.obs_indices)
        return np.arange(self.dim) % self.observe_every == 0

    @classmethod
    def from_truth(cls, path: str, **options) -> "TwinExperiment":
        """The experiment on the truth and observations of `path` (see `truth.load_truth`):
        its dimension, cycles, observed components, ``q`` and ``R`` replace the options'."""
        from .truth import load_truth

        t = load_truth(path)
        fixed = dict(dim=t.dim, cycles=t.cycles, q=t.q, obs_std=t.obs_std, obs_indices=tuple(int(i) for i in t.obs_idx), observe=t.observe)
        return cls(**{**options, **fixed, "truth_path": str(path)})

    def local_update_kind(self) -> str:
        """``"transform"``, ``"transport"`` or ``"resample"``: `local_update` with
        ``"auto"`` resolved."""
        if self.local_update != "auto":
            return self.local_update
        return "transport" if self.observe == "abs" else "transform"

    def local_weight_variance(self) -> float:
        """``v`` of the localised FA-APF's first-stage weights ``N(y_j; A(mu_i)_j, r + v)``:
        `local_predictive_variance`, or with None ``q^2`` for linear observations (the
        Gaussian predictive of a selection) and ``r / 2`` for ``observe="abs"``.

        For ``|x|`` the first-stage weights choose between the sign modes, and with
        ``N = 256`` their Monte Carlo noise loses the true mode on some truths (with
        ``N = 1024``, 7 such truths all came out below both baselines).  Flatter weights
        (the guided proposal still uses ``R``) lose it less often: not below the LETKF and
        the EnKF on 1 of 80 held-out truths, against 5 of 80 with ``q^2``
        (docs/benchmarks.md section 8).  With linear observations ``r / 2`` changes the
        RMSE by 0.1% and adds spread, so ``q^2`` stays.
        """
        if self.local_predictive_variance is not None:
            return float(self.local_predictive_variance)
        return self.obs_std**2 / 2 if self.observe == "abs" else self.q**2

    def uses_trained_emulator(self) -> bool:
        return any(f in TRAINED for f in self.filters)


def _emulator_q(path: str | None) -> float:
    """The model noise ``q`` the emulator at `path` (default: the shipped one) was trained for."""
    if path is None:
        import importlib.resources

        meta = importlib.resources.files(__package__).joinpath("weights", DEFAULT_WEIGHTS)
        meta = Path(str(meta)).with_suffix(".json")
    else:
        meta = Path(path).with_suffix(".json")
    try:
        q = json.loads(meta.read_text())["q"]
    except (KeyError, TypeError):
        raise ax.errors.FileFormatError(meta, "lacks 'q', the model noise the emulator was trained for.") from None
    except json.JSONDecodeError as e:
        raise ax.errors.FileFormatError(meta, f"is not valid JSON ({e}).") from None
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not q > 0:
        raise ax.errors.FileFormatError(meta, f"'q' = {q!r}: must be a positive number.")
    return float(q)


def twin_data(cfg: TwinExperiment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth ``(cycles + 1, d)`` (index 0 is the start), observations ``(cycles, p)`` and
    the initial ensemble ``(particles, d)``."""
    k_truth, k_obs, k_init = jax.random.split(jax.random.key(cfg.seed), 3)
    if cfg.truth_path is not None:
        from .truth import load_truth

        t = load_truth(cfg.truth_path)
        if t.dim != cfg.dim or t.cycles != cfg.cycles or t.observe != cfg.observe or not np.array_equal(np.flatnonzero(cfg.observed), t.obs_idx):
            raise ax.errors.InvalidArgument(f"the configuration does not match the truth file {cfg.truth_path}; build it with TwinExperiment.from_truth.")
        ensemble = t.xx[0] + cfg.init_std * np.asarray(jax.random.normal(k_init, (cfg.particles, cfg.dim)))
        return t.xx, t.yy, ensemble
    model = Lorenz96(dim=cfg.dim)
    truth = simulate(k_truth, cfg.cycles + 1, model=model, q=cfg.q)
    noise = cfg.obs_std * jax.random.normal(k_obs, (cfg.cycles, int(cfg.observed.sum())))
    observed = truth[1:, cfg.observed]
    observations = (jnp.abs(observed) if cfg.observe == "abs" else observed) + noise
    ensemble = truth[0] + cfg.init_std * jax.random.normal(k_init, (cfg.particles, cfg.dim))
    return np.asarray(truth), np.asarray(observations), np.asarray(ensemble)


def build_filters(cfg: TwinExperiment) -> dict[str, ax.AbstractFilter]:
    """The filters of the experiment, by name."""
    n_obs = int(cfg.observed.sum())
    operator = ax.Selection.from_mask(cfg.observed)
    if cfg.observe == "abs":  # |x|: the sign is not observed (a non-Gaussian posterior)
        operator = ax.Absolute(operator)
    observation = ax.ObservationModel(operator, ax.DiagonalGaussianNoise(cfg.obs_std, n_obs))
    sampler = ax.Sampler(
        ax.EDMSchedule(cfg.sigma_min, cfg.sigma_max, cfg.rho),
        cfg.levels,
        ax.solver_by_name(cfg.solver),
        ax.LangevinCorrector(cfg.corrector_steps, 0.2) if cfg.corrector_steps else None,
    )
    tempering = ax.ESSBandTempering(*cfg.ess_band)
    # The trained emulator's Jacobian is unreliable at high noise (see GuidanceBelowLevel).
    guidance = ax.GuidanceBelowLevel(ax.MMPS(iterations=cfg.cg_iterations), cfg.guidance_max_sigma)
    oracle = oracle_emulator(cfg.q, cfg.dim)
    blocks = ax.BlockLocalisation.contiguous(cfg.dim, cfg.block_size, observation.operator)
    distance = ax.DistanceLocalisation.from_operator(
        ax.Periodic1D(cfg.dim),
        np.arange(cfg.dim),
        observation.operator,
        ax.GaspariCohn.from_length_scale(cfg.localisation_radius),
    )
    local = ax.DistanceLocalisation.from_operator(
        ax.Periodic1D(cfg.dim),
        np.arange(cfg.dim),
        observation.operator,
        ax.GaspariCohn.from_length_scale(cfg.local_radius),
    )
    filters: dict[str, ax.AbstractFilter] = {}
    if cfg.uses_trained_emulator():
        emulator = load_emulator(cfg.emulator_path)  # clear errors for missing or bad files
        if abs(_emulator_q(cfg.emulator_path) - cfg.q) > 1e-9:
            raise ax.errors.InvalidArgument(
                f"the emulator at {cfg.emulator_path or 'the shipped weights'} was trained for "
                f"q = {_emulator_q(cfg.emulator_path)}, but the experiment uses q = {cfg.q}; "
                "pass --emulator with weights trained for that q, or run only the oracle "
                "filters (fa-apf-oracle, fa-apf-block-oracle, optimal-pf, enkf, etkf, letkf)."
            )
    for name in cfg.filters:
        if name == "fa-apf":
            filters[name] = ax.FAAPF(emulator, observation, sampler, guidance, tempering=tempering)
        elif name == "fa-apf-oracle":
            filters[name] = ax.FAAPF(oracle, observation, sampler, guidance, tempering=tempering)
        elif name in ("fa-apf-block", "fa-apf-block-oracle"):
            filters[name] = ax.BlockFAAPF(
                emulator if name == "fa-apf-block" else oracle,
                observation,
                sampler,
                blocks,
                guidance,
                tempering=tempering,
            )
        elif name in ("fa-apf-local", "fa-apf-local-oracle"):
            kind = cfg.local_update_kind()
            filters[name] = ax.LocalFAAPF(
                emulator if name == "fa-apf-local" else oracle,
                observation,
                sampler,
                local,
                guidance,
                tempering=ax.ESSBandTempering(*cfg.local_ess_band),
                update=ax.local_update_by_name(kind),
                predictive_variance=cfg.local_weight_variance(),
                inflation=1.0 if kind == "transform" else cfg.local_inflation,
            )
        elif name == "optimal-pf":
            # With Q = q^2 I and a selection, A J A^T is a multiple of I: one CG step is exact.
            filters[name] = ax.FAAPF(
                oracle,
                observation,
                sampler,
                ax.MMPS(iterations=1),
                ax.GaussianPredictiveWeights(cfg.q**2 * jnp.eye(cfg.dim)),
                ax.NoTempering(),
            )
        elif name == "bootstrap":
            filters[name] = ax.BootstrapPF(emulator, observation, sampler)
        elif name in ("enkf", "enkf-emulator"):
            model = oracle if name == "enkf" else emulator
            filters[name] = ax.StochasticEnKF(model, observation, sampler, cfg.inflation)
        elif name == "etkf":
            filters[name] = ax.ETKF(oracle, observation, sampler, cfg.inflation)
        elif name in ("letkf", "letkf-emulator"):
            model = oracle if name == "letkf" else emulator
            filters[name] = ax.LETKF(model, observation, sampler, distance, cfg.inflation)
        elif name == "forecast":
            filters[name] = ax.EnsembleForecast(emulator, observation, sampler)
    return filters


def run(cfg: TwinExperiment, output: str | Path | None = None, progress: bool = True,
        options: ax.experiment.RunOptions | None = None) -> xr.Dataset:
    """Run the experiment; with `output`, write NetCDF, figures and a summary there.

    `options` (an `assimilax.experiment.RunOptions`: devices and chunking, restart,
    checkpoint interval, non-finite policy; default with `progress`) change nothing beyond
    float rounding.  A filter whose analysis turns non-finite does not stop the others:
    see `assimilax.experiment.run_job`.

    Returns the Dataset written to ``<output>/lorenz96_twin.nc``: dimensions ``filter``,
    ``time``, ``particle``, ``variable``; the analysis ensembles, weights, diagnostics,
    per-cycle scores, truth and observations; the configuration in the attributes.
    Each filter checkpoints to ``<output>/checkpoints/<filter>.npz`` and resumes from it.
    """
    options = ax.experiment.RunOptions(progress=progress) if options is None else options
    if options.layout is not None:
        options.layout.check_particles(cfg.particles)
    truth, observations, ensemble = twin_data(cfg)
    filters = build_filters(cfg)
    return ax.experiment.run_job(
        filters, ensemble, observations, jax.random.key(cfg.seed + 1),
        dataset=lambda runs: _dataset(cfg, filters, runs, truth, observations),
        output=output, netcdf="lorenz96_twin.nc", figures=lambda ds, out: _figures(cfg, ds, out),
        summary=summary_table, options=options,
    )


def _dataset(cfg, filters, runs, truth, observations) -> xr.Dataset:
    obs_full = np.full((cfg.cycles, cfg.dim), np.nan, dtype=np.float32)
    obs_full[:, cfg.observed] = observations
    subsets = {k: m for k, m in (("observed", cfg.observed), ("unobserved", ~cfg.observed)) if m.any()}
    ds = runs.to_dataset(filters, truth[1:], ax.StateLayout.vector(cfg.dim, "analysis"),
                         np.arange(1, cfg.cycles + 1), subsets=subsets)
    ds = ds.assign(truth=(("time", "variable"), truth[1:]), observations=(("time", "variable"), obs_full))
    ds = ds.assign_coords(variable=np.arange(cfg.dim), observed=("variable", cfg.observed))
    ds["time"].attrs["long_name"] = "observation cycle"
    ds["variable"].attrs["long_name"] = "Lorenz-96 component"
    ds["analysis"].attrs["long_name"] = "analysis ensemble (after assimilating the cycle's observation)"
    ds.attrs.update(title="assimilax Lorenz-96 twin experiment", configuration=json.dumps(dataclasses.asdict(cfg)),
                    assimilax_version=ax.__version__, spinup=cfg.spinup)
    return ds


def summary(ds: xr.Dataset) -> dict[str, dict[str, float]]:
    """Means over cycles after spin-up, per filter."""
    after = ds.isel(time=slice(int(ds.attrs["spinup"]), None))
    rows = {}
    for name in ds["filter"].values:
        f = after.sel(filter=name)
        row = {}
        for key in ("skill_observed", "skill_unobserved", "spread_observed", "spread_unobserved", "crps_observed", "crps_unobserved", "ess", "alpha"):
            if key in f:
                row[key] = float(f[key].mean())
        sec = ds["seconds"].sel(filter=name).values
        row["seconds_per_cycle"] = float(np.nanmedian(sec[1:])) if sec.size > 1 else float(sec[0])
        row["compile_seconds"] = float(sec[0] - row["seconds_per_cycle"])
        rows[str(name)] = row
    return rows


def summary_table(ds: xr.Dataset) -> str:
    """The summary as a fixed-width text table."""
    rows = summary(ds)
    w = max(len("filter"), *(len(name) for name in rows))
    head = f"{'filter':>{w}} | {'skill obs':>9} {'skill unobs':>11} | {'spread obs':>10} {'spread unobs':>12} | {'ESS':>6} {'alpha':>6} | {'s/cycle':>8}"
    lines = [
        f"Lorenz-96 twin experiment: means over cycles {int(ds.attrs['spinup']) + 1}..{ds.sizes['time']} (after spin-up)",
        head,
        "-" * len(head),
    ]
    for name, r in rows.items():
        lines.append(
            f"{name:>{w}} | {r.get('skill_observed', np.nan):9.3f} {r.get('skill_unobserved', np.nan):11.3f} | "
            f"{r.get('spread_observed', np.nan):10.3f} {r.get('spread_unobserved', np.nan):12.3f} | "
            f"{r['ess']:6.1f} {r['alpha']:6.3f} | {r['seconds_per_cycle']:8.3f}"
        )
    lines += ax.experiment.failed_lines(ds)
    return "\n".join(lines) + "\n"


def _figures(cfg: TwinExperiment, ds: xr.Dataset, out_dir: Path) -> None:
    import matplotlib.pyplot as plt

    from assimilax.plotting import plot_hovmoller, plot_skill_spread

    scores = {}
    for subset in ("observed", "unobserved"):
        if f"skill_{subset}" in ds:
            scores[subset] = {
                str(n): {"skill": ds[f"skill_{subset}"].sel(filter=n).values, "spread": ds[f"spread_{subset}"].sel(filter=n).values}
                for n in ds["filter"].values
            }
    fig = plot_skill_spread(
        scores,
        ds["time"].values,
        out_dir / "skill_spread.png",
        title=f"Lorenz-96 (d = {cfg.dim}, q = {cfg.q}), 1 in {cfg.observe_every} components observed "
        f"(sigma = {cfg.obs_std}), N = {cfg.particles}",
    )
    names = [str(n) for n in ds["filter"].values]
    best = next((n for n in ("fa-apf-block", "fa-apf") if n in names), names[0])
    w = np.exp(ds["log_weights"].sel(filter=best).values)
    mean = np.einsum("tn,tnd->td", w, ds["analysis"].sel(filter=best).values)
    plt.close(fig)
    fig = plot_hovmoller(ds["truth"].values, mean, out_dir / "hovmoller.png", title=f"{best}: truth, analysis mean, error", estimate_name=f"{best} mean")
    plt.close(fig)
