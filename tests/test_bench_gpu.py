"""`bench/gpu.py`, the accelerator check: its plan and one of its measurements at tiny size.

The whole ``--quick`` run takes about 5 minutes on the 2-core CI machine (each of its six
measurements compiles in its own subprocess), too long for the suite; this runs one
measurement in-process (the tiny GenCast, one MMPS-guided evaluation) and checks that the
full plan holds every measurement the GPU run must make.
"""

import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_plan(gpu):
    args = argparse.Namespace(quick=False, chunk=None, cycle_levels=4, repeats=3)
    plan = gpu._plan(args)
    keys = {(p["kind"], p.get("arch"), p.get("n")) for p in plan}
    assert keys == {
        ("lorenz96-cycle", None, 256), ("lorenz96-cycle", None, 4096),
        ("gencast-denoiser", "mini", None), ("gencast-mmps", "mini", None),
        ("gencast-denoiser", "1deg", None), ("gencast-mmps", "1deg", None),
        ("gencast-cycle", "mini", 8), ("gencast-cycle", "mini", 32),
        ("gencast-cycle", "1deg", 8), ("gencast-cycle", "1deg", 32),
    }
    assert all(p["chunk"] == 8 for p in plan if p["kind"] == "gencast-cycle")


def test_tiny_guided_evaluation(gpu):
    # XLA's CPU optimisations are not needed to check the script (they triple the compile time).
    fast = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    out = gpu._child({"kind": "gencast-mmps", "arch": "tiny", "repeats": 1, "compiler_options": fast})
    assert out["status"] == "ok"
    assert out["run_s"] > 0 and out["compile_s"] > 0 and out["peak_bytes"] > 0
    assert out["state_size"] == 7 * 12 * 84  # the full GenCast task on the 7 x 12 test grid
    assert out["observations"] > 0
    table = gpu._table([out, {"kind": "gencast-cycle", "arch": "tiny", "n": 8, "chunk": 2, "levels": 4,
                              "status": "skipped (budget)"}])
    assert "GenCast tiny: MMPS-guided evaluation" in table and "skipped (budget)" in table
