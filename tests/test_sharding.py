"""Particles over devices: the same filter, the same key, the same results on 1, 4 and 2 x 2 devices.

The multi-device runs happen in subprocesses (tests/scripts/sharded_run.py), because the
number of forced host devices (``XLA_FLAGS=--xla_force_host_platform_device_count``) and
`jax.distributed` must be set before JAX starts.  Tolerances: ancestors and the tempering
alpha must be identical; particles and the ESS / evidence may differ by float32 rounding
(the denoiser runs on batches of another size, so XLA may sum in another order), measured
below 4e-6 with the 2S sampler and up to 1.7e-5 with the multistep 3M one (atol 5e-5).
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import assimilax as ax
from assimilax import sharding

SCRIPT = Path(__file__).parent / "scripts" / "sharded_run.py"
FIELDS = ("particles", "ess", "alpha", "log_likelihood", "ancestors")


def _run(*args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run.npz"
    _run(SCRIPT, out, "--devices", "1")
    return dict(np.load(out))


def _assert_same(reference, other):
    for name in ("fa-apf", "fa-apf-block"):
        for field in ("ancestors", "alpha"):
            np.testing.assert_array_equal(other[f"{name}/{field}"], reference[f"{name}/{field}"])
        # float32 rounding differs between the layouts (reductions in another order) and
        # the multistep DPM-Solver++(3M) carries it through its divided differences: up to
        # 1.7e-5 on particles of size ~10 (4 cycles x 3 steps), with identical ancestors.
        np.testing.assert_allclose(other[f"{name}/particles"], reference[f"{name}/particles"], rtol=1e-5, atol=5e-5)
        for field in ("ess", "log_likelihood"):
            np.testing.assert_allclose(other[f"{name}/{field}"], reference[f"{name}/{field}"], rtol=1e-5, atol=1e-5)


def test_four_devices_equal_one_device(one_device, tmp_path):
    """FA-APF and block FA-APF on the shipped emulator, 16 particles over 4 forced devices,
    chunks of 2 particles, the exchange in rounds of 1 row per device pair."""
    out = tmp_path / "four.npz"
    _run(SCRIPT, out, "--devices", 4, "--chunk-size", 2, "--exchange-chunk", 1)
    four = dict(np.load(out))
    assert int(four["devices"]) == 4
    _assert_same(one_device, four)


def _free_port() -> int:
    with socket.socket() as s:  # loopback only
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(one_device, tmp_path):
    """2 processes with 2 CPU devices each, on localhost through `jax.distributed` (gloo)."""
    out, port = tmp_path / "multi.npz", _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    common = [SCRIPT, out, "--local-devices", 2, "--processes", 2, "--port", port]
    procs = [
        subprocess.Popen([sys.executable, *map(str, common + ["--process-id", i])], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in (0, 1)
    ]
    try:
        results = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    multi = dict(np.load(out))
    assert int(multi["devices"]) == 4
    _assert_same(one_device, multi)


EXCHANGE = r"""
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax, jax.numpy as jnp, numpy as np
import assimilax as ax
from assimilax import sharding

n, m, d = 16, 2, 9
rng = np.random.default_rng(0)
x = rng.normal(size=(n, m, d)).astype(np.float32)
blocks = np.array([0, 0, 1, 1, 1, 2, 2, 2, 0])
loc = ax.BlockLocalisation(blocks, np.array([0]), 3)
cases = {
    "sorted": np.sort(rng.integers(0, n, n)),
    "one particle": np.zeros(n, int),
    "reversed": np.arange(n)[::-1],
    "random": rng.integers(0, n, n),
}
for chunk in (None, 1, 3):
    layout = sharding.particle_layout(4, exchange_chunk=chunk)
    for label, a in cases.items():
        ab = np.stack([a, np.roll(a, 5), rng.integers(0, n, n)])
        with layout.active():
            got = jax.jit(sharding.take_particles)(layout.put(x, True), jnp.asarray(a))
            glued = jax.jit(lambda x, a: sharding.glue_particles(x, a, loc))(layout.put(x, True), jnp.asarray(ab))
        assert np.array_equal(np.asarray(got), x[a]), (label, chunk)
        ref = np.take_along_axis(x, np.broadcast_to(ab[blocks].T[:, None, :], x.shape), 0)
        assert np.array_equal(np.asarray(glued), ref), (label, chunk, "glue")
try:
    layout.check_particles(15)
    raise SystemExit("15 particles on 4 devices were accepted")
except ValueError as error:
    assert "15 particles do not split evenly over 4 devices" in str(error)
print("ok")
"""


def test_exchange_moves_rows_exactly_on_four_devices():
    """`take_particles` and `glue_particles` equal NumPy indexing for sorted, degenerate
    (every slot from particle 0), reversed and random ancestors, in one or several rounds;
    a particle count that does not split over the devices is refused."""
    done = _run("-c", EXCHANGE)
    assert done.stdout.strip().endswith("ok")


def test_one_device_operations_are_plain_indexing():
    x = jnp.arange(24.0).reshape(6, 1, 4)
    a = jnp.array([0, 0, 2, 3, 3, 5])
    np.testing.assert_array_equal(sharding.take_particles(x, a), x[a])
    loc = ax.BlockLocalisation(np.array([0, 0, 1, 1]), np.array([0, 1]), 2)
    ab = jnp.stack([a, a[::-1]])
    expected = np.concatenate([np.asarray(x)[np.asarray(a)][..., :2], np.asarray(x)[np.asarray(a[::-1])][..., 2:]], -1)
    np.testing.assert_array_equal(sharding.glue_particles(x, ab, loc), expected)
    for chunk in (None, 1, 4):
        with sharding.ParticleLayout(chunk_size=chunk).active():
            y = sharding.map_particles(lambda r: jnp.sum(r**2), x)
        np.testing.assert_allclose(y, np.sum(np.asarray(x) ** 2, axis=(1, 2)), rtol=1e-6)


def test_exchange_volume_counts_rows_that_change_device():
    a = np.array([0, 0, 1, 3, 4, 4, 6, 7])  # two devices of 4: each slot keeps its device
    assert sharding.exchange_volume(a, 2) == {"moved": 0, "rows": 8, "all_gather": 8}
    assert sharding.exchange_volume(np.zeros(8, int), 2)["moved"] == 4
    assert sharding.exchange_volume(np.zeros((3, 8), int), 4)["all_gather"] == 72


def test_layout_errors_name_the_problem():
    with pytest.raises(ValueError, match="devices=2: this run sees 1 device"):
        sharding.particle_layout(2)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        sharding.ParticleLayout(chunk_size=0)
    layout = sharding.particle_layout(1, chunk_size=3)
    assert layout.mesh is None and layout.n_devices == 1
    layout.check_particles(7)  # one device takes any number of particles


def _cli(out, devices, extra=()):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4 --xla_cpu_multi_thread_eigen=false"
    cmd = [sys.executable, "-m", "assimilax.cli", "lorenz96", "--devices", str(devices), "--particles", "16",
           "--cycles", "3", "--spinup", "1", "--levels", "6", "--filters", "fa-apf-block", "--no-progress", "-o", str(out), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return xr.open_dataset(out / "lorenz96_twin.nc")


def test_cli_on_four_devices_writes_the_one_device_netcdf(tmp_path):
    """`assimilax lorenz96 --devices 4 --particles 16 --cycles 3 --filters fa-apf-block` on 4
    forced host devices (chunks of 2) writes the NetCDF of ``--devices 1``."""
    one = _cli(tmp_path / "one", 1)
    four = _cli(tmp_path / "four", 4, ["--chunk-size", "2"])
    assert four.attrs["configuration"] == one.attrs["configuration"]
    for name in one.data_vars:
        if name == "seconds":
            continue
        np.testing.assert_allclose(four[name].values, one[name].values, rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(four["alpha"].values, one["alpha"].values)
