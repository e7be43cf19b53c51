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

The reference runs TPU splash attention; here the same function is computed with dense
masked attention, which runs on CPU and GPU.  Its memory is ``num_heads x n^2`` logits,
fine for meshes 4 and 5 (2,562 and 10,242 nodes) but not for mesh 6 (40,962 nodes), which
needs the banded (block tri-diagonal) form the reference's ``triblockdiag_mha`` uses.
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

    def __call__(
        self, x: Float[Array, "n d"], cond: Float[Array, " c"], mask: Bool[Array, "n n"]
    ) -> Float[Array, "n d"]:
        x = x + self.attention(self.attn_norm(layer_norm(x), cond), mask)
        hidden = jax.nn.gelu(self.ffw_up(self.ffw_norm(layer_norm(x), cond)))
        return x + self.ffw_down(hidden)


class MeshTransformer(eqx.Module):
    """The stack of [`Block`][]s and the final conditioned norm, on one sample ``[n, d]``."""

    blocks: tuple[Block, ...]
    final_norm: LinearNormConditioning
    mask: Bool[Array, "n n"]

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
    ) -> "MeshTransformer":
        scope = f"mesh_transformer/~/{name}"
        return cls(
            blocks=tuple(Block.load(read, scope, i, num_heads) for i in range(num_layers)),
            final_norm=LinearNormConditioning.load(
                read, f"{scope}/{name}_final_norm_conditioning/linear"
            ),
            mask=jnp.asarray(mesh_attention_mask(mesh, attention_k_hop)),
        )

    def __call__(self, x: Float[Array, "n d"], cond: Float[Array, " c"]) -> Float[Array, "n d"]:
        for block in self.blocks:
            x = block(x, cond, self.mask)
        return self.final_norm(layer_norm(x), cond)
