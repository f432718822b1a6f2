"""MAP fit of the joint galaxy–dust model by Adam under the host and dust score priors.

Loss: ``½ Σ ivar (Y − model)²`` (Gaussian likelihood) − log p(S) − log p(D | S). The priors enter
through their scores (their gradients), added to the likelihood gradient as in scarlet2. Adam runs
with per-parameter step sizes; after each step S is projected to S ≥ 0 and renormalised to peak 1
(F absorbs the scale), D to [D_MIN, 1] and δ to [−1, 0.5]. The fit stops when every band's F changes
by less than ``tol`` (relative) for ``patience`` consecutive iterations, or after ``max_iter``.

Sequence (seed §3): a dust-free fit (D ≡ 1) of F and S first, from the red or blue start; then the
dust fit of all parameters, starting from near-zero dust (red start) or the colour-based A map
(blue start). Everything is a pure function of arrays: ``jax.vmap`` fits many galaxies at once.

Status: draft for the dust-fit issue. It runs (jit, vmap) but is not yet evaluated against truth nor
wired into the CLI; without priors it falls into the known F–D (uniform screen) degeneracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from .init import blue_start, footprint, red_start
from .model import D_MIN, DELTA_RANGE, DustModel, DustParams

__all__ = ["FitConfig", "fit_galaxy", "reduced_chi2"]


@dataclass(frozen=True)
class FitConfig:
    """Static settings of a fit (hashable)."""

    max_iter: int = 400
    nd_iter: int = 150
    tol: float = 1e-4
    patience: int = 10
    lr_F: float = 0.01
    lr_S: float = 0.01
    lr_D: float = 0.01
    lr_delta: float = 0.01
    delta0: float = -0.3
    use_priors: bool = True
    smooth: float = 0.0  # weight of a Laplacian smoothness penalty on D (the no-prior alternative)


def _labels(p: DustParams):
    return DustParams("F", "S", "D", "delta")


def _optimizer(cfg: FitConfig, dust: bool):
    tx = {"F": optax.adam(cfg.lr_F), "S": optax.adam(cfg.lr_S),
          "D": optax.adam(cfg.lr_D) if dust else optax.set_to_zero(),
          "delta": optax.adam(cfg.lr_delta) if dust else optax.set_to_zero()}
    return optax.multi_transform(tx, _labels)


def _project(p: DustParams) -> DustParams:
    S = jnp.clip(p.S, 0.0, None)
    m = jnp.maximum(jnp.max(S), 1e-30)
    return DustParams(p.log_F + jnp.log(m), S / m, jnp.clip(p.D, D_MIN, 1.0),
                      jnp.clip(p.delta, *DELTA_RANGE))


def _laplacian_penalty(D):
    d = D - 0.25 * (jnp.roll(D, 1, 0) + jnp.roll(D, -1, 0) + jnp.roll(D, 1, 1) + jnp.roll(D, -1, 1))
    return jnp.sum(d**2)


def _run(model: DustModel, Y, ivar, p0: DustParams, cfg: FitConfig, dust: bool,
         host_score: Callable | None, dust_score: Callable | None, max_iter: int):
    opt = _optimizer(cfg, dust)

    def loss(p):
        r = Y - model(p, dust=dust)
        nll = 0.5 * jnp.sum(ivar * r**2)
        if dust and cfg.smooth > 0:
            nll = nll + cfg.smooth * _laplacian_penalty(p.D)
        return nll

    def step(state):
        p, s, i, stable, _ = state
        g = jax.grad(loss)(p)
        if cfg.use_priors and host_score is not None:
            g = g._replace(S=g.S - host_score(p.S))
        if dust and cfg.use_priors and dust_score is not None:
            g = g._replace(D=g.D - dust_score(p.D, p.S))
        upd, s = opt.update(g, s, p)
        new = _project(optax.apply_updates(p, upd))
        change = jnp.max(jnp.abs(new.log_F - p.log_F))
        stable = jnp.where(change < cfg.tol, stable + 1, 0)
        return new, s, i + 1, stable, change

    def cond(state):
        return (state[2] < max_iter) & (state[3] < cfg.patience)

    init = (p0, opt.init(p0), jnp.int32(0), jnp.int32(0), jnp.float32(jnp.inf))
    p, _, n, stable, _ = jax.lax.while_loop(cond, step, init)
    return p, n, stable >= cfg.patience


def reduced_chi2(model: DustModel, p: DustParams, Y, ivar, dust: bool = True):
    """χ² per pixel-band with information (ivar > 0)."""
    r = Y - model(p, dust=dust)
    return jnp.sum(ivar * r**2) / jnp.maximum(jnp.sum(ivar > 0), 1)


def fit_galaxy(model: DustModel, Y, ivar, *, start: str, cfg: FitConfig = FitConfig(),
               host_score: Callable | None = None, dust_score: Callable | None = None) -> dict:
    """Fit one galaxy (vmap over Y, ivar for a batch); ``start`` is 'red' or 'blue' (static).

    Returns a dict: ``params`` (:class:`DustParams`), ``params_nd`` (dust-free fit), ``chi2`` and
    ``chi2_nd`` (χ² per pixel-band with information), ``n_iter``, ``converged``, ``footprint``.
    """
    Y = jnp.asarray(Y, jnp.float32)
    ivar = jnp.asarray(ivar, jnp.float32)
    fp = footprint(Y, ivar)
    delta0 = jnp.float32(cfg.delta0)
    K0 = model.K(delta0)
    if start == "red":
        logF, S, D = red_start(Y, ivar, K0, fp)
    elif start == "blue":
        logF, S, D = blue_start(Y, ivar, K0, fp)
    else:
        raise ValueError(f"start must be 'red' or 'blue' here, not {start!r}")
    # 1) dust-free fit of F and S from the start's morphology (unattenuated by D≡1)
    p_nd0 = _project(DustParams(logF, S * jnp.mean(D[None] ** K0[:, None, None], axis=0) if start == "blue" else S,
                                jnp.ones_like(D), delta0))
    p_nd, n_nd, _ = _run(model, Y, ivar, p_nd0, cfg, False, host_score, None, cfg.nd_iter)
    chi2_nd = reduced_chi2(model, p_nd, Y, ivar, dust=False)
    # 2) dust fit: red start from near-zero dust on the dust-free host; blue start from its A map
    if start == "red":
        p0 = DustParams(p_nd.log_F, p_nd.S, D, delta0)
    else:
        p0 = _project(DustParams(logF, S, D, delta0))
    p, n, conv = _run(model, Y, ivar, p0, cfg, True, host_score, dust_score, cfg.max_iter)
    return dict(params=p, chi2=reduced_chi2(model, p, Y, ivar), chi2_nd=chi2_nd, n_iter=n + n_nd,
                     converged=conv, footprint=fp, params_nd=p_nd)
