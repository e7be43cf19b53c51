"""Accelerator check: GenCast (Mini and 1-degree architectures, random weights) and Lorenz-96 costs.

One command, under `--budget` seconds (default 450, so under 8 minutes with start-up):

    python bench/gpu.py --out bench/results/gpu          # on a GPU
    python bench/gpu.py --quick --out /tmp/gpu_quick     # tiny sizes, on CPU, about a minute

Measurements, each in its own subprocess (so each peak memory is its own, and the parent
never initialises the accelerator):

- ``lorenz96-cycle`` at N = 256 and 4096: one cycle of the `assimilax lorenz96` job's
  ``fa-apf`` (shipped emulator, 12 levels of DPM-Solver++(2S), MMPS with 1 CG step below
  sigma = 5, rolled level loop);
- ``gencast-denoiser``: one evaluation of the GenCast denoiser on one sample;
- ``gencast-mmps``: one MMPS-guided evaluation (forward pass, 1 CG step) on one sample,
  observing 2 m temperature and temperature on every 4th grid point (the GenCast
  experiment's default network);
- ``gencast-cycle`` at N = 8 and 32: one FA-APF cycle (Dirac weights, ESS-band tempering,
  MMPS with 1 CG step at every level) with `--cycle-levels` levels of Adams-Bashforth 3 and
  no corrector (the reference sampler's 32 levels + 2 correctors cost about 94 / levels
  times more), particles mapped `--chunk` at a time (`assimilax.sharding.particle_layout`).

GenCast is built at the published Mini (mesh 4) and 1-degree (mesh 5) resolutions on the
181 x 360 grid with the reference's default architecture (latent 512, 16 transformer layers
x 4 heads, ffw 2048, 16-hop attention; the stored configuration of a published file may
differ), the full GenCast task (84 target channels), random parameters
(`params.random_params`), synthetic statistics (mean 0, std 1) and a synthetic dataset.
``--quick`` uses the tiny test architecture on a 7 x 12 grid and smaller N.

Each row: compile time (lowering + compilation), run time (median of `--repeats` calls after
a warm-up), the device's peak memory in use (`memory_stats()["peak_bytes_in_use"]`; on CPU the
process's peak resident memory) and XLA's temporary buffer size of the compiled program.
A measurement that does not fit in the remaining budget is recorded as skipped.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

FULL = {
    "lorenz96": [256, 4096],
    "gencast_archs": ["mini", "1deg"],
    "gencast_particles": [8, 32],
}
QUICK = {
    "lorenz96": [16, 64],
    "gencast_archs": ["tiny"],
    "gencast_particles": [4, 8],
}


# --------------------------------------------------------------------------- the measurements
# Everything below `_child` runs in a subprocess; jax is imported there only.


def _timed(fn, args, repeats, compiler_options=None):
    """(compile s, run s, compiled temp bytes) of `fn(*args)` compiled once.

    The arrays of `args` (weights included) are arguments of the compiled program, not
    constants baked into it."""
    import equinox as eqx
    import jax
    import numpy as np

    arrays, static = eqx.partition(args, eqx.is_array)
    program = jax.jit(lambda a: eqx.filter(fn(*eqx.combine(a, static)), eqx.is_array))
    t0 = time.perf_counter()
    compiled = program.lower(arrays).compile(compiler_options=compiler_options)
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(arrays))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(arrays))
        times.append(time.perf_counter() - t0)
    try:
        temp = int(compiled.memory_analysis().temp_size_in_bytes)
    except Exception:  # not every backend reports it
        temp = None
    return compile_s, float(np.median(times)), temp


def _peak_bytes():
    import resource

    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device peak in use"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process peak RSS"


def _lorenz96_cycle(n, repeats, options):
    import jax
    import jax.numpy as jnp

    from assimilax_adapters.lorenz96.experiment import TwinExperiment, build_filters, twin_data

    cfg = TwinExperiment(particles=n, cycles=1, spinup=0, filters=("fa-apf",))
    filt = build_filters(cfg)["fa-apf"]
    _, observations, ensemble = twin_data(cfg)
    args = (filt, filt.init(jnp.asarray(ensemble)), jnp.asarray(observations[0]), jax.random.key(2))
    return _timed(lambda f, s, y, k: f.step(s, y, k), args, repeats, options)


def _gencast_setup(arch_name):
    """(emulator, statistics, dataset) of GenCast at `arch_name` with random weights."""
    import numpy as np
    import xarray as xr

    from assimilax_adapters.gencast import config as C, params as P, testing as T
    from assimilax_adapters.gencast.emulator import GenCastEmulator
    from assimilax_adapters.gencast.normalization import Statistics

    task = C.GENCAST_TASK
    if arch_name == "tiny":
        arch, nenc = T.tiny_arch(), T.tiny_noise_encoder()
        lat, lon = T.FILTER_LAT, T.FILTER_LON
    else:
        mesh = {"mini": C.PUBLISHED_MESH_SIZES["GenCast 1p0deg Mini <2019"], "1deg": C.PUBLISHED_MESH_SIZES["GenCast 1p0deg <2019"]}[arch_name]
        st = C.SparseTransformerConfig(attention_k_hop=16, d_model=512)
        arch, nenc = C.DenoiserArchitectureConfig(sparse_transformer_config=st, mesh_size=mesh), C.NoiseEncoderConfig()
        lat, lon = np.linspace(-90.0, 90.0, 181), np.arange(360.0)
    params = P.random_params(P.checkpoint_param_shapes(task, arch, nenc), seed=0)
    ckpt = C.CheckPoint("random weights (bench/gpu.py)", "none", params, task, arch, C.SamplerConfig(), C.NoiseConfig(), nenc)

    levels = np.asarray(task.pressure_levels)
    names = sorted(set(task.input_variables) | set(task.target_variables) | set(task.forcing_variables))
    static = ("land_sea_mask", "geopotential_at_surface")

    def per_var(value):
        return {n: (("level", np.full(levels.size, value)) if n in C.ALL_ATMOSPHERIC_VARS else ((), np.float64(value)))
                for n in names}

    stats = Statistics(
        xr.Dataset(per_var(0.0), coords={"level": levels}),
        xr.Dataset(per_var(1.0), coords={"level": levels}),
        xr.Dataset({k: v for k, v in per_var(1.0).items() if k not in static}, coords={"level": levels}),
        xr.Dataset(per_var(-10.0), coords={"level": levels}),
    )
    rng = np.random.default_rng(0)
    times = np.datetime64("2019-01-01T00") + np.arange(3) * np.timedelta64(12, "h")
    data = {}
    for n in sorted(set(task.target_variables) | set(task.input_variables)):
        if n in task.forcing_variables:
            continue
        if n in static:
            data[n] = (("lat", "lon"), rng.standard_normal((lat.size, lon.size)).astype(np.float32))
        elif n in C.ALL_ATMOSPHERIC_VARS:
            data[n] = (("time", "level", "lat", "lon"), rng.standard_normal((3, levels.size, lat.size, lon.size)).astype(np.float32))
        else:
            data[n] = (("time", "lat", "lon"), rng.standard_normal((3, lat.size, lon.size)).astype(np.float32))
    ds = xr.Dataset(data, coords={"time": times, "lat": lat, "lon": lon, "level": levels})
    try:
        import trimesh  # noqa: F401

        backend = "trimesh"
    except ImportError:
        backend = "numpy"
    emulator = GenCastEmulator.from_checkpoint(ckpt, stats, ds, mesh2grid_backend=backend)
    return emulator, stats, ds


def _gencast_observation(emulator, stats):
    from assimilax_adapters.gencast.observations import all_levels, every_nth, observation_model

    fields = all_levels(emulator.layout, "2m_temperature") + all_levels(emulator.layout, "temperature")
    observation, _ = observation_model([every_nth(emulator.layout, fields, 4)], 0.1, stats)
    return observation


def _gencast_inputs(emulator, ds):
    import jax
    import jax.numpy as jnp

    states = jnp.asarray(emulator.states(ds))  # (3, d): history x[0], x[1]; truth x[2]
    forcings = jax.tree.map(lambda a: jnp.asarray(a)[0], emulator.forcings(ds.time.values[2:]))
    return states[:2], states[2], forcings


def _gencast_eval(arch, guided, repeats, options):
    import jax
    import jax.numpy as jnp

    import assimilax as ax

    emulator, stats, ds = _gencast_setup(arch)
    history, truth, forcing = _gencast_inputs(emulator, ds)
    observation = _gencast_observation(emulator, stats)
    y = observation.sample(jax.random.key(1), truth)
    x_t = 5.0 * emulator.noise(jax.random.key(0))
    sigma = jnp.asarray(5.0)

    def run(emulator, observation, x_t, history, forcing, y):
        context = emulator.context(history, forcing)

        def denoise(z, s):
            return emulator.denoiser(z, s, context)

        if not guided:
            return denoise(x_t, sigma)

        def observe(z):
            return observation.operator(emulator.to_state(z, history))

        posterior = ax.posterior_denoiser(ax.MMPS(iterations=1), denoise, y, observe, observation.noise)
        return posterior(x_t, sigma)

    out = _timed(run, (emulator, observation, x_t, history, forcing, y), repeats, options)
    return out, {"state_size": emulator.state_size, "observations": observation.obs_size}


def _gencast_cycle(arch, n, chunk, levels, repeats, options):
    import jax
    import jax.numpy as jnp

    import assimilax as ax
    from assimilax import sharding

    emulator, stats, ds = _gencast_setup(arch)
    history, truth, forcing = _gencast_inputs(emulator, ds)
    observation = _gencast_observation(emulator, stats)
    y = observation.sample(jax.random.key(1), truth)
    sampler = ax.Sampler(ax.EDMSchedule(2e-5, 88.0, 6.0), levels, ax.AdamsBashforth3())
    filt = ax.FAAPF(emulator, observation, sampler, ax.MMPS(iterations=1),
                    tempering=ax.ESSBandTempering(50 / 256, 60 / 256))
    state = filt.init(jnp.broadcast_to(history, (n, *history.shape)))
    layout = sharding.particle_layout(1, chunk_size=chunk)
    with layout.active():
        out = _timed(lambda filt, s, y, k, f: filt.step(s, y, k, f), (filt, state, y, jax.random.key(2), forcing), repeats, options)
    return out, {"guided_evaluations_per_particle": sampler.denoiser_calls(), "chunk": chunk}


def _child(spec):
    import jax

    kind = spec["kind"]
    options = spec.get("compiler_options")  # XLA options (the test uses fast CPU compilation)
    extra = {}
    if kind == "lorenz96-cycle":
        out = _lorenz96_cycle(spec["n"], spec["repeats"], options)
    elif kind in ("gencast-denoiser", "gencast-mmps"):
        out, extra = _gencast_eval(spec["arch"], kind == "gencast-mmps", spec["repeats"], options)
    elif kind == "gencast-cycle":
        out, extra = _gencast_cycle(spec["arch"], spec["n"], spec["chunk"], spec["levels"], spec["repeats"], options)
    else:
        raise ValueError(f"unknown measurement {kind!r}")
    compile_s, run_s, temp = out
    peak, peak_kind = _peak_bytes()
    return {**spec, **extra, "status": "ok", "compile_s": compile_s, "run_s": run_s,
            "peak_bytes": peak, "peak_kind": peak_kind, "temp_bytes": temp,
            "device": str(jax.devices()[0].device_kind), "platform": jax.devices()[0].platform}


# --------------------------------------------------------------------------- the driver


def _plan(args):
    sizes = QUICK if args.quick else FULL
    chunk = args.chunk or (2 if args.quick else 8)
    plan = [dict(kind="lorenz96-cycle", n=sizes["lorenz96"][0], repeats=args.repeats)]
    for arch in sizes["gencast_archs"]:
        plan += [dict(kind="gencast-denoiser", arch=arch, repeats=args.repeats),
                 dict(kind="gencast-mmps", arch=arch, repeats=args.repeats)]
    for i, arch in enumerate(sizes["gencast_archs"]):
        plan += [dict(kind="gencast-cycle", arch=arch, n=n, chunk=min(chunk, n), levels=args.cycle_levels, repeats=1)
                 for n in sizes["gencast_particles"]]
        if i == 0:  # the cheap large Lorenz-96 run before the most expensive GenCast ones
            plan.append(dict(kind="lorenz96-cycle", n=sizes["lorenz96"][1], repeats=args.repeats))
    return plan


def _label(r):
    if r["kind"] == "lorenz96-cycle":
        return f"Lorenz-96 `fa-apf` cycle, N = {r['n']}"
    what = {"gencast-denoiser": "denoiser evaluation", "gencast-mmps": "MMPS-guided evaluation (1 CG step)",
            "gencast-cycle": f"FA-APF cycle, N = {r.get('n')}, {r.get('levels')} levels, chunk {r.get('chunk')}"}[r["kind"]]
    return f"GenCast {r['arch']}: {what}"


def _table(results):
    lines = ["| measurement | compile (s) | run (s) | peak memory (GiB) | XLA temp (GiB) | status |",
             "|---|---|---|---|---|---|"]
    gib = lambda b: "-" if b is None else f"{b / 2**30:.2f}"  # noqa: E731
    for r in results:
        if r["status"] == "ok":
            lines.append(f"| {_label(r)} | {r['compile_s']:.1f} | {r['run_s']:.4f} | {gib(r['peak_bytes'])} | "
                         f"{gib(r['temp_bytes'])} | ok |")
        else:
            lines.append(f"| {_label(r)} | - | - | - | - | {r['status']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU check of this script)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all measurements")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=None, help="particles per chunk in the GenCast cycles")
    parser.add_argument("--cycle-levels", type=int, default=4, help="sampler levels of the GenCast cycles")
    parser.add_argument("--out", type=Path, default=None, help="folder for gpu.json and gpu.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        print("RESULT " + json.dumps(_child(json.loads(args.child))), flush=True)
        return

    start = time.perf_counter()
    results = []
    for spec in _plan(args):
        left = args.budget - (time.perf_counter() - start)
        if left < 10:
            results.append({**spec, "status": "skipped (budget)"})
            continue
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                  capture_output=True, text=True, timeout=left, env=os.environ.copy())
            lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
            if proc.returncode == 0 and lines:
                result = json.loads(lines[-1][len("RESULT "):])
            else:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                result = {**spec, "status": f"failed (rc {proc.returncode}): {tail[0][:200]}"}
        except subprocess.TimeoutExpired:
            result = {**spec, "status": f"timed out after {left:.0f} s (budget)"}
        result["wall_s"] = time.perf_counter() - t0
        results.append(result)
        print(f"{_label(result)}: {result['status']}"
              + (f", compile {result['compile_s']:.1f} s, run {result['run_s']:.4f} s" if result["status"] == "ok" else "")
              + f" ({result['wall_s']:.0f} s)", flush=True)

    ok = [r for r in results if r["status"] == "ok"]
    device = ok[0]["device"] if ok else "unknown device"
    header = (f"bench/gpu.py{' --quick' if args.quick else ''} on {device}, "
              f"{time.strftime('%Y-%m-%d')}, {time.perf_counter() - start:.0f} s in all\n\n")
    table = header + _table(results)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "gpu.md").write_text(table)


if __name__ == "__main__":
    main()
