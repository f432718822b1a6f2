"""The global FIR model on a synthetic table with a known answer: accuracy, σ calibration, JSON I/O."""

import json

import numpy as np
import pytest

from galdust.fir.data import TARGETS
from galdust.fir.model import FIRModel, feature_names, metrics, train_model


def _table(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(feature_names()))).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan  # missing bands
    a = np.nan_to_num(X[:, 0])
    noise = 0.05 + 0.25 * (X[:, 1] > 0)  # heteroscedastic: σ depends on a feature
    Y = {t: 0.8 * a + noise * rng.normal(size=n) for t in TARGETS}
    return X, Y, noise


def test_forest_and_calibrated_sigma(tmp_path):
    X, Y, _ = _table(600, 0)
    m = train_model(X, Y, seed=1)
    Xt, Yt, noise_t = _table(400, 2)
    p = m.predict(Xt)
    for t in TARGETS:
        mu, sig = p[t]
        met = metrics(Yt[t], mu, sig, n_boot=100)
        assert met["rmse"] < 0.35 and met["r2"] > 0.8
        assert 0.6 < met["chi2"] < 1.6  # calibrated on held-out training rows
        # σ follows the heteroscedastic noise: larger where feature 1 > 0
        assert np.median(sig[noise_t > 0.1]) > 1.5 * np.median(sig[noise_t < 0.1])
    d = m.save(tmp_path / "model")
    meta = json.loads((d / "fir_model.json").read_text())
    assert meta["features"] == feature_names() and set(meta["scales"]) == set(TARGETS)
    assert all((d / f"{t}.forest.json").exists() and (d / f"{t}.sigma.json").exists() for t in TARGETS)
    m2 = FIRModel.load(d)
    p2 = m2.predict(Xt)
    for t in TARGETS:
        np.testing.assert_allclose(p2[t][0], p[t][0], rtol=1e-5)
        np.testing.assert_allclose(p2[t][1], p[t][1], rtol=1e-5)
    assert not list(d.glob("*.pkl")) and not list(d.glob("*.pickle"))


def test_per_pixel_training_weights_every_galaxy_once_and_keeps_galaxies_whole():
    """Two galaxies with the same colours: 1000 pixels at y = 0 and 10 pixels at y = 1. With 1/N_pix
    weights each galaxy counts once (prediction 0.5); without, the big one wins."""
    from galdust.fir.model import _folds

    rng = np.random.default_rng(0)
    n_f = len(feature_names())
    X = np.zeros((1010, n_f), np.float32) + rng.normal(0, 1e-3, (1010, n_f)).astype(np.float32)
    y = np.r_[np.zeros(1000), np.ones(10)]
    groups = np.r_[np.zeros(1000, int), np.ones(10, int)]
    w = np.r_[np.full(1000, 1 / 1000), np.full(10, 1 / 10)]
    Y = {t: y for t in TARGETS}
    m_w = train_model(X, Y, weights=w, groups=groups, seed=1)
    m_u = train_model(X, Y, seed=1)
    assert np.mean(m_w.predict(X[:5])["Td"][0]) == pytest.approx(0.5, abs=0.1)
    assert np.mean(m_u.predict(X[:5])["Td"][0]) < 0.1
    assert m_w.meta["per_pixel"] and not m_u.meta["per_pixel"]
    g = np.repeat(np.arange(20), 7)
    f = _folds(len(g), 4, 0, g)
    assert all(len(set(f[g == k])) == 1 for k in range(20)) and set(f) == {0, 1, 2, 3}
