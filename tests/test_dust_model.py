import jax
import jax.numpy as jnp
import numpy as np
import pytest

from galdust.dust.model import DustParams, make_model
from galdust.physics.attenuation import attenuation_ratio, band_coefficients
from galdust.physics.psf import gaussian_psf

BANDS = ("sdss_g", "sdss_r", "sdss_i")


def params():
    S = jnp.array([[0.0, 0.5], [1.0, 0.25]])
    D = jnp.array([[1.0, 0.5], [0.8, 0.1]])
    return DustParams(jnp.log(jnp.array([2.0, 3.0, 4.0])), S, D, jnp.float32(-0.2))


def test_forward_matches_hand_computation():
    m = make_model(BANDS)
    p = params()
    K = np.asarray(band_coefficients(BANDS, -0.2))
    F = np.array([2.0, 3.0, 4.0])
    A = -2.5 * np.log10(np.asarray(p.D))
    expected = F[:, None, None] * np.asarray(p.S)[None] * 10 ** (-0.4 * K[:, None, None] * A[None])
    np.testing.assert_allclose(np.asarray(m(p)), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(m(p, dust=False)), F[:, None, None] * np.asarray(p.S)[None], rtol=1e-6)
    av = np.asarray(m.av_map(p))
    np.testing.assert_allclose(av, A * float(attenuation_ratio(0.551, -0.2)), rtol=1e-5)


def test_psf_conserves_flux_and_gradients_finite():
    S = jnp.zeros((16, 16)).at[8, 8].set(1.0)
    p = DustParams(jnp.zeros(3), S, jnp.full((16, 16), 0.7), jnp.float32(0.0))
    m = make_model(BANDS, psf=gaussian_psf(2.0, 3))
    y = m(p)
    K = np.asarray(band_coefficients(BANDS, 0.0))
    np.testing.assert_allclose(np.asarray(y.sum(axis=(1, 2))), 0.7**K, rtol=1e-4)

    def loss(q):
        return jnp.sum((m(q) - 0.5) ** 2)

    g = jax.grad(loss)(p)
    for leaf in jax.tree.leaves(g):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert float(jnp.abs(g.delta)) > 0


def test_transmission_at_reference_band_is_D():
    # a band whose effective wavelength is λ_ref has K = 1, so its transmission equals D
    m = make_model(["mycam_ref"], wave_eff=[0.4754])
    p = DustParams(jnp.zeros(1), jnp.ones((2, 2)), jnp.array([[0.3, 0.9], [1.0, 0.5]]), jnp.float32(0.3))
    np.testing.assert_allclose(np.asarray(m.transmission(p))[0], np.asarray(p.D), rtol=1e-5)


def test_D_clipped_to_physical_range():
    m = make_model(BANDS)
    p = params()._replace(D=jnp.full((2, 2), 1.5))
    np.testing.assert_allclose(np.asarray(m.transmission(p)), 1.0)
    with pytest.raises(Exception):
        make_model(["nope_band"])
