"""Per-pixel validation statistics: the between/within-galaxy decomposition on known residuals."""

import numpy as np
import pytest

from galdust.fir.data import TARGETS
from galdust.fir.evaluate import summarise_pixels


def test_between_and_within_galaxy_scatter_are_recovered():
    rng = np.random.default_rng(0)
    rows = []
    offsets = rng.normal(0.1, 0.3, 400)  # galaxy-level error: bias 0.1, σ 0.3
    for j, c in enumerate(offsets):
        n = int(rng.integers(20, 2000))  # very different pixel counts: every galaxy must weigh the same
        truth = rng.normal(0, 0.2, n)
        pred = truth + c + rng.normal(0, 0.05, n)  # within-galaxy error 0.05, slope 1
        d = {t: truth for t in TARGETS}
        rows.append(dict(n_pix=n, truth=d, pred={t: pred for t in TARGETS}, sigma={t: np.full(n, 0.3) for t in TARGETS},
                         template_truth={t: (0.0, 0.0) for t in TARGETS}, template_pred={t: (c, c) for t in TARGETS}))
    s = summarise_pixels(rows)["Td"]
    assert s["n_gal"] == 400
    assert s["bias"] == pytest.approx(0.1, abs=0.04)
    assert s["between"] == pytest.approx(0.3, rel=0.1)
    assert s["within"] == pytest.approx(0.05, rel=0.05)
    assert s["truth_within"] == pytest.approx(0.2, rel=0.05)
    assert s["within_slope"] == pytest.approx(1.0, abs=0.02)
    assert s["rmse"] == pytest.approx(np.sqrt(0.1**2 + 0.3**2 + 0.05**2), rel=0.1)
    assert s["template_rmse"] == pytest.approx(np.sqrt(np.mean(offsets**2)), rel=1e-6)


def test_bias_splits_into_the_templates_global_errors_and_what_predicting_per_pixel_adds():
    """Each pixel's truth mixes two template galaxies; the global model errs by e_A, e_B on them
    (large, galaxy to galaxy), and predicting per pixel adds +0.07 on the mixed pixels only: the
    paired split must give template_bias = the mix of e_A and e_B, pixel_bias = what was added,
    +0.07 on mixed and 0 on pure pixels, to a small fraction of the between-galaxy scatter."""
    rng = np.random.default_rng(1)
    rows, expected, added = [], [], []
    for _ in range(60):
        n = int(rng.integers(50, 500))
        mix = rng.uniform(0, 1, n)
        mixed = (mix >= 0.1) & (mix <= 0.9)
        e_a, e_b = rng.normal(0.1, 0.4, 2)  # the global model's errors on the two templates
        truth = rng.normal(0, 0.2, n)
        pred = truth + (1 - mix) * e_a + mix * e_b + 0.07 * mixed + rng.normal(0, 0.05, n)
        expected.append(np.mean((1 - mix) * e_a + mix * e_b))
        added.append(0.07 * mixed.mean())
        rows.append(dict(n_pix=n, mix=mix, truth={t: truth for t in TARGETS}, pred={t: pred for t in TARGETS},
                         sigma={t: np.full(n, 0.3) for t in TARGETS},
                         template_truth={t: (1.0, 2.0) for t in TARGETS},
                         template_pred={t: (1.0 + e_a, 2.0 + e_b) for t in TARGETS}))
    s = summarise_pixels(rows)["log_sMd"]
    assert s["template_bias"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert s["bias"] == pytest.approx(s["template_bias"] + s["pixel_bias"], abs=1e-12)
    assert s["pixel_bias"] == pytest.approx(np.mean(added), abs=0.004)
    assert s["pixel_bias_mixed"] == pytest.approx(0.07, abs=0.004)
    assert s["pixel_bias_pure"] == pytest.approx(0.0, abs=0.006)
    assert s["pixel_bias_err"] < 0.005 < s["bias_err"]  # pairing removes the templates' scatter
    # rows without the mix (older callers) give the plain statistics only
    for r in rows:
        del r["mix"]
    assert "pixel_bias" not in summarise_pixels(rows)["log_sMd"]


def test_templates_are_predicted_from_the_mock_bands_only():
    from galdust.fir.data import UVMIR_BANDS, Photometry
    from galdust.fir.model import build_features, feature_names, features_in_bands

    rng = np.random.default_rng(2)
    flux = rng.uniform(0.01, 0.2, (3, len(UVMIR_BANDS)))
    phot = Photometry(["a", "b", "c"], flux, 0.05 * flux, np.zeros(flux.shape, bool))
    bands = ["sdss_g", "sdss_r", "wise_w1", "wise_w3"]
    X = features_in_bands(phot, [0, 2], np.isin(UVMIR_BANDS, bands))
    full, _ = build_features(phot)
    names = feature_names()
    kept = 0
    for j, n in enumerate(names):
        used = [b for b in UVMIR_BANDS if b in n]  # the bands a feature is built from (besides W1)
        if all(b in bands for b in used):
            assert np.allclose(X[:, j], full[[0, 2], j]), n
            kept += 1
        else:
            assert np.all(np.isnan(X[:, j])), n
    assert kept == 6  # log and linear ratios to W1 of g, r and W3
    assert np.allclose(X[:, names.index("log_sdss_r_w1")], np.log10(flux[[0, 2], UVMIR_BANDS.index("sdss_r")]
                                                                      / flux[[0, 2], UVMIR_BANDS.index("wise_w1")]))
