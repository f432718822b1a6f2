"""The global FIR model on a synthetic table with a known answer: accuracy, σ calibration, JSON I/O."""

import json

import numpy as np
import pytest

from galdust.fir.data import TARGETS
from galdust.fir.model import FIRModel, feature_names, metrics, train_model
from galdust.ml.trees import FitCache


def _table(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(feature_names()))).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan  # missing bands
    a = np.nan_to_num(X[:, 0])
    noise = 0.05 + 0.25 * (X[:, 1] > 0)  # heteroscedastic: σ depends on a feature
    Y = {t: 0.8 * a + noise * rng.normal(size=n) for t in TARGETS}
    return X, Y, noise


@pytest.mark.slow
def test_forest_and_calibrated_sigma(tmp_path):
    X, Y, _ = _table(600, 0)
    m = train_model(X, Y, seed=1, oof_folds=3)  # 3 folds (the default 5): the same code, 40 % less time
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
    from galdust.ml.trees import folds

    rng = np.random.default_rng(0)
    n_f = len(feature_names())
    X = np.zeros((1010, n_f), np.float32) + rng.normal(0, 1e-3, (1010, n_f)).astype(np.float32)
    y = np.r_[np.zeros(1000), np.ones(10)]
    groups = np.r_[np.zeros(1000, int), np.ones(10, int)]
    w = np.r_[np.full(1000, 1 / 1000), np.full(10, 1 / 10)]
    Y = {t: y for t in TARGETS}
    m_w = train_model(X, Y, weights=w, groups=groups, seed=1, oof_folds=3)
    m_u = train_model(X, Y, seed=1, oof_folds=3)
    assert np.mean(m_w.predict(X[:5])["Td"][0]) == pytest.approx(0.5, abs=0.1)
    assert np.mean(m_u.predict(X[:5])["Td"][0]) < 0.1
    assert m_w.meta["per_pixel"] and not m_u.meta["per_pixel"]
    g = np.repeat(np.arange(20), 7)
    f = folds(len(g), 4, 0, g)
    assert all(len(set(f[g == k])) == 1 for k in range(20)) and set(f) == {0, 1, 2, 3}


@pytest.mark.slow
def test_band_dropout_copies_teach_sigma_what_a_missing_band_costs(tmp_path):
    """Feature 0 carries the signal; training rows always have it. Test rows without it can only get
    the prior mean, so their error is large: σ learnt without copies misses that (χ² ≫ 1), σ learnt
    with copies that lack feature 0 covers it (χ² ≈ 1), and rows with all features keep their σ."""
    rng = np.random.default_rng(0)
    n_f = len(feature_names())

    def table(n):
        X = rng.normal(size=(n, n_f)).astype(np.float32)
        return X, {t: 0.8 * X[:, 0] + 0.05 * rng.normal(size=n) for t in TARGETS}

    X, Y = table(800)
    no_f0 = X.copy()
    no_f0[:, 0] = np.nan
    Xt, Yt = table(400)
    Xt_no_f0 = Xt.copy()
    Xt_no_f0[:, 0] = np.nan
    cache = FitCache(tmp_path / "fits")  # one training's fits, read back by the other where they are the same
    forests, sigmas = (lambda k=k: len(list((tmp_path / "fits").glob(f"*.{k}.json")))
                       for k in ("XGBRFRegressor", "Booster"))
    plain = train_model(X, Y, seed=1, cache=cache, oof_folds=3)
    n_forests, n_sigmas = forests(), sigmas()
    aug = train_model(X, Y, seed=1, augment=no_f0[None], cache=cache, oof_folds=3)
    assert forests() == n_forests and sigmas() == 2 * n_sigmas  # the copies change the σ models only
    assert plain.meta["dropout_copies"] == 0 and aug.meta["dropout_copies"] == 1
    for t in TARGETS:
        chi2 = {name: {view: np.mean(((m.predict(Z)[t][0] - Yt[t]) / m.predict(Z)[t][1]) ** 2)
                       for view, Z in (("full", Xt), ("no f0", Xt_no_f0))} for name, m in (("plain", plain), ("aug", aug))}
        assert chi2["plain"]["no f0"] > 5, chi2
        assert 0.6 < chi2["aug"]["no f0"] < 1.6, chi2
        assert 0.6 < chi2["aug"]["full"] < 1.6 and 0.6 < chi2["plain"]["full"] < 1.6
        np.testing.assert_allclose(aug.predict(Xt)[t][0], plain.predict(Xt)[t][0])  # the forests are the same


def test_band_dropout_features_keep_w1_and_only_bands_of_both_galaxies():
    from galdust.fir.data import UVMIR_BANDS, Photometry
    from galdust.fir.model import band_dropout_features, build_features

    rng = np.random.default_rng(3)
    flux = rng.uniform(0.01, 0.2, (40, len(UVMIR_BANDS)))
    flux[rng.random(flux.shape) < 0.3] = np.nan  # patchy coverage
    w1 = UVMIR_BANDS.index("wise_w1")
    flux[:, w1] = rng.uniform(0.05, 0.2, 40)
    phot = Photometry([f"g{i}" for i in range(40)], flux, 0.05 * flux, np.zeros(flux.shape, bool))
    rows = np.arange(5, 40)
    A = band_dropout_features(phot, rows, 3, seed=0)
    assert A.shape == (3, len(rows), len(feature_names()))
    np.testing.assert_array_equal(A, band_dropout_features(phot, rows, 3, seed=0))
    full, _ = build_features(phot)
    n_ratio = len(UVMIR_BANDS) - 1  # the first columns: log flux / W1 of every other band
    assert np.all(np.isnan(A[..., :n_ratio]) >= np.isnan(full[rows, :n_ratio]))  # never a band the galaxy lacks
    kept = ~np.isnan(A[..., :n_ratio])
    assert np.allclose(A[..., :n_ratio][kept], np.broadcast_to(full[rows, :n_ratio], A[..., :n_ratio].shape)[kept])
    assert 0.2 < np.mean(np.isnan(A[..., :n_ratio]) & ~np.isnan(full[rows, :n_ratio])) < 0.5  # ~30 % dropped more


def test_fir_train_default_copies_are_the_model_default():
    import inspect

    from galdust.cli import fir_train
    from galdust.fir.model import DROPOUT_COPIES

    assert inspect.signature(fir_train).parameters["dropout_copies"].default == DROPOUT_COPIES
