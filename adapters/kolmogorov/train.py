"""Train the Kolmogorov-flow diffusion emulator on the stochastic model (q = 0.5 by default).

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 1 \\
        python -m assimilax_adapters.kolmogorov.train --time-budget 1200

Data.  ``--trajectories`` stochastic trajectories ``x[k+1] = M(x[k]) + q eps`` of
``--length`` intervals after a 120-interval spin-up give a pool of pairs ``(x[k], M(x[k]))``
(the deterministic image is kept, the noise is not).  Each training step draws a batch of
pairs and *fresh* noise, ``x1 = M(x0) + q eps``: an exact draw of the transition, never the
same twice.  Each pair is also shifted by a random roll along ``x_0`` (any, the flow is
homogeneous there) and along ``x_1`` by a multiple of the forcing period ``N / k``; ``M``
commutes with both, so the shifted pair is an exact pair too (a cheap 64 x 4 augmentation).

Loss.  EDM (Karras et al., 2022): ``ln sigma ~ N(-1.2, 1.2^2)``, a fraction (default 25%)
drawn log-uniformly on ``[2e-3, 100]`` instead (the FA-APF reads the predictive mean off the
denoiser at ``sigma ~ 80`` and samplers start there), weighted by
``(sigma^2 + sd^2) / (sigma sd)^2``.  Adam, linear warm-up, cosine decay over a wall-time
budget (the CPU is shared), gradient clipping and an EMA of the weights, which is saved.
"""

import argparse
import json
import math
import pathlib
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from .dynamics import KolmogorovFlow, laminar_state
from .emulator import KolmogorovEmulator, build_emulator, save_emulator
from .network import count_parameters

__all__ = ["edm_loss", "main", "make_pairs", "mean_error", "train"]

P_MEAN, P_STD = -1.2, 1.2


def make_pairs(
    key: PRNGKeyArray, trajectories: int, length: int, *, model: KolmogorovFlow, q: float, spinup: int = 120
) -> tuple[Float[Array, "n d"], Float[Array, "n d"]]:
    """Pairs ``(x[k], M(x[k]))`` along `trajectories` independent stochastic trajectories."""

    def one(k):
        k0, ks, kr = jax.random.split(k, 3)
        x = laminar_state(model) + jax.random.normal(k0, (model.state_size,))

        def body(x, kk):
            m = model(x)
            return m + q * jax.random.normal(kk, x.shape), (x, m)

        x = jax.lax.scan(body, x, jax.random.split(ks, spinup))[0]
        return jax.lax.scan(body, x, jax.random.split(kr, length))[1]

    x0, m = jax.lax.map(one, jax.random.split(key, trajectories))
    return x0.reshape(-1, model.state_size), m.reshape(-1, model.state_size)


def sample_sigma(key: PRNGKeyArray, n: int, uniform_fraction: float) -> Float[Array, " n"]:
    """EDM log-normal levels, a fraction replaced by log-uniform ones on [2e-3, 100]."""
    k1, k2, k3 = jax.random.split(key, 3)
    log_normal = P_MEAN + P_STD * jax.random.normal(k1, (n,))
    log_uniform = jax.random.uniform(k2, (n,), minval=math.log(2e-3), maxval=math.log(100.0))
    use_uniform = jax.random.uniform(k3, (n,)) < uniform_fraction
    return jnp.exp(jnp.where(use_uniform, log_uniform, log_normal))


def edm_loss(
    emulator: KolmogorovEmulator,
    x0: Float[Array, "b d"],
    x1: Float[Array, "b d"],
    sigma: Float[Array, " b"],
    noise: Float[Array, "b d"],
) -> Float[Array, ""]:
    """``mean_b lambda(sigma) |D(z + sigma n, sigma; c) - z|^2 / d`` with EDM's ``lambda``."""
    sd = emulator.denoiser.sigma_data

    def one(x0, x1, sigma, noise):
        h = x0[None]
        z = emulator.to_target(x1, h)
        d = emulator.denoiser(z + sigma * noise, sigma, emulator.context(h))
        return (sigma**2 + sd**2) / (sigma * sd) ** 2 * jnp.mean((d - z) ** 2)

    return jnp.mean(jax.vmap(one)(x0, x1, sigma, noise))


def mean_error(
    emulator: KolmogorovEmulator, x0: Float[Array, "b d"], m: Float[Array, "b d"], sigma: float
) -> Float[Array, ""]:
    """RMS (state units) of ``to_state(D(sigma eps, sigma; c))`` against ``M(x0)``.

    At large ``sigma`` the denoiser output is the learnt conditional mean (the FA-APF's Dirac
    location), so this measures how well the mean dynamics is learnt.
    """

    def one(x, k):
        h = x[None]
        z = emulator.denoiser(sigma * jax.random.normal(k, x.shape), sigma, emulator.context(h))
        return emulator.to_state(z, h)

    out = jax.lax.map(lambda a: one(*a), (x0, jax.random.split(jax.random.key(123), x0.shape[0])))
    return jnp.sqrt(jnp.mean((out - m) ** 2))


def train(
    *,
    q: float = 0.5,
    batch: int = 16,
    lr: float = 2e-3,
    warmup: int = 100,
    ema_decay: float = 0.995,
    uniform_fraction: float = 0.25,
    trajectories: int = 24,
    length: int = 200,
    channels: tuple[int, ...] = (16, 32, 48),
    embed: int = 32,
    seed: int = 0,
    log_every: int = 50,
    time_budget: float = 1200.0,
    steps: int | None = None,
) -> tuple[KolmogorovEmulator, dict]:
    """Train an emulator; return it (EMA weights) and its config + training report."""
    t_start = time.time()
    model = KolmogorovFlow()
    n = model.num_points
    k_pool, k_val, k_init, k_train = jax.random.split(jax.random.key(seed), 4)
    x0_pool, m_pool = jax.jit(lambda k: make_pairs(k, trajectories, length, model=model, q=q))(k_pool)
    val_x0, val_m = jax.jit(lambda k: make_pairs(k, 4, 8, model=model, q=q))(k_val)
    t_data = time.time() - t_start
    inc = m_pool - x0_pool + q * jax.random.normal(jax.random.key(seed + 1), m_pool.shape)
    config = dict(
        num_points=n, channels=list(channels), embed=embed, forcing_mode=model.forcing_mode, sigma_data=1.0,
        state_mean=float(x0_pool.mean()), state_std=float(x0_pool.std()),
        increment_mean=float(inc.mean()), increment_std=float(inc.std()),
        viscosity=model.viscosity, drag=model.drag, forcing_amplitude=model.forcing_amplitude,
        interval=model.interval, substeps=model.substeps, q=q,
    )
    emulator = build_emulator(config, k_init)
    n_params = count_parameters(emulator.denoiser.network.network)
    print(f"pool: {x0_pool.shape[0]} pairs in {t_data:.1f}s; network parameters: {n_params}", flush=True)
    print("normalisation: " + json.dumps({k: config[k] for k in
          ("state_mean", "state_std", "increment_mean", "increment_std")}), flush=True)

    def learning_rate(i: int, progress: float) -> float:
        warm = min(1.0, (i + 1) / warmup)
        return lr * warm * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))

    optimiser = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam())
    params, static = eqx.partition(emulator, eqx.is_inexact_array)
    opt_state = optimiser.init(params)
    ema = params
    period = n // model.forcing_mode

    @jax.jit
    def step(params, ema, opt_state, key, rate, decay):
        k_idx, k_eps, k_sig, k_n, k_r0, k_r1 = jax.random.split(key, 6)
        idx = jax.random.randint(k_idx, (batch,), 0, x0_pool.shape[0])
        r0 = jax.random.randint(k_r0, (batch,), 0, n)
        r1 = period * jax.random.randint(k_r1, (batch,), 0, model.forcing_mode)

        def shift(x, a, b):
            return jnp.roll(x.reshape(n, n), (a, b), axis=(0, 1)).reshape(-1)

        x0 = jax.vmap(shift)(x0_pool[idx], r0, r1)
        x1 = jax.vmap(shift)(m_pool[idx], r0, r1) + q * jax.random.normal(k_eps, x0.shape)
        sigma = sample_sigma(k_sig, batch, uniform_fraction)
        noise = jax.random.normal(k_n, x0.shape)
        loss, grads = jax.value_and_grad(lambda p: edm_loss(eqx.combine(p, static), x0, x1, sigma, noise))(params)
        updates, opt_state = optimiser.update(grads, opt_state, params)
        params = jax.tree_util.tree_map(lambda p, u: p - rate * u, params, updates)
        ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
        return params, ema, opt_state, loss

    evaluate = jax.jit(lambda p, s: mean_error(eqx.combine(p, static), val_x0, val_m, s))

    t_train = time.time()
    losses, curve = [], []
    i = 0
    while True:
        progress = (time.time() - t_train) / time_budget if steps is None else i / steps
        if progress >= 1.0:
            break
        rate = learning_rate(i, progress)
        decay = min(ema_decay, (1.0 + i) / (10.0 + i))
        params, ema, opt_state, loss = step(params, ema, opt_state, jax.random.fold_in(k_train, i), rate, decay)
        losses.append(float(loss))
        i += 1
        if i % log_every == 0:
            entry = dict(step=i, loss=float(np.mean(losses[-log_every:])), time_s=round(time.time() - t_train, 1))
            msg = f"step {i:6d}  loss {entry['loss']:.4f}  lr {rate:.2e}  t {entry['time_s']:7.1f}s"
            if i % (5 * log_every) == 0:
                entry["mean_rmse_sigma80"] = float(evaluate(ema, 80.0))
                msg += f"  mean-err(ema, sigma=80) {entry['mean_rmse_sigma80']:.4f}"
            curve.append(entry)
            print(msg, flush=True)
    emulator = eqx.combine(ema, static)
    errors = {f"sigma={s:g}": float(evaluate(ema, s)) for s in (80.0, 5.0, 1.0)}
    config["training"] = dict(
        data=dict(trajectories=trajectories, length=length, spinup=120, pairs=int(x0_pool.shape[0]),
                  generation_s=round(t_data, 1), transitions_seen=i * batch,
                  note="pairs (x[k], M(x[k])) from stochastic trajectories; fresh noise and a random "
                       "symmetry shift (any along x_0, forcing periods along x_1) at every step"),
        steps=i, time_budget_s=time_budget, batch=batch, lr=lr, warmup=warmup, ema_decay=ema_decay,
        sigma_sampling=dict(P_mean=P_MEAN, P_std=P_STD, uniform_fraction=uniform_fraction,
                            uniform_range=[2e-3, 100.0]),
        parameters=n_params, seed=seed, wall_time_s=round(time.time() - t_start, 1),
        train_time_s=round(time.time() - t_train, 1),
        final_loss=float(np.mean(losses[-200:])),
        final_loss_note="mean EDM-weighted training loss over the last 200 steps (raw weights)",
        loss_curve=curve,
        validation_mean_rmse_state_units=errors,
        validation_note="RMS over 32 held-out start states of to_state(D(sigma eps, sigma)) - M(x0), EMA weights",
        jax_version=jax.__version__, equinox_version=eqx.__version__,
    )
    return emulator, config


def main(argv: list[str] | None = None) -> None:
    here = pathlib.Path(__file__).parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--out", type=pathlib.Path, default=here / "weights",
                   help="output directory (weights file and JSON written there)")
    p.add_argument("--name", default="kolmogorov_q0.5")
    p.add_argument("--q", type=float, default=0.5, help="model-noise std per interval")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--trajectories", type=int, default=24)
    p.add_argument("--length", type=int, default=200, help="intervals per trajectory after spin-up")
    p.add_argument("--channels", type=int, nargs="+", default=[16, 32, 48])
    p.add_argument("--uniform-fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-budget", type=float, default=1200.0,
                   help="seconds of training (cosine schedule over wall time)")
    p.add_argument("--steps", type=int, default=None, help="train this many steps instead of a time budget")
    args = p.parse_args(argv)
    emulator, config = train(
        q=args.q, batch=args.batch, lr=args.lr, trajectories=args.trajectories, length=args.length,
        channels=tuple(args.channels), uniform_fraction=args.uniform_fraction, seed=args.seed,
        time_budget=args.time_budget, steps=args.steps,
    )
    config["training"]["command"] = "python -m assimilax_adapters.kolmogorov.train " + " ".join(
        argv if argv is not None else sys.argv[1:])
    path = args.out / f"{args.name}.eqx"
    save_emulator(path, emulator, config)
    report = {k: v for k, v in config["training"].items() if k != "loss_curve"}
    print(json.dumps(report, indent=2))
    print(f"saved {path} ({path.stat().st_size} bytes) and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
