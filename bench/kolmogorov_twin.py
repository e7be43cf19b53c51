"""The Kolmogorov-flow twin experiment over several seeds: skill, spread and CRPS per filter.

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \
        python bench/kolmogorov_twin.py --seeds 0 1 2 --particles 32 --cycles 40 --levels 16 \
        --output outputs/kolmogorov_bench --out bench/results/kolmogorov_twin.md

Runs `assimilax_adapters.kolmogorov.experiment` (the `assimilax kolmogorov` job) once per
seed into ``<output>/seed<k>`` (its checkpoints there: a rerun with the same configuration
resumes, and then reads the per-cycle timings of the first run from the NetCDF it wrote), and
tabulates per filter the mean over seeds (and the std across seeds) of the means over the
cycles after `--burn-in`: skill (RMSE of the analysis mean, vorticity units), spread,
spread/skill, CRPS, the skill of the last 10 cycles (drift), the ESS and seconds per cycle.
"""

import argparse
import dataclasses
import platform
import time
from datetime import date
from pathlib import Path

import jax
import numpy as np
import xarray as xr

import assimilax as ax
from assimilax_adapters.kolmogorov.experiment import FILTERS, KolmogorovExperiment, run


def rows_of(ds: xr.Dataset, burn_in: int) -> dict[str, dict[str, float]]:
    """Per filter: means over the cycles after `burn_in` (seconds: median, first excluded)."""
    after = ds.isel(time=slice(burn_in, None))
    rows = {}
    for name in ds["filter"].values:
        f, a = ds.sel(filter=name), after.sel(filter=name)
        skill, spread = float(a["skill"].mean()), float(a["spread"].mean())
        sec = f["seconds"].values[1:]
        rows[str(name)] = {
            "skill": skill, "spread": spread, "ratio": spread / skill, "crps": float(a["crps"].mean()),
            "last10": float(f["skill"].values[-10:].mean()), "ess": float(a["ess"].mean()),
            "seconds": float(np.nanmedian(sec)) if np.isfinite(sec).any() else float("nan"),
        }
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = KolmogorovExperiment()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--particles", type=int, default=d.particles)
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--levels", type=int, default=d.levels)
    parser.add_argument("--burn-in", type=int, default=10)
    parser.add_argument("--filters", nargs="+", default=["fa-apf-local", "fa-apf-local-oracle", "letkf", "enkf", "forecast"],
                        choices=FILTERS)
    parser.add_argument("--output", type=Path, default=Path("outputs/kolmogorov_bench"))
    parser.add_argument("--out", type=Path, default=None, help="write the table (Markdown) here too")
    args = parser.parse_args()

    per_seed, start = [], time.perf_counter()
    for seed in args.seeds:
        cfg = KolmogorovExperiment(particles=args.particles, cycles=args.cycles, levels=args.levels, seed=seed,
                                   filters=tuple(args.filters))
        folder = args.output / f"seed{seed}"
        first = folder / "kolmogorov_twin.nc"
        earlier = xr.load_dataset(first)["seconds"] if first.exists() else None
        ds = run(cfg, folder, progress=False, options=ax.experiment.RunOptions(progress=False))
        if earlier is not None and not np.isfinite(ds["seconds"].values).all() and np.isfinite(earlier.values).any():
            ds["seconds"] = earlier.reindex_like(ds["seconds"])  # resumed: keep the first run's timings
            ds.to_netcdf(first)
        per_seed.append(rows_of(ds, args.burn_in))
        print(f"seed {seed}: " + ", ".join(f"{k} {v['skill']:.3f}" for k, v in per_seed[-1].items()), flush=True)
    wall = time.perf_counter() - start

    cols = [("skill", "skill"), ("spread", "spread"), ("ratio", "spread/skill"), ("crps", "CRPS"),
            ("last10", "skill, last 10"), ("ess", "ESS"), ("seconds", "s / cycle")]
    cfg = dataclasses.asdict(KolmogorovExperiment(particles=args.particles, cycles=args.cycles, levels=args.levels,
                                                  filters=tuple(args.filters)))
    lines = [
        f"Kolmogorov twin experiment, seeds {args.seeds}, burn-in {args.burn_in}, configuration {cfg}; means over "
        f"seeds of the means over cycles after burn-in (± std across seeds); per seed "
        + "; ".join(f"{s}: " + ", ".join(f"{k} {v['skill']:.3f}" for k, v in r.items()) for s, r in zip(args.seeds, per_seed))
        + f"; jax {jax.__version__}, {jax.devices()[0].platform}, {platform.machine()}, {date.today().isoformat()}, "
        f"{wall / 60:.1f} min in this call\n",
        "| filter | " + " | ".join(c for _, c in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name in per_seed[0]:
        cells = []
        for key, _ in cols:
            v = np.array([r[name][key] for r in per_seed if name in r])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 and key != "seconds" else f"{np.nanmean(v):.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
