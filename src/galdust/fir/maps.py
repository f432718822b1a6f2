"""Per-pixel far-infrared dust properties from UV–MIR images (Dobbels & Baes 2021).

Pipeline (``galdust fir map``): read one FITS image per band (with WCS) → convolve every band to the
worst PSF (astropy convolution; Gaussian kernels of width √(σ_worst² − σ_b²) by default, user
kernels accepted) → reproject onto a common grid, flux-conserving (``reproject_exact`` on surface
brightness, times the output pixel area) → mask stars (given positions or a detection of compact
sources) and pixels outside a D25-like ellipse → per-pixel fluxes, noise and non-detections (< 3σ)
→ the FIR model per pixel (features exactly as the global model, plus ``log_pixscale_pc`` when the
model has it and a distance is given) → maps of log sL_d, log sM_d, T_d and their σ.

Images are fluxes per pixel in Jy (``BUNIT`` Jy/pix, mJy/pix, or a surface brightness such as
MJy/sr, converted with the pixel area). The band is the header's ``BAND`` (galdust registry name) or
given by the caller; the PSF FWHM (arcsec) is the header's ``PSF_FWHM`` or the typical value of the
instrument (``TYPICAL_FWHM``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..io import InputError
from ..resample import background_sigma, reproject_flux
from .data import UVMIR_BANDS, Photometry

__all__ = ["BandImage", "TYPICAL_FWHM", "read_band_image", "write_band_image", "to_common_psf", "reproject_flux", "common_grid",
           "ellipse_mask", "auto_ellipse", "star_mask", "detect_stars", "background_sigma", "pixel_photometry",
           "FIRMaps", "PixelSet", "pixel_features", "log_pixscale_pc", "make_maps", "rescale_to_lowres"]

#: typical PSF FWHM [arcsec] of the surveys DustPedia uses (Clark et al. 2018, Table 1)
TYPICAL_FWHM = {"galex_fuv": 4.3, "galex_nuv": 5.3, "sdss_u": 1.3, "sdss_g": 1.3, "sdss_r": 1.3, "sdss_i": 1.3,
                "sdss_z": 1.3, "2mass_j": 2.0, "2mass_h": 2.0, "2mass_ks": 2.0, "wise_w1": 6.1, "wise_w2": 6.4,
                "wise_w3": 6.5, "wise_w4": 12.0, "irac_1": 1.66, "irac_2": 1.72, "irac_3": 1.88, "irac_4": 1.98}
FWHM_TO_SIGMA = 1.0 / np.sqrt(8.0 * np.log(2.0))


@dataclass
class BandImage:
    band: str
    data: np.ndarray  # (ny, nx) Jy per pixel, NaN where no data
    wcs: WCS  # celestial
    fwhm: float  # PSF FWHM [arcsec]
    source: str = ""

    @property
    def pixscale(self) -> float:
        """Pixel side [arcsec] (square pixels assumed for the kernels)."""
        from astropy.wcs.utils import proj_plane_pixel_scales

        return float(np.sqrt(np.prod(proj_plane_pixel_scales(self.wcs))) * 3600.0)


def _to_jy_per_pixel(data, unit: str, pix_sr: float, src: str) -> np.ndarray:
    import astropy.units as u

    if not unit:
        raise InputError(f"{src}: no BUNIT; give images in Jy/pix, mJy/pix or MJy/sr")
    try:
        q = u.Unit(unit.replace("pixel", "pix").replace("/pix", " / pix"), parse_strict="raise")
    except ValueError:
        raise InputError(f"{src}: unknown BUNIT {unit!r}") from None
    if q.is_equivalent(u.Jy / u.pix):
        return data * (q * u.pix).to(u.Jy)
    if q.is_equivalent(u.Jy):  # per pixel implied
        return data * q.to(u.Jy)
    if q.is_equivalent(u.Jy / u.sr):
        return data * q.to(u.Jy / u.sr) * pix_sr
    raise InputError(f"{src}: BUNIT {unit!r} is not a flux density per pixel or per solid angle")


def read_band_image(path: str | Path, band: str | None = None, fwhm: float | None = None) -> BandImage:
    """One band's image; see the module docstring for the header keys."""
    from astropy.wcs.utils import proj_plane_pixel_area

    from ..io import celestial_wcs, open_fits

    path = Path(path)
    with open_fits(path) as h:  # galdust's one FITS reader: missing, corrupt and truncated files in one line
        hdu = next((x for x in h if x.data is not None and np.ndim(x.data) == 2), None)
        if hdu is None:
            raise InputError(f"{path}: no 2-D image")
        if not np.issubdtype(np.asarray(hdu.data).dtype, np.number):
            raise InputError(f"{path}: image data are not numeric")
        data, hdr = np.asarray(hdu.data, float), hdu.header.copy()
    band = band or hdr.get("BAND")
    if not band:
        raise InputError(f"{path}: no band (header BAND, or give it as BAND=FILE)")
    if band not in UVMIR_BANDS:
        raise InputError(f"{path}: band {band!r} is not one of the UV-MIR bands ({', '.join(UVMIR_BANDS)})")
    wcs = celestial_wcs(hdr)
    if wcs is None or wcs.naxis != 2:
        raise InputError(f"{path}: no celestial WCS")
    pix_sr = proj_plane_pixel_area(wcs) * (np.pi / 180.0) ** 2
    data = _to_jy_per_pixel(data, str(hdr.get("BUNIT", "")).strip(), pix_sr, str(path))
    fwhm = float(fwhm or hdr.get("PSF_FWHM") or TYPICAL_FWHM[band])
    return BandImage(band, data, wcs, fwhm, str(path))


def write_band_image(path: str | Path, img: BandImage, *, overwrite: bool = False) -> Path:
    """Write a band image in the format :func:`read_band_image` reads (Jy/pix, BAND, PSF_FWHM, WCS)."""
    from ..io import atomic_path

    hdr = img.wcs.to_header()
    hdr["BAND"] = img.band
    hdr["BUNIT"] = "Jy/pix"
    hdr["PSF_FWHM"] = (img.fwhm, "PSF FWHM [arcsec]")
    with atomic_path(path, overwrite) as tmp:
        fits.PrimaryHDU(np.asarray(img.data, np.float32), header=hdr).writeto(tmp)
    return Path(path)


def _gaussian_kernel(sigma_px: float):
    from astropy.convolution import Gaussian2DKernel

    half = max(3, int(np.ceil(4 * sigma_px)))
    return Gaussian2DKernel(sigma_px, x_size=2 * half + 1, y_size=2 * half + 1)


def to_common_psf(img: BandImage, fwhm_to: float, kernel: np.ndarray | None = None) -> np.ndarray:
    """Convolve ``img`` to a PSF of FWHM ``fwhm_to`` [arcsec] (flux-conserving: unit-sum kernel).

    ``kernel``: a user kernel on the image's pixel grid (e.g. Aniano et al. 2011), used instead of
    the Gaussian. NaN pixels are filled by the convolution and kept NaN.
    """
    from astropy.convolution import convolve_fft

    if kernel is None:
        s2 = (fwhm_to**2 - img.fwhm**2) * FWHM_TO_SIGMA**2
        if s2 <= (0.05 * img.pixscale) ** 2:
            return img.data.copy()
        kernel = _gaussian_kernel(np.sqrt(s2) / img.pixscale).array
    kernel = np.asarray(kernel, float)
    kernel = kernel / kernel.sum()
    bad = ~np.isfinite(img.data)
    out = convolve_fft(np.where(bad, np.nan, img.data), kernel, normalize_kernel=False, nan_treatment="fill",
                       fill_value=0.0, boundary="fill", allow_huge=True)
    out[bad] = np.nan
    return out


def common_grid(images: list[BandImage], pixscale: float | None = None) -> tuple[WCS, tuple[int, int]]:
    """The output grid: centred on the first image, covering it, with pixels of ``pixscale`` arcsec
    (default: a third of the worst FWHM, Nyquist-like sampling of the common PSF)."""
    worst = max(im.fwhm for im in images)
    pixscale = float(pixscale or worst / 3.0)
    ref = images[0]
    ny, nx = ref.data.shape
    c = ref.wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2)
    n = int(np.ceil(max(ny, nx) * ref.pixscale / pixscale))
    return tan_wcs(c.ra.deg, c.dec.deg, pixscale, n), (n, n)


def tan_wcs(ra: float, dec: float, pixscale: float, n: int) -> WCS:
    """A north-up, east-left TAN grid of n×n pixels of ``pixscale`` arcsec centred on (ra, dec) [deg]."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    w.wcs.cdelt = [-pixscale / 3600.0, pixscale / 3600.0]
    return w


def ellipse_mask(shape, x0: float, y0: float, a: float, q: float, pa_deg: float) -> np.ndarray:
    """True inside the ellipse (semi-major ``a`` pixels, axis ratio ``q``, PA from +y toward −x... i.e.
    astronomical PA east of north for a north-up, east-left image)."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    t = np.deg2rad(pa_deg)
    dx, dy = x - x0, y - y0
    u = -dx * np.sin(t) + dy * np.cos(t)  # along the major axis
    v = dx * np.cos(t) + dy * np.sin(t)
    return (u / a) ** 2 + (v / (q * a)) ** 2 <= 1.0


def auto_ellipse(img: np.ndarray, nsig: float = 3.0, grow: float = 1.0) -> tuple[float, float, float, float, float]:
    """(x0, y0, a, q, pa) from the second moments of the pixels above ``nsig`` σ around the centre,
    grown by ``grow`` (a D25-like aperture when no catalogue ellipse is given)."""
    from scipy import ndimage

    sig = background_sigma(img)
    det = np.isfinite(img) & (img > nsig * sig)
    lab, n = ndimage.label(det)
    if n == 0:
        raise ValueError("no source above the background to define the galaxy ellipse")
    cy, cx = (np.array(img.shape) - 1) / 2
    sizes = ndimage.sum(det, lab, range(1, n + 1))
    k = int(lab[int(round(cy)), int(round(cx))]) or int(np.argmax(sizes)) + 1
    y, x = np.nonzero(lab == k)
    w = img[y, x]
    x0, y0 = np.average(x, weights=w), np.average(y, weights=w)
    cxx = np.average((x - x0) ** 2, weights=w)
    cyy = np.average((y - y0) ** 2, weights=w)
    cxy = np.average((x - x0) * (y - y0), weights=w)
    ev, evec = np.linalg.eigh(np.array([[cxx, cxy], [cxy, cyy]]))
    vx, vy = evec[:, 1]
    pa = np.rad2deg(np.arctan2(-vx, vy)) % 180.0
    r_iso = np.sqrt(len(x) / np.pi / np.sqrt(ev[0] / ev[1]))  # semi-major of the isophote's area
    return float(x0), float(y0), float(grow * r_iso), float(np.sqrt(ev[0] / ev[1])), float(pa)


def star_mask(shape, positions_px, radius_px: float) -> np.ndarray:
    y, x = np.mgrid[: shape[0], : shape[1]]
    m = np.zeros(shape, bool)
    for px, py in positions_px:
        m |= (x - px) ** 2 + (y - py) ** 2 <= radius_px**2
    return m


def detect_stars(img: BandImage, nsig: float = 10.0, exclude: np.ndarray | None = None) -> list[tuple[float, float]]:
    """Compact sources of a band image at its native resolution (:func:`galdust.sources.detect_compact`)."""
    from ..sources import detect_compact

    return detect_compact(img.data, img.fwhm / img.pixscale, nsig, exclude)


def pixel_photometry(cube: np.ndarray, bands: list[str], sigma: np.ndarray, good: np.ndarray,
                     snr_min: float = 3.0) -> Photometry:
    """Per-pixel :class:`Photometry` of the ``good`` pixels of a (band, y, x) Jy cube on one grid."""
    idx = [UVMIR_BANDS.index(b) for b in bands]
    n = int(good.sum())
    flux = np.full((n, len(UVMIR_BANDS)), np.nan)
    err = np.full_like(flux, np.nan)
    upper = np.zeros(flux.shape, bool)
    measured = np.full_like(flux, np.nan)
    for j, b in enumerate(bands):
        f = cube[j][good]
        det = np.isfinite(f) & (f > snr_min * sigma[j])
        flux[det, idx[j]] = f[det]
        measured[:, idx[j]] = f  # non-detections too: the linear features use them
        err[:, idx[j]] = sigma[j]
        upper[~det & np.isfinite(f), idx[j]] = True
    return Photometry([str(i) for i in range(n)], flux, err, upper, measured=measured)


@dataclass
class FIRMaps:
    maps: dict[str, np.ndarray]  # LOG_SLD, LOG_SMD, TD, *_ERR on the common grid (NaN outside)
    wcs: WCS
    mask: np.ndarray  # 1 = predicted pixel
    cube: np.ndarray  # (band, y, x) Jy/pixel at the common resolution
    bands: list[str]
    fwhm: float  # common PSF FWHM [arcsec]
    pixscale: float  # arcsec
    notes: list[str]
    flag: np.ndarray | None = None  # 1 = predicted, but outside the model's training domain (FIRModel.outside)


@dataclass
class PixelSet:
    """The pixels of one galaxy on the common grid, ready for a FIR model."""

    X: np.ndarray  # (n_good, n_feat) features of the aperture pixels (global-model features)
    usable: np.ndarray  # (n_good,) bool: enough detected bands to predict
    good: np.ndarray  # (ny, nx) bool: aperture pixels, not masked
    cube: np.ndarray
    wcs: WCS
    bands: list[str]
    fwhm: float
    pixscale: float
    notes: list[str]


def log_pixscale_pc(pixscale_arcsec: float, distance_mpc: float) -> float:
    return float(np.log10(pixscale_arcsec / 206264.806 * distance_mpc * 1e6))


def pixel_features(images: list[BandImage], *, pixscale: float | None = None, kernels: dict | None = None,
                   ellipse: tuple | None = None, stars: list | None = None, detect: bool = True,
                   snr_min: float = 3.0, min_detected: float = 0.8) -> PixelSet:
    """Convolution, reprojection, masks and per-pixel features (arguments: see :func:`make_maps`)."""
    from astropy.coordinates import SkyCoord

    from .model import build_features

    bands = [im.band for im in images]
    if len(set(bands)) != len(bands):
        raise InputError("the same band is given twice: " + ", ".join(b for b in bands if bands.count(b) > 1))
    if "wise_w1" not in bands and "irac_1" not in bands:
        raise InputError("a WISE 3.4 µm (wise_w1) or IRAC 3.6 µm (irac_1) image is needed (the normalising band)")
    notes: list[str] = []
    fwhm = max(im.fwhm for im in images)
    wcs, shape = common_grid(images, pixscale)
    cube = np.stack([reproject_flux(to_common_psf(im, fwhm, (kernels or {}).get(im.band)), im.wcs, wcs, shape)
                     for im in images])
    ps = float(abs(wcs.wcs.cdelt[1]) * 3600.0)
    norm = cube[bands.index("wise_w1" if "wise_w1" in bands else "irac_1")]
    if ellipse is None:
        x0, y0, a, q, pa = auto_ellipse(norm)
        notes.append(f"automatic ellipse: a = {a * ps:.1f} arcsec, q = {q:.2f}, PA = {pa:.0f} deg")
    else:
        ra, dec, a_as, q, pa = ellipse
        x0, y0 = wcs.world_to_pixel(SkyCoord(ra, dec, unit="deg"))
        a = a_as / ps
    good = ellipse_mask(shape, x0, y0, a, q, pa) & np.all(np.isfinite(cube), axis=0)
    rad = 1.5 * fwhm / ps
    pos = []
    if stars:
        pos += [tuple(np.ravel(wcs.world_to_pixel(SkyCoord(r, d, unit="deg")))) for r, d in stars]
    if detect:
        sharp = min((im for im in images if im.band not in ("galex_fuv", "galex_nuv")), key=lambda im: im.fwhm)
        w_in = sharp.wcs
        ny, nx = sharp.data.shape
        cy, cx = (ny - 1) / 2, (nx - 1) / 2
        core = np.hypot(*np.mgrid[:ny, :nx] - np.array([cy, cx])[:, None, None]) < 3 * fwhm / sharp.pixscale
        for px, py in detect_stars(sharp, exclude=core):
            pos.append(tuple(np.ravel(wcs.world_to_pixel(w_in.pixel_to_world(px, py)))))
    if pos:
        good &= ~star_mask(shape, pos, rad)
        notes.append(f"{len(pos)} stars masked ({rad * ps:.1f} arcsec radius)")
    sigma = np.array([background_sigma(np.where(good, np.nan, c)) for c in cube])
    phot = pixel_photometry(cube, bands, sigma, good, snr_min)
    X, usable = build_features(phot)
    nb_det = np.isfinite(phot.flux).sum(axis=1)
    usable &= nb_det >= np.ceil(min_detected * len(bands))
    notes.append(f"{int(usable.sum())} of {int(good.sum())} pixels in the aperture detected in the normalising band "
                 f"and >= {min_detected:.0%} of the bands at {snr_min:g} sigma")
    return PixelSet(X, usable, good, cube, wcs, bands, fwhm, ps, notes)


def make_maps(images: list[BandImage], model, *, distance_mpc: float | None = None, exact: bool = False,
              **kw) -> FIRMaps:
    """The whole map pipeline on in-memory images; ``model`` a :class:`galdust.fir.model.FIRModel`.

    Keywords as :func:`pixel_features`: ``pixscale`` [arcsec], ``kernels`` {band: array},
    ``ellipse`` (ra_deg, dec_deg, semi-major arcsec, axis ratio, PA deg) or None (automatic, from the
    normalising band), ``stars`` [(ra_deg, dec_deg)] to mask and/or ``detect``; a pixel is predicted
    when the normalising band and at least ``min_detected`` of the bands are detected at ``snr_min`` σ
    (faint outskirts, where the colours are noise, are left out). ``distance_mpc`` adds the pixel
    scale in pc for models trained with it (``log_pixscale_pc``). The pixels are predicted by the
    model's distilled MLP when it has one (:mod:`galdust.fir.fast`), by its trees with ``exact``.
    """
    p = pixel_features(images, **kw)
    X, usable, good = p.X, p.usable, p.good
    shape = good.shape
    if "log_pixscale_pc" in model.features:
        if distance_mpc is None:
            raise InputError("this FIR model uses the pixel scale in pc: give --distance")
        X = np.concatenate([X, np.full((len(X), 1), log_pixscale_pc(p.pixscale, distance_mpc))], axis=1)
    pred = model.predict_pixels(X[usable], exact=exact) if usable.any() else {}
    maps = {}
    names = {"log_sLd": "LOG_SLD", "log_sMd": "LOG_SMD", "Td": "TD"}
    for t, key in names.items():
        for suffix, k in (("", 0), ("_ERR", 1)):
            m = np.full(shape, np.nan)
            if t in pred:
                vals = np.full(len(X), np.nan)
                vals[usable] = pred[t][k]
                m[good] = vals
            maps[key + suffix] = m
    mask = np.zeros(shape, np.uint8)
    mask[good] = usable.astype(np.uint8)
    # pixels unlike every training galaxy (e.g. a band in the wrong units): answered, flagged, counted
    why = model.outside(X[usable]) if usable.any() else []
    out = np.zeros(len(X), np.uint8)
    out[usable] = [1 if w else 0 for w in why]
    flag = np.zeros(shape, np.uint8)
    flag[good] = out
    notes = list(p.notes)
    if out.any():
        first = next(w for w in why if w)
        notes.append(f"{int(out.sum())} of {int(usable.sum())} predicted pixels lie outside the model's training "
                     f"domain (HDU FLAG = 1; e.g. {first})")
    return FIRMaps(maps, p.wcs, mask, p.cube, p.bands, p.fwhm, p.pixscale, notes, flag)


def rescale_to_lowres(pred: np.ndarray, wcs: WCS, low: np.ndarray, wcs_low: WCS, *, log: bool = True) -> np.ndarray:
    """Rescale a high-resolution prediction so that, averaged onto the low-resolution grid of an
    observed map of the same property (e.g. from Herschel), it matches it (Dobbels & Baes 2021, Fig. 9).

    The prediction is averaged (linear units, exact overlap) onto the low-resolution grid; the
    correction (in dex for ``log`` quantities, else a ratio) is interpolated back (bilinear).
    """
    from reproject import reproject_exact, reproject_interp

    lin = 10.0**pred if log else pred
    down, _ = reproject_exact((np.nan_to_num(lin, nan=0.0), wcs), wcs_low, shape_out=low.shape)
    cover, _ = reproject_exact((np.isfinite(pred).astype(float), wcs), wcs_low, shape_out=low.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = np.where(cover > 0.5, down / cover, np.nan)
        corr = np.log10(10.0**low / mean_low) if log else low / mean_low
    corr = np.where(np.isfinite(corr), corr, np.nanmedian(corr))
    up, _ = reproject_interp((corr, wcs_low), wcs, shape_out=pred.shape, order="bilinear")
    up = np.where(np.isfinite(up), up, np.nanmedian(corr))
    return pred + up if log else pred * up
