"""Evaluate the trained Lorenz-96 emulator against the true stochastic model.

    python -m assimilax_adapters.lorenz96.evaluate [--weights PATH]

1. One-step forecasts: from ``--starts`` held-out start states ``x0`` (on the attractor of
   the stochastic model), ``--samples`` emulator samples of ``x[k+1]`` each, compared with
   the true transition ``N(M(x0), q^2 I)``: the error of the sample mean against ``M(x0)``
   (with the Monte Carlo part removed), the error of the denoiser's mean at ``sigma = 80``,
   the sample standard deviation against ``q``, and, against one true draw
   ``y = M(x0) + q eps`` per start, skill (RMSE of the ensemble mean), spread and CRPS.  The
   same scores for an ensemble drawn from the exact transition (the oracle) are the ceiling.
2. Free-running climatology: ``--chains`` emulator chains of ``--run`` steps against a long
   trajectory of the true stochastic model: mean, variance and lag-1..5 autocorrelation.

Sampling uses the core [`assimilax.Sampler`][assimilax.sampling.Sampler] with Heun steps on the probability-flow ODE
(32 Karras levels, sigma in [2e-3, 80], rho = 7).
"""

import argparse
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

import assimilax

from .dynamics import Lorenz96, simulate
from .emulator import Lorenz96Emulator, load_emulator

__all__ = ["climatology", "heun_sampler", "main", "one_step_scores", "sample_next"]


def heun_sampler(levels: int = 32, sigma_min: float = 2e-3, sigma_max: float = 80.0, rho: float = 7.0) -> assimilax.Sampler:
    """The core [`assimilax.Sampler`][assimilax.sampling.Sampler] used here: Heun on the probability-flow ODE.

    ``dz/dsigma = (z - D(z, sigma; c)) / sigma`` over the Karras levels
    ``sigma_0 = sigma_max > ... > sigma_{n-1} = sigma_min`` (EDM's deterministic sampler,
    ``2 (n - 1) + 1`` denoiser calls), from ``z = sigma_max eps``, then ``z = D(z, sigma_min; c)``.
    The levels stay inside the range the network was trained on, ``[2e-3, 100]``.
    (A private Heun sampler used before the core one existed gave the same samples to 1e-6.)
    """
    return assimilax.Sampler(
        schedule=assimilax.EDMSchedule(sigma_min, sigma_max, rho), n_levels=levels, solver=diffrax.Heun()
    )


def sample_next(
    emulator: Lorenz96Emulator,
    key: PRNGKeyArray,
    x0: Float[Array, " d"],
    *,
    levels: int = 32,
    sampler: assimilax.Sampler | None = None,
) -> Float[Array, " d"]:
    """One sample of ``x[k+1] ~ p(x | x[k] = x0)`` (default sampler: [`heun_sampler`][])."""
    sampler = heun_sampler(levels) if sampler is None else sampler
    return assimilax.sample_transition(emulator, sampler, key, x0[None])


def one_step_scores(
    emulator: Lorenz96Emulator,
    key: PRNGKeyArray,
    *,
    q: float = 0.3,
    starts: int = 200,
    samples: int = 64,
    levels: int = 32,
    chunk: int = 4096,
) -> dict:
    """One-step forecast scores of the emulator and of the exact transition (see module doc)."""
    model = Lorenz96(dim=emulator.state_size)
    k_traj, k_y, k_em, k_or = jax.random.split(key, 4)
    x0 = simulate(k_traj, starts * 10, model=model, q=q)[::10]
    mean_true = model(x0)
    y = mean_true + q * jax.random.normal(k_y, x0.shape)

    sampler = jax.jit(jax.vmap(lambda k, x: sample_next(emulator, k, x, levels=levels)))
    flat_x0 = jnp.repeat(x0, samples, axis=0)
    keys = jax.random.split(k_em, flat_x0.shape[0])
    out = [sampler(keys[i:i + chunk], flat_x0[i:i + chunk]) for i in range(0, flat_x0.shape[0], chunk)]
    ens = jnp.concatenate(out).reshape(starts, samples, -1)
    oracle = mean_true[:, None] + q * jax.random.normal(k_or, ens.shape)

    sigma = 80.0
    denoised_mean = jax.jit(jax.vmap(
        lambda k, x: emulator.to_state(
            emulator.denoiser(sigma * emulator.noise(k), sigma, emulator.context(x[None])), x[None])
    ))(jax.random.split(key, starts), x0)
    return {
        "emulator": assimilax.metrics.transition_scores(ens, mean_true, y),
        "oracle": assimilax.metrics.transition_scores(oracle, mean_true, y),
        "denoiser_mean_rmse_sigma80": float(jnp.sqrt(jnp.mean((denoised_mean - mean_true) ** 2))),
        "std_per_component_range": [float(ens.std(axis=1, ddof=1).mean(axis=0).min()),
                                    float(ens.std(axis=1, ddof=1).mean(axis=0).max())],
    }


def _autocorrelation(xs: Float[Array, "c t d"], max_lag: int) -> list[float]:
    xs = xs - xs.mean(axis=(0, 1))
    var = jnp.mean(xs**2)
    return [float(jnp.mean(xs[:, lag:] * xs[:, :-lag]) / var) for lag in range(1, max_lag + 1)]


def _stats(xs: Float[Array, "c t d"], max_lag: int = 5) -> dict:
    return {"mean": float(xs.mean()), "variance": float(xs.var()), "acf": _autocorrelation(xs, max_lag)}


def climatology(
    emulator: Lorenz96Emulator,
    key: PRNGKeyArray,
    *,
    q: float = 0.3,
    chains: int = 32,
    run: int = 300,
    burn: int = 20,
    levels: int = 32,
) -> dict:
    """Free-running statistics of the emulator and of the true stochastic model."""
    model = Lorenz96(dim=emulator.state_size)
    k_start, k_run, k_true = jax.random.split(key, 3)
    x_start = jax.vmap(lambda k: simulate(k, 1, model=model, q=q))(jax.random.split(k_start, chains))[:, 0]
    step = jax.jit(jax.vmap(lambda k, x: sample_next(emulator, k, x, levels=levels)))

    xs, x = [], x_start
    for t in range(run):
        x = step(jax.random.split(jax.random.fold_in(k_run, t), chains), x)
        xs.append(x)
    em = jnp.stack(xs, axis=1)[:, burn:]
    finite = bool(jnp.all(jnp.isfinite(em)))
    true = jax.vmap(lambda k: simulate(k, 20000, model=model, q=q))(jax.random.split(k_true, 8))
    return {"emulator": _stats(em), "truth": _stats(true), "finite": finite,
            "emulator_samples": int(em.shape[0] * em.shape[1]), "truth_samples": int(true.shape[0] * true.shape[1])}


def _table(one: dict, clim: dict | None) -> str:
    rows = ["One-step forecast (state units)", f"{'':34s}{'emulator':>10s}{'oracle':>10s}"]
    names = [("mean_rmse", "RMSE sample mean vs M(x0)"),
             ("mean_bias", "  of which bias (MC removed)"),
             ("spread", "spread: sqrt mean var (q = 0.3)"),
             ("skill", "skill: RMSE(mean, truth draw)"),
             ("spread_skill", "spread/skill (n-corrected)"),
             ("crps", "CRPS")]
    for k, name in names:
        rows.append(f"{name:34s}{one['emulator'][k]:10.4f}{one['oracle'][k]:10.4f}")
    rows.append(f"{'RMSE denoiser mean (sigma=80)':34s}{one['denoiser_mean_rmse_sigma80']:10.4f}{0.0:10.4f}")
    lo, hi = one["std_per_component_range"]
    rows.append(f"{'per-component std range':34s}{lo:6.3f}-{hi:.3f}")
    if clim is not None:
        rows += ["", "Free-running climatology", f"{'':34s}{'emulator':>10s}{'truth':>10s}"]
        e, t = clim["emulator"], clim["truth"]
        rows.append(f"{'mean':34s}{e['mean']:10.4f}{t['mean']:10.4f}")
        rows.append(f"{'variance':34s}{e['variance']:10.4f}{t['variance']:10.4f}")
        for lag, (a, b) in enumerate(zip(e["acf"], t["acf"]), start=1):
            rows.append(f"{f'autocorrelation lag {lag}':34s}{a:10.4f}{b:10.4f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Evaluate the Lorenz-96 emulator.")
    p.add_argument("--weights", default=None, help="path to a .eqx file (default: shipped weights)")
    p.add_argument("--q", type=float, default=0.3)
    p.add_argument("--starts", type=int, default=200)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--levels", type=int, default=32)
    p.add_argument("--chains", type=int, default=32)
    p.add_argument("--run", type=int, default=300)
    p.add_argument("--no-climatology", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    emulator = load_emulator(args.weights)
    key = jax.random.key(args.seed)
    t = time.time()
    one = one_step_scores(emulator, key, q=args.q, starts=args.starts, samples=args.samples, levels=args.levels)
    print(f"one-step: {time.time() - t:.1f}s", flush=True)
    clim = None
    if not args.no_climatology:
        t = time.time()
        clim = climatology(emulator, jax.random.fold_in(key, 1), q=args.q, chains=args.chains,
                           run=args.run, levels=args.levels)
        print(f"climatology: {time.time() - t:.1f}s ({clim['emulator_samples']} emulator states, "
              f"{clim['truth_samples']} true states, finite={clim['finite']})", flush=True)
    print(_table(one, clim))


if __name__ == "__main__":
    main()
