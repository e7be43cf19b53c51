"""Where the particles live: a device mesh with a particle axis, chunked maps, and moves.

One [`ParticleLayout`][] owns the layout of a run.  The run layer
([`assimilax.filter_scan`][assimilax.filters.run.filter_scan], [`assimilax.assimilate`][assimilax.assimilate.assimilate]) places the
[`assimilax.FilterState`][assimilax.filters.base.FilterState] with it and makes it the *active* layout while the filter's
step is traced; filters stay free of device code and call three functions:

- [`map_particles`][]: per-particle work (denoiser calls: the predictive means, the guided
  proposals).  Each device maps its own ``n / devices`` particles, `chunk_size` at a time
  (`jax.lax.map` with ``batch_size``), so peak memory is
  ``O(chunk_size x activations + n / devices x state)`` instead of ``O(n x activations)``.
- [`replicate`][]: the ``n`` log-weights are gathered on every device (``n`` numbers), so
  tempering and ancestor selection run identically everywhere.
- [`take_particles`][] / [`glue_particles`][]: histories follow their ancestors with an
  explicit `jax.lax.all_to_all` exchange of only the rows that change device (see
  [`exchange_volume`][]), never the all-gather of the whole ensemble that a plain
  ``particles[ancestors]`` makes XLA insert.

With one device (the default) all three are the plain single-device operations, so the same
filter runs unchanged on 1 device, several devices of one host, or several hosts (after
``jax.distributed.initialize()``; the mesh then spans every process's devices).  Random
draws never depend on the layout: every particle's key is ``split(cycle_key, n)[i]`` for
its *global* index ``i``, computed before the particles are split over devices.
"""

import contextlib
import contextvars
import math
import os
from collections.abc import Callable, Iterator, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
from jaxtyping import Array, ArrayLike, Float, Int, PyTree, Shaped

from .localisation import BlockLocalisation

PARTICLE_AXIS = "particles"


class ParticleLayout(eqx.Module):
    """A mesh of devices over the particle axis and the chunk size of per-particle maps.

    **Arguments:**

    - `mesh`: a `jax.sharding.Mesh` with an axis named ``"particles"``, or None for one
      device.  Build it with [`particle_layout`][].
    - `chunk_size`: how many particles one device evaluates at once in
      [`map_particles`][] (None: all of its particles in one `vmap`).
    - `exchange_chunk`: rows per device pair in one round of the ancestor exchange of
      [`take_particles`][]; the number of rounds is the largest number of rows one device
      sends another, divided by this and rounded up (None: ``n / devices``, one round).

    Hashable and static: `assimilate` compiles one step per (filter structure, layout).
    """

    mesh: Mesh | None = eqx.field(static=True, default=None)
    chunk_size: int | None = eqx.field(static=True, default=None)
    exchange_chunk: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.mesh is not None and PARTICLE_AXIS not in self.mesh.axis_names:
            raise ValueError(
                f"ParticleLayout: the mesh needs an axis named {PARTICLE_AXIS!r}, it has "
                f"{self.mesh.axis_names}."
            )
        for name in ("chunk_size", "exchange_chunk"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(f"ParticleLayout: {name} must be a positive integer, got {value!r}.")

    @property
    def n_devices(self) -> int:
        """Devices along the particle axis."""
        return 1 if self.mesh is None else self.mesh.shape[PARTICLE_AXIS]

    @property
    def sharded(self) -> bool:
        return self.n_devices > 1

    def check_particles(self, n: int) -> None:
        """Raise a `ValueError` unless `n` particles split evenly over the devices."""
        if n % self.n_devices:
            raise ValueError(
                f"{n} particles do not split evenly over {self.n_devices} devices; use a "
                f"multiple of {self.n_devices} particles or another device count."
            )

    def spec(self, sharded: bool) -> NamedSharding | None:
        """The `NamedSharding` of a per-particle (sharded) or replicated array."""
        if self.mesh is None:
            return None
        return NamedSharding(self.mesh, P(PARTICLE_AXIS) if sharded else P())

    def put(self, tree: PyTree, sharded: bool) -> PyTree:
        """Data to global arrays: split over the particle axis or replicated.

        Host data must be the same on every process (as a multi-host run has by reading the
        same inputs); each process builds only the shards of its own devices.  Traced values
        (a caller's `jit`) get a sharding constraint instead.
        """
        if self.mesh is None:
            return jax.tree.map(jnp.asarray, tree)
        sharding = self.spec(sharded)

        def put_leaf(x):
            if isinstance(x, jax.core.Tracer):
                return jax.lax.with_sharding_constraint(x, sharding)
            if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                data = put_leaf(jax.random.key_data(x))
                return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
            if isinstance(x, jax.Array) and not x.is_fully_addressable:
                return jax.device_put(x, sharding)
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

        return jax.tree.map(put_leaf, tree)

    def constrain(self, tree: PyTree, sharded: bool) -> PyTree:
        """Inside `jit`: pin `tree` to the per-particle or replicated sharding."""
        if self.mesh is None:
            return tree
        return jax.lax.with_sharding_constraint(tree, self.spec(sharded))

    @contextlib.contextmanager
    def active(self) -> Iterator["ParticleLayout"]:
        """Make this the layout that [`map_particles`][] and friends use while tracing."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


_ACTIVE: contextvars.ContextVar[ParticleLayout] = contextvars.ContextVar(
    "assimilax_particle_layout", default=ParticleLayout()
)


def current_layout() -> ParticleLayout:
    """The active [`ParticleLayout`][] (one device unless a run layer set one)."""
    return _ACTIVE.get()


def particle_layout(
    devices: int | Sequence[jax.Device] | None = None,
    chunk_size: int | None = None,
    exchange_chunk: int | None = None,
) -> ParticleLayout:
    """A [`ParticleLayout`][] over `devices`.

    **Arguments:**

    - `devices`: a number (the first that many of ``jax.devices()``, which after
      ``jax.distributed.initialize()`` lists every process's devices, process by process),
      a list of devices, or None for all of them.  One device gives a layout without a mesh.
    - `chunk_size`, `exchange_chunk`: as for [`ParticleLayout`][].
    """
    available = jax.devices()
    if devices is None:
        chosen = list(available)
    elif isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices={devices}: this run sees {len(available)} device(s) "
                f"({available[0].platform}); ask for 1 to {len(available)}."
            )
        chosen = list(available[:devices])
    else:
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices: the list of devices is empty.")
    if len(chosen) == 1 and jax.process_count() == 1:
        return ParticleLayout(None, chunk_size, exchange_chunk)
    mesh = Mesh(np.asarray(chosen), (PARTICLE_AXIS,), axis_types=(AxisType.Auto,))
    return ParticleLayout(mesh, chunk_size, exchange_chunk)


def _shard_map(fn: Callable, layout: ParticleLayout, in_specs, out_specs) -> Callable:
    return jax.shard_map(
        fn, mesh=layout.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False
    )


def map_particles(fn: Callable[..., PyTree], *args: PyTree) -> PyTree:
    """``vmap(fn)(*args)`` over the leading (particle) axis of every leaf of `args`.

    Under the active layout each device maps its own particles, ``chunk_size`` at a time.
    `fn` may close over anything (the observation, forcings, model weights): those are
    replicated.  Results are per-particle, sharded like the inputs.
    """
    layout = current_layout()

    def local(*a):
        if layout.chunk_size is None:
            return jax.vmap(fn)(*a)
        return jax.lax.map(lambda t: fn(*t), a, batch_size=layout.chunk_size)

    if not layout.sharded:
        return local(*args)
    return _shard_map(local, layout, P(PARTICLE_AXIS), P(PARTICLE_AXIS))(*args)


def replicate(x: PyTree) -> PyTree:
    """Gather a per-particle array (the ``n`` log-weights) whole onto every device."""
    return current_layout().constrain(x, sharded=False)


def _exchange(
    layout: ParticleLayout,
    rows: Shaped[Array, "n g s"],
    ancestors: Int[Array, "g n"],
) -> Shaped[Array, "n g s"]:
    """``out[i, k] = rows[ancestors[k, i], k]`` with the rows split over the devices.

    Every device computes, from the replicated `ancestors`, which of its rows each other
    device needs; the rows then move in rounds of one `all_to_all` with `exchange_chunk`
    rows per device pair, as many rounds as the busiest pair needs.
    """
    n_dev = layout.n_devices
    g, n = ancestors.shape
    n_loc = n // n_dev
    chunk = layout.exchange_chunk or n_loc
    # Request r = k * n + i: slot i (on device dst) needs row ancestors[k, i] (on device src).
    src = (ancestors // n_loc).reshape(-1)
    dst = jnp.tile(jnp.arange(n) // n_loc, g)
    remote = src != dst
    pair = jnp.where(remote, dst * n_dev + src, n_dev * n_dev)
    order = jnp.argsort(pair, stable=True)
    sorted_pair = pair[order]
    rank_sorted = jnp.arange(g * n) - jnp.searchsorted(sorted_pair, sorted_pair, side="left")
    rank = jnp.zeros(g * n, jnp.int32).at[order].set(rank_sorted.astype(jnp.int32))
    counts = jnp.bincount(pair, length=n_dev * n_dev + 1)[:-1]
    rounds = (jnp.max(counts) + chunk - 1) // chunk
    capacity = math.ceil(g * n_loc / chunk) * chunk
    table = jnp.full((n_dev, n_dev, capacity), -1, jnp.int32)
    table = table.at[
        jnp.where(remote, dst, n_dev), src, rank
    ].set(jnp.arange(g * n, dtype=jnp.int32), mode="drop")

    def local(rows_local, ancestors, table, rounds):
        me = jax.lax.axis_index(PARTICLE_AXIS)
        offset = me * n_loc
        # Rows that stay on this device.
        mine = jax.lax.dynamic_slice_in_dim(ancestors, offset, n_loc, axis=1)  # (g, n_loc)
        here = jnp.clip(mine - offset, 0, n_loc - 1)
        out = rows_local[here.T, jnp.arange(g)[None, :]]  # (n_loc, g, s)

        def one_round(carry):
            j, out = carry
            outgoing = jax.lax.dynamic_slice_in_dim(table[:, me], j * chunk, chunk, axis=1)
            k, i = outgoing // n, outgoing % n
            source = jnp.clip(ancestors[k, i] - offset, 0, n_loc - 1)
            send = rows_local[source, k]  # (n_dev, chunk, s)
            received = jax.lax.all_to_all(send, PARTICLE_AXIS, 0, 0, tiled=True)
            incoming = jax.lax.dynamic_slice_in_dim(table[me], j * chunk, chunk, axis=1)
            valid = incoming >= 0
            slot = jnp.where(valid, incoming % n - offset, n_loc)
            out = out.at[slot, incoming // n].set(received, mode="drop")
            return j + 1, out

        _, out = jax.lax.while_loop(lambda c: c[0] < rounds, one_round, (0, out))
        return out

    return _shard_map(
        local, layout, (P(PARTICLE_AXIS), P(), P(), P()), P(PARTICLE_AXIS)
    )(rows, ancestors, table, rounds)


def take_particles(tree: PyTree, ancestors: Int[Array, " n"]) -> PyTree:
    """``tree[ancestors]`` for every leaf (leading axis = particles): resampled histories."""
    layout = current_layout()
    if not layout.sharded:
        return jax.tree.map(lambda x: x[ancestors], tree)

    def take(x):
        flat = x.reshape(x.shape[0], 1, -1)
        return _exchange(layout, flat, ancestors[None]).reshape(x.shape)

    return jax.tree.map(take, tree)


def glue_histories(
    particles: Float[Array, "n m d"],
    ancestors: Int[Array, "b n"],
    state_blocks: Int[Array, " d"],
) -> Float[Array, "n m d"]:
    """``h~[i, :, c] = particles[ancestors[state_blocks[c], i], :, c]`` on one device."""
    per_component = ancestors[state_blocks].T  # (n, d)
    index = jnp.broadcast_to(per_component[:, None, :], particles.shape)
    return jnp.take_along_axis(particles, index, axis=0)


def glue_particles(
    particles: Float[Array, "n m d"],
    ancestors: Int[Array, "b n"],
    localisation: BlockLocalisation,
) -> Float[Array, "n m d"]:
    """``out[i, :, c] = particles[ancestors[b(c), i], :, c]``: glued histories.

    ``b(c)`` is the block of component ``c`` in `localisation`.  Sharded, each block's
    components move only from the devices of that block's ancestors.
    """
    layout = current_layout()
    blocks = localisation.state_blocks
    if not layout.sharded:
        return glue_histories(particles, ancestors, blocks)
    n, m, _ = particles.shape
    g, s = localisation.block_columns.shape
    grouped = particles[:, :, localisation.block_columns]  # (n, m, g, s), a local gather
    grouped = jnp.moveaxis(grouped, 2, 1).reshape(n, g, m * s)
    moved = _exchange(layout, grouped, ancestors).reshape(n, g, m, s)
    # Advanced indices on axes 1 and 3 come first: (d, n, m) -> (n, m, d).
    return jnp.moveaxis(moved[:, blocks, :, localisation.block_position], 0, -1)


def exchange_volume(
    ancestors: Int[ArrayLike, "g n"] | Int[ArrayLike, " n"], n_devices: int
) -> dict[str, int]:
    """How many rows an ancestor exchange moves between `n_devices` (NumPy, for reports).

    Returns ``moved`` (rows that change device; a row is one particle's history, or one
    block of it for glued histories), ``rows`` (all requested rows, ``g x n``) and
    ``all_gather`` (``(devices - 1) x g x n``: what gathering the whole ensemble onto every
    device would move).
    """
    a = np.atleast_2d(np.asarray(ancestors))
    g, n = a.shape
    n_loc = n // n_devices
    moved = int(np.sum(a // n_loc != np.arange(n)[None, :] // n_loc))
    return {"moved": moved, "rows": g * n, "all_gather": (n_devices - 1) * g * n}


def to_host(x: ArrayLike) -> np.ndarray:
    """A NumPy copy of `x`, gathered from every process if it spans several."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def enable_compile_cache(directory: str | os.PathLike) -> None:
    """Keep every compiled step in JAX's persistent compilation cache under `directory`.

    A later process (a rerun, a resumed run) with the same filter, shapes and JAX version
    loads the compiled step instead of compiling it again.
    """
    path = os.fspath(directory)
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
