"""What every posterior model is: the abstract :class:`Posterior` and the code all kinds share.

A posterior model is an equinox module with a ``KIND`` (its sidecar's ``kind``), ``needs_images``,
``props``/``bands``/``soft``, and ``conditions`` (rows of fluxes [nmgy], cutouts, known properties ->
standardised conditioning vectors), ``sample`` (one conditioning vector -> physical-unit samples),
``log_prob`` (where the kind has an exact density) and ``summarise`` (rows -> percentiles, samples
and any extra columns of the kind); :class:`FlowMatchingPosterior` adds a CFM's sampling and density.
The final classes live in :mod:`.model` (photometric CFM),
:mod:`.onestep`, :mod:`.image` and :mod:`.vaenf`; :mod:`.kinds` names them by ``KIND`` and loads any
of them. Shared here: the photometric features (asinh magnitudes, Lupton et al. 1999, of fluxes
softened by each band's sky noise, so that faint, zero and negative fluxes stay finite) and
batched sampling.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from . import cfm

__all__ = ["Posterior", "FlowMatchingPosterior", "luptitudes", "row_keys", "map_chunks", "sample_batched", "percentiles"]


def luptitudes(flux, soft):
    """asinh magnitudes of fluxes [nmgy] with softening ``soft`` [nmgy] per band."""
    flux, soft = np.asarray(flux, np.float64), np.asarray(soft, np.float64)
    return 22.5 - 2.5 / np.log(10) * (np.arcsinh(flux / (2 * soft)) + np.log(soft))


def photometric_inputs(flux, soft, names, values):
    """Luptitudes of ``flux``, followed by the known properties ``values`` (n, len(names)) if any."""
    x = luptitudes(flux, soft)
    if not names:
        return x
    if values is None:
        raise ValueError(f"this posterior model is conditioned on {', '.join(names)}: give their values")
    v = np.asarray(values, np.float64).reshape(len(x), len(names))
    return np.concatenate([x, v], axis=1)


class Posterior(eqx.Module):
    """The interface of every posterior model (abstract; one final subclass per ``KIND``)."""

    KIND: ClassVar[str] = ""
    needs_images: ClassVar[bool] = False

    def features(self, flux, given=None) -> jnp.ndarray:
        """Standardised photometric conditioning vectors of fluxes (n, n_band) [nmgy] and, for a model
        conditioned on known properties (``self.given``, e.g. a spectroscopic z), their values."""
        x = photometric_inputs(flux, self.soft, self.given, given)
        return (jnp.asarray(x, jnp.float32) - self.cond_mean) / self.cond_std

    def conditions(self, flux, images=None, given=None) -> jnp.ndarray:
        """Conditioning vectors of rows: the photometric features here; image kinds add the cutouts."""
        return self.features(flux, given)

    @abc.abstractmethod
    def sample(self, cond, key, n_samples: int = 1000, n_steps: int = 100):
        """Physical-unit samples (n_samples, d) for one conditioning vector."""

    def log_prob(self, theta, cond, n_steps: int = 100):
        raise NotImplementedError(f"{self.KIND}: no exact density (sample it instead)")

    def summarise(self, flux, key, *, n_samples: int = 1000, n_steps: int = 100, images=None, given=None,
                  keep_samples: bool = False, batch: int = 64) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """(p16/p50/p84 (n, n_prop, 3), the samples if ``keep_samples``, extra columns of the kind)."""
        pct, s = percentiles(self, flux, key, n_samples, n_steps, batch, keep_samples, images, given)
        return pct, s, {}


class FlowMatchingPosterior(Posterior):
    """Abstract: a CFM velocity (``velocity``) on standardised θ (``theta_mean``/``theta_std``),
    sampled with RK4 and with an exact log density (:mod:`.cfm`)."""

    def sample(self, cond, key, n_samples: int = 1000, n_steps: int = 100):
        """Physical-unit samples (n_samples, d) for one standardised conditioning vector."""
        s = cfm.sample(self.velocity, cond, key, n_samples, n_steps)
        return s * self.theta_std + self.theta_mean

    def log_prob(self, theta, cond, n_steps: int = 100):
        """log p(θ | x) in physical units for one θ (d,) and one standardised conditioning vector."""
        z = (theta - self.theta_mean) / self.theta_std
        return cfm.log_prob(self.velocity, z, cond, n_steps) - jnp.sum(jnp.log(self.theta_std))


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


def percentiles(model: Posterior, flux, key, n_samples: int = 1000, n_steps: int = 100,
                batch: int = 64, keep_samples: bool = False, images=None, given=None):
    """p16/p50/p84 per property for each row of ``flux`` (n, n_band); optionally the samples.
    Image kinds take the cutouts ``images`` (n, C, H, W) [nmgy/pixel] as well.

    ``key``: one PRNG key (row i samples with ``fold_in(key, i)``, whatever the batching) or a
    sequence of n keys, one per row.
    """
    if model.needs_images and images is None:
        raise ValueError(f"{model.KIND}: this posterior model needs image cutouts")
    s = sample_batched(model, model.conditions(flux, images, given), key, n_samples, n_steps, batch)
    pct = np.percentile(s, [16.0, 50.0, 84.0], axis=1).transpose(1, 2, 0)
    return pct, (s if keep_samples else None)
