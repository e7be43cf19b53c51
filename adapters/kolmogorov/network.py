"""The conditional denoiser network ``F(x_in, c_noise; context)`` of the Kolmogorov emulator.

A small periodic U-Net on the ``N x N`` vorticity grid (N divisible by 8).  Input channels are
``[x_in, context, sin(k x_1), cos(k x_1)]``: the EDM-scaled noisy target, the normalised
previous state, and the phase of the Kolmogorov forcing (the flow is homogeneous along ``x_0``
but not along ``x_1``, and a convolution network cannot know where the forcing is otherwise).
The noise level enters through a sinusoidal embedding of ``c_noise`` and an MLP that gives a
per-channel scale and shift (FiLM) in every residual block.

Levels ``N, N/2, N/4`` with `channels` features, 2 x 2 average pooling down, nearest-neighbour
upsampling and skip concatenation up, and a bottleneck of two blocks at ``N/8``; every
convolution is 3 x 3 with circular padding, so the network is equivariant to the shifts the
flow is equivariant to (any shift along ``x_0``, shifts by a forcing period along ``x_1``,
given the phase channels).  The receptive field covers the whole 64 x 64 domain.

Why not pdequinox's UNet: pdequinox 0.1.2's ``arch.UNet`` maps fields to fields with no
conditioning input, so the noise level could only enter as a constant channel, not by FiLM,
and it is built from channel-first `eqx.nn.Conv2d`.  XLA:CPU runs channel-first convolutions
slowly inside the sampler's rolled loop (``docs/performance.md``, jax-ml/jax#12868), so the
convolutions here are channel-last, ``jax.lax.conv_general_dilated`` with
``("NHWC", "HWIO", "NHWC")`` after ``jnp.pad(mode="wrap")``; the kernels are stored as
``(3, 3, in, out)`` arrays.  (Unlike the Lorenz-96 network there is no hand-written input
gradient: JAX's own transpose is used.)
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["KolmogorovUNet", "count_parameters"]

_DN = ("NHWC", "HWIO", "NHWC")


class _Conv(eqx.Module):
    """A periodic ``k x k`` convolution, channel-last (private)."""

    kernel: Float[Array, "k k cin cout"]
    bias: Float[Array, " cout"]

    def __init__(self, cin: int, cout: int, size: int, key: PRNGKeyArray, scale: float = 1.0):
        bound = scale / math.sqrt(cin * size * size)
        self.kernel = jax.random.uniform(key, (size, size, cin, cout), minval=-bound, maxval=bound)
        self.bias = jnp.zeros((cout,))

    def __call__(self, h: Float[Array, "n m cin"]) -> Float[Array, "n m cout"]:
        p = self.kernel.shape[0] // 2
        if p:
            h = jnp.pad(h, ((p, p), (p, p), (0, 0)), mode="wrap")
        out = jax.lax.conv_general_dilated(h[None], self.kernel, (1, 1), "VALID", dimension_numbers=_DN)
        return out[0] + self.bias


class _Block(eqx.Module):
    """FiLM-modulated residual block ``h + W_2 gelu(W_1 gelu((1 + s) h + b))`` (private)."""

    film: eqx.nn.Linear
    conv1: _Conv
    conv2: _Conv

    def __init__(self, channels: int, embed: int, key: PRNGKeyArray):
        kf, k1, k2 = jax.random.split(key, 3)
        film = eqx.nn.Linear(embed, 2 * channels, key=kf)
        self.film = eqx.tree_at(lambda m: (m.weight, m.bias), film,
                                (jnp.zeros_like(film.weight), jnp.zeros_like(film.bias)))
        self.conv1 = _Conv(channels, channels, 3, k1)
        self.conv2 = _Conv(channels, channels, 3, k2, scale=0.1)

    def __call__(self, h: Float[Array, "n m c"], emb: Float[Array, " e"]) -> Float[Array, "n m c"]:
        scale, shift = jnp.split(self.film(emb), 2)
        u = jax.nn.gelu((1.0 + scale) * h + shift)
        return h + self.conv2(jax.nn.gelu(self.conv1(u)))


def _down(h: Float[Array, "n m c"]) -> Float[Array, "n2 m2 c"]:
    n, m, c = h.shape
    return h.reshape(n // 2, 2, m // 2, 2, c).mean(axis=(1, 3))


def _up(h: Float[Array, "n m c"]) -> Float[Array, "n2 m2 c"]:
    return jnp.repeat(jnp.repeat(h, 2, axis=0), 2, axis=1)


class KolmogorovUNet(eqx.Module):
    """``F(x_in: (N, N), c_noise: (), context: (N, N)) -> (N, N)``.

    **Arguments:**

    - `channels`: features at the levels ``N, N/2, N/4`` (the bottleneck uses the last).
    - `embed`: width of the noise embedding.
    - `forcing_mode`: ``k`` of the forcing phase channels.
    - `key`: PRNG key for the initialisation.
    """

    frequencies: Float[Array, " f"]
    embed_mlp: eqx.nn.MLP
    lift: _Conv
    down_blocks: tuple[_Block, ...]
    down_proj: tuple[_Conv, ...]
    mid: tuple[_Block, _Block]
    up_proj: tuple[_Conv, ...]
    up_blocks: tuple[_Block, ...]
    project: _Conv
    forcing_mode: int = eqx.field(static=True)

    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 48),
        embed: int = 32,
        forcing_mode: int = 4,
        *,
        key: PRNGKeyArray,
    ):
        keys = iter(jax.random.split(key, 4 + 4 * len(channels) + 2))
        self.forcing_mode = forcing_mode
        # Log-spaced frequencies for c_noise = log(sigma) / 4 in about [-1.6, 1.1].
        self.frequencies = jnp.exp(jnp.linspace(0.0, math.log(32.0), embed // 2))
        self.embed_mlp = eqx.nn.MLP(embed, embed, embed, depth=1, activation=jax.nn.silu, key=next(keys))
        self.lift = _Conv(4, channels[0], 3, next(keys))
        levels = len(channels)
        self.down_blocks = tuple(_Block(c, embed, next(keys)) for c in channels)
        # 1 x 1 channel changes after pooling: channels[i] -> channels[i + 1] (last: same).
        nxt = list(channels[1:]) + [channels[-1]]
        self.down_proj = tuple(_Conv(c, n, 1, next(keys)) for c, n in zip(channels, nxt))
        self.mid = (_Block(channels[-1], embed, next(keys)), _Block(channels[-1], embed, next(keys)))
        # Up: concat(upsampled nxt[i], skip channels[i]) -> channels[i].
        self.up_proj = tuple(_Conv(n + c, c, 1, next(keys)) for c, n in zip(channels, nxt))
        self.up_blocks = tuple(_Block(c, embed, next(keys)) for c in channels)
        proj = _Conv(channels[0], 1, 1, next(keys))
        self.project = eqx.tree_at(lambda m: (m.kernel, m.bias), proj,
                                   (jnp.zeros_like(proj.kernel), jnp.zeros_like(proj.bias)))
        del levels

    def __call__(
        self, x_in: Float[Array, "n n"], c_noise: Float[Array, ""], context: Float[Array, "n n"]
    ) -> Float[Array, "n n"]:
        n = x_in.shape[-1]
        phase = jax.lax.stop_gradient(self.frequencies) * c_noise
        emb = jax.nn.silu(self.embed_mlp(jnp.concatenate([jnp.sin(phase), jnp.cos(phase)])))
        x1 = self.forcing_mode * 2 * math.pi * jnp.arange(n) / n
        ph = jnp.broadcast_to(x1, (n, n))
        h = self.lift(jnp.stack([x_in, context, jnp.sin(ph), jnp.cos(ph)], axis=-1))
        skips = []
        for block, proj in zip(self.down_blocks, self.down_proj):
            h = block(h, emb)
            skips.append(h)
            h = proj(_down(h))
        for block in self.mid:
            h = block(h, emb)
        for block, proj, skip in reversed(list(zip(self.up_blocks, self.up_proj, skips))):
            h = block(proj(jnp.concatenate([_up(h), skip], axis=-1)), emb)
        return self.project(h)[..., 0]


def count_parameters(network: eqx.Module) -> int:
    """Number of trainable scalars in `network` (the fixed embedding frequencies excluded)."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(network, eqx.is_inexact_array))
    return sum(x.size for x in leaves) - network.frequencies.size
