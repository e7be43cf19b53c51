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
[`assimilax.EDMPreconditioned`][assimilax.denoisers.EDMPreconditioned] to obtain the denoiser.

The convolutions run **channel-last**: features are ``(d, channels)`` and every
convolution is `jax.lax.conv_general_dilated` with dimension numbers
``("NWC", "WIO", "NWC")`` after circular padding by `jnp.pad(mode="wrap")`.
`eqx.nn.Conv1d` stays the parameter container (weights ``(out, in, kernel)``, so the
shipped weights load unchanged); its weight is transposed to ``(kernel, in, out)`` on
the fly.  The reason is XLA:CPU: it lowers convolutions to its fast (Eigen) kernels only
in the channel-last layout, and rewrites channel-first ones (what `eqx.nn.Conv1d` emits)
to it only in the entry computation, so inside the sampler's rolled loop over levels a
channel-first network ran 8-10x slower than unrolled (jax-ml/jax#12868; see
`docs/performance.md`).  The input gradient (the vector-Jacobian product MMPS guidance
needs) is written out as a channel-last convolution too, in a `jax.custom_vjp`.
"""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["Lorenz96Network"]

_CHANNEL_LAST = ("NWC", "WIO", "NWC")


def _correlate(h: Float[Array, "d cin"], kernel: Float[Array, "k cin cout"], dilation: int) -> Float[Array, "d cout"]:
    """``out[i] = sum_k h[(i + k dilation - pad) mod d] @ kernel[k]``, ``pad = dilation (k - 1) / 2``."""
    pad = dilation * (kernel.shape[0] - 1) // 2
    padded = jnp.pad(h, ((pad, pad), (0, 0)), mode="wrap")
    out = jax.lax.conv_general_dilated(
        padded[None], kernel, (1,), "VALID", rhs_dilation=(dilation,), dimension_numbers=_CHANNEL_LAST
    )
    return out[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _circular_conv(
    h: Float[Array, "d cin"], kernel: Float[Array, "k cin cout"], dilation: int
) -> Float[Array, "d cout"]:
    """The periodic correlation `_correlate`, with a channel-last input gradient.

    JAX's own transpose of a ``("NWC", "WIO", "NWC")`` convolution is a convolution with a
    ``(kernel, out, in)`` kernel layout, which XLA:CPU runs as a naive loop nest inside a
    loop body.  The adjoint of a periodic correlation is the periodic correlation with the
    flipped kernel and swapped channels, ``g_h[j] = sum_k g[(j + k dilation - pad) mod d]
    @ kernel[K-1-k]^T``, written here in the same channel-last layout.  Reverse mode only
    (no `jax.jvp` through the network).
    """
    return _correlate(h, kernel, dilation)


def _circular_conv_fwd(h, kernel, dilation):
    return _correlate(h, kernel, dilation), (h, kernel)


def _circular_conv_bwd(dilation, residuals, g):
    h, kernel = residuals
    g_h = _correlate(g, jnp.flip(kernel, 0).transpose(0, 2, 1), dilation)
    # The kernel gradient (training only) is JAX's own.
    _, pull_kernel = jax.vjp(lambda k: _correlate(h, k, dilation), kernel)
    (g_kernel,) = pull_kernel(g)
    return g_h, g_kernel


_circular_conv.defvjp(_circular_conv_fwd, _circular_conv_bwd)


def _apply(conv: eqx.nn.Conv1d, h: Float[Array, "d cin"]) -> Float[Array, "d cout"]:
    """`conv` (a circular `eqx.nn.Conv1d`, weight ``(out, in, kernel)``) on channel-last `h`."""
    kernel = conv.weight.transpose(2, 1, 0)
    return _circular_conv(h, kernel, conv.dilation[0]) + conv.bias[:, 0]


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

    def __call__(self, h: Float[Array, "d c"], emb: Float[Array, " e"]) -> Float[Array, "d c"]:
        scale, shift = jnp.split(self.film(emb), 2)
        u = (1.0 + scale) * h + shift
        return h + _apply(self.conv_o, _apply(self.conv_a, u) * jax.nn.gelu(_apply(self.conv_b, u)))


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
        h = _apply(self.lift, jnp.stack([x_in, context], axis=-1))
        for block in self.blocks:
            h = block(h, emb)
        return _apply(self.project, h)[:, 0]


def count_parameters(network: eqx.Module) -> int:
    """Number of trainable scalars in `network` (the fixed embedding frequencies excluded)."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(network, eqx.is_inexact_array))
    return sum(x.size for x in leaves) - network.frequencies.size
