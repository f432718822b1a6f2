"""DustFitter: grouping, batching, per-input failures and the products on the input grid."""

import dataclasses

import numpy as np
import pytest

from galdust.dust.api import make_fitter
from galdust.dust.job import prepare
from galdust.io import Observation
from galdust.physics.filters import get_filter

BANDS = ("sdss_g", "sdss_r", "sdss_i", "sdss_z")


def _obs(seed, size=24, av=0.4, name=None):
    """A screen-attenuated exponential galaxy with a known uniform A_V (δ = 0 Calzetti curve)."""
    from galdust.physics.attenuation import LAMBDA_V, attenuation_ratio

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    S = np.exp(-np.hypot(x / 3.5, y / 2.5))
    waves = tuple(get_filter(b).effective for b in BANDS)
    k = np.array([attenuation_ratio(w, 0.0) / attenuation_ratio(LAMBDA_V, 0.0) for w in waves])
    F = np.array([1.0, 1.5, 1.8, 2.0]) * 10 ** (-0.4 * k * av)
    cube = F[:, None, None] * S[None] + rng.normal(0, 0.01, (4, size, size))
    return Observation(cube.astype(np.float32), np.full(cube.shape, 1e4, np.float32), BANDS, waves, None, None, "",
                       name or f"g{seed}")


def test_results_do_not_depend_on_batching_and_a_bad_input_fails_alone():
    obs = [_obs(i) for i in range(3)] + [_obs(9, size=20)]
    bad = dataclasses.replace(_obs(5), ivar=np.zeros((4, 24, 24), np.float32))
    fitter = make_fitter(priors=False, max_iter=40, batch_size=2, detect=False)
    res = fitter.fit(obs[:2] + [bad] + obs[2:])
    assert isinstance(res[2], Exception) and "no pixel with information" in str(res[2])
    good = [r for r in res if not isinstance(r, Exception)]
    assert [r.AV.shape for r in good] == [(24, 24)] * 3 + [(20, 20)]  # two shape groups, input grids kept
    alone = dataclasses.replace(fitter, batch_size=1).fit([obs[1]])[0]
    np.testing.assert_allclose(alone.AV, good[1].AV, atol=1e-5)  # padding a batch changes nothing
    assert alone.scalars["PRIORS"] == "none" and good[0].scalars["START"] == "red"  # auto: red for griz too


@pytest.mark.parametrize("host", ["single", "clumps"])
def test_products_on_the_input_grid_are_consistent(host):
    r = make_fitter(priors=False, max_iter=150, batch_size=1, detect=False, host=host).fit([_obs(3)])[0]
    # HOST_CUBE is F_b S (single SED; with clumps + F_b^c C, and HOST the band sum of HOST_CUBE at peak 1);
    # MODEL (no PSF) is HOST_CUBE × the band's transmission; RESID is (Y − MODEL)√ivar
    if host == "single":
        np.testing.assert_allclose(r.HOST_CUBE, r.F[:, None, None] * r.HOST[None], rtol=1e-5)
    else:
        tot = r.HOST_CUBE.sum(axis=0)
        np.testing.assert_allclose(r.HOST, tot / tot.max(), atol=1e-5)
        assert r.scalars["HOSTMOD"] == "clumps" and 0.0 <= r.scalars["CLUMPF"] < 0.05  # a smooth host: few clumps
    o = _obs(3)
    np.testing.assert_allclose(r.RESID, (o.cube - r.MODEL) * 100.0, atol=1e-3)
    assert np.all(r.MODEL <= r.HOST_CUBE * (1 + 1e-5) + 1e-7)  # dust only removes light
    # a uniform screen cannot be told from the host's colour (the fit takes the least dust the colours
    # allow); the scalars are those of the maps
    w = np.clip(r.HOST, 0, None)
    assert r.scalars["AV_LW"] == pytest.approx(float(np.sum(w * r.AV) / np.sum(w)), rel=1e-5)
    assert r.scalars["COVFRAC"] == pytest.approx(float(np.sum(w * (r.AV > 0.02)) / np.sum(w)), abs=1e-6)


def test_prepare_masks_users_pixels_and_neighbours_and_maps_large_inputs():
    o = _obs(1, size=24)
    user = np.zeros((24, 24), bool)
    user[:3] = True
    p = prepare(o, mask=user, detect=False)
    assert p.grid.identity and p.mask[:3].all() and (p.ivar[:, :3] == 0).all() and (p.ivar[:, 3:] > 0).all()
    with pytest.raises(Exception, match="does not match"):
        prepare(o, mask=np.zeros((5, 5)), detect=False)
    big = _obs(2, size=150)
    pb = prepare(big, detect=False)
    assert pb.Y.shape == (4, 64, 64) and pb.grid.k >= 1
    assert pb.Y.sum() == pytest.approx(big.cube[:, pb.grid.y0:pb.grid.y0 + pb.grid.size_y,
                                                pb.grid.x0:pb.grid.x0 + pb.grid.size_x].sum(), rel=1e-4)


def _lane_obs(z, seed=0, size=32, a_max=0.8, delta=-0.2):
    """A disk behind a thin dust lane of a_max mag of A_V in its rest frame at redshift z (the dust curve
    at the filters' wavelengths divided by 1 + z), S/N 500 at the peak; returns it and its true A_V,LW."""
    from galdust.physics.attenuation import LAMBDA_V, BandAttenuation, attenuation_ratio

    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    S = np.exp(-np.hypot(x / 4.0, y / 2.5))
    lane = np.exp(-0.5 * ((y - 2.0 - 0.2 * x) / 1.8) ** 2)
    av = a_max * np.where(lane > 0.1, lane, 0.0) * (np.abs(x) < 9)
    K = np.asarray(BandAttenuation(BANDS)(delta, z)) / float(attenuation_ratio(LAMBDA_V, delta))  # A_b / A_V
    F = np.array([1.0, 1.5, 1.8, 2.0])
    cube = F[:, None, None] * S[None] * 10 ** (-0.4 * K[:, None, None] * av[None])
    sig = cube.max(axis=(1, 2)) / 500.0
    cube = cube + sig[:, None, None] * np.random.default_rng(seed).normal(size=cube.shape)
    ivar = np.broadcast_to(1.0 / sig[:, None, None] ** 2, cube.shape)
    waves = tuple(get_filter(b).effective for b in BANDS)
    obs = Observation(cube.astype(np.float32), ivar.astype(np.float32), BANDS, waves, None, None, "", f"z{z}",
                      redshift=z)
    return obs, float(np.sum(S * av) / np.sum(S))


def test_a_galaxy_with_a_redshift_gets_its_dust_in_its_rest_frame():
    """At z = 0.5 the filters see the dust curve at rest wavelengths 1.5 times shorter: with the
    redshift the fit maps rest-frame A_V (the truth); without it, the attenuation at observed 0.551 µm
    (rest 0.367 µm), 1.6 times larger for this curve (δ = −0.2), and says so (AVFRAME). The likelihood
    alone (no prior on A, which shrinks both) and iterations to convergence: each recovers its truth."""
    from galdust.dust.fit import FitConfig
    from galdust.dust.job import DustFitter
    from galdust.physics.attenuation import LAMBDA_V, attenuation_ratio

    fitter = DustFitter(cfg=FitConfig(use_priors=False, a_scale=0.0, max_iter=1500, host="single"), start="blue",
                        detect=False, batch_size=2)
    obs = [_lane_obs(0.5, seed=s)[0] for s in range(2)]
    truth = _lane_obs(0.5)[1]
    rest = fitter.fit(obs)
    observed = fitter.fit([dataclasses.replace(o, redshift=None) for o in obs])
    for r, o in zip(rest, observed):
        assert r.scalars["AVFRAME"] == "rest" and r.scalars["REDSHIFT"] == 0.5
        assert o.scalars["AVFRAME"] == "observed" and "REDSHIFT" not in o.scalars
        assert r.scalars["AV_LW"] == pytest.approx(truth, rel=0.08)  # measured +3 to +5 %
        expected = truth * float(attenuation_ratio(LAMBDA_V / 1.5, -0.2) / attenuation_ratio(LAMBDA_V, -0.2))
        assert expected > 1.55 * truth
        assert o.scalars["AV_LW"] == pytest.approx(expected, rel=0.08)  # measured -2 to -3 %
