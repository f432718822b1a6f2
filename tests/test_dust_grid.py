"""Inputs of any size and bands at different resolutions, fitted end to end on the input grid."""

import numpy as np
import pytest
from conftest import gauss_blob, tan_wcs
from astropy.io import fits
from astropy.wcs import WCS

from galdust.cli import main
from galdust.dust.grid import FitGrid, plan_grid
from galdust.resample import pixel_scale


def _blob(n, r, cy=None, cx=None):
    return gauss_blob(n, (n - 1) / 2 if cy is None else cy, (n - 1) / 2 if cx is None else cx, r)


def test_small_inputs_are_fitted_as_they_are_and_large_ones_fill_the_grid():
    assert plan_grid(np.ones((2, 40, 64)), np.ones((2, 40, 64))).identity
    rng = np.random.default_rng(0)
    for n, r, kmin in ((300, 40.0, 3), (66, 5.0, 1), (300, 6.0, 1)):
        Y = 100 * _blob(n, r)[None] * np.ones((2, 1, 1)) + rng.normal(size=(2, n, n))
        g = plan_grid(Y, np.ones_like(Y))
        assert g.fit_shape == (64, 64) and g.k >= kmin
        # the box holds the galaxy out to 3σ of the noise (the detection segment) and is centred on it
        assert g.y0 + g.size_y / 2 == pytest.approx(n / 2, abs=1.0)
        half = g.size_y / 2
        assert half >= r * np.sqrt(2 * np.log(100 / 3.0))
    # a small galaxy in a large cutout is cropped, not rebinned
    Y = 100 * _blob(300, 4.0)[None] + rng.normal(size=(1, 300, 300))
    assert plan_grid(Y, np.ones_like(Y)).k == 1


def test_block_sums_conserve_flux_propagate_noise_and_map_back():
    rng = np.random.default_rng(1)
    g = FitGrid(130, 130, -3, 2, 128, 128, 2)
    Y = 0.5 * rng.normal(size=(1, 130, 130))
    ivar = np.full_like(Y, 4.0)
    ivar[0, 9:11, 10:12] = 0.0  # input rows 9-10 = box rows 12-13, columns 10-11 = box 8-9: fit pixel (6, 4)
    Yf, ivf = g.data_to_fit(Y, ivar)
    assert Yf.shape == (1, 64, 64)
    good = ivf > 0
    # sums of 4 pixels of σ = 0.5 have σ = 1 (rows outside the image have no data)
    assert np.mean(Yf[good] ** 2 * ivf[good]) == pytest.approx(1.0, abs=0.06)
    assert ivf[0, 6, 4] == 0.0 and ivf[0, 7, 4] > 0 and ivf[0, 0].max() == 0.0  # row 0: box rows 0-1 outside
    flat = np.ones((1, 130, 130))
    Ff, _ = g.data_to_fit(flat, np.ones_like(flat))
    assert Ff[0, 10, 10] == pytest.approx(4.0)  # flux conserving: a block is the sum of its pixels
    back = g.map_to_input(np.full((64, 64), 0.3))
    assert np.allclose(back[:125, 2:], 0.3) and np.all(np.isnan(back[:, :2])) and np.all(np.isnan(back[125:]))
    psf = _blob(15, 1.5)[None]
    pf = g.psf_to_fit(psf / psf.sum())
    rr = np.arange(pf.shape[1]) - pf.shape[1] // 2
    assert pf.sum() == pytest.approx(1.0) and abs(np.sum(pf[0] * rr[:, None])) < 0.3


def _wcs(scale, n, ref_pix=None):
    return tan_wcs(scale, n, 150.1, 2.2, crpix=ref_pix)


@pytest.fixture(scope="module")
def hsc_band_files(tmp_path_factory):
    """The real HSC scene hsc_cosmos_35 as per-band FITS of 80×80 px (0.168″, zero weight beyond the
    scene), and its y band also block-summed 2×2 onto 40×40 px of 0.336″ with its own PSF."""
    from pathlib import Path

    shared = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hsc" / "hsc_cosmos_35.npz"
    if not shared.exists():
        pytest.skip("../shared/data is not present")
    d = tmp_path_factory.mktemp("hsc")
    s = np.load(shared)
    img, var, psfs = s["images"], s["variance"], s["psfs"]
    nb, ny, nx = img.shape
    n = 80
    oy, ox = (n - ny) // 2, (n - nx) // 2
    files, psf_files = [], []
    for b, f in enumerate("grizy"):
        data = np.zeros((n, n), np.float32)
        ivar = np.zeros((n, n), np.float32)
        data[oy : oy + ny, ox : ox + nx] = img[b]
        ivar[oy : oy + ny, ox : ox + nx] = np.where(var[b] > 0, 1.0 / np.where(var[b] > 0, var[b], 1), 0)
        h = fits.PrimaryHDU(data, header=_wcs(0.168, n).to_header())
        fits.HDUList([h, fits.ImageHDU(ivar, name="IVAR")]).writeto(d / f"{f}.fits")
        fits.PrimaryHDU(psfs[b]).writeto(d / f"psf_{f}.fits")
        files.append(d / f"{f}.fits")
        psf_files.append(d / f"psf_{f}.fits")
    # y at 2×2 coarser pixels: flux summed, variance summed, PSF block-summed about its centre
    yb = np.asarray(fits.getdata(files[4]), float).reshape(40, 2, 40, 2).sum(axis=(1, 3))
    iv = np.asarray(fits.getdata(files[4], "IVAR"), float).reshape(40, 2, 40, 2)
    v = np.where(iv > 0, 1.0 / np.where(iv > 0, iv, 1), np.inf).sum(axis=(1, 3))
    wy = _wcs(0.336, 40, ref_pix=(80 + 1) / 2 / 2 + 0.25)  # same sky centre as the 80×80 grid
    fits.HDUList([fits.PrimaryHDU(yb.astype(np.float32), header=wy.to_header()),
                  fits.ImageHDU(np.where(np.isfinite(v), 1 / v, 0).astype(np.float32), name="IVAR")]
                 ).writeto(d / "y_coarse.fits")
    p = np.pad(psfs[4], ((0, 1), (0, 1)))[:44, :44].reshape(22, 2, 22, 2).sum(axis=(1, 3))[:21, :21]
    fits.PrimaryHDU(p / p.sum()).writeto(d / "psf_y_coarse.fits")
    return d, files, psf_files


def test_hsc_bands_at_two_resolutions_fitted_end_to_end_on_the_input_grid(hsc_band_files, tmp_path, capsys):
    d, files, psf_files = hsc_band_files
    bands = "hsc_g,hsc_r,hsc_i,hsc_z,hsc_y"
    inp = ",".join(map(str, files[:4] + [d / "y_coarse.fits"]))
    psf = ",".join(map(str, psf_files[:4] + [d / "psf_y_coarse.fits"]))
    out = tmp_path / "out"
    assert main(["fit", inp, "--bands", bands, "--psf", psf, "--out", str(out), "--max-iter", "30", "--quiet"]) == 0
    with fits.open(out / "g.dust.fits") as h:
        hdr = h[0].header
        assert h["AV"].data.shape == (80, 80) and h["HOST_CUBE"].data.shape == (5, 80, 80)
        w = WCS(h["AV"].header)
        assert w.wcs.crval == pytest.approx([150.1, 2.2]) and pixel_scale(w) == pytest.approx(0.168)
        assert hdr["RESAMPLE"] == 2 and hdr["CROP"].startswith("-")  # 80 px > 64: onto the priors' grid
        av, mask = h["AV"].data, h["MASK"].data
        assert np.isfinite(av[mask == 0]).all() and np.isfinite(hdr["CHI2"])
    # the same fit with the y band on the common grid: the coarse y was brought back to nearly the same cube
    out2 = tmp_path / "out2"
    assert main(["fit", ",".join(map(str, files)), "--bands", bands, "--psf", ",".join(map(str, psf_files)),
                 "--out", str(out2), "--max-iter", "30", "--quiet"]) == 0
    with fits.open(out / "g.dust.fits") as a, fits.open(out2 / "g.dust.fits") as b:
        fa, fb = [np.array([x[0].header[f"HOSTF{j}"] for j in range(1, 6)]) for x in (a, b)]
        assert fa[4] / fb[4] == pytest.approx(1.0, abs=0.1)  # the y flux survives 2×2 + reprojection
        assert a[0].header["AV_LW"] == pytest.approx(b[0].header["AV_LW"], abs=0.1)
