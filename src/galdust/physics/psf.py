"""Point-spread functions: Gaussian kernels and FFT convolution (JAX, differentiable)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from scipy.fft import next_fast_len

__all__ = ["gaussian_psf", "convolve_fft", "fft_size"]


def gaussian_psf(fwhm, n_band: int | None = None) -> np.ndarray:
    """Unit-sum circular Gaussian kernels, (n_band, k, k), for FWHM(s) in pixels; k odd, ≥ 5 FWHM."""
    fwhm = np.atleast_1d(np.asarray(fwhm, float))
    if np.any(~(fwhm > 0)):
        raise ValueError(f"PSF FWHM must be positive, got {fwhm}")
    if n_band is not None:
        fwhm = np.broadcast_to(fwhm, (n_band,))
    k = int(2 * np.ceil(2.5 * fwhm.max()) + 1)
    r = np.arange(k) - k // 2
    sig = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    g = np.exp(-0.5 * (r[None, :, None] ** 2 + r[None, None, :] ** 2) / sig[:, None, None] ** 2)
    return g / g.sum(axis=(1, 2), keepdims=True)


def fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c ≥ ``n`` (``scipy.fft.next_fast_len`` for real transforms): FFT
    lengths with large prime factors are slow (a 64×64 map with the gauge smoothing's 25-px kernel
    was padded to 89, a prime)."""
    return next_fast_len(int(n), real=True)


def convolve_fft(img, kernel):
    """Linear (zero-padded, not circular) convolution of (..., n, m) images with centred (..., k, l)
    kernels; the output has the image's shape."""
    n, m = img.shape[-2:]
    k, l = kernel.shape[-2:]
    fy, fx = fft_size(n + k - 1), fft_size(m + l - 1)
    F = jnp.fft.rfft2(img, s=(fy, fx)) * jnp.fft.rfft2(kernel, s=(fy, fx))
    out = jnp.fft.irfft2(F, s=(fy, fx))
    oy, ox = k // 2, l // 2
    return out[..., oy : oy + n, ox : ox + m]
