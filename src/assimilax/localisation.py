"""Block localisation: a partition of the state and of the observations into blocks.

A particle filter's weights degenerate with the number of independent observations
(Snyder et al. 2008).  The block particle filter (Rebeschini & van Handel 2015) weights
and resamples each block of state components with the observations of that block only,
then glues the blocks of different ancestors together.  This module holds the partition;
[`assimilax.BlockFAAPF`][assimilax.filters.block_fa_apf.BlockFAAPF] uses it.

Observation ``j`` belongs to the block whose components it is most sensitive to:
``b(j) = argmax_b |J 1_b|_j`` with ``J`` the operator's Jacobian (the operator itself when
it is linear) and ``1_b`` the indicator of block ``b``.  For a selection this is the block
of the selected component; for an interpolation or a block mean, the block holding the
largest share of the weights.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Shaped

from . import _checks
from .errors import InvalidArgument
from .layout import StateLayout
from .observations import AbstractObservationOperator


class BlockLocalisation(eqx.Module):
    """Which block each state component and each observation belongs to.

    **Arguments:**

    - `state_blocks`: ``(d,)`` block index in ``[0, n_blocks)`` of every state component.
    - `obs_blocks`: ``(p,)`` block index of every observation.
    - `n_blocks`: the number of blocks (static).

    Derived at construction, for moving blocks between devices
    ([`assimilax.sharding.glue_particles`][]): `block_columns` ``(n_blocks, s)``, the
    components of each block padded to the largest block ``s`` (padding repeats the
    block's first component), and `block_position` ``(d,)``, each component's place in its
    block's row.

    Build one with [`BlockLocalisation.contiguous`][] or
    [`BlockLocalisation.from_state_blocks`][].
    """

    state_blocks: Int[Array, " d"]
    obs_blocks: Int[Array, " p"]
    n_blocks: int = eqx.field(static=True)
    block_columns: Int[Array, "b s"]
    block_position: Int[Array, " d"]

    def __init__(
        self,
        state_blocks: Shaped[ArrayLike, " d"] | Sequence[int],
        obs_blocks: Shaped[ArrayLike, " p"] | Sequence[int],
        n_blocks: int | None = None,
    ):
        state_blocks = np.asarray(state_blocks)
        obs_blocks = np.asarray(obs_blocks)
        for name, blocks in (("state_blocks", state_blocks), ("obs_blocks", obs_blocks)):
            if blocks.ndim != 1 or not np.issubdtype(blocks.dtype, np.integer):
                raise InvalidArgument(
                    f"BlockLocalisation: {name} must be a 1-D integer array, got "
                    f"dtype {blocks.dtype} and shape {blocks.shape}."
                )
        if n_blocks is not None:
            _checks.integer("BlockLocalisation", "n_blocks", n_blocks, 1)
        if n_blocks is None:
            n_blocks = int(max(state_blocks.max(initial=-1), obs_blocks.max(initial=-1))) + 1
        for name, blocks in (("state_blocks", state_blocks), ("obs_blocks", obs_blocks)):
            if blocks.size and (blocks.min() < 0 or blocks.max() >= n_blocks):
                raise InvalidArgument(
                    f"BlockLocalisation: {name} has indices in [{blocks.min()}, "
                    f"{blocks.max()}], outside [0, {n_blocks})."
                )
        self.state_blocks = jnp.asarray(state_blocks, jnp.int32)
        self.obs_blocks = jnp.asarray(obs_blocks, jnp.int32)
        self.n_blocks = int(n_blocks)
        members = [np.flatnonzero(state_blocks == b) for b in range(self.n_blocks)]
        columns = np.zeros((self.n_blocks, max([1] + [len(c) for c in members])), np.int32)
        position = np.zeros(state_blocks.shape[0], np.int32)
        for b, cols in enumerate(members):
            columns[b] = cols[0] if len(cols) else 0
            columns[b, : len(cols)] = cols
            position[cols] = np.arange(len(cols))
        self.block_columns = jnp.asarray(columns)
        self.block_position = jnp.asarray(position)

    @property
    def state_size(self) -> int:
        return self.state_blocks.shape[0]

    @property
    def obs_size(self) -> int:
        return self.obs_blocks.shape[0]

    @classmethod
    def from_state_blocks(
        cls,
        state_blocks: Shaped[ArrayLike, " d"] | Sequence[int],
        operator: AbstractObservationOperator,
        at: Float[ArrayLike, " d"] | None = None,
    ) -> "BlockLocalisation":
        """Assign each observation to the block it is most sensitive to.

        ``b(j) = argmax_b |J 1_b|_j``, ``J`` the Jacobian of `operator` at `at` (default
        the zero state; irrelevant for a linear operator).
        """
        state_blocks = np.asarray(state_blocks)
        d = state_blocks.shape[0]
        operator.check_state_size(d)
        n_blocks = int(state_blocks.max(initial=-1)) + 1
        x0 = jnp.zeros(d) if at is None else jnp.asarray(at, dtype=jnp.result_type(float))
        blocks = jnp.asarray(state_blocks)
        _, linear = jax.linearize(operator, x0)

        # A running argmax over the blocks: memory O(d + p), not O(n_blocks (d + p)).
        def best(carry, b):
            value, index = carry
            s = jnp.abs(linear((blocks == b).astype(x0.dtype)))
            better = s > value
            return (jnp.where(better, s, value), jnp.where(better, b, index)), None

        p = operator.obs_size
        init = (jnp.zeros(p, x0.dtype), jnp.zeros(p, jnp.int32))
        (value, index), _ = jax.lax.scan(best, init, jnp.arange(n_blocks, dtype=jnp.int32))
        unassigned = np.flatnonzero(np.asarray(value) == 0)
        if unassigned.size:
            raise InvalidArgument(
                f"BlockLocalisation: observation {unassigned[0]} does not depend on any state "
                "component at the linearisation point; give `obs_blocks` explicitly."
            )
        obs_blocks = np.asarray(index)
        return cls(state_blocks, obs_blocks, n_blocks)

    @classmethod
    def contiguous(
        cls, state_size: int, block_size: int, operator: AbstractObservationOperator
    ) -> "BlockLocalisation":
        """Blocks of `block_size` consecutive components (the last one may be shorter)."""
        _checks.integer("BlockLocalisation.contiguous", "state_size", state_size, 1)
        _checks.integer("BlockLocalisation.contiguous", "block_size", block_size, 1, state_size)
        return cls.from_state_blocks(np.arange(state_size) // block_size, operator)


def tile_blocks(layout: StateLayout, tile: tuple[int, int]) -> Int[np.ndarray, " d"]:
    """The lat-lon tile of every state component, ``(d,)`` block indices.

    For a field-major state `layout` whose variables end in ``(lat, lon)`` dimensions (each
    variable and level a contiguous latitude-major block, as GenCast's; any 2-D gridded
    model's).  Tiles are rectangles of ``tile = (tile_lat, tile_lon)`` grid points in index space,
    numbered latitude-major: grid point ``(i, j)`` is in tile
    ``(i // tile_lat) * ceil(n_lon / tile_lon) + j // tile_lon``, and every field (variable
    and level) of a grid point is in that point's tile.  The last row and column of tiles
    are smaller when the tile does not divide the grid.  Nothing wraps: the tiles on either
    side of the first longitude are different blocks (as are any two neighbouring tiles),
    and a pole row is split among the tiles of its band like any other row.
    """
    first = layout.variables[0]
    nlat, nlon = first.shape[-2:]
    t_lat, t_lon = tile
    if not (1 <= t_lat <= nlat and 1 <= t_lon <= nlon):
        raise InvalidArgument(
            f"tile_blocks: the tile (lat, lon) must be in [1, {nlat}] x [1, {nlon}] grid points, got {tuple(tile)}."
        )
    n_cols = -(-nlon // t_lon)
    point = ((np.arange(nlat) // t_lat)[:, None] * n_cols + (np.arange(nlon) // t_lon)[None, :]).reshape(-1)
    blocks = np.full(layout.size, -1, np.int64)
    for v in layout.variables:
        if v.dims[-2:] != ("lat", "lon") or v.shape[-2:] != (nlat, nlon):
            raise InvalidArgument(f"tile_blocks: {v.name!r} is not on the {nlat} x {nlon} (lat, lon) grid.")
        blocks[v.offset : v.offset + v.size] = np.tile(point, v.size // point.size)
    if np.any(blocks < 0):
        raise InvalidArgument("tile_blocks: the layout's variables do not cover the state.")
    return blocks
