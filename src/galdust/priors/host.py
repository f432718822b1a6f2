"""Host-morphology prior p(S): the HSC score network of Sampson et al. (2024), via galaxygrad's file.

galaxygrad 0.2.1 ships ``eqx_hsc_ScoreNet64.eqx`` but its import crashes on Linux (a file-name case
bug), so we only *locate* the file with ``importlib.util.find_spec`` (which does not execute the
package) and deserialise it into our own copy of the architecture (:class:`galdust.nn.MixerScoreNet`:
patch 4, hidden 64, mixing widths 512/512, 4 blocks, t1 = 10, time as an extra input channel).

Conventions reproduced from galaxygrad: the network sees ``x' = log(S + 1) / 0.1`` of a morphology
with peak 1, and returns the score in x' at diffusion time t of a variance-preserving SDE with
∫β = t (α_t = e^{-t}); the score in S follows by the chain rule, ``∂/∂S = raw / (0.1 (S + 1))``.
As in galaxygrad (and scarlet2), the log-Jacobian term of the change of variables, −1/(1 + S), is
not added: the prior is the density of x', pulled back without its volume factor.
``t`` plays the role of the noise level (galaxygrad's default 0.02; scarlet2 uses 1e-3–1e-1).

Images smaller than 64×64 are zero-padded (centred) and the score cropped back; larger ones raise
a ``ValueError`` (resample or cut the cutout first).

galdust depends on galaxygrad (pinned in ``pyproject.toml``): without its weights file
:func:`host_prior` raises :class:`galdust.weights.WeightsError`, it does not swap in another prior.
A prior trained by galdust's own trainer on simulated hosts (``galdust train-prior host``) is shipped
too; it is used only when asked for by name, :func:`fallback_host_prior`.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

from ..models import DATA_DIR, SHIPPED, galaxygrad_file
from ..nn import CondUNet, MixerScoreNet
from ..weights import WeightsError, load
from .score import ve_denoise, vp_denoise
from .train import eps_function, unet_from_config

__all__ = ["HostPrior", "HostPriorFallback", "host_prior", "fallback_host_prior", "galaxygrad_file", "pad_to",
           "crop_from", "SIZE"]

SIZE = 64
LOG_SCALE = 0.1  # galaxygrad's x' = log(x + 1) / 0.1
FALLBACK_WEIGHTS = DATA_DIR / SHIPPED["host-prior-sim"].path
GALAXYGRAD_MISSING = ("the HSC host prior needs galaxygrad's weights file eqx_hsc_ScoreNet64.eqx, which is not "
                      "installed (pip install galaxygrad==0.2.1)")


def pad_to(x, size: int = SIZE, value: float = 0.0):
    """Centre-pad the last two axes of ``x`` to size×size; error if larger."""
    h, w = x.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"image of {h}x{w} pixels is larger than the prior's {size}x{size}; cut or resample it")
    py, px = size - h, size - w
    pad = [(0, 0)] * (x.ndim - 2) + [(py // 2, py - py // 2), (px // 2, px - px // 2)]
    return jnp.pad(x, pad, constant_values=value)


def crop_from(x, h: int, w: int, size: int = SIZE):
    py, px = (size - h) // 2, (size - w) // 2
    return x[..., py : py + h, px : px + w]


def _batched(fn, x, n_core: int):
    """Apply ``fn`` to the last ``n_core`` axes of ``x``, vmapped over any leading axes."""
    lead = x.shape[: x.ndim - n_core]
    out = jax.vmap(fn)(x.reshape((-1,) + x.shape[x.ndim - n_core :]))
    return out.reshape(lead + out.shape[1:])


@eqx.filter_jit
def _apply(fn, x, n_core: int):
    """``fn`` (a prior's bound method) on one example or vmapped over leading axes, compiled once per
    shape: called outside a jit (a notebook, a test) the network is not dispatched op by op
    (``docs/eval_dust.md``); inside a jit (the fit) it is inlined."""
    return fn(x) if x.ndim == n_core else _batched(fn, x, n_core)


class HostPrior(eqx.Module):
    """Score of the HSC host prior, ``prior(S) -> ∇_S log p(S)`` for (..., H, W) with H, W ≤ 64."""

    net: MixerScoreNet
    t: float = eqx.field(static=True)

    def raw(self, xp, t):
        """Network score in x' space for one (64, 64) image ``xp`` at time ``t``."""
        return self.net(xp[None], t)[0]

    def _one(self, S):
        h, w = S.shape
        x = pad_to(jnp.maximum(S, -0.5))
        g = self.raw(jnp.log1p(x) / LOG_SCALE, self.t) / (LOG_SCALE * (x + 1.0))
        return crop_from(g, h, w)

    def __call__(self, S):
        return _apply(self._one, jnp.asarray(S), 2)

    def denoise(self, S_noisy, sigma: float, n_steps: int = 20):
        """Prior-only denoising of a peak-normalised host with Gaussian pixel noise ``sigma``.

        The noise is mapped to x' space at its faint-pixel value σ' = σ/0.1 and matched to the VP
        time t0 = log(1 + σ'²); annealed DDIM steps then run down to t = 0.002.
        """

        def one(S):
            h, w = S.shape
            x = pad_to(jnp.maximum(S, -0.5))
            sp = sigma / LOG_SCALE
            t0 = jnp.maximum(jnp.log1p(sp**2), 0.002)
            xt = jnp.log1p(x) / LOG_SCALE * jnp.exp(-t0 / 2)
            x0 = vp_denoise(lambda a, t: self.raw(a, t), xt, t0, 0.002, n_steps)
            return crop_from(jnp.expm1(x0 * LOG_SCALE), h, w)

        S_noisy = jnp.asarray(S_noisy)
        return one(S_noisy) if S_noisy.ndim == 2 else _batched(one, S_noisy, 2)


class HostPriorFallback(eqx.Module):
    """Host prior trained by galdust on simulated hosts (VE score in S, same call signature)."""

    net: CondUNet
    sigma: float = eqx.field(static=True)
    sigma_data: float = eqx.field(static=True, default=0.2)

    def __call__(self, S):
        return _apply(self._one, jnp.asarray(S), 2)

    def _one(self, S):
        return self.score_at(S, self.sigma)

    def score_at(self, S, sigma):
        """Score at an explicit noise level for one (H, W) host (the trainer's ε-predictor / σ)."""
        h, w = S.shape
        return crop_from(eps_function("host", self.sigma_data)(self.net, pad_to(S), None, sigma) / sigma, h, w)

    def denoise(self, S_noisy, sigma: float, n_steps: int = 20):
        """Prior-only annealed denoising of hosts with Gaussian pixel noise ``sigma``."""

        def one(S):
            return ve_denoise(lambda a, s: self.score_at(a, s), S, sigma, 0.005, n_steps)

        S_noisy = jnp.asarray(S_noisy)
        return one(S_noisy) if S_noisy.ndim == 2 else _batched(one, S_noisy, 2)


def load_galaxygrad_net(path: Path | None = None) -> MixerScoreNet:
    """Deserialise galaxygrad's HSC 64×64 weights into :class:`MixerScoreNet`."""
    path = path or galaxygrad_file()
    if path is None:
        raise WeightsError(GALAXYGRAD_MISSING)
    skeleton = eqx.filter_eval_shape(MixerScoreNet, (1, 64, 64), 4, 64, 512, 512, 4, 10.0, key=jax.random.PRNGKey(0))
    return eqx.tree_deserialise_leaves(path, skeleton)  # by shape: no op-by-op initialisation


def host_prior(t: float = 0.02) -> HostPrior:
    """The host prior's score callable ``score(S)`` (galaxygrad's HSC network); jit/vmap-friendly,
    batched over leading axes. Raises :class:`WeightsError` when galaxygrad's weights are missing."""
    return HostPrior(load_galaxygrad_net(), float(t))


def fallback_host_prior(sigma: float = 0.02) -> HostPriorFallback:
    """galdust's own host prior trained on simulated hosts (``galdust train-prior host``), at noise
    level ``sigma``: only when asked for; :func:`host_prior` never falls back to it."""
    net, meta = load(FALLBACK_WEIGHTS, lambda m: unet_from_config(m["config"]))
    return HostPriorFallback(net, float(sigma), float(meta["config"].get("sigma_data", 0.2)))
