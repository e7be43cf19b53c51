"""Rows the ancestor exchange moves between devices, for the Lorenz-96 FA-APF and block FA-APF.

Runs the job's filters (shipped emulator, N = 256) for `--cycles` cycles on one device,
recomputes each cycle's ancestors with `first_stage` on the same states, and counts with
`assimilax.sharding.exchange_volume` the rows that would change device on D = 2, 4, 8
devices (a row is one particle's history; for the block FA-APF, one block of it), beside
what an all-gather of the ensemble moves, ``(D - 1) x rows``.

    python bench/exchange_volume.py [--cycles 30]
"""

import argparse

import equinox as eqx
import jax
import numpy as np

import assimilax as ax
from assimilax.filters.run import cycle_key
from assimilax_adapters.lorenz96.experiment import TwinExperiment, build_filters, twin_data


@eqx.filter_jit
def ancestors_of(filt, state, y, key):
    return filt.first_stage(state, y, key)[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=30)
    args = parser.parse_args()
    cfg = TwinExperiment(cycles=args.cycles, filters=("fa-apf", "fa-apf-block"))
    truth, observations, ensemble = twin_data(cfg)
    key = jax.random.key(cfg.seed + 1)
    print(f"N = {cfg.particles}, {cfg.cycles} cycles, means over cycles {cfg.spinup + 1}..{cfg.cycles}")
    print(f"{'filter':>13} | {'D':>2} | {'rows':>5} | {'moved / cycle':>13} | {'fraction':>8} | {'all-gather':>10}")
    for name, filt in build_filters(cfg).items():
        _, out = ax.assimilate(filt, filt.init(ensemble), observations, key, progress=False)
        ancestors = []
        for t in range(cfg.spinup, cfg.cycles):
            state = filt.init(np.asarray(out.particles[t - 1]) if t else ensemble)
            state = eqx.tree_at(lambda s: s.cycle, state, jax.numpy.asarray(t))
            ancestors.append(np.asarray(ancestors_of(filt, state, jax.numpy.asarray(observations[t]), cycle_key(key, t))))
        for d in (2, 4, 8):
            vols = [ax.sharding.exchange_volume(a, d) for a in ancestors]
            moved = np.mean([v["moved"] for v in vols])
            rows, gather = vols[0]["rows"], vols[0]["all_gather"]
            print(f"{name:>13} | {d:2d} | {rows:5d} | {moved:13.1f} | {moved / rows:8.3f} | {gather:10d}")


if __name__ == "__main__":
    main()
