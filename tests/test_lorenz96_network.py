"""The channel-last Lorenz-96 network: same function as its `eqx.nn.Conv1d` form, fast layout."""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax_adapters.lorenz96 import load_emulator
from assimilax_adapters.lorenz96.train import train


def channel_first(net, x_in, c_noise, context):
    """The network as it was written before: `eqx.nn.Conv1d` modules on ``(channels, d)``."""
    phase = jax.lax.stop_gradient(net.frequencies) * c_noise
    emb = jax.nn.silu(net.embed_mlp(jnp.concatenate([jnp.sin(phase), jnp.cos(phase)])))
    h = net.lift(jnp.stack([x_in, context]))
    for block in net.blocks:
        scale, shift = jnp.split(block.film(emb), 2)
        u = (1.0 + scale[:, None]) * h + shift[:, None]
        h = h + block.conv_o(block.conv_a(u) * jax.nn.gelu(block.conv_b(u)))
    return net.project(h)[0]


@pytest.fixture(scope="module")
def network():
    return load_emulator().denoiser.network


@pytest.fixture(scope="module")
def inputs():
    k1, k2 = jax.random.split(jax.random.key(0))
    x = 2.0 * jax.random.normal(k1, (16, 40))
    context = jax.random.normal(k2, (16, 40))
    c_noise = jnp.linspace(-1.6, 1.1, 16)  # log(sigma) / 4 for sigma in [2e-3, 80]
    return x, c_noise, context


def test_forward_equals_conv1d(network, inputs):
    """On the shipped weights, to float32 rounding (outputs are O(10))."""
    new = jax.jit(jax.vmap(network))(*inputs)
    old = jax.jit(jax.vmap(lambda x, c, h: channel_first(network, x, c, h)))(*inputs)
    scale = float(jnp.max(jnp.abs(old)))
    assert scale > 1.0
    np.testing.assert_allclose(np.asarray(new), np.asarray(old), rtol=0, atol=1e-5 * scale)


def test_input_vjp_equals_conv1d(network, inputs):
    """The custom channel-last input gradient (what MMPS uses) is JAX's transpose."""
    x, c_noise, context = inputs
    cot = jax.random.normal(jax.random.key(1), x.shape)

    def pull(f):
        return jax.jit(jax.vmap(lambda x, c, h, g: jax.vjp(lambda x: f(x, c, h), x)[1](g)[0]))

    new = pull(network)(x, c_noise, context, cot)
    old = pull(lambda x, c, h: channel_first(network, x, c, h))(x, c_noise, context, cot)
    scale = float(jnp.max(jnp.abs(old)))
    np.testing.assert_allclose(np.asarray(new), np.asarray(old), rtol=0, atol=1e-5 * scale)


def test_weight_gradient_equals_conv1d(network, inputs):
    """Training gradients are unchanged (the kernel gradient is JAX's own)."""

    def loss(f):
        return lambda n: jnp.mean(jax.vmap(lambda x, c, h: f(n, x, c, h))(*inputs) ** 2)

    new = eqx.filter_jit(eqx.filter_grad(loss(lambda n, x, c, h: n(x, c, h))))(network)
    old = eqx.filter_jit(eqx.filter_grad(loss(channel_first)))(network)
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(old)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5 * (float(jnp.max(jnp.abs(b))) + 1e-12))


def test_loop_convolutions_are_channel_last(network, inputs):
    """Every convolution of a vmapped loop of forward + input VJP compiles as ``b0f_0io->b0f``,
    the layout XLA:CPU runs with its fast kernels inside a loop body."""
    x, c_noise, context = inputs

    def loop(x, c, h):
        def body(z, _):
            out, pull = jax.vjp(lambda z: network(z, c, h), z)
            return pull(out)[0], None

        return jax.lax.scan(body, x, None, length=3)[0]

    hlo = jax.jit(jax.vmap(loop)).lower(x, c_noise, context).compile().as_text()
    labels = re.findall(r"convolution\(.*?dim_labels=([^,\s]+)", hlo)
    assert labels, "no convolution found in the compiled loop"
    assert set(labels) == {"b0f_0io->b0f"}, sorted(set(labels))


def test_train_runs():
    """A few steps of the training script with the channel-last network: finite loss, moved weights."""
    emulator, config = train(steps=10, batch=4, trajectories=2, length=20, warmup=1, log_every=1000)
    report = config["training"]
    assert report["steps"] == 10 and np.isfinite(report["final_loss"])
    projection = emulator.denoiser.network.project.weight
    assert float(jnp.max(jnp.abs(projection))) > 0  # zero-initialised, so training moved it
