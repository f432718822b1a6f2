"""VAE + conditional normalizing flows (the seed of Siddiqa, Mahmud & Martinez-Galarza).

* A convolutional VAE (equinox) encodes the gri cutouts (binned 2×2 to 32×32 and asinh-stretched as
  in :mod:`galdust.posterior.image`) into ``latent`` Gaussian latents; the reconstruction term is a
  Gaussian likelihood with the stretched images' noise σ = 1/3 (asinh(x / 3σ_sky) has that noise at
  low surface brightness), weighted against β × KL. The latent means are the flows' image features.
* Two conditional rational-quadratic-spline coupling flows (flowjax), each conditioned on
  [latent means, photometric features (luptitudes and adjacent-band colours)]: (i) log M*, log SFR,
  z, log M_BH, log Z/Z⊙ and (ii) the log10 fluxes of Hα, Hβ, [NII] 6584 and [OIII] 5007 jointly
  (their correlations kept). Maximum likelihood, early stopping on a validation split.
* Non-detected lines: a line fainter than ``F_LIM`` = 10⁻¹⁶ erg s⁻¹ cm⁻² (ten times the units of the
  simulator's tables, about a 3σ total-flux limit of an SDSS spectrum) is censored: for training its
  log flux is drawn uniformly in the decade below the limit (the data say "below the limit", not
  where), so the flow carries the probability of a non-detection without inventing a value; outputs
  give each line's detection probability P(F > F_LIM) and percentiles whose part below the limit
  means "undetected".
* From the line samples: BPT classes per sample (Kauffmann et al. 2003 and Kewley et al. 2001 curves
  in log [NII]/Hα – log [OIII]/Hβ), as probabilities over the samples with all four lines detected,
  and the Balmer-decrement A_V = R_V E(B−V), E(B−V) = 2.5 / (k(Hβ) − k(Hα)) log10((Hα/Hβ) / 2.86)
  with the Calzetti (2000) curve of :mod:`galdust.physics` (case B, 10⁴ K).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..nn import conv2d
from .image import stretch
from .base import Posterior, luptitudes, map_chunks, row_keys

__all__ = ["VAE", "train_vae", "make_flow", "flow_skeleton", "train_flow", "VAENFModel", "LINES", "PROPS_NF", "F_LIM",
           "bpt_class", "balmer_av", "censor_lines", "save_vaenf", "load_vaenf", "photometric_features"]

LINES = ("halpha", "hbeta", "nii_6584", "oiii_5007")
PROPS_NF = ("log_mstar", "log_sfr", "z", "log_mbh", "logzsol")
F_LIM = 10.0  # 1e-17 erg/s/cm² units of the simulator's tables: 1e-16 erg/s/cm²
NOISE = 1.0 / 3.0  # σ of asinh(x / 3σ_sky) at low surface brightness
SF, COMPOSITE, AGN = 0, 1, 2


# ----------------------------------------------------------------------------- VAE


class VAE(eqx.Module):
    enc: list
    to_stats: eqx.nn.Linear
    from_latent: eqx.nn.Linear
    dec: list
    latent: int = eqx.field(static=True)
    ch: tuple = eqx.field(static=True)

    def __init__(self, in_channels: int = 3, latent: int = 16, ch=(32, 64, 128), size: int = 32, *, key):
        k = jr.split(key, 8)
        self.latent, self.ch = latent, tuple(ch)
        c_in, enc = in_channels, []
        for i, c in enumerate(ch):
            enc.append(conv2d(c_in, c, k[i], stride=2))
            c_in = c
        self.enc = enc
        s = size // 2 ** len(ch)
        self.to_stats = eqx.nn.Linear(ch[-1] * s * s, 2 * latent, key=k[3])
        self.from_latent = eqx.nn.Linear(latent, ch[-1] * s * s, key=k[4])
        outs = list(reversed(ch[:-1])) + [in_channels]
        c_in, dec = ch[-1], []
        for i, c in enumerate(outs):
            dec.append(conv2d(c_in, c, k[5 + i]))
            c_in = c
        self.dec = dec

    def encode(self, x):
        """(C, H, W) stretched image -> (μ, log σ²) of the latent."""
        for conv in self.enc:
            x = jax.nn.gelu(conv(x))
        st = self.to_stats(x.reshape(-1))
        return st[: self.latent], jnp.clip(st[self.latent :], -12.0, 6.0)

    def decode(self, z):
        c = self.ch[-1]
        n = int(round(math.sqrt(self.from_latent.out_features // c)))
        x = jax.nn.gelu(self.from_latent(z)).reshape(c, n, n)
        for i, conv in enumerate(self.dec):
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # nearest-neighbour upsampling
            x = conv(x)
            if i < len(self.dec) - 1:
                x = jax.nn.gelu(x)
        return x

    def loss(self, x, key, beta: float = 1.0):
        """Negative ELBO per image (nats) and the reconstruction MSE."""
        mu, lv = self.encode(x)
        z = mu + jnp.exp(0.5 * lv) * jr.normal(key, mu.shape)
        xr = self.decode(z)
        mse = jnp.mean((xr - x) ** 2)
        rec = 0.5 * jnp.sum((xr - x) ** 2) / NOISE**2
        kl = 0.5 * jnp.sum(jnp.exp(lv) + mu**2 - 1.0 - lv)
        return rec + beta * kl, mse


def train_vae(vae: VAE, images, sigma, *, key, beta: float = 1.0, steps: int = 4000, batch: int = 256,
              lr: float = 1e-3, val: int = 1024, checkpoint=None, log=None):
    """Adam on the negative ELBO (:func:`galdust.nn.train.fit`, resumable from ``checkpoint``);
    ``images`` (n, C, 64, 64) nmgy (a memory map is fine). Best weights kept. Returns (vae,
    ``Trained``; each validation a dict of the loss and the reconstruction MSE)."""
    from ..nn.train import adam, digest, fit

    n = len(images)
    seed = int(jr.randint(key, (), 0, 2**31 - 1))
    vi = np.arange(min(val, n // 10 or 1))
    ti = np.arange(len(vi), n)

    def batch_loss(m, x, k):
        l, mse = jax.vmap(lambda xi, ki: m.loss(xi, ki, beta))(x, jr.split(k, x.shape[0]))
        return jnp.mean(l), jnp.mean(mse)

    def host_sample(step):  # step k's rows from (seed, k): the same after a resume
        idx = np.sort(ti[np.random.default_rng([seed, step]).integers(0, len(ti), batch)])
        return jnp.asarray(np.asarray(images[idx], np.float32))

    vx = stretch(np.asarray(images[vi], np.float32), sigma)
    vloss = eqx.filter_jit(batch_loss)

    def validate(m):
        vl, vm = vloss(m, vx, jr.PRNGKey(7))
        return {"loss": float(vl), "mse": float(vm)}

    res = fit(vae, lambda m, raw, k: batch_loss(m, stretch(raw, sigma), k)[0], adam(lr, steps), steps=steps, seed=key,
              host_sample=host_sample, validate=validate, eval_every=250, keep_best=True, checkpoint=checkpoint,
              match={"batch": batch, "lr": lr, "beta": beta, "data": digest(vx)}, log=log, name="VAE")
    return res.model, res


def encode_means(vae: VAE, images, sigma, batch: int = 1024) -> np.ndarray:
    f = eqx.filter_jit(lambda m, x: jax.vmap(lambda xi: m.encode(xi)[0])(stretch(x, sigma)))
    return np.concatenate([np.asarray(f(vae, jnp.asarray(np.asarray(images[i : i + batch], np.float32))))
                           for i in range(0, len(images), batch)])


# ----------------------------------------------------------------------------- flows


def typed_key(key):
    """flowjax wants new-style typed keys; accept both kinds."""
    return key if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else jr.wrap_key_data(key)


def make_flow(dim: int, cond_dim: int, *, key, layers: int = 6, width: int = 64, depth: int = 2, knots: int = 8):
    """A conditional RQ-spline coupling flow on standardised variables (sampling direction fast).

    Built as one compiled program: flowjax initialises op by op, and on a CPU each small op compiled
    on its own costs seconds per flow (docs/implementation.md). The values are the same bit for bit."""
    return _concrete_couplings(_build_flow(key, dim, cond_dim, layers, width, depth, knots), knots)


def flow_skeleton(dim: int, cond_dim: int, *, layers: int = 6, width: int = 64, depth: int = 2, knots: int = 8):
    """A flow of the shapes of :func:`make_flow` without values (for loading weights): no compilation."""
    return _concrete_couplings(eqx.filter_eval_shape(_build_flow, jr.PRNGKey(0), dim, cond_dim, layers, width, depth,
                                                     knots), knots)


@eqx.filter_jit
def _build_flow(key, dim, cond_dim, layers, width, depth, knots):
    from flowjax.bijections import RationalQuadraticSpline
    from flowjax.distributions import Normal
    from flowjax.flows import coupling_flow

    return coupling_flow(key, base_dist=Normal(jnp.zeros(dim)), transformer=RationalQuadraticSpline(knots=knots, interval=5),
                         cond_dim=cond_dim, flow_layers=layers, nn_width=width, nn_depth=depth, nn_activation=jax.nn.gelu,
                         invert=False)


def _concrete_couplings(flow, knots: int):
    """flowjax's coupling layers keep a function that closes over the spline's initial parameters
    (a static field, not a leaf): built under jit or eval_shape it would hold tracers. Give the
    freshly built layers the same function made from a concrete spline."""
    import paramax
    from flowjax.bijections import RationalQuadraticSpline
    from flowjax.bijections.coupling import Coupling
    from flowjax.utils import get_ravelled_pytree_constructor

    ctor, _ = get_ravelled_pytree_constructor(RationalQuadraticSpline(knots=knots, interval=5),
                                              filter_spec=eqx.is_inexact_array,
                                              is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable))
    found = []

    def fix(m):
        if isinstance(m, Coupling):
            object.__setattr__(m, "transformer_constructor", ctor)  # a new object, returned only from here
            found.append(m)
        return m

    jax.tree_util.tree_map(fix, flow, is_leaf=lambda m: isinstance(m, Coupling))
    if not found:
        raise RuntimeError("flowjax's coupling flow has no Coupling layer: its structure changed")
    return flow


def train_flow(flow, x, cond, *, key, lr: float = 1e-3, max_epochs: int = 60, patience: int = 6, batch: int = 512,
               checkpoint=None, log=None):
    """Maximum likelihood (:func:`galdust.nn.train.fit`, resumable from ``checkpoint``): Adam with the
    learning rate decayed over ``max_epochs`` on a cosine to 2 %, random batches, validation on a
    10 % split once per epoch's worth of steps, early stopping after ``patience`` validations without
    improvement, best weights kept. Returns (flow, ``Trained``)."""
    import paramax

    from ..nn.train import adam, digest, fit

    x, cond = jnp.asarray(x, jnp.float32), jnp.asarray(cond, jnp.float32)
    n = x.shape[0]
    key, sub = jr.split(typed_key(key))
    n_train = n - round(0.1 * n)
    perm = jr.permutation(sub, n)
    tx, tc, vx, vc = x[perm][:n_train], cond[perm][:n_train], x[perm][n_train:], cond[perm][n_train:]
    b = min(batch, n_train)
    per_epoch = max(n_train // b, 1)

    def loss(f, xb, cb):
        return -paramax.unwrap(f).log_prob(xb, cb).mean()

    def sample(data, k):
        idx = jr.randint(k, (b,), 0, data[0].shape[0])
        return data[0][idx], data[1][idx]

    vloss = eqx.filter_jit(loss)
    res = fit(flow, lambda f, bt, _: loss(f, *bt), adam(lr, max_epochs * per_epoch, final=0.02),
              steps=max_epochs * per_epoch, seed=key, sample=sample, data=(tx, tc),
              validate=lambda f: float(vloss(f, vx, vc)), eval_every=per_epoch, keep_best=True, patience=patience,
              is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable), checkpoint=checkpoint,
              match={"batch": batch, "lr": lr, "data": digest(x, cond)}, log=log, name="flow")
    return res.model, res


def censor_lines(flux, rng) -> np.ndarray:
    """log10 line fluxes with non-detections (< F_LIM) drawn uniformly in the decade below the limit."""
    flux = np.asarray(flux, float)
    lf = np.log10(np.maximum(flux, 1e-30))
    low = flux < F_LIM
    lf[low] = math.log10(F_LIM) - rng.uniform(0.0, 1.0, low.sum())
    return lf


def bpt_class(log_nii_ha, log_oiii_hb) -> np.ndarray:
    """0 star-forming (below Kauffmann et al. 2003), 1 composite (between), 2 AGN (above Kewley et al. 2001)."""
    x, y = np.asarray(log_nii_ha, float), np.asarray(log_oiii_hb, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ka = np.where(x < 0.05, 0.61 / (x - 0.05) + 1.3, -np.inf)
        ke = np.where(x < 0.47, 0.61 / (x - 0.47) + 1.19, -np.inf)
    return np.where(y > ke, AGN, np.where(y > ka, COMPOSITE, SF))


def balmer_av(log_ha, log_hb) -> np.ndarray:
    """A_V from the Balmer decrement (case B Hα/Hβ = 2.86) with the Calzetti (2000) curve, R_V = 4.05."""
    from ..physics import k_calzetti

    k_ha, k_hb = float(k_calzetti(0.65628)), float(k_calzetti(0.48613))
    ebv = 2.5 / (k_hb - k_ha) * (np.asarray(log_ha) - np.asarray(log_hb) - math.log10(2.86))
    return 4.05 * ebv


def photometric_features(flux, soft, colours: bool = True) -> np.ndarray:
    """Luptitudes of the bands and, with ``colours``, the adjacent-band colours (their differences).
    The flows' small conditioner networks do not form the differences well themselves: with the
    colours the NMAD of log Z/Z⊙ fell from 0.237 to 0.194 and of z from 0.022 to 0.019 (50,000
    training galaxies, 3,000 test galaxies)."""
    m = np.asarray(luptitudes(flux, soft))
    return np.concatenate([m, m[:, :-1] - m[:, 1:]], axis=1) if colours else m


# ----------------------------------------------------------------------------- the model


class VAENFModel(Posterior):
    """p(θ, lines | photometry, gri cutouts): VAE latents + photometric features condition two flows."""

    KIND: ClassVar[str] = "vae-nf"
    needs_images: ClassVar[bool] = True
    vae: VAE
    flow_props: eqx.Module
    flow_lines: eqx.Module
    stats: dict  # standardisations: latent+phot cond mean/std, props mean/std, lines mean/std
    props: tuple = eqx.field(static=True)
    bands: tuple = eqx.field(static=True)
    soft: tuple = eqx.field(static=True)
    image_sigma: tuple = eqx.field(static=True)
    colours: bool = eqx.field(static=True, default=False)
    given: tuple = eqx.field(static=True, default=())  # (none)

    def conditions(self, flux, images=None, given=None) -> jnp.ndarray:
        lat = encode_means(self.vae, images, self.image_sigma)
        c = np.concatenate([lat, photometric_features(flux, self.soft, self.colours)], axis=1)
        return (jnp.asarray(c, jnp.float32) - self.stats["cond_mean"]) / self.stats["cond_std"]

    def sample_both(self, cond, key, n_samples: int = 1000):
        """(props samples (n, 5), log10 line-flux samples (n, 4)) in physical units for one condition."""
        kp, kl = jr.split(typed_key(key))
        p = self.flow_props.sample(kp, (n_samples,), condition=cond)
        ln = self.flow_lines.sample(kl, (n_samples,), condition=cond)
        return (p * self.stats["props_std"] + self.stats["props_mean"],
                ln * self.stats["lines_std"] + self.stats["lines_mean"])

    def sample(self, cond, key, n_samples: int = 1000, n_steps: int = 1):
        """Property samples only (the interface of the CFM models; ``n_steps`` ignored)."""
        return self.sample_both(cond, key, n_samples)[0]

    def summarise(self, flux, key, *, n_samples: int = 1000, n_steps: int = 1, images=None, given=None,
                  keep_samples: bool = False, batch: int = 64):
        """The properties' percentiles (and samples), and the lines' columns: ``<line>_p16/p50/p84``
        (log10 flux [1e-17 erg/s/cm2]), ``<line>_pdet``, ``p_bpt_sf/composite/agn``,
        ``f_lines_detected``, ``av_balmer_p16/p50/p84`` (:func:`summarise`)."""
        if images is None:
            raise ValueError(f"{self.KIND}: this posterior model needs image cutouts")
        res = summarise(self, flux, images, key, n_samples, batch)
        cols = {}
        for j, ln in enumerate(LINES):
            for k, q in enumerate(("p16", "p50", "p84")):
                cols[f"{ln}_{q}"] = res["lines"][:, j, k]
            cols[f"{ln}_pdet"] = res["p_det"][:, j]
        for k, c in enumerate(("sf", "composite", "agn")):
            cols[f"p_bpt_{c}"] = res["bpt"][:, k]
        cols["f_lines_detected"] = res["f_lines"]
        for k, q in enumerate(("p16", "p50", "p84")):
            cols[f"av_balmer_{q}"] = res["av_balmer"][:, k]
        return res["props"], (res["samples"] if keep_samples else None), cols


@eqx.filter_jit
def _sample_rows(model: VAENFModel, cond, keys, n_samples: int):
    """Both flows' samples for a batch of conditions: compiled once per model shape, batch and
    ``n_samples`` (a jit built inside :func:`summarise` compiled again on every call)."""
    return jax.vmap(lambda ci, ki: model.sample_both(ci, ki, n_samples))(cond, keys)


def summarise(model: VAENFModel, flux, images, key, n_samples: int = 1000, batch: int = 64):
    """Per object: p16/p50/p84 of the properties (n, 5, 3) and of the log line fluxes (n, 4, 3), the
    lines' detection probabilities (n, 4), BPT probabilities (n, 3: SF, composite, AGN, over samples
    with all lines detected) and the fraction of such samples (n,), Balmer A_V p16/p50/p84 (n, 3)."""
    cond = model.conditions(flux, images)
    out = map_chunks(lambda c, k: _sample_rows(model, c, k, n_samples), cond, row_keys(key, cond.shape[0]), batch)
    P, L = np.concatenate([p for p, _ in out]), np.concatenate([ln for _, ln in out])
    q = lambda a: np.percentile(a, [16, 50, 84], axis=1).transpose(1, 2, 0)  # noqa: E731
    det = L > math.log10(F_LIM)
    alldet = det.all(axis=2)
    ix = {k: j for j, k in enumerate(LINES)}
    cls = bpt_class(L[..., ix["nii_6584"]] - L[..., ix["halpha"]], L[..., ix["oiii_5007"]] - L[..., ix["hbeta"]])
    nd = np.maximum(alldet.sum(1), 1)
    bpt = np.stack([((cls == c) & alldet).sum(1) / nd for c in (SF, COMPOSITE, AGN)], axis=1)
    bpt[alldet.sum(1) == 0] = np.nan
    av = balmer_av(L[..., ix["halpha"]], L[..., ix["hbeta"]])
    av = np.where(det[..., ix["halpha"]] & det[..., ix["hbeta"]], av, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # objects without a detected Hα and Hβ sample: NaN
        av_q = np.nanpercentile(av, [16, 50, 84], axis=1).T
    return dict(props=q(P), lines=q(L), p_det=det.mean(1), bpt=bpt, f_lines=alldet.mean(1), av_balmer=av_q,
                samples=P, line_samples=L)


def save_vaenf(path: str | Path, model: VAENFModel, sidecar: dict) -> Path:
    from ..weights import save

    return save(path, model, dict(sidecar, kind=VAENFModel.KIND))


def _skeleton(meta):
    c = meta["config"]
    nb, lat, col = len(c["bands"]), c["latent"], bool(c.get("colours", False))
    nf = nb + (nb - 1 if col else 0)
    vae = eqx.filter_eval_shape(VAE, 3, lat, tuple(c["vae_channels"]), key=jr.PRNGKey(0))
    fp = flow_skeleton(len(c["props"]), lat + nf, **c["flow"])
    fl = flow_skeleton(len(LINES), lat + nf, **c["flow"])
    z = lambda n: jnp.zeros(n, jnp.float32)  # noqa: E731
    d, k = len(c["props"]), lat + nf
    stats = dict(cond_mean=z(k), cond_std=z(k), props_mean=z(d), props_std=z(d), lines_mean=z(4), lines_std=z(4))
    return VAENFModel(vae, fp, fl, stats, tuple(c["props"]), tuple(c["bands"]), tuple(c["soft"]), tuple(c["image_sigma"]),
                      col)


def load_vaenf(path: str | Path):
    from ..weights import load

    return load(path, _skeleton, by_shape=False)
