"""Source detection, the one implementation: neighbours of a single-galaxy cutout (``galdust fit``)
and compact sources (foreground stars) in a galaxy's band images (``galdust fir map``).

Both start from the same pieces: a detection image in units of its noise, detected pixels above a
threshold, and local maxima (peaks). The background noise is :func:`galdust.resample.background_sigma`.

Neighbours of a single-galaxy fit (:func:`detect_neighbours`)
--------------------------------------------------------------
The fit models one galaxy; other sources in the cutout must not be explained by it. Steps:

1. an S/N image ``Σ_b ivar_b Y_b / sqrt(Σ_b ivar_b)`` (the inverse-variance-weighted band sum),
   smoothed by a Gaussian of σ = ``smooth`` px and rescaled to unit noise;
2. pixels above ``nsig`` are detected; detected regions under ``min_area`` pixels are noise and
   dropped;
3. peaks: local maxima (5×5) of the smoothed S/N above ``nsig``;
4. each detected pixel is assigned to a peak by steepest ascent (a watershed);
5. the *target* is the peak whose basin holds the cutout's centre (else the peak closest to it);
   other peaks are merged into the target when they are not separated from it by a saddle: along
   the straight line between the two peaks the S/N never drops below ``saddle`` × the lower peak
   (clumps and arms of the target itself are kept this way). With ``red`` (the index of the
   reddest band) a peak must also be separated in that band's own S/N image, by a saddle below
   ``saddle_red`` (0.15) × the lower peak: dust lanes and the gaps between spiral arms and clumps
   are shallow in the red (at 1 µm the attenuation is a fifth of that at λ₀), while the sky
   between two sources is dark in every band (what it changed, measured: ``docs/eval_dust.md``);
6. the remaining basins (other sources), grown by ``grow`` pixels but not into the target's own
   basin, are masked (weight zero).

Limitation: a neighbour without its own peak (fully blended) is not masked, and a clump of the
target separated by a deep enough saddle is masked; give a user mask (``--mask``) or use
``--no-detect`` for those.

Compact sources (:func:`detect_compact`)
----------------------------------------
Peaks of the image minus its median filter (at 5 FWHM, which removes the galaxy's smooth light)
above ``nsig`` times that residual's background noise, one per PSF-sized neighbourhood: foreground
stars on a galaxy, found on a sharp stellar band at its native resolution.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["detect_neighbours", "snr_image", "segment", "local_peaks", "detect_compact"]


def snr_image(cube: np.ndarray, ivar: np.ndarray, smooth: float = 1.0) -> np.ndarray:
    """Smoothed detection S/N image (unit noise for white noise)."""
    cube = np.where(ivar > 0, cube, 0.0)
    num = np.sum(cube * ivar, axis=0)
    den = np.sqrt(np.maximum(np.sum(ivar, axis=0), 1e-30))
    snr = np.where(np.sum(ivar, axis=0) > 0, num / den, 0.0)
    if smooth > 0:
        # smoothing unit white noise by a normalised Gaussian of σ = s px leaves σ = 1/(2 sqrt(π) s)
        snr = ndimage.gaussian_filter(snr, smooth, mode="constant") * (2.0 * np.sqrt(np.pi) * smooth)
    return snr


def _steepest_ascent(img: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Index (flat) of the local maximum each detected pixel climbs to (−1 elsewhere)."""
    ny, nx = img.shape
    pad = np.pad(img, 1, constant_values=-np.inf)
    best = np.arange(ny * nx).reshape(ny, nx)
    best_val = img.copy()
    yy, xx = np.mgrid[:ny, :nx]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            v = pad[1 + dy : 1 + dy + ny, 1 + dx : 1 + dx + nx]
            better = v > best_val
            best_val = np.where(better, v, best_val)
            best = np.where(better, np.clip(yy + dy, 0, ny - 1) * nx + np.clip(xx + dx, 0, nx - 1), best)
    nxt = best.ravel()
    for _ in range(ny + nx):  # pointer jumping to the fixed point (the local maximum)
        new = nxt[nxt]
        if np.array_equal(new, nxt):
            break
        nxt = new
    return np.where(detected.ravel(), nxt, -1).reshape(ny, nx)


def _separated(snr, p, q, saddle: float) -> bool:
    (y0, x0), (y1, x1) = p, q
    n = int(max(abs(y1 - y0), abs(x1 - x0))) * 2 + 2
    ys = np.linspace(y0, y1, n)
    xs = np.linspace(x0, x1, n)
    line = ndimage.map_coordinates(snr, [ys, xs], order=1)
    return bool(line.min() < saddle * min(snr[p], snr[q]))


def segment(cube, ivar, *, nsig: float = 4.0, smooth: float = 1.0, min_area: int = 5, saddle: float = 0.5,
            centre: tuple[float, float] | None = None, red: int | None = None, saddle_red: float = 0.15):
    """(target mask, neighbour mask before growing, S/N image)."""
    cube, ivar = np.asarray(cube, float), np.asarray(ivar, float)
    ny, nx = cube.shape[-2:]
    snr = snr_image(cube, ivar, smooth)
    lab, n = ndimage.label(snr > nsig, structure=np.ones((3, 3)))
    area = ndimage.sum(np.ones_like(snr), lab, index=np.arange(1, n + 1))
    detected = np.isin(lab, 1 + np.flatnonzero(area >= min_area))
    if not detected.any():
        return np.zeros((ny, nx), bool), np.zeros((ny, nx), bool), snr
    basin = _steepest_ascent(snr, detected)
    peaks = np.unique(basin[detected])
    cy, cx = centre if centre is not None else ((ny - 1) / 2.0, (nx - 1) / 2.0)
    c = basin[int(round(cy)), int(round(cx))]
    if c < 0:
        d2 = [((p // nx) - cy) ** 2 + ((p % nx) - cx) ** 2 for p in peaks]
        c = peaks[int(np.argmin(d2))]
    pc = divmod(int(c), nx)
    snr_red = None if red is None else snr_image(cube[red : red + 1], ivar[red : red + 1], smooth)

    def apart(p):
        q = divmod(int(p), nx)
        return _separated(snr, pc, q, saddle) and (snr_red is None or _separated(snr_red, pc, q, saddle_red))

    target_peaks = [c] + [p for p in peaks if p != c and not apart(p)]
    target = np.isin(basin, target_peaks)
    others = detected & ~target
    return target, others, snr


def detect_neighbours(cube: np.ndarray, ivar: np.ndarray, *, grow: int = 2, **options) -> np.ndarray:
    """Boolean (ny, nx) mask of pixels belonging to neighbouring sources (True = masked); ``options``
    go to :func:`segment` (e.g. ``nsig``, and ``red``: the index of the reddest band; see the module
    docstring)."""
    target, others, _ = segment(cube, ivar, **options)
    if grow > 0 and others.any():
        others = ndimage.binary_dilation(others, structure=np.ones((3, 3)), iterations=grow) & ~target
    return others


def local_peaks(img: np.ndarray, size: int, threshold: float) -> np.ndarray:
    """Boolean map of the local maxima of ``img`` in ``size``×``size`` neighbourhoods above ``threshold``."""
    size = max(3, int(size)) | 1
    return (img == ndimage.maximum_filter(img, size=size)) & (img > threshold)


def detect_compact(data: np.ndarray, fwhm_px: float, nsig: float = 10.0,
                   exclude: np.ndarray | None = None) -> list[tuple[float, float]]:
    """(x, y) pixel positions of compact sources (see the module docstring); ``exclude``: boolean mask
    where peaks are ignored (e.g. the galaxy's nucleus)."""
    from .resample import background_sigma

    d = np.nan_to_num(np.asarray(data, float))
    resid = d - ndimage.median_filter(d, size=max(3, int(5 * fwhm_px)) | 1)
    peaks = local_peaks(resid, 2 * fwhm_px, nsig * background_sigma(resid))
    if exclude is not None:
        peaks &= ~exclude
    yy, xx = np.nonzero(peaks)
    return [(float(x), float(y)) for x, y in zip(xx, yy)]
