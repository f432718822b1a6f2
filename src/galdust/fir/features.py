"""Features of the FIR model (Dobbels et al. 2020, "D20"), from UV–MIR photometry.

Logs of the UV–MIR fluxes normalised by WISE 3.4 µm (IRAC 3.6 µm in its place; intensive,
distance-free), colours of neighbouring and diagnostic band pairs (trees do not form differences of
features themselves), and the *linear* flux ratios f_b / f_W1 of every band's measured flux,
non-detections included. The last are ours: a log feature must drop a band measured below 3σ or at a
negative value, yet such a measurement still says "faint" (what they gain: ``docs/fir_model.md``).
Missing bands are NaN, which the trees handle natively.
"""

from __future__ import annotations

import numpy as np

from .data import UVMIR_BANDS, Photometry

__all__ = ["COLOURS", "feature_names", "build_features", "features_in_bands", "band_dropout_features"]

_IDX = {b: i for i, b in enumerate(UVMIR_BANDS)}
#: extra colours (log flux ratios) added to the W1-normalised fluxes
COLOURS = (("galex_fuv", "galex_nuv"), ("galex_nuv", "sdss_r"), ("sdss_u", "sdss_r"), ("sdss_g", "sdss_i"),
           ("sdss_r", "2mass_ks"), ("wise_w3", "wise_w2"), ("wise_w4", "wise_w3"), ("wise_w3", "2mass_ks"),
           ("wise_w4", "2mass_ks"), ("irac_4", "irac_3"), ("irac_4", "2mass_ks"), ("galex_fuv", "wise_w4"),
           ("galex_nuv", "wise_w3"))


def feature_names() -> list[str]:
    others = [b for b in UVMIR_BANDS if b != "wise_w1"]
    return ([f"log_{b}_w1" for b in others] + [f"log_{a}_{b}" for a, b in COLOURS]
            + [f"lin_{b}_w1" for b in others])


def build_features(phot: Photometry) -> tuple[np.ndarray, np.ndarray]:
    """(X (N, n_feat) with NaN for missing, usable (N,) bool: has a normalising band).

    Columns as :func:`feature_names`: log flux ratios to the normalising band and log colours of
    detected bands, then linear ratios of the measured fluxes (non-detections included)."""
    f = np.asarray(phot.flux, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        lf = np.where(f > 0, np.log10(f), np.nan)
    norm = lf[:, _IDX["wise_w1"]]
    # IRAC 3.6 µm stands in for WISE 3.4 µm when the latter is missing (same stellar emission)
    norm = np.where(np.isfinite(norm), norm, lf[:, _IDX["irac_1"]])
    usable = np.isfinite(norm)
    cols = [lf[:, _IDX[b]] - norm for b in UVMIR_BANDS if b != "wise_w1"]
    cols += [lf[:, _IDX[a]] - lf[:, _IDX[b]] for a, b in COLOURS]
    meas = phot.measured_flux()
    lin_norm = 10.0**norm
    cols += [meas[:, _IDX[b]] / lin_norm for b in UVMIR_BANDS if b != "wise_w1"]
    return np.stack(cols, axis=1), usable


def features_in_bands(phot: Photometry, rows, keep) -> np.ndarray:
    """Features of ``rows`` of ``phot`` with every band outside ``keep`` missing; ``keep`` is a band
    mask over ``UVMIR_BANDS``, one for all rows (n_band,) or one per row (len(rows), n_band)."""
    rows = np.asarray(rows)
    keep = np.asarray(keep, bool)
    sub = Photometry([phot.names[i] for i in rows], np.where(keep, phot.flux[rows], np.nan),
                     np.where(keep, phot.err[rows], np.nan), phot.upper[rows] & keep,
                     measured=np.where(keep, phot.measured_flux()[rows], np.nan))
    return build_features(sub)[0]


def band_dropout_features(phot: Photometry, rows, n_copies: int, seed: int = 0) -> np.ndarray:
    """(n_copies, len(rows), n_feat): features of ``rows`` of ``phot``, each copy seen through the
    bands of another row drawn at random (its detected bands; W1 always kept), as a galaxy looks in a
    catalogue that lacks some surveys."""
    rows = np.asarray(rows)
    rng = np.random.default_rng(seed)
    f = np.asarray(phot.flux, float)
    has = (np.isfinite(f) & (f > 0))[rows]
    has[:, _IDX["wise_w1"]] = True
    return np.stack([features_in_bands(phot, rows, has[rng.integers(0, len(rows), len(rows))])
                     for _ in range(n_copies)])
