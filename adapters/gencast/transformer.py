"""GenCast's processor: a transformer on the mesh whose attention is local to k-hop neighbourhoods.

As in the reference (``sparse_transformer.py``, ``transformer.py``): node ``i`` attends to
node ``j`` iff ``j`` is within `attention_k_hop` edges of ``i`` in the mesh's edge graph
with self-edges added (``(A + I)^k != 0``).  Each of the ``num_layers`` pre-norm blocks is

    x = x + MHA(cond_norm_1(LN(x)))
    x = x + W_down gelu(W_up cond_norm_2(LN(x)) + b_up) + b_down

with ``LN`` a LayerNorm without scale/offset and ``cond_norm`` a ``LinearNormConditioning``
on the noise-level encoding; a last ``cond_norm(LN(x))`` ends the stack.  Attention:
``q, k, v = x W_{q,k,v}`` (no bias) split into ``num_heads`` heads of ``d_model / num_heads``
channels, logits ``q k^T / sqrt(d_head)`` set to ``-1e30`` outside the mask, softmax (in
float32), the heads concatenated and mapped by ``mha_final`` (with bias).  The MLP uses
the tanh-approximated GELU (``jax.nn.gelu``'s default), as the reference does.

The reference runs TPU splash attention; here the same function is computed in one of two
exact forms that run on CPU and GPU:

- ``"dense"``: masked attention over all ``n x n`` pairs (``num_heads x n^2`` logits): simple
  and fast for meshes up to refinement 5 (10,242 nodes).
- ``"banded"``: the mesh is numbered by reverse Cuthill-McKee, so the mask is banded; with
  blocks of ``B`` = bandwidth nodes, block ``i`` of queries only meets key blocks ``i - 1, i,
  i + 1`` (the reference's ``triblockdiag_mha``); the query blocks are processed one after
  the other, so ``num_heads x B x 3B`` logits are live at a time (B = 5,137 for mesh 6 with
  a 16-hop mask: about 1.3 GB in float32).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int
from scipy import sparse

from .graph_net import Linear, LinearNormConditioning, ParamReader, layer_norm
from .mesh import TriangularMesh, faces_to_edges

MASK_VALUE = -1e30


def k_hop_mask(
    senders: Int[np.ndarray, " e"], receivers: Int[np.ndarray, " e"], n: int, k: int
) -> sparse.csr_matrix:
    """Boolean ``(A + I)^k`` of the graph ``senders -> receivers``: who attends to whom."""
    if k < 1:
        raise ValueError(f"attention_k_hop must be >= 1, got {k}.")
    adj = sparse.csr_matrix(
        (np.ones(len(senders) + n, bool), (np.r_[senders, np.arange(n)], np.r_[receivers, np.arange(n)])),
        shape=(n, n),
    )
    adj.data[:] = True
    out = adj
    for _ in range(k - 1):
        out = out @ adj
        out.data[:] = True
    return out.astype(bool)


def mesh_attention_mask(mesh: TriangularMesh, k: int) -> Bool[np.ndarray, "n n"]:
    """Dense ``(n, n)`` k-hop attention mask of a mesh (its directed face edges + self-edges)."""
    senders, receivers = faces_to_edges(mesh.faces)
    n = mesh.vertices.shape[0]
    return k_hop_mask(senders, receivers, n, k).toarray()


def band_block_size(mask: sparse.spmatrix) -> int:
    """``1 + max |i - j|`` over the mask's non-zeros: blocks this wide keep it tri-block-diagonal."""
    coo = sparse.coo_matrix(mask)
    return int(np.abs(coo.row - coo.col).max()) + 1


def tri_block_masks(mask: sparse.spmatrix, block: int) -> Bool[np.ndarray, "nb b three_b"]:
    """Mask rows of each query block against key blocks ``[i - 1, i, i + 1]``, ``[nb, B, 3B]``.

    Nodes are padded to ``nb * B``; padded rows and columns are False.
    """
    coo = sparse.coo_matrix(mask)
    n = mask.shape[0]
    nb = -(-n // block)
    out = np.zeros((nb, block, 3 * block), bool)
    qb, kb = coo.row // block, coo.col // block
    if np.any(np.abs(qb - kb) > 1):
        raise ValueError("The mask is not tri-block-diagonal for this block size.")
    out[qb, coo.row % block, (kb - qb + 1) * block + coo.col % block] = True
    return out


class Block(eqx.Module):
    """One pre-norm transformer block (conditioned norms, masked MHA, GELU MLP)."""

    attn_norm: LinearNormConditioning
    ffw_norm: LinearNormConditioning
    w_q: Float[Array, "d d"]
    w_k: Float[Array, "d d"]
    w_v: Float[Array, "d d"]
    mha_final: Linear
    ffw_up: Linear
    ffw_down: Linear
    num_heads: int = eqx.field(static=True)

    @classmethod
    def load(cls, read: ParamReader, scope: str, index: int, num_heads: int) -> "Block":
        block = f"{scope}/block_{index:02d}"
        name = f"block_{index:02d}_norm_conditioning"
        return cls(
            attn_norm=LinearNormConditioning.load(read, f"{block}/{name}/linear"),
            ffw_norm=LinearNormConditioning.load(read, f"{block}/{name}_1/linear"),
            w_q=jnp.asarray(read(f"{block}/mha_proj_q")["w"]),
            w_k=jnp.asarray(read(f"{block}/mha_proj_k")["w"]),
            w_v=jnp.asarray(read(f"{block}/mha_proj_v")["w"]),
            mha_final=Linear.load(read(f"{block}/mha_final")),
            ffw_up=Linear.load(read(f"{block}/ffw_up")),
            ffw_down=Linear.load(read(f"{block}/ffw_down")),
            num_heads=num_heads,
        )

    def attention(self, x: Float[Array, "n d"], mask: Bool[Array, "n n"]) -> Float[Array, "n d"]:
        n, d = x.shape
        head = d // self.num_heads
        split = lambda w: jnp.dot(x, w).reshape(n, self.num_heads, head)  # noqa: E731
        q, k, v = split(self.w_q), split(self.w_k), split(self.w_v)
        logits = jnp.einsum("thd,Thd->htT", q, k) * head**-0.5
        logits = jnp.where(mask[None], logits, MASK_VALUE)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(x.dtype)
        out = jnp.einsum("htT,Thd->thd", weights, v).reshape(n, d)
        return self.mha_final(out)

    def banded_attention(
        self, x: Float[Array, "n d"], masks: Bool[Array, "nb b three_b"]
    ) -> Float[Array, "n d"]:
        n, d = x.shape
        nb, block, _ = masks.shape
        head = d // self.num_heads
        x = jnp.pad(x, ((0, nb * block - n), (0, 0)))
        split = lambda w: jnp.dot(x, w).reshape(nb, block, self.num_heads, head)  # noqa: E731
        q, k, v = split(self.w_q), split(self.w_k), split(self.w_v)

        def neighbours(a):  # [nb, B, ...] -> key blocks i-1, i, i+1: [nb, 3B, ...]
            padded = jnp.pad(a, ((1, 1),) + ((0, 0),) * (a.ndim - 1))
            return jnp.concatenate([padded[:-2], padded[1:-1], padded[2:]], axis=1)

        def one_block(args):  # one query block at a time: num_heads x B x 3B logits live
            q_i, k_i, v_i, mask_i = args
            logits = jnp.einsum("qhd,khd->hqk", q_i, k_i) * head**-0.5
            logits = jnp.where(mask_i[None], logits, MASK_VALUE)
            weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(x.dtype)
            return jnp.einsum("hqk,khd->qhd", weights, v_i)

        out = jax.lax.map(one_block, (q, neighbours(k), neighbours(v), masks))
        return self.mha_final(out.reshape(nb * block, d)[:n])

    def __call__(
        self, x: Float[Array, "n d"], cond: Float[Array, " c"], mask: Bool[Array, "..."]
    ) -> Float[Array, "n d"]:
        normed = self.attn_norm(layer_norm(x), cond)
        if mask.ndim == 3:
            x = x + self.banded_attention(normed, mask)
        else:
            x = x + self.attention(normed, mask)
        hidden = jax.nn.gelu(self.ffw_up(self.ffw_norm(layer_norm(x), cond)))
        return x + self.ffw_down(hidden)


class MeshTransformer(eqx.Module):
    """The stack of [`Block`][]s and the final conditioned norm, on one sample ``[n, d]``.

    `mask` is the dense ``[n, n]`` mask (``attention="dense"``) or the ``[nb, B, 3B]`` block
    masks of [`tri_block_masks`][] (``attention="banded"``).
    """

    blocks: tuple[Block, ...]
    final_norm: LinearNormConditioning
    mask: Bool[Array, "..."]

    @classmethod
    def load(
        cls,
        read: ParamReader,
        *,
        mesh: TriangularMesh,
        attention_k_hop: int,
        num_layers: int,
        num_heads: int,
        name: str = "transformer",
        attention: str = "auto",
    ) -> "MeshTransformer":
        """`attention`: ``"dense"``, ``"banded"`` or ``"auto"`` (dense up to 10,242 nodes)."""
        scope = f"mesh_transformer/~/{name}"
        n = mesh.vertices.shape[0]
        if attention == "auto":
            attention = "dense" if n <= 10242 else "banded"
        senders, receivers = faces_to_edges(mesh.faces)
        sparse_mask = k_hop_mask(senders, receivers, n, attention_k_hop)
        if attention == "dense":
            mask = sparse_mask.toarray()
        elif attention == "banded":
            mask = tri_block_masks(sparse_mask, band_block_size(sparse_mask))
        else:
            raise ValueError(f"attention must be 'dense', 'banded' or 'auto', got {attention!r}.")
        return cls(
            blocks=tuple(Block.load(read, scope, i, num_heads) for i in range(num_layers)),
            final_norm=LinearNormConditioning.load(
                read, f"{scope}/{name}_final_norm_conditioning/linear"
            ),
            mask=jnp.asarray(mask),
        )

    def __call__(self, x: Float[Array, "n d"], cond: Float[Array, " c"]) -> Float[Array, "n d"]:
        for block in self.blocks:
            x = block(x, cond, self.mask)
        return self.final_norm(layer_norm(x), cond)
