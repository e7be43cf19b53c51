"""Accuracy of the guidance rules against a closed-form Gaussian posterior.

Prior ``x ~ N(m, P)`` in D = 8 dimensions (a random correlated ``P``) with its exact
denoiser; every other component observed, ``y = x[::2] + e``, ``e ~ N(0, s^2 I)``, for three
noise levels ``s``.  Each guidance drives the reference sampler (EDMSchedule(2e-5, 88, 6),
32 levels, 3rd-order Adams-Bashforth, no corrector) through `assimilax.posterior_denoiser`;
N = 20000 draws are compared with the exact posterior ``N(m_y, P_y)``:

- mean error: ``max_j |mean_j - m_y,j| / sqrt(P_y,jj)`` (in posterior standard deviations);
- cov error: ``||C - P_y||_F / ||P_y||_F``;
- KL: ``KL(N(mean, C) || N(m_y, P_y))`` of the Gaussian fitted to the draws.

The "exact draws" row gives the Monte Carlo floor of each metric at this N.  Float64, CPU.

Usage: ``python bench/guidance_accuracy.py OUTPUT.md [--n 20000]``
"""

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402

import assimilax as ax  # noqa: E402

D = 8
STDS = (0.1, 0.3, 1.0)
METHODS = {
    "MMPS, LU (exact solve)": ax.MMPS(lx.LU()),
    "MMPS, CG k=1": ax.MMPS(iterations=1),
    "MMPS, CG k=3": ax.MMPS(iterations=3),
    "DPS (scale 1)": ax.DPS(1.0),
    "Pseudo-inverse (gamma 1)": ax.PseudoInverse(1.0),
}


def problem(std, seed=0):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(D, D))
    P = L @ L.T / D + 0.1 * np.eye(D)
    m = rng.normal(size=D)
    H = np.eye(D)[::2]
    x = m + np.linalg.cholesky(P) @ rng.normal(size=D)
    y = H @ x + std * rng.normal(size=H.shape[0])
    R = std**2 * np.eye(H.shape[0])
    S = H @ P @ H.T + R
    K = np.linalg.solve(S, H @ P).T
    return m, P, y, m + K @ (y - H @ m), P - K @ H @ P


def metrics(x, m_y, P_y):
    mean, C = x.mean(0), np.cov(x.T)
    mean_err = np.max(np.abs(mean - m_y) / np.sqrt(np.diag(P_y)))
    cov_err = np.linalg.norm(C - P_y) / np.linalg.norm(P_y)
    Pi = np.linalg.inv(P_y)
    d = m_y - mean
    kl = 0.5 * (np.trace(Pi @ C) + d @ Pi @ d - D + np.linalg.slogdet(P_y)[1] - np.linalg.slogdet(C)[1])
    return mean_err, cov_err, kl


def draws(guidance, m, P, y, std, n, key):
    den = ax.GaussianDenoiser(P)
    mean = jnp.asarray(m)
    observation = ax.ObservationModel(ax.Selection.every(2, D), ax.DiagonalGaussianNoise(std, D // 2))
    denoise = ax.posterior_denoiser(
        guidance, lambda x, s: den(x, s, mean), jnp.asarray(y), observation.operator, observation.noise
    )
    sampler = ax.Sampler(ax.EDMSchedule(2e-5, 88.0, 6.0), 32, ax.AdamsBashforth3())  # the reference, no corrector

    @jax.jit
    def run(keys):
        return jax.vmap(lambda k: sampler.sample(k, denoise, lambda kk: jax.random.normal(kk, (D,))))(keys)

    return np.asarray(run(jax.random.split(key, n)))


def _fmt(value, digits):
    return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.1e}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="file to write the markdown table to")
    parser.add_argument("--n", type=int, default=20000, help="draws per configuration")
    args = parser.parse_args()

    header = "| guidance | " + " | ".join(
        f"mean err (s={s}) | cov err (s={s}) | KL (s={s})" for s in STDS
    ) + " |"
    rule = "|" + "---|" * (1 + 3 * len(STDS))
    rows = {name: [] for name in ["exact draws (MC floor)", *METHODS]}
    start = time.perf_counter()
    for std in STDS:
        m, P, y, m_y, P_y = problem(std)
        rng = np.random.default_rng(1)
        rows["exact draws (MC floor)"].append(metrics(rng.multivariate_normal(m_y, P_y, size=args.n), m_y, P_y))
        for name, guidance in METHODS.items():
            x = draws(guidance, m, P, y, std, args.n, jax.random.key(2))
            rows[name].append(metrics(x, m_y, P_y) if np.all(np.isfinite(x)) else (np.nan,) * 3)
    lines = [
        f"Guidance accuracy: D = {D}, every other component observed with noise std s, "
        f"{args.n} draws, reference sampler (EDMSchedule(2e-5, 88, 6), 32 levels, AB3), float64.",
        "",
        header,
        rule,
    ]
    for name, values in rows.items():
        cells = " | ".join(f"{_fmt(a, 3)} | {_fmt(b, 3)} | {_fmt(c, 4)}" for a, b, c in values)
        lines.append(f"| {name} | {cells} |")
    diverged = [name for name, values in rows.items() if any(abs(v) >= 100 for v in np.ravel(values))]
    if diverged:
        lines += ["", "Values >= 100 mean the sampler diverged (" + ", ".join(diverged) + ")."]
    table = "\n".join(lines) + "\n"
    print(table)
    print(f"({time.perf_counter() - start:.0f} s)")
    with open(args.output, "w") as f:
        f.write(table)


if __name__ == "__main__":
    main()
