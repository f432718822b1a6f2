"""Conditional dust prior p(D | S): a noise-conditional U-Net trained by denoising score matching.

Representation: the transmission map D ∈ (0, 1] at the reference wavelength itself (not A or
log D). D is bounded, it is the parameter the dust fit updates, and Gaussian noise of a given σ
means the same everywhere; A = −2.5 log10 D has a long tail (A > 5 mag in edge-on lanes) that
would dominate an L2 objective, and log D is unbounded below. Dust-free pixels are D = 1.

The network sees ``[(D̃ − 1) c(σ), S]`` with ``c(σ) = 1/sqrt(σ_data² + σ²)`` (EDM-style input
scaling) and log σ, and predicts −ε; the score is ``net/σ`` (see :mod:`galdust.priors.score`).
Images smaller than 64×64 are padded (D with 1, S with 0) and the score is cropped back.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax.numpy as jnp

from ..nn import CondUNet
from ..models import shipped_path
from ..weights import load
from .host import _apply, _batched, crop_from, pad_to
from .score import ve_denoise
from .train import eps_function, unet_from_config

__all__ = ["DustPrior", "dust_prior", "DEFAULT_WEIGHTS"]

DEFAULT_WEIGHTS = shipped_path("dust-prior")


class DustPrior(eqx.Module):
    """Score of p(D | S): ``prior(D, S) -> ∇_D log p_σ(D | S)`` for (..., H, W), H, W ≤ 64."""

    net: CondUNet
    sigma: float = eqx.field(static=True)
    sigma_data: float = eqx.field(static=True, default=0.25)

    def eps(self, D, S, sigma):
        """Predicted −ε for one padded (64, 64) pair at noise level ``sigma`` (traceable); the
        same function the trainer optimised."""
        return eps_function("dust", self.sigma_data)(self.net, D, S, sigma)

    def score_at(self, D, S, sigma):
        """Score at an explicit noise level for one (H, W) pair (padding handled)."""
        h, w = D.shape
        out = self.eps(pad_to(D, value=1.0), pad_to(S), sigma) / sigma
        return crop_from(out, h, w)

    def __call__(self, D, S):
        D, S = jnp.asarray(D), jnp.asarray(S)
        if D.shape != S.shape:
            raise ValueError(f"D {D.shape} and S {S.shape} must have the same shape")
        return _apply(self._one, jnp.stack([D, S], axis=-3), 3)

    def _one(self, ds):
        return self.score_at(ds[0], ds[1], self.sigma)

    def denoise(self, D_noisy, S, sigma: float, n_steps: int = 20, sigma_end: float = 0.005):
        """Prior-only denoising of D with Gaussian noise ``sigma`` given the host S (annealed DDIM)."""

        def one(ds):
            D, S_ = ds[0], ds[1]
            x = ve_denoise(lambda a, s: self.score_at(a, S_, s), D, sigma, sigma_end, n_steps)
            return jnp.clip(x, 1e-4, 1.0)

        both = jnp.stack([jnp.asarray(D_noisy), jnp.broadcast_to(S, jnp.shape(D_noisy))], axis=-3)
        return one(both) if both.ndim == 3 else _batched(one, both, 3)


def dust_prior(sigma: float = 0.02, weights: str | Path | None = None) -> DustPrior:
    """The shipped (or given) conditional dust prior at noise level ``sigma`` (D units)."""
    net, meta = load(weights or DEFAULT_WEIGHTS, lambda m: unet_from_config(m["config"]))
    return DustPrior(net, float(sigma), float(meta["config"].get("sigma_data", 0.25)))
