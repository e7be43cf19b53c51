"""Kill-and-resume trials of ``assimilax lorenz96``: ``kill -9`` at a random checkpoint,
rerun the same command, compare with an uninterrupted run bit for bit.

    python bench/kill_trials.py --trials 10 --out bench/results/kill_trials.json

Each trial draws the cycle after which the run is killed (uniform over the run's
checkpoints) and the filter set; the data variables of the resumed run's NetCDF must equal
the uninterrupted run's exactly (the per-cycle timings aside).  The results table goes to
``docs/reliability.md``.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}


def command(out: Path, filters: list[str], cycles: int) -> list[str]:
    return [sys.executable, "-m", "assimilax.cli", "lorenz96", "--particles", "16", "--cycles", str(cycles),
            "--spinup", "1", "--levels", "4", "--filters", *filters, "--checkpoint-every", "1",
            "--no-progress", "-o", str(out)]


def done_in(path: Path) -> int:
    try:
        with np.load(path) as saved:
            return int(saved["done"])
    except (OSError, ValueError, KeyError, EOFError):
        return 0


def data(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.drop_vars("seconds").load()


def trial(rng: np.random.Generator, root: Path, index: int, cycles: int) -> dict:
    filters = list(rng.choice(["fa-apf", "fa-apf-block", "enkf", "letkf", "bootstrap"], size=2, replace=False))
    kill_after = int(rng.integers(1, cycles // 2))
    fresh, killed = root / f"fresh{index}", root / f"killed{index}"
    subprocess.run(command(fresh, filters, cycles), env=ENV, check=True, capture_output=True)
    proc = subprocess.Popen(command(killed, filters, cycles), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "checkpoints" / f"{filters[0]}.npz"
    done = 0
    while proc.poll() is None:
        done = done_in(ckpt)
        if done >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    was_killed = proc.returncode == -signal.SIGKILL
    resumed = subprocess.run(command(killed, filters, cycles), env=ENV, capture_output=True, text=True)
    if resumed.returncode != 0:
        return {"filters": filters, "killed_after_cycle": done, "killed": was_killed,
                "resumed_status": resumed.returncode, "bit_identical": False, "stderr": resumed.stderr[-500:]}
    a, b = data(fresh / "lorenz96_twin.nc"), data(killed / "lorenz96_twin.nc")
    identical = all(np.array_equal(a[v].values, b[v].values, equal_nan=True) for v in a.data_vars)
    return {"filters": filters, "killed_after_cycle": done, "killed": was_killed,
            "resumed_status": resumed.returncode, "bit_identical": bool(identical)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/kill_trials.json")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [trial(rng, Path(tmp), i, args.cycles) for i in range(args.trials)]
    for row in rows:
        print(row)
    summary = {"trials": len(rows), "killed_mid_run": sum(r["killed"] for r in rows),
               "bit_identical": sum(r["bit_identical"] and r["resumed_status"] == 0 for r in rows)}
    print(summary)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "summary": summary, "trials": rows}, indent=1))


if __name__ == "__main__":
    main()
