"""The localised FA-APF observing |x| (issue 11's non-Gaussian case), on the Lorenz-96 job's
own truths (its own file, so that it runs beside the other Lorenz-96 accuracy tests)."""

import numpy as np

from test_local_fa_apf import _job_scores


def test_lorenz96_local_transport_beats_the_letkf_and_the_enkf_on_abs_observations():
    """Issue 11's non-Gaussian case on truths the settings were not chosen on: with ``|x|``
    observed (q = 0.3), the job's ``fa-apf-local-oracle`` (``auto``: the marginal transport
    with the transform's ranks, inflation 1.02, first-stage variance ``r + r / 2``) against
    the better of its LETKF and its EnKF (inflation 1.02) on the job's truths 11-13.
    Measured on 80 held-out benchmark truths (docs/benchmarks.md section 8): the ratio to
    the better baseline has median 0.92 and is below 1 on 79; here 0.990, 0.941, 0.875 (on
    truth 11 the LETKF is at its best, 0.798).  Bounds: mean ratio below 0.97 and every
    ratio below 1.02 (the issue's "below both on every truth" is measured in the benchmark,
    where it fails on 1 of 80 held-out truths; a fixed-key test within 1% of its bound would
    flip on float rounding, which changes these chaotic runs).  Spread/skill in [0.8, 1.3]:
    the flat first stage over-disperses, 1.13 +- 0.06 over 160 truths (largest 1.22; here
    1.17, 1.13, 1.14); and no drift."""
    seeds = (11, 12, 13)
    s = _job_scores(("fa-apf-local-oracle", "letkf"), seeds, observe="abs")
    enkf = _job_scores(("enkf",), seeds, observe="abs", inflation=1.02)["enkf"]
    local, letkf = s["fa-apf-local-oracle"], s["letkf"]
    ratio = local[:, 0] / np.minimum(letkf[:, 0], enkf[:, 0])
    assert ratio.mean() < 0.97 and np.all(ratio < 1.02), ratio
    assert np.all((0.8 < local[:, 1]) & (local[:, 1] < 1.3)), local[:, 1]
    assert np.all(local[:, 2] < 2.0), local[:, 2]
