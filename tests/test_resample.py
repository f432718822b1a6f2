import numpy as np
import pytest
from conftest import tan_wcs

from galdust.resample import background_sigma, pixel_scale, reproject_flux, reproject_ivar, resample_psf


def _wcs(scale_arcsec, n, ra=150.0, dec=2.0):
    return tan_wcs(scale_arcsec, n, ra, dec)


def test_flux_is_conserved_both_ways_and_the_effective_ivar_keeps_the_information():
    rng = np.random.default_rng(0)
    fine, coarse = _wcs(0.4, 100), _wcs(1.0, 40)
    yy, xx = np.mgrid[:40, :40] - 19.5
    img = 100.0 * np.exp(-(yy**2 + xx**2) / 30.0)
    up = reproject_flux(img, coarse, fine, (100, 100))
    assert np.nansum(up) == pytest.approx(img.sum(), rel=1e-3)
    down = reproject_flux(up, fine, coarse, (40, 40))
    assert np.nansum(down) == pytest.approx(img.sum(), rel=1e-3)
    # white noise of σ = 1 per coarse pixel: on the fine grid the χ² with the effective ivar counts the
    # coarse pixels' information once (not (1/0.4)² = 6.25 times)
    noise = rng.normal(size=(40, 40))
    nf = reproject_flux(noise, coarse, fine, (100, 100))
    iv = reproject_ivar(np.ones((40, 40)), coarse, fine, (100, 100))
    ok = iv > 0
    assert iv[ok].mean() == pytest.approx(6.25, rel=1e-6)
    chi2 = np.sum(iv[ok] * nf[ok] ** 2)
    # fine pixels that straddle two coarse ones (1 in 5 per axis) average them: expected 0.81, not 1
    expect = 0.8**2 + 2 * 0.8 * 0.2 * 0.5 + 0.2**2 * 0.25
    assert chi2 / (ok.sum() / 6.25) == pytest.approx(expect, abs=0.04)
    # with an integer ratio no pixel straddles: exactly the coarse pixels' information
    f2 = _wcs(0.5, 80)
    n2 = reproject_flux(noise, coarse, f2, (80, 80))
    i2 = reproject_ivar(np.ones((40, 40)), coarse, f2, (80, 80))
    assert np.sum(i2 * np.nan_to_num(n2) ** 2) / 1600 == pytest.approx(1.0, abs=0.06)
    # and going to coarser pixels it is the variance of a sum of independent pixels
    ivd = reproject_ivar(np.full((100, 100), 4.0), fine, coarse, (40, 40))
    assert np.median(ivd[ivd > 0]) == pytest.approx(4.0 * 0.16, rel=1e-6)
    # a pixel without data poisons the output pixels it touches, not the others
    bad = np.ones((40, 40))
    bad[20, 20] = 0.0
    ivb = reproject_ivar(bad, coarse, fine, (100, 100))
    assert ivb[50, 50] == 0.0 and ivb[10, 10] > 0


def test_psf_resampled_to_finer_pixels_keeps_its_width_in_arcsec():
    r = np.arange(-7, 8)
    s = 2.5 / 2.3548  # FWHM 2.5 coarse pixels of 1.0"
    psf = np.exp(-0.5 * (r[:, None] ** 2 + r[None] ** 2) / s**2)
    out = resample_psf(psf, 1.0, 0.4)
    n = out.shape[0]
    assert n % 2 == 1 and out.sum() == pytest.approx(1.0)
    rr = np.arange(n) - n // 2
    var = np.sum(out * rr[None] ** 2)
    assert np.sqrt(var) * 0.4 == pytest.approx(s * 1.0, rel=0.03)
    assert np.sum(out * rr[None]) == pytest.approx(0.0, abs=1e-6)


def test_pixel_scale_and_background_sigma():
    assert pixel_scale(_wcs(0.396, 10)) == pytest.approx(0.396)
    rng = np.random.default_rng(1)
    img = rng.normal(0.0, 2.0, (60, 60))
    img[25:35, 25:35] += 50.0  # a source the clipping removes
    assert background_sigma(img) == pytest.approx(2.0, rel=0.05)
    assert np.isnan(background_sigma(np.full((3, 3), np.nan)))
