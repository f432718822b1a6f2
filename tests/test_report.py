import numpy as np
import pytest

from galdust.report import plot_simulations, rgb


def test_rgb_puts_the_reddest_band_in_red_and_is_scale_free():
    cube = np.zeros((4, 8, 8))
    cube[3, 2, 2] = 5.0  # light only in the reddest band
    cube[0, 5, 5] = 5.0  # and only in the bluest
    img = rgb(cube)
    assert img.shape == (8, 8, 3) and img.max() == pytest.approx(1.0)
    assert img[2, 2, 0] > 0 and img[2, 2, 1] == 0 and img[2, 2, 2] == 0
    assert img[5, 5, 2] > 0 and img[5, 5, 0] == 0
    np.testing.assert_allclose(rgb(1000.0 * cube), img, atol=1e-12)  # the default stretch scales with the data


def test_plot_simulations_draws_one_row_per_galaxy(tmp_path):
    import jax

    from galdust.simulate import SimConfig, simulate

    sim = simulate(jax.random.PRNGKey(0), 2, SimConfig(size=24), batch=2)
    p = plot_simulations(sim, tmp_path / "sims.png", n=2, title="t")
    from matplotlib.image import imread

    h, w = imread(p).shape[:2]
    assert p.exists() and h > w * 0.5  # two rows of three panels
