"""The distilled per-pixel FIR MLP reproduces its teacher, handles missing bands, round-trips."""

import numpy as np
import pytest

from galdust.fir.data import UVMIR_BANDS, Photometry
from galdust.fir.fast import distill, distill_inputs, load_fast, save_fast
from galdust.fir.model import build_features, feature_names

W1 = UVMIR_BANDS.index("wise_w1")


def _phot(n=60, seed=0):
    """Hand-made galaxies: smooth SEDs with random slopes, some bands missing."""
    rng = np.random.default_rng(seed)
    lam = np.log10(np.array([0.15, 0.23, 0.35, 0.47, 0.62, 0.75, 0.89, 1.2, 1.6, 2.2, 3.4, 4.6, 12, 22, 3.6, 4.5,
                             5.8, 8.0]))
    a, b = rng.uniform(-1, 1.5, (n, 1)), rng.uniform(0, 1.5, (n, 1))
    logf = a * (lam - lam[W1]) - b * (lam - lam[W1]) ** 2 + rng.normal(0, 0.05, (n, 18))
    flux = 10.0**logf
    flux[rng.random(flux.shape) < 0.1] = np.nan
    flux[:, W1] = 1.0
    return Photometry([f"g{i}" for i in range(n)], flux, flux * 0.05, np.isnan(flux))


class AnalyticTeacher:
    """μ and σ known functions of the features (missing = 0 for μ; σ larger when FUV is missing)."""

    features = feature_names()

    def predict(self, X):
        f = np.where(np.isnan(X), 0.0, X)
        s = 0.1 + 0.1 * np.isnan(X[:, 0])
        return {"log_sLd": (0.5 * f[:, 2] - 0.3 * f[:, 12] - 1.0, s), "log_sMd": (0.4 * f[:, 11] - 2.5, s),
                "Td": (20.0 + 3.0 * f[:, 12] - 2.0 * f[:, 3], 10 * s)}


def test_distillation_inputs_cover_mixtures_noise_and_missing_bands():
    X = distill_inputs(_phot(), 5000, seed=1)
    assert X.shape == (5000, len(feature_names()))
    miss = np.isnan(X)
    assert 0.05 < miss[:, :17].mean() < 0.4  # real patterns + drop-outs
    names = feature_names()
    lg, ln = names.index("log_wise_w4_w1"), names.index("lin_wise_w4_w1")
    dropped = miss[:, lg]  # a band missing from the log features is still measured for the linear ones
    assert dropped.any() and np.isfinite(X[dropped, ln]).mean() > 0.3 and (X[dropped, ln] < 0).any()
    Xg = build_features(_phot())[0]  # the inputs span the galaxies' own feature ranges (and beyond)
    assert np.all(np.nanmin(X, 0) <= np.nanmin(Xg, 0) + 0.05) and np.all(np.nanmax(X, 0) >= np.nanmax(Xg, 0) - 0.05)


def test_student_reproduces_an_analytic_teacher_and_round_trips(tmp_path):
    teacher = AnalyticTeacher()
    student, meta = distill(teacher, _phot(), n=60_000, n_val=5_000, width=64, steps=3000, batch=1024, seed=0)
    fid = meta["fidelity"]
    for t in ("log_sLd", "log_sMd", "Td"):
        assert fid[t]["rms_dmu_over_sigma"] < 0.15, (t, fid[t])
        assert fid[t]["rms_dlnsigma"] < 0.15, (t, fid[t])
    X = distill_inputs(_phot(seed=3), 2000, seed=7)  # other galaxies than the distillation's
    p, q = student.predict(X), teacher.predict(X)
    assert np.sqrt(np.mean((p["Td"][0] - q["Td"][0]) ** 2)) < 0.3 * np.mean(q["Td"][1])
    assert np.all(np.isfinite(p["Td"][0])) and np.all(p["Td"][1] > 0)
    fuv_missing = np.isnan(X[:, 0])
    assert np.median(p["log_sLd"][1][fuv_missing]) == pytest.approx(0.2, rel=0.15)  # σ follows the teacher's
    assert np.median(p["log_sLd"][1][~fuv_missing]) == pytest.approx(0.1, rel=0.15)
    save_fast(tmp_path, student, meta)
    back = load_fast(tmp_path)
    assert np.array_equal(back.predict(X)["log_sMd"][0], p["log_sMd"][0])
    assert load_fast(tmp_path / "nothing") is None
    assert student.predict(X[:0])["Td"][0].shape == (0,)
