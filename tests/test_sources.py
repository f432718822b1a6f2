"""Neighbour detection and deblending on synthetic scenes with known sources."""

import numpy as np

from conftest import gauss_blob
from galdust.sources import detect_neighbours, segment, snr_image


def _blob(n, y, x, r, amp):
    return gauss_blob(n, y, x, r, amp)


def _scene(sources, n=48, sigma=1.0, seed=0):
    rng = np.random.default_rng(seed)
    img = sum(_blob(n, *s) for s in sources) if sources else np.zeros((n, n))
    cube = np.stack([img, img]) + sigma * rng.normal(size=(2, n, n))
    ivar = np.full_like(cube, 1.0 / sigma**2)
    return cube, ivar


def test_snr_image_has_unit_noise():
    cube, ivar = _scene([], n=128)
    s = snr_image(cube, ivar, smooth=1.0)
    assert 0.85 < s[10:-10, 10:-10].std() < 1.15


def test_pure_noise_masks_nothing():
    for seed in range(5):
        cube, ivar = _scene([], seed=seed)
        assert not detect_neighbours(cube, ivar).any()


def test_blended_neighbour_is_masked_and_target_kept():
    # target at the centre, a bright neighbour whose light touches it (blended above the threshold)
    cube, ivar = _scene([(23.5, 23.5, 4.0, 30.0), (23.5, 37.0, 2.0, 60.0)])
    target, others, _ = segment(cube, ivar)
    assert target[23, 23] and target[23, 28] and not target[23, 37]
    m = detect_neighbours(cube, ivar)
    assert m[23, 37] and m[23, 40] and not m[23, 23] and not m[23, 27]


def test_clump_of_the_target_is_not_masked():
    # a bump on the target's own profile, not separated by a saddle, stays part of the target
    cube, ivar = _scene([(23.5, 23.5, 5.0, 40.0), (23.5, 29.0, 1.5, 15.0)])
    assert not detect_neighbours(cube, ivar)[23, 29]


def test_dust_lane_across_the_target_is_not_a_gap():
    # an inclined disk cut by a dust lane: 3 mag at λ₀ in the blue bands, a fifth of it in the red
    n = 48
    yy, xx = np.mgrid[:n, :n] - 23.5
    disk = 60.0 * np.exp(-np.hypot(xx / 10.0, yy / 2.5))
    lane = np.exp(-0.5 * (xx / 1.5) ** 2)
    rng = np.random.default_rng(1)
    blue = disk * 10 ** (-0.4 * 3.0 * lane)
    red = disk * 10 ** (-0.4 * 0.6 * lane)
    cube = np.stack([blue, blue, red]) + rng.normal(size=(3, n, n))
    ivar = np.ones_like(cube)
    assert detect_neighbours(cube, ivar).sum() > 100  # without the red check half the galaxy goes
    assert not detect_neighbours(cube, ivar, red=2).any()
    # a real neighbour, with sky between in every band, is still masked with the red check
    nb = _blob(n, 8.0, 36.0, 1.5, 80.0)
    m = detect_neighbours(cube + nb[None], ivar, red=2)
    assert m[8, 36] and not m[23, 30] and not m[23, 17]


def test_isolated_neighbour_is_masked_with_growth():
    cube, ivar = _scene([(23.5, 23.5, 3.0, 30.0), (8.0, 8.0, 1.5, 30.0)])
    m = detect_neighbours(cube, ivar, grow=2)
    assert m[8, 8] and m[8, 12] and not m[23, 23]
