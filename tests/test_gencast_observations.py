"""Lat-lon observation operators on GenCast states: each picks the right field of the flat state."""

import jax.numpy as jnp
import numpy as np
import pytest

from assimilax_adapters.gencast import testing as T
from assimilax_adapters.gencast.emulator import state_layout
from assimilax_adapters.gencast.normalization import Statistics
from assimilax_adapters.gencast.observations import coarsened, every_nth, gridded, observation_model, stations

LAYOUT = state_layout(T.filter_task(), T.FILTER_LAT, np.arange(12) * 30.0)
G = 7 * 12


def state_with(field_values):
    x = np.zeros(LAYOUT.size, np.float32)
    for (name, level), v in field_values.items():
        off = LAYOUT[name].offset + (0 if level is None else [500, 850].index(level) * G)
        x[off : off + G] = v.reshape(-1)
    return jnp.asarray(x)


def test_stations_bilinear_periodic():
    lon2d = np.broadcast_to(np.arange(12) * 30.0, (7, 12))
    lat2d = np.broadcast_to(T.FILTER_LAT[:, None], (7, 12))
    field = 2.0 * lat2d + np.cos(np.deg2rad(lon2d))
    x = state_with({("temperature", 850): field})
    ins = stations(LAYOUT, [("temperature", 850)], [15.0, -45.0], [345.0, 60.0])
    got = np.asarray(ins.operator(x))
    # latitude linear exactly; longitude between 330 and 0 (periodic): mean of the two cosines
    np.testing.assert_allclose(got, [30.0 + 0.5 * (np.cos(np.deg2rad(330)) + 1.0), -90.0 + 0.5], rtol=1e-6)
    assert ins.fields == (("temperature", 850),) * 2


def test_masks_every_nth_and_coarsening():
    field = np.arange(G, dtype=np.float32).reshape(7, 12)
    x = state_with({("2m_temperature", None): field, ("temperature", 500): -field})
    np.testing.assert_array_equal(np.asarray(every_nth(LAYOUT, [("2m_temperature", None)], 4).operator(x)), field.reshape(-1)[::4])
    np.testing.assert_array_equal(np.asarray(every_nth(LAYOUT, [("temperature", 500)], (3, 4)).operator(x)), -field[::3, ::4].reshape(-1))
    mask = field % 5 == 0
    np.testing.assert_array_equal(np.asarray(gridded(LAYOUT, [("2m_temperature", None)], mask).operator(x)), field[mask])
    blocks = np.asarray(coarsened(LAYOUT, [("temperature", 500)], (7, 4)).operator(x))
    np.testing.assert_allclose(blocks, [-field[:, 4 * i : 4 * i + 4].mean() for i in range(3)], rtol=1e-6)
    with pytest.raises(ValueError, match="level"):
        every_nth(LAYOUT, [("temperature", None)], 2)


def test_normalised_and_physical_units(tmp_path):
    T.write_synthetic_statistics(tmp_path)
    stats = Statistics.from_dir(tmp_path)
    field = np.full((7, 12), 300.0, np.float32)
    x = state_with({("2m_temperature", None): field, ("temperature", 850): field})
    ins = every_nth(LAYOUT, [("2m_temperature", None), ("temperature", 850)], 12)
    model, fields = observation_model([ins], {"2m_temperature": 0.1, "temperature": 0.2}, stats)
    y = np.asarray(model.operator(x))
    t850_mean, t850_std = stats.location_scale("temperature", (850,))
    np.testing.assert_allclose(y[:7], (300.0 - 288.0) / 15.0, rtol=1e-6)
    np.testing.assert_allclose(y[7:], (300.0 - t850_mean[0]) / t850_std[0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(model.noise.std), [0.1] * 7 + [0.2] * 7)
    phys, _ = observation_model([ins], 0.5, space="physical")
    np.testing.assert_allclose(np.asarray(phys.operator(x)), 300.0)
