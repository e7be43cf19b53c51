"""Train the Lorenz-96 diffusion emulator on the stochastic model (q = 0.3 by default).

    python -m assimilax_adapters.lorenz96.train --out adapters/lorenz96/weights

Data.  A pool of start states ``x[k]`` is drawn from long trajectories of the stochastic
model ``x[k+1] = M(x[k]) + q eps`` (after spin-up).  Each training step takes a batch of
start states from the pool and draws *fresh* transitions ``x[k+1] = M(x[k]) + q eps`` from
the same stochastic model: the emulator never sees the same noise twice, so the target noise
(std ``q / s_inc`` in target units) averages out instead of being memorised, and the
conditional mean ``E[x[k+1] | x[k]] = M(x[k])`` is learnt to a small fraction of ``q``.

Loss.  EDM (Karras et al., 2022): ``sigma`` log-normal, ``ln sigma ~ N(P_mean, P_std^2)``
with ``P_mean = -1.2``, ``P_std = 1.2``, weighted by
``lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2``, i.e.
``E[ lambda(sigma) |D(z + sigma n, sigma; c) - z|^2 ]``.  A fraction (default 25%) of the
noise levels is instead drawn log-uniformly on ``[2e-3, 100]``: the log-normal puts almost
no mass above ``sigma ~ 5``, yet the FA-APF reads the predictive mean off the denoiser at
``sigma_max ~ 80-88`` and samplers start there, so those levels must be trained too.

Optimiser: Adam with linear warm-up and cosine decay (over steps, or over a wall-time budget
with ``--time-budget``), gradient clipping, and an exponential moving average (EMA) of the
weights, which is what is saved.  The step is jitted.
"""

import argparse
import json
import math
import pathlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from .dynamics import Lorenz96, simulate
from .emulator import Lorenz96Emulator, build_emulator, save_emulator
from .network import count_parameters

__all__ = ["edm_loss", "main", "make_pool", "train"]

P_MEAN, P_STD = -1.2, 1.2


def make_pool(
    key: PRNGKeyArray, trajectories: int, length: int, *, model: Lorenz96, q: float, spinup: int = 1000
) -> Float[Array, "n d"]:
    """``trajectories * length`` start states from independent stochastic trajectories."""
    keys = jax.random.split(key, trajectories)
    xs = jax.vmap(lambda k: simulate(k, length, model=model, q=q, spinup=spinup))(keys)
    return xs.reshape(-1, model.dim)


def sample_sigma(key: PRNGKeyArray, n: int, uniform_fraction: float) -> Float[Array, " n"]:
    """EDM log-normal levels, a fraction replaced by log-uniform ones on [2e-3, 100]."""
    k1, k2, k3 = jax.random.split(key, 3)
    log_normal = P_MEAN + P_STD * jax.random.normal(k1, (n,))
    log_uniform = jax.random.uniform(k2, (n,), minval=math.log(2e-3), maxval=math.log(100.0))
    use_uniform = jax.random.uniform(k3, (n,)) < uniform_fraction
    return jnp.exp(jnp.where(use_uniform, log_uniform, log_normal))


def edm_loss(
    emulator: Lorenz96Emulator,
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
        weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
        return weight * jnp.mean((d - z) ** 2)

    return jnp.mean(jax.vmap(one)(x0, x1, sigma, noise))


def mean_error(
    emulator: Lorenz96Emulator, model: Lorenz96, x0: Float[Array, "b d"], sigma: float | Float[Array, ""]
) -> Float[Array, ""]:
    """RMS error (state units) of ``to_state(D(sigma eps, sigma; c))`` against ``M(x0)``.

    At large ``sigma`` the denoiser output is the learnt conditional mean ``E[x[k+1] | x[k]]``
    (the FA-APF's Dirac location), so this measures how well the mean dynamics is learnt.
    """

    def one(x, k):
        h = x[None]
        z = emulator.denoiser(sigma * jax.random.normal(k, x.shape), sigma, emulator.context(h))
        return emulator.to_state(z, h) - model(x)

    err = jax.vmap(one)(x0, jax.random.split(jax.random.key(123), x0.shape[0]))
    return jnp.sqrt(jnp.mean(err**2))


def train(
    *,
    q: float = 0.3,
    dim: int = 40,
    steps: int = 6000,
    batch: int = 256,
    lr: float = 2e-3,
    warmup: int = 300,
    ema_decay: float = 0.999,
    uniform_fraction: float = 0.25,
    trajectories: int = 32,
    length: int = 4000,
    channels: int = 32,
    embed: int = 32,
    dilations: tuple[int, ...] = (1, 2, 4, 1, 2, 4),
    seed: int = 0,
    log_every: int = 200,
    time_budget: float | None = None,
) -> tuple[Lorenz96Emulator, dict]:
    """Train an emulator; return it (EMA weights) and its config + training report."""
    t_start = time.time()
    model = Lorenz96(dim=dim)
    k_pool, k_val, k_init, k_train = jax.random.split(jax.random.key(seed), 4)
    pool = make_pool(k_pool, trajectories, length, model=model, q=q)
    val_x0 = make_pool(k_val, 4, 128, model=model, q=q)
    # Climatological normalisation (scalars: Lorenz-96 is homogeneous).
    k_inc = jax.random.key(seed + 1)
    inc = model(pool) + q * jax.random.normal(k_inc, pool.shape) - pool
    config = dict(
        dim=dim, channels=channels, embed=embed, dilations=list(dilations), sigma_data=1.0,
        state_mean=float(pool.mean()), state_std=float(pool.std()),
        increment_mean=float(inc.mean()), increment_std=float(inc.std()),
        forcing=model.forcing, dt=model.dt, steps_per_interval=model.steps, q=q,
    )
    emulator = build_emulator(config, k_init)
    n_params = count_parameters(emulator.denoiser.network)
    print(f"pool: {pool.shape[0]} start states; network parameters: {n_params}", flush=True)
    print(f"normalisation: {json.dumps({k: config[k] for k in ('state_mean', 'state_std', 'increment_mean', 'increment_std')})}", flush=True)

    # Learning rate: linear warm-up over `warmup` steps, then a cosine decay to lr / 100
    # over the training *progress*: the fraction of `steps` done or, with `time_budget`, the
    # fraction of the wall-time budget used (the CPU is shared, so the step rate is not known
    # in advance and a step-based cosine could be cut off before it has annealed).
    def learning_rate(i: int, progress: float) -> float:
        warm = min(1.0, (i + 1) / warmup)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return lr * warm * (0.01 + 0.99 * cosine)

    optimiser = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam())
    params, static = eqx.partition(emulator, eqx.is_inexact_array)
    opt_state = optimiser.init(params)
    ema = params

    @jax.jit
    def step(params, ema, opt_state, key, rate, decay):
        k_idx, k_eps, k_sig, k_n = jax.random.split(key, 4)
        idx = jax.random.randint(k_idx, (batch,), 0, pool.shape[0])
        x0 = pool[idx]
        x1 = model(x0) + q * jax.random.normal(k_eps, x0.shape)
        sigma = sample_sigma(k_sig, batch, uniform_fraction)
        noise = jax.random.normal(k_n, x0.shape)

        def loss_fn(p):
            return edm_loss(eqx.combine(p, static), x0, x1, sigma, noise)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimiser.update(grads, opt_state, params)
        params = jax.tree_util.tree_map(lambda p, u: p - rate * u, params, updates)
        ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
        return params, ema, opt_state, loss

    evaluate = jax.jit(lambda p, s: mean_error(eqx.combine(p, static), model, val_x0, s))

    t_train = time.time()
    losses = []
    done = 0
    i = 0
    while True:
        elapsed = time.time() - t_train
        progress = elapsed / time_budget if time_budget is not None else i / steps
        if progress >= 1.0:
            break
        rate = learning_rate(i, progress)
        # EMA with a warm-up (decay (1 + i) / (10 + i) early on) so the initial weights wash out.
        decay = min(ema_decay, (1.0 + i) / (10.0 + i))
        params, ema, opt_state, loss = step(params, ema, opt_state, jax.random.fold_in(k_train, i),
                                            rate, decay)
        i += 1
        done = i
        losses.append(float(loss) if i % 10 == 0 else None)
        if i % log_every == 0:
            recent = [l for l in losses[-log_every:] if l is not None]
            msg = (f"step {i:6d}  loss {np.mean(recent):.4f}  lr {rate:.2e}  "
                   f"t {time.time() - t_train:7.1f}s")
            if i % (5 * log_every) == 0:
                msg += f"  mean-err(ema, sigma=80) {float(evaluate(ema, 80.0)):.4f}"
            print(msg, flush=True)
    wall = time.time() - t_start
    emulator = eqx.combine(ema, static)
    recent = [l for l in losses[-500:] if l is not None]
    errors = {f"sigma={s:g}": float(evaluate(ema, s)) for s in (80.0, 5.0, 1.0)}
    report = dict(
        data=dict(
            trajectories=trajectories, length=length, spinup=1000, start_states=int(pool.shape[0]),
            transitions_seen=done * batch,
            note="start states from stochastic trajectories; a fresh transition "
                 "x1 = M(x0) + q eps is drawn for every batch element at every step",
        ),
        steps=done, time_budget_s=time_budget, batch=batch, lr=lr, warmup=warmup, ema_decay=ema_decay,
        sigma_sampling=dict(P_mean=P_MEAN, P_std=P_STD, uniform_fraction=uniform_fraction,
                            uniform_range=[2e-3, 100.0]),
        parameters=n_params, seed=seed,
        wall_time_s=round(wall, 1), train_time_s=round(time.time() - t_train, 1),
        final_loss=float(np.mean(recent)),
        final_loss_note="mean EDM-weighted training loss over the last 500 steps (raw weights)",
        validation_mean_rmse_state_units=errors,
        validation_note="RMS over 512 held-out start states of to_state(D(sigma eps, sigma)) - M(x0), EMA weights",
        jax_version=jax.__version__, equinox_version=eqx.__version__,
    )
    config["training"] = report
    return emulator, config


def main(argv: list[str] | None = None) -> None:
    here = pathlib.Path(__file__).parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=pathlib.Path, default=here / "weights",
                   help="output directory (weights file and JSON written there)")
    p.add_argument("--name", default="lorenz96_q0.3")
    p.add_argument("--q", type=float, default=0.3)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--trajectories", type=int, default=32)
    p.add_argument("--length", type=int, default=4000)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--uniform-fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-budget", type=float, default=None,
                   help="train for this many seconds (cosine schedule over wall time); overrides --steps")
    args = p.parse_args(argv)
    emulator, config = train(
        q=args.q, steps=args.steps, batch=args.batch, lr=args.lr, trajectories=args.trajectories,
        length=args.length, channels=args.channels, uniform_fraction=args.uniform_fraction,
        seed=args.seed, time_budget=args.time_budget,
    )
    config["training"]["command"] = "python -m assimilax_adapters.lorenz96.train " + " ".join(
        argv if argv is not None else __import__("sys").argv[1:])
    path = args.out / f"{args.name}.eqx"
    save_emulator(path, emulator, config)
    print(json.dumps(config["training"], indent=2))
    print(f"saved {path} ({path.stat().st_size} bytes) and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
