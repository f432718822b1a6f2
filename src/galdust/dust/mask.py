"""Neighbour masking for single-galaxy fits: a simple, documented detection step.

The fit models one galaxy; other sources in the cutout must not be explained by it. Detection:

1. an S/N image ``Σ_b ivar_b Y_b / sqrt(Σ_b ivar_b)`` (the inverse-variance-weighted band sum),
   smoothed by a Gaussian of σ = ``smooth`` px and rescaled to unit noise;
2. pixels above ``nsig`` form segments (8-connected); segments under ``min_area`` pixels are
   noise peaks and dropped;
3. the *target* is the segment holding the cutout's centre pixel (or, if the centre is not
   detected, the segment whose brightest pixel is closest to the centre);
4. every other segment, grown by ``grow`` pixels (but not into the target's interior), is masked
   (weight zero).

Limitation: a neighbour blended with the target above ``nsig`` stays in the target's segment and is
not masked; give a user mask (``--mask``) for those.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["detect_neighbours", "snr_image"]


def snr_image(cube: np.ndarray, ivar: np.ndarray, smooth: float = 1.0) -> np.ndarray:
    """Smoothed detection S/N image (unit noise for white noise)."""
    cube = np.where(ivar > 0, cube, 0.0)
    num = np.sum(cube * ivar, axis=0)
    den = np.sqrt(np.maximum(np.sum(ivar, axis=0), 1e-30))
    snr = np.where(np.sum(ivar, axis=0) > 0, num / den, 0.0)
    if smooth > 0:
        # smoothing a unit-variance white-noise image by a normalised Gaussian reduces its σ by
        # 1/(2 sqrt(π) s); rescale so that the threshold stays in units of the noise
        snr = ndimage.gaussian_filter(snr, smooth, mode="constant") * (2.0 * np.sqrt(np.pi) * smooth)
    return snr


def detect_neighbours(cube: np.ndarray, ivar: np.ndarray, *, nsig: float = 4.0, smooth: float = 1.0,
                      grow: int = 2, min_area: int = 5, centre: tuple[float, float] | None = None) -> np.ndarray:
    """Boolean (ny, nx) mask of pixels belonging to neighbouring sources (True = masked)."""
    cube, ivar = np.asarray(cube, float), np.asarray(ivar, float)
    ny, nx = cube.shape[-2:]
    snr = snr_image(cube, ivar, smooth)
    seg, n = ndimage.label(snr > nsig, structure=np.ones((3, 3)))
    if n > 1:  # drop segments smaller than min_area (noise peaks)
        area = ndimage.sum(np.ones_like(snr), seg, index=np.arange(1, n + 1))
        keep = np.concatenate([[0], np.where(area >= min_area, np.arange(1, n + 1), 0)])
        seg, n = ndimage.label(keep[seg] > 0, structure=np.ones((3, 3)))
    if n <= 1:
        return np.zeros((ny, nx), bool)
    cy, cx = centre if centre is not None else ((ny - 1) / 2.0, (nx - 1) / 2.0)
    target = seg[int(round(cy)), int(round(cx))]
    if target == 0:
        peaks = ndimage.maximum_position(snr, seg, index=np.arange(1, n + 1))
        d2 = [(py - cy) ** 2 + (px - cx) ** 2 for py, px in peaks]
        target = int(np.argmin(d2)) + 1
    others = (seg > 0) & (seg != target)
    if grow > 0:
        others = ndimage.binary_dilation(others, structure=np.ones((3, 3)), iterations=grow)
        # do not eat into the target's own detected pixels beyond one pixel of contact
        own = ndimage.binary_erosion(seg == target, structure=np.ones((3, 3)), iterations=1)
        others &= ~own
    return others
