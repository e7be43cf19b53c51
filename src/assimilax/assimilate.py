"""Long runs: one jitted step per cycle, a progress bar, checkpoints and resume.

[`assimilax.filter_scan`][assimilax.filters.run.filter_scan] compiles a whole run into one scan; `assimilate` instead calls
one compiled ``step`` per observation time from Python, so that it can show progress,
save a checkpoint every few cycles and resume from one.  Both use the per-cycle key
``fold_in(key, cycle)``, so a resumed run reproduces the uninterrupted one exactly and
agrees with `filter_scan` to floating-point rounding.

By default every cycle's analysis ensemble comes back to the host, ``T x n x d`` numbers
in all.  With ``keep="moments"`` only its weighted mean and variance do (a
[`FilterMoments`][], ``T x 2 x d``), computed inside the compiled step: for GenCast at
0.25 degrees (``d`` about 87 M) that is what fits in host memory.
"""

import hashlib
import json
import os
import re
import zipfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree
from tqdm.auto import tqdm

from . import metrics
from ._version import __version__
from .errors import CheckpointError, CheckpointMismatch, InvalidArgument, NonFiniteError
from .filters.base import AbstractFilter, Diagnostics, FilterState, check_observations
from .filters.run import FilterOutput, cycle_key
from .resampling import Systematic, normalise, weight_errors_as_nan
from .sharding import ParticleLayout, enable_compile_cache, take_particles, to_host

_DIAGNOSTICS = ("ess", "alpha", "log_likelihood", "dropped")
_KEPT = {"ensemble": ("particles", "log_weights"), "moments": ("mean", "variance")}


class FilterMoments(eqx.Module):
    """The weighted mean and variance of the analysis ensemble at every observation time.

    What [`assimilate`][] returns with ``keep="moments"``; the arrays stay on the host
    (NumPy) unless given as JAX arrays.

    - `mean`: ``(T, d)``, ``m = sum_i w_i x_i`` ([`assimilax.metrics.ensemble_mean`][]).
    - `variance`: ``(T, d)``, ``sum_i w_i (x_i - m)^2 / (1 - sum_i w_i^2)``, the ddof = 1
      variance of [`assimilax.metrics.ensemble_variance`][] (what `spread` averages).
    - `diagnostics`: a `Diagnostics` whose fields have a leading time axis ``T``.
    """

    mean: Float[np.ndarray | Array, "*T d"]
    variance: Float[np.ndarray | Array, "*T d"]
    diagnostics: Diagnostics


def _digest(tree: PyTree) -> str:
    """A stable hash of a pytree: its structure, static fields and every leaf's value.

    Reprs of functions and objects carry memory addresses that change between processes;
    those are dropped, so a resumed process computes the same digest.
    """
    h = hashlib.sha256()
    leaves, treedef = jax.tree.flatten(tree)
    h.update(_ADDRESS.sub("", str(treedef)).encode())
    for leaf in leaves:
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                leaf = jax.random.key_data(leaf)
            a = to_host(leaf)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(_ADDRESS.sub("", repr(leaf)).encode())
    return h.hexdigest()


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _fingerprint(
    filt: AbstractFilter,
    state: FilterState,
    observations: np.ndarray,
    key: PRNGKeyArray,
    forcings: PyTree = None,
) -> dict[str, str]:
    """What makes a run this run, part by part (a checkpoint must match every part)."""
    return {
        "filter": _digest(filt),
        "initial ensemble": _digest(state),
        "observations": _digest(np.asarray(observations)),
        "forcings": _digest(forcings),
        "key": _digest(key),
        "assimilax version": __version__,
    }


def _save(
    path: Path,
    fingerprint: dict[str, str],
    state: FilterState,
    done: int,
    history: dict,
    keep: str = "ensemble",
) -> None:
    """Write the checkpoint atomically: a temporary file, `fsync`, then `os.replace`."""
    particles = to_host(state.particles)
    log_weights = to_host(state.log_weights)
    if not (np.all(np.isfinite(particles)) and np.all(np.isfinite(log_weights))):
        raise CheckpointError(
            f"the state after cycle {done} holds NaN or inf; it is not written to {path} "
            "(the checkpoint keeps the last finite state)."
        )
    if jax.process_index() != 0:  # one writer; every process has the gathered state
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(
            f,
            fingerprint=np.asarray(json.dumps(fingerprint, sort_keys=True)),
            keep=np.asarray(keep),
            done=np.asarray(done),
            state_particles=particles,
            state_log_weights=log_weights,
            state_cycle=to_host(state.cycle),
            **{k: np.stack(v) for k, v in history.items() if v},
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written checkpoint


_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _read(path: Path, keep: str) -> dict:
    """Every entry of the checkpoint at `path` that a resume needs (raises on damage)."""
    with np.load(path, allow_pickle=False) as data:
        if not isinstance(data, np.lib.npyio.NpzFile) or "done" not in data:
            raise ValueError("not an assimilax checkpoint")
        names = ["fingerprint", "done", "state_particles", "state_log_weights", "state_cycle"]
        entries = {k: data[k] for k in names}
        if "keep" in data:
            entries["keep"] = data["keep"]
        entries["history"] = {k: list(data[k]) for k in _KEPT[keep] + _DIAGNOSTICS if k in data}
    return entries


def _load(path: Path, fingerprint: dict[str, str], keep: str, mismatch: str):
    """The state, cycles done and history of the checkpoint at `path`, or None to start
    afresh (`mismatch` ``"restart"`` and a checkpoint of another run, or a damaged one)."""
    try:
        entries = _read(path, keep)
        saved = json.loads(str(entries["fingerprint"]))
        done = int(entries["done"])
    except _UNREADABLE as error:  # includes json.JSONDecodeError (a ValueError)
        if mismatch == "restart":
            return None
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}): it is truncated, "
            "damaged, empty or not an assimilax checkpoint; delete it, or start afresh "
            "(checkpoint_mismatch='restart', CLI --restart)."
        ) from None
    differs = [part for part, value in fingerprint.items() if not isinstance(saved, dict) or saved.get(part) != value]
    if differs and mismatch == "error":
        raise CheckpointMismatch(
            f"checkpoint {path} belongs to a different run: its {', '.join(differs)} "
            "differ from this run's. Start afresh (checkpoint_mismatch='restart', CLI "
            "--restart), resume it anyway (checkpoint_mismatch='resume'), or choose another "
            "checkpoint path."
        )
    if differs and mismatch == "restart":
        return None
    kept = str(entries["keep"]) if "keep" in entries else "ensemble"  # older files: ensembles
    if kept != keep:
        raise CheckpointMismatch(
            f"checkpoint {path} was written with keep={kept!r}, this run asks for "
            f"keep={keep!r}; use the same `keep` or another checkpoint path."
        )
    history = {k: entries["history"].get(k, []) for k in _KEPT[keep] + _DIAGNOSTICS}
    if not history["dropped"]:  # written before `dropped` was recorded
        history["dropped"] = [np.zeros((), np.int32)] * done
    state = FilterState(
        jnp.asarray(entries["state_particles"]),
        jnp.asarray(entries["state_log_weights"]),
        jnp.asarray(entries["state_cycle"]),
    )
    if any(len(v) != done for v in history.values()) or not (
        np.all(np.isfinite(entries["state_particles"])) and np.all(np.isfinite(entries["state_log_weights"]))
    ):
        if mismatch == "restart":
            return None
        raise CheckpointError(
            f"checkpoint {path} is damaged (its state or history does not hold {done} finite "
            "cycles); delete it, or start afresh (checkpoint_mismatch='restart', CLI --restart)."
        )
    return state, done, history


def check_checkpoint(
    filt: AbstractFilter,
    state: FilterState,
    observations: Float[ArrayLike, "T p"],
    key: PRNGKeyArray,
    forcings: PyTree = None,
    *,
    checkpoint: str | os.PathLike,
    checkpoint_every: int = 10,
    checkpoint_mismatch: Literal["error", "restart", "resume"] = "error",
    keep: Literal["ensemble", "moments"] = "ensemble",
) -> int:
    """What [`assimilate`][] would do with `checkpoint`, without running a cycle.

    Raises what `assimilate` would raise before its first cycle (an unwritable folder, a
    damaged checkpoint, one of another run); returns the cycles it would resume from (0 for
    a fresh start).  A job checks every filter's checkpoint this way before running any.
    """
    path = Path(checkpoint)
    _check_checkpoint_path(path, checkpoint_every)
    if not path.exists():
        return 0
    obs = np.asarray(observations, dtype=np.asarray(state.particles).dtype)
    loaded = _load(path, _fingerprint(filt, state, obs, key, forcings), keep, checkpoint_mismatch)
    return 0 if loaded is None else loaded[1]


def _check_checkpoint_path(path: Path, every: int) -> None:
    """Fail before any cycle runs if the checkpoint cannot be written."""
    if isinstance(every, bool) or every < 1:
        raise InvalidArgument(f"checkpoint_every = {every!r}: must be a positive integer.")
    folder = path.parent
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {path}: the folder {folder} does not exist.")
    if not os.access(folder, os.W_OK):
        raise CheckpointError(f"checkpoint {path}: the folder {folder} is not writable.")
    if path.exists() and path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file.")
    for stale in folder.glob(path.name + ".tmp"):  # left by a run killed mid-write
        stale.unlink()


_CHECKED = ("particles", "weights", "ess", "alpha", "log_likelihood")
_POLICIES = ("stop", "resample")


def _drop_nonfinite(state: FilterState, key: PRNGKeyArray) -> tuple[FilterState, Array]:
    """Replace the particles that hold NaN or inf by a systematic resample of the finite ones.

    The bad particles' weights are set to zero and the whole ensemble is resampled
    (equal weights after); nothing changes in a cycle without bad particles (`lax.cond`,
    so the exchange between devices runs only when needed).  With no finite particle left
    the state is returned as it is, and the host loop stops the run.
    """
    n = state.particles.shape[0]
    finite_particles = jnp.all(jnp.isfinite(state.particles), axis=(1, 2))
    finite_weights = jnp.isfinite(state.log_weights)
    # Weights made NaN by a NaN likelihood elsewhere in the normalisation carry no
    # information: with no finite weight left, the finite particles count equally.
    log_w = jnp.where(jnp.any(finite_particles & finite_weights), state.log_weights, 0.0)
    bad_now = ~(finite_particles & jnp.isfinite(log_w))
    dropped = jnp.sum(bad_now)

    def repair(state):
        log_w_ok = jnp.where(bad_now, -jnp.inf, log_w)
        ancestors = Systematic()(key, log_w_ok, n)
        particles = take_particles(state.particles, ancestors)
        return FilterState(particles, jnp.zeros_like(state.log_weights), state.cycle)

    repaired = jax.lax.cond((dropped > 0) & (dropped < n), repair, lambda s: s, state)
    return repaired, dropped


@eqx.filter_jit
def _step(filt, state, y, key, forcing, keep, layout, on_nonfinite="stop"):
    """One cycle, compiled once per (filter structure, shapes, `keep`, layout, policy).

    The analysis' finiteness is checked here, in the compiled step: the host gets five
    flags (particles, weights, ESS, alpha, log-likelihood) and the number of bad
    particles, and raises.  Degenerate weights come back as NaN rather than through a
    host callback, so JAX's persistent cache can keep the executable.
    """
    with layout.active(), weight_errors_as_nan():
        k = cycle_key(key, state.cycle)
        state, diag = filt.step(state, y, k, forcing)
        if on_nonfinite == "resample":
            state, dropped = _drop_nonfinite(state, jax.random.fold_in(k, 0x7FFFFFFF))
        else:
            dropped = jnp.zeros((), jnp.int32)
        state = FilterState(
            layout.constrain(state.particles, sharded=True),
            layout.constrain(state.log_weights, sharded=False),
            state.cycle,
        )
        x, log_w = state.particles[:, -1], normalise(state.log_weights)
        bad = ~(jnp.all(jnp.isfinite(state.particles), axis=(1, 2)) & jnp.isfinite(log_w))
        finite = jnp.stack(
            [
                jnp.all(jnp.isfinite(state.particles)),
                jnp.all(jnp.isfinite(log_w)),
                *(jnp.isfinite(v) | (dropped > 0) for v in (diag.ess, diag.alpha)),
                # Without an observation model the evidence is NaN by definition.
                jnp.isfinite(diag.log_likelihood) | (dropped > 0) | (filt.observation is None),
            ]
        )
        if keep == "moments":  # reduced on the device: only 2 x d numbers leave it
            w = jnp.exp(log_w)
            kept = (metrics.ensemble_mean(x, w), metrics.ensemble_variance(x, w))
        else:
            kept = (x, log_w)
    diagnostics = (diag.ess, diag.alpha, diag.log_likelihood, dropped.astype(jnp.int32))
    return state, kept + diagnostics, (finite, jnp.sum(bad))


def assimilate(
    filt: AbstractFilter,
    state: FilterState,
    observations: Float[ArrayLike, "T p"],
    key: PRNGKeyArray,
    forcings: PyTree = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 10,
    checkpoint_mismatch: Literal["error", "restart", "resume"] = "error",
    progress: bool = True,
    description: str | None = None,
    on_cycle: Callable[[int, Diagnostics, float], None] | None = None,
    keep: Literal["ensemble", "moments"] = "ensemble",
    layout: ParticleLayout | None = None,
    compile_cache: str | os.PathLike | None = None,
    on_nonfinite: Literal["stop", "resample"] = "stop",
    name: str | None = None,
) -> tuple[FilterState, FilterOutput | FilterMoments]:
    """Run `filt` over ``observations[t]``, ``t = 0..T-1``, one compiled step per cycle.

    **Arguments:**

    - `filt`, `state`, `observations`, `key`, `forcings`: as for [`assimilax.filter_scan`][assimilax.filters.run.filter_scan].
    - `checkpoint`: a file path; the run is saved there every `checkpoint_every` cycles
      and at the end, and resumed from it if it exists.  The checkpoint records a
      fingerprint of the whole run (the filter's structure and parameters, the initial
      ensemble, the observations, the forcings, the key and the package version).
    - `checkpoint_mismatch`: what to do with a checkpoint of another run: ``"error"``
      (refuse, naming the parts that differ), ``"restart"`` (start afresh and overwrite it)
      or ``"resume"`` (continue from it anyway).
    - `progress`: show a progress bar with the ESS and the tempering alpha.
    - `description`: the progress bar's label.
    - `on_cycle`: called after each cycle with ``(cycle, diagnostics, seconds)``, the
      wall time of that cycle (the first one includes compilation).
    - `keep`: what of each cycle's analysis comes back to the host: ``"ensemble"`` (the
      particles ``(n, d)`` and their log-weights) or ``"moments"`` (their weighted mean
      and variance ``(d,)`` each, computed in the compiled step).  The checkpoint holds
      the current state either way, and the kept history.
    - `layout`: a [`assimilax.sharding.ParticleLayout`][] (devices and chunk size); default
      one device, all particles in one `vmap`.
    - `compile_cache`: a folder for JAX's persistent compilation cache
      ([`assimilax.sharding.enable_compile_cache`][]).
    - `on_nonfinite`: what a cycle whose analysis holds NaN or inf does (checked in the
      compiled step: particles, weights, ESS, alpha, log-likelihood).  ``"stop"`` (default):
      the run stops with an [`assimilax.errors.NonFiniteError`][] naming the filter, the
      cycle and what is not finite; the checkpoint keeps the cycles before it.
      ``"resample"``: the particles holding NaN or inf are dropped and replaced by a
      systematic resample of the finite ones (equal weights after), counted in
      ``diagnostics.dropped``; that cycle's ESS, alpha and log-likelihood may be NaN.  The
      run still stops if no particle is finite.
    - `name`: the filter's name in messages (default: `description`, else its class).

    The step is compiled once per filter structure, shapes, `keep`, layout and policy, and
    reused by later calls (a resumed run, the next seed).

    **Returns:** the final state and, for ``"ensemble"``, a [`assimilax.FilterOutput`][assimilax.filters.run.FilterOutput]
    (a JAX array per field, ``(T, n, d)`` particles); for ``"moments"``, a
    [`FilterMoments`][] of NumPy arrays ``(T, d)``.
    """
    if keep not in _KEPT:
        raise InvalidArgument(f"keep = {keep!r}: must be 'ensemble' or 'moments'.")
    if checkpoint_mismatch not in ("error", "restart", "resume"):
        raise InvalidArgument(
            f"checkpoint_mismatch = {checkpoint_mismatch!r}: must be 'error', 'restart' or 'resume'."
        )
    if on_nonfinite not in _POLICIES:
        raise InvalidArgument(f"on_nonfinite = {on_nonfinite!r}: must be 'stop' or 'resample'.")
    label = name or (description.strip() if description else type(filt).__name__)
    layout = ParticleLayout() if layout is None else layout
    layout.check_particles(state.particles.shape[0])
    check_observations(filt.observation, observations, filt.emulator.state_size, state.particles.dtype)
    obs = np.asarray(observations, dtype=np.asarray(state.particles).dtype)
    n_times = obs.shape[0]
    if forcings is not None:
        lengths = {np.shape(leaf)[0] if np.ndim(leaf) else 0 for leaf in jax.tree.leaves(forcings)}
        if min(lengths, default=n_times) < n_times:
            raise InvalidArgument(
                f"forcings cover {min(lengths)} cycles, the observations {n_times}: give "
                "one forcing per observation time."
            )
    if compile_cache is not None:
        enable_compile_cache(compile_cache)
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None:
        _check_checkpoint_path(path, checkpoint_every)
    fingerprint = _fingerprint(filt, state, obs, key, forcings)
    fields = _KEPT[keep] + _DIAGNOSTICS
    history = {k: [] for k in fields}
    done = 0
    if path is not None and path.exists():
        loaded = _load(path, fingerprint, keep, checkpoint_mismatch)
        if loaded is not None:
            state, done, history = loaded
    state = FilterState(
        layout.put(state.particles, sharded=True),
        layout.put(state.log_weights, sharded=False),
        layout.put(state.cycle, sharded=False),
    )
    key = layout.put(key, sharded=False)

    bar = tqdm(total=n_times, initial=done, disable=not progress, desc=description, unit="cycle")
    for t in range(done, n_times):
        start = time.perf_counter()
        forcing = None if forcings is None else jax.tree.map(lambda a: a[t], forcings)
        y = layout.put(obs[t], sharded=False)
        if forcing is not None:
            forcing = layout.put(forcing, sharded=False)
        new_state, kept, (finite, n_bad) = _step(filt, state, y, key, forcing, keep, layout, on_nonfinite)
        kept = [to_host(v) for v in kept]  # blocks until the cycle is done
        finite = to_host(finite)
        diag = Diagnostics(*(jnp.asarray(v) for v in kept[-4:]))
        if not finite.all():
            bar.close()
            n = state.particles.shape[0]
            done_before = _done_in(path) if path is not None else t
            error = NonFiniteError(
                label,
                t,
                tuple(part for part, ok in zip(_CHECKED, finite) if not ok),
                f"{int(to_host(n_bad))} of {n} particles; a NaN particle or likelihood, or an "
                "observation impossible under every particle"
                + (f"; {path} holds the {done_before} cycles before it" if path else ""),
                done=done_before,
            )
            error.result = (state, _output(history, keep) if t > 0 else None)  # the cycles before it
            raise error
        state = new_state
        for name, value in zip(fields, kept):
            history[name].append(value)
        if on_cycle is not None:
            on_cycle(t, diag, time.perf_counter() - start)
        bar.update(1)
        bar.set_postfix(ess=f"{float(diag.ess):.0f}", alpha=f"{float(diag.alpha):.3g}")
        if path is not None and ((t + 1) % checkpoint_every == 0 or t + 1 == n_times):
            _save(path, fingerprint, state, t + 1, history, keep)
    bar.close()
    return state, _output(history, keep)


def _output(history: dict, keep: str) -> FilterOutput | FilterMoments:
    """The kept history as a `FilterOutput` or `FilterMoments` (time axis first)."""
    stacked = {k: np.stack(v) for k, v in history.items()}
    diagnostics = Diagnostics(*(jnp.asarray(stacked[k]) for k in _DIAGNOSTICS))
    if keep == "moments":
        return FilterMoments(stacked["mean"], stacked["variance"], diagnostics)
    particles, log_weights = (jnp.asarray(stacked[k]) for k in _KEPT["ensemble"])
    return FilterOutput(particles, log_weights, diagnostics)


def _done_in(path: Path) -> int:
    """How many cycles the checkpoint at `path` holds (0 if there is none)."""
    if not path.exists():
        return 0
    with np.load(path, allow_pickle=False) as data:
        return int(data["done"])
