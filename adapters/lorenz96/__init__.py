"""Lorenz-96: dynamics, data, and a small trained diffusion emulator shipped with weights.

- [`Lorenz96`][]: the RK4 map over one observation interval; [`simulate`][] and
  [`trajectory_dataset`][] make trajectories of the stochastic model
  ``x[k+1] = M(x[k]) + q eps``; [`oracle_emulator`][] is its exact Gaussian emulator.
- [`Lorenz96Network`][]: a periodic-convolution conditional denoiser network.
- [`Lorenz96Emulator`][] and [`load_emulator`][]: the trained emulator (q = 0.3).
"""

from .dynamics import (
    Lorenz96 as Lorenz96,
    advection as advection,
    oracle_emulator as oracle_emulator,
    simulate as simulate,
    stochastic_step as stochastic_step,
    tendency as tendency,
    trajectory_dataset as trajectory_dataset,
)
from .emulator import (
    Lorenz96Emulator as Lorenz96Emulator,
    build_emulator as build_emulator,
    load_emulator as load_emulator,
    save_emulator as save_emulator,
)
from .network import Lorenz96Network as Lorenz96Network
