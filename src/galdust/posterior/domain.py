"""A posterior model's training domain, and the rows of a catalogue outside it.

A model trained on simulations answers any row, also one unlike every galaxy it saw (fainter than its
magnitude cut, colours no simulated galaxy has). Each model's sidecar keeps, from its training set,
the range of its inputs (:mod:`galdust.ml.domain`): the asinh magnitudes and adjacent-band colours.
:func:`outside` names, per row, the inputs out of range ('' when inside); ``galdust posterior
sample`` writes them in the ``note`` column and sets ``flag`` = 1 (the row is answered, not trusted).
"""

from __future__ import annotations

import numpy as np

from ..ml.domain import fit_ranges, outside_notes

__all__ = ["domain_features", "fit_domain", "outside"]


def domain_features(flux, soft, bands) -> tuple[np.ndarray, list[str]]:
    from .model import luptitudes

    m = luptitudes(flux, soft)
    short = [b.split("_")[-1] for b in bands]
    names = list(short) + [f"{a}-{b}" for a, b in zip(short[:-1], short[1:])]
    return np.concatenate([m, m[:, :-1] - m[:, 1:]], axis=1), names


def fit_domain(flux, soft, bands, q: float = 0.001, pad: float = 0.1) -> dict:
    """The input ranges of a training set's fluxes (n, n_band) [nmgy] (a JSON-able dict)."""
    X, names = domain_features(np.asarray(flux, float), soft, bands)
    return fit_ranges(X[np.isfinite(X).all(axis=1)], names, q, pad)


def outside(domain: dict | None, flux, soft, bands) -> list[str]:
    """Per row: '' inside the domain, else 'outside the training domain: r 19.2 > 18.1; u-g ...'."""
    flux = np.asarray(flux, float)
    if not domain:
        return [""] * len(flux)
    return outside_notes(domain, domain_features(flux, soft, bands)[0])
