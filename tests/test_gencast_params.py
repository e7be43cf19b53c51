"""The parameter-name map against the tree a haiku ``init`` of the reference denoiser creates.

``tests/data/gencast/tiny_param_shapes.json`` was written by running DeepMind's reference
(google-deepmind/graphcast at 08cf736, ``gencast.GenCast`` inside ``hk.transform``) for the tiny
configuration of `assimilax_adapters.gencast.testing`; a second configuration (mesh 2, 2 hidden layers, 3
transformer layers, 4 heads, other noise-encoder sizes) was checked the same way when the file
was made.
"""

import json
from pathlib import Path

import pytest

from assimilax_adapters.gencast import config as C, params as P

from assimilax_adapters.gencast.testing import tiny_arch, tiny_noise_encoder, tiny_task

DATA = Path(__file__).parent / "data" / "gencast"


def test_tiny_tree_matches_reference_init():
    reference = json.loads((DATA / "tiny_param_shapes.json").read_text())
    reference = {k: {n: tuple(s) for n, s in d.items()} for k, d in reference.items()}
    task = tiny_task()
    assert P.grid_input_channels(task) == 16
    assert C.num_outputs(task) == 3
    mine = P.checkpoint_param_shapes(task, tiny_arch(), tiny_noise_encoder())
    assert mine == reference
    assert P.count_params(mine) == 15699


def test_gencast_channels():
    # 5 surface x 2 steps + 6 atmospheric x 13 levels x 2 + 4 forcings x 2 + 2 static = 176 inputs,
    # 4 forcings at the target time, 84 noisy targets.
    assert P.num_input_steps(C.GENCAST_TASK) == 2
    assert P.grid_input_channels(C.GENCAST_TASK) == 176 + 4 + 84


def test_published_architecture_count():
    # latent 512, 1 hidden layer, 16 layers x (4 heads, ffw 2048), noise encoder (32, 16):
    # the reference's defaults, used by its demo for random weights.
    st = C.SparseTransformerConfig(attention_k_hop=16, d_model=512)
    arch = C.DenoiserArchitectureConfig(sparse_transformer_config=st, mesh_size=6)
    shapes = P.checkpoint_param_shapes(C.GENCAST_TASK, arch, C.NoiseEncoderConfig())
    assert len(shapes) == 163
    assert P.count_params(shapes) == 57_492_612


def test_named_transformer_and_errors():
    st = C.SparseTransformerConfig(attention_k_hop=1, d_model=16, num_layers=1, name="proc")
    arch = C.DenoiserArchitectureConfig(sparse_transformer_config=st, mesh_size=1, latent_size=16)
    shapes = P.expected_param_shapes(arch, C.NoiseEncoderConfig(), 5, 2)
    assert "mesh_transformer/~/proc/proc_final_norm_conditioning/linear" in shapes
    bad = C.DenoiserArchitectureConfig(sparse_transformer_config=st, mesh_size=1, latent_size=32)
    with pytest.raises(ValueError, match="d_model"):
        P.expected_param_shapes(bad, C.NoiseEncoderConfig(), 5, 2)
    with pytest.raises(ValueError, match="n_outputs"):
        P.expected_param_shapes(arch, C.NoiseEncoderConfig(), 5)


def test_random_params_deterministic():
    shapes = P.checkpoint_param_shapes(tiny_task(), tiny_arch(), tiny_noise_encoder())
    a, b = P.random_params(shapes, 3), P.random_params(shapes, 3)
    assert all((a[m][n] == b[m][n]).all() and a[m][n].shape == shapes[m][n] for m in a for n in a[m])
