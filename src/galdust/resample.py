"""One resampler for images on different pixel grids (``galdust fit`` and ``galdust fir map``).

* :func:`reproject_flux`: flux-conserving reprojection of a per-pixel flux image (reproject's exact
  polygon overlap on surface brightness, times the output pixel area);
* :func:`reproject_ivar`: the inverse variance that goes with it. Resampling correlates the noise of
  neighbouring output pixels; we state it as an *effective* inverse variance, the one whose χ² over
  the output pixels carries the information the input pixels had:
  ``ivar_out = ivar_in (interpolated) × a_in / a_out`` (a_ pixel areas). Going to coarser pixels
  this is the variance of a sum of independent pixels; going to finer pixels it divides the
  information of one input pixel among the a_in / a_out output pixels it covers. A pixel touched
  by a pixel without data gets zero weight;
* :func:`resample_psf`: a PSF stamp sampled at one pixel scale, resampled to another (cubic
  interpolation about its centre, odd size, unit sum);
* :func:`background_sigma`: the one robust background-noise estimate (iterative 3σ clipping, σ from
  the MAD); NaN when fewer than 10 usable pixels.
"""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS

__all__ = ["pixel_area", "pixel_scale", "reproject_flux", "reproject_ivar", "resample_psf", "background_sigma"]


def pixel_area(wcs: WCS) -> float:
    """Pixel area in deg²."""
    from astropy.wcs.utils import proj_plane_pixel_area

    return float(proj_plane_pixel_area(wcs.celestial))


def pixel_scale(wcs: WCS) -> float:
    """Pixel scale in arcsec (square root of the pixel area)."""
    return float(np.sqrt(pixel_area(wcs)) * 3600.0)


def reproject_flux(data: np.ndarray, wcs_in: WCS, wcs_out: WCS, shape_out: tuple[int, int],
                   min_cover: float = 0.999) -> np.ndarray:
    """Flux-conserving reprojection of a per-pixel flux image (exact polygon overlap); NaN where the
    input covers less than ``min_cover`` of an output pixel."""
    from reproject import reproject_exact

    a_in, a_out = pixel_area(wcs_in), pixel_area(wcs_out)
    sb, foot = reproject_exact((np.asarray(data, float) / a_in, wcs_in), wcs_out, shape_out=shape_out)
    return np.where(foot > min_cover, sb * a_out, np.nan)


def reproject_ivar(ivar: np.ndarray, wcs_in: WCS, wcs_out: WCS, shape_out: tuple[int, int]) -> np.ndarray:
    """The effective inverse variance of :func:`reproject_flux`'s output (module docstring)."""
    from reproject import reproject_interp

    ivar = np.asarray(ivar, float)
    bad = ~(np.isfinite(ivar) & (ivar > 0))
    var = np.where(bad, np.nan, 1.0 / np.where(bad, 1.0, ivar))
    v, foot = reproject_interp((var, wcs_in), wcs_out, shape_out=shape_out, order="bilinear")
    badf, _ = reproject_interp((bad.astype(float), wcs_in), wcs_out, shape_out=shape_out, order="bilinear")
    ok = np.isfinite(v) & (v > 0) & (foot > 0) & (np.nan_to_num(badf, nan=1.0) < 1e-6)
    scale = pixel_area(wcs_in) / pixel_area(wcs_out)
    return np.where(ok, scale / np.where(ok, v, 1.0), 0.0)


def resample_psf(psf: np.ndarray, scale_in: float, scale_out: float) -> np.ndarray:
    """A (py, px) PSF sampled at ``scale_in`` resampled to pixels of ``scale_out`` (same units), about
    its centre pixel; odd size covering the input stamp, unit sum."""
    from scipy import ndimage

    psf = np.asarray(psf, float)
    py, px = psf.shape
    size = int(np.ceil(max(py, px) * scale_in / scale_out))
    size += 1 - size % 2
    r = np.arange(size) - size // 2
    f = scale_out / scale_in
    yy, xx = np.meshgrid(r * f + (py - 1) / 2.0, r * f + (px - 1) / 2.0, indexing="ij")
    out = ndimage.map_coordinates(psf, [yy, xx], order=3, mode="constant", cval=0.0)
    out = np.clip(out, 0.0, None)
    s = out.sum()
    if not s > 0:
        raise ValueError("the resampled PSF is empty")
    return out / s


def background_sigma(img: np.ndarray, good: np.ndarray | None = None) -> float:
    """Robust background noise of an image: iterative 3σ clipping, σ from the MAD; NaN when fewer
    than 10 usable (finite, ``good``) pixels."""
    from astropy.stats import sigma_clipped_stats

    img = np.asarray(img, float)
    use = np.isfinite(img) if good is None else (np.asarray(good, bool) & np.isfinite(img))
    v = img[use]
    if v.size < 10:
        return float("nan")
    _, _, std = sigma_clipped_stats(v, sigma=3.0, maxiters=10, stdfunc="mad_std")
    return float(std)
