import jax
import jax.numpy as jnp
import numpy as np
import pytest

from galdust.physics.attenuation import (
    LAMBDA_REF,
    BandAttenuation,
    attenuation_ratio,
    av_from_aref,
    band_coefficients,
    drude_bump,
    k_calzetti,
    k_modified,
)


def calz_by_hand(lam):
    """Calzetti et al. (2000) eq. 4, written out independently."""
    x = 1.0 / lam
    if lam < 0.63:
        return 2.659 * (-2.156 + 1.509 * x - 0.198 * x * x + 0.011 * x**3) + 4.05
    return 2.659 * (-1.857 + 1.040 * x) + 4.05


def test_k_at_v_is_rv():
    assert float(k_calzetti(0.55)) == pytest.approx(4.05, abs=0.005)


@pytest.mark.parametrize("lam,expected", [(0.2, 8.8734), (1.0, 1.8776)])
def test_published_branch_values(lam, expected):
    assert float(k_calzetti(lam)) == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("lam", [0.13, 0.25, 0.36, 0.47, 0.62, 0.64, 0.8, 1.2, 2.1])
def test_both_branches_match_hand_formula(lam):
    assert float(k_calzetti(lam)) == pytest.approx(calz_by_hand(lam), rel=1e-5)


def test_continuity_at_063():
    # the published branches meet to 0.025 in k (0.7 %) at 0.63 µm
    lo, hi = float(k_calzetti(0.63 - 1e-6)), float(k_calzetti(0.63))
    assert abs(lo - hi) < 0.03


def test_monotonic_and_positive():
    # monotonic on each side of the 0.63 µm junction (where the published branches step up by 0.025)
    for lam in (np.geomspace(0.09, 0.6299, 1000), np.geomspace(0.63, 30.0, 1000)):
        k = np.asarray(k_calzetti(lam))
        assert np.all(k > 0)
        assert np.all(np.diff(k) < 0)
        # the tilted curve stays monotonic for any δ in the prior range
        for d in (-1.0, -0.4, 0.0, 0.5):
            assert np.all(np.diff(np.asarray(k_modified(lam, d))) < 0)


def test_extrapolations_continuous():
    assert float(k_calzetti(0.12 - 1e-6)) == pytest.approx(float(k_calzetti(0.12)), rel=1e-4)
    assert float(k_calzetti(2.2 + 1e-6)) == pytest.approx(float(k_calzetti(2.2)), rel=1e-4)


def test_tilt_normalised_at_reference():
    for d in (-1.0, -0.3, 0.5):
        assert float(attenuation_ratio(LAMBDA_REF, d)) == pytest.approx(1.0)
        assert float(attenuation_ratio(0.9, d, lam_ref=0.9)) == pytest.approx(1.0)
    # steeper (δ < 0) curves attenuate the UV more per unit A_ref
    assert float(attenuation_ratio(0.3, -0.5)) > float(attenuation_ratio(0.3, 0.0)) > float(attenuation_ratio(0.3, 0.4))


def test_tilt_analytic_form():
    lam = 0.8
    for d in (-0.7, 0.2):
        expected = calz_by_hand(lam) / calz_by_hand(LAMBDA_REF) * (lam / LAMBDA_REF) ** d
        assert float(attenuation_ratio(lam, d)) == pytest.approx(expected, rel=1e-5)


def test_bump_strength_kriek_conroy():
    # at the bump centre the Drude profile equals E_b = 0.85 - 1.9 δ
    for d in (-0.5, 0.0, 0.3):
        assert float(drude_bump(0.2175, d)) == pytest.approx(0.85 - 1.9 * d, rel=1e-5)
    assert float(drude_bump(0.2175, 0.8)) == 0.0  # clipped at zero
    assert float(drude_bump(0.55, -0.5)) < 0.02  # negligible in the optical


def test_av_conversion():
    a = av_from_aref(1.0, 0.0)
    assert float(a) == pytest.approx(calz_by_hand(0.551) / calz_by_hand(LAMBDA_REF), rel=1e-5)


def test_gradient_in_delta_matches_analytic():
    lam = 0.35
    g = jax.grad(lambda d: attenuation_ratio(lam, d))(-0.3)
    expected = float(attenuation_ratio(lam, -0.3)) * np.log(lam / LAMBDA_REF)
    assert float(g) == pytest.approx(expected, rel=1e-4)
    K = BandAttenuation(["sdss_u", "sdss_g", "sdss_r"])
    J = jax.jacobian(K)(jnp.float32(-0.2))
    assert np.all(np.isfinite(np.asarray(J)))


def test_integrated_vs_effective_band_coefficients():
    bands = ["sdss_g", "sdss_r", "sdss_i", "sdss_z", "hsc_z", "hsc_y"]
    for d in (-0.8, 0.0, 0.4):
        ki = np.asarray(band_coefficients(bands, d, mode="integrated"))
        ke = np.asarray(band_coefficients(bands, d, mode="effective"))
        # broad optical bands agree to 2 % (worst: g at δ = -0.8), the narrow HSC z/y bands to 0.4 %
        assert np.all(np.abs(ki / ke - 1) < 0.02)
        assert np.all(np.abs(ki[-2:] / ke[-2:] - 1) < 0.004)


def test_integrated_coefficient_is_small_attenuation_limit():
    # exact filter-integrated transmission for a flat-f_nu source; its -2.5 log10 / A_ref -> K_b as A -> 0
    from galdust.physics.filters import get_filter

    f = get_filter("sdss_g")
    w = f.weights()
    kk = np.asarray(attenuation_ratio(f.wave, -0.3))
    for a in (1e-3, 1e-2):
        T = np.sum(w * 10 ** (-0.4 * a * kk))
        assert -2.5 * np.log10(T) / a == pytest.approx(float(band_coefficients(["sdss_g"], -0.3)[0]), rel=2e-3)


def test_wave_eff_for_unknown_band():
    k = band_coefficients(["sdss_r", "mycam_x"], 0.0, wave_eff=[None, 0.6168], mode="effective")
    assert float(k[1]) == pytest.approx(float(k[0]), rel=1e-3)


def test_rest_frame_coefficients_are_the_curve_at_rest_wavelengths():
    """With the galaxy's redshift, each filter sees the curve at its wavelengths divided by 1 + z, against
    λ₀ in the rest frame: at z = 0.5 sdss_r (0.62 µm) attenuates as 0.41 µm does, more than at z = 0."""
    from galdust.physics.filters import get_filter

    bands = ["sdss_g", "sdss_r", "sdss_i", "sdss_z"]
    att = BandAttenuation(bands, mode="effective")
    waves = np.array([get_filter(b).effective for b in bands])
    for z, d in ((0.0, 0.0), (0.5, -0.3), (1.2, 0.2)):
        np.testing.assert_allclose(np.asarray(att(d, z)), np.asarray(attenuation_ratio(waves / (1 + z), d)), rtol=1e-6)
    assert np.all(np.asarray(att(0.0, 0.5)) > 1.2 * np.asarray(att(0.0, 0.0)))
    integ = BandAttenuation(bands)  # filter-integrated: the same shift of every wavelength of the curve
    np.testing.assert_allclose(np.asarray(integ(-0.3, 0.5)), np.asarray(att(-0.3, 0.5)), rtol=0.03)
    # differentiable in z (a traced redshift, one program for a batch at several redshifts)
    g = jax.grad(lambda zz: jnp.sum(integ(-0.3, zz)))(0.5)
    assert np.isfinite(float(g)) and float(g) > 0
