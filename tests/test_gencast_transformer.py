"""The mesh transformer (k-hop masked attention, conditioned pre-norm blocks) against the reference.

Golden values as in ``test_gencast_graph_net.py`` (reference run with ``attention_type="mha"``,
its dense masked attention; the published checkpoints name TPU splash attention, which computes
the same function).  Tolerance ``atol = rtol = 1e-5`` in float32; observed: bit-identical.
"""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.sparse import csgraph

from assimilax_adapters.gencast import params as P, testing as T
from assimilax_adapters.gencast import transformer as TR
from assimilax_adapters.gencast.mesh import faces_to_edges, gencast_mesh

GOLDEN = Path(__file__).parent / "data" / "gencast" / "tiny_golden.npz"
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def setup():
    return T.tiny_denoiser(seed=0), dict(np.load(GOLDEN))


def test_transformer_matches_reference(setup):
    den, g = setup
    x = jnp.asarray(np.swapaxes(g["latent_mesh"], 0, 1))
    out = eqx.filter_jit(eqx.filter_vmap(den.processor))(x, jnp.asarray(g["cond"]))
    np.testing.assert_allclose(np.swapaxes(out, 0, 1), g["transformer_out"], **TOL)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_k_hop_mask_is_graph_distance(k):
    mesh = gencast_mesh(2)
    s, r = faces_to_edges(mesh.faces)
    n = mesh.vertices.shape[0]
    mask = TR.mesh_attention_mask(mesh, k)
    adj = np.zeros((n, n), bool)
    adj[s, r] = True
    dist = csgraph.shortest_path(adj, unweighted=True)
    np.testing.assert_array_equal(mask, dist <= k)
    assert mask.diagonal().all() and (mask == mask.T).all()


def test_attention_respects_mask(setup):
    # Perturbing a node outside i's neighbourhood leaves i's attention output unchanged.
    den, g = setup
    block = den.processor.blocks[0]
    mask = den.processor.mask
    x = jnp.asarray(g["latent_mesh"][:, 0])
    far = int(np.flatnonzero(~np.asarray(mask[0]))[0])
    y = x.at[far].add(3.0)
    a, b = block.attention(x, mask), block.attention(y, mask)
    np.testing.assert_allclose(a[0], b[0], rtol=0, atol=0)
    assert not np.allclose(a[far], b[far])


def test_banded_attention_equals_dense(setup):
    den, g = setup
    read_params = P.random_params(
        P.checkpoint_param_shapes(T.tiny_task(), T.tiny_arch(), T.tiny_noise_encoder()), seed=0
    )
    from assimilax_adapters.gencast.graph_net import ParamReader

    mesh = gencast_mesh(2)  # 162 nodes: several blocks for k = 2
    cond = jnp.asarray(g["cond"][1])
    x = jax.random.normal(jax.random.key(0), (162, 16))
    outs = {}
    for attention in ("dense", "banded"):
        tr = TR.MeshTransformer.load(
            ParamReader(read_params), mesh=mesh, attention_k_hop=2, num_layers=2, num_heads=2,
            attention=attention,
        )
        outs[attention] = np.asarray(eqx.filter_jit(tr)(x, cond))
    assert tr.mask.ndim == 3 and tr.mask.shape[0] > 2
    np.testing.assert_allclose(outs["banded"], outs["dense"], rtol=1e-5, atol=1e-5)


def test_tri_block_masks_cover_mask():
    mesh = gencast_mesh(3)
    s, r = faces_to_edges(mesh.faces)
    sp = TR.k_hop_mask(s, r, mesh.vertices.shape[0], 3)
    block = TR.band_block_size(sp)
    blocks = TR.tri_block_masks(sp, block)
    n = mesh.vertices.shape[0]
    assert blocks.sum() == sp.nnz
    dense = np.zeros((blocks.shape[0] * block, (blocks.shape[0] + 2) * block), bool)
    for i in range(blocks.shape[0]):  # place block row i at key columns (i-1..i+1), shifted by one block
        dense[i * block:(i + 1) * block, i * block:(i + 3) * block] = blocks[i]
    np.testing.assert_array_equal(dense[:n, block:block + n], sp.toarray())
