"""Compile time of one FA-APF cycle with the reference sampler (rolled), on an idle machine.

The Lorenz-96 job's ``fa-apf`` (shipped emulator) with the reference method's sampler: 32
Karras levels, Adams-Bashforth 3, 2 Langevin corrector steps, MMPS with 3 CG steps; the
level loop rolled (the default).  Prints the lowering + compilation time of `assimilate`'s
step, the quantity of the issue-9 target (under 30 s).

    python bench/reference_compile.py [--particles 64]
"""

import argparse
import time

import jax
import jax.numpy as jnp

from assimilax import ParticleLayout
from assimilax.assimilate import _step
from assimilax_adapters.lorenz96.experiment import TwinExperiment, build_filters, twin_data

parser = argparse.ArgumentParser()
parser.add_argument("--particles", type=int, nargs="+", default=[64, 256])
args = parser.parse_args()
for n in args.particles:
    cfg = TwinExperiment(particles=n, cycles=2, filters=("fa-apf",), levels=32, solver="ab3",
                         corrector_steps=2, cg_iterations=3)
    filt = build_filters(cfg)["fa-apf"]
    _, obs, ens = twin_data(cfg)
    start = time.perf_counter()
    _step.lower(filt, filt.init(ens), jnp.asarray(obs[0]), jax.random.key(0), None, "moments",
                ParticleLayout()).compile()
    print(f"N = {n}: reference sampler, rolled: lowering + compilation {time.perf_counter() - start:.1f} s")
