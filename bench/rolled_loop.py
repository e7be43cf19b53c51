"""Rolled against unrolled level loop: FA-APF cycle and compile time with the shipped emulator.

The filter is the `assimilax lorenz96` job's ``fa-apf`` (shipped Lorenz-96 emulator, Dirac
weights, ESS-band tempering, MMPS guiding below sigma = 5, d = 40, every other component
observed with sigma = 1) with two samplers:

- ``default``: the job's default, 12 Karras levels, DPM-Solver++(2S), MMPS with 1 CG step;
- ``reference``: the reference method's, 32 levels, Adams-Bashforth 3, 2 Langevin corrector
  steps, MMPS with 3 CG steps.

each with the level loop rolled (`Sampler(unroll=False)`) and unrolled.  ``--channel-first``
runs the same weights through `eqx.nn.Conv1d` (channel-first convolutions, the network before
issue 9) to show the XLA:CPU pitfall.  Compile time is the first call minus a timed call; the
cycle time is the median of `--repeats` calls.

    python bench/rolled_loop.py --particles 64 256 --samplers default reference --out bench/results/rolled_loop.md
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


def fa_apf(name: str, particles: int, unroll: bool, channel_first: bool):
    cfg = TwinExperiment(particles=particles, cycles=1, spinup=0, filters=("fa-apf",), **SAMPLERS[name])
    filt = build_filters(cfg)["fa-apf"]
    filt = dataclasses.replace(filt, sampler=dataclasses.replace(filt.sampler, unroll=unroll))
    if channel_first:
        filt = eqx.tree_at(lambda f: f.emulator.denoiser.network, filt, ChannelFirst(filt.emulator.denoiser.network))
    _, observations, ensemble = twin_data(cfg)
    return filt, jnp.asarray(ensemble), jnp.asarray(observations[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--samplers", nargs="+", choices=list(SAMPLERS), default=list(SAMPLERS))
    parser.add_argument("--channel-first", action="store_true", help="the network through eqx.nn.Conv1d")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    rows = []
    for name in args.samplers:
        for n in args.particles:
            result = {}
            for unroll in (False, True):
                filt, ensemble, y = fa_apf(name, n, unroll, args.channel_first)
                step = eqx.filter_jit(filt.step)
                state = filt.init(ensemble)
                result[unroll] = timed(step, state, y, jax.random.key(2), repeats=args.repeats)
                print(f"{name:9s} N={n:5d} {'unrolled' if unroll else 'rolled  '}  compile {result[unroll][0]:7.2f} s  "
                      f"cycle {result[unroll][1]:7.3f} s", flush=True)
            rows.append((name, n, *result[False], *result[True]))

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
