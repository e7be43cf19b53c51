"""The trained Lorenz-96 diffusion emulator and its loader.

The emulator models ``p(x[k+1] | x[k])`` (history length 1) through the normalised residual

    z = (x[k+1] - x[k] - mu_inc) / s_inc,        x[k+1] = x[k] + mu_inc + s_inc z,

an affine map in ``z`` (so guidance can compose the observation operator with
[`Lorenz96Emulator.to_state`][]).  The denoiser ``D(z_t, sigma; c)`` is an
[`assimilax.EDMPreconditioned`][assimilax.denoisers.EDMPreconditioned] [`Lorenz96Network`][] conditioned on the normalised
previous state ``c = (x[k] - mu_x) / s_x``.  The scalars ``mu_x, s_x, mu_inc, s_inc`` are
climatological statistics of the training data (scalars, not per-variable, because
Lorenz-96 is homogeneous).

[`load_emulator`][] rebuilds the emulator from a ``.eqx`` weights file and the ``.json``
file of hyper-parameters stored next to it; by default the weights shipped with the package.
"""

import importlib.resources
import json
import pathlib
from typing import Any

import equinox as eqx
import jax

import assimilax
from assimilax.weights import load_weights

from .network import Lorenz96Network

__all__ = ["DEFAULT_WEIGHTS", "Lorenz96Emulator", "build_emulator", "load_emulator", "save_emulator"]

DEFAULT_WEIGHTS = "lorenz96_q0.3.eqx"
FORMAT_VERSION = 1


class Lorenz96Emulator(assimilax.AbstractIncrementEmulator):
    """A conditional diffusion emulator of the stochastic Lorenz-96 transition.

    **Arguments:**

    - `denoiser`: the EDM-preconditioned [`Lorenz96Network`][], acting on the target ``z``.
    - `state_size`: ``d``.
    - `state_mean`, `state_std`: ``mu_x``, ``s_x``, normalising the context.
    - `increment_mean`, `increment_std`: ``mu_inc``, ``s_inc``, defining the target.
    """

    denoiser: assimilax.EDMPreconditioned
    state_size: int = eqx.field(static=True)
    state_mean: float = eqx.field(static=True)
    state_std: float = eqx.field(static=True)
    increment_mean: float = eqx.field(static=True)
    increment_std: float = eqx.field(static=True)
    history_length: int = eqx.field(static=True, default=1)


def build_emulator(config: dict[str, Any], key: jax.Array | None = None) -> Lorenz96Emulator:
    """An emulator with the architecture and normalisation in `config` (random weights).

    `config` holds ``dim``, ``channels``, ``embed``, ``dilations``, ``sigma_data``,
    ``state_mean``, ``state_std``, ``increment_mean``, ``increment_std``.
    """
    key = jax.random.key(0) if key is None else key
    network = Lorenz96Network(
        channels=int(config["channels"]),
        embed=int(config["embed"]),
        dilations=tuple(int(d) for d in config["dilations"]),
        key=key,
    )
    return Lorenz96Emulator(
        denoiser=assimilax.EDMPreconditioned(network, sigma_data=float(config["sigma_data"])),
        state_size=int(config["dim"]),
        state_mean=float(config["state_mean"]),
        state_std=float(config["state_std"]),
        increment_mean=float(config["increment_mean"]),
        increment_std=float(config["increment_std"]),
    )


_REQUIRED = ("dim", "channels", "embed", "dilations", "sigma_data", "state_mean",
             "state_std", "increment_mean", "increment_std")


def save_emulator(path: str | pathlib.Path, emulator: Lorenz96Emulator, config: dict[str, Any]) -> None:
    """Write ``<path>`` (weights) and ``<path>.json`` (hyper-parameters, report)."""
    path = pathlib.Path(path)
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise ValueError(f"save_emulator: config lacks {missing}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    eqx.tree_serialise_leaves(path, emulator)
    meta = {"format_version": FORMAT_VERSION, **config}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_emulator(path: str | pathlib.Path | None = None) -> Lorenz96Emulator:
    """Load a trained [`Lorenz96Emulator`][].

    `path` is a ``.eqx`` file with a ``.json`` of the same stem beside it; by default the
    weights shipped in ``assimilax_adapters/lorenz96/weights/``.  Nothing is downloaded.

    Raises `FileNotFoundError` if either file is missing and `ValueError` if the JSON lacks a
    hyper-parameter or the weights do not fit the architecture it describes.
    """
    if path is None:
        path = importlib.resources.files(__package__).joinpath("weights", DEFAULT_WEIGHTS)
    emulator, _ = load_weights(
        path, build_emulator, what="Lorenz-96 emulator", required=_REQUIRED, format_version=FORMAT_VERSION,
        shown=('channels', 'embed', 'dilations'),
    )
    return emulator
