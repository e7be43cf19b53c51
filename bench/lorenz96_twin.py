"""The Lorenz-96 twin experiment over several seeds: skill and spread of every filter.

    python bench/lorenz96_twin.py --seeds 0 1 2 --out bench/results/lorenz96_twin.md

Runs `assimilax_adapters.lorenz96.experiment` (the `assimilax lorenz96` job) with its
defaults unless told otherwise, and tabulates, per filter, the mean over seeds (and the
spread across seeds) of the after-spin-up means of skill (RMSE of the analysis mean) and
spread on observed and unobserved components, ESS, alpha and time per cycle.
"""

import argparse
import dataclasses
import platform
import time
from datetime import date
from pathlib import Path

import jax
import numpy as np

from assimilax_adapters.lorenz96.experiment import FILTERS, TwinExperiment, run, summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--particles", type=int, default=TwinExperiment.particles)
    parser.add_argument("--cycles", type=int, default=TwinExperiment.cycles)
    parser.add_argument("--filters", nargs="+", default=list(FILTERS), choices=FILTERS)
    parser.add_argument("--block-size", type=int, default=TwinExperiment.block_size)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    per_seed = []
    start = time.perf_counter()
    for seed in args.seeds:
        cfg = TwinExperiment(
            particles=args.particles, cycles=args.cycles, seed=seed, filters=tuple(args.filters), block_size=args.block_size
        )
        rows = summary(run(cfg, output=None, progress=False))
        per_seed.append(rows)
        print(f"seed {seed}: " + ", ".join(f"{k} {v['skill_unobserved']:.3f}" for k, v in rows.items()), flush=True)
    wall = time.perf_counter() - start

    cols = [
        ("skill_observed", "skill obs"),
        ("skill_unobserved", "skill unobs"),
        ("spread_observed", "spread obs"),
        ("spread_unobserved", "spread unobs"),
        ("ess", "ESS"),
        ("alpha", "alpha"),
        ("seconds_per_cycle", "s / cycle"),
    ]
    cfg = dataclasses.asdict(TwinExperiment(particles=args.particles, cycles=args.cycles, filters=tuple(args.filters), block_size=args.block_size))
    lines = [
        f"Lorenz-96 twin experiment, seeds {args.seeds}, configuration {cfg}; "
        f"means over seeds of the means over cycles after spin-up (± std across seeds); "
        f"jax {jax.__version__}, {jax.devices()[0].platform}, {platform.machine()}, {date.today().isoformat()}, "
        f"{wall / 60:.1f} min in all\n",
        "| filter | " + " | ".join(c for _, c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for name in per_seed[0]:
        cells = []
        for key, _ in cols:
            v = np.array([rows[name][key] for rows in per_seed])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if key != "seconds_per_cycle" else f"{v.mean():.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)


if __name__ == "__main__":
    main()
