"""Posterior diagnostics: TARP coverage (Lemos et al. 2023), SBC ranks (Talts et al. 2018), the
Wasserstein distance between test marginals and posterior means (the seed's Table 1), and
Δlog p = log p(θ* | x) − log p(θ*) against an empirical prior (a Gaussian KDE of the training θ).

All take plain arrays: ``samples`` (n_obj, n_samp, d), ``truth`` (n_obj, d).
"""

from __future__ import annotations

import numpy as np

__all__ = ["tarp", "sbc_ranks", "rank_uniformity", "wasserstein_per_property", "empirical_log_prior"]


def tarp(samples, truth, *, n_alpha: int = 101, seed: int = 0, scale=None):
    """Expected coverage probability curve: (alpha, ecp, max |ecp − alpha|).

    Reference points are drawn uniformly in the box spanned by the truths (standardised by ``scale``,
    default the truths' std), as Lemos et al. recommend for a prior-independent test.
    """
    samples, truth = np.asarray(samples, float), np.asarray(truth, float)
    scale = np.asarray(scale if scale is not None else truth.std(0), float)
    s, t = samples / scale, truth / scale
    rng = np.random.default_rng(seed)
    ref = rng.uniform(t.min(0), t.max(0), t.shape)
    d_true = np.linalg.norm(t - ref, axis=1)
    d_samp = np.linalg.norm(s - ref[:, None], axis=2)
    f = np.mean(d_samp < d_true[:, None], axis=1)
    alpha = np.linspace(0, 1, n_alpha)
    ecp = np.array([np.mean(f < a) for a in alpha])
    return alpha, ecp, float(np.max(np.abs(ecp - alpha)))


def sbc_ranks(samples, truth):
    """Rank of each truth among its posterior samples, per property: (n_obj, d) in 0..n_samp."""
    return np.sum(np.asarray(samples) < np.asarray(truth)[:, None, :], axis=1)


def rank_uniformity(ranks, n_samp: int, n_bins: int = 20):
    """Per property: (histogram counts, χ² of the counts against uniform, its p-value)."""
    from scipy.stats import chi2

    out = []
    edges = np.linspace(0, n_samp + 1, n_bins + 1)
    for j in range(ranks.shape[1]):
        h, _ = np.histogram(ranks[:, j], edges)
        e = len(ranks) / n_bins
        c2 = float(np.sum((h - e) ** 2 / e))
        out.append((h, c2, float(chi2.sf(c2, n_bins - 1))))
    return out


def wasserstein_per_property(truth, post_mean):
    from scipy.stats import wasserstein_distance

    return np.array([wasserstein_distance(truth[:, j], post_mean[:, j]) for j in range(truth.shape[1])])


def empirical_log_prior(train_theta, max_points: int = 20000, seed: int = 0):
    """log p(θ) of a Gaussian KDE fitted to (a subsample of) the training θ; returns a function."""
    from scipy.stats import gaussian_kde

    x = np.asarray(train_theta, float)
    if len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), max_points, replace=False)]
    kde = gaussian_kde(x.T)
    return lambda theta: kde.logpdf(np.atleast_2d(np.asarray(theta, float)).T)
