"""DSM maths: the Gaussian case has an analytic score, −x / (s0² + σ²)."""

import jax
import jax.numpy as jnp
import numpy as np

from galdust.nn import MLP
from galdust.nn.train import adam, fit
from galdust.priors.score import dsm_loss, ve_denoise

S0 = 0.5


def test_score_net_trained_on_gaussian_recovers_analytic_score():
    dim = 2
    net = MLP(dim, width=64, depth=2, key=jax.random.PRNGKey(0))

    def eps_fn(m, xt, cond, s):
        return m(xt / jnp.sqrt(S0**2 + s**2), jnp.log(s))

    def loss(m, x, key):
        return dsm_loss(lambda a, c, s: eps_fn(m, a, c, s), x, None, key, 0.1, 2.0)

    # the package's training loop, compiled blocks of steps drawing x ~ N(0, s0²) on the device
    ema = fit(net, loss, adam(3e-3, 1500), steps=1500, seed=1, sample=lambda _, k: S0 * jax.random.normal(k, (256, dim)),
              data=(), ema=0.99).model
    for sigma in (0.2, 0.5, 1.0):
        # evaluate where the perturbed density lives: x ~ N(0, s0² + σ²)
        xs = jax.random.normal(jax.random.PRNGKey(5), (512, dim)) * np.sqrt(S0**2 + sigma**2)
        learned = jax.vmap(lambda a: eps_fn(ema, a, None, jnp.float32(sigma)))(xs) / sigma
        exact = -xs / (S0**2 + sigma**2)
        rel = float(jnp.sqrt(jnp.mean((learned - exact) ** 2) / jnp.mean(exact**2)))
        assert rel < 0.1, (sigma, rel)


def test_dsm_loss_minimum_is_the_exact_score():
    # with the exact Gaussian score the loss equals its irreducible value d·s0²/(s0²+σ²)
    sigma = 0.7
    x = S0 * jax.random.normal(jax.random.PRNGKey(0), (20000, 3))

    def exact_eps(xt, cond, s):
        return -s * xt / (S0**2 + s**2)

    loss = dsm_loss(exact_eps, x, None, jax.random.PRNGKey(1), 0.1, 1.0, sigmas=jnp.full((20000,), sigma))
    assert abs(float(loss) - S0**2 / (S0**2 + sigma**2)) < 0.01


def test_ve_denoise_follows_probability_flow_for_gaussian():
    # deterministic annealing with the exact score maps y to y·s0/sqrt(s0²+σ²)
    sigma = 0.4
    y = jnp.linspace(-1.5, 1.5, 7)
    out = ve_denoise(lambda x, s: -x / (S0**2 + s**2), y, sigma, 1e-4, n_steps=400)
    np.testing.assert_allclose(np.asarray(out), np.asarray(y) * S0 / np.sqrt(S0**2 + sigma**2), rtol=0.01, atol=1e-3)
