"""Peak memory of one FA-APF cycle against the number of particles and the chunk size.

What XLA allocates for the compiled step of `assimilate` (`memory_analysis()` of the
compiled executable: arguments, outputs and temporaries), so the numbers are exact for the
buffer assignment and need no accelerator.  Two emulators:

- the shipped Lorenz-96 emulator (d = 40) in the job's FA-APF;
- a synthetic denoiser on a state of 10^6 numbers: a per-component MLP with `HIDDEN`
  hidden units (activations HIDDEN x d per particle), MMPS guidance from every 10th
  component observed.

Fits ``temp = a N + b C + c`` (N particles on the device, C the chunk size) and prints
``a`` (bytes per particle) and ``b`` (bytes per chunk element) beside the documented
formula of docs/scale.md.

    python bench/memory.py [--quick]
"""

import argparse
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import assimilax as ax
from assimilax.assimilate import _step

HIDDEN = 8


class SyntheticEmulator(ax.AbstractEmulator):
    """``x[k+1] = x[k] + z``, ``z`` from a per-component MLP denoiser (HIDDEN units)."""

    denoiser: ax.AbstractDenoiser
    history_length: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)

    def __init__(self, d: int, key):
        k1, k2 = jax.random.split(key)
        w1 = jax.random.normal(k1, (HIDDEN, 3)) / 3
        w2 = jax.random.normal(k2, (HIDDEN,)) / HIDDEN

        def fn(z, sigma, context):
            c_in = 1 / jnp.sqrt(sigma**2 + 1)
            features = jnp.stack([c_in * z, context, jnp.full_like(z, jnp.log(sigma))])  # (3, d)
            hidden = jnp.tanh(w1 @ features)  # (HIDDEN, d): the activations
            return z / (sigma**2 + 1) + sigma / jnp.sqrt(sigma**2 + 1) * (w2 @ hidden)

        self.denoiser = ax.FunctionDenoiser(fn)
        self.history_length = 1
        self.state_size = d

    def context(self, history, forcing):
        return history[-1]

    def to_state(self, z, history):
        return history[-1] + z

    def to_target(self, x, history):
        return x - history[-1]

    def noise(self, key):
        return jax.random.normal(key, (self.state_size,))


def lorenz96_filter():
    from assimilax_adapters.lorenz96.experiment import TwinExperiment, build_filters

    cfg = TwinExperiment(filters=("fa-apf",))
    return build_filters(cfg)["fa-apf"], cfg.dim, int(cfg.observed.sum())


def synthetic_filter(d=10**6):
    emulator = SyntheticEmulator(d, jax.random.key(0))
    selection = ax.Selection.every(10, d)
    observation = ax.ObservationModel(selection, ax.DiagonalGaussianNoise(1.0, selection.obs_size))
    sampler = ax.Sampler(n_levels=8)
    return ax.FAAPF(emulator, observation, sampler, ax.MMPS(iterations=1)), d, selection.obs_size


def temp_bytes(filt, d, p, n, chunk) -> dict:
    state = filt.init(jnp.zeros((n, d)))
    y = jnp.zeros(p)
    start = time.perf_counter()
    layout = ax.ParticleLayout(chunk_size=chunk)
    lowered = _step.lower(filt, state, y, jax.random.key(0), None, "moments", layout)
    stats = lowered.compile().compiled.memory_analysis()
    return {
        "n": n,
        "chunk": chunk,
        "temp": stats.temp_size_in_bytes,
        "arguments": stats.argument_size_in_bytes,
        "outputs": stats.output_size_in_bytes,
        "compile_s": time.perf_counter() - start,
    }


def fit(rows):
    a = np.array([[r["n"], r["chunk"], 1.0] for r in rows])
    b = np.array([r["temp"] for r in rows], float)
    coef, *_ = np.linalg.lstsq(a, b, rcond=None)
    return {"per_particle": coef[0], "per_chunk_element": coef[1], "constant": coef[2]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes, a 10^4 synthetic state")
    parser.add_argument("--out", default="bench/results/memory.json")
    args = parser.parse_args()
    cases = {
        "lorenz96": (lorenz96_filter(), (64, 128, 256, 512), 16, 256, (4, 8, 16, 32, 64)),
        "synthetic": (synthetic_filter(10**4 if args.quick else 10**6), (4, 8, 16, 32), 2, 16, (1, 2, 4, 8)),
    }
    if args.quick:
        cases = {k: (f, ns[:2], c, n0, cs[:2]) for k, (f, ns, c, n0, cs) in cases.items()}
    report = {"machine": "2-core CPU (CI-class)", "date": time.strftime("%Y-%m-%d"), "jax": jax.__version__}
    for name, ((filt, d, p), ns, chunk, n0, chunks) in cases.items():
        rows = [temp_bytes(filt, d, p, n, chunk) for n in ns]
        rows += [temp_bytes(filt, d, p, n0, c) for c in chunks if (n0, c) != (n0, chunk) or n0 not in ns]
        report[name] = {"d": d, "p": p, "rows": rows, "fit": fit(rows), "state_bytes": 4 * d}
        print(f"\n{name}: d = {d}, p = {p} observations, state {4 * d / 2**20:.3f} MiB per particle")
        print(f"{'N':>6} {'chunk':>6} {'temp MiB':>10} {'args MiB':>9} {'compile s':>9}")
        for r in rows:
            print(f"{r['n']:6d} {r['chunk']:6d} {r['temp'] / 2**20:10.2f} {r['arguments'] / 2**20:9.2f} {r['compile_s']:9.1f}")
        f = report[name]["fit"]
        print(
            f"fit: {f['per_particle'] / (4 * d):.1f} states per particle, "
            f"{f['per_chunk_element'] / (4 * d):.1f} states per chunk element, "
            f"constant {f['constant'] / 2**20:.2f} MiB"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
