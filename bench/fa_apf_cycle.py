"""FA-APF cycle cost against its floor: the denoiser evaluations and VJPs the cycle needs.

Two set-ups (`--emulator`):

- ``gaussian``: the Gaussian-transition emulator ``x' = f(x) + N(0, q^2 I)`` with ``f`` one RK4
  step of Lorenz-96 (d = 40, F = 8, dt = 0.05, written here), q = 0.3, every other component
  observed with sigma = 1; the reference FA-APF (Dirac weights, ESS-band tempering,
  systematic resampling, MMPS with 3 CG steps at every level) and the reference sampler
  (32 Karras levels, Adams-Bashforth 3, 2 Langevin corrector steps);
- ``shipped``: the `assimilax lorenz96` job's ``fa-apf`` (shipped network emulator, MMPS
  guiding below sigma = 5) with its default sampler (``--sampler default``: 12 levels of
  DPM-Solver++(2S), 1 CG step) or the reference one (``--sampler reference``: 32 levels,
  AB3, 2 correctors, 3 CG steps).

The floor counts what the cycle must compute, per particle: one forward pass for the mean
dynamics, a forward pass for each unguided evaluation of the sampler, and for each guided
one a forward pass and ``k`` pullbacks (vector-Jacobian products ``J^T u``: MMPS's unrolled
CG with ``k`` steps takes one per step and reuses them for the update; the observation
operator's products are not counted).  The counts come from `Sampler.calls` (the levels at
which `GuidanceBelowLevel` switches).  The costs of one forward pass and of one pullback are
measured apart, on the same N particles: a chain of vmapped forward passes, and a chain of
forward passes each followed by its pullback (the pullback is the difference).  Each number
is the fastest of `--repeats` timed calls after a warm-up, the cycle's and the floor's calls
interleaved so that other load on a shared machine hits them alike; compile time (lowering
and compilation of the cycle) is reported apart.

    python bench/fa_apf_cycle.py --emulator gaussian --particles 64 256 1024 4096 --out bench/results/fa_apf_cycle.md
    python bench/fa_apf_cycle.py --emulator shipped --sampler default --particles 64 256 --out bench/results/fa_apf_cycle_shipped.md
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


def compiled(fn, *args):
    """`fn` compiled for `args`, and the compile time (lowering + compilation)."""
    t0 = time.perf_counter()
    program = eqx.filter_jit(fn).lower(*args).compile()
    return program, time.perf_counter() - t0


def interleaved(calls, repeats):
    """The fastest of `repeats` timed runs of each ``(program, args)``, runs interleaved so
    that other load on the (shared) machine hits all of them alike; after a warm-up run."""
    times = [[] for _ in calls]
    for r in range(repeats + 1):
        for i, (program, args) in enumerate(calls):
            t0 = time.perf_counter()
            jax.block_until_ready(program(*args))
            if r > 0:
                times[i].append(time.perf_counter() - t0)
    return [min(t) for t in times]


CHAIN = 16  # calls per timed chain when measuring one forward pass / one pullback


def gaussian_filter(n):
    d, q = 40, 0.3
    emulator = ax.GaussianTransitionEmulator(lorenz96_rk4, q**2 * jnp.eye(d))
    observation = ax.ObservationModel(ax.Selection.every(2, d), ax.DiagonalGaussianNoise(1.0, d // 2))
    sampler = ax.Sampler(
        ax.EDMSchedule(2e-5, 88.0, 6.0), 32, ax.AdamsBashforth3(), ax.LangevinCorrector(2, 0.2)
    )
    filt = ax.FAAPF(emulator, observation, sampler, ax.MMPS(iterations=3))
    x0 = 8.0 + jax.random.normal(jax.random.key(0), (n, d))
    y = jnp.asarray(observation.sample(jax.random.key(1), lorenz96_rk4(x0[0])))
    return filt, x0, y


def shipped_filter(n, sampler):
    from assimilax_adapters.lorenz96.experiment import TwinExperiment, build_filters, twin_data

    settings = {
        "default": dict(levels=12, solver="dpm2s", corrector_steps=0, cg_iterations=1),
        "reference": dict(levels=32, solver="ab3", corrector_steps=2, cg_iterations=3),
    }[sampler]
    cfg = TwinExperiment(particles=n, cycles=1, spinup=0, filters=("fa-apf",), **settings)
    _, observations, ensemble = twin_data(cfg)
    return build_filters(cfg)["fa-apf"], jnp.asarray(ensemble), jnp.asarray(observations[0])


def counts(filt) -> tuple[int, int, int]:
    """(forward-only evaluations, guided evaluations, pullbacks per guided one) per particle."""
    guidance, sampler = filt.guidance, filt.sampler
    if isinstance(guidance, ax.GuidanceBelowLevel):
        calls = sampler.calls(guidance.max_sigma)
        guidance = guidance.guidance
    else:
        calls = ax.DenoiserCalls(0, sampler.denoiser_calls())
    if not (isinstance(guidance, ax.MMPS) and guidance.solver is None):
        raise ValueError(f"the floor is counted for MMPS with unrolled CG, got {guidance}")
    return 1 + calls.above, calls.below, guidance.iterations


def unit_programs(emulator, x0):
    """Compiled chains of `CHAIN` vmapped forward passes, and of forward passes each followed
    by its pullback, with their arguments."""
    levels = jnp.geomspace(88.0, 2e-5, CHAIN)
    context = jax.vmap(lambda h: emulator.context(h[None]))(x0)

    def forward(emulator, x, sigma):
        return jax.vmap(lambda xi, ci: emulator.denoiser(xi, sigma, ci))(x, context)

    def forwards(emulator, x):
        return jax.lax.fori_loop(0, CHAIN, lambda i, x: forward(emulator, x, levels[i]), x)

    def with_pullbacks(emulator, x):
        def body(i, x):
            out, pull = jax.vjp(lambda z: forward(emulator, z, levels[i]), x)
            return out + 1e-3 * pull(out)[0]

        return jax.lax.fori_loop(0, CHAIN, body, x)

    return [(compiled(f, emulator, x0)[0], (emulator, x0)) for f in (forwards, with_pullbacks)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulator", choices=["gaussian", "shipped"], default="gaussian")
    parser.add_argument("--sampler", choices=["default", "reference"], default="default",
                        help="with --emulator shipped: the Lorenz-96 job's sampler or the reference one")
    parser.add_argument("--particles", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    rows = []
    for n in args.particles:
        filt, x0, y = gaussian_filter(n) if args.emulator == "gaussian" else shipped_filter(n, args.sampler)
        forwards, guided, k = counts(filt)
        state = filt.init(x0)
        inputs = (filt, state, y, jax.random.key(2))
        step, compile_s = compiled(lambda f, *rest: f.step(*rest), *inputs)
        # The same sampler without guidance: what the filter machinery costs on top of the floor.
        forecast = ax.EnsembleForecast(filt.emulator, None, filt.sampler)
        forecast_step, _ = compiled(lambda f, *rest: f.step(*rest), forecast, *inputs[1:])
        units = unit_programs(filt.emulator, x0)
        cycle_s, forecast_s, chain_fwd, chain_both = interleaved(
            [(step, inputs), (forecast_step, (forecast, *inputs[1:])), *units], args.repeats
        )
        t_fwd, t_pull = chain_fwd / CHAIN, max(chain_both - chain_fwd, 0.0) / CHAIN
        floor_s = (forwards + guided) * t_fwd + guided * k * t_pull
        unguided_floor_s = filt.sampler.denoiser_calls() * t_fwd  # no mean-dynamics call
        rows.append((n, compile_s, cycle_s, t_fwd, t_pull, floor_s, forecast_s / unguided_floor_s))
        print(f"N={n:5d}  compile {compile_s:7.2f} s  cycle {cycle_s:8.3f} s  forward {t_fwd * 1e3:7.3f} ms  "
              f"pullback {t_pull * 1e3:7.3f} ms  floor {floor_s:8.3f} s  ratio {cycle_s / floor_s:5.2f}  "
              f"unguided {forecast_s / unguided_floor_s:5.2f}", flush=True)

    name = ("Gaussian-transition Lorenz-96 (d = 40), reference sampler" if args.emulator == "gaussian"
            else f"shipped Lorenz-96 emulator, the job's `fa-apf` with the {args.sampler} sampler")
    header = (
        f"FA-APF cycle vs its floor, {name}: per particle {forwards} forward-only evaluations and "
        f"{guided} guided ones with {k} pullback(s) each; jax {jax.__version__}, "
        f"{jax.devices()[0].platform}, {platform.processor() or platform.machine()}, "
        f"{date.today().isoformat()}\n\n"
        "| N | compile (s) | FA-APF cycle (s) | forward (ms) | pullback (ms) | floor (s) | cycle / floor | unguided cycle / its floor |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    table = header + "".join(
        f"| {n} | {c:.2f} | {r:.3f} | {tf * 1e3:.3f} | {tp * 1e3:.3f} | {f:.4f} | {r / f:.2f} | {u:.2f} |\n"
        for n, c, r, tf, tp, f, u in rows
    )
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)


if __name__ == "__main__":
    main()
