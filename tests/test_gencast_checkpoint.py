"""GenCast checkpoint reader/writer: round trip, the official key layout, strict errors."""

import dataclasses
import io

import numpy as np
import pytest

from assimilax_adapters.gencast import checkpoint as ckpt, config


def _tiny_checkpoint(seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "grid2mesh_gnn/~_networks_builder/encoder_edges_grid2mesh_mlp/~/linear_0": {
            "w": rng.normal(size=(4, 8)).astype(np.float32),
            "b": rng.normal(size=(8,)).astype(np.float32),
        },
        "mesh_transformer/~/layer_0/attention": {"w": rng.normal(size=(8, 2, 4)).astype(np.float32)},
        "noise_level_encoder/~/linear_1": {"w": rng.normal(size=(8, 16)).astype(np.float32)},
    }
    return config.CheckPoint(
        description="tiny random GenCast",
        license="CC BY-NC-SA 4.0",
        params=params,
        task_config=config.GENCAST_TASK,
        denoiser_architecture_config=config.DenoiserArchitectureConfig(
            sparse_transformer_config=config.SparseTransformerConfig(
                attention_k_hop=2, d_model=8, num_layers=1, num_heads=2, attention_type="mha", ffw_hidden=16
            ),
            mesh_size=1,
            latent_size=8,
            node_output_size=config.num_outputs(config.GENCAST_TASK),
        ),
        sampler_config=config.SamplerConfig(num_noise_levels=4),
        noise_config=config.NoiseConfig(),
        noise_encoder_config=config.NoiseEncoderConfig(num_frequencies=4, output_sizes=(8, 16)),
    )


def _save(tree):
    buffer = io.BytesIO()
    ckpt.save_checkpoint(buffer, tree)
    buffer.seek(0)
    return buffer


def _resave_flat(flat):
    buffer = io.BytesIO()
    np.savez(buffer, **flat)
    buffer.seek(0)
    return buffer


def test_round_trip_file(tmp_path):
    original = _tiny_checkpoint()
    path = tmp_path / "tiny.npz"
    ckpt.save_checkpoint(path, original)
    loaded = ckpt.load_checkpoint(path)
    for name in ("description", "license", "task_config", "denoiser_architecture_config",
                 "sampler_config", "noise_config", "noise_encoder_config"):
        assert getattr(loaded, name) == getattr(original, name), name
    assert loaded.sampler_config.churn_max_noise_level == float("inf")
    assert loaded.denoiser_architecture_config.grid2mesh_aggregate_normalization is None
    assert loaded.denoiser_architecture_config.sparse_transformer_config.name is None
    assert isinstance(loaded.task_config.pressure_levels, tuple)
    assert isinstance(loaded.noise_encoder_config.output_sizes[0], int)
    assert loaded.params.keys() == original.params.keys()
    for module, leaves in original.params.items():
        assert loaded.params[module].keys() == leaves.keys()
        for k, v in leaves.items():
            got = loaded.params[module][k]
            assert got.dtype == v.dtype
            np.testing.assert_array_equal(got, v)


def test_official_key_layout():
    flat = ckpt.read_flat(_save(_tiny_checkpoint()))
    assert flat["description"].dtype.kind == "U" and flat["description"].shape == ()
    assert flat["denoiser_architecture_config:sparse_transformer_config:d_model"] == 8
    assert flat["task_config:pressure_levels:12"] == 1000
    assert flat["task_config:input_variables:0"] == "2m_temperature"
    assert flat["noise_encoder_config:output_sizes:1"] == 16
    assert "params:grid2mesh_gnn/~_networks_builder/encoder_edges_grid2mesh_mlp/~/linear_0:w" in flat
    # None-valued fields are omitted, not stored.
    assert "denoiser_architecture_config:grid2mesh_aggregate_normalization" not in flat
    assert "denoiser_architecture_config:sparse_transformer_config:name" not in flat


def test_weathernext_upcast_attn_field_is_accepted():
    key = "denoiser_architecture_config:sparse_transformer_config:upcast_attn_to_fp32"
    flat = ckpt.read_flat(_save(_tiny_checkpoint()))
    assert key not in flat  # graphcast-era files do not have it ...
    assert ckpt.load_checkpoint(_resave_flat(flat)).denoiser_architecture_config.sparse_transformer_config.upcast_attn_to_fp32 is None
    flat[key] = np.asarray(True)  # ... files written by weathernext do
    loaded = ckpt.load_checkpoint(_resave_flat(flat))
    assert loaded.denoiser_architecture_config.sparse_transformer_config.upcast_attn_to_fp32 is True
    assert ckpt.read_flat(_save(loaded))[key] == np.asarray(True)  # and it is written back
    flat[key] = np.asarray("yes")
    with pytest.raises(ckpt.CheckpointFormatError, match="upcast_attn_to_fp32"):
        ckpt.load_checkpoint(_resave_flat(flat))


def test_missing_field_is_named():
    flat = ckpt.read_flat(_save(_tiny_checkpoint()))
    del flat["denoiser_architecture_config:mesh_size"]
    with pytest.raises(ckpt.CheckpointFormatError, match="'denoiser_architecture_config:mesh_size'"):
        ckpt.load_checkpoint(_resave_flat(flat))
    flat = ckpt.read_flat(_save(_tiny_checkpoint()))
    del flat["license"]
    with pytest.raises(ckpt.CheckpointFormatError, match="Missing entry 'license'"):
        ckpt.load_checkpoint(_resave_flat(flat))


def test_extra_field_is_named():
    flat = ckpt.read_flat(_save(_tiny_checkpoint()))
    flat["sampler_config:churn_rate_typo"] = np.asarray(1.0)
    with pytest.raises(ckpt.CheckpointFormatError, match="'sampler_config:churn_rate_typo'"):
        ckpt.load_checkpoint(_resave_flat(flat))
    flat = ckpt.read_flat(_save(_tiny_checkpoint()))
    flat["something_else"] = np.asarray("x")
    with pytest.raises(ckpt.CheckpointFormatError, match="'something_else'"):
        ckpt.load_checkpoint(_resave_flat(flat))


def test_wrong_kinds_are_named():
    flat = ckpt.read_flat(_save(_tiny_checkpoint()))
    flat["noise_encoder_config:output_sizes:2"] = np.asarray(4)
    with pytest.raises(ckpt.CheckpointFormatError, match="output_sizes.*2 entries"):
        ckpt.load_checkpoint(_resave_flat(flat))
    flat = ckpt.read_flat(_save(_tiny_checkpoint()))
    flat["noise_config:training_noise_level_rho"] = np.ones(3)
    with pytest.raises(ckpt.CheckpointFormatError, match="training_noise_level_rho.*shape"):
        ckpt.load_checkpoint(_resave_flat(flat))
    flat = ckpt.read_flat(_save(_tiny_checkpoint()))
    del flat["task_config:input_variables:3"]
    with pytest.raises(ckpt.CheckpointFormatError, match="input_variables"):
        ckpt.load_checkpoint(_resave_flat(flat))


def test_unstorable_values_are_refused():
    bad = dataclasses.replace(
        _tiny_checkpoint(),
        denoiser_architecture_config=dataclasses.replace(
            _tiny_checkpoint().denoiser_architecture_config, norm_conditioning_features=()
        ),
    )
    with pytest.raises(ValueError, match="norm_conditioning_features"):
        _save(bad)
    with pytest.raises(ValueError, match="separator"):
        _save({"a:b": np.zeros(1)})


def test_check_param_shapes():
    params = _tiny_checkpoint().params
    expected = {m: {k: v.shape for k, v in leaves.items()} for m, leaves in params.items()}
    ckpt.check_param_shapes(params, expected)
    expected["noise_level_encoder/~/linear_1"]["w"] = (8, 32)
    expected["noise_level_encoder/~/linear_1"]["b"] = (32,)
    expected["mesh2grid_gnn/x"] = {"w": (1,)}
    with pytest.raises(ckpt.CheckpointFormatError) as info:
        ckpt.check_param_shapes(params, expected)
    message = str(info.value)
    assert "'noise_level_encoder/~/linear_1:w' has shape (8, 16), expected (8, 32)" in message
    assert "missing parameter 'noise_level_encoder/~/linear_1:b'" in message
    assert "missing module 'mesh2grid_gnn/x'" in message
