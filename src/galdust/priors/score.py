"""Denoising score matching maths and prior-only samplers (pure functions of arrays).

Variance-exploding (VE) convention (Song & Ermon 2019/2020): data x are perturbed as
``x̃ = x + σ ε`` with σ drawn log-uniformly in [σ_min, σ_max]; a network predicts ``-ε`` from
(x̃, condition, log σ), so that the score of the perturbed density is ``s(x̃, σ) = net / σ``. The loss
is the σ²-weighted DSM objective ``E |σ s + ε|²``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["dsm_loss", "sample_sigmas", "ve_denoise", "vp_denoise", "tweedie"]


def sample_sigmas(key, n: int, sigma_min: float, sigma_max: float):
    """n noise levels, log-uniform in [sigma_min, sigma_max]."""
    u = jax.random.uniform(key, (n,))
    return jnp.exp(jnp.log(sigma_min) + u * (jnp.log(sigma_max) - jnp.log(sigma_min)))


def dsm_loss(eps_model: Callable, x, cond, key, sigma_min: float, sigma_max: float, sigmas=None):
    """Mean DSM loss over a batch.

    ``eps_model(x̃, cond, sigma)`` returns the predicted −ε for one example (σ a scalar);
    ``x`` (B, ...) clean data, ``cond`` (B, ...) or None. Fixed ``sigmas`` (B,) and ``key`` give a
    deterministic validation loss.
    """
    k1, k2 = jax.random.split(key)
    b = x.shape[0]
    if sigmas is None:
        sigmas = sample_sigmas(k1, b, sigma_min, sigma_max)
    eps = jax.random.normal(k2, x.shape, x.dtype)
    xt = x + sigmas.reshape((b,) + (1,) * (x.ndim - 1)) * eps
    pred = jax.vmap(eps_model)(xt, cond, sigmas)  # a None cond (no leaves) reaches eps_model as None
    return jnp.mean((pred + eps) ** 2)


def tweedie(x, score, sigma):
    """Posterior mean E[x0 | x] = x + σ² s(x, σ) for VE noise σ."""
    return x + sigma**2 * score


def ve_denoise(score_fn: Callable, y, sigma_start: float, sigma_end: float = 0.005, n_steps: int = 20):
    """Prior-only denoising of ``y`` (noise σ_start) by annealed deterministic (DDIM-type) steps.

    ``score_fn(x, sigma)`` is the score of the VE-perturbed prior. At each level the Tweedie
    estimate x̂0 is formed and x is moved to the next, lower level along the line to x̂0.
    Returns the final x̂0.
    """
    sigma_start = jnp.maximum(sigma_start, sigma_end)  # never anneal upwards
    sig = jnp.exp(jnp.linspace(jnp.log(sigma_start), jnp.log(sigma_end), n_steps))
    nxt = jnp.concatenate([sig[1:], jnp.zeros(1)])

    def body(x, ss):
        s, s_next = ss
        x0 = tweedie(x, score_fn(x, s), s)
        return x0 + (s_next / s) * (x - x0), x0

    _, x0s = jax.lax.scan(body, y, (sig, nxt))
    return x0s[-1]


def vp_denoise(score_fn: Callable, y, t_start: float, t_end: float = 0.002, n_steps: int = 20):
    """Annealed DDIM denoising for a variance-preserving score ``score_fn(x, t)`` with
    α_t = exp(−t) (galaxygrad's ∫β = t schedule). ``y`` must already be scaled as x_t at t_start."""
    t_start = jnp.maximum(t_start, t_end)  # never anneal upwards
    ts = jnp.exp(jnp.linspace(jnp.log(t_start), jnp.log(t_end), n_steps))
    nxt = jnp.concatenate([ts[1:], jnp.zeros(1)])

    def body(x, tt):
        t, t_next = tt
        a, a_n = jnp.exp(-t), jnp.exp(-t_next)
        s = score_fn(x, t)
        x0 = (x + (1 - a) * s) / jnp.sqrt(a)
        eps = -jnp.sqrt(1 - a) * s
        return jnp.sqrt(a_n) * x0 + jnp.sqrt(1 - a_n) * eps, x0

    _, x0s = jax.lax.scan(body, y, (ts, nxt))
    return x0s[-1]
