"""Sampler accuracy against cost: unguided draws of an exact Gaussian transition.

    python bench/sampler_accuracy.py --out bench/results/sampler_accuracy.md

``N(m, s^2 I)``, d = 40, with the closed-form denoiser (`GaussianTransitionEmulator`),
drawn through `assimilax.sample_transition` as the filters draw them; 4000 draws (160,000
scalars: standard error of ``sd / s`` 0.0018, of ``mean / s`` 0.0025).  Scales ``s = 0.3``
(Lorenz-96's ``q``) and ``s = 1`` (a normalised residual, GenCast).  Cost: denoiser calls
per draw (`Sampler.denoiser_calls`; every call costs the same for a given network) and the
wall time of 4000 draws with the closed-form denoiser (compile excluded).
"""

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import assimilax as ax
from assimilax_adapters.gencast.sampler import gencast_sampler

D, DRAWS = 40, 4000
L96 = ax.EDMSchedule(2e-3, 80.0, 7.0)
REF = ax.EDMSchedule(2e-5, 88.0, 6.0)


def configurations():
    c = {
        "core `Sampler()`: 32 AB3, reference levels": ax.Sampler(),
        "GenCast job / README reference: 32 AB3 + 2 Langevin (0.2)": ax.Sampler(REF, 32, ax.AdamsBashforth3(), ax.LangevinCorrector(2, 0.2)),
        "Lorenz-96 job: 12 DPM-Solver++(2S), L96 levels": ax.Sampler(L96, 12, ax.DPMSolverPP2S()),
        "GenCast native: 20 DPM-Solver++(2S) + churn": gencast_sampler(),
    }
    for n in (16, 24, 32):
        c[f"{n} DPM-Solver++(2S), L96 levels"] = ax.Sampler(L96, n, ax.DPMSolverPP2S())
    for n in (24, 32, 40, 48, 64):
        c[f"{n} AB3, L96 levels"] = ax.Sampler(L96, n, ax.AdamsBashforth3())
    for n in (32, 40):
        c[f"{n} AB3, L96 levels with sigma_max 20"] = ax.Sampler(ax.EDMSchedule(2e-3, 20.0, 7.0), n, ax.AdamsBashforth3())
    for n in (40, 48, 64):
        c[f"{n} AB3, reference levels"] = ax.Sampler(REF, n, ax.AdamsBashforth3())
    for n in (16, 32):
        c[f"{n} Heun, L96 levels"] = ax.Sampler(L96, n, diffrax.Heun())
    c["64 Heun, reference levels"] = ax.Sampler(REF, 64, diffrax.Heun())
    return c


def measure(sampler, scale):
    emulator = ax.GaussianTransitionEmulator(lambda x: x + 2.0, scale**2 * jnp.eye(D))
    history = jnp.zeros((1, D))
    f = jax.jit(jax.vmap(lambda k: ax.sample_transition(emulator, sampler, k, history)))
    keys = jax.random.split(jax.random.key(11), DRAWS)
    f(keys).block_until_ready()
    t = time.perf_counter()
    x = (np.asarray(f(keys).block_until_ready()) - 2.0) / scale
    return x.std(), x.mean(), time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    se_sd, se_mean = 1 / np.sqrt(2 * DRAWS * D), 1 / np.sqrt(DRAWS * D)
    lines = [
        f"Unguided draws of N(m, s^2 I), d = {D}, exact denoiser, {DRAWS} draws (se of sd/s {se_sd:.4f}, "
        f"of mean/s {se_mean:.4f}); jax {jax.__version__}, {jax.default_backend()}, {platform.machine()}, {date.today()}",
        "",
        "| configuration | denoiser calls | sd/s at s = 0.3 | sd/s at s = 1 | mean/s at 0.3, 1 | within 1% | ms / 4000 draws |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, sampler in configurations().items():
        sd3, m3, t3 = measure(sampler, 0.3)
        sd1, m1, _ = measure(sampler, 1.0)
        ok = "yes" if max(abs(sd3 - 1), abs(sd1 - 1)) < 0.01 else "no"
        line = f"| {name} | {sampler.denoiser_calls()} | {sd3:.4f} | {sd1:.4f} | {m3:+.4f}, {m1:+.4f} | {ok} | {1e3 * t3:.0f} |"
        print(line, flush=True)
        lines.append(line)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
