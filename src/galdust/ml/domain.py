"""A model's training domain: the range of each input feature over its training set, and the rows
of a catalogue outside it.

A model answers any row, also one unlike every row it learnt from. Its sidecar keeps, per input
feature, the 0.1–99.9 percentiles of its training set (over the rows where the feature is measured)
widened by a tenth of their span on each side (``lo``, ``hi``). A row with a feature outside gets a
note naming it, and the commands set ``flag`` = 1: answered, not trusted. Missing features (NaN) are
never out of range.

Ranges miss a row whose every feature is usual but whose combination is not (an elliptical's colours,
each within the range of spirals). With ``neighbours``, the domain also keeps the training rows
(standardised features) and flags a row whose k-th nearest training row is farther than the
``quantile`` of the training rows' own leave-one-out distances (:func:`fit_neighbours`).

Used by the posterior models (:mod:`galdust.posterior.domain`: asinh magnitudes and colours) and the
FIR model (:meth:`galdust.fir.model.FIRModel.outside`: log flux ratios and colours, and neighbours).
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["fit_ranges", "fit_neighbours", "neighbour_distance", "outside_mask", "outside_notes"]

PREFIX = "outside the training domain: "


def fit_ranges(X, names, q: float = 0.001, pad: float = 0.1) -> dict:
    """The ranges of the features (columns of ``X``, NaN = not measured) as a JSON-able dict; a
    feature never measured in training has no range (``None``)."""
    X = np.asarray(X, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column
        lo, hi = np.nanquantile(X, q, axis=0), np.nanquantile(X, 1 - q, axis=0)
    span = hi - lo

    def js(a):
        return [round(float(v), 4) if np.isfinite(v) else None for v in a]

    return dict(features=list(names), lo=js(lo - pad * span), hi=js(hi + pad * span), quantile=q, pad=pad,
                n=int(len(X)))


def fit_neighbours(X, k: int = 5, quantile: float = 0.99, max_rows: int = 3000, seed: int = 0) -> dict:
    """The training rows for the nearest-neighbour test (at most ``max_rows``, drawn at random), the
    per-feature scale (NMAD) and the distance threshold, as a JSON-able dict (the value of a domain's
    ``neighbours``)."""
    X = np.asarray(X, float)
    if len(X) > max_rows:
        X = X[np.sort(np.random.default_rng(seed).choice(len(X), max_rows, replace=False))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(X, axis=0)
        scale = 1.4826 * np.nanmedian(np.abs(X - med), axis=0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    ref = np.round(X / scale, 3)
    nb = dict(k=k, quantile=quantile, scale=[round(float(v), 5) for v in scale],
              rows=[[None if not np.isfinite(v) else float(v) for v in r] for r in ref])
    d = _knn(ref, ref, k, leave_one_out=True)
    nb["threshold"] = round(float(np.quantile(d[np.isfinite(d)], quantile)), 4)
    return nb


def _knn(Z, ref, k: int, leave_one_out: bool = False, chunk: int = 256) -> np.ndarray:
    """RMS standardised difference to the k-th nearest row of ``ref``, over the features both have
    (NaN for a row that shares no feature with k rows)."""
    out = np.empty(len(Z))
    R = np.nan_to_num(ref)
    Rm = np.isfinite(ref).astype(float)
    for i in range(0, len(Z), chunk):
        z = Z[i : i + chunk]
        zm = np.isfinite(z).astype(float)
        zz = np.nan_to_num(z)
        both = zm @ Rm.T  # features measured in both rows
        d2 = (zz**2 * zm) @ Rm.T + zm @ (R**2 * Rm).T - 2 * zz @ R.T
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.sqrt(np.maximum(d2, 0) / both)
        d[both == 0] = np.nan  # nothing to compare: never the nearest, and no flag for a row with no features
        if leave_one_out:
            d[np.arange(len(z)), np.arange(i, i + len(z))] = np.inf
        out[i : i + chunk] = np.sort(d, axis=1)[:, k - 1]
    return out


def neighbour_distance(domain: dict, X) -> np.ndarray:
    """(n,): a row's distance to its k-th nearest training row (in the units of the threshold)."""
    nb = domain["neighbours"]
    ref = np.array([[np.nan if v is None else v for v in r] for r in nb["rows"]], float)
    return _knn(np.asarray(X, float) / np.asarray(nb["scale"]), ref, nb["k"])


def _bounds(domain: dict):
    return (np.array([np.nan if v is None else v for v in domain["lo"]], float),
            np.array([np.nan if v is None else v for v in domain["hi"]], float))


def _test(domain: dict, X: np.ndarray):
    """(n, f) features out of range, (n,) neighbour distances (None without neighbours), (n,) flagged."""
    lo, hi = _bounds(domain)
    with np.errstate(invalid="ignore"):
        out_range = (X < lo) | (X > hi)
    bad = out_range.any(axis=1)
    nb = domain.get("neighbours")
    dist = neighbour_distance(domain, X) if nb else None
    if nb:
        bad |= dist > nb["threshold"]
    return out_range, dist, bad


def outside_mask(domain: dict | None, X) -> np.ndarray:
    """(n,) bool: the rows of ``X`` (columns as ``domain["features"]``) outside the domain."""
    X = np.asarray(X, float)
    return _test(domain, X)[2] if domain else np.zeros(len(X), bool)


def outside_notes(domain: dict | None, X) -> list[str]:
    """Per row: '' inside the domain, else 'outside the training domain: r 19.20 > 18.10; u-g ...'."""
    X = np.asarray(X, float)
    out = [""] * len(X)
    if not domain:
        return out
    out_range, dist, bad = _test(domain, X)
    lo, hi = _bounds(domain)
    nb = domain.get("neighbours")
    for i in np.nonzero(bad)[0]:
        why = [f"{n} {X[i, j]:.2f} > {hi[j]:.2f}" if X[i, j] > hi[j] else f"{n} {X[i, j]:.2f} < {lo[j]:.2f}"
               for j, n in enumerate(domain["features"]) if out_range[i, j]]
        if nb and dist[i] > nb["threshold"]:
            why.append(f"far from every training row ({nb['k']}-NN distance {dist[i]:.2f} > {nb['threshold']:.2f})")
        out[i] = PREFIX + "; ".join(why)
    return out
