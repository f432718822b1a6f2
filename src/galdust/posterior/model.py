"""The photometric posterior model: features, standardisation, sampling, log density, weights I/O.

Features: asinh magnitudes (luptitudes, Lupton et al. 1999) of the fluxes in nanomaggies, softened
by each band's sky noise, so that faint, zero and negative fluxes stay finite. Truths and features
are standardised with the training set's mean and standard deviation; ``log_prob`` returns the
density in physical units (the standardisation's Jacobian included).
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .cfm import VelocityMLP, log_prob, sample

__all__ = ["PROPS", "luptitudes", "PosteriorModel", "save_model", "load_model"]

PROPS = ("log_mstar", "log_sfr", "logzsol", "dn4000", "av", "z")


def luptitudes(flux, soft):
    """asinh magnitudes of fluxes [nmgy] with softening ``soft`` [nmgy] per band."""
    flux, soft = np.asarray(flux, np.float64), np.asarray(soft, np.float64)
    return 22.5 - 2.5 / np.log(10) * (np.arcsinh(flux / (2 * soft)) + np.log(soft))


class PosteriorModel(eqx.Module):
    velocity: VelocityMLP
    theta_mean: jnp.ndarray
    theta_std: jnp.ndarray
    cond_mean: jnp.ndarray
    cond_std: jnp.ndarray
    props: tuple = eqx.field(static=True)
    bands: tuple = eqx.field(static=True)
    soft: tuple = eqx.field(static=True)
    given: tuple = eqx.field(static=True, default=())  # known properties the model is conditioned on

    def features(self, flux, given=None) -> jnp.ndarray:
        """Standardised conditioning vectors of fluxes (n, n_band) [nmgy] and, for a model conditioned
        on known properties (``self.given``, e.g. a spectroscopic z), their values (n, len(given))."""
        x = _inputs(flux, self.soft, getattr(self, "given", ()), given)
        return (jnp.asarray(x, jnp.float32) - self.cond_mean) / self.cond_std

    def sample(self, cond, key, n_samples: int = 1000, n_steps: int = 100):
        """Physical-unit samples (n_samples, d) for one standardised conditioning vector."""
        s = sample(self.velocity, cond, key, n_samples, n_steps)
        return s * self.theta_std + self.theta_mean

    def log_prob(self, theta, cond, n_steps: int = 100):
        """log p(θ | x) in physical units for one θ (d,) and one standardised conditioning vector."""
        z = (theta - self.theta_mean) / self.theta_std
        return log_prob(self.velocity, z, cond, n_steps) - jnp.sum(jnp.log(self.theta_std))


def _inputs(flux, soft, names, values):
    """Luptitudes of ``flux``, followed by the known properties ``values`` (n, len(names)) if any."""
    x = luptitudes(flux, soft)
    if not names:
        return x
    if values is None:
        raise ValueError(f"this posterior model is conditioned on {', '.join(names)}: give their values")
    v = np.asarray(values, np.float64).reshape(len(x), len(names))
    return np.concatenate([x, v], axis=1)


def build(props, bands, soft, theta, flux, *, width=256, depth=3, key, given=(), given_values=None) -> PosteriorModel:
    """An untrained model with the standardisation of the training set ``theta`` (n, d), ``flux``
    (and ``given_values`` (n, len(given)) of the known properties it is conditioned on)."""
    x = _inputs(flux, soft, tuple(given), given_values)
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
    return save(path, model, dict(sidecar, config=cfg))


def load_model(path: str | Path) -> tuple[PosteriorModel, dict]:
    """A CFM posterior, or its distilled one-step sampler (sidecar ``kind`` ``cfm-onestep``)."""
    from ..weights import load, read_sidecar

    kind = read_sidecar(path).get("kind")
    if kind == "cfm-onestep":
        from .onestep import load_onestep

        return load_onestep(path)
    if kind == "cfm-image":
        from .image import load_image_model

        return load_image_model(path)
    if kind == "vae-nf":
        from .vaenf import load_vaenf

        return load_vaenf(path)
    return load(path, _skeleton)  # ``load`` builds the skeleton by shape only


def row_keys(key, n: int):
    """One key per row: ``fold_in(key, i)`` for a single key, or the n keys given (a sequence, or an
    (n, 2) array of raw keys)."""
    if isinstance(key, (list, tuple)):
        keys = jnp.stack([jnp.asarray(k) for k in key])
    elif jnp.ndim(key) == 2:
        keys = jnp.asarray(key)
    else:
        keys = jax.vmap(lambda i: jr.fold_in(key, i))(jnp.arange(n))
    if keys.shape[0] != n:
        raise ValueError(f"{keys.shape[0]} keys for {n} rows")
    return keys


@eqx.filter_jit
def _sample_rows(m, c, k, n_samples, n_steps):
    return jax.vmap(lambda ci, ki: m.sample(ci, ki, n_samples, n_steps))(c, k)


def map_chunks(fn, cond, keys, batch: int = 64) -> list:
    """``fn(c, k)`` on chunks of ``batch`` rows of ``cond`` and ``keys``; each output (a pytree) comes
    back as numpy, cut to the chunk's real rows. The last chunk is padded with its last row, so one
    program is compiled; fewer than ``batch`` rows are padded to the next power of two only, so that
    one object does not cost ``batch``."""
    n = cond.shape[0]
    batch = min(batch, 1 << max(n - 1, 0).bit_length())
    out = []
    for i in range(0, n, batch):
        c, k = cond[i : i + batch], keys[i : i + batch]
        m = c.shape[0]
        if m < batch:
            c = jnp.concatenate([c, jnp.repeat(c[-1:], batch - m, axis=0)])
            k = jnp.concatenate([k, jnp.repeat(k[-1:], batch - m, axis=0)])
        out.append(jax.tree.map(lambda a, m=m: np.asarray(a[:m]), fn(c, k)))
    return out


def sample_batched(model, cond, key, n_samples: int = 1000, n_steps: int = 100, batch: int = 64) -> np.ndarray:
    """Physical-unit samples (n, n_samples, d) for standardised conditions ``cond`` (n, c), ``batch``
    rows per compiled call (:func:`map_chunks`). ``key``: one key (row i samples with
    ``fold_in(key, i)``, whatever the batching) or a sequence of n keys."""
    out = map_chunks(lambda c, k: _sample_rows(model, c, k, n_samples, n_steps), cond, row_keys(key, cond.shape[0]),
                     batch)
    return (np.concatenate(out).astype(np.float32, copy=False) if out
            else np.zeros((0, n_samples, len(model.props)), np.float32))


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


def percentiles(model: PosteriorModel, flux, key, n_samples: int = 1000, n_steps: int = 100,
                batch: int = 64, keep_samples: bool = False, images=None, given=None):
    """p16/p50/p84 per property for each row of ``flux`` (n, n_band); optionally the samples.
    Image models take the cutouts ``images`` (n, C, H, W) [nmgy/pixel] as well.

    ``key``: one PRNG key (row i samples with ``fold_in(key, i)``, whatever the batching) or a
    sequence of n keys, one per row.
    """
    if hasattr(model, "encoder") or hasattr(model, "vae"):
        if images is None:
            raise ValueError("this posterior model needs image cutouts")
        cond = model.conditions(flux, images)
    else:
        cond = model.features(flux, given) if getattr(model, "given", ()) else model.features(flux)
    s = sample_batched(model, cond, key, n_samples, n_steps, batch)
    pct = np.percentile(s, [16.0, 50.0, 84.0], axis=1).transpose(1, 2, 0)
    return pct, (s if keep_samples else None)
