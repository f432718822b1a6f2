"""Shared network blocks (equinox): the HSC MLP-Mixer score net and a noise-conditional U-Net;
:mod:`galdust.nn.train` is the one training loop every network of the package uses.

All modules act on one example (channels first); batch with ``jax.vmap``.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

__all__ = ["MixerBlock", "MixerScoreNet", "NoiseEmbedding", "Conv", "GroupNorm", "ResBlock", "CondUNet", "MLP",
           "space_to_depth", "depth_to_space"]


# ----------------------------------------------------------------------------- MLP-Mixer
# Same pytree layout as galaxygrad 0.2.1 (Sampson et al. 2024), so that its shipped
# ``eqx_hsc_ScoreNet64.eqx`` deserialises into it; einops is replaced by plain reshapes.


def uniform_init(key, shape, lim: float) -> jnp.ndarray:
    """``jr.uniform(key, shape, minval=-lim, maxval=lim)``, bit for bit, drawn as a flat vector:
    with JAX's partitionable threefry the values do not depend on the shape, but XLA:CPU compiles a
    4-D draw several times slower, and an initialisation runs op by op, one compilation per weight
    shape (measured: docs/implementation.md)."""
    return jr.uniform(key, (math.prod(shape),), minval=-lim, maxval=lim).reshape(shape)


def conv2d(c_in: int, c_out: int, key, *, stride: int = 1) -> eqx.nn.Conv2d:
    """``eqx.nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, key=key)`` with the same values (its
    default initialisation: weights and biases uniform in ±1/√fan-in from the two halves of ``key``),
    drawn flat by :func:`uniform_init`."""
    conv = eqx.filter_eval_shape(eqx.nn.Conv2d, c_in, c_out, 3, stride=stride, padding=1, key=key)  # shapes only
    wkey, bkey = jr.split(key)
    lim = 1.0 / math.sqrt(c_in * 9)
    return eqx.tree_at(lambda c: (c.weight, c.bias), conv,
                       (uniform_init(wkey, conv.weight.shape, lim), uniform_init(bkey, conv.bias.shape, lim)))


class MixerBlock(eqx.Module):
    patch_mixer: eqx.nn.MLP
    hidden_mixer: eqx.nn.MLP
    norm1: eqx.nn.LayerNorm
    norm2: eqx.nn.LayerNorm

    def __init__(self, num_patches, hidden_size, mix_patch_size, mix_hidden_size, *, key):
        tkey, ckey = jr.split(key, 2)
        self.patch_mixer = eqx.nn.MLP(num_patches, num_patches, mix_patch_size, depth=1, key=tkey)
        self.hidden_mixer = eqx.nn.MLP(hidden_size, hidden_size, mix_hidden_size, depth=1, key=ckey)
        self.norm1 = eqx.nn.LayerNorm((hidden_size, num_patches))
        self.norm2 = eqx.nn.LayerNorm((num_patches, hidden_size))

    def __call__(self, y):  # y: (hidden, patches)
        y = y + jax.vmap(self.patch_mixer)(self.norm1(y))
        y = y.T
        y = y + jax.vmap(self.hidden_mixer)(self.norm2(y))
        return y.T


class MixerScoreNet(eqx.Module):
    """MLP-Mixer score network; the diffusion time is appended as an input channel (scaled by t1)."""

    conv_in: eqx.nn.Conv2d
    conv_out: eqx.nn.ConvTranspose2d
    blocks: list
    norm: eqx.nn.LayerNorm
    t1: float

    def __init__(self, img_size=(1, 64, 64), patch_size=4, hidden_size=64, mix_patch_size=512,
                 mix_hidden_size=512, num_blocks=4, t1=10.0, *, key):
        input_size, height, width = img_size
        assert height % patch_size == 0 and width % patch_size == 0
        num_patches = (height // patch_size) * (width // patch_size)
        inkey, outkey, *bkeys = jr.split(key, 2 + num_blocks)
        self.conv_in = eqx.nn.Conv2d(input_size + 1, hidden_size, patch_size, stride=patch_size, key=inkey)
        self.conv_out = eqx.nn.ConvTranspose2d(hidden_size, input_size, patch_size, stride=patch_size, key=outkey)
        self.blocks = [MixerBlock(num_patches, hidden_size, mix_patch_size, mix_hidden_size, key=k) for k in bkeys]
        self.norm = eqx.nn.LayerNorm((hidden_size, num_patches))
        self.t1 = t1

    def __call__(self, y, t=0.0):  # y: (1, H, W)
        t = t / self.t1
        _, height, width = y.shape
        tt = jnp.ones((1, height, width), y.dtype) * t
        y = self.conv_in(jnp.concatenate([y, tt]))
        c, ph, pw = y.shape
        y = y.reshape(c, ph * pw)
        for block in self.blocks:
            y = block(y)
        y = self.norm(y)
        return self.conv_out(y.reshape(c, ph, pw))


# ----------------------------------------------------------------------------- U-Net


class NoiseEmbedding(eqx.Module):
    """Fourier features of log σ followed by a two-layer MLP."""

    freqs: jnp.ndarray
    mlp: eqx.nn.MLP

    def __init__(self, dim: int, *, key):
        k1, _ = jr.split(key)
        self.freqs = jnp.exp(jnp.linspace(0.0, math.log(64.0), dim // 2))
        self.mlp = eqx.nn.MLP(dim, dim, dim, depth=2, activation=jax.nn.silu, key=k1)

    def __call__(self, log_sigma):
        f = jax.lax.stop_gradient(self.freqs) * log_sigma / 4.0
        return self.mlp(jnp.concatenate([jnp.sin(f), jnp.cos(f)]))


class Conv(eqx.Module):
    """2-D 'same' convolution on channels-last (H, W, C) images (faster than NCHW on XLA:CPU)."""

    weight: jnp.ndarray  # (k, k, c_in, c_out)
    bias: jnp.ndarray

    def __init__(self, c_in: int, c_out: int, k: int = 3, *, key, zero: bool = False):
        lim = 1.0 / math.sqrt(c_in * k * k)
        self.weight = (jnp.zeros((k, k, c_in, c_out)) if zero else uniform_init(key, (k, k, c_in, c_out), lim))
        self.bias = jnp.zeros((c_out,))

    def __call__(self, x):
        y = jax.lax.conv_general_dilated(x[None], self.weight, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
        return y + self.bias


class GroupNorm(eqx.Module):
    """Group normalisation over channels-last (H, W, C)."""

    groups: int = eqx.field(static=True)
    scale: jnp.ndarray
    shift: jnp.ndarray

    def __init__(self, groups: int, channels: int):
        self.groups = groups
        self.scale = jnp.ones((channels,))
        self.shift = jnp.zeros((channels,))

    def __call__(self, x):
        h, w, c = x.shape
        g = x.reshape(h, w, self.groups, c // self.groups)
        mu = g.mean(axis=(0, 1, 3), keepdims=True)
        var = g.var(axis=(0, 1, 3), keepdims=True)
        g = (g - mu) * jax.lax.rsqrt(var + 1e-5)
        return g.reshape(h, w, c) * self.scale + self.shift


class ResBlock(eqx.Module):
    norm1: GroupNorm
    conv1: Conv
    film: eqx.nn.Linear
    norm2: GroupNorm
    conv2: Conv
    skip: Conv | None

    def __init__(self, c_in: int, c_out: int, emb_dim: int, *, key):
        k = jr.split(key, 4)
        self.norm1 = GroupNorm(min(8, c_in), c_in)
        self.conv1 = Conv(c_in, c_out, 3, key=k[0])
        self.film = eqx.nn.Linear(emb_dim, 2 * c_out, key=k[1])
        self.norm2 = GroupNorm(min(8, c_out), c_out)
        self.conv2 = Conv(c_out, c_out, 3, key=k[2])
        self.skip = Conv(c_in, c_out, 1, key=k[3]) if c_in != c_out else None

    def __call__(self, x, emb):
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        scale, shift = jnp.split(self.film(emb), 2)
        h = self.norm2(h) * (1.0 + scale) + shift
        h = self.conv2(jax.nn.silu(h))
        return h + (x if self.skip is None else self.skip(x))


def _down(x):
    h, w, c = x.shape
    return x.reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))


def _up(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=0), 2, axis=1)


def space_to_depth(x, f: int):
    """(H, W, C) -> (H/f, W/f, C f²)."""
    h, w, c = x.shape
    return x.reshape(h // f, f, w // f, f, c).transpose(0, 2, 1, 3, 4).reshape(h // f, w // f, f * f * c)


def depth_to_space(x, f: int):
    """(H/f, W/f, C f²) -> (H, W, C)."""
    h, w, cf = x.shape
    c = cf // (f * f)
    return x.reshape(h, w, f, f, c).transpose(0, 2, 1, 3, 4).reshape(h * f, w * f, c)


class CondUNet(eqx.Module):
    """Noise-conditional U-Net: input (c_in, H, W) and log σ, output (c_out, H, W).

    A space-to-depth stem (factor ``stem``) folds stem×stem pixel blocks into channels, so the
    convolutions run on fewer, wider pixels (fast on CPUs, lossless); ``widths`` are the channels
    per resolution level after the stem. H and W must be divisible by stem · 2**(len(widths)-1).
    Internally channels-last.
    """

    emb: NoiseEmbedding
    conv_in: Conv
    down: list
    mid: list
    up: list
    norm_out: GroupNorm
    conv_out: Conv
    stem: int = eqx.field(static=True)

    def __init__(self, c_in: int = 2, c_out: int = 1, widths=(32, 64, 128), emb_dim: int = 64, stem: int = 2,
                 *, key):
        keys = iter(jr.split(key, 4 + 3 * len(widths)))
        self.stem = stem
        self.emb = NoiseEmbedding(emb_dim, key=next(keys))
        self.conv_in = Conv(c_in * stem * stem, widths[0], 3, key=next(keys))
        self.down = []
        prev = widths[0]
        for w in widths[:-1]:
            self.down.append(ResBlock(prev, w, emb_dim, key=next(keys)))
            prev = w
        self.mid = [ResBlock(prev, widths[-1], emb_dim, key=next(keys)),
                    ResBlock(widths[-1], widths[-1], emb_dim, key=next(keys))]
        prev = widths[-1]
        self.up = []
        for w in reversed(widths[:-1]):
            self.up.append(ResBlock(prev + w, w, emb_dim, key=next(keys)))
            prev = w
        self.norm_out = GroupNorm(min(8, prev), prev)
        self.conv_out = Conv(prev, c_out * stem * stem, 3, key=next(keys), zero=True)

    def __call__(self, x, log_sigma):
        e = self.emb(log_sigma)
        h = self.conv_in(space_to_depth(jnp.moveaxis(x, 0, -1), self.stem))
        skips = []
        for blk in self.down:
            h = blk(h, e)
            skips.append(h)
            h = _down(h)
        for blk in self.mid:
            h = blk(h, e)
        for blk in self.up:
            h = _up(h)
            h = blk(jnp.concatenate([h, skips.pop()], axis=-1), e)
        out = self.conv_out(jax.nn.silu(self.norm_out(h)))
        return jnp.moveaxis(depth_to_space(out, self.stem), -1, 0)


class MLP(eqx.Module):
    """Small score MLP on flat vectors (used for the analytic Gaussian check)."""

    net: eqx.nn.MLP

    def __init__(self, dim: int, width: int = 64, depth: int = 3, *, key):
        self.net = eqx.nn.MLP(dim + 1, dim, width, depth, activation=jax.nn.silu, key=key)

    def __call__(self, x, log_sigma):
        return self.net(jnp.concatenate([x, jnp.atleast_1d(log_sigma)]))
