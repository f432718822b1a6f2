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
