"""The photometric posterior model (kind ``cfm-photometry``): standardisation, sampling, log density,
weights I/O.

Features: the asinh magnitudes of :mod:`.base`. Truths and features are standardised with the
training set's mean and standard deviation; ``log_prob`` returns the density in physical units (the
standardisation's Jacobian included).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .base import FlowMatchingPosterior, luptitudes, map_chunks, percentiles, photometric_inputs, row_keys, sample_batched
from .cfm import VelocityMLP

__all__ = ["PROPS", "luptitudes", "PosteriorModel", "build", "save_model", "load_cfm", "percentiles", "sample_batched",
           "row_keys", "map_chunks", "sample_given", "log_prob_batched"]

PROPS = ("log_mstar", "log_sfr", "logzsol", "dn4000", "av", "z")


class PosteriorModel(FlowMatchingPosterior):
    """p(θ | photometry) by conditional flow matching (sampled with RK4; exact log density)."""

    KIND: ClassVar[str] = "cfm-photometry"
    velocity: VelocityMLP
    theta_mean: jnp.ndarray
    theta_std: jnp.ndarray
    cond_mean: jnp.ndarray
    cond_std: jnp.ndarray
    props: tuple = eqx.field(static=True)
    bands: tuple = eqx.field(static=True)
    soft: tuple = eqx.field(static=True)
    given: tuple = eqx.field(static=True, default=())  # known properties the model is conditioned on


def build(props, bands, soft, theta, flux, *, width=256, depth=3, key, given=(), given_values=None) -> PosteriorModel:
    """An untrained model with the standardisation of the training set ``theta`` (n, d), ``flux``
    (and ``given_values`` (n, len(given)) of the known properties it is conditioned on)."""
    x = photometric_inputs(flux, soft, tuple(given), given_values)
    tm, ts = theta.mean(0), np.maximum(theta.std(0), 1e-6)
    cm, cs = x.mean(0), np.maximum(x.std(0), 1e-6)
    vel = VelocityMLP(len(props), x.shape[1], width, depth, key=key)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return PosteriorModel(vel, f32(tm), f32(ts), f32(cm), f32(cs), tuple(props), tuple(bands),
                          tuple(float(s) for s in soft), tuple(given))


def _skeleton(meta):
    c = meta["config"]
    given = tuple(c.get("given", ()))
    d, b = len(c["props"]), len(c["bands"]) + len(given)
    z = lambda n: jnp.zeros(n, jnp.float32)  # noqa: E731
    vel = VelocityMLP(d, b, c["width"], c["depth"], key=jr.PRNGKey(0))
    return PosteriorModel(vel, z(d), z(d), z(b), z(b), tuple(c["props"]), tuple(c["bands"]), tuple(c["soft"]), given)


def save_model(path: str | Path, model: PosteriorModel, sidecar: dict) -> Path:
    from ..weights import save

    cfg = dict(props=list(model.props), bands=list(model.bands), soft=list(model.soft),
               width=model.velocity.net.width_size, depth=model.velocity.net.depth)
    if model.given:
        cfg["given"] = list(model.given)
    return save(path, model, dict(sidecar, kind=PosteriorModel.KIND, config=cfg))


def load_cfm(path: str | Path) -> tuple[PosteriorModel, dict]:
    """(model, sidecar) of a photometric CFM posterior (any kind: :func:`galdust.posterior.kinds.load_model`)."""
    from ..weights import load

    return load(path, _skeleton)  # ``load`` builds the skeleton by shape only


@eqx.filter_jit
def _sample_given_rows(m, c, k, n_steps):
    # c (rows, n_samples, c): one condition per sample (the known property drawn per sample)
    def row(ci, ki):
        ks = jr.split(ki, ci.shape[0])
        return jax.vmap(lambda cc, kk: m.sample(cc, kk, 1, n_steps)[0])(ci, ks)

    return jax.vmap(row)(c, k)


def sample_given(model, flux, given_samples, key, n_steps: int = 100, batch: int = 64) -> np.ndarray:
    """Samples (n, n_samples, d) of a model conditioned on known properties (``model.given``) whose
    values are themselves uncertain: ``given_samples`` (n, n_samples, k), one draw per sample, so the
    result is marginalised over them (e.g. z from a photometric-redshift posterior)."""
    n, ns, k = given_samples.shape
    f = np.repeat(np.asarray(flux, float), ns, axis=0)
    cond = model.features(f, given_samples.reshape(n * ns, k)).reshape(n, ns, -1)
    out = map_chunks(lambda c, kk: _sample_given_rows(model, c, kk, n_steps), cond, row_keys(key, n), batch)
    return np.concatenate(out).astype(np.float32, copy=False)


def log_prob_batched(model, theta, cond, n_steps: int = 100, batch: int = 256) -> np.ndarray:
    """Exact log p(θ_i | x_i) (physical units) for rows of ``theta`` (n, d) and conditions (n, c)."""
    f = eqx.filter_jit(jax.vmap(lambda t, c: model.log_prob(t, c, n_steps)))
    return np.concatenate([np.asarray(f(jnp.asarray(theta[i : i + batch], jnp.float32), cond[i : i + batch]))
                           for i in range(0, len(theta), batch)])
