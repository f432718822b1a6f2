"""Diagnostics on exact and deliberately wrong posteriors."""

import numpy as np
import pytest

from galdust.posterior.diagnostics import (empirical_log_prior, rank_uniformity, sbc_ranks, tarp,
                                           wasserstein_per_property)


def _gaussian_problem(n=2000, s=400, width=1.0, seed=0):
    """θ ~ N(0, I₂), x = θ + N(0, 0.5²): posterior N(x/1.25, 0.2 I); ``width`` scales the samples."""
    rng = np.random.default_rng(seed)
    th = rng.normal(size=(n, 2))
    x = th + 0.5 * rng.normal(size=(n, 2))
    mu, sd = x / 1.25, np.sqrt(0.2)
    samples = mu[:, None] + width * sd * rng.normal(size=(n, s, 2))
    return samples, th


def test_exact_posteriors_are_calibrated_and_wrong_ones_are_not():
    smp, th = _gaussian_problem()
    assert tarp(smp, th)[2] < 0.04
    ranks = sbc_ranks(smp, th)
    assert all(p > 0.001 for _, _, p in rank_uniformity(ranks, smp.shape[1]))
    narrow, _ = _gaussian_problem(width=0.5)
    assert tarp(narrow, th)[2] > 0.15
    assert all(p < 1e-6 for _, _, p in rank_uniformity(sbc_ranks(narrow, th), narrow.shape[1]))


def test_wasserstein_and_empirical_prior():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(5000, 2))
    assert wasserstein_per_property(t, t + 0.3) == pytest.approx([0.3, 0.3], abs=1e-9)
    lp = empirical_log_prior(t)
    assert lp(np.zeros((1, 2)))[0] == pytest.approx(-np.log(2 * np.pi), abs=0.1)
