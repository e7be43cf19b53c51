"""The trained Kolmogorov-flow diffusion emulator and its loader.

The emulator models ``p(x[k+1] | x[k])`` (history length 1) of the flat vorticity state
(``d = N^2``, row-major, see [`assimilax_adapters.kolmogorov.dynamics`][]) through the
normalised increment

    z = (x[k+1] - x[k] - mu_inc) / s_inc,        x[k+1] = x[k] + mu_inc + s_inc z,

an affine map in ``z`` (guidance composes the observation operator with
[`KolmogorovEmulator.to_state`][]).  The denoiser is an
[`assimilax.EDMPreconditioned`][assimilax.denoisers.EDMPreconditioned] around a
[`KolmogorovUNet`][] conditioned on the normalised previous state ``c = (x[k] - mu_x) / s_x``;
it reshapes the flat target to the ``N x N`` grid and back.  The four scalars are
climatological statistics of the training data (scalars: the flow is statistically
homogeneous up to the forcing phase, which the network sees as input channels).

[`load_emulator`][] rebuilds the emulator from a ``.eqx`` weights file and the ``.json``
of hyper-parameters next to it; by default the weights shipped with the package.
"""

import importlib.resources
import json
import pathlib
from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, Float

import assimilax
from assimilax.weights import load_weights

from .network import KolmogorovUNet

__all__ = ["DEFAULT_WEIGHTS", "GridNetwork", "KolmogorovEmulator", "build_emulator", "load_emulator", "save_emulator"]

DEFAULT_WEIGHTS = "kolmogorov_q0.5.eqx"
FORMAT_VERSION = 1


class GridNetwork(eqx.Module):
    """A flat-state view ``(d,) -> (d,)`` of a grid network ``(N, N) -> (N, N)``."""

    network: KolmogorovUNet
    num_points: int = eqx.field(static=True)

    def __call__(
        self, x_in: Float[Array, " d"], c_noise: Float[Array, ""], context: Float[Array, " d"]
    ) -> Float[Array, " d"]:
        n = self.num_points
        return self.network(x_in.reshape(n, n), c_noise, context.reshape(n, n)).reshape(n * n)


class KolmogorovEmulator(assimilax.AbstractIncrementEmulator):
    """A conditional diffusion emulator of the stochastic Kolmogorov-flow transition.

    **Arguments:**

    - `denoiser`: the EDM-preconditioned [`GridNetwork`][], acting on the flat target ``z``.
    - `num_points`: ``N`` (state size ``N^2``).
    - `state_mean`, `state_std`: ``mu_x``, ``s_x``, normalising the context.
    - `increment_mean`, `increment_std`: ``mu_inc``, ``s_inc``, defining the target.
    """

    denoiser: assimilax.EDMPreconditioned
    num_points: int = eqx.field(static=True)
    state_mean: float = eqx.field(static=True)
    state_std: float = eqx.field(static=True)
    increment_mean: float = eqx.field(static=True)
    increment_std: float = eqx.field(static=True)
    history_length: int = eqx.field(static=True, default=1)

    @property
    def state_size(self) -> int:
        """``N^2``."""
        return self.num_points**2


_REQUIRED = ("num_points", "channels", "embed", "forcing_mode", "sigma_data", "state_mean",
             "state_std", "increment_mean", "increment_std")


def build_emulator(config: dict[str, Any], key: jax.Array | None = None) -> KolmogorovEmulator:
    """An emulator with the architecture and normalisation in `config` (random weights).

    `config` holds ``num_points``, ``channels``, ``embed``, ``forcing_mode``, ``sigma_data``,
    ``state_mean``, ``state_std``, ``increment_mean``, ``increment_std``.
    """
    key = jax.random.key(0) if key is None else key
    n = int(config["num_points"])
    network = KolmogorovUNet(
        channels=tuple(int(c) for c in config["channels"]),
        embed=int(config["embed"]),
        forcing_mode=int(config["forcing_mode"]),
        key=key,
    )
    return KolmogorovEmulator(
        denoiser=assimilax.EDMPreconditioned(GridNetwork(network, n), sigma_data=float(config["sigma_data"])),
        num_points=n,
        state_mean=float(config["state_mean"]),
        state_std=float(config["state_std"]),
        increment_mean=float(config["increment_mean"]),
        increment_std=float(config["increment_std"]),
    )


def save_emulator(path: str | pathlib.Path, emulator: KolmogorovEmulator, config: dict[str, Any]) -> None:
    """Write ``<path>`` (weights) and ``<path>.json`` (hyper-parameters, training report)."""
    path = pathlib.Path(path)
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise ValueError(f"save_emulator: config lacks {missing}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    eqx.tree_serialise_leaves(path, emulator)
    meta = {"format_version": FORMAT_VERSION, **config}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_emulator(path: str | pathlib.Path | None = None) -> KolmogorovEmulator:
    """Load a trained [`KolmogorovEmulator`][].

    `path` is a ``.eqx`` file with a ``.json`` of the same stem beside it; by default the
    weights shipped in ``assimilax_adapters/kolmogorov/weights/``.  Nothing is downloaded.

    Raises `FileNotFoundError` if either file is missing and
    [`assimilax.errors.InvalidData`][] if the JSON is malformed or lacks a hyper-parameter, or
    the weights do not fit the architecture it describes or are not finite.
    """
    if path is None:
        path = importlib.resources.files(__package__).joinpath("weights", DEFAULT_WEIGHTS)
    emulator, _ = load_weights(
        path, build_emulator, what="Kolmogorov emulator", required=_REQUIRED, format_version=FORMAT_VERSION,
        shown=('num_points', 'channels', 'embed'),
    )
    return emulator
