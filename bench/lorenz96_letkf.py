"""LETKF, ETKF and EnKF of `assimilax lorenz96 --truth FILE` on fresh Lorenz-96 truths,
optionally beside DAPPER on the identical truth and observations.

    python bench/lorenz96_letkf.py --seeds 0 1 2 3 4 --q 0.3 0.1 \
        --out bench/results/lorenz96_letkf.md [--dapper]

Truths as in issue 11: d = 40, every other component observed, R = 1, 300 cycles, a truth
of the stochastic model ``x[k+1] = M(x[k]) + q eps`` after a spin-up of 1000 cycles, from
the keys ``1000 + seed`` (not the job's own seeds); written to ``--truth-dir`` as ``.npz``
files that ``assimilax lorenz96 --truth`` reads.  Each filter runs through the job
(``TwinExperiment.from_truth``, the job's sampler unless ``--levels``/``--solver`` say
otherwise) with N = 256 from ``xx[0] + N(0, I)``.  Score: RMSE over all 40 components of
the analysis mean, averaged over cycles ``burn + 1 .. 300``; spread = sqrt of the mean
ensemble variance (ddof 1) over the same cycles; "drift" = the RMSE over the last 50
cycles divided by its mean over cycles ``burn + 1 .. 300`` (a filter losing track has
drift > 2).  ``--dapper`` also runs DAPPER's LETKF (``loc_rad`` = the radius, ``infl``
1, no rotation) and perturbed-observation EnKF (``infl`` 1.02) on the same data, if
DAPPER is importable (``--dapper-python`` runs it with another interpreter).
``--set KEY=VALUE`` overrides a field of the job's ``TwinExperiment`` (a number, or JSON) for
every filter, e.g. ``--set local_radius=2.5``.  With ``letkf`` and ``enkf 1.02`` in
``--filters``, the table counts per filter the truths on which it is not below both.
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import jax
import numpy as np

from assimilax_adapters.lorenz96.dynamics import Lorenz96, simulate
from assimilax_adapters.lorenz96.experiment import TwinExperiment, run
from assimilax_adapters.lorenz96.truth import save_truth

D, OBS_EVERY, R = 40, 2, 1.0

# name -> (job filter, inflation)
CONFIGS = {
    "letkf": ("letkf", 1.0),
    "etkf": ("etkf", 1.0),
    "enkf 1.02": ("enkf", 1.02),
    "letkf-emulator": ("letkf-emulator", 1.0),
    "enkf-emulator 1.02": ("enkf-emulator", 1.02),
    "fa-apf-local-oracle": ("fa-apf-local-oracle", 1.0),
    "fa-apf-local": ("fa-apf-local", 1.0),
    "fa-apf-block-oracle": ("fa-apf-block-oracle", 1.0),
    "fa-apf-block": ("fa-apf-block", 1.0),
}


def make_truth(seed: int, q: float, cycles: int, path: Path, observe: str = "identity") -> None:
    k_truth, k_obs = jax.random.split(jax.random.key(1000 + seed))
    xx = np.asarray(simulate(k_truth, cycles + 1, model=Lorenz96(dim=D), q=q), dtype=np.float64)
    obs_idx = np.arange(0, D, OBS_EVERY)
    observed = xx[1:, obs_idx]
    observed = np.abs(observed) if observe == "abs" else observed
    yy = observed + np.sqrt(R) * np.asarray(jax.random.normal(k_obs, (cycles, obs_idx.size)))
    save_truth(path, xx, yy, obs_idx, q=q, r=R, observe=observe)


def scores(mean: np.ndarray, var: np.ndarray, truth: np.ndarray, burn: int) -> dict:
    err = np.sqrt(((mean - truth) ** 2).mean(-1))
    spread = np.sqrt(var.mean(-1))
    after = err[burn:]
    return {
        "rmse": float(after.mean()),
        "spread": float(spread[burn:].mean()),
        "drift": float(err[-50:].mean() / after.mean()),
    }


DAPPER_SCRIPT = r"""
import json, sys
import numpy as np
import dapper.mods as modelling
import dapper.da_methods as da
from dapper.mods.Lorenz96 import step
from dapper.tools.localization import nd_Id_localization
path, name, n, radius = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
f = np.load(path)
xx, yy, idx, q, r = f["xx"], f["yy"], f["obs_idx"], float(f["q"]), float(f["r"])
K, d, dt = yy.shape[0], xx.shape[1], 0.05
tseq = modelling.Chronology(dt=dt, dko=1, K=K, BurnIn=dt)
# DAPPER adds sqrt(dt) * N(0, C) per model step: C = q^2 / dt gives q per cycle.
Dyn = {"M": d, "model": step, "linear": None, "noise": modelling.GaussRV(C=q**2 / dt, M=d)}
Obs = modelling.partial_Id_Obs(d, idx)
Obs["noise"] = modelling.GaussRV(C=r, M=len(idx))
Obs["localizer"] = nd_Id_localization((d,), (OBS_EVERY,), idx, periodic=True)
X0 = modelling.GaussRV(mu=xx[0], C=1.0)
HMM = modelling.HiddenMarkovModel(Dyn, Obs, tseq, X0)
xp = da.LETKF(N=n, infl=1.0, rot=False, loc_rad=radius) if name == "letkf" else da.EnKF("PertObs", N=n, infl=1.02)
np.random.seed(int(sys.argv[5]))
xp.assimilate(HMM, xx, yy, liveplots=False)
mu = np.asarray(xp.stats.mu.a)
var = np.asarray(xp.stats.spread.a) ** 2
print(json.dumps({"mean": mu.tolist(), "var": var.tolist()}))
""".replace("OBS_EVERY", str(OBS_EVERY))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--q", type=float, nargs="+", default=[0.3, 0.1])
    parser.add_argument("--filters", nargs="+", default=["letkf", "etkf", "enkf 1.02"], choices=list(CONFIGS))
    parser.add_argument("--particles", type=int, default=256)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--burn", type=int, default=50)
    parser.add_argument("--radius", type=float, default=4.0)
    parser.add_argument("--levels", type=int, default=TwinExperiment.levels)
    parser.add_argument("--solver", default=TwinExperiment.solver)
    parser.add_argument("--truth-dir", type=Path, default=Path("outputs/lorenz96_truths"))
    parser.add_argument("--observe", default="identity", choices=("identity", "abs"), help="observe x or |x| (the truths of abs are other files)")
    parser.add_argument("--local-update", default=TwinExperiment.local_update, help="local update of the localised FA-APF (the job's --local-update)")
    parser.add_argument("--local-predictive-variance", type=float, default=None, help="v of the localised FA-APF's first-stage weights (the job's --local-predictive-variance; default q^2, or R / 2 for abs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a TwinExperiment field for every filter, e.g. local_radius=2.5 (repeatable)")
    parser.add_argument("--dapper", action="store_true")
    parser.add_argument("--dapper-python", default=sys.executable)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in TwinExperiment.__dataclass_fields__:
            parser.error(f"--set {item!r}: expected KEY=VALUE with KEY a TwinExperiment field")
        overrides[key] = json.loads(value)
    args.truth_dir.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    rows: dict[tuple[str, float], list[dict]] = {}
    for q in args.q:
        for seed in args.seeds:
            tag = "" if args.observe == "identity" else f"_{args.observe}"
            path = args.truth_dir / f"l96_q{q}_seed{seed}{tag}.npz"
            if not path.exists():
                make_truth(seed, q, args.cycles, path, args.observe)
            truth = np.load(path)["xx"][1:]
            for name in args.filters:
                job, inflation = CONFIGS[name]
                if (job.endswith("emulator") or job in ("fa-apf-local", "fa-apf-block")) and q != 0.3:
                    continue
                cfg = TwinExperiment.from_truth(
                    str(path), particles=args.particles, spinup=args.burn, filters=(job,), seed=seed,
                    inflation=inflation, localisation_radius=args.radius, levels=args.levels, solver=args.solver,
                    local_update=args.local_update, local_predictive_variance=args.local_predictive_variance,
                    **overrides,
                )
                t0 = time.perf_counter()
                ds = run(cfg, progress=False)
                x = ds["analysis"].sel(filter=job).values
                s = scores(x.mean(1), x.var(1, ddof=1), truth, args.burn)
                s["s_per_cycle"] = float(np.nanmedian(ds["seconds"].sel(filter=job).values[1:]))
                rows.setdefault((name, q), []).append(s)
                print(f"q={q} seed={seed} {name}: {s} ({time.perf_counter() - t0:.0f} s)", flush=True)
            if args.dapper:
                for name in ("letkf", "enkf"):
                    label = f"DAPPER {name}" + (" 1.02" if name == "enkf" else "")
                    out = subprocess.run(
                        [args.dapper_python, "-c", DAPPER_SCRIPT, str(path), name, str(args.particles), str(args.radius), str(seed)],
                        capture_output=True, text=True, check=True,
                    )
                    res = json.loads(out.stdout.strip().splitlines()[-1])
                    mean, var = np.asarray(res["mean"]), np.asarray(res["var"])
                    s = scores(mean[-args.cycles:], var[-args.cycles:], truth, args.burn)
                    rows.setdefault((label, q), []).append(s)
                    print(f"q={q} seed={seed} {label}: {s}", flush=True)
    wall = time.perf_counter() - start

    lines = [
        f"Lorenz-96, d = {D}, every {OBS_EVERY}nd component observed, R = {R}, N = {args.particles}, "
        f"{args.cycles} cycles, burn-in {args.burn}, seeds {args.seeds} (truth keys 1000 + seed), "
        f"localisation length scale {args.radius}, job sampler {args.levels} levels {args.solver}, "
        f"local update {args.local_update}, first-stage variance "
        f"{'default' if args.local_predictive_variance is None else args.local_predictive_variance}"
        f"{''.join(f', {k} = {v}' for k, v in overrides.items())}; "
        f"means over seeds (± std across seeds); jax {jax.__version__}, {jax.default_backend()}, "
        f"{platform.machine()}, {date.today()}, {wall / 60:.1f} min in all",
        "",
        "| filter | q | RMSE | spread | spread/RMSE | worst drift (last 50 / mean) | not below both | per seed RMSE | s/cycle |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, q), per in rows.items():
        r = np.array([p["rmse"] for p in per])
        sp = np.array([p["spread"] for p in per])
        drift = max(p["drift"] for p in per)
        sec = np.median([p.get("s_per_cycle", np.nan) for p in per])
        misses = ""
        if name not in ("letkf", "enkf 1.02") and {("letkf", q), ("enkf 1.02", q)} <= rows.keys():
            best = np.minimum(*(np.array([p["rmse"] for p in rows[b, q]]) for b in ("letkf", "enkf 1.02")))
            lost = [seed for seed, a, b in zip(args.seeds, r, best) if a >= b]
            misses = f"{len(lost)} of {r.size}" + (f" (seeds {' '.join(map(str, lost))})" if lost else "")
        lines.append(
            f"| {name} | {q} | {r.mean():.3f} ± {r.std(ddof=1) if r.size > 1 else 0:.3f} | {sp.mean():.3f} | "
            f"{(sp / r).mean():.2f} | {drift:.2f} | {misses} | {' '.join(f'{v:.3f}' for v in r)} | {sec:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
