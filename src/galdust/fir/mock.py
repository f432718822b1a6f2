"""Mock resolved UV–MIR images with known per-pixel dust properties, built from real DustPedia SEDs.

No resolved DustPedia images can be had here, so the map pipeline is validated on mocks: an
exponential disc whose pixel SED changes with radius from the SED of one real DustPedia galaxy
(centre, template A) to that of another (outskirts beyond three scale lengths, template B),
log-linearly in each W1-normalised flux, with the per-pixel truth mixed in the same way (log sL_d,
log sM_d, T_d of the two galaxies' CIGALE fits). Each band is rendered on its instrument's pixel
grid, convolved with its PSF (Gaussian, ``TYPICAL_FWHM``) and given white noise; the truth on the
map grid is the W1-light-weighted mean over the common PSF, as the pipeline sees the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS

from .data import UVMIR_BANDS
from .maps import FWHM_TO_SIGMA, TYPICAL_FWHM, BandImage, tan_wcs

__all__ = ["NATIVE_PIXSCALE", "MockGalaxy", "make_mock", "truth_on_grid"]

#: pixel scales of the mock images [arcsec] (coarser than the surveys' in the optical, for speed)
NATIVE_PIXSCALE = {"galex_fuv": 1.5, "galex_nuv": 1.5, "sdss_u": 0.9, "sdss_g": 0.9, "sdss_r": 0.9, "sdss_i": 0.9,
                   "sdss_z": 0.9, "2mass_j": 1.0, "2mass_h": 1.0, "2mass_ks": 1.0, "wise_w1": 1.375,
                   "wise_w2": 1.375, "wise_w3": 1.375, "wise_w4": 1.375, "irac_1": 1.2, "irac_2": 1.2,
                   "irac_3": 1.2, "irac_4": 1.2}
W1 = UVMIR_BANDS.index("wise_w1")


@dataclass
class MockGalaxy:
    images: list[BandImage]
    ra: float
    dec: float
    h: float  # scale length [arcsec]
    q: float  # axis ratio
    pa: float  # deg
    truth: dict[str, np.ndarray]  # per template: log_sLd, log_sMd, Td
    bands: list[str]


def _radius_and_light(mock: MockGalaxy, wcs: WCS, shape, oversample: int = 1):
    """Elliptical radius [arcsec] and W1 surface brightness (peak 1) at (sub)pixel centres."""
    from astropy.coordinates import SkyCoord

    o = oversample
    yy, xx = np.mgrid[: shape[0] * o, : shape[1] * o]
    x = (xx + 0.5) / o - 0.5
    y = (yy + 0.5) / o - 0.5
    c = SkyCoord(mock.ra, mock.dec, unit="deg")
    x0, y0 = wcs.world_to_pixel(c)
    ps = abs(wcs.wcs.cdelt[1]) * 3600.0
    dx, dy = (x - x0) * ps, (y - y0) * ps  # arcsec, +x = west for a north-up east-left image
    t = np.deg2rad(mock.pa)
    u = -dx * np.sin(t) + dy * np.cos(t)
    v = dx * np.cos(t) + dy * np.sin(t)
    r = np.hypot(u, v / mock.q)
    return r, np.exp(-r / mock.h)


def _mix(mock: MockGalaxy, r):
    return np.clip(r / (3.0 * mock.h), 0.0, 1.0)


def _blur(img, sigma_px):
    from scipy import ndimage

    return ndimage.gaussian_filter(img, sigma_px, mode="constant") if sigma_px > 0 else img


def make_mock(sed_a: np.ndarray, sed_b: np.ndarray, truth_a: dict, truth_b: dict, *, w1_total: float, rng,
              h: float = 12.0, q: float = 0.6, pa: float = 30.0, fov: float = 150.0, peak_snr: float = 50.0,
              ra: float = 150.0, dec: float = 2.0) -> MockGalaxy:
    """A mock galaxy from two templates' fluxes (Jy, ``UVMIR_BANDS`` order, NaN = missing).

    Bands: those detected in both templates. ``w1_total``: total W1 flux [Jy]; ``peak_snr``: S/N of the
    brightest native pixel of each band.
    """
    bands = [b for i, b in enumerate(UVMIR_BANDS) if np.isfinite(sed_a[i]) and np.isfinite(sed_b[i])
             and sed_a[i] > 0 and sed_b[i] > 0]
    if "wise_w1" not in bands:
        raise ValueError("both templates need a WISE 3.4 µm flux")
    idx = [UVMIR_BANDS.index(b) for b in bands]
    la = np.log10(sed_a[idx] / sed_a[W1])
    lb = np.log10(sed_b[idx] / sed_b[W1])
    mock = MockGalaxy([], ra, dec, h, q, pa, {"A": truth_a, "B": truth_b}, bands)
    total_light = 2 * np.pi * h**2 * q  # ∫ exp(-r/h) dA [arcsec²]
    images = []
    for j, b in enumerate(bands):
        ps = NATIVE_PIXSCALE[b]
        n = int(np.ceil(fov / ps))
        w = tan_wcs(ra, dec, ps, n)
        r, light = _radius_and_light(mock, w, (n, n), oversample=2)
        m = _mix(mock, r)
        f = w1_total * light / total_light * ps**2 * 10.0 ** ((1 - m) * la[j] + m * lb[j])  # Jy per subpixel·4
        f = f.reshape(n, 2, n, 2).mean(axis=(1, 3))
        f = _blur(f, TYPICAL_FWHM[b] * FWHM_TO_SIGMA / ps)
        sigma = f.max() / peak_snr
        images.append(BandImage(b, f + rng.normal(0.0, sigma, f.shape), w, TYPICAL_FWHM[b], f"mock:{b}"))
    mock.images = images
    return mock


def truth_on_grid(mock: MockGalaxy, wcs: WCS, shape, fwhm: float) -> dict[str, np.ndarray]:
    """Per-pixel truth on a map grid: the W1-light-weighted mean over a Gaussian PSF of ``fwhm``.

    Also ``mix``, the weight of template B in that mean (0 at the centre, 1 in the outskirts), so that
    a pixel's truth is ``(1 − mix)·truth_A + mix·truth_B``."""
    o = 4
    r, light = _radius_and_light(mock, wcs, shape, oversample=o)
    m = _mix(mock, r)
    ps = abs(wcs.wcs.cdelt[1]) * 3600.0
    s = fwhm * FWHM_TO_SIGMA / ps * o
    den = _blur(light, s)
    out = {"mix": (_blur(light * m, s) / den).reshape(shape[0], o, shape[1], o).mean(axis=(1, 3))}
    for t in ("log_sLd", "log_sMd", "Td"):
        val = (1 - m) * mock.truth["A"][t] + m * mock.truth["B"][t]
        num = _blur(light * val, s)
        out[t] = (num / den).reshape(shape[0], o, shape[1], o).mean(axis=(1, 3))
    return out
