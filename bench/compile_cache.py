"""Compile time of `assimilate`'s step: first call, a second call in the same process (a
resumed run, the next seed), and a new process with a warm persistent compilation cache.

The filter is the Lorenz-96 job's FA-APF with the shipped emulator (N = 256, the job's
default sampler).  Each measurement is the wall time of the first cycle minus the median
of the other cycles (the compile time), in a fresh subprocess for the cache cases.

    python bench/compile_cache.py
"""

import json
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
import jax, numpy as np
import assimilax as ax
from assimilax_adapters.lorenz96.experiment import TwinExperiment, build_filters, twin_data

cache = sys.argv[1] if len(sys.argv) > 1 else None
cfg = TwinExperiment(particles=256, cycles=4, filters=("fa-apf",))
filt = build_filters(cfg)["fa-apf"]
truth, obs, ens = twin_data(cfg)
out = {}
for call in ("first call", "second call"):
    times = []
    ax.assimilate(filt, filt.init(ens), obs, jax.random.key(call == "first call"), progress=False,
                  compile_cache=cache, on_cycle=lambda t, d, s: times.append(s))
    out[call] = {"first_cycle_s": times[0], "cycle_s": float(np.median(times[1:]))}
print(json.dumps(out))
"""


def child(*args):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def main():
    rows = {}
    rows["no cache"], _ = child()
    with tempfile.TemporaryDirectory() as cache:
        rows["cold cache"], _ = child(cache)
        rows["warm cache (new process)"], _ = child(cache)
    print(f"{'run':>26} | {'call':>11} | {'first cycle s':>13} | {'cycle s':>7} | {'compile s':>9}")
    for run, calls in rows.items():
        for call, r in calls.items():
            print(f"{run:>26} | {call:>11} | {r['first_cycle_s']:13.2f} | {r['cycle_s']:7.3f} | "
                  f"{r['first_cycle_s'] - r['cycle_s']:9.2f}")


if __name__ == "__main__":
    main()
