"""Tests of assimilax.interop: foreign networks as denoisers and EDM networks."""

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import assimilax
from assimilax.interop import (
    FlaxLinenDenoiser,
    FlaxLinenNetwork,
    FlaxNNXDenoiser,
    FlaxNNXNetwork,
    FunctionDenoiser,
    as_denoiser,
    as_network,
)

D, N = 4, 5  # state size, particles
# Same float32 arithmetic on both sides, possibly fused differently under jit / vmap.
RTOL, ATOL = 1e-5, 1e-6


def _inputs():
    kx, kc = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (N, D))
    ctx = jax.random.normal(kc, (N, D))
    return x, ctx, jnp.asarray(0.7)


def _check_jit_vmap(denoiser, direct):
    """The wrapper under jit(vmap(...)) over particles equals the foreign object per particle."""
    x, ctx, sigma = _inputs()
    expected = np.stack([np.asarray(direct(x[i], sigma, ctx[i])) for i in range(N)])
    # As an argument of a jitted function (filter_jit: an eqx.Module may hold functions, e.g.
    # activations, that are not arrays) ...
    batched = eqx.filter_jit(lambda den, x, c: jax.vmap(lambda xi, ci: den(xi, sigma, ci))(x, c))
    np.testing.assert_allclose(batched(denoiser, x, ctx), expected, rtol=RTOL, atol=ATOL)
    # ... and closed over by jax.jit.
    closed = jax.jit(jax.vmap(lambda x, c: denoiser(x, sigma, c)))
    np.testing.assert_allclose(closed(x, ctx), expected, rtol=RTOL, atol=ATOL)


class LinenMLP(nn.Module):
    """``x, sigma, context -> (d,)``: the call signature the linen wrappers expect."""

    width: int = 16

    @nn.compact
    def __call__(self, x, sigma, context):
        h = jnp.concatenate([x, context, jnp.log(sigma)[None]])
        h = nn.gelu(nn.Dense(self.width)(h))
        return x + nn.Dense(x.shape[-1])(h)

    def batched(self, x, sigma):
        """Another method: a batch-first signature with no context."""
        return self(x[0], sigma, jnp.zeros_like(x[0]))[None]


class NNXMLP(nnx.Module):
    def __init__(self, d: int, width: int, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(2 * d + 1, width, rngs=rngs)
        self.out = nnx.Linear(width, d, rngs=rngs)

    def __call__(self, x, sigma, context):
        h = jnp.concatenate([x, context, jnp.log(sigma)[None]])
        return x + self.out(jax.nn.gelu(self.hidden(h)))


class EqxMLP(eqx.Module):
    mlp: eqx.nn.MLP

    def __init__(self, key):
        self.mlp = eqx.nn.MLP(2 * D + 1, D, 16, 1, key=key)

    def __call__(self, x, sigma, context):
        return x + self.mlp(jnp.concatenate([x, context, jnp.log(sigma)[None]]))


def _linen():
    module = LinenMLP()
    params = module.init(jax.random.key(1), jnp.zeros(D), jnp.asarray(1.0), jnp.zeros(D))
    return module, params


def test_function_denoiser():
    def fn(x, sigma, context):
        return context + (x - context) / (1.0 + sigma**2)

    den = as_denoiser(fn)
    assert isinstance(den, FunctionDenoiser) and isinstance(den, assimilax.AbstractDenoiser)
    _check_jit_vmap(den, fn)
    assert as_denoiser(den) is den  # already a denoiser


def test_equinox_module_weights_are_leaves():
    module = EqxMLP(jax.random.key(2))
    den = as_denoiser(module)
    assert isinstance(den, FunctionDenoiser)
    _check_jit_vmap(den, module)
    n_weights = len(jax.tree_util.tree_leaves(eqx.filter(module, eqx.is_array)))
    assert len(jax.tree_util.tree_leaves(eqx.filter(den, eqx.is_array))) == n_weights
    x, ctx, sigma = _inputs()
    g_den = eqx.filter_grad(lambda d: jnp.sum(d(x[0], sigma, ctx[0]) ** 2))(den)
    g_mod = eqx.filter_grad(lambda m: jnp.sum(m(x[0], sigma, ctx[0]) ** 2))(module)
    for a, b in zip(jax.tree_util.tree_leaves(g_den), jax.tree_util.tree_leaves(g_mod)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def test_flax_linen_denoiser():
    module, params = _linen()
    den = as_denoiser(module, params)
    assert isinstance(den, FlaxLinenDenoiser)
    _check_jit_vmap(den, lambda x, s, c: module.apply(params, x, s, c))
    # Params are leaves: gradients flow to them and match the direct ones.
    x, ctx, sigma = _inputs()
    g_den = eqx.filter_grad(lambda d: jnp.sum(d(x[0], sigma, ctx[0]) ** 2))(den).params
    g_dir = jax.grad(lambda p: jnp.sum(module.apply(p, x[0], sigma, ctx[0]) ** 2))(params)
    for a, b in zip(jax.tree_util.tree_leaves(g_den), jax.tree_util.tree_leaves(g_dir)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def test_flax_linen_other_signatures():
    module, params = _linen()
    x, _, sigma = _inputs()
    expected = module.apply(params, x[0], sigma, jnp.zeros(D))
    # An adapter for a batch-first, context-free signature...
    den = as_denoiser(
        module, params, call=lambda m, p, x, s, c: m.apply(p, x[None], s, method="batched")[0]
    )
    out = eqx.filter_jit(den)(x[0], sigma, None)
    np.testing.assert_allclose(out, expected, rtol=RTOL, atol=ATOL)
    # ... and `method=` for a method with the standard signature.
    den = FlaxLinenDenoiser(module, params, method="__call__")
    np.testing.assert_allclose(den(x[0], sigma, jnp.zeros(D)), expected, rtol=RTOL, atol=ATOL)


def test_flax_nnx_denoiser():
    module = NNXMLP(D, 16, nnx.Rngs(3))
    den = as_denoiser(module)
    assert isinstance(den, FlaxNNXDenoiser)
    _check_jit_vmap(den, module)
    x, ctx, sigma = _inputs()
    graphdef, state = nnx.split(module)
    g_den = eqx.filter_grad(lambda d: jnp.sum(d(x[0], sigma, ctx[0]) ** 2))(den).state
    g_dir = jax.grad(lambda s: jnp.sum(nnx.merge(graphdef, s)(x[0], sigma, ctx[0]) ** 2))(state)
    for a, b in zip(jax.tree_util.tree_leaves(g_den), jax.tree_util.tree_leaves(g_dir)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    # An adapter for another signature.
    den = FlaxNNXDenoiser(module, call=lambda m, x, s, c: m(x, s, jnp.zeros_like(x)))
    np.testing.assert_allclose(
        den(x[0], sigma, None), module(x[0], sigma, jnp.zeros(D)), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("kind", ["function", "equinox", "linen", "nnx"])
def test_as_network_in_edm_preconditioning(kind):
    if kind == "function":
        raw = lambda x, c_noise, ctx: jnp.tanh(x + ctx) * c_noise  # noqa: E731
        direct = raw
        net = as_network(raw)
    elif kind == "equinox":
        raw = direct = EqxMLP(jax.random.key(4))
        net = as_network(raw)
        assert net is raw
    elif kind == "linen":
        module, params = _linen()
        direct = lambda x, c_noise, ctx: module.apply(params, x, c_noise, ctx)  # noqa: E731
        net = as_network(module, params)
        assert isinstance(net, FlaxLinenNetwork)
    else:
        module = NNXMLP(D, 16, nnx.Rngs(5))
        direct = module
        net = as_network(module)
        assert isinstance(net, FlaxNNXNetwork)
    sigma_data = 0.8
    den = assimilax.EDMPreconditioned(network=net, sigma_data=sigma_data)

    def expected(x, sigma, ctx):
        sd2 = sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * sigma_data / jnp.sqrt(sigma**2 + sd2)
        c_in = 1.0 / jnp.sqrt(sigma**2 + sd2)
        c_noise = 0.25 * jnp.log(sigma)
        return c_skip * x + c_out * direct(c_in * x, c_noise, ctx)

    _check_jit_vmap(den, expected)


class _NotCallable:
    pass


def test_type_errors():
    module, params = _linen()
    with pytest.raises(TypeError, match="unsupported object of type int"):
        as_denoiser(3)
    with pytest.raises(TypeError, match="unsupported object of type ndarray"):
        as_denoiser(np.ones(3))
    with pytest.raises(TypeError, match="unsupported object of type _NotCallable"):
        as_network(_NotCallable())
    with pytest.raises(TypeError, match="unsupported object of type type"):
        as_denoiser(_NotCallable)
    with pytest.raises(TypeError, match="needs its `params`"):
        as_denoiser(module)
    with pytest.raises(TypeError, match="needs its `params`"):
        as_network(module)
    with pytest.raises(TypeError, match="flax.linen modules only"):
        as_denoiser(lambda x, s, c: x, params={})
    with pytest.raises(TypeError, match="already a denoiser"):
        as_network(FunctionDenoiser(lambda x, s, c: x))
    with pytest.raises(TypeError, match="needs a flax.linen.Module"):
        FlaxLinenDenoiser(lambda x, s, c: x, params)
    with pytest.raises(TypeError, match="flax.nnx.Module"):
        FlaxNNXDenoiser(module)
