"""Readers of UV–MIR photometry tables and CIGALE dust properties (DustPedia formats and ours).

Photometry comes in two formats, detected from the columns:

* **DustPedia** aperture photometry as distributed (Clark et al. 2018): ``name``, then per band
  ``GALEX_FUV``, ``GALEX_FUV_err``, ``GALEX_FUV_flag``, … in Jy;
* **galdust**: ``name`` and registry band names (``galex_fuv``, ``sdss_u``, ``wise_w1``, …) in Jy with
  ``<band>_err``.

DustPedia flags (per band, any combination): ``C``/``A`` (contaminated / artefact in the aperture)
make the value unusable (set missing); ``N`` (non-detection), non-positive fluxes and fluxes
below 3σ are non-detections: missing from ``flux`` (the log features) but kept in ``measured``,
because a low or negative measurement still says the band is faint (the linear features use it);
lowercase (``c``, ``a``, ``n``: possible contamination / artefact / marginal) are kept. NaN and
non-finite fluxes are missing everywhere.
A galaxy is never dropped for a missing band; only the normalising band (WISE 3.4 µm, or IRAC
3.6 µm in its place) is required for a prediction.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import InputError

__all__ = ["UVMIR_BANDS", "DUSTPEDIA_COLUMNS", "Photometry", "read_photometry", "read_properties", "TARGETS"]

#: the UV–MIR bands used (Dobbels et al. 2020), registry names
UVMIR_BANDS = ("galex_fuv", "galex_nuv", "sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z", "2mass_j", "2mass_h",
               "2mass_ks", "wise_w1", "wise_w2", "wise_w3", "wise_w4", "irac_1", "irac_2", "irac_3", "irac_4")
DUSTPEDIA_COLUMNS = dict(zip(UVMIR_BANDS, (
    "GALEX_FUV", "GALEX_NUV", "SDSS_u", "SDSS_g", "SDSS_r", "SDSS_i", "SDSS_z", "2MASS_J", "2MASS_H", "2MASS_Ks",
    "WISE_3.4", "WISE_4.6", "WISE_12", "WISE_22", "Spitzer_3.6", "Spitzer_4.5", "Spitzer_5.8", "Spitzer_8.0")))
#: targets: column in our tables, CIGALE columns used to build it
TARGETS = ("log_sLd", "log_sMd", "Td")


@dataclass
class Photometry:
    """Fluxes (Jy) of N objects in ``UVMIR_BANDS``; NaN where missing."""

    names: list[str]
    flux: np.ndarray  # (N, n_band)
    err: np.ndarray  # (N, n_band)
    upper: np.ndarray  # (N, n_band) bool: non-detection (flux is an upper limit / unusable)
    source: str = ""
    notes: list[str] = field(default_factory=list)
    #: (N, n_band) the measured flux of every usable band, non-detections (low, zero or negative)
    #: included; NaN where nothing usable was measured. None: the same as ``flux``.
    measured: np.ndarray | None = None

    def measured_flux(self) -> np.ndarray:
        return np.asarray(self.flux if self.measured is None else self.measured, float)


def _float(v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def _warn_unread_bands(path, cols) -> None:
    """Warn about measurement-like columns (X with an X_err beside it) that are no galdust band name:
    a misspelt band (``WISE4``, ``w3``) would otherwise be dropped without a word."""
    import difflib
    import warnings

    cols = list(cols)
    unread = [c for c in cols if c not in UVMIR_BANDS and f"{c}_err" in cols]
    if unread:
        hints = [f"{c} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(c.lower(), UVMIR_BANDS, 1, 0.6))
                 else c for c in unread]
        warnings.warn(f"{path}: columns not read, not galdust band names: {', '.join(hints)} "
                      f"(bands: {', '.join(UVMIR_BANDS)})", stacklevel=3)


def read_photometry(path: str | Path) -> Photometry:
    """Read a DustPedia-format or galdust-format photometry CSV (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: cannot read as CSV ({e})") from None
    if not rows:
        raise InputError(f"{path}: no rows")
    cols = set(rows[0])
    if "name" not in cols:
        raise InputError(f"{path}: no 'name' column")
    dustpedia = any(c in cols for c in DUSTPEDIA_COLUMNS.values())
    ours = any(b in cols for b in UVMIR_BANDS)
    if not (dustpedia or ours):
        raise InputError(f"{path}: no known band columns (DustPedia 'WISE_3.4', ... or galdust 'wise_w1', ...)")
    colmap = DUSTPEDIA_COLUMNS if dustpedia else {b: b for b in UVMIR_BANDS}
    if not dustpedia:
        _warn_unread_bands(path, rows[0].keys())
    n, nb = len(rows), len(UVMIR_BANDS)
    flux = np.full((n, nb), np.nan)
    err = np.full((n, nb), np.nan)
    upper = np.zeros((n, nb), bool)
    measured = np.full((n, nb), np.nan)
    for i, r in enumerate(rows):
        for j, b in enumerate(UVMIR_BANDS):
            c = colmap[b]
            if c not in r:
                continue
            f, e = _float(r.get(c)), _float(r.get(f"{c}_err"))
            flag = (r.get(f"{c}_flag") or "") if dustpedia else ""
            if "C" in flag or "A" in flag:
                continue
            measured[i, j] = f
            if "N" in flag or not (f > 0) or (math.isfinite(e) and e > 0 and f < 3 * e):  # non-detection (< 3σ)
                upper[i, j] = True
                continue
            flux[i, j], err[i, j] = f, e
    return Photometry([r["name"] for r in rows], flux, err, upper, str(path), measured=measured)


def read_properties(path: str | Path) -> dict[str, dict[str, float]]:
    """CIGALE results (Nersesian et al. 2019 format) → ``{name: {log_sLd, log_sMd, Td, *_err}}``.

    sL_d = L_dust / L_bolo (L_bolo: CIGALE's unattenuated stellar luminosity), sM_d = M_dust / M_*;
    rows that were not fitted (NaN) are left out.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = ("id", "Ldust__Lsol", "Lbolo__Lsol", "Mdust__Msol", "Mstar__Msol", "Tdust__K")
    if not rows or any(k not in rows[0] for k in need):
        raise InputError(f"{path}: not a CIGALE results table (needs columns {', '.join(need)})")
    out = {}
    for r in rows:
        ld, lb, md, ms, td = (_float(r[k]) for k in need[1:])
        if not all(math.isfinite(x) and x > 0 for x in (ld, lb, md, ms, td)):
            continue
        eld, elb = _float(r.get("Ldust_err")), _float(r.get("Lbolo_err"))
        emd, ems = _float(r.get("Mdust_err")), _float(r.get("Mstar_err"))
        rel = lambda e, x: e / x if math.isfinite(e) and e > 0 else math.nan  # noqa: E731
        out[r["id"]] = dict(
            log_sLd=math.log10(ld / lb), log_sMd=math.log10(md / ms), Td=td,
            log_sLd_err=math.hypot(rel(eld, ld), rel(elb, lb)) / math.log(10),
            log_sMd_err=math.hypot(rel(emd, md), rel(ems, ms)) / math.log(10),
            Td_err=_float(r.get("Tdust_err")),
        )
    return out
