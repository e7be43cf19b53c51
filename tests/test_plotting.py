"""`assimilax.plotting`: the figures the jobs write (rendered with Agg, checked by their artists)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from assimilax.plotting import plot_maps, plot_skill_spread


def _field(scale, shift=0.0):
    y, x = np.arange(4.0), np.arange(5.0)
    return xr.DataArray(scale * np.outer(y, x) + shift, dims=("y", "x"), coords={"y": y, "x": x})


def test_maps_have_one_panel_each_and_a_shared_scale(tmp_path):
    panels = [("truth", _field(1.0)), ("mean", _field(2.0)), ("error", _field(0.1, -1.0))]
    fig = plot_maps(panels, tmp_path / "m.png", title="t", shared_scale=True)
    meshes = [a.collections[0] for a in fig.axes[:3]]  # the panels; colour bars come after
    assert [a.get_title() for a in fig.axes[:3]] == ["truth", "mean", "error"]
    assert {m.get_clim() for m in meshes} == {(-1.0, 24.0)}  # min of the error, max of the mean
    assert (tmp_path / "m.png").stat().st_size > 0
    plt.close(fig)
    fig = plot_maps(panels, equal_aspect=True)
    meshes = [a.collections[0] for a in fig.axes[:3]]  # the panels; colour bars come after
    assert meshes[0].get_clim() == (0.0, 12.0) and fig.axes[0].get_aspect() == 1.0
    plt.close(fig)


def test_a_map_panel_must_be_2d():
    with pytest.raises(ValueError, match="panel 'cube' has dimensions"):
        plot_maps([("cube", xr.DataArray(np.zeros((2, 2, 2))))])


def test_skill_spread_legend_names_every_filter():
    t = np.arange(5)
    scores = {"all": {f"f{i}": {"skill": t + 1.0, "spread": t + 2.0} for i in range(5)}}
    fig = plot_skill_spread(scores, t)
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels == [f"f{i} {k}" for i in range(5) for k in ("skill", "spread")]
    plt.close(fig)
