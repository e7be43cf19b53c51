"""Lat-lon tiles of GenCast states for the block FA-APF (`experiment.tile_blocks`).

The state layout is field-major (each variable and level a contiguous ``(lat, lon)``
block, see `emulator.state_layout`), so a tile's components repeat once per field.  The
observations of the experiment's operator (every n-th grid point of the observed fields,
normalised) must be assigned by `BlockLocalisation.from_state_blocks` to the tile holding
their grid point.
"""

import numpy as np
import pytest

import assimilax as ax
from assimilax_adapters.gencast import testing as T
from assimilax_adapters.gencast.emulator import state_layout
from assimilax_adapters.gencast.experiment import GenCastExperiment, build_observation, tile_blocks
from assimilax_adapters.gencast.normalization import Statistics

# 2m_temperature, sea_surface_temperature, temperature (2 levels), total_precipitation_12hr
N_FIELDS = 5


def test_tile_blocks_small_grid():
    layout = state_layout(T.filter_task(), np.array([-60.0, 0.0, 60.0]), np.arange(4) * 90.0)
    # 3 x 4 grid, tiles of 2 x 3: rows {0, 1}, {2}; columns {0, 1, 2}, {3}.
    per_field = np.array([0, 0, 0, 1,
                          0, 0, 0, 1,
                          2, 2, 2, 3])
    np.testing.assert_array_equal(tile_blocks(layout, (2, 3)), np.tile(per_field, N_FIELDS))
    np.testing.assert_array_equal(tile_blocks(layout, (1, 1)), np.tile(np.arange(12), N_FIELDS))
    np.testing.assert_array_equal(tile_blocks(layout, (3, 4)), np.zeros(12 * N_FIELDS, int))
    for bad in ((0, 1), (1, 0), (4, 1), (1, 5)):
        with pytest.raises(ValueError, match="tile_blocks: the tile"):
            tile_blocks(layout, bad)


@pytest.mark.parametrize("tile", [(2, 5), (3, 4), (7, 1)])
def test_observations_assigned_to_their_tile(tile):
    lat, lon = T.FILTER_LAT, T.FILTER_LON
    nlat, nlon = lat.size, lon.size
    layout = state_layout(T.filter_task(), lat, lon)
    stats = Statistics(**T.synthetic_statistics_datasets())
    cfg = GenCastExperiment(checkpoint="c.npz", stats="s", truth="t.nc", block_tiles=tile)
    observation, obs_fields = build_observation(cfg, layout, stats)
    loc = ax.BlockLocalisation.from_state_blocks(tile_blocks(layout, tile), observation.operator)

    # Direct: every `observe_every`-th point of the flattened (lat, lon) field, per observed field.
    points = np.arange(0, nlat * nlon, cfg.observe_every)
    i, j = np.divmod(points, nlon)
    n_cols = -(-nlon // tile[1])
    expected = np.tile((i // tile[0]) * n_cols + j // tile[1], len(obs_fields) // points.size)
    assert len(obs_fields) == 3 * points.size  # 2 m temperature and temperature at 2 levels
    assert loc.n_blocks == -(-nlat // tile[0]) * n_cols
    np.testing.assert_array_equal(np.asarray(loc.obs_blocks), expected)
