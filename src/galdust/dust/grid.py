"""The fit's pixel grid for an input of any size: crop around the target, block-sum, and back.

The priors work on images of at most 64×64 pixels (:data:`galdust.priors.host.SIZE`). A smaller
input is fitted as it is (the priors centre-pad it). A larger one is mapped onto the priors' grid
so that the galaxy fills it:

1. the target is the detection segment (:func:`galdust.sources.segment`, 3σ) that holds the
   cutout's centre; its extent is the largest distance of its pixels from its light centroid;
2. the fit box is ``size = 64 k`` input pixels centred on the target, with the smallest integer
   ``k ≥ 1`` such that the box holds the target with a margin (:data:`MARGIN` × its extent on each
   side); a galaxy small in a large cutout is cropped (``k = 1``), a large one is also rebinned;
3. the data are block-summed k × k (flux conserving: a block with some pixels masked is the mean of
   its good pixels times k², and gets zero weight when fewer than half of them are good), the
   inverse variance propagated (the variance of the sum), the PSF block-summed the same way;
4. the fitted maps are brought back to the input grid by bilinear interpolation of the block
   centres; pixels outside the fit box have no fit (``AV``/``D`` NaN, ``HOST`` 0, ``MASK`` 1).

A :class:`FitGrid` records the box and the factor; the output header states them (``CROP``,
``RESAMPLE``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..sources import segment

__all__ = ["FitGrid", "plan_grid", "MARGIN", "FIT_SIZE"]

FIT_SIZE = 64  # the priors' image size
#: the fit box holds the target's extent times this on each side of its centre
MARGIN = 1.05


@dataclass(frozen=True)
class FitGrid:
    """Input (ny, nx) → fit box ``[y0, y0 + size) × [x0, x0 + size)`` block-summed by ``k``."""

    ny: int
    nx: int
    y0: int = 0
    x0: int = 0
    size_y: int = 0
    size_x: int = 0
    k: int = 1

    @property
    def identity(self) -> bool:
        return self.k == 1 and self.y0 == 0 and self.x0 == 0 and (self.size_y, self.size_x) == (self.ny, self.nx)

    @property
    def fit_shape(self) -> tuple[int, int]:
        return self.size_y // self.k, self.size_x // self.k

    def header_cards(self) -> dict:
        """The FITS keys that say what was done (none for the identity)."""
        if self.identity:
            return {}
        return {"RESAMPLE": (self.k, "input px per fit px and axis (block sum)"),
                "CROP": (f"{self.y0},{self.x0},{self.size_y},{self.size_x}",
                         "fit box y0,x0,ny,nx [input px]")}

    # -------------------------------------------------------------- input grid -> fit grid
    def _box(self, a: np.ndarray, fill) -> np.ndarray:
        """The fit box of the last two axes of ``a`` (outside the image: ``fill``)."""
        out = np.full(a.shape[:-2] + (self.size_y, self.size_x), fill, dtype=a.dtype)
        ys = slice(max(self.y0, 0), min(self.y0 + self.size_y, self.ny))
        xs = slice(max(self.x0, 0), min(self.x0 + self.size_x, self.nx))
        out[..., ys.start - self.y0 : ys.stop - self.y0, xs.start - self.x0 : xs.stop - self.x0] = a[..., ys, xs]
        return out

    def _blocks(self, a: np.ndarray) -> np.ndarray:
        k = self.k
        sy, sx = self.fit_shape
        return a.reshape(a.shape[:-2] + (sy, k, sx, k))

    def data_to_fit(self, Y: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Y, ivar) (n_band, ny, nx) on the fit grid: block sums of the flux and their inverse variance."""
        if self.identity:
            return Y, ivar
        Yb = self._blocks(self._box(np.asarray(Y, np.float64), 0.0))
        ib = self._blocks(self._box(np.asarray(ivar, np.float64), 0.0))
        good = ib > 0
        n_good = good.sum(axis=(-3, -1))
        n = self.k * self.k
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(good, Yb, 0.0).sum(axis=(-3, -1)) / np.maximum(n_good, 1)
            var_mean = np.where(good, 1.0 / np.where(good, ib, 1.0), 0.0).sum(axis=(-3, -1)) / np.maximum(n_good, 1) ** 2
            ok = n_good * 2 >= n
            Yf = np.where(ok, mean * n, 0.0)
            ivf = np.where(ok & (var_mean > 0), 1.0 / (var_mean * n * n), 0.0)
        return Yf.astype(np.float32), ivf.astype(np.float32)

    def mask_to_fit(self, m: np.ndarray) -> np.ndarray:
        """A 2-D bad-pixel mask on the fit grid (bad where at least half the block is bad or outside)."""
        if self.identity:
            return m
        b = self._blocks(self._box(np.asarray(m, bool), True)).mean(axis=(-3, -1))
        return b > 0.5

    def psf_to_fit(self, psf: np.ndarray | None) -> np.ndarray | None:
        """Block-sum each band's PSF (n_band, py, px) by k about its centre pixel; odd size, unit sum."""
        if psf is None or self.k == 1:
            return psf
        k = self.k
        nb, py, px = psf.shape
        half = max(py, px) // 2
        m = int(math.ceil((half + k / 2.0) / k))  # coarse half-size
        size = (2 * m + 1) * k
        pad = np.zeros((nb, size, size), np.float64)
        c = size // 2  # centre fine pixel of the padded stamp = centre of the middle block (k odd)
        oy, ox = c - py // 2, c - px // 2
        pad[:, oy : oy + py, ox : ox + px] = psf
        out = pad.reshape(nb, 2 * m + 1, k, 2 * m + 1, k).sum(axis=(2, 4))
        s = out.sum(axis=(1, 2), keepdims=True)
        return (out / np.where(s > 0, s, 1.0)).astype(np.float32)

    # -------------------------------------------------------------- fit grid -> input grid
    def _coords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fit-grid coordinates of every input pixel, and whether it lies in the fit box."""
        yy = (np.arange(self.ny) - self.y0 - (self.k - 1) / 2.0) / self.k
        xx = (np.arange(self.nx) - self.x0 - (self.k - 1) / 2.0) / self.k
        iny = (np.arange(self.ny) >= self.y0) & (np.arange(self.ny) < self.y0 + self.size_y)
        inx = (np.arange(self.nx) >= self.x0) & (np.arange(self.nx) < self.x0 + self.size_x)
        return yy, xx, iny[:, None] & inx[None, :]

    def map_to_input(self, a: np.ndarray, outside: float = np.nan, per_pixel_flux: bool = False) -> np.ndarray:
        """A fit-grid map (..., sy, sx) on the input grid; ``per_pixel_flux`` divides by k² (a flux per
        fit pixel becomes one per input pixel)."""
        a = np.asarray(a)
        if self.identity:
            return a
        yy, xx, inside = self._coords()
        Y, X = np.meshgrid(yy, xx, indexing="ij")
        flat = a.reshape((-1,) + a.shape[-2:]).astype(np.float64)
        out = np.stack([ndimage.map_coordinates(p, [Y, X], order=1, mode="nearest") for p in flat])
        out = out.reshape(a.shape[:-2] + (self.ny, self.nx))
        if per_pixel_flux:
            out = out / (self.k * self.k)
        return np.where(inside, out, outside).astype(a.dtype if a.dtype.kind == "f" else np.float32)

    def mask_to_input(self, m: np.ndarray) -> np.ndarray:
        if self.identity:
            return m
        yy, xx, inside = self._coords()
        iy = np.clip(np.round(yy).astype(int), 0, m.shape[0] - 1)
        ix = np.clip(np.round(xx).astype(int), 0, m.shape[1] - 1)
        return np.where(inside, m[np.ix_(iy, ix)], True)


def plan_grid(Y: np.ndarray, ivar: np.ndarray, size: int = FIT_SIZE, margin: float = MARGIN) -> FitGrid:
    """The fit grid of an (n_band, ny, nx) input: identity up to ``size``², else crop and/or rebin so
    that the target (the central detection segment) fills a ``size``² grid."""
    _, ny, nx = Y.shape
    if ny <= size and nx <= size:
        return FitGrid(ny, nx, 0, 0, ny, nx, 1)
    target, _, snr = segment(Y, ivar, nsig=3.0)
    if target.any():
        w = np.where(target, np.clip(snr, 0, None), 0.0)
        yy, xx = np.mgrid[:ny, :nx]
        cy, cx = float((w * yy).sum() / w.sum()), float((w * xx).sum() / w.sum())
        extent = float(np.max(np.maximum(np.abs(yy[target] - cy), np.abs(xx[target] - cx)))) + 1.0
    else:  # nothing detected: the whole cutout, centred
        cy, cx = (ny - 1) / 2.0, (nx - 1) / 2.0
        extent = max(ny, nx) / 2.0
    k = max(1, int(math.ceil(2.0 * margin * extent / size)))
    k = min(k, int(math.ceil(max(ny, nx) / size)))  # never coarser than the whole cutout needs
    box = size * k
    y0 = int(round(cy - (box - 1) / 2.0))
    x0 = int(round(cx - (box - 1) / 2.0))
    return FitGrid(ny, nx, y0, x0, box, box, k)
