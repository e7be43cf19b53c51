"""Evaluate the trained Kolmogorov emulator against the exact transition and the solver.

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 1 \\
        python -m assimilax_adapters.kolmogorov.evaluate --figure docs/figures/kolmogorov_emulator.png

1. One-step forecasts: from ``--starts`` held-out start states ``x0`` (on the attractor of
   the stochastic model, 10 intervals apart), an ensemble of ``--samples`` emulator draws of
   ``x[k+1]`` each and one of the exact transition ``N(M(x0), q^2 I)`` (the oracle), both
   scored the same way: the RMSE of the ensemble mean against ``M(x0)`` (and with its Monte
   Carlo part removed, the bias), the spread (std, ddof 1) against ``q``, and against one
   true draw ``y = M(x0) + q eps`` per start the skill (RMSE of the ensemble mean),
   spread/skill and the fair CRPS.  Also the RMSE of the denoiser's mean at ``sigma = 80``.
2. Free running: ``--chains`` emulator chains of ``--run`` intervals against as many solver
   chains of the stochastic model (same starts): the time-mean kinetic energy spectrum, the
   mean and std of energy and enstrophy, after ``--burn`` intervals.

Sampling uses the core [`assimilax.Sampler`][assimilax.sampling.Sampler]:
DPM-Solver++(3M) on ``--levels`` EDM levels (default 20, sigma in [2e-3, 80], rho 7).
"""

import argparse
import json
import pathlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

import assimilax

from .dynamics import KolmogorovFlow, energy, energy_spectrum, enstrophy, simulate, to_grid
from .emulator import KolmogorovEmulator, load_emulator

__all__ = ["free_running", "main", "make_sampler", "one_step_scores"]


def make_sampler(levels: int = 20) -> assimilax.Sampler:
    """DPM-Solver++(3M) on ``levels`` EDM levels in ``[2e-3, 80]`` (inside the trained range)."""
    return assimilax.Sampler(schedule=assimilax.EDMSchedule(2e-3, 80.0, 7.0), n_levels=levels)


def one_step_scores(
    emulator: KolmogorovEmulator,
    key: PRNGKeyArray,
    *,
    q: float = 0.5,
    starts: int = 32,
    samples: int = 32,
    levels: int = 20,
    model: KolmogorovFlow | None = None,
) -> dict:
    """One-step forecast scores of the emulator and of the exact transition (see module doc)."""
    model = KolmogorovFlow(num_points=emulator.num_points) if model is None else model
    k_traj, k_y, k_em, k_or, k_mean = jax.random.split(key, 5)
    x0 = jax.jit(lambda k: simulate(k, starts * 10, q, model=model))(k_traj)[::10]
    mean_true = eqx.filter_jit(model)(x0)
    y = mean_true + q * jax.random.normal(k_y, x0.shape)

    sampler = make_sampler(levels)
    draw = jax.jit(jax.vmap(lambda k, x: assimilax.sample_transition(emulator, sampler, k, x[None])))
    ens = jnp.stack([draw(jax.random.split(jax.random.fold_in(k_em, i), samples),
                          jnp.broadcast_to(x0[i], (samples, x0.shape[1]))) for i in range(starts)])
    oracle = mean_true[:, None] + q * jax.random.normal(k_or, ens.shape)

    sigma = 80.0
    denoised = jax.jit(jax.vmap(lambda k, x: emulator.to_state(
        emulator.denoiser(sigma * emulator.noise(k), sigma, emulator.context(x[None])), x[None])))
    dmean = denoised(jax.random.split(k_mean, starts), x0)
    std_map = ens.std(axis=1, ddof=1).mean(axis=0)
    return {
        "emulator": assimilax.metrics.transition_scores(ens, mean_true, y),
        "oracle": assimilax.metrics.transition_scores(oracle, mean_true, y),
        "denoiser_mean_rmse_sigma80": float(jnp.sqrt(jnp.mean((dmean - mean_true) ** 2))),
        "std_per_gridpoint_range": [float(std_map.min()), float(std_map.max())],
        "increment_rms": float(jnp.sqrt(jnp.mean((mean_true - x0) ** 2))),
        "starts": starts, "samples": samples, "levels": levels,
        "_fields": {"x0": np.asarray(x0[0]), "mean": np.asarray(mean_true[0]),
                    "sample": np.asarray(ens[0, 0]), "ens_mean": np.asarray(ens[0].mean(0))},
    }


def _flow_stats(xs: Float[Array, "c t d"], n: int) -> dict:
    w = to_grid(xs, n)
    e, z = energy(w), enstrophy(w)
    return {"spectrum": np.asarray(energy_spectrum(w).mean(axis=(0, 1))),
            "energy_mean": float(e.mean()), "energy_std": float(e.std()),
            "enstrophy_mean": float(z.mean()), "enstrophy_std": float(z.std()),
            "enstrophy_series": np.asarray(z), "finite": bool(jnp.all(jnp.isfinite(xs)))}


def free_running(
    emulator: KolmogorovEmulator,
    key: PRNGKeyArray,
    *,
    q: float = 0.5,
    chains: int = 8,
    run: int = 100,
    burn: int = 10,
    levels: int = 20,
    model: KolmogorovFlow | None = None,
) -> dict:
    """Free-running emulator chains against solver chains of the stochastic model."""
    model = KolmogorovFlow(num_points=emulator.num_points) if model is None else model
    n = model.num_points
    k_start, k_run, k_true = jax.random.split(key, 3)
    x_start = jax.jit(jax.vmap(lambda k: simulate(k, 1, q, model=model)[0]))(jax.random.split(k_start, chains))
    sampler = make_sampler(levels)
    step = jax.jit(jax.vmap(lambda k, x: assimilax.sample_transition(emulator, sampler, k, x[None])))
    xs, x = [], x_start
    for t in range(run):
        x = step(jax.random.split(jax.random.fold_in(k_run, t), chains), x)
        xs.append(x)
    em = jnp.stack(xs, axis=1)[:, burn:]
    true = jax.jit(jax.vmap(lambda k, x: simulate(k, run, q, model=model, spinup=0, x0=x)))(
        jax.random.split(k_true, chains), x_start)[:, burn:]
    return {"emulator": _flow_stats(em, n), "solver": _flow_stats(true, n),
            "chains": chains, "run": run, "burn": burn,
            "_fields": {"emulator": np.asarray(em[0, -1]), "solver": np.asarray(true[0, -1])}}


def _table(one: dict, free: dict | None) -> str:
    rows = ["One-step forecast (vorticity units)", f"{'':36s}{'emulator':>10s}{'oracle':>10s}"]
    names = [("mean_rmse", "RMSE ensemble mean vs M(x0)"), ("mean_bias", "  of which bias (MC removed)"),
             ("spread", f"spread (q = {one.get('q', 0.5)})"), ("skill", "skill: RMSE(mean, true draw)"),
             ("spread_skill", "spread/skill (n-corrected)"), ("crps", "CRPS")]
    for k, name in names:
        rows.append(f"{name:36s}{one['emulator'][k]:10.4f}{one['oracle'][k]:10.4f}")
    rows.append(f"{'RMSE denoiser mean (sigma=80)':36s}{one['denoiser_mean_rmse_sigma80']:10.4f}{0.0:10.4f}")
    lo, hi = one["std_per_gridpoint_range"]
    rows.append(f"{'per-gridpoint std range':36s}{lo:6.3f}-{hi:.3f}")
    rows.append(f"{'RMS increment |M(x0) - x0|':36s}{one['increment_rms']:10.4f}")
    if free is not None:
        rows += ["", "Free running", f"{'':36s}{'emulator':>10s}{'solver':>10s}"]
        e, s = free["emulator"], free["solver"]
        for k in ("energy_mean", "energy_std", "enstrophy_mean", "enstrophy_std"):
            rows.append(f"{k:36s}{e[k]:10.4f}{s[k]:10.4f}")
        for k in (1, 2, 4, 8, 16, 24, 32):
            rows.append(f"{f'E(k = {k})':36s}{e['spectrum'][k]:10.2e}{s['spectrum'][k]:10.2e}")
        rows.append(f"{'finite':36s}{str(e['finite']):>10s}{str(s['finite']):>10s}")
    return "\n".join(rows)


def _figure(one: dict, free: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = int(np.sqrt(one["_fields"]["x0"].size))
    fig = plt.figure(figsize=(13, 6.5))
    panels = [("x[k]", one["_fields"]["x0"]), ("M(x[k]) (exact mean)", one["_fields"]["mean"]),
              ("emulator ensemble mean", one["_fields"]["ens_mean"]), ("one emulator draw", one["_fields"]["sample"]),
              (f"solver, free run t={free['run']}", free["_fields"]["solver"]),
              (f"emulator, free run t={free['run']}", free["_fields"]["emulator"])]
    vmax = float(np.abs(one["_fields"]["x0"]).max())
    for i, (title, f) in enumerate(panels):
        ax = fig.add_subplot(2, 4, i + 1 + (i >= 3) * 1)
        ax.imshow(f.reshape(n, n), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    ax = fig.add_subplot(2, 4, 4)
    k = np.arange(1, len(free["solver"]["spectrum"]))
    ax.loglog(k, free["solver"]["spectrum"][1:], "k-", label="solver")
    ax.loglog(k, free["emulator"]["spectrum"][1:], "C3--", label="emulator")
    ax.set_xlabel("k"), ax.set_ylabel("E(k)"), ax.set_title("energy spectrum (free run)", fontsize=9)
    ax.legend(fontsize=8)
    ax = fig.add_subplot(2, 4, 8)
    for c in range(min(3, free["chains"])):
        ax.plot(free["solver"]["enstrophy_series"][c], "k-", lw=0.8, label="solver" if c == 0 else None)
        ax.plot(free["emulator"]["enstrophy_series"][c], "C3-", lw=0.8, label="emulator" if c == 0 else None)
    ax.set_xlabel("interval"), ax.set_title("enstrophy <w^2>/2 (3 chains)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items() if not k.startswith("_") and not k.endswith("_series")}
    if isinstance(d, np.ndarray):
        return [float(v) for v in d]
    return d


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Evaluate the Kolmogorov emulator against the exact transition.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--weights", default=None, help="path to a .eqx file (default: shipped weights)")
    p.add_argument("--q", type=float, default=0.5)
    p.add_argument("--starts", type=int, default=32)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--levels", type=int, default=20)
    p.add_argument("--chains", type=int, default=8)
    p.add_argument("--run", type=int, default=100)
    p.add_argument("--burn", type=int, default=10)
    p.add_argument("--no-free-running", action="store_true")
    p.add_argument("--figure", type=pathlib.Path, default=None, help="write the figure (PNG) here")
    p.add_argument("--json", type=pathlib.Path, default=None, help="write the numbers (JSON) here")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    emulator = load_emulator(args.weights)
    key = jax.random.key(args.seed)
    t = time.time()
    one = one_step_scores(emulator, key, q=args.q, starts=args.starts, samples=args.samples, levels=args.levels)
    one["q"] = args.q
    print(f"one-step: {time.time() - t:.1f}s", flush=True)
    free = None
    if not args.no_free_running:
        t = time.time()
        free = free_running(emulator, jax.random.fold_in(key, 1), q=args.q, chains=args.chains, run=args.run,
                            burn=args.burn, levels=args.levels)
        print(f"free running: {time.time() - t:.1f}s", flush=True)
    print(_table(one, free))
    if args.json is not None:
        args.json.write_text(json.dumps(_jsonable({"one_step": one, "free_running": free}), indent=2) + "\n")
    if args.figure is not None and free is not None:
        _figure(one, free, args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
