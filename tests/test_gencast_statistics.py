"""GenCast's official normalisation statistics (13 levels) read from the reference experiment's data.

The files are read from ``../shared/gencast-reference/stats/`` (see
`testing.reference_data_dir`); they are never copied into the repository, and these tests skip
with a message where the folder is absent (a user's machine).  The synthetic-statistics tests in
test_gencast_normalization cover the arithmetic against the reference's code.
"""

import shutil

import numpy as np
import pytest

from assimilax_adapters.gencast import config as C, normalization as N, testing as T

REFERENCE = T.reference_data_dir()
needs_reference = pytest.mark.skipif(
    REFERENCE is None or not (REFERENCE / "stats").is_dir(),
    reason="../shared/gencast-reference/stats (GenCast's official statistics) is not on this machine",
)


@pytest.fixture(scope="module")
def official():
    return N.Statistics.from_dir(REFERENCE / "stats")


@needs_reference
def test_official_13_level_layout(official):
    levels = C.PRESSURE_LEVELS_WEATHERBENCH_13
    for ds in (official.mean_ds, official.std_ds, official.diffs_std_ds, official.minimum_ds):
        assert tuple(int(v) for v in ds["level"].values) == levels
        assert ds.attrs["timestep_hours"] == 12
    task = C.GENCAST_TASK
    # Every input of the published task has a finite location and a positive scale ...
    for name in task.input_variables:
        lvl = levels if name in C.ALL_ATMOSPHERIC_VARS else None
        m, s = official.location_scale(name, lvl)
        assert m.shape == s.shape == ((13,) if lvl else (1,)), name
        assert np.all(np.isfinite(m)) and np.all(s > 0), name
    # ... every target its residual (or value) scale: 84 output channels.
    scales = []
    for name in task.target_variables:
        lvl = levels if name in C.ALL_ATMOSPHERIC_VARS else None
        residual, offset, scale = official.target_map(name, lvl, name in task.input_variables)
        assert residual == (name != "total_precipitation_12hr")
        scales.append(scale)
    assert sum(s.size for s in scales) == C.num_outputs(task) == 84
    assert np.all(np.concatenate(scales) > 0)
    # The static fields have no residual statistics; the SST fill value is a cold sea.
    assert official.diffs_std("land_sea_mask") is None
    assert 265.0 < float(official.fill_value("sea_surface_temperature")[0]) < 272.0


@needs_reference
def test_official_values_are_physical(official):
    levels = C.PRESSURE_LEVELS_WEATHERBENCH_13
    t = official.mean("temperature", levels)
    assert 270.0 < t[-1] < 295.0 and 205.0 < t[levels.index(200)] < 225.0  # 1000 hPa, 200 hPa (K)
    assert np.all(np.diff(t[levels.index(250):]) > 0)  # warmer downwards in the troposphere
    z = official.mean("geopotential", levels)
    assert np.all(np.diff(z) < 0)  # geopotential decreases with pressure
    assert 275.0 < official.mean("2m_temperature")[0] < 290.0
    assert 1.0e5 < official.mean("mean_sea_level_pressure")[0] < 1.02e5
    # 12-hour changes are smaller than the climatological spread.
    assert np.all(official.diffs_std("temperature", levels) < official.std("temperature", levels))
    # Selection by value: two levels of the 13.
    np.testing.assert_array_equal(official.mean("temperature", (500, 850)), t[[7, 10]])
    with pytest.raises(ValueError, match=r"lack pressure level\(s\) \[975\]"):
        official.mean("temperature", (500, 975))


def test_from_dir_other_file_names(tmp_path):
    T.write_synthetic_statistics(tmp_path)
    renamed = {k: f"era5_{k}.nc" for k in N.FILES}
    for key, name in N.FILES.items():
        shutil.move(tmp_path / name, tmp_path / renamed[key])
    with pytest.raises(FileNotFoundError, match="mean: mean_by_level.nc"):
        N.Statistics.from_dir(tmp_path)
    stats = N.Statistics.from_dir(
        tmp_path, mean=renamed["mean"], std=renamed["std"], diffs_std=renamed["diffs_std"],
        minimum=renamed["minimum"],
    )
    np.testing.assert_allclose(stats.mean("2m_temperature"), [288.0])
    assert stats.minimum_ds is not None
    # A named minimum file is required; minimum=None skips it.
    with pytest.raises(FileNotFoundError, match="minimum: nope.nc"):
        N.Statistics.from_dir(tmp_path, mean=renamed["mean"], std=renamed["std"],
                              diffs_std=renamed["diffs_std"], minimum="nope.nc")
    skipped = N.Statistics.from_dir(tmp_path, mean=renamed["mean"], std=renamed["std"],
                                    diffs_std=renamed["diffs_std"], minimum=None)
    assert skipped.minimum_ds is None
