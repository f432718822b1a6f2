"""Simulated photometry with truths: determinism, noise model, physical consistency."""

import jax
import numpy as np
import pytest

from galdust.simulate.sed import TRUTHS, SEDConfig, simulate_photometry


@pytest.fixture(scope="module")
def sims():
    return simulate_photometry(jax.random.PRNGKey(3), 3000, batch=1024)


def test_deterministic_complete_and_finite(sims):
    again = simulate_photometry(jax.random.PRNGKey(3), 3000, batch=1024)
    assert np.array_equal(sims["flux"], again["flux"])
    for k in TRUTHS + ("flux", "flux_err", "flux_true"):
        assert np.all(np.isfinite(sims[k])), k
    assert sims["flux"].shape == (3000, 5)


def test_noise_follows_the_sdss_model(sims):
    """Reported errors follow the fit to real MODELFLUX_IVAR (σ² = a² + b f + (c f)², log-normal spread
    per galaxy); the flux also carries the unreported calibration noise."""
    from galdust.simulate.sed import NOISE_COMMON, SDSS_NOISE, SDSS_UNREPORTED

    cfg = SEDConfig()
    f = np.abs(sims["flux_true"])
    a, b, c, s_ind = (np.array([SDSS_NOISE[band][i] for band in cfg.bands]) for i in range(4))
    model = np.sqrt(a**2 + b * f + (c * f) ** 2)
    ln = np.log(sims["flux_err"] / model)
    assert np.abs(np.median(ln, axis=0)).max() < 0.03
    assert np.std(ln, axis=0) == pytest.approx(np.sqrt(NOISE_COMMON**2 + s_ind**2), rel=0.1)
    assert np.corrcoef(ln[:, 1], ln[:, 3])[0, 1] > 0.3  # the common (size) factor correlates the bands
    unrep = np.array([SDSS_UNREPORTED[band] for band in cfg.bands]) * f
    r = (sims["flux"] - sims["flux_true"]) / np.sqrt(sims["flux_err"] ** 2 + unrep**2)
    assert np.std(r, axis=0) == pytest.approx(np.ones(5), abs=0.05)


def test_truths_are_physically_consistent(sims):
    d4, ssfr = sims["dn4000"], sims["log_sfr"] - sims["log_mstar"]
    assert np.median(d4[ssfr < -12]) > 1.6 and np.median(d4[ssfr > -9.5]) < 1.3  # old vs star-forming
    assert np.all(sims["av"] >= -1e-5)
    gr = -2.5 * np.log10(sims["flux_true"][:, 1] / sims["flux_true"][:, 2])
    assert np.corrcoef(gr, d4)[0, 1] > 0.5  # redder galaxies have older populations
    sf = sims["halpha"] > 10
    ratio = sims["halpha"][sf] / sims["hbeta"][sf]
    assert np.all(ratio > 2.7)  # Balmer decrement ≥ case B
    assert np.corrcoef(2.5 * np.log10(ratio / 2.86), sims["av"][sf])[0, 1] > 0.7
    assert 0.05 < np.median(sims["z"]) < 0.15


def test_simulate_sed_cli_writes_a_table(tmp_path, capsys):
    import pyarrow.parquet as pq

    from galdust.cli import main

    out = tmp_path / "sed.parquet"
    assert main(["simulate-sed", "--n", "50", "--seed", "4", "--batch", "1024", "--out", str(out)]) == 0
    t = pq.read_table(out)
    assert t.num_rows == 50 and {"name", "flux_sdss_r", "flux_err_sdss_r", "log_mstar", "dn4000", "halpha"} <= set(
        t.column_names)
    from galdust.posterior.data import sims_provenance

    prov = sims_provenance([out])[0]  # how the table was made travels with it (model sidecars copy it)
    assert prov["n"] == 50 and prov["seed"] == 4 and prov["kept"] == 50 and prov["images"] is False
    assert prov["bands"] == ["sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z"] and prov["r_limit"] is None
    assert main(["simulate-sed", "--n", "5", "--out", str(out)]) == 2  # exists
    assert main(["simulate-sed", "--n", "5", "--bands", "wise_w4", "--out", str(tmp_path / "x.parquet")]) == 2
    assert "6 µm" in capsys.readouterr().err
    assert main(["simulate-sed", "--n", "5", "--out", str(tmp_path / "x.fits")]) == 2  # Parquet under a FITS name
    assert "written as .parquet or .csv" in capsys.readouterr().err
    assert main(["simulate-sed", "--n", "5", "--r-limit", "5", "--out", str(tmp_path / "none.parquet")]) == 2
    assert "none of the 5 simulated galaxies is brighter" in capsys.readouterr().err
    assert not (tmp_path / "x.fits").exists() and not (tmp_path / "none.parquet").exists()


def test_bulge_disk_images_carry_the_photometry_and_the_structure():
    from galdust.simulate.sed_images import ImageConfig, simulate_images

    o = simulate_images(jax.random.PRNGKey(5), 256, ImageConfig(), batch=128)
    im = o["images"]
    assert im.shape == (256, 3, 64, 64) and im.dtype == np.float32
    # the photometry is the image's flux (g, r, i are bands 1-3 of ugriz) plus the photometric noise
    noise_free = im.sum(axis=(2, 3)) - 0.0
    assert np.allclose(np.median(noise_free / o["flux_true"][:, 1:4], axis=0), 1.0, atol=0.01)
    # concentration grows with B/T; disk dust grows with inclination
    c = np.array([x[1, 28:36, 28:36].sum() / max(x[1].sum(), 1e-9) for x in im])
    bright = o["flux_true"][:, 2] > 50
    bt = o["bt"][bright]
    assert np.median(c[bright][bt > 0.7]) > 1.2 * np.median(c[bright][bt < 0.3])
    assert np.corrcoef(o["incl_deg"], o["av_disk"])[0, 1] > 0.15
    assert np.all(np.isfinite(o["log_mbh"])) and np.corrcoef(o["log_mbh"], o["bt"] + 0 * o["log_mstar"])[0, 1] > 0.2
