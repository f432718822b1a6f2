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
