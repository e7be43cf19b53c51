"""Lorenz-96 dynamics in JAX: tendency, RK4 map, stochastic transition, trajectories.

The model (Lorenz, 1996) on a periodic ring of ``d`` variables (default 40):

    dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F,    x_{i+d} = x_i,    F = 8.

One *observation interval* is ``steps`` fourth-order Runge-Kutta steps of size ``dt``
(default one step of ``dt = 0.05``, "6 hours").  The stochastic model adds Gaussian model
noise once per interval:

    x[k+1] = M(x[k]) + q eps,    eps ~ N(0, I),

so that ``p(x[k+1] | x[k]) = N(M(x[k]), q^2 I)`` exactly; [`oracle_emulator`][] wraps this
transition as an exact [`assimilax.GaussianTransitionEmulator`][assimilax.exact_emulators.GaussianTransitionEmulator].
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

import assimilax

__all__ = [
    "Lorenz96",
    "advection",
    "oracle_emulator",
    "simulate",
    "stochastic_step",
    "tendency",
    "trajectory_dataset",
]


def advection(x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
    """The quadratic advection term ``a_i = (x_{i+1} - x_{i-2}) x_{i-1}`` (periodic).

    It conserves the energy ``E = sum_i x_i^2 / 2``: ``sum_i x_i a_i = 0`` identically.
    """
    return (jnp.roll(x, -1, axis=-1) - jnp.roll(x, 2, axis=-1)) * jnp.roll(x, 1, axis=-1)


def tendency(x: Float[Array, "*batch d"], forcing: float = 8.0) -> Float[Array, "*batch d"]:
    """Lorenz-96 right-hand side ``dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F``."""
    return advection(x) - x + forcing


class Lorenz96(eqx.Module):
    """The deterministic Lorenz-96 map over one observation interval, ``x[k] -> M(x[k])``.

    ``M`` is ``steps`` classic fourth-order Runge-Kutta steps of size ``dt``:

        k1 = f(x), k2 = f(x + dt/2 k1), k3 = f(x + dt/2 k2), k4 = f(x + dt k3),
        x <- x + dt/6 (k1 + 2 k2 + 2 k3 + k4).

    RK4 is written by hand rather than with `diffrax.diffeqsolve`: diffrax ships no classic
    RK4 tableau, the Lorenz-96 literature (and the data this emulator is compared with) uses
    exactly this fixed-step scheme, and one explicit step is four lines that jit, vmap and
    differentiate without any solver machinery.  All fields are static, so the module is a
    pytree without leaves and can be passed through `jax.jit` freely.

    **Arguments:**

    - `dim`: number of variables ``d`` (at least 4).
    - `forcing`: ``F``.
    - `dt`: the RK4 step.
    - `steps`: RK4 steps per observation interval.
    """

    dim: int = eqx.field(static=True, default=40)
    forcing: float = eqx.field(static=True, default=8.0)
    dt: float = eqx.field(static=True, default=0.05)
    steps: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        if self.dim < 4:
            raise ValueError(f"Lorenz-96 needs dim >= 4, got {self.dim}.")
        if self.steps < 1:
            raise ValueError(f"Lorenz-96 needs steps >= 1, got {self.steps}.")
        if self.dt <= 0:
            raise ValueError(f"Lorenz-96 needs dt > 0, got {self.dt}.")

    def tendency(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        """``dx/dt`` at ``x``."""
        return tendency(x, self.forcing)

    def rk4_step(self, x: Float[Array, "*batch d"], dt: Float[ArrayLike, ""] | None = None) -> Float[Array, "*batch d"]:
        """One classic RK4 step of size `dt` (default ``self.dt``)."""
        h = self.dt if dt is None else dt
        k1 = self.tendency(x)
        k2 = self.tendency(x + 0.5 * h * k1)
        k3 = self.tendency(x + 0.5 * h * k2)
        k4 = self.tendency(x + h * k3)
        return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    def __call__(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        """``M(x)``: `steps` RK4 steps of size `dt`."""
        for _ in range(self.steps):
            x = self.rk4_step(x)
        return x


def stochastic_step(
    model: Lorenz96, key: PRNGKeyArray, x: Float[Array, "*batch d"], q: float
) -> Float[Array, "*batch d"]:
    """``x[k+1] = M(x[k]) + q eps``, ``eps ~ N(0, I)``."""
    return model(x) + q * jax.random.normal(key, x.shape, x.dtype)


def simulate(
    key: PRNGKeyArray,
    num_steps: int,
    *,
    model: Lorenz96 = Lorenz96(),
    q: float = 0.3,
    spinup: int = 1000,
    x0: Float[ArrayLike, " d"] | None = None,
) -> Float[Array, "num_steps d"]:
    """A trajectory ``x[1..num_steps]`` of the stochastic model, after a spin-up.

    Unless `x0` is given, the spin-up starts from the unstable fixed point ``x = F``
    perturbed by ``N(0, 0.01^2 I)`` and runs `spinup` intervals of the stochastic model
    (with ``q = 0`` this is the usual deterministic spin-up onto the attractor).  Uses
    `jax.lax.scan`; vmap over `key` for an ensemble of independent trajectories.
    """
    k_init, k_spin, k_run = jax.random.split(key, 3)
    if x0 is None:
        x0 = model.forcing + 0.01 * jax.random.normal(k_init, (model.dim,))
    x0 = jnp.asarray(x0, dtype=float)
    if x0.shape != (model.dim,):
        raise ValueError(f"simulate: x0 has shape {x0.shape}, expected ({model.dim},).")

    def body(x, k):
        x = stochastic_step(model, k, x, q)
        return x, x

    x, _ = jax.lax.scan(body, x0, jax.random.split(k_spin, spinup)) if spinup > 0 else (x0, None)
    _, xs = jax.lax.scan(body, x, jax.random.split(k_run, num_steps))
    return xs


def trajectory_dataset(
    xs: Float[ArrayLike, "time d"], *, model: Lorenz96 = Lorenz96(), q: float | None = None
) -> xr.Dataset:
    """Wrap a trajectory as an `xarray.Dataset` with variable ``x`` of dims ``(time, variable)``.

    ``time`` is in model time units (``k * steps * dt``), ``variable`` is the grid index.
    """
    xs = np.asarray(xs)
    if xs.ndim != 2:
        raise ValueError(f"trajectory_dataset expects a (time, d) array, got shape {xs.shape}.")
    n, d = xs.shape
    attrs = {"model": "Lorenz-96", "forcing": model.forcing, "dt": model.dt, "steps": model.steps}
    if q is not None:
        attrs["q"] = q
    return xr.Dataset(
        {"x": (("time", "variable"), xs)},
        coords={
            "time": np.arange(1, n + 1) * model.steps * model.dt,
            "variable": np.arange(d),
        },
        attrs=attrs,
    )


def oracle_emulator(
    q: float = 0.3,
    dim: int = 40,
    *,
    forcing: float = 8.0,
    dt: float = 0.05,
    steps: int = 1,
) -> assimilax.GaussianTransitionEmulator:
    """The exact emulator of the stochastic model: ``p(x[k+1] | x[k]) = N(M(x[k]), q^2 I)``."""
    if q <= 0:
        raise ValueError(f"oracle_emulator needs q > 0, got {q}.")
    model = Lorenz96(dim=dim, forcing=forcing, dt=dt, steps=steps)
    return assimilax.GaussianTransitionEmulator(
        transition=model, covariance=q**2 * jnp.eye(dim)
    )
