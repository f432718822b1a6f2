"""Starting points for the dust fit (Siegel & Melchior 2025, §3): red start and blue start.

Both work on one galaxy's arrays and are jit/vmap-friendly (the choice between them is static).

* **Red start** (the default for every band set): the host morphology is the reddest band's image
  (the least attenuated), the host SED the band fluxes over it, and the dust starts near zero.
* **Amortised start** (``--start amortized``): the amortised network's A map at λ₀ and δ
  (:mod:`galdust.dust.amortized`), the host being the data dereddened by it.
* **Blue start** (``--start blue``): in the footprint, the bluest 50 % of pixels (by their blue/red colour)
  give the host spectrum; each pixel's reddening relative to it, fitted as
  ``log Y_b = c − 0.4 K_b A`` over the bands (weighted least squares, A ≥ 0), gives a first A map,
  and ``S = S_obs / 10^(−0.4 A)``.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..physics.psf import convolve_fft, gaussian_psf

__all__ = ["footprint", "red_start", "blue_start", "net_start", "choose_start", "STARTS"]


#: ``galdust fit --start``: 'amortized' starts from the amortised network's dust map and δ
STARTS = ("auto", "red", "blue", "amortized")


#: whether ``auto`` starts from the amortised network where it serves the bands: off (measured in
#: docs/amortized_dust.md, session 34: the warm start from the network is faster and maps the dust
#: better on our simulator, but leaves 89-91 % of our own dust-free hosts at A_V,LW <= 0.03 against
#: the red start's 97-98 %, and the network breaks beyond z ~ 0.25: flagged, then the red start)
AUTO_AMORTIZED = False


def choose_start(wave_eff, start: str = "auto", network: bool = False) -> str:
    """The start to use: 'red', 'blue' or 'amortized' as requested; ``auto`` is the red start for every
    band set (the network's start, ``network`` = it serves the bands, only with :data:`AUTO_AMORTIZED`).
    Why the red start even without a band at 1 µm (the blue start invents dust on dust-free hosts
    with colour gradients): docs/eval_dust.md, session-20 section."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {', '.join(STARTS)}, not {start!r}")
    del wave_eff  # every band set starts red (kept for the signature's callers)
    if start == "auto":
        return "amortized" if (network and AUTO_AMORTIZED) else "red"
    return start


def footprint(Y, ivar, nsig: float = 2.0):
    """Pixels of the galaxy: the inverse-variance-weighted detection image, smoothed by a 2-px
    Gaussian, above ``nsig`` times its noise."""
    det = jnp.sum(Y * ivar, axis=0)
    noise = jnp.sqrt(jnp.sum(ivar, axis=0))
    snr = det / jnp.maximum(noise, 1e-30)
    k = jnp.asarray(gaussian_psf(2.0, 1)[0])
    sm = convolve_fft(snr, k) / jnp.sqrt(jnp.sum(k**2))
    return sm > nsig


def _positive_peak_normalised(img, fp):
    img = jnp.where(fp, jnp.clip(img, 0.0, None), 0.0)
    return img / jnp.maximum(jnp.max(img), 1e-30)


def red_start(Y, ivar, K, fp, d0: float = 0.98):
    """(log_F, S, D) from the reddest band; D = ``d0`` everywhere (near-zero dust)."""
    S = _positive_peak_normalised(Y[-1], fp)
    F = jnp.sum(jnp.where(fp, Y, 0.0), axis=(1, 2)) / jnp.maximum(jnp.sum(S), 1e-30)
    return jnp.log(jnp.maximum(F, 1e-30)), S, jnp.full(S.shape, d0)


def blue_start(Y, ivar, K, fp, a_max: float = 3.0):
    """(log_F, S, D) from per-pixel colours relative to the bluest half of the footprint."""
    Yp = jnp.clip(Y, 1e-30, None)
    snr = Y * jnp.sqrt(ivar)
    good = fp & jnp.all(snr > 3.0, axis=0)
    colour = jnp.log(Yp[0]) - jnp.log(Yp[-1])  # blue/red
    med = jnp.nanmedian(jnp.where(good, colour, jnp.nan))
    blue = good & (colour >= med)
    F = jnp.sum(jnp.where(blue, Y, 0.0), axis=(1, 2))
    F = F / jnp.maximum(jnp.max(F), 1e-30)
    logF_shape = jnp.log(jnp.maximum(F, 1e-30))
    # per-pixel weighted regression r_b = c + x_b A with x_b = -0.4 K_b (ln units)
    r = jnp.log(Yp) - logF_shape[:, None, None]
    x = (-0.4 * jnp.log(10.0) * K)[:, None, None] * jnp.ones_like(Y)
    w = jnp.where(good[None], jnp.clip(snr, 0.0, None) ** 2, 0.0) + 1e-12
    sw = jnp.sum(w, axis=0)
    xm = jnp.sum(w * x, axis=0) / sw
    rm = jnp.sum(w * r, axis=0) / sw
    A = jnp.sum(w * (x - xm) * (r - rm), axis=0) / jnp.maximum(jnp.sum(w * (x - xm) ** 2, axis=0), 1e-12)
    A = jnp.where(good, jnp.clip(A, 0.0, a_max), 0.0)
    return _host_under(Y, K, fp, 10.0 ** (-0.4 * A))


def _host_under(Y, K, fp, D):
    """(log_F, S, D): the host that the dust D leaves, from the data dereddened by it."""
    # unattenuated morphology: the observed flux summed over bands divided by the mean transmission
    S_obs = jnp.sum(jnp.where(fp, Y, 0.0), axis=0)
    S = _positive_peak_normalised(S_obs / jnp.mean(D[None] ** K[:, None, None], axis=0), fp)
    Fa = jnp.sum(jnp.where(fp, Y, 0.0), axis=(1, 2)) / jnp.maximum(
        jnp.sum(S[None] * D[None] ** K[:, None, None], axis=(1, 2)), 1e-30)
    return jnp.log(jnp.maximum(Fa, 1e-30)), S, D


def net_start(Y, ivar, K, fp, A, a_max: float = 3.0):
    """(log_F, S, D) from a given A map at λ₀ (the amortised network's mean): the host it leaves."""
    del ivar
    A = jnp.where(fp, jnp.clip(A, 0.0, a_max), 0.0)
    return _host_under(Y, K, fp, 10.0 ** (-0.4 * A))
