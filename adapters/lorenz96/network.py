"""The conditional denoiser network ``F(x_in, c_noise; context)`` of the Lorenz-96 emulator.

A small residual network of periodic (circular) 1-D convolutions on the ring of ``d``
variables, so it is equivariant to cyclic shifts like Lorenz-96 itself.  Input channels are
``[x_in, context]`` (the EDM-scaled noisy target and the normalised previous state); the
noise level enters through a sinusoidal embedding of ``c_noise`` and an MLP that produces a
per-channel scale and shift (FiLM) in every block.

Each block is gated, ``h <- h + W_o (W_a u * gelu(W_b u))`` with ``u = (1 + s) h + b`` the
FiLM-modulated features and ``W_a``, ``W_b`` dilated kernel-3 convolutions: the product makes
the quadratic advection term ``(x_{i+1} - x_{i-2}) x_{i-1}`` cheap to represent.  With a
kernel-5 lifting layer and dilations ``(1, 2, 4, 1, 2, 4)`` the receptive field is +-16 grid
points, wider than the +-8 of one RK4 step.  Wrap the network in
[`assimilax.EDMPreconditioned`][] to obtain the denoiser.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["Lorenz96Network"]


def _conv(cin: int, cout: int, kernel: int, dilation: int, key: PRNGKeyArray) -> eqx.nn.Conv1d:
    return eqx.nn.Conv1d(
        cin,
        cout,
        kernel,
        padding=dilation * (kernel - 1) // 2,
        dilation=dilation,
        padding_mode="CIRCULAR",
        key=key,
    )


class _Block(eqx.Module):
    """FiLM-modulated gated residual block (private)."""

    film: eqx.nn.Linear
    conv_a: eqx.nn.Conv1d
    conv_b: eqx.nn.Conv1d
    conv_o: eqx.nn.Conv1d

    def __init__(self, channels: int, embed: int, dilation: int, key: PRNGKeyArray):
        kf, ka, kb, ko = jax.random.split(key, 4)
        film = eqx.nn.Linear(embed, 2 * channels, key=kf)
        # Start as the identity modulation: scale = shift = 0.
        self.film = eqx.tree_at(lambda m: (m.weight, m.bias), film,
                                (jnp.zeros_like(film.weight), jnp.zeros_like(film.bias)))
        self.conv_a = _conv(channels, channels, 3, dilation, ka)
        self.conv_b = _conv(channels, channels, 3, dilation, kb)
        conv_o = _conv(channels, channels, 1, 1, ko)
        self.conv_o = eqx.tree_at(lambda m: m.weight, conv_o, 0.1 * conv_o.weight)

    def __call__(self, h: Float[Array, "c d"], emb: Float[Array, " e"]) -> Float[Array, "c d"]:
        scale, shift = jnp.split(self.film(emb), 2)
        u = (1.0 + scale[:, None]) * h + shift[:, None]
        return h + self.conv_o(self.conv_a(u) * jax.nn.gelu(self.conv_b(u)))


class Lorenz96Network(eqx.Module):
    """``F(x_in: Float[Array, "d"], c_noise: Float[Array, ""], context: Float[Array, "d"])``.

    **Arguments:**

    - `channels`: hidden channels.
    - `embed`: width of the noise embedding.
    - `dilations`: one gated block per entry, with that dilation.
    - `key`: PRNG key for the initialisation.
    """

    frequencies: Float[Array, " f"]
    embed_mlp: eqx.nn.MLP
    lift: eqx.nn.Conv1d
    blocks: tuple[_Block, ...]
    project: eqx.nn.Conv1d

    def __init__(
        self,
        channels: int = 32,
        embed: int = 32,
        dilations: tuple[int, ...] = (1, 2, 4, 1, 2, 4),
        *,
        key: PRNGKeyArray,
    ):
        k_emb, k_lift, k_proj, k_blocks = jax.random.split(key, 4)
        # Fixed log-spaced frequencies for the sinusoidal embedding of c_noise = log(sigma)/4,
        # which ranges over about [-1.6, 1.1] for sigma in [2e-3, 80].
        self.frequencies = jnp.exp(jnp.linspace(0.0, math.log(32.0), embed // 2))
        self.embed_mlp = eqx.nn.MLP(embed, embed, embed, depth=1, activation=jax.nn.silu, key=k_emb)
        self.lift = _conv(2, channels, 5, 1, k_lift)
        self.blocks = tuple(
            _Block(channels, embed, d, k) for d, k in zip(dilations, jax.random.split(k_blocks, len(dilations)))
        )
        proj = _conv(channels, 1, 1, 1, k_proj)
        self.project = eqx.tree_at(lambda m: (m.weight, m.bias), proj,
                                   (jnp.zeros_like(proj.weight), jnp.zeros_like(proj.bias)))

    def __call__(
        self, x_in: Float[Array, " d"], c_noise: Float[Array, ""], context: Float[Array, " d"]
    ) -> Float[Array, " d"]:
        phase = jax.lax.stop_gradient(self.frequencies) * c_noise
        emb = jax.nn.silu(self.embed_mlp(jnp.concatenate([jnp.sin(phase), jnp.cos(phase)])))
        h = self.lift(jnp.stack([x_in, context]))
        for block in self.blocks:
            h = block(h, emb)
        return self.project(h)[0]


def count_parameters(network: eqx.Module) -> int:
    """Number of trainable scalars in `network` (the fixed embedding frequencies excluded)."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(network, eqx.is_inexact_array))
    return sum(x.size for x in leaves) - network.frequencies.size
