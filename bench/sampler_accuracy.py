"""Sampler accuracy at equal cost: unguided draws of an exact Gaussian transition.

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0 python bench/sampler_accuracy.py \\
        --out bench/results/sampler_accuracy.json

``N(m, q^2 I)``, d = 40, with the closed-form denoiser (`GaussianTransitionEmulator`), drawn
through `assimilax.sample_transition` as the filters draw them, for data scales q = 0.1, 0.3, 1
(sigma_data = 1: the levels are in the units the sampler works in).  Per configuration and
scale: the sample ``sd / q`` and mean error ``/ q`` of 10,000 draws (400,000 scalars: standard
errors ``1 / sqrt(2 n) = 0.0011`` and ``1 / sqrt(n) = 0.0016``), and for deterministic samplers
(no churn, no corrector) the *exact* ``sd / q``: with the exact denoiser the sampler is then a
linear map of its initial noise, ``z = g sigma_0 eps``, so one draw with ``eps = 1`` gives
``sd / q = g sigma_0 / q`` without Monte Carlo error.  Cost: denoiser calls per draw
(`Sampler.denoiser_calls`; what a network pays) and seconds per 10,000 draws of the closed-form
denoiser on this CPU after a warm-up (``block_until_ready``; mostly the sampler's own overhead).

A second table (`guided_laws`) gives the exact law of guided draws of a scalar Gaussian with
the exact posterior denoiser below a switch level, as `GuidanceBelowLevel` runs them.
"""

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import assimilax as ax
from assimilax_adapters.gencast.sampler import gencast_sampler

D, DRAWS, SCALES = 40, 10_000, (0.1, 0.3, 1.0)
KARRAS = ax.EDMSchedule(2e-3, 80.0, 7.0)  # Karras et al.'s EDM levels; the Lorenz-96 job's
REF = ax.EDMSchedule(2e-5, 88.0, 6.0)  # the FA-APF reference's levels; the GenCast job's
AB3, DPM2S, DPM3M = ax.AdamsBashforth3(), ax.DPMSolverPP2S(), ax.DPMSolverPP3M()


def configurations() -> dict[str, tuple[str, ax.Sampler]]:
    """``name: (group, sampler)``; the group is the default a candidate competes with."""
    e = ax.EDMSchedule
    return {
        # the core default
        "core `Sampler()`: 32 DPM-Solver++(3M), Karras levels (2e-3..80, rho 7)": ("core", ax.Sampler()),
        "previous core default: 32 AB3, reference levels (2e-5..88, rho 6)": ("core", ax.Sampler(REF, 32, AB3)),
        "32 AB3, levels 2e-3..10, rho 7 (best AB3 at 32 calls)": ("core", ax.Sampler(e(2e-3, 10.0, 7.0), 32, AB3)),
        "32 DPM-Solver++(3M), reference levels": ("core", ax.Sampler(REF, 32, DPM3M)),
        # the Lorenz-96 job: 23 calls
        "Lorenz-96 job: 12 DPM-Solver++(2S), Karras levels": ("lorenz96", ax.Sampler(KARRAS, 12, DPM2S)),
        "proposed Lorenz-96 job: 23 DPM-Solver++(3M), levels 2e-3..20, rho 7": ("lorenz96", ax.Sampler(e(2e-3, 20.0, 7.0), 23, DPM3M)),
        "23 DPM-Solver++(3M), Karras levels": ("lorenz96", ax.Sampler(KARRAS, 23, DPM3M)),
        "23 DPM-Solver++(3M), levels 2e-3..40, rho 7": ("lorenz96", ax.Sampler(e(2e-3, 40.0, 7.0), 23, DPM3M)),
        "23 DPM-Solver++(3M), levels 2e-3..80, rho 8 (sigma_max kept at 80)": ("lorenz96", ax.Sampler(e(2e-3, 80.0, 8.0), 23, DPM3M)),
        "12 DPM-Solver++(2S), levels 1e-2..10, rho 50 (best 2S at 23 calls)": ("lorenz96", ax.Sampler(e(1e-2, 10.0, 50.0), 12, DPM2S)),
        "23 AB3, levels 1e-2..10, rho 50 (best AB3 at 23 calls)": ("lorenz96", ax.Sampler(e(1e-2, 10.0, 50.0), 23, AB3)),
        "12 Heun, levels 1e-2..10, rho 50 (best Heun at 23 calls)": ("lorenz96", ax.Sampler(e(1e-2, 10.0, 50.0), 12, diffrax.Heun())),
        # the GenCast job: 94 calls
        "GenCast job / README reference: 32 AB3 + 2 Langevin (0.2), reference levels": (
            "gencast", ax.Sampler(REF, 32, AB3, ax.LangevinCorrector(2, 0.2))),
        "proposed GenCast job: 40 DPM-Solver++(3M), reference levels": ("gencast", ax.Sampler(REF, 40, DPM3M)),
        "32 DPM-Solver++(3M) + 2 Langevin (0.2), reference levels": (
            "gencast", ax.Sampler(REF, 32, DPM3M, ax.LangevinCorrector(2, 0.2))),
        "48 AB3, reference levels": ("gencast", ax.Sampler(REF, 48, AB3)),
        "48 AB3, levels 2e-3..20, rho 20 (best AB3 at 48 calls)": ("gencast", ax.Sampler(e(2e-3, 20.0, 20.0), 48, AB3)),
        "GenCast native: 20 DPM-Solver++(2S) + churn 2.5, S_noise 1.05": ("gencast", gencast_sampler()),
        "64 Heun, reference levels": ("gencast", ax.Sampler(REF, 64, diffrax.Heun())),
    }


def deterministic(sampler: ax.Sampler) -> bool:
    return sampler.churn is None and sampler.corrector is None


def draws_fn(sampler: ax.Sampler):
    """``(scale, keys) -> draws - m``, one compiled function for every scale."""

    def draw(scale, key):
        emulator = ax.GaussianTransitionEmulator(lambda x: x + 2.0, scale**2 * jnp.eye(D))
        return ax.sample_transition(emulator, sampler, key, jnp.zeros((1, D))) - 2.0

    return jax.jit(jax.vmap(draw, (None, 0)))


def exact_ratio(sampler: ax.Sampler, scale: float) -> float:
    """``g sigma_0 / q`` of a deterministic sampler (its linear map, from ``eps = 1``)."""
    den = lambda z, s: scale**2 / (scale**2 + s**2) * z  # noqa: E731
    z = jax.jit(lambda: sampler.sample(jax.random.key(0), den, lambda k: jnp.ones(1)))()
    return float(z[0]) / scale


def measure(sampler: ax.Sampler) -> dict[str, dict[str, float]]:
    f = draws_fn(sampler)
    keys = jax.random.split(jax.random.key(11), DRAWS)
    f(SCALES[0], keys).block_until_ready()  # warm-up (compile)
    out = {}
    for q in SCALES:
        t = time.perf_counter()
        x = np.asarray(f(q, keys).block_until_ready()) / q
        seconds = time.perf_counter() - t
        n = x.size
        row = dict(sd_ratio=float(x.std()), sd_se=float(x.std() / np.sqrt(2 * n)),
                   mean_error=float(x.mean()), mean_se=float(x.std() / np.sqrt(n)),
                   seconds_per_10k=seconds * 10_000 / DRAWS)
        if deterministic(sampler):
            row["exact_sd_ratio"] = exact_ratio(sampler, q)
        out[str(q)] = row
    return out


def table(results: list[dict]) -> str:
    head = "| configuration | calls | " + " | ".join(f"sd/q, q = {q}" for q in SCALES) + " | mean err/q (max) | MC - exact (max, se) | within 1% | s / 10k draws |"
    lines = [head, "|---|---|" + "---|" * len(SCALES) + "---|---|---|---|"]
    for r in results:
        cells, worst, means, mc = [], 0.0, [], []
        for q in SCALES:
            c = r["scales"][str(q)]
            v = c.get("exact_sd_ratio", c["sd_ratio"])
            worst = max(worst, abs(v - 1))
            cells.append(f"{v:.4f}" if "exact_sd_ratio" in c else f"{v:.4f} ± {c['sd_se']:.4f}")
            means.append(abs(c["mean_error"]))
            if "exact_sd_ratio" in c:
                mc.append(abs(c["sd_ratio"] - c["exact_sd_ratio"]) / c["sd_se"])
        t = r["scales"][str(SCALES[1])]["seconds_per_10k"]
        lines.append(f"| {r['name']} | {r['calls']} | " + " | ".join(cells)
                     + f" | {max(means):.4f} | {f'{max(mc):.1f}' if mc else ''} | {'yes' if worst < 0.01 else 'no'} | {t:.2f} |")
    return "\n".join(lines)


GUIDED = {
    "Lorenz-96 job: 12 DPM-Solver++(2S), Karras levels": ax.Sampler(KARRAS, 12, DPM2S),
    "proposed Lorenz-96 job: 23 DPM-Solver++(3M), 2e-3..20": ax.Sampler(ax.EDMSchedule(2e-3, 20.0, 7.0), 23, DPM3M),
    "23 DPM-Solver++(3M), 2e-3..80, rho 8": ax.Sampler(ax.EDMSchedule(2e-3, 80.0, 8.0), 23, DPM3M),
    "core `Sampler()`": ax.Sampler(),
    "400 DPM-Solver++(2S), 2e-3..20 (the ODE's own law)": ax.Sampler(ax.EDMSchedule(2e-3, 20.0, 7.0), 400, DPM2S),
    "400 DPM-Solver++(2S), 2e-3..80 (the ODE's own law)": ax.Sampler(KARRAS, 400, DPM2S),
}


def guided_laws(q: float = 1.0, r: float = 1.0) -> list[dict]:
    """Guided draws of a scalar ``N(0, q^2)`` observed as ``y = x + e``, ``e ~ N(0, r^2)``, with
    the exact posterior denoiser below a switch (the prior above: `GuidanceBelowLevel`).  The
    sampler is affine in ``(eps, y)``, ``z = a sigma_0 eps + b y``: ``a sigma_0`` and ``b`` over the
    exact posterior sd ``q r / sqrt(q^2 + r^2)`` and gain ``q^2 / (q^2 + r^2)``."""
    sd, gain = q * r / np.hypot(q, r), q**2 / (q**2 + r**2)
    rows = []
    for name, sampler in GUIDED.items():
        for switch in (5.0, float("inf")):
            def run(y, switch=switch):
                prior = lambda x, s: q**2 / (q**2 + s**2) * x  # noqa: E731

                def post(x, s):
                    k = q**2 / (q**2 + s**2)
                    return (x / s**2 + y / r**2) / (1 / (k * s**2) + 1 / r**2)

                den = ax.SwitchedDenoiser(prior, post, switch)
                return float(sampler.sample(jax.random.key(0), den, lambda k: jnp.ones(1))[0])

            a = run(0.0)
            rows.append(dict(name=name, switch=switch, q=q, r=r, sd_ratio=a / sd, gain_ratio=(run(1.0) - a) / gain))
    return rows


def guided_table(rows: list[dict]) -> str:
    lines = ["| guided sampler (q = 1, r = 1) | guidance below | posterior sd / exact | gain / exact |", "|---|---|---|---|"]
    for g in rows:
        lines.append(f"| {g['name']} | {g['switch']:g} | {g['sd_ratio']:.4f} | {g['gain_ratio']:.4f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="results JSON (a .md table is written beside it)")
    parser.add_argument("--only", nargs="*", default=None, help="substrings of the configurations to run")
    args = parser.parse_args()
    results = []
    for name, (group, sampler) in configurations().items():
        if args.only and not any(s in name for s in args.only):
            continue
        r = dict(name=name, group=group, calls=sampler.denoiser_calls(), deterministic=deterministic(sampler),
                 scales=measure(sampler))
        print(table([r]).splitlines()[-1], flush=True)
        results.append(r)
    guided = guided_laws() if not args.only else []
    meta = dict(
        command="python bench/sampler_accuracy.py " + (f"--out {args.out}" if args.out else ""),
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores (shared, loaded), jax {jax.__version__} {jax.default_backend()}",
        xla_flags=os.environ.get("XLA_FLAGS", ""), d=D, draws=DRAWS, scales=list(SCALES),
    )
    text = table(results)
    print(text)
    print(guided_table(guided))
    if args.out is not None:
        args.out.write_text(json.dumps(dict(meta, results=results, guided=guided), indent=1) + "\n")
        args.out.with_suffix(".md").write_text(
            f"{meta['command']}\n{meta['date']}, {meta['machine']}, XLA_FLAGS={meta['xla_flags']}\n"
            f"d = {D}, {DRAWS} draws per scale; exact sd/q for deterministic samplers, "
            "Monte Carlo ± se otherwise\n\n" + text + "\n\n" + guided_table(guided) + "\n")


if __name__ == "__main__":
    main()
