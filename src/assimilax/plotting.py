"""Figures: skill and spread against time, Hovmoller diagrams, maps of 2-D fields.

Matplotlib with the non-interactive Agg backend, so figures render on machines without a
display.  Each function returns the `Figure` and optionally saves it.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

if TYPE_CHECKING:
    import xarray as xr


def plot_skill_spread(
    scores: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    times: np.ndarray | None = None,
    path: str | Path | None = None,
    title: str | None = None,
) -> Figure:
    """Skill (RMSE of the mean, solid) and spread (dashed) against time, one colour per
    filter, one panel per subset of components.

    `scores[subset][filter]` is a mapping with ``"skill"`` and ``"spread"`` arrays of shape
    ``(T,)`` (as returned by [`assimilax.scores`][assimilax.results.scores]), e.g. subsets ``"observed"`` and
    ``"unobserved"``.
    """
    subsets = list(scores)
    n_labels = 2 * max(len(v) for v in scores.values())
    ncol = min(n_labels, 2 * max(1, int(5.5 * len(subsets) // 3.2)))  # skill and spread side by side; fits the width
    rows = -(-n_labels // ncol)
    height = 4 + 0.2 * rows
    fig, axes = plt.subplots(1, len(subsets), figsize=(5.5 * len(subsets), height), sharey=True, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, subset in zip(axes[0], subsets):
        for i, (name, s) in enumerate(scores[subset].items()):
            t = np.arange(len(s["skill"])) if times is None else times
            c = colours[i % len(colours)]
            ax.plot(t, s["skill"], color=c, lw=1.5, label=f"{name} skill")
            ax.plot(t, s["spread"], color=c, lw=1.2, ls="--", label=f"{name} spread")
        ax.set_title(f"{subset} components")
        ax.set_xlabel("cycle")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("RMSE of the mean (solid), spread (dashed)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=ncol, loc="lower center", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, (0.05 + 0.2 * rows) / height, 1, 1))
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_hovmoller(
    truth: np.ndarray,
    estimate: np.ndarray,
    path: str | Path | None = None,
    title: str | None = None,
    estimate_name: str = "analysis mean",
) -> Figure:
    """Hovmoller diagrams (time against component) of truth, estimate and their error."""
    truth, estimate = np.asarray(truth), np.asarray(estimate)
    error = estimate - truth
    vmax = float(np.nanmax(np.abs(truth)))
    emax = float(np.nanmax(np.abs(error)))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    panels = [
        (truth, "truth", "RdBu_r", vmax),
        (estimate, estimate_name, "RdBu_r", vmax),
        (error, f"error ({estimate_name} - truth)", "PuOr_r", emax),
    ]
    for ax, (data, name, cmap, lim) in zip(axes, panels):
        im = ax.imshow(data, aspect="auto", origin="lower", cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("component")
        fig.colorbar(im, ax=ax, shrink=0.85)
    axes[0].set_ylabel("cycle")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_maps(
    panels: "Sequence[tuple[str, xr.DataArray]]",
    path: str | Path | None = None,
    title: str | None = None,
    shared_scale: bool = False,
    cmap: str = "RdBu_r",
    equal_aspect: bool = False,
) -> Figure:
    """2-D fields side by side (truth, analysis mean, error, ...), one colour bar each, or
    one for all with `shared_scale`.

    `panels` are ``(title, field)`` with ``field`` a 2-D `xarray.DataArray` whose dimensions
    are ``(row, column)`` (e.g. ``(y, x)`` or ``(lat, lon)``) and whose coordinates, when
    present, label the axes; `equal_aspect` draws them to scale (a square grid).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False, layout="constrained")
    values = [np.asarray(field.values, dtype=float) for _, field in panels]
    lo = min(float(np.nanmin(v)) for v in values) if shared_scale else None
    hi = max(float(np.nanmax(v)) for v in values) if shared_scale else None
    image = None
    for axis, (name, field), v in zip(axes[0], panels, values):
        if field.ndim != 2:
            raise ValueError(f"plot_maps: panel {name!r} has dimensions {field.dims}, must be 2-D")
        row, col = field.dims
        xs = field[col].values if col in field.coords else np.arange(v.shape[1])
        ys = field[row].values if row in field.coords else np.arange(v.shape[0])
        image = axis.pcolormesh(xs, ys, v, cmap=cmap, vmin=lo, vmax=hi, shading="auto")
        axis.set_title(name)
        axis.set_xlabel(col)
        if equal_aspect:
            axis.set_aspect("equal")
        if not shared_scale:
            fig.colorbar(image, ax=axis, shrink=0.8)
    axes[0, 0].set_ylabel(panels[0][1].dims[0])
    if shared_scale:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
