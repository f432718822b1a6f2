"""A posterior model's training domain, and the rows of a catalogue outside it.

A model trained on simulations answers any row, also one unlike every galaxy it saw (fainter than its
magnitude cut, colours no simulated galaxy has). Each model's sidecar keeps, from its training set,
the range of its inputs (:mod:`galdust.ml.domain`): the asinh magnitudes and adjacent-band colours,
and the range of each band's S/N (``snr``; the models read the fluxes, not their errors).
:func:`outside` names, per row, the inputs out of range ('' when inside); ``galdust posterior
sample`` writes them in the ``note`` column and sets ``flag`` = 1 (the row is answered, not trusted).
"""

from __future__ import annotations

import numpy as np

from ..ml.domain import fit_ranges, outside_notes

__all__ = ["domain_features", "fit_domain", "outside", "snr_features"]


def domain_features(flux, soft, bands) -> tuple[np.ndarray, list[str]]:
    from .model import luptitudes

    m = luptitudes(flux, soft)
    short = [b.split("_")[-1] for b in bands]
    names = list(short) + [f"{a}-{b}" for a, b in zip(short[:-1], short[1:])]
    return np.concatenate([m, m[:, :-1] - m[:, 1:]], axis=1), names


#: a row is flagged as noisier than the training photometry when a band's S/N is below the training
#: range's lower end (0.1 % quantile, padded) by more than this (log10: a factor 2)
SNR_MARGIN_DEX = 0.3


def snr_features(flux, flux_err, bands) -> tuple[np.ndarray, list[str]]:
    """log10 S/N per band (NaN where the flux is not positive or the error not given)."""
    flux, err = np.asarray(flux, float), np.asarray(flux_err, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ls = np.where((flux > 0) & (err > 0) & np.isfinite(err), np.log10(flux / err), np.nan)
    return ls, [f"S/N {b.split('_')[-1]}" for b in bands]


def fit_domain(flux, soft, bands, q: float = 0.001, pad: float = 0.1, flux_err=None, z=None) -> dict:
    """The input ranges of a training set's fluxes (n, n_band) [nmgy] (a JSON-able dict); with
    ``flux_err``, also the range of log10 S/N per band (``snr``): the models read the fluxes only, so
    a row much noisier than the training photometry gets intervals too narrow for its data. With ``z``
    (a model given the redshift), its largest training redshift (``z_max``)."""
    X, names = domain_features(np.asarray(flux, float), soft, bands)
    d = fit_ranges(X[np.isfinite(X).all(axis=1)], names, q, pad)
    if flux_err is not None:
        L, snames = snr_features(flux, flux_err, bands)
        if np.isfinite(L).any():  # flagged: noisier than half the S/N of the noisiest training rows
            d["snr"] = dict(fit_ranges(L, snames, q, pad), margin_dex=SNR_MARGIN_DEX)
    if z is not None:
        d["z_max"] = float(np.nanmax(np.asarray(z, float)))
    return d


def outside(domain: dict | None, flux, soft, bands, flux_err=None) -> list[str]:
    """Per row: '' inside the domain, else 'outside the training domain: r 19.2 > 18.1; u-g ...'; with
    ``flux_err`` and a domain that has S/N ranges, a row noisier than every training row in some band
    also gets 'noisier than the training photometry: S/N u 0.3 < 0.72' (the S/N below half the
    training range's lower end, :data:`SNR_MARGIN_DEX`)."""
    flux = np.asarray(flux, float)
    if not domain:
        return [""] * len(flux)
    notes = list(outside_notes(domain, domain_features(flux, soft, bands)[0]))
    snr = domain.get("snr")
    if snr and flux_err is not None:
        L, names = snr_features(flux, flux_err, bands)
        lo = np.array([np.nan if v is None else v for v in snr["lo"]], float) - snr.get("margin_dex", 0.0)
        for i in range(len(flux)):
            low = [f"{names[j]} {10 ** L[i, j]:.3g} < {10 ** lo[j]:.3g}" for j in range(L.shape[1])
                   if L[i, j] < lo[j]]
            if low:
                why = "noisier than the training photometry: " + "; ".join(low)
                notes[i] = f"{notes[i]}; {why}" if notes[i] else why
    return notes
