"""Drawing the next state from an emulator, unconditionally or guided by an observation.

``x[k+1] ~ p(x | h)`` runs the sampler on the emulator's denoiser; ``x[k+1] ~ p(x | h, y)``
runs it on the posterior denoiser built by a guidance rule, which sees the observation
operator composed with the emulator's target-to-state map, ``z -> A(to_state(z, h))``.
"""

import jax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .emulators import AbstractEmulator
from .errors import InvalidArgument
from .guidance import AbstractGuidance, posterior_denoiser
from .observations import ObservationModel
from .sampling import Sampler
from .sharding import map_particles


def sample_transition(
    emulator: AbstractEmulator,
    sampler: Sampler,
    key: PRNGKeyArray,
    history: Float[Array, "m d"],
    forcing: PyTree = None,
    guidance: AbstractGuidance | None = None,
    observation: ObservationModel | None = None,
    y: Float[Array, " p"] | None = None,
) -> Float[Array, " d"]:
    """One draw of ``x[k+1]`` from ``p(x | h)`` or, with `guidance`, from ``p(x | h, y)``.

    **Arguments:**

    - `emulator`, `sampler`: the transition model and how to sample it.
    - `key`: a PRNG key.
    - `history`: ``h[k]``, shape ``(m, d)``, oldest first.
    - `forcing`: the forcings the emulator's context needs (or None).
    - `guidance`, `observation`, `y`: give all three for a guided (posterior) draw.
    """
    context = emulator.context(history, forcing)

    def denoise(z, sigma):
        return emulator.denoiser(z, sigma, context)

    if guidance is not None:
        if observation is None or y is None:
            raise InvalidArgument("A guided transition needs both `observation` and `y`.")

        def observe(z):
            return observation.operator(emulator.to_state(z, history))

        denoise = posterior_denoiser(guidance, denoise, y, observe, observation.noise)
    z = sampler.sample(key, denoise, emulator.noise)
    return emulator.to_state(z, history)


def forecast_ensemble(
    emulator: AbstractEmulator,
    sampler: Sampler,
    key: PRNGKeyArray,
    particles: Float[Array, "n m d"],
    forcing: PyTree = None,
) -> Float[Array, "n d"]:
    """``x_i ~ p(x | h_i)`` for every member, unguided; member ``i`` uses
    ``split(key, n)[i]``, and the work goes through [`assimilax.sharding.map_particles`][]
    (chunked, split over the devices of the active layout)."""
    n = particles.shape[0]
    return map_particles(
        lambda k, h: sample_transition(emulator, sampler, k, h, forcing),
        jax.random.split(key, n),
        particles,
    )
