"""Bring your own Flax network: train a small diffusion emulator and assimilate with it.

1. A linear-Gaussian system ``x[k+1] = F x[k] + w``, ``w ~ N(0, Q)`` in ``D = 4``
   dimensions provides training pairs; the emulator's diffusion target is the residual
   ``z = x[k+1] - x[k]`` (the GenCast convention), conditioned on ``x[k]``.
2. A small Flax **linen** network ``F_theta(x_in, c_noise, context)`` is the raw network;
   it becomes a denoiser through ``EDMPreconditioned(network=as_network(module, params))``
   and is fitted for a few hundred Adam steps to the EDM denoising loss
   ``E lambda(sigma) |D(z + sigma eps, sigma; x) - z|^2``,
   ``lambda = (sigma^2 + sd^2) / (sigma sd)^2``.  The Flax params are the only inexact-array
   leaves of the denoiser, so ``eqx.partition`` / ``optax`` train them directly.
3. The transition is Gaussian, so the exact denoiser is known
   (``assimilax.GaussianDenoiser(Q)`` with context ``(F - I) x``): the script prints how
   close the learned one is, noise level by noise level.
4. The trained network, inside a custom `assimilax.AbstractEmulator`, drives the FA-APF
   (MMPS guidance, default Dirac weights and ESS-band tempering) with every other
   component observed.  The analysis is compared with the Kalman filter (the exact
   posterior) and with the same filter run on the exact emulator: the tempering and the
   Dirac weights bias both FA-APF runs alike, the learned emulator adds little to that.

Run it with ``python examples/flax_denoiser.py`` (about 15-20 s on an idle 2-core CPU,
mostly compilation).
"""

import time

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PyTree

import assimilax as ax
from assimilax import metrics
from assimilax.interop import as_network

D = 4  # state size
STEPS, BATCH, LR = 400, 256, 3e-3
SEED = 0
N_PARTICLES, CYCLES, OBS_STD = 64, 10, 0.5


# --------------------------------------------------------------------------------------
# The system
# --------------------------------------------------------------------------------------


def make_system():
    """``F``: two damped rotations; ``Q``: a correlated covariance; ``P``: the climatology."""
    rot = lambda a: np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])  # noqa: E731
    F = np.zeros((D, D))
    F[:2, :2], F[2:, 2:] = 0.95 * rot(0.3), 0.9 * rot(-0.7)
    L = np.array(
        [[0.4, 0.0, 0.0, 0.0], [0.1, 0.3, 0.0, 0.0], [0.0, 0.1, 0.35, 0.0], [0.05, 0.0, 0.1, 0.3]]
    )
    Q = L @ L.T
    P = Q.copy()  # stationary covariance: P = F P F^T + Q, by fixed-point iteration
    for _ in range(500):
        P = F @ P @ F.T + Q
    return F.astype(np.float32), Q.astype(np.float32), P.astype(np.float32)


# --------------------------------------------------------------------------------------
# The raw network: a Flax linen MLP with the EDM signature F(x_in, c_noise, context)
# --------------------------------------------------------------------------------------


class MLP(nn.Module):
    """``F = f(context, c_noise) + gate(sigma) g(x_in, context, c_noise)``, two small MLPs.

    The optimal EDM network depends on ``x_in`` less and less as the noise grows (its
    Jacobian in ``x_in`` decays like ``1 / sigma``), while MMPS guidance reads the Tweedie
    covariance ``sigma^2 J`` of the denoiser, in which an error ``delta`` of that Jacobian
    is amplified to ``sigma * sigma_data * delta``: at ``sigma = 20`` a plain MLP's
    Jacobian, which the loss hardly constrains there, makes ``R + sigma^2 A J A^T``
    indefinite and the guided samples diverge.  So the ``x_in`` path is scaled by
    ``gate = 1 / sqrt(1 + sigma^2)`` (``sigma = exp(4 c_noise)``) and starts from zero
    output, while the mean path sees only the context and the noise level.
    """

    width: int = 64
    n_freq: int = 8

    @nn.compact
    def __call__(self, x_in, c_noise, context):
        freqs = 2.0 ** jnp.arange(self.n_freq)
        emb = jnp.concatenate([jnp.sin(freqs * c_noise), jnp.cos(freqs * c_noise)])
        g = jnp.concatenate([context, emb])
        g = nn.silu(nn.Dense(self.width)(g))
        g = nn.silu(nn.Dense(self.width)(g))
        h = jnp.concatenate([x_in, context, emb])
        h = nn.silu(nn.Dense(self.width)(h))
        h = nn.silu(nn.Dense(self.width)(h))
        gate = 1.0 / jnp.sqrt(1.0 + jnp.exp(8.0 * c_noise))
        zero_init = nn.initializers.zeros
        d = x_in.shape[-1]
        return nn.Dense(d)(g) + gate * nn.Dense(d, kernel_init=zero_init)(h)


class FlaxEmulator(ax.AbstractEmulator):
    """``p(x[k+1] | x[k])`` through the residual target ``z = x[k+1] - x[k]``, given ``x[k]``."""

    denoiser: ax.EDMPreconditioned
    state_size: int = eqx.field(static=True)
    history_length: int = eqx.field(static=True, default=1)

    def context(self, history: Float[Array, "1 d"], forcing: PyTree = None) -> Float[Array, " d"]:
        del forcing
        return history[-1]

    def to_state(self, z: Float[Array, " d"], history: Float[Array, "1 d"]) -> Float[Array, " d"]:
        return history[-1] + z

    def to_target(self, x: Float[Array, " d"], history: Float[Array, "1 d"]) -> Float[Array, " d"]:
        return x - history[-1]


def edm_loss(denoiser, x, z, key):
    """Monte Carlo EDM loss on a batch of contexts ``x`` and targets ``z = x_next - x``."""
    k_sigma, k_eps = jax.random.split(key)
    n = x.shape[0]
    # log sigma ~ N(-1.2, 1.2^2) (Karras et al.), widened by a log-uniform half on
    # [1e-3, 30] so the top levels of the sampler are seen in training too.
    k1, k2, k3 = jax.random.split(k_sigma, 3)
    log_normal = -1.2 + 1.2 * jax.random.normal(k1, (n,))
    log_uniform = jax.random.uniform(k2, (n,), minval=jnp.log(1e-3), maxval=jnp.log(30.0))
    log_sigma = jnp.where(jax.random.bernoulli(k3, 0.5, (n,)), log_normal, log_uniform)
    sigma = jnp.exp(log_sigma)
    z_t = z + sigma[:, None] * jax.random.normal(k_eps, z.shape)
    denoised = jax.vmap(denoiser)(z_t, sigma, x)
    sd = denoiser.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    return jnp.mean(weight * jnp.mean((denoised - z) ** 2, axis=-1))


def train(denoiser, F, Q, P, key):
    """Fit the network's params (the only inexact-array leaves) with Adam on fresh data."""
    chol_p, chol_q = jnp.linalg.cholesky(P), jnp.linalg.cholesky(Q)
    params, static = eqx.partition(denoiser, eqx.is_inexact_array)
    optimiser = optax.adam(optax.cosine_decay_schedule(LR, STEPS))
    opt_state = optimiser.init(params)

    @jax.jit
    def step(params, opt_state, key):
        k_x, k_w, k_loss = jax.random.split(key, 3)
        x = jax.random.normal(k_x, (BATCH, D)) @ chol_p.T
        x_next = x @ F.T + jax.random.normal(k_w, (BATCH, D)) @ chol_q.T
        loss, grads = jax.value_and_grad(
            lambda p: edm_loss(eqx.combine(p, static), x, x_next - x, k_loss)
        )(params)
        updates, opt_state = optimiser.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    for i in range(STEPS):
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key, i))
        if i % 150 == 0 or i == STEPS - 1:
            print(f"  step {i:4d}  EDM loss {float(loss):.4f}")
    return eqx.combine(params, static)


def fit_quality(learned, F, Q, P, key):
    """RMSE of the learned denoiser against the exact one, beside the exact one's own error.

    The exact denoiser of the residual ``z = x' - x ~ N((F - I) x, Q)`` is the Gaussian
    denoiser of covariance ``Q`` with context ``(F - I) x``.
    """
    exact = ax.GaussianDenoiser(Q)
    G = F - jnp.eye(D)
    k_x, k_w, k_e = jax.random.split(key, 3)
    n = 2000
    x = jax.random.normal(k_x, (n, D)) @ jnp.linalg.cholesky(P).T
    z = x @ G.T + jax.random.normal(k_w, (n, D)) @ jnp.linalg.cholesky(Q).T
    eps = jax.random.normal(k_e, (n, D))
    print("  sigma    RMSE(learned - exact)   RMSE(exact - truth)")
    for sigma in (0.01, 0.1, 0.3, 1.0, 3.0, 20.0):
        z_t = z + sigma * eps
        d_learned = jax.vmap(lambda zt, c: learned(zt, sigma, c))(z_t, x)
        d_exact = jax.vmap(lambda zt, c: exact(zt, sigma, G @ c))(z_t, x)
        gap = float(jnp.sqrt(jnp.mean((d_learned - d_exact) ** 2)))
        floor = float(jnp.sqrt(jnp.mean((d_exact - z) ** 2)))
        print(f"  {sigma:6.2f}   {gap:10.4f}              {floor:10.4f}")


# --------------------------------------------------------------------------------------
# Assimilation
# --------------------------------------------------------------------------------------


def kalman_filter(F, Q, H, R, m0, P0, ys):
    """Analysis means ``(T, D)`` and variances ``(T, D)`` of the exact filter."""
    means, variances = [], []
    m, P = m0, P0
    for y in ys:
        m, P = F @ m, F @ P @ F.T + Q
        K = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
        m, P = m + K @ (y - H @ m), P - K @ H @ P
        means.append(m)
        variances.append(np.diag(P))
    return np.array(means), np.array(variances)


def main():
    t0 = time.perf_counter()
    key = jax.random.key(SEED)
    k_init, k_train, k_eval, k_truth, k_particles, k_filter = jax.random.split(key, 6)
    F, Q, P = make_system()
    G = F - np.eye(D, dtype=np.float32)
    # std of the target z = x[k+1] - x[k]: Cov z = (F - I) P (F - I)^T + Q.
    sigma_data = float(np.sqrt(np.mean(np.diag(G @ P @ G.T + Q))))

    module = MLP()
    params = module.init(k_init, jnp.zeros(D), jnp.zeros(()), jnp.zeros(D))
    denoiser = ax.EDMPreconditioned(network=as_network(module, params), sigma_data=sigma_data)
    print(f"Training a Flax linen MLP ({STEPS} Adam steps, batch {BATCH}):")
    denoiser = train(denoiser, jnp.asarray(F), jnp.asarray(Q), jnp.asarray(P), k_train)
    print("Fit against the exact Gaussian denoiser:")
    fit_quality(denoiser, jnp.asarray(F), jnp.asarray(Q), jnp.asarray(P), k_eval)

    # Truth and observations of every other component.
    rng = np.random.default_rng(int(jax.random.randint(k_truth, (), 0, 2**30)))
    H = np.eye(D, dtype=np.float32)[::2]
    R = OBS_STD**2 * np.eye(D // 2, dtype=np.float32)
    x = np.linalg.cholesky(P) @ rng.normal(size=D)
    truth, ys = [], []
    for _ in range(CYCLES):
        x = F @ x + np.linalg.cholesky(Q) @ rng.normal(size=D)
        truth.append(x)
        ys.append(H @ x + OBS_STD * rng.normal(size=D // 2))
    truth, ys = np.array(truth, np.float32), np.array(ys, np.float32)

    observation = ax.ObservationModel(
        ax.Selection.every(2, D), ax.DiagonalGaussianNoise(OBS_STD, D // 2)
    )
    # 16 Karras levels from sigma = 20 (20x the target's std) down to 1e-3.
    sampler = ax.Sampler(schedule=ax.EDMSchedule(1e-3, 20.0, 7.0), n_levels=16)
    chol_p = jnp.linalg.cholesky(jnp.asarray(P))
    particles = jax.random.normal(k_particles, (N_PARTICLES, D)) @ chol_p.T
    kf, kf_var = kalman_filter(F, Q, H, R, np.zeros(D), P, ys)

    emulators = {
        "learned (Flax)": FlaxEmulator(denoiser=denoiser, state_size=D),
        "exact": ax.LinearGaussianEmulator(F, Q),
    }
    print(f"FA-APF, {N_PARTICLES} particles, {CYCLES} cycles, components 0 and 2 observed:")
    print("  emulator          RMSE(mean - truth)  RMSE(mean - Kalman)  spread   CRPS   min ESS")
    for name, emulator in emulators.items():
        filt = ax.FAAPF(
            emulator=emulator, observation=observation, sampler=sampler, guidance=ax.MMPS()
        )
        state = filt.init(particles)
        state, out = ax.filter_scan(filt, state, ys, k_filter)
        ens = out.particles  # (T, n, D)
        w = jnp.exp(out.log_weights)  # (T, n), uniform after an FA-APF step
        skill = float(jnp.mean(jax.vmap(metrics.skill)(ens, truth, w)))
        spread = float(jnp.mean(jax.vmap(metrics.spread)(ens, w)))
        crps = float(jnp.mean(jax.vmap(metrics.crps)(ens, truth, w)))
        mean = jax.vmap(metrics.ensemble_mean)(ens, w)
        gap = float(jnp.sqrt(jnp.mean((mean - kf) ** 2)))
        ess = float(jnp.min(out.diagnostics.ess))
        print(
            f"  {name:16s}  {skill:10.3f}          {gap:10.3f}         "
            f"{spread:6.3f}  {crps:6.3f}  {ess:6.1f}"
        )
    kf_skill = float(np.mean(np.sqrt(np.mean((kf - truth) ** 2, axis=-1))))
    kf_spread = float(np.mean(np.sqrt(np.mean(kf_var, axis=-1))))
    print(f"  Kalman filter     {kf_skill:10.3f}          {0.0:10.3f}         {kf_spread:6.3f}")
    print("(skill, spread, CRPS: per-cycle values averaged over the cycles)")
    print(f"Done in {time.perf_counter() - t0:.1f} s.")


if __name__ == "__main__":
    main()
