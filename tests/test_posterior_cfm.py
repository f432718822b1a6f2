"""Conditional flow matching: the exact log density of a closed-form flow, and a linear-Gaussian
problem whose posterior is known analytically (mean, covariance, coverage)."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jax.scipy.linalg import expm

from galdust.posterior.cfm import VelocityMLP, log_prob, sample, train_cfm


def test_log_density_of_a_linear_flow_is_exact():
    M = jnp.array([[0.3, -0.5], [0.2, -0.1]])
    velocity = lambda t, th, c: M @ th  # noqa: E731 - θ(1) = exp(M) θ(0), Jacobian exp(tr M)
    th1 = jnp.array([0.7, -1.2])
    th0 = jnp.linalg.solve(expm(M), th1)
    expect = -0.5 * jnp.sum(th0**2) - jnp.log(2 * jnp.pi) - jnp.trace(M)
    assert float(log_prob(velocity, th1, jnp.zeros(0), n_steps=50)) == pytest.approx(float(expect), abs=1e-5)


def test_cfm_recovers_a_linear_gaussian_posterior():
    key = jr.PRNGKey(0)
    A = jnp.array([[1.0, 0.5], [0.0, 1.0], [0.7, -0.4]])
    s = 0.5
    n = 40000
    th = jr.normal(jr.fold_in(key, 1), (n, 2))
    x = th @ A.T + s * jr.normal(jr.fold_in(key, 2), (n, 3))
    model = VelocityMLP(2, 3, width=64, depth=3, key=jr.fold_in(key, 3))
    model, hist = train_cfm(model, th, x, key=jr.fold_in(key, 4), max_steps=3000, eval_every=250, patience=6,
                            batch=512, lr=2e-3)
    cov = jnp.linalg.inv(jnp.eye(2) + A.T @ A / s**2)
    inside, errs_mu, errs_sd = [], [], []
    for i in range(40):
        xi = x[i]
        mu = cov @ A.T @ xi / s**2
        smp = sample(model, xi, jr.fold_in(key, 100 + i), 1000, 20)
        errs_mu.append(np.abs(np.array(smp.mean(0) - mu)) / np.sqrt(np.diag(cov)))
        errs_sd.append(np.array(smp.std(0)) / np.sqrt(np.diag(cov)))
        inside.append(np.abs(np.array(th[i] - smp.mean(0))) < np.array(smp.std(0)))
    assert np.median(errs_mu) < 0.15  # posterior means within 0.15 σ
    assert np.median(errs_sd) == pytest.approx(1.0, abs=0.15)  # posterior widths within 15 %
    assert np.mean(inside) == pytest.approx(0.68, abs=0.12)  # 1σ coverage of the truth
    # the learned density agrees with the analytic one at the posterior mean
    xi = x[0]
    mu = cov @ A.T @ xi / s**2
    lp = float(log_prob(lambda t, a, c: model(t, a, c), mu, xi, n_steps=50))
    expect = -jnp.log(2 * jnp.pi) - 0.5 * jnp.linalg.slogdet(cov)[1]
    assert lp == pytest.approx(float(expect), abs=0.3)
