"""SDSS redshift model: features of a hand-made SDSS table, the metrics on known numbers, quantile
regression recovering a known redshift law with calibrated intervals, model folder round trip, and
the CLI (train-z, sample --model with a redshift model, bad input)."""

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from galdust.posterior.redshift import FEATURES, PHOT_FEATURES, RedshiftModel, sdss_table_features, train_redshift, zstats

SMALL = dict(n_estimators=150, max_depth=3, learning_rate=0.1, subsample=0.8, colsample_bytree=0.8, min_child_weight=3)


def _sdss_table(path, n=60, seed=0):
    """A table in the SDSS format whose redshift is a known function of the g − r colour."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.02, 0.25, n)
    r = rng.uniform(14.5, 17.7, n)
    gr = 0.3 + 4.0 * z + rng.normal(0, 0.02, n)
    mags = np.c_[r + gr + 1.2, r + gr, r, r - 0.3 - z, r - 0.5 - z]
    flux = 10 ** (-0.4 * (mags - 22.5))
    t = Table({"MODELFLUX": flux, "MODELFLUX_IVAR": 1 / (0.01 * flux) ** 2, "PETROFLUX": 0.9 * flux,
               "EXTINCTION": np.zeros((n, 5)), "Z": z,
               "J_M_EXT": np.where(np.arange(n) % 3 == 0, 0.0, r - 1.0), "H_M_EXT": r - 1.7, "K_M_EXT": r - 2.0})
    t.write(path, overwrite=True)
    return t


def test_features_of_a_hand_made_table(tmp_path):
    flux = np.array([[10.0, 40.0, 100.0, 150.0, 200.0]])
    t = Table({"MODELFLUX": flux, "PETROFLUX": flux * 10 ** (-0.4 * 0.1), "EXTINCTION": [[0.5, 0.4, 0.3, 0.2, 0.1]],
               "Z": [0.1], "J_M_EXT": [14.0], "H_M_EXT": [-9999.0], "K_M_EXT": [13.0]})
    t.write(tmp_path / "s.fits")
    X, z = sdss_table_features(tmp_path / "s.fits")
    f = dict(zip(PHOT_FEATURES, X[0]))
    # bright fluxes: luptitudes (softening 1 nmgy) equal Pogson magnitudes of the extinction-corrected
    # flux to 1e-3 mag
    assert f["r"] == pytest.approx(22.5 - 2.5 * np.log10(100.0) - 0.3, abs=1e-4)
    assert f["g-r"] == pytest.approx(-2.5 * np.log10(40 / 100) - 0.1, abs=1e-3)
    assert f["petro-model_i"] == pytest.approx(0.1, abs=1e-4)
    assert f["r-J"] == pytest.approx(f["r"] - 14.0) and f["r-K"] == pytest.approx(f["r"] - 13.0)
    assert np.isnan(f["J-H"]) and np.isnan(f["H-K"])  # no H detection: missing, not a colour
    assert z[0] == 0.1
    Table({"flux_sdss_r": [1.0]}).write(tmp_path / "g.fits")
    with pytest.raises(Exception, match="MODELFLUX"):
        sdss_table_features(tmp_path / "g.fits")


def test_zstats_on_known_numbers():
    zt = np.array([0.1, 0.1, 0.1, 0.1, 0.2])
    zp = zt + np.array([0.011, -0.011, 0.0, 0.0, 0.12])  # the last one an outlier (0.1 > 0.05)
    s = zstats(zt, zp, zp - 0.005, zp + 0.005)  # the interval holds the truth on rows 3 and 4
    assert s["outliers"] == pytest.approx(0.2) and s["coverage"] == pytest.approx(0.4)
    d = (zp - zt) / (1 + zt)
    assert s["nmad"] == pytest.approx(1.4826 * np.median(np.abs(d - np.median(d))))


def test_quantiles_recover_a_known_law_with_calibrated_intervals(tmp_path):
    rng = np.random.default_rng(1)
    n = 1200
    X = rng.uniform(-1, 1, (n, len(FEATURES))).astype(np.float32)
    X[rng.random((n, len(FEATURES))) < 0.05] = np.nan  # missing values are allowed
    x0 = rng.uniform(-1, 1, n)
    X[:, 6] = x0
    z = 0.12 + 0.08 * x0 + rng.normal(0, 0.01, n)  # σ_NMAD of Δz/(1+z) ≈ 0.01 / 1.12
    m = train_redshift(X, z, seed=0, k=3, source="synthetic", params=SMALL)
    cv = m.meta["cv"]  # nested cross-validation: out-of-fold medians, widths calibrated within each fold
    assert cv["nmad"] == pytest.approx(0.01 / 1.12, rel=0.2)
    assert cv["coverage"] == pytest.approx(0.68, abs=0.05)
    assert m.meta["n_train"] == n and cv["k"] == 3 and 0.5 <= m.scale <= 3.0
    # fresh rows of the same law: the medians follow the noiseless law, the intervals the noise.
    # Measured: RMS(p50 − law) 0.0032, coverage 70.1 %, median half-width 0.0116 (noise σ 0.01)
    rng2 = np.random.default_rng(2)
    Xt = rng2.uniform(-1, 1, (1000, len(FEATURES))).astype(np.float32)
    Xt[rng2.random(Xt.shape) < 0.05] = np.nan
    xt = rng2.uniform(-1, 1, 1000)
    Xt[:, 6] = xt
    law = 0.12 + 0.08 * xt
    zt = law + rng2.normal(0, 0.01, 1000)
    q = m.predict(Xt)
    assert np.sqrt(np.mean((q[:, 1] - law) ** 2)) < 0.005
    assert np.mean((zt >= q[:, 0]) & (zt <= q[:, 2])) == pytest.approx(0.68, abs=0.05)
    assert np.median(q[:, 2] - q[:, 0]) / 2 == pytest.approx(0.01, rel=0.25)
    m.save(tmp_path / "zm")
    back = RedshiftModel.load(tmp_path / "zm")
    np.testing.assert_allclose(back.predict(X[:50]), m.predict(X[:50]), rtol=0, atol=1e-7)
    with pytest.raises(Exception, match="exists"):
        m.save(tmp_path / "zm")
    assert json.loads((tmp_path / "zm" / "z_model.json").read_text())["kind"] == "z-sdss"


def test_train_z_and_sample_cli(tmp_path, capsys):
    from galdust.cli import main
    from galdust.posterior.kinds import load_model
    from galdust.posterior.redshift import cfm_features

    _sdss_table(tmp_path / "train.fits", n=32, seed=0)  # each row costs its CFM summary: 300 one-step samples
    _sdss_table(tmp_path / "test.fits", n=12, seed=1)
    assert main(["posterior", "train-z", "--catalog", str(tmp_path / "train.fits"), "--out", str(tmp_path / "zm"),
                 "--folds", "2", "--trees", "100"]) == 0
    meta = json.loads((tmp_path / "zm" / "z_model.json").read_text())
    assert meta["n_train"] == 32 and meta["cfm"] == "cfm_phot_sdss_onestep.eqx" and meta["features"] == FEATURES
    assert meta["params"]["n_estimators"] == 100 and meta["params"]["max_depth"] == 6
    out = tmp_path / "post.fits"
    assert main(["posterior", "sample", "--catalog", str(tmp_path / "test.fits"), "--out", str(out),
                 "--model", str(tmp_path / "zm"), "--samples", "50", "--steps", "5", "--save-samples"]) == 0
    with fits.open(out) as h:
        # the properties: the model conditioned on z, sampled at redshifts drawn from z-sdss's posterior
        assert h[0].header["ZMODEL"] == "zm" and h[0].header["CFMMODEL"] == "cfm_phot_sdss_z_onestep.eqx"
        assert h["SAMPLES"].header["ZSAMPLES"] == "zmodel"
        assert h["SAMPLES"].header["PROPS"] == "log_mstar,log_sfr,logzsol,dn4000,av,z"
        t = Table(h["POSTERIOR"].data)
        zs = h["SAMPLES"].data[:, :, -1]
    # z columns are the redshift model's prediction on the table's features and the CFM's summary
    from galdust.cli import NAMED_POSTERIORS

    cfm, _ = load_model(NAMED_POSTERIORS["cfm-onestep"])  # train-z's default: the fast sampler
    X, ztrue = sdss_table_features(tmp_path / "test.fits")
    from galdust.posterior.data import read_catalog

    want = RedshiftModel.load(tmp_path / "zm").predict(np.c_[X, cfm_features(cfm, read_catalog(tmp_path / "test.fits").flux)])
    np.testing.assert_allclose(np.c_[t["z_p16"], t["z_p50"], t["z_p84"]], want, atol=1e-6)
    assert np.all(np.isfinite(t["log_mstar_p50"]))
    # the z samples follow the z percentiles (a split normal: its median is p50; 50 draws)
    assert np.median(np.abs(np.median(zs, axis=1) - want[:, 1]) / (want[:, 2] - want[:, 0])) < 0.25
    # a galdust simulator table is not an SDSS table: one line, exit 2
    Table({f"flux_sdss_{b}": [10.0] for b in "ugriz"}).write(tmp_path / "sim.fits")
    capsys.readouterr()
    assert main(["posterior", "sample", "--catalog", str(tmp_path / "sim.fits"), "--out", str(tmp_path / "p2.fits"),
                 "--model", str(tmp_path / "zm")]) == 2
    err = capsys.readouterr().err.strip()
    assert "MODELFLUX" in err and len(err.splitlines()) == 1 and not (tmp_path / "p2.fits").exists()


def test_shipped_model_loads_with_its_sidecar():
    from galdust.cli import NAMED_POSTERIORS

    m = RedshiftModel.load(NAMED_POSTERIORS["z-sdss"])
    assert m.features == FEATURES and m.meta["n_train"] == 2500 and m.meta["cfm"] == "cfm_phot_sdss_onestep.eqx"
    assert m.meta["cv"]["k"] == 5 and 1.0 < m.scale < 2.5


def test_shipped_model_on_the_sdss_galaxies_it_was_trained_on(shared_data):
    """Every 40th of the 2,500 development galaxies (all were training rows: no galaxy with a
    spectroscopic redshift is held out here), with its CFM features computed here. Measured:
    σ_NMAD 0.0047, no outlier, median bias 7e-5, 97 % inside the 16–84 % interval (the
    one-step-featured model shipped in session 18; 0.0058 / 0 / 6e-7 / 98 % before) (the widths were
    calibrated out of fold, so they over-cover the training rows)."""
    from galdust.cli import DEFAULT_POSTERIOR, NAMED_POSTERIORS
    from galdust.posterior.data import read_catalog
    from galdust.posterior.kinds import load_model
    from galdust.posterior.redshift import cfm_features

    path = shared_data / "sdss" / "sdss_galaxies_dev.fits"
    m = RedshiftModel.load(NAMED_POSTERIORS["z-sdss"])
    cfm, _ = load_model(m.cfm_path(DEFAULT_POSTERIOR.parent))
    X, z = sdss_table_features(path)
    rows = np.arange(0, len(z), 40)
    q = m.predict(np.c_[X[rows], cfm_features(cfm, read_catalog(path).flux[rows])])
    s = zstats(z[rows], q[:, 1], q[:, 0], q[:, 2])
    assert s["nmad"] < 0.009 and s["outliers"] <= 1 / len(rows) and abs(s["bias"]) < 0.002, s
    assert s["coverage"] >= 0.85, s


def test_the_recipe_cross_validated_on_sdss_photometry(shared_data):
    """The model's recipe (nested CV, calibrated widths) recomputed on the 2,500 development
    galaxies, small (3 folds, 150 trees of depth 3, photometric features only: the CFM features of
    2,500 galaxies cost minutes). Measured: σ_NMAD 0.0143 (the module's "2,500 real galaxies alone
    give ≈ 0.014"), 1.8 % outliers, bias −0.0002, coverage 69.8 %; the shipped model's sidecar,
    with the CFM features and 1,500 trees, says 0.0130 and 70.6 %."""
    from galdust.posterior.redshift import cross_validate_redshift

    X, z = sdss_table_features(shared_data / "sdss" / "sdss_galaxies_dev.fits")
    X = np.c_[X, np.full((len(z), len(FEATURES) - X.shape[1]), np.nan)].astype(np.float32)
    _, cv = cross_validate_redshift(X, z, 0, 3, SMALL)
    assert cv["n"] == 2500
    assert cv["nmad"] < 0.016 and cv["outliers"] < 0.03 and abs(cv["bias"]) < 0.003, cv
    assert cv["coverage"] == pytest.approx(0.68, abs=0.04), cv
