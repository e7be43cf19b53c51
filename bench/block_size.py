"""Block FA-APF on the Lorenz-96 twin experiment: skill and spread against the block size.

    python bench/block_size.py --seeds 0 1 2 3 4 --sizes 1 2 4 5 8 10 20 40 \
        --out bench/results/block_size.md

The `fa-apf-block-oracle` filter of `assimilax lorenz96` (the exact transition, so the scan
is cheap and isolates the localisation from the emulator's error) with every other option at
its default; block size 40 is the global FA-APF.  Per block size: means over seeds (± std
across seeds) of the after-spin-up means of skill and spread on observed and unobserved
components, the worst block's ESS and alpha.
"""

import argparse
import dataclasses
import platform
import time
from datetime import date
from pathlib import Path

import jax
import numpy as np

from assimilax_adapters.lorenz96.experiment import TwinExperiment, run, summary

COLUMNS = [
    ("skill_observed", "skill obs"),
    ("skill_unobserved", "skill unobs"),
    ("spread_observed", "spread obs"),
    ("spread_unobserved", "spread unobs"),
    ("ess", "worst-block ESS"),
    ("alpha", "worst-block alpha"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 5, 8, 10, 20, 40])
    parser.add_argument("--particles", type=int, default=TwinExperiment.particles)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    rows = {}
    for size in args.sizes:
        per_seed = []
        for seed in args.seeds:
            cfg = TwinExperiment(
                particles=args.particles, seed=seed, filters=("fa-apf-block-oracle",), block_size=size
            )
            per_seed.append(summary(run(cfg, output=None, progress=False))["fa-apf-block-oracle"])
        rows[size] = per_seed
        print(f"block size {size}: unobserved skill {np.mean([r['skill_unobserved'] for r in per_seed]):.3f}", flush=True)
    wall = time.perf_counter() - start

    cfg = dataclasses.asdict(TwinExperiment(particles=args.particles, filters=("fa-apf-block-oracle",)))
    cfg.pop("block_size")
    lines = [
        f"Block FA-APF (oracle emulator) against the block size, seeds {args.seeds}, configuration {cfg}; "
        f"means over seeds of the means over cycles after spin-up (± std across seeds); "
        f"jax {jax.__version__}, {jax.devices()[0].platform}, {platform.machine()}, "
        f"{date.today().isoformat()}, {wall / 60:.1f} min in all\n",
        "| block size | " + " | ".join(c for _, c in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for size, per_seed in rows.items():
        cells = []
        for key, _ in COLUMNS:
            v = np.array([r[key] for r in per_seed])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)


if __name__ == "__main__":
    main()
