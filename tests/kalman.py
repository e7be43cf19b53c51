"""Reference Kalman filter (NumPy, float64) for the exact-filter tests.

For ``x[k+1] = F x[k] + w``, ``w ~ N(0, Q)``, ``y[k] = H x[k] + e``, ``e ~ N(0, R)``,
with ``x[0] ~ N(m0, P0)`` and the first observation at ``k = 1``:

    predict:  m- = F m,  P- = F P F^T + Q
    update:   S = H P- H^T + R,  K = P- H^T S^{-1},  m = m- + K (y - H m-),  P = (I - K H) P-
    evidence: log p(y[k] | y[:k]) = log N(y[k]; H m-, S)

Missing (NaN) observations are dropped from ``y``, ``H`` and ``R``.
"""

import numpy as np


def kalman_filter(F, Q, H, R, m0, P0, ys):
    """Return filtered means ``(T, d)``, covariances ``(T, d, d)`` and ``log p(y_t | y_<t)``."""
    m, P = np.asarray(m0, float), np.asarray(P0, float)
    means, covs, log_evidence = [], [], []
    for y in np.asarray(ys, float):
        m = F @ m
        P = F @ P @ F.T + Q
        obs = np.isfinite(y)
        h, r, yo = H[obs], R[np.ix_(obs, obs)], y[obs]
        S = h @ P @ h.T + r
        K = np.linalg.solve(S, h @ P).T
        innovation = yo - h @ m
        m = m + K @ innovation
        P = P - K @ h @ P
        P = 0.5 * (P + P.T)
        _, logdet = np.linalg.slogdet(S)
        quad = innovation @ np.linalg.solve(S, innovation)
        log_evidence.append(-0.5 * (quad + logdet + obs.sum() * np.log(2 * np.pi)))
        means.append(m)
        covs.append(P)
    return np.array(means), np.array(covs), np.array(log_evidence)


def gaussian_posterior(m, P, H, R, y):
    """Closed-form posterior of ``x ~ N(m, P)`` given ``y = H x + e``, ``e ~ N(0, R)``."""
    S = H @ P @ H.T + R
    K = np.linalg.solve(S, H @ P).T
    return m + K @ (y - H @ m), P - K @ H @ P
