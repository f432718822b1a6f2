"""Output files of ``galdust fir map``: ``NAME.fir.fits`` and its figure ``NAME.fir.png``.

``NAME.fir.fits``: image HDUs ``LOG_SLD``, ``LOG_SMD``, ``TD`` and ``LOG_SLD_ERR``, ``LOG_SMD_ERR``,
``TD_ERR`` (NaN where not predicted), ``MASK`` (1 = predicted) and ``CUBE`` (the input bands at the
common resolution, Jy/pixel), all with the common grid's WCS; primary keys ``BANDS``, ``FWHM``
(common PSF, arcsec), ``PIXSCALE`` (arcsec), ``NPRED`` and provenance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from ..io import atomic_path, provenance_cards
from .maps import FIRMaps

__all__ = ["write_fir_fits", "plot_fir_maps", "MAP_KEYS"]

MAP_KEYS = ("LOG_SLD", "LOG_SMD", "TD")
_UNITS = {"LOG_SLD": "dex", "LOG_SMD": "dex", "TD": "K"}


def write_fir_fits(path: str | Path, fm: FIRMaps, *, overwrite: bool = False) -> Path:
    hdr = fits.Header()
    hdr["BANDS"] = (",".join(fm.bands), "input bands")
    hdr["FWHM"] = (round(fm.fwhm, 3), "common PSF FWHM [arcsec]")
    hdr["PIXSCALE"] = (round(fm.pixscale, 4), "pixel scale [arcsec]")
    hdr["NPRED"] = (int(fm.mask.sum()), "pixels predicted")
    for k, v, c in provenance_cards():
        hdr[k] = (v, c) if len(str(v)) + len(c) < 60 else v
    for i, note in enumerate(fm.notes):
        hdr[f"NOTE{i + 1}"] = note[:68]
    wh = fm.wcs.to_header()
    hdus = [fits.PrimaryHDU(header=hdr)]
    for k in MAP_KEYS:
        for suffix in ("", "_ERR"):
            h = fits.ImageHDU(fm.maps[k + suffix].astype(np.float32), header=wh, name=k + suffix)
            h.header["BUNIT"] = _UNITS[k]
            hdus.append(h)
    hdus.append(fits.ImageHDU(fm.mask.astype(np.uint8), header=wh, name="MASK"))
    if fm.flag is not None:  # 1: predicted, but outside the model's training domain
        hdus.append(fits.ImageHDU(fm.flag.astype(np.uint8), header=wh, name="FLAG"))
    c = fits.ImageHDU(fm.cube.astype(np.float32), header=wh, name="CUBE")
    c.header["BUNIT"] = "Jy/pix"
    c.header["BANDS"] = ",".join(fm.bands)
    hdus.append(c)
    with atomic_path(path, overwrite) as tmp:
        fits.HDUList(hdus).writeto(tmp)
    return Path(path)


def plot_fir_maps(path: str | Path, fm: FIRMaps, *, overwrite: bool = False) -> Path:
    """Inputs (up to six bands at the common resolution), the three maps and their σ maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = [b for b in ("galex_nuv", "sdss_r", "2mass_ks", "wise_w1", "wise_w3", "wise_w4") if b in fm.bands]
    show = show or fm.bands[:6]
    fig, ax = plt.subplots(3, 6, figsize=(16, 8.2), constrained_layout=True)
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
        a.set_visible(False)
    for j, b in enumerate(show[:6]):
        img = fm.cube[fm.bands.index(b)]
        v = img[np.isfinite(img)]
        lo, hi = (np.percentile(v, [5, 99.7]) if v.size else (0, 1))
        a = ax[0, j]
        a.set_visible(True)
        a.imshow(np.arcsinh((img - lo) / max(hi - lo, 1e-30) * 10), origin="lower", cmap="gray")
        a.set_title(b)
    labels = {"LOG_SLD": "log sL_d", "LOG_SMD": "log sM_d", "TD": "T_d [K]"}
    for j, k in enumerate(MAP_KEYS):
        for i, (suffix, cmap) in enumerate((("", "inferno"), ("_ERR", "viridis"))):
            a = ax[1 + i, 2 * j]
            a.set_visible(True)
            m = fm.maps[k + suffix]
            im = a.imshow(m, origin="lower", cmap=cmap)
            fig.colorbar(im, ax=a, shrink=0.8)
            a.set_title(labels[k] + (" σ" if suffix else ""))
        v = fm.maps[k][fm.mask == 1]
        a = ax[1, 2 * j + 1]
        a.set_visible(True)
        a.hist(v[np.isfinite(v)], bins=30, color="k", histtype="step")
        a.set_title(labels[k] + " per pixel")
        a.set_xticks(np.round(np.linspace(np.nanmin(v), np.nanmax(v), 3), 1) if np.isfinite(v).any() else [])
    fig.suptitle(f"FIR maps at {fm.fwhm:.1f} arcsec FWHM, {fm.pixscale:.2f} arcsec pixels; {int(fm.mask.sum())} "
                 f"pixels predicted")
    with atomic_path(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return Path(path)
