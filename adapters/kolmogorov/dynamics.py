"""2-D Kolmogorov flow (vorticity, periodic square grid) with exponax, plus additive model noise.

The model is the 2-D incompressible Navier-Stokes equation in vorticity form on the periodic
square ``[0, 2 pi)^2`` with linear (Ekman) drag and Kolmogorov forcing, as in SDA (Rozet &
Louppe, 2023) and Kochkov et al. (2021):

    w_t + u . grad w = nu lap w - lam w + f,    u = (d_1 psi, -d_0 psi),  lap psi = -w,
    f(x_0, x_1) = -k gamma cos(k x_1),

solved by exponax's `KolmogorovFlowVorticity` (pseudo-spectral, 2/3 dealiasing, second-order
exponential time differencing Runge-Kutta, ETDRK2).  The forcing varies along the *last* grid
axis ``x_1``; the flow is statistically homogeneous along ``x_0``.

Defaults (chosen and measured on 64 x 64, see ``docs/kolmogorov.md``):

- ``nu = 0.01`` (Re = 1/nu = 100 for L = 2 pi, gamma = 1), ``lam = 0.1``, ``k = 4``, ``gamma = 1``.
  The flow is chaotic: two states 1e-4 apart separate to the attractor size (about 4.4, state
  std 3.6) in about 35 time units.  It is resolved at 64 x 64: the vorticity power spectrum at
  the dealiasing cut-off (|k| = 21) is 5e-4 of its peak (at the forcing wavenumber 4).
  (Re = 1000 as in SDA needs 256+ points; SDA trains on a 64 x 64 coarsening of it.)
- One observation interval is ``0.5`` time units, ``50`` ETDRK2 steps of ``dt = 0.01`` (the
  scheme blew up at ``dt = 0.025`` from rest).  The lag-1 (one interval) autocorrelation of the
  vorticity is 0.85, lag 2 0.63, lag 5 0.33; the increment std is 2.0 against a state std 3.6.

The stochastic model adds Gaussian noise once per interval,

    x[k+1] = M(x[k]) + q eps,    eps ~ N(0, I),

so ``p(x[k+1] | x[k]) = N(M(x[k]), q^2 I)`` exactly; [`oracle_emulator`][] wraps it as an
[`assimilax.GaussianTransitionEmulator`][assimilax.exact_emulators.GaussianTransitionEmulator].

**State layout.** The core works on flat states: ``x = w.reshape(N * N)``, row-major, i.e.
``x[i * N + j] = w(x_0 = i L/N, x_1 = j L/N)`` (forcing along ``j``).  [`to_grid`][] and
[`to_flat`][] convert.
"""

import math

import equinox as eqx
import exponax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

import assimilax

__all__ = [
    "KolmogorovFlow",
    "energy",
    "energy_spectrum",
    "enstrophy",
    "laminar_state",
    "oracle_emulator",
    "simulate",
    "stochastic_step",
    "to_flat",
    "to_grid",
]

DOMAIN = 2 * math.pi


def to_grid(x: Float[Array, "*batch d"], num_points: int = 64) -> Float[Array, "*batch n n"]:
    """Flat states ``(..., N*N)`` to vorticity grids ``(..., N, N)`` (row-major)."""
    return x.reshape(*x.shape[:-1], num_points, num_points)


def to_flat(w: Float[Array, "*batch n n"]) -> Float[Array, "*batch d"]:
    """Vorticity grids ``(..., N, N)`` to flat states ``(..., N*N)``."""
    return w.reshape(*w.shape[:-2], w.shape[-2] * w.shape[-1])


@eqx.filter_jit
def _build_stepper(
    num_points: int, viscosity: float, drag: float, mode: int, amplitude: float, dt: float
) -> exponax.stepper.KolmogorovFlowVorticity:
    """exponax's ETDRK2 stepper; jitted, because its eager construction (the ETDRK coefficients
    by a contour integral, dozens of small ops) takes 4-5 s on a CPU core, the jitted one 1.5 s."""
    # exponax's `drag` is the coefficient of the linear term (negative damps).
    return exponax.stepper.KolmogorovFlowVorticity(
        2, DOMAIN, num_points, dt, diffusivity=viscosity, drag=-drag, injection_mode=mode,
        injection_scale=amplitude, order=2,
    )


class KolmogorovFlow(eqx.Module):
    """The deterministic map over one observation interval, ``x[k] -> M(x[k])`` (flat states).

    ``M`` is `substeps` ETDRK2 steps of size ``interval / substeps`` of exponax's
    `KolmogorovFlowVorticity` on an ``N x N`` grid of ``[0, 2 pi)^2``.  exponax computes the
    ETDRK coefficients at construction (a contour integral), so build the module once and pass
    it around; it is a pytree and jits, vmaps and differentiates.

    **Arguments:**

    - `num_points`: ``N`` (state size ``N^2``).
    - `viscosity`: ``nu``.
    - `drag`: ``lam >= 0`` (linear damping ``-lam w``).
    - `forcing_mode`: ``k``.
    - `forcing_amplitude`: ``gamma`` (0: unforced).
    - `interval`: model time per observation interval.
    - `substeps`: ETDRK2 steps per interval.
    """

    stepper: exponax.RepeatedStepper
    num_points: int = eqx.field(static=True)
    viscosity: float = eqx.field(static=True)
    drag: float = eqx.field(static=True)
    forcing_mode: int = eqx.field(static=True)
    forcing_amplitude: float = eqx.field(static=True)
    interval: float = eqx.field(static=True)
    substeps: int = eqx.field(static=True)

    def __init__(
        self,
        num_points: int = 64,
        viscosity: float = 0.01,
        drag: float = 0.1,
        forcing_mode: int = 4,
        forcing_amplitude: float = 1.0,
        interval: float = 0.5,
        substeps: int = 50,
    ):
        if num_points < 8 or num_points % 2:
            raise ValueError(f"KolmogorovFlow needs an even num_points >= 8, got {num_points}.")
        if viscosity < 0 or drag < 0:
            raise ValueError(f"KolmogorovFlow needs viscosity, drag >= 0, got {viscosity}, {drag}.")
        if interval <= 0 or substeps < 1:
            raise ValueError(f"KolmogorovFlow needs interval > 0 and substeps >= 1, got {interval}, {substeps}.")
        self.num_points = num_points
        self.viscosity = float(viscosity)
        self.drag = float(drag)
        self.forcing_mode = int(forcing_mode)
        self.forcing_amplitude = float(forcing_amplitude)
        self.interval = float(interval)
        self.substeps = int(substeps)
        base = _build_stepper(num_points, self.viscosity, self.drag, self.forcing_mode,
                              self.forcing_amplitude, self.interval / self.substeps)
        self.stepper = exponax.RepeatedStepper(base, substeps)

    @property
    def state_size(self) -> int:
        """``N^2``."""
        return self.num_points**2

    def step_grid(self, w: Float[Array, "*batch n n"]) -> Float[Array, "*batch n n"]:
        """``M`` on vorticity grids."""
        flat = w.reshape(-1, 1, self.num_points, self.num_points)
        out = jax.vmap(self.stepper)(flat)
        return out.reshape(w.shape)

    def __call__(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        """``M(x)`` on flat states."""
        return to_flat(self.step_grid(to_grid(x, self.num_points)))


def laminar_state(model: KolmogorovFlow) -> Float[Array, " d"]:
    """The laminar fixed point ``w* = -k gamma cos(k x_1) / (nu k^2 + lam)`` (flat).

    A function of ``x_1`` alone has ``u . grad w = 0``, so it is an exact steady state of the
    forced equation (unstable at the default Reynolds number).
    """
    k, n = model.forcing_mode, model.num_points
    x1 = jnp.arange(n) * DOMAIN / n
    profile = -k * model.forcing_amplitude * jnp.cos(k * x1) / (model.viscosity * k**2 + model.drag)
    return to_flat(jnp.broadcast_to(profile, (n, n)))


def stochastic_step(
    model: KolmogorovFlow, key: PRNGKeyArray, x: Float[Array, "*batch d"], q: float
) -> Float[Array, "*batch d"]:
    """``x[k+1] = M(x[k]) + q eps``, ``eps ~ N(0, I)``."""
    return model(x) + q * jax.random.normal(key, x.shape, x.dtype)


def simulate(
    key: PRNGKeyArray,
    num_steps: int,
    q: float = 0.5,
    *,
    model: KolmogorovFlow | None = None,
    spinup: int = 120,
    x0: Float[ArrayLike, " d"] | None = None,
) -> Float[Array, "num_steps d"]:
    """A trajectory ``x[1..num_steps]`` of the stochastic model after `spinup` intervals.

    Unless `x0` is given, the spin-up starts from the laminar state plus white noise of std 1.
    The laminar state is unstable: with ``q = 0.5`` the flow leaves it within 10 intervals
    (its enstrophy drops from 59 to the turbulent 5-9 and stays there), so the default spin-up
    of 120 intervals (60 time units) is ample.  vmap over `key` for independent trajectories.
    """
    model = KolmogorovFlow() if model is None else model
    k_init, k_spin, k_run = jax.random.split(key, 3)
    if x0 is None:
        x0 = laminar_state(model) + jax.random.normal(k_init, (model.state_size,))
    x0 = jnp.asarray(x0, dtype=float)
    if x0.shape != (model.state_size,):
        raise ValueError(f"simulate: x0 has shape {x0.shape}, expected ({model.state_size},).")

    def body(x, k):
        x = stochastic_step(model, k, x, q)
        return x, x

    x = jax.lax.scan(body, x0, jax.random.split(k_spin, spinup))[0] if spinup > 0 else x0
    _, xs = jax.lax.scan(body, x, jax.random.split(k_run, num_steps))
    return xs


def oracle_emulator(q: float = 0.5, model: KolmogorovFlow | None = None) -> assimilax.GaussianTransitionEmulator:
    """The exact emulator of the stochastic model: ``p(x[k+1] | x[k]) = N(M(x[k]), q^2 I)``.

    ``Q`` is given by its diagonal, so the exact denoiser is the core's ``O(d)``
    `assimilax.DiagonalGaussianDenoiser` (no 4096 x 4096 matrix, no `eigh`).
    """
    if q <= 0:
        raise ValueError(f"oracle_emulator needs q > 0, got {q}.")
    model = KolmogorovFlow() if model is None else model
    return assimilax.GaussianTransitionEmulator(transition=model, covariance=jnp.full(model.state_size, q**2))


# --- diagnostics (numpy/jax, grids) -------------------------------------------------------


def _wavenumbers(n: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.fft.fftfreq(n, 1.0 / n)  # integer wavenumbers for L = 2 pi
    k0, k1 = np.meshgrid(k, k, indexing="ij")
    return k0, k1


def energy_spectrum(w: Float[ArrayLike, "*batch n n"]) -> Float[Array, "*batch shells"]:
    """Shell-summed kinetic energy spectrum ``E(k) = sum_{k-1/2 <= |k'| < k+1/2} |w_k'|^2 / (2 |k'|^2)``.

    ``w_k = fft2(w) / N^2``; shells ``k = 0 .. N/2``; ``sum_k E(k)`` is the mean kinetic energy
    ``<|u|^2> / 2`` (up to the corner modes beyond ``N/2``).
    """
    w = jnp.asarray(w)
    n = w.shape[-1]
    k0, k1 = _wavenumbers(n)
    k2 = k0**2 + k1**2
    inv = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
    power = jnp.abs(jnp.fft.fft2(w) / n**2) ** 2 * inv / 2
    shell = np.rint(np.sqrt(k2)).astype(int)
    onehot = (shell[..., None] == np.arange(n // 2 + 1)).astype(np.float32)
    return jnp.einsum("...ij,ijs->...s", power, onehot)


def energy(w: Float[ArrayLike, "*batch n n"]) -> Float[Array, "*batch"]:
    """Mean kinetic energy ``<|u|^2> / 2`` (all modes)."""
    w = jnp.asarray(w)
    n = w.shape[-1]
    k0, k1 = _wavenumbers(n)
    k2 = k0**2 + k1**2
    inv = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
    return jnp.sum(jnp.abs(jnp.fft.fft2(w) / n**2) ** 2 * inv, axis=(-2, -1)) / 2


def enstrophy(w: Float[ArrayLike, "*batch n n"]) -> Float[Array, "*batch"]:
    """Mean enstrophy ``<w^2> / 2``."""
    return jnp.mean(jnp.asarray(w) ** 2, axis=(-2, -1)) / 2
