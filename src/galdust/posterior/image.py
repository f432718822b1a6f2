"""Image + photometry conditional flow matching (the seed's second model).

The velocity network sees [t, θ_t, image embedding, photometric features]; the embedding comes from
a CNN trained jointly with it: four stride-1 3×3 convolution blocks (GELU), each followed by 2×2
average pooling, then a global average pool to 256 dimensions. Images are the simulator's SDSS gri
64×64 cutouts [nanomaggies/pixel]; they are binned 2×2 to 32×32 (0.79″ pixels, still finer than
the 1.4″ PSF) and stretched with asinh(image / (3 σ_sky)) before the CNN. The binning is ours: it
cuts the CNN's cost 4× so that the model trains on 2 CPU cores in tens of minutes.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..nn import conv2d
from .cfm import VelocityMLP, cfm_loss
from .base import FlowMatchingPosterior, luptitudes

__all__ = ["ImageEncoder", "ImagePosteriorModel", "build_image_model", "image_model_from_photometric",
           "train_image_cfm", "save_image_model", "load_image_model", "CHANNELS"]

CHANNELS = (16, 32, 64, 256)


def stretch(images, sigma, b: int = 2) -> jnp.ndarray:
    """(n, C, H, W) nmgy/pixel -> binned b×b and asinh(x / 3σ_b)-stretched (n, C, H/b, W/b), σ_b = b σ
    the noise of a b×b sum of pixels with sky noise σ."""
    x = jnp.asarray(images, jnp.float32)
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // b, b, w // b, b).sum(axis=(3, 5))
    s = jnp.asarray(sigma, jnp.float32)[None, :, None, None] * b
    return jnp.arcsinh(x / (3 * s))


class ImageEncoder(eqx.Module):
    convs: list

    def __init__(self, in_channels: int = 3, channels=CHANNELS, *, key):
        keys = jr.split(key, len(channels))
        c_in, convs = in_channels, []
        for c, k in zip(channels, keys):
            convs.append(conv2d(c_in, c, k))  # eqx.nn.Conv2d(c_in, c, 3, padding=1), drawn faster
            c_in = c
        self.convs = convs

    def __call__(self, x):
        """(C, H, W) stretched image -> (channels[-1],) embedding."""
        for conv in self.convs:
            x = jax.nn.gelu(conv(x))
            c, h, w = x.shape
            x = x.reshape(c, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
        return x.mean(axis=(1, 2))


class ImagePosteriorModel(FlowMatchingPosterior):
    """p(θ | photometry, gri cutouts): a CFM conditioned on [image embedding, photometric features]."""

    KIND: ClassVar[str] = "cfm-image"
    needs_images: ClassVar[bool] = True
    encoder: ImageEncoder
    velocity: VelocityMLP
    theta_mean: jnp.ndarray
    theta_std: jnp.ndarray
    cond_mean: jnp.ndarray
    cond_std: jnp.ndarray
    props: tuple = eqx.field(static=True)
    bands: tuple = eqx.field(static=True)
    soft: tuple = eqx.field(static=True)
    image_bands: tuple = eqx.field(static=True)
    image_sigma: tuple = eqx.field(static=True)  # sky σ per native pixel [nmgy]
    bin: int = eqx.field(static=True, default=2)
    given: tuple = eqx.field(static=True, default=())  # (none: the photometric features only)

    def stretch(self, images) -> jnp.ndarray:
        return stretch(images, self.image_sigma, self.bin)

    def embed(self, images) -> jnp.ndarray:
        return jax.vmap(self.encoder)(self.stretch(images))

    def conditions(self, flux, images=None, given=None, batch: int = 512) -> jnp.ndarray:
        """Conditioning vectors [embedding, photometric features] (n, 256 + n_band)."""
        f = eqx.filter_jit(lambda m, im: m.embed(im))
        emb = jnp.concatenate([f(self, images[i : i + batch]) for i in range(0, len(images), batch)])
        return jnp.concatenate([emb, self.features(flux)], axis=1)



def build_image_model(props, bands, soft, image_bands, image_sigma, theta, flux, *, width=256, depth=3,
                      channels=CHANNELS, key) -> ImagePosteriorModel:
    x = luptitudes(flux, soft)
    ke, kv = jr.split(key)
    enc = ImageEncoder(len(image_bands), channels, key=ke)
    vel = VelocityMLP(len(props), channels[-1] + len(bands), width, depth, key=kv)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return ImagePosteriorModel(enc, vel, f32(theta.mean(0)), f32(np.maximum(theta.std(0), 1e-6)), f32(x.mean(0)),
                               f32(np.maximum(x.std(0), 1e-6)), tuple(props), tuple(bands),
                               tuple(float(s) for s in soft), tuple(image_bands), tuple(float(s) for s in image_sigma))


def image_model_from_photometric(phot, image_bands, image_sigma, *, channels=CHANNELS, key) -> ImagePosteriorModel:
    """An image + photometry model that starts as a trained photometry model ``phot``
    (:class:`~galdust.posterior.model.PosteriorModel`): its velocity network and standardisation are
    copied, and the first layer gets zero weights for the new image-embedding inputs, so before
    training the image model *is* the photometry model and training only has to add what the images
    tell (a warm start; the CNN is new)."""
    enc = ImageEncoder(len(image_bands), channels, key=key)
    net = phot.velocity.net
    d = phot.velocity.dim
    first = net.layers[0]
    w = first.weight  # (width, 1 + d + n_band): inputs [t, θ, photometry]
    w_new = jnp.concatenate([w[:, : 1 + d], jnp.zeros((w.shape[0], channels[-1]), w.dtype), w[:, 1 + d :]], axis=1)
    vel = VelocityMLP(d, channels[-1] + len(phot.bands), net.width_size, net.depth, key=key)
    vel = eqx.tree_at(lambda v: (v.net.layers[0].weight, v.net.layers[0].bias), vel, (w_new, first.bias))
    vel = eqx.tree_at(lambda v: v.net.layers[1:], vel, tuple(net.layers[1:]))
    return ImagePosteriorModel(enc, vel, phot.theta_mean, phot.theta_std, phot.cond_mean, phot.cond_std, phot.props,
                               phot.bands, phot.soft, tuple(image_bands), tuple(float(s) for s in image_sigma))


def train_image_cfm(model: ImagePosteriorModel, theta, flux, images, *, key, val_frac: float = 0.05,
                    batch: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4, max_steps: int = 5000,
                    eval_every: int = 250, patience: int = 8, max_val: int = 2048, checkpoint=None, log=None):
    """Joint AdamW training of encoder and velocity on the CFM loss; early stopping, best weights kept
    (:func:`galdust.nn.train.fit`, resumable from ``checkpoint``). Returns (model, ``Trained``).

    ``theta`` (n, d) physical units, ``flux`` (n, b) nmgy, ``images`` (n, C, H, W) (any float array,
    e.g. a float16 memory map: batches are read and converted as they are drawn).
    """
    from ..nn.train import adam, digest, fit

    z = ((np.asarray(theta, np.float64) - np.asarray(model.theta_mean)) / np.asarray(model.theta_std)).astype(np.float32)
    phot = np.asarray(model.features(flux), np.float32)
    n = len(z)
    seed = int(jr.randint(key, (), 0, 2**31 - 1))
    perm = np.random.default_rng(seed).permutation(n)
    n_val = min(max(int(val_frac * n), 1), max_val)
    vi, ti = np.sort(perm[:n_val]), perm[n_val:]

    def loss(m, b, k):
        img, th, ph = b
        return cfm_loss(m.velocity, th, jnp.concatenate([m.embed(img), ph], axis=1), k)

    def host_sample(step):  # step k's rows from (seed, k): the same after a resume
        idx = np.sort(ti[np.random.default_rng([seed, step]).integers(0, len(ti), batch)])
        return jnp.asarray(np.asarray(images[idx], np.float32)), jnp.asarray(z[idx]), jnp.asarray(phot[idx])

    val = (jnp.asarray(np.asarray(images[vi], np.float32)), jnp.asarray(z[vi]), jnp.asarray(phot[vi]))
    val_loss = eqx.filter_jit(lambda m, b: jnp.mean(jnp.stack([loss(m, b, k) for k in jr.split(jr.PRNGKey(12345), 4)])))
    res = fit(model, loss, adam(lr, max_steps, weight_decay=weight_decay), steps=max_steps, seed=key,
              host_sample=host_sample, validate=lambda m: float(val_loss(m, val)), eval_every=eval_every,
              keep_best=True, patience=patience, checkpoint=checkpoint,
              match={"batch": batch, "lr": lr, "data": digest(z, phot, val[0])}, log=log, name="image cfm")
    return res.model, res


def save_image_model(path: str | Path, model: ImagePosteriorModel, sidecar: dict) -> Path:
    from ..weights import save

    cfg = dict(props=list(model.props), bands=list(model.bands), soft=list(model.soft),
               image_bands=list(model.image_bands), image_sigma=list(model.image_sigma), bin=model.bin,
               channels=[c.out_channels for c in model.encoder.convs], width=model.velocity.net.width_size,
               depth=model.velocity.net.depth)
    return save(path, model, dict(sidecar, kind=ImagePosteriorModel.KIND, config=cfg))


def _skeleton(meta):
    c = meta["config"]
    d, b = len(c["props"]), len(c["bands"])
    z = lambda n: jnp.zeros(n, jnp.float32)  # noqa: E731
    enc = ImageEncoder(len(c["image_bands"]), tuple(c["channels"]), key=jr.PRNGKey(0))
    vel = VelocityMLP(d, c["channels"][-1] + b, c["width"], c["depth"], key=jr.PRNGKey(1))
    return ImagePosteriorModel(enc, vel, z(d), z(d), z(b), z(b), tuple(c["props"]), tuple(c["bands"]),
                               tuple(c["soft"]), tuple(c["image_bands"]), tuple(c["image_sigma"]), c["bin"])


def load_image_model(path: str | Path):
    from ..weights import load

    return load(path, _skeleton)
