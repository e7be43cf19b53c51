"""Kolmogorov flow: 2-D forced turbulence (vorticity, periodic 64 x 64), with exponax.

- [`KolmogorovFlow`][]: the exponax ETDRK2 map over one observation interval (flat states);
  [`simulate`][] makes trajectories of the stochastic model ``x[k+1] = M(x[k]) + q eps``;
  [`oracle_emulator`][] is its exact Gaussian emulator; [`energy_spectrum`][], [`energy`][],
  [`enstrophy`][] are the flow diagnostics.
- [`KolmogorovUNet`][]: a small conditional U-Net denoiser network.
- [`KolmogorovEmulator`][] and [`load_emulator`][]: the trained emulator (q = 0.5).
"""

from .dynamics import (
    KolmogorovFlow as KolmogorovFlow,
    energy as energy,
    energy_spectrum as energy_spectrum,
    enstrophy as enstrophy,
    laminar_state as laminar_state,
    oracle_emulator as oracle_emulator,
    simulate as simulate,
    stochastic_step as stochastic_step,
    to_flat as to_flat,
    to_grid as to_grid,
)
