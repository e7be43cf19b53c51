"""Run the Lorenz-96 FA-APF and block FA-APF under a given particle layout (for tests).

Launched in a subprocess by tests/test_sharding.py, because the number of (forced host)
devices and `jax.distributed` must be set before JAX starts:

    python tests/scripts/sharded_run.py OUT.npz --devices 4 [--chunk-size 2] [--exchange-chunk 1]
    python tests/scripts/sharded_run.py OUT.npz --process-id I --processes 2 --port P

It writes, per filter, the analysis particles and diagnostics of `assimilate`, and the
ancestors of every cycle recomputed with `first_stage` on the same states.
"""

import argparse
import os

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--devices", type=int, default=None)
parser.add_argument("--local-devices", type=int, default=4)
parser.add_argument("--chunk-size", type=int, default=None)
parser.add_argument("--exchange-chunk", type=int, default=None)
parser.add_argument("--process-id", type=int, default=None)
parser.add_argument("--processes", type=int, default=1)
parser.add_argument("--port", type=int, default=0)
args = parser.parse_args()
os.environ["XLA_FLAGS"] = (
    f"--xla_force_host_platform_device_count={args.local_devices} --xla_cpu_multi_thread_eigen=false"
)

import jax  # noqa: E402

if args.process_id is not None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{args.port}",
        num_processes=args.processes,
        process_id=args.process_id,
        initialization_timeout=60,
    )

import equinox as eqx  # noqa: E402
import numpy as np  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.filters.run import cycle_key  # noqa: E402
from assimilax_adapters.lorenz96.experiment import TwinExperiment, build_filters, twin_data  # noqa: E402

cfg = TwinExperiment(
    particles=16, cycles=4, spinup=0, levels=4, filters=("fa-apf", "fa-apf-block"), seed=3
)
truth, observations, ensemble = twin_data(cfg)
layout = ax.sharding.particle_layout(args.devices, args.chunk_size, args.exchange_chunk)
key = jax.random.key(cfg.seed + 1)
results = {"devices": np.asarray(layout.n_devices)}
for name, filt in build_filters(cfg).items():
    state0 = filt.init(ensemble)
    _, out = ax.assimilate(filt, state0, observations, key, progress=False, layout=layout)
    results[f"{name}/particles"] = np.asarray(out.particles)
    for field in ("ess", "alpha", "log_likelihood"):
        results[f"{name}/{field}"] = np.asarray(getattr(out.diagnostics, field))

    @eqx.filter_jit
    def ancestors_of(filt, state, y, key):
        with layout.active():
            return filt.first_stage(state, y, key)[0]

    # The ancestors of cycle t, from the analysis of cycle t - 1 of the 1-device-like state.
    ancestors = []
    for t in range(cfg.cycles):
        particles = ensemble if t == 0 else np.asarray(out.particles[t - 1])
        state = filt.init(particles)
        state = ax.FilterState(
            layout.put(state.particles, True), layout.put(state.log_weights, False), layout.put(np.asarray(t), False)
        )
        a = ancestors_of(filt, state, layout.put(observations[t], False), layout.put(cycle_key(key, t), False))
        ancestors.append(ax.sharding.to_host(a))
    results[f"{name}/ancestors"] = np.stack(ancestors)
if jax.process_index() == 0:
    np.savez(args.out, **results)
