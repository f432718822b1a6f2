"""galdust.physics.psf: Gaussian kernels, FFT sizes and the linear FFT convolution."""

import numpy as np
import pytest
from scipy.signal import convolve2d

from galdust.physics.psf import convolve_fft, fft_size, gaussian_psf


def _smooth_numbers(hi):
    return [n for n in range(1, hi) if _factor_out(n) == 1]


def _factor_out(n):
    for p in (2, 3, 5):
        while n % p == 0:
            n //= p
    return n


def test_fft_size_is_the_next_5_smooth_length():
    smooth = _smooth_numbers(300)
    for n in range(1, 250):
        assert fft_size(n) == min(s for s in smooth if s >= n)
    assert fft_size(89) == 90 and fft_size(83) == 90 and fft_size(128) == 128


def test_gaussian_psf_unit_sum_and_width():
    k = gaussian_psf([2.0, 3.0])
    assert k.shape[0] == 2 and k.shape[1] % 2 == 1 and k.shape[1] >= 5 * 3.0
    np.testing.assert_allclose(k.sum(axis=(1, 2)), 1.0, rtol=1e-12)
    c = k.shape[1] // 2
    # half maximum one half-FWHM from the centre (2-D Gaussian, along an axis)
    for b, fwhm in enumerate((2.0, 3.0)):
        x = np.arange(k.shape[1]) - c
        prof = k[b, c] / k[b, c, c]
        np.testing.assert_allclose(np.interp(fwhm / 2, x[c:], prof[c:]), 0.5, atol=0.03)


@pytest.mark.parametrize("shape,ksize", [((64, 64), 25), ((64, 64), 19), ((37, 50), 7), ((20, 33), 1)])
def test_convolve_fft_matches_direct_linear_convolution(shape, ksize):
    rng = np.random.default_rng(0)
    img = rng.normal(size=shape)
    ker = rng.random((ksize, ksize))
    ker /= ker.sum()
    out = np.asarray(convolve_fft(img, ker))
    np.testing.assert_allclose(out, convolve2d(img, ker, mode="same"), atol=1e-5)
    # flux conserved for a source far from the edges
    pt = np.zeros(shape)
    pt[shape[0] // 2, shape[1] // 2] = 1.0
    assert float(np.asarray(convolve_fft(pt, ker)).sum()) == pytest.approx(1.0, abs=1e-5)
