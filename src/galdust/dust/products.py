"""Output files of ``galdust fit``: ``NAME.dust.fits``, ``NAME.json`` and ``NAME.png``.

``NAME.dust.fits``: primary HDU with no data and the summary keys; image HDUs on the input pixel
grid with the input WCS: ``AV`` (mag at 0.551 µm), ``D`` (transmission at λ₀), ``HOST`` (the whole
unattenuated host's morphology, peak 1), ``HOST_CUBE`` (F_b S, plus the bulge for ``--host bulge-disk``,
input units), ``MODEL``, ``RESID`` ((data − model) √ivar, NaN where masked), ``MASK`` (1 = zero-weighted
pixel) and, for a bulge-disk host, ``BULGE`` (its Sérsic morphology, peak 1); ``--method amortized``
adds ``AV_ERR`` (the per-pixel σ of A_V). Primary keys: ``BANDS``, ``DELTA``, ``AV_LW``, ``COVFRAC``,
``CHI2``, ``CHI2ND``, ``NITER``, ``NITERD``, ``CONVERGE``, ``START``, ``HOSTMOD``, ``HOSTF1..n`` (the disk's SED for a
bulge-disk host), ``BULGEF1..n`` and ``BT`` (bulge-disk), ``METHOD``, ``DELTAERR``, ``AVLW_ERR``, ``FLAG``
and ``NOTE`` (amortized: FLAG 1 where the galaxy's colours are outside the network's training domain,
NOTE says how), ``NOTE`` (a MAP fit asked to start from the network, started red: why), ``LAMREF``, provenance.
All files are written atomically and never replace an existing file without ``overwrite``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from astropy.io import fits

from .. import __version__
from ..io import Observation, OutputExistsError, atomic_path, card, fits_card, provenance_cards, write_image_fits
from ..physics.attenuation import LAMBDA_REF
from .job import AV_COVER, DustResult

__all__ = ["output_paths", "write_dust_fits", "write_json", "plot_fit", "summary_dict"]

_COMMENTS = {
    "DELTA": "attenuation-curve slope delta (Noll+09)",
    "AV_LW": "host-light-weighted mean A_V [mag]",
    "COVFRAC": f"host-light fraction with A_V > {AV_COVER}",
    "CHI2": "reduced chi2 of the dust fit",
    "CHI2ND": "reduced chi2 of the dust-free fit",
    "NITER": "iterations (dust-free + dust fit + polish)",
    "NITERD": "iterations of the dust fit (limited by --max-iter)",
    "CONVERGE": "F converged before the iteration limit",
    "START": "initialisation (red or blue start)",
    "PRIORS": "learned priors (hsc: HSC host, dust: p(D|S))",
    "HOSTMOD": "host model (galdust fit --host)",
    "METHOD": "map (iterative fit) or amortized",
    "DELTAERR": "posterior sigma of DELTA (amortized)",
    "AVLW_ERR": "posterior sigma of AV_LW (amortized)",
    "BT": "bulge share of the reddest band's host flux",
    "BRE": "bulge effective radius [input px]",
    "BN": "bulge Sersic index",
    "BQ": "bulge axis ratio",
    "NUCF": "nucleus share of the reddest band's host flux",
    "NUCX": "nucleus centre x [input px, 0-based]",
    "NUCY": "nucleus centre y [input px, 0-based]",
    "CLUMPF": "clumps' share of the reddest band's host flux",
    "FLAG": "1: outside the network's training domain (NOTE)",
    "NOTE": "why the answer is not trusted, or what changed",
    "AVFRAME": "rest: A_V, D, delta at rest wavelengths (REDSHIFT)",
    "REDSHIFT": "the galaxy's redshift the dust was fitted at",
}


def output_paths(out_dir: str | Path, name: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {"fits": out_dir / f"{name}.dust.fits", "json": out_dir / f"{name}.json", "png": out_dir / f"{name}.png"}


def summary_dict(res: DustResult, obs: Observation) -> dict:
    d = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in res.scalars.items()}
    d["HOSTF"] = {b: float(f) for b, f in zip(obs.bands, res.F)}
    if res.F_BULGE is not None:
        d["BULGEF"] = {b: float(f) for b, f in zip(obs.bands, res.F_BULGE)}
    if res.F_NUCLEUS is not None:
        d["NUCLEUSF"] = {b: float(f) for b, f in zip(obs.bands, res.F_NUCLEUS)}
    d["BANDS"] = list(obs.bands)
    d["input"] = obs.source
    if res.grid is not None:
        d.update({k: v[0] for k, v in res.grid.header_cards().items()})
    d["galdust_version"] = __version__
    return d


def write_dust_fits(path: str | Path, res: DustResult, obs: Observation, *, overwrite: bool = False,
                    command: str | None = None) -> Path:
    hdr = fits.Header()
    hdr["BANDS"] = card("BANDS", ",".join(obs.bands), "band names, as the input")
    for k, v in res.scalars.items():
        hdr[k] = card(k, v, _COMMENTS.get(k, ""))
    for j, (b, f) in enumerate(zip(obs.bands, res.F)):
        hdr[f"HOSTF{j + 1}"] = card(f"HOSTF{j + 1}", float(f), f"host SED F of {b} [input units]")
    if res.F_BULGE is not None:
        for j, (b, f) in enumerate(zip(obs.bands, res.F_BULGE)):
            hdr[f"BULGEF{j + 1}"] = card(f"BULGEF{j + 1}", float(f), f"bulge SED of {b} [input units]")
    if res.F_NUCLEUS is not None:
        for j, (b, f) in enumerate(zip(obs.bands, res.F_NUCLEUS)):
            hdr[f"NUCFLX{j + 1}"] = card(f"NUCFLX{j + 1}", float(f), f"nucleus total flux in {b} [input units]")
    hdr["LAMREF"] = (LAMBDA_REF, "reference wavelength of D [micron] (AVFRAME)")
    if res.grid is not None:
        for k, v in res.grid.header_cards().items():
            hdr[k] = v
    if obs.unit:
        hdr["BUNIT"] = obs.unit
    for k, v, c in provenance_cards(command, [obs.source]):
        hdr[k] = card(k, v, c)  # long values continue, without comment
    wcs_cards = obs.wcs.to_header().tostring(endcard=False, padding=False) if obs.wcs is not None else ""
    maps = [("AV", res.AV, "mag"), ("D", res.D, ""), ("HOST", res.HOST, ""), ("HOST_CUBE", res.HOST_CUBE, obs.unit),
            ("MODEL", res.MODEL, obs.unit), ("RESID", res.RESID, ""), ("MASK", res.MASK, "")]
    if res.BULGE is not None:
        maps.append(("BULGE", res.BULGE, ""))
    if res.AV_ERR is not None:
        maps.insert(1, ("AV_ERR", res.AV_ERR, "mag"))
    images = []
    for name, arr, unit in maps:
        cards = wcs_cards + (fits_card("BUNIT", unit) if unit else "")
        cards += fits_card("BANDS", ",".join(obs.bands)) if np.ndim(arr) == 3 else ""
        images.append((name, np.asarray(arr, np.uint8 if name == "MASK" else np.float32), cards))
    write_image_fits(path, hdr, images, overwrite=overwrite)
    return Path(path)


def write_json(path: str | Path, res: DustResult, obs: Observation, *, overwrite: bool = False) -> Path:
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(json.dumps(summary_dict(res, obs), indent=2) + "\n")
    return Path(path)


def check_free(paths: list[Path], overwrite: bool) -> None:
    """Raise before fitting when an output exists and ``overwrite`` is off."""
    if overwrite:
        return
    for p in paths:
        if p.exists():
            raise OutputExistsError(f"{p}: exists (use --overwrite to replace it)")


def plot_fit(path: str | Path, res: DustResult, obs: Observation, *, overwrite: bool = False, title: str = "") -> Path:
    """One figure: observed / model / unattenuated-host RGB, residuals with and without dust, A_V
    map with host-light contours (50 and 84 %), and the host SED before and after attenuation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..report import rgb
    from .metrics import light_contour

    data = np.where(np.isfinite(obs.cube), obs.cube, 0.0)
    stretch = float(np.percentile(np.abs(data), 99.5)) or 1.0
    fig, ax = plt.subplots(2, 4, figsize=(15, 7.5), layout="constrained")
    ax = ax.ravel()
    for a, img, t in ((ax[0], data, "observed"), (ax[1], res.MODEL, "model (host × dust)"),
                      (ax[2], res.HOST_CUBE, "unattenuated host")):
        a.imshow(rgb(img, stretch=stretch), origin="lower")
        a.set_title(t)
    def chi(r):  # rms over bands of the normalised residual; 0 where masked
        n = np.sum(np.isfinite(r), axis=0)
        return np.sqrt(np.nansum(r**2, axis=0) / np.maximum(n, 1))

    for a, r, what, key in ((ax[3], res.RESID_ND, "dust-free", "CHI2ND"), (ax[4], res.RESID, "with dust", "CHI2")):
        im = a.imshow(np.nan_to_num(chi(r)), origin="lower", cmap="magma", vmin=0, vmax=3.0)
        a.set_title(f"|resid|/σ {what} (χ²={res.scalars[key]:.2f})")
    fig.colorbar(im, ax=[ax[3], ax[4]], shrink=0.6)
    im = ax[5].imshow(res.AV, origin="lower", cmap="inferno", vmin=0, vmax=max(float(np.percentile(res.AV, 99.5)), 0.1))
    for frac, ls in ((0.5, "-"), (0.84, "--")):
        m = light_contour(res.HOST, frac)
        ax[5].contour(m.astype(float), levels=[0.5], colors="c", linestyles=ls, linewidths=1)
    ax[5].set_title(f"A_V (AV_LW={res.scalars['AV_LW']:.2f}, δ={res.scalars['DELTA']:.2f})")
    fig.colorbar(im, ax=ax[5], shrink=0.8, label="A_V [mag]")
    ax[6].imshow(res.MASK, origin="lower", cmap="gray_r", vmin=0, vmax=1)
    ax[6].set_title(f"zero-weighted pixels ({int(res.MASK.sum())})")
    w = np.asarray(obs.wave_eff)
    ax[7].plot(w, np.nansum(res.HOST_CUBE, axis=(1, 2)), "o-", color="tab:blue", label="unattenuated host")
    ax[7].plot(w, np.nansum(res.MODEL, axis=(1, 2)), "s-", color="tab:red", label="attenuated (model)")
    ax[7].set_xlabel("λ_eff [µm]")
    ax[7].set_ylabel(f"flux [{obs.unit or 'input units'}]")
    ax[7].set_xticks(w)
    ax[7].set_xticklabels([f"{b}\n{x:.2f}" for b, x in zip(obs.bands, w)], fontsize=7)
    ax[7].legend(fontsize=8)
    ax[7].set_title("host SED before / after attenuation")
    for a in ax[:7]:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(title or Path(obs.source).name)
    with atomic_path(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)
