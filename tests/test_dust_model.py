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


def test_sersic_image_peak_shape_and_axis_ratio():
    from galdust.dust.model import sersic_image

    img = np.asarray(sersic_image((41, 41), 0.0, 0.0, np.log(4.0), 1.0, 0.0, 0.0))
    assert img.max() == pytest.approx(1.0) and img[20, 20] == img.max()
    np.testing.assert_allclose(img, img.T, atol=1e-6)  # round: symmetric under x <-> y
    # e1 = 0.5: the x axis is the major one, with axis ratio q = sqrt((1 - 0.5) / (1 + 0.5))
    e = np.asarray(sersic_image((81, 81), 0.0, 0.0, np.log(6.0), 1.0, 0.5, 0.0, soften=1e-3))
    q = np.sqrt(0.5 / 1.5)
    along_x = e[40, 40 + 20]
    along_y = np.interp(20 * q, np.arange(41), e[40:, 40])
    assert along_y == pytest.approx(along_x, rel=0.02)
    # the half-light isophote of a round n=1 profile sits at R_e: half the light inside r < R_e
    big = np.asarray(sersic_image((201, 201), 0.0, 0.0, np.log(10.0), 1.0, 0.0, 0.0, soften=1e-3))
    yy, xx = np.mgrid[:201, :201] - 100
    assert big[np.hypot(xx, yy) < 10.0].sum() / big.sum() == pytest.approx(0.5, abs=0.02)


def test_bulge_disk_host_adds_the_bulge_and_single_host_morphology_is_S():
    from galdust.dust.model import host_morphology, sersic_image

    m = make_model(BANDS)
    S = jnp.asarray(np.random.default_rng(0).uniform(0.1, 1.0, (16, 16)).astype(np.float32)).at[8, 8].set(1.0)
    p = DustParams(jnp.log(jnp.array([1.0, 2.0, 3.0])), S, jnp.ones((16, 16)), jnp.float32(0.0))
    np.testing.assert_allclose(np.asarray(host_morphology(p)), np.asarray(S))
    B = sersic_image((16, 16), 0.0, 0.0, np.log(2.0), 2.0, 0.0, 0.0)
    pb = p._replace(log_Fb=jnp.log(jnp.array([0.5, 1.0, 2.0])), B=B)
    np.testing.assert_allclose(np.asarray(m.host(pb) - m.host(p)),
                               np.array([0.5, 1.0, 2.0])[:, None, None] * np.asarray(B)[None], rtol=1e-5, atol=1e-6)
    hm = np.asarray(host_morphology(pb))
    assert hm.max() == pytest.approx(1.0)


def test_a_nucleus_is_a_point_source_of_its_own_sed_added_to_the_host():
    from galdust.dust.model import NUCLEUS_SIGMA, host_morphology, point_image

    N = point_image((15, 15), 0.0, 0.0)
    assert float(N[7, 7]) == pytest.approx(1.0) and float(N.sum()) == pytest.approx(2 * np.pi * NUCLEUS_SIGMA**2, rel=0.05)
    Nx = np.asarray(point_image((15, 15), 1.0, -2.0))  # x0, y0 in px from the centre
    assert np.unravel_index(np.argmax(Nx), Nx.shape) == (5, 8)
    m = make_model(BANDS)
    S = jnp.zeros((15, 15)).at[3, 3].set(1.0)
    p = DustParams(jnp.log(jnp.array([1.0, 2.0, 3.0])), S, jnp.ones((15, 15)), jnp.float32(0.0))
    pn = p._replace(log_Fn=jnp.log(jnp.array([3.0, 2.0, 1.0])), N=N)
    np.testing.assert_allclose(np.asarray(m.host(pn) - m.host(p)),
                               np.array([3.0, 2.0, 1.0])[:, None, None] * np.asarray(N)[None], rtol=1e-5, atol=1e-6)
    hm = np.asarray(host_morphology(pn))  # the summed host: the nucleus (6 over the bands) ties with S (6)
    assert hm[7, 7] == pytest.approx(1.0) and hm[3, 3] == pytest.approx(1.0, abs=1e-6) and hm.max() == pytest.approx(1.0)
