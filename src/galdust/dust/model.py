"""The joint galaxy–dust forward model (Siegel & Melchior 2025), with an optional PSF.

    Y_b = PSF_b ∗ [ F_b S ⊙ 10^(−0.4 K_b(δ) A) ],     A = −2.5 log10 D,

i.e. ``Y_b = PSF_b ∗ (F_b S D^{K_b(δ)})``: F > 0 the intrinsic host spectrum per band, S ≥ 0 the host
morphology (peak 1), D ∈ (0, 1] the transmission map at the reference wavelength λ₀ and K_b(δ) the
filter-integrated coefficients A_b / A_λ₀ of the tilted Calzetti curve. Given the galaxy's redshift z
(``DustModel.redshift``), λ₀, K_b and A_V are in its rest frame (each filter's wavelengths divided by 1 + z);
without it (z = 0) they are observed-frame quantities, which at z = 0.5 puts "A_V" at rest 0.37 µm.

A host of two components (``galdust fit --host bulge-disk``) has a second SED and morphology, a
bulge ``F_b^bulge B`` (B a Sérsic profile, peak 1; :func:`sersic_image`) under the same dust:
``Y_b = PSF_b ∗ [(F_b S + F_b^bulge B) D^{K_b(δ)}]``; the single-SED host has ``B = None``. A nucleus
(``--host nucleus`` or ``bulge-disk-nucleus``: an AGN or a nuclear star cluster) adds a point source
``F_b^nuc N`` with its own SED, N unresolved before the PSF (:func:`point_image`), also under the dust.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp

from ..physics.attenuation import LAMBDA_REF, LAMBDA_V, BandAttenuation, attenuation_ratio
from ..physics.psf import convolve_fft

__all__ = ["DustParams", "DustModel", "D_MIN", "DELTA_RANGE", "sersic_image", "point_image", "host_morphology",
           "NUCLEUS_SIGMA"]

D_MIN = 1e-3  # A_λ₀ ≤ 7.5 mag
DELTA_RANGE = (-1.0, 0.5)


class DustParams(NamedTuple):
    """Free parameters of one galaxy (add a leading axis for a batch)."""

    log_F: jnp.ndarray  # (n_band,) natural log of the host SED
    S: jnp.ndarray  # (H, W)
    D: jnp.ndarray  # (H, W)
    delta: jnp.ndarray  # ()
    log_Fb: jnp.ndarray | None = None  # (n_band,) ln of the bulge's SED (bulge-disk host), else None
    B: jnp.ndarray | None = None  # (H, W) bulge morphology, peak 1
    bulge_shape: jnp.ndarray | None = None  # (6,) x0, y0 [px from the centre], ln R_e [px], n, e1, e2 of B
    log_Fn: jnp.ndarray | None = None  # (n_band,) ln of the nucleus's SED (host with a nucleus), else None
    N: jnp.ndarray | None = None  # (H, W) the nucleus before the PSF (point_image), peak 1
    nucleus_pos: jnp.ndarray | None = None  # (2,) x0, y0 of the nucleus [px from the image centre]
    log_Fc: jnp.ndarray | None = None  # (n_band,) ln of the clumps' SED (host with clumps), else None
    C: jnp.ndarray | None = None  # (H, W) clump map ≥ 0 (its peak is not normalised)


def sersic_image(shape, x0, y0, log_re, n, e1, e2, soften: float = 0.25):
    """A Sérsic profile of peak 1 on a pixel grid: centre (x0, y0) in pixels from the image centre,
    effective radius e^log_re px (the geometric mean of the axes), index n, and shape (e1, e2) with
    |e| < 1: ``r² = [(1 − e1) x² − 2 e2 x y + (1 + e1) y²] / √(1 − |e|²)``, the axis ratio
    q = √((1 − |e|)/(1 + |e|)) (smooth at e = 0, unlike an angle); the radius is softened by
    ``soften`` px so the cusp is finite on the grid."""
    h, w = shape
    yy, xx = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2.0 - y0, jnp.arange(w) - (w - 1) / 2.0 - x0, indexing="ij")
    det = jnp.sqrt(jnp.maximum(1.0 - e1**2 - e2**2, 1e-4))
    r = jnp.sqrt(((1.0 - e1) * xx**2 - 2.0 * e2 * xx * yy + (1.0 + e1) * yy**2) / det + soften**2)
    bn = 2.0 * n - 1.0 / 3.0 + 0.009876 / n
    prof = jnp.exp(-bn * ((r / jnp.exp(log_re)) ** (1.0 / n) - (soften / jnp.exp(log_re)) ** (1.0 / n)))
    return prof / jnp.maximum(jnp.max(prof), 1e-30)


#: width (Gaussian σ, px) of the nucleus before the PSF: unresolved, yet sampled smoothly enough that its
#: sub-pixel position has a gradient
NUCLEUS_SIGMA = 0.5


def point_image(shape, x0, y0, sigma: float = NUCLEUS_SIGMA):
    """An unresolved source before the PSF: a round Gaussian of σ ``sigma`` px and peak 1 (sum ≈ 2πσ²)
    at (x0, y0) px from the image centre; the PSF makes it the observed point source."""
    h, w = shape
    yy, xx = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2.0 - y0, jnp.arange(w) - (w - 1) / 2.0 - x0, indexing="ij")
    return jnp.exp(-0.5 * (xx**2 + yy**2) / sigma**2)


class DustModel(eqx.Module):
    """Forward model for a fixed band list and PSF (a pytree; call with :class:`DustParams`)."""

    att: BandAttenuation
    psf: jnp.ndarray | None  # (n_band, k, k) unit-sum kernels, or None
    # the galaxy's redshift: D, A and δ in its rest frame (A_V at rest 0.551 µm); 0: the observed frame
    redshift: jnp.ndarray | float = 0.0

    def K(self, delta):
        return self.att(delta, self.redshift)

    def transmission(self, p: DustParams):
        """10^(−0.4 K_b A) = D^{K_b}, shape (n_band, H, W)."""
        D = jnp.clip(p.D, D_MIN, 1.0)
        return jnp.exp(self.K(p.delta)[:, None, None] * jnp.log(D)[None])

    def transmission_from_A(self, A, delta):
        """10^(−0.4 K_b(δ) A) for an A map [mag at λ₀], (n_band, H, W). Unlike :meth:`transmission`
        (D ≤ 1), A < 0 is honoured: the fit lets A dip below 0 so that noise averages out."""
        return jnp.exp(-0.4 * jnp.log(10.0) * self.K(delta)[:, None, None] * A[None])

    def host(self, p: DustParams):
        """Unattenuated host cube F_b S (+ F_b^bulge B, + F_b^nuc N for a host with a bulge, a
        nucleus; before the PSF)."""
        y = jnp.exp(p.log_F)[:, None, None] * p.S[None]
        if p.B is not None:
            y = y + jnp.exp(p.log_Fb)[:, None, None] * p.B[None]
        if p.N is not None:
            y = y + jnp.exp(p.log_Fn)[:, None, None] * p.N[None]
        if p.C is not None:
            y = y + jnp.exp(p.log_Fc)[:, None, None] * p.C[None]
        return y

    def observe(self, y):
        """The PSF applied to a model cube (the identity without a PSF)."""
        return y if self.psf is None else convolve_fft(y, self.psf)

    def __call__(self, p: DustParams, *, dust: bool = True):
        y = self.host(p)
        return self.observe(y * self.transmission(p) if dust else y)

    def av_map(self, p: DustParams):
        """A_V (mag at 0.551 µm) per pixel from D and δ."""
        a_ref = -2.5 * jnp.log10(jnp.clip(p.D, D_MIN, 1.0))
        return a_ref * attenuation_ratio(LAMBDA_V, p.delta, self.att.lam_ref, self.att.bump)


def make_model(bands, psf=None, *, wave_eff=None, lam_ref: float = LAMBDA_REF, redshift: float = 0.0) -> DustModel:
    """A :class:`DustModel` for registry ``bands`` (``wave_eff`` for unknown ones) and PSF cube; dust in
    the rest frame of a galaxy at ``redshift`` (0: the observed frame)."""
    att = BandAttenuation(list(bands), lam_ref=lam_ref, wave_eff=wave_eff)
    return DustModel(att, None if psf is None else jnp.asarray(psf), redshift)


def host_morphology(p: DustParams):
    """The whole host's morphology (peak 1): S for a single-SED host; for a host of several components,
    the unattenuated host summed over bands, normalised to peak 1."""
    if p.B is None and p.N is None and p.C is None:
        return p.S
    tot = jnp.sum(jnp.exp(p.log_F)) * p.S
    if p.B is not None:
        tot = tot + jnp.sum(jnp.exp(p.log_Fb)) * p.B
    if p.N is not None:
        tot = tot + jnp.sum(jnp.exp(p.log_Fn)) * p.N
    if p.C is not None:
        tot = tot + jnp.sum(jnp.exp(p.log_Fc)) * p.C
    return tot / jnp.maximum(jnp.max(tot), 1e-30)
