"""Trained weights on disk: an equinox ``.eqx`` file with its hyper-parameters in a ``.json``.

What every adapter that ships a trained emulator needs to read it back, written once:
both files present, the JSON valid, of the expected format version and with every
hyper-parameter the architecture needs, the weights fitting the architecture built from
them, and finite.  Nothing is downloaded: `path` is the user's file or the adapter's own.
"""

import json
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .errors import InvalidData


class MissingWeights(InvalidData, FileNotFoundError):
    """A weights file, or the hyper-parameters beside it, that does not exist."""


def load_weights(
    path: str | pathlib.Path,
    build: Callable[[dict[str, Any]], eqx.Module],
    *,
    what: str,
    required: Sequence[str],
    format_version: int,
    shown: Sequence[str] = (),
) -> tuple[eqx.Module, dict[str, Any]]:
    """The module ``build(config)`` with the weights of `path`, and its `config`.

    - `path`: the ``.eqx`` file; the hyper-parameters are the ``.json`` of the same stem.
    - `build`: the architecture from the hyper-parameters; only its shapes are used
      (`eqx.filter_eval_shape`, no initialisation compute).
    - `what`: the model's name in messages ("Lorenz-96 emulator").
    - `required`, `format_version`: what the JSON must hold; `shown`: the hyper-parameters
      quoted when the weights do not fit.

    Raises `MissingWeights` (a `FileNotFoundError`) for a missing file and
    [`assimilax.errors.InvalidData`][] for a malformed JSON, missing hyper-parameters,
    weights that do not fit the architecture, or weights that are not finite.
    """
    path = pathlib.Path(str(path))
    meta = path.with_suffix(".json")
    if not path.is_file():
        raise MissingWeights(f"{what} weights not found: {path}")
    if not meta.is_file():
        raise MissingWeights(f"{what} hyper-parameters not found: {meta} (expected next to {path.name}).")
    try:
        config = json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise InvalidData(f"{meta} is not valid JSON: {e}") from e
    if not isinstance(config, dict) or config.get("format_version") != format_version:
        got = config.get("format_version") if isinstance(config, dict) else None
        raise InvalidData(f"{meta}: format_version {got!r}, expected {format_version}.")
    missing = [k for k in required if k not in config]
    if missing:
        raise InvalidData(f"{meta} lacks hyper-parameters {missing}.")
    try:
        skeleton = eqx.filter_eval_shape(build, config)
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidData(f"{meta}: bad hyper-parameters: {e}") from e
    try:
        module = eqx.tree_deserialise_leaves(path, skeleton)
    except Exception as e:  # shape mismatch, truncated file, wrong format
        quoted = ", ".join(f"{k}={config[k]}" for k in shown)
        raise InvalidData(f"Weights in {path} do not match the architecture in {meta.name} ({quoted}): {e}") from e
    if not all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(eqx.filter(module, eqx.is_array))):
        raise InvalidData(f"Weights in {path} contain NaN or inf.")
    return module, config
