"""Rolled against unrolled level loop: FA-APF cycle and compile time with the shipped emulator.

The filter is the `assimilax lorenz96` job's ``fa-apf`` (shipped Lorenz-96 emulator, Dirac
weights, ESS-band tempering, MMPS guiding below sigma = 5, d = 40, every other component
observed with sigma = 1) with two samplers:

- ``default``: the job's default, 12 Karras levels, DPM-Solver++(2S), MMPS with 1 CG step;
- ``reference``: the reference method's, 32 levels, Adams-Bashforth 3, 2 Langevin corrector
  steps, MMPS with 3 CG steps.

each with the level loop rolled (`Sampler(unroll=False)`) and unrolled.  ``--channel-first``
runs the same weights through `eqx.nn.Conv1d` (channel-first convolutions, the network before
issue 9) to show the XLA:CPU pitfall.  ``--gencast-tiny`` instead runs the tiny GenCast of the
tests (random weights, 7 x 12 grid; graph networks and a transformer, no convolution): one
cycle of its unconditional ensemble with GenCast's own sampler cut to 8 levels
(DPM-Solver++(2S) with churn).  Compile time is that of lowering and compiling; the cycle
time is the fastest of `--repeats` calls, rolled and unrolled calls interleaved (the machine
may be shared: the minimum is the least disturbed).

    python bench/rolled_loop.py --particles 64 256 --samplers default reference --out bench/results/rolled_loop.md
    python bench/rolled_loop.py --gencast-tiny --particles 8
"""

import argparse
import dataclasses
import platform
import time
from datetime import date
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from assimilax_adapters.lorenz96 import Lorenz96Network
from assimilax_adapters.lorenz96.experiment import TwinExperiment, build_filters, twin_data

SAMPLERS = {
    "default": dict(levels=12, solver="dpm2s", corrector_steps=0, cg_iterations=1),
    "reference": dict(levels=32, solver="ab3", corrector_steps=2, cg_iterations=3),
}


class ChannelFirst(eqx.Module):
    """The shipped network evaluated through its `eqx.nn.Conv1d` modules (channel-first)."""

    network: Lorenz96Network

    def __call__(self, x_in, c_noise, context):
        net = self.network
        phase = jax.lax.stop_gradient(net.frequencies) * c_noise
        emb = jax.nn.silu(net.embed_mlp(jnp.concatenate([jnp.sin(phase), jnp.cos(phase)])))
        h = net.lift(jnp.stack([x_in, context]))
        for block in net.blocks:
            scale, shift = jnp.split(block.film(emb), 2)
            u = (1.0 + scale[:, None]) * h + shift[:, None]
            h = h + block.conv_o(block.conv_a(u) * jax.nn.gelu(block.conv_b(u)))
        return net.project(h)[0]


def compiled(fn, *args):
    """`fn` compiled for `args`, and the compile time (lowering + compilation)."""
    t0 = time.perf_counter()
    program = eqx.filter_jit(fn).lower(*args).compile()
    return program, time.perf_counter() - t0


def interleaved(programs, args, repeats):
    """The fastest of `repeats` timed calls of each program, calls interleaved so that
    other load on the (shared) machine hits all of them alike; after one warm-up call each."""
    times = [[] for _ in programs]
    for r in range(repeats + 1):
        for i, (program, a) in enumerate(zip(programs, args)):
            t0 = time.perf_counter()
            jax.block_until_ready(program(*a))
            if r > 0:
                times[i].append(time.perf_counter() - t0)
    return [min(t) for t in times]


def fa_apf(name: str, particles: int, unroll: bool, channel_first: bool):
    cfg = TwinExperiment(particles=particles, cycles=1, spinup=0, filters=("fa-apf",), **SAMPLERS[name])
    filt = build_filters(cfg)["fa-apf"]
    filt = dataclasses.replace(filt, sampler=dataclasses.replace(filt.sampler, unroll=unroll))
    if channel_first:
        filt = eqx.tree_at(lambda f: f.emulator.denoiser.network, filt, ChannelFirst(filt.emulator.denoiser.network))
    _, observations, ensemble = twin_data(cfg)
    return filt, jnp.asarray(ensemble), jnp.asarray(observations[0])


def gencast_forecast(particles: int, unroll: bool):
    import tempfile

    import xarray as xr

    import assimilax as ax
    from assimilax_adapters.gencast import config as C, save_checkpoint, testing as T
    from assimilax_adapters.gencast.emulator import GenCastEmulator
    from assimilax_adapters.gencast.sampler import gencast_sampler

    with tempfile.TemporaryDirectory() as root:
        save_checkpoint(f"{root}/tiny.npz", T.filter_checkpoint(seed=3))
        T.write_synthetic_statistics(f"{root}/stats")
        ds = T.synthetic_era5(n_times=3, seed=2)
        emulator = GenCastEmulator.from_files(f"{root}/tiny.npz", f"{root}/stats", ds)
    sampler = dataclasses.replace(gencast_sampler(C.SamplerConfig(num_noise_levels=8)), unroll=unroll)
    filt = ax.EnsembleForecast(emulator, None, sampler)
    states = jnp.asarray(emulator.states(ds))
    forcing = jax.tree.map(lambda a: jnp.asarray(a)[0], emulator.forcings(ds.time.values[2:]))
    state = filt.init(jnp.broadcast_to(states[:2], (particles, 2, emulator.state_size)))
    return filt, state, forcing


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--samplers", nargs="+", choices=list(SAMPLERS), default=list(SAMPLERS))
    parser.add_argument("--channel-first", action="store_true", help="the network through eqx.nn.Conv1d")
    parser.add_argument("--gencast-tiny", action="store_true", help="the tiny GenCast's unconditional ensemble")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    if args.gencast_tiny:
        for n in args.particles:
            programs, inputs, compile_s = [], [], []
            for unroll in (False, True):
                filt, state, forcing = gencast_forecast(n, unroll)
                a = (filt, state, None, jax.random.key(2), forcing)
                program, c = compiled(lambda f, *rest: f.step(*rest), *a)
                programs.append(program), inputs.append(a), compile_s.append(c)
            cycle = interleaved(programs, inputs, args.repeats)
            print(f"GenCast tiny forecast N={n}: rolled compile {compile_s[0]:.1f} s cycle {cycle[0]:.4f} s; "
                  f"unrolled compile {compile_s[1]:.1f} s cycle {cycle[1]:.4f} s; ratio {cycle[0] / cycle[1]:.2f}", flush=True)
        return

    rows = []
    for name in args.samplers:
        for n in args.particles:
            programs, inputs, compile_s = [], [], []
            for unroll in (False, True):
                filt, ensemble, y = fa_apf(name, n, unroll, args.channel_first)
                a = (filt, filt.init(ensemble), y, jax.random.key(2))
                program, c = compiled(lambda f, *rest: f.step(*rest), *a)
                programs.append(program), inputs.append(a), compile_s.append(c)
                print(f"{name:9s} N={n:5d} {'unrolled' if unroll else 'rolled  '}  compile {c:7.2f} s", flush=True)
            cycle = interleaved(programs, inputs, args.repeats)
            print(f"{name:9s} N={n:5d} cycle rolled {cycle[0]:.3f} s unrolled {cycle[1]:.3f} s ratio {cycle[0] / cycle[1]:.2f}", flush=True)
            rows.append((name, n, compile_s[0], cycle[0], compile_s[1], cycle[1]))

    layout = "channel-first (eqx.nn.Conv1d)" if args.channel_first else "channel-last (shipped)"
    header = (
        f"Rolled vs unrolled level loop, Lorenz-96 `fa-apf` (shipped emulator, {layout} network); "
        f"jax {jax.__version__}, {jax.devices()[0].platform}, {platform.processor() or platform.machine()}, "
        f"{date.today().isoformat()}\n\n"
        "| sampler | N | rolled compile (s) | rolled cycle (s) | unrolled compile (s) | unrolled cycle (s) | rolled / unrolled |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    table = header + "".join(
        f"| {s} | {n} | {rc:.1f} | {rr:.3f} | {uc:.1f} | {ur:.3f} | {rr / ur:.2f} |\n"
        for s, n, rc, rr, uc, ur in rows
    )
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)


if __name__ == "__main__":
    main()
