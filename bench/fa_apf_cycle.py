"""FA-APF cycle cost against its floor: the denoiser evaluations the cycle needs.

Model: the Gaussian-transition emulator ``x' = f(x) + N(0, q^2 I)`` with ``f`` one RK4 step
of Lorenz-96 (d = 40, F = 8, dt = 0.05, written here so the bench needs only the core),
q = 0.3, every other component observed with sigma = 1.  Filter: the reference FA-APF
(Dirac weights, ESS-band tempering, systematic resampling, MMPS guidance with CG), with
the reference sampler (32 Karras levels, Adams-Bashforth 3, 2 Langevin corrector steps).

The floor is the time of the same number of *unguided* denoiser evaluations, vmapped
over the N particles and chained (so none can be skipped): ``N * (1 + calls per sample)``.
Each number is the median of `--repeats` timed calls after a warm-up; compile time is
reported apart.

    python bench/fa_apf_cycle.py --particles 64 256 1024 4096 --out bench/results/fa_apf_cycle.md
"""

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import assimilax as ax


def lorenz96_rk4(x, forcing=8.0, dt=0.05):
    def tendency(x):
        return (jnp.roll(x, -1) - jnp.roll(x, 2)) * jnp.roll(x, 1) - x + forcing

    k1 = tendency(x)
    k2 = tendency(x + 0.5 * dt * k1)
    k3 = tendency(x + 0.5 * dt * k2)
    k4 = tendency(x + dt * k3)
    return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def timed(fn, *args, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    run = float(np.median(times))
    return first - run, run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    d, q = 40, 0.3
    emulator = ax.GaussianTransitionEmulator(lorenz96_rk4, q**2 * jnp.eye(d))
    observation = ax.ObservationModel(ax.Selection.every(2, d), ax.DiagonalGaussianNoise(1.0, d // 2))
    sampler = ax.Sampler(
        ax.EDMSchedule(2e-5, 88.0, 6.0), 32, ax.AdamsBashforth3(), ax.LangevinCorrector(2, 0.2)
    )
    filt = ax.FAAPF(emulator, observation, sampler)
    calls = 1 + sampler.denoiser_calls()  # the mean-dynamics call + the proposal's
    step = eqx.filter_jit(filt.step)
    # The same sampler without guidance: what the filter machinery costs on top of the floor.
    forecast_step = eqx.filter_jit(ax.EnsembleForecast(emulator, sampler).step)

    @eqx.filter_jit
    def floor(x, ctx):
        levels = jnp.geomspace(88.0, 2e-5, calls)

        def body(i, x):
            return jax.vmap(lambda xi, ci: emulator.denoiser(xi, levels[i], ci))(x, ctx)

        return jax.lax.fori_loop(0, calls, body, x)

    rows = []
    for n in args.particles:
        key = jax.random.key(0)
        x0 = 8.0 + jax.random.normal(key, (n, d))
        state = filt.init(x0)
        y = jnp.asarray(observation.sample(jax.random.key(1), lorenz96_rk4(x0[0])))
        compile_s, cycle_s = timed(step, state, y, jax.random.key(2), repeats=args.repeats)
        _, forecast_s = timed(forecast_step, state, y, jax.random.key(2), repeats=args.repeats)
        ctx = jax.vmap(lorenz96_rk4)(x0)
        _, floor_s = timed(floor, x0, ctx, repeats=args.repeats)
        rows.append((n, compile_s, cycle_s, floor_s, forecast_s))
        print(f"N={n:5d}  compile {compile_s:7.2f} s  cycle {cycle_s:8.3f} s  floor {floor_s:8.3f} s  ratio {cycle_s / floor_s:6.1f}  unguided {forecast_s / floor_s:5.1f}", flush=True)

    header = (
        f"FA-APF cycle vs denoiser floor, Gaussian-transition Lorenz-96 (d = {d}), "
        f"{calls} denoiser calls per particle per cycle; jax {jax.__version__}, "
        f"{jax.devices()[0].platform}, {platform.processor() or platform.machine()}, "
        f"{date.today().isoformat()}\n\n"
        "| N | compile (s) | FA-APF cycle (s) | floor (s) | cycle / floor | unguided cycle / floor |\n"
        "|---|---|---|---|---|---|\n"
    )
    table = header + "".join(
        f"| {n} | {c:.2f} | {r:.3f} | {f:.4f} | {r / f:.1f} | {u / f:.1f} |\n" for n, c, r, f, u in rows
    )
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)


if __name__ == "__main__":
    main()
