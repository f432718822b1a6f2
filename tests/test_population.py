"""Calibrating the simulator's population to a catalogue (galdust.simulate.population), checked on a
known answer: a 'real' catalogue drawn from the broad prior with a known selection on the parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from galdust.physics import sps as S
from galdust.simulate.population import (THETA_NAMES, Population, c2st_auc, calibrate, observed_features,
                                         theta_features)
from galdust.simulate.sed import SEDConfig, _draw, add_noise, draw_population


@pytest.fixture(scope="module")
def setup():
    cfg = SEDConfig()
    grid = S.load_sps()
    fs = S.filter_set(cfg.bands)
    p, t = _draw(jax.random.PRNGKey(1), 12000, cfg, grid, fs, 4096)
    kn = jax.random.PRNGKey(2)

    def noise(flux):
        a, b = add_noise(kn, jnp.asarray(flux), cfg.bands, cfg)
        return np.asarray(a), np.asarray(b)

    # the 'real' population: old, massive galaxies favoured (weight ∝ exp(2 (log M* − 10)) · 1[ssfr < −10.5] + 0.2)
    pr, tr = _draw(jax.random.PRNGKey(3), 12000, cfg, grid, fs, 4096)
    ssfr = tr["log_sfr"] - tr["log_mstar"]
    w_true = np.exp(2 * (pr["logm"] - 10)) * (ssfr < -10.5) + 0.2
    keep = np.random.default_rng(0).random(len(w_true)) < w_true / w_true.max()
    nr, er = noise(tr["flux"])
    Xr = observed_features(nr, er, pr["z"])
    sel_r = keep & np.isfinite(Xr).all(1) & (Xr[:, 0] < 17.77)
    return cfg, grid, fs, p, t, noise, Xr[sel_r], tr["log_mstar"][sel_r], ssfr[sel_r]


def test_calibration_recovers_a_known_population(setup, tmp_path):
    cfg, grid, fs, p, t, noise, Xr, logm_real, ssfr_real = setup
    th = theta_features(p, t)
    assert th.shape == (12000, len(THETA_NAMES))
    pop, hist = calibrate(th, t["flux"], noise, p["z"], Xr, rounds=1, iterations=3, seed=0, zeropoints=False,
                          log=lambda s: None)
    X = observed_features(*noise(t["flux"]), p["z"])
    sel = np.isfinite(X).all(1) & (X[:, 0] < 17.77)
    auc_broad = c2st_auc(X[sel], None, Xr)
    assert auc_broad > 0.75  # the broad prior is told apart easily
    # fresh galaxies from the calibrated prior (rejection), through noise and selection
    pop.save(tmp_path / "pop")
    pop2 = Population.load(tmp_path / "pop")
    assert np.allclose(pop2.log_weight(th[:100]), pop.log_weight(th[:100]), atol=1e-5)
    pc, tc = draw_population(jax.random.PRNGKey(9), 4000, cfg, grid, fs, pop2)
    a, b = add_noise(jax.random.PRNGKey(11), jnp.asarray(tc["flux"]), cfg.bands, cfg)
    Xc = observed_features(np.asarray(a), np.asarray(b), pc["z"])
    selc = np.isfinite(Xc).all(1) & (Xc[:, 0] < 17.77)
    auc_cal = c2st_auc(Xc[selc], None, Xr)
    assert auc_cal < auc_broad - 0.15, (auc_broad, auc_cal)
    # and the parameters behind them move to the truth: mass and quiescent fraction of the selected
    ssfr_c = tc["log_sfr"][selc] - tc["log_mstar"][selc]
    ssfr_b = t["log_sfr"][sel] - t["log_mstar"][sel]
    q_real, q_cal, q_broad = (np.mean(s < -10.5) for s in (ssfr_real, ssfr_c, ssfr_b))
    assert abs(q_cal - q_real) < 0.5 * abs(q_broad - q_real), (q_real, q_cal, q_broad)
    m_real, m_cal, m_broad = np.median(logm_real), np.median(tc["log_mstar"][selc]), np.median(t["log_mstar"][sel])
    assert abs(m_cal - m_real) < 0.5 * abs(m_broad - m_real), (m_real, m_cal, m_broad)


def test_acceptance_draws_are_independent_of_the_parameters(setup):
    """The acceptance uniforms must not reuse a key of the parameter draws (they once did: mass and
    acceptance were the same random numbers)."""
    cfg, grid, fs, *_ = setup

    class Flat:  # ν = 1 everywhere: every draw accepted with probability 1/2
        zeropoints, log_w_max, meta = {}, np.log(2.0), {}

        def log_weight(self, theta):
            return np.zeros(len(theta))

        config = Population.config

    pc, tc = draw_population(jax.random.PRNGKey(5), 4000, cfg, grid, fs, Flat(), batch=4096)
    # uniform log M* on [8.5, 12] must stay uniform after an acceptance that ignores it
    assert abs(np.median(pc["logm"]) - 10.25) < 0.1
    assert abs(np.mean(pc["logm"] > 11.5) - 0.5 / 3.5) < 0.03


def test_shipped_sdss_population_loads_and_matches_its_sidecar():
    from galdust.models import shipped_path

    pop = Population.load(shipped_path("population-sdss"))
    assert set(pop.zeropoints) == {"sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z"}
    assert all(abs(v) < 0.1 for v in pop.zeropoints.values())  # a few hundredths of a magnitude
    assert pop.meta["c2st_heldout"] < pop.meta["c2st_heldout_broad"]


def test_population_of_other_parameters_is_one_clear_error(tmp_path):
    """A population calibrated on another version of the simulator's parameters is refused on load."""
    import json
    import shutil

    from galdust.io import InputError
    from galdust.models import shipped_path

    d = tmp_path / "old"
    shutil.copytree(shipped_path("population-sdss"), d)
    meta = json.loads((d / "population.json").read_text())
    meta["theta"] = meta["theta"][:-1]
    (d / "population.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="calibrate it again"):
        Population.load(d)


def test_the_population_draws_its_own_near_uv_prior_and_redshift_range(setup):
    """A population calibrated with the near-UV correction draws it (uniform in [0, nuv_max]) whatever
    the caller's config says; theta carries it. Its broad prior's redshift distribution (z0, z_max)
    is its own too."""
    cfg, grid, fs, *_ = setup

    class Flat:
        zeropoints, log_w_max, meta = {}, 0.0, {"nuv_max": 0.6, "z0": 0.09, "z_max": 0.4}

        def log_weight(self, theta):
            assert theta.shape[1] == len(THETA_NAMES)
            return np.zeros(len(theta))

        config = Population.config

    pc, _ = draw_population(jax.random.PRNGKey(5), 2000, cfg, grid, fs, Flat(), batch=4096)
    assert 0.0 <= pc["nuv"].min() and pc["nuv"].max() <= 0.6 and abs(np.median(pc["nuv"]) - 0.3) < 0.03
    assert cfg.z_range[1] == 0.3 and 0.3 < pc["z"].max() <= 0.4  # beyond the simulator's default range
    assert THETA_NAMES[-1] == "nuv"


# ----------------------------------------------------------------------------- the image simulator's population

class _BulgeOnly:
    """An image-simulator population that keeps only bulge-dominated galaxies (B/T > 0.5), with a
    g-band zero-point of 0.2 mag."""
    zeropoints, log_w_max = {"sdss_g": 0.2}, 0.0
    meta = {"simulator": "images", "nuv_max": 0.6, "z0": 0.09, "z_max": 0.4}
    simulator = "images"
    config = Population.config

    def log_weight(self, theta):
        from galdust.simulate.population import IMAGE_THETA_NAMES

        assert theta.shape[1] == len(IMAGE_THETA_NAMES)
        return np.where(theta[:, IMAGE_THETA_NAMES.index("bt")] > 0.5, 0.0, -50.0)


def test_image_population_renders_only_accepted_galaxies_with_its_zero_points():
    """simulate_images(population=...) keeps the galaxies the weights accept (drawn from the
    population's own broad prior: its redshift range), and its zero-points move the photometry and
    the images alike (an image's flux stays its photometry's)."""
    from galdust.simulate.sed_images import ImageConfig, simulate_images

    o = simulate_images(jax.random.PRNGKey(3), 96, ImageConfig(), batch=64, population=_BulgeOnly())
    assert o["images"].shape == (96, 3, 64, 64) and len(o["flux"]) == 96
    assert o["bt"].min() > 0.5 and np.median(o["bt"]) > 0.7  # uniform B/T, only the upper half kept
    assert 0.3 < o["z"].max() <= 0.4  # the population's broad prior reaches z 0.4
    bright = o["flux_true"][:, 2] > 200  # r brighter than 16.7: the sky noise in the image sum is < 2 %
    assert bright.sum() > 10
    ratio = o["images"][bright].sum(axis=(2, 3)) / o["flux_true"][bright][:, 1:4]  # image gri / photometry gri
    med = np.median(ratio, axis=0)
    assert 0.9 < med[1] <= 1.02 and abs(med[0] / med[1] - 1) < 0.02, med  # g as r: 0.2 mag applied to both
    # a survey's selection before the rendering: the same galaxies, those brighter than the limit only
    from galdust.posterior.model import luptitudes

    sel = simulate_images(jax.random.PRNGKey(3), 96, ImageConfig(), batch=64, population=_BulgeOnly(), r_limit=17.0)
    assert np.array_equal(sel["index"], np.nonzero(luptitudes(o["flux"][:, 2], 1.07) < 17.0)[0])
    assert 10 < len(sel["index"]) < 96 and sel["images"].shape == (len(sel["index"]), 3, 64, 64)
    assert np.allclose(sel["flux"], o["flux"][sel["index"]]) and np.allclose(sel["bt"], o["bt"][sel["index"]])
    with pytest.raises(ValueError, match="photometric simulator"):
        simulate_images(jax.random.PRNGKey(3), 8, ImageConfig(), population=type("P", (), {"simulator": "sed"})())


def test_an_image_population_is_saved_and_loaded_with_its_parameters(tmp_path):
    """calibrate(simulator='images') on bulge + disk draws: the sidecar says which simulator and
    parameters; a population of the other simulator is a one-line error in simulate-sed."""
    from galdust.cli import main
    from galdust.physics import sps as S
    from galdust.simulate.population import IMAGE_THETA_NAMES, image_theta_features
    from galdust.simulate.sed_images import ImageConfig, draw_components

    cfg = ImageConfig().sed
    grid = S.load_sps()
    p, t = draw_components(jax.random.PRNGKey(4), 3000, cfg, grid, S.filter_set(ImageConfig().image_bands),
                           S.filter_set(cfg.bands), 1024)
    th = image_theta_features(p, t)
    assert th.shape == (3000, len(IMAGE_THETA_NAMES)) and np.isfinite(th).all()
    kn = jax.random.PRNGKey(2)

    def noise(flux):
        a, b = add_noise(kn, jnp.asarray(flux), cfg.bands, cfg)
        return np.asarray(a), np.asarray(b)

    real = observed_features(*noise(t["flux"][p["bt"] > 0.5]), p["z"][p["bt"] > 0.5])
    real = real[np.isfinite(real).all(1) & (real[:, 0] < 17.77)]
    pop, _ = calibrate(th, t["flux"], noise, p["z"], real, rounds=1, iterations=1, zeropoints=False,
                       log=lambda s: None, simulator="images")
    pop.save(tmp_path / "img")
    back = Population.load(tmp_path / "img")
    assert back.simulator == "images" and back.meta["theta"] == list(IMAGE_THETA_NAMES)
    assert np.allclose(back.log_weight(th[:50]), pop.log_weight(th[:50]), atol=1e-5)
    assert main(["simulate-sed", "--n", "5", "--prior", str(tmp_path / "img"), "--out", str(tmp_path / "a.parquet")]) == 2
    from galdust.models import shipped_path

    assert main(["simulate-sed", "--n", "5", "--images", "--prior", str(shipped_path("population-sdss")),
                 "--out", str(tmp_path / "b.parquet")]) == 2
    assert not (tmp_path / "a.parquet").exists() and not (tmp_path / "b.parquet").exists()


def test_simulate_sed_images_draws_the_shipped_image_population_by_default(tmp_path):
    """The shipped image population tells real galaxies apart less well than the broad prior does,
    and `simulate-sed --images` draws it unless told --prior broad; --r-limit keeps (and renders)
    only the brighter galaxies, each image row beside its table row."""
    import pyarrow.parquet as pq

    from galdust.cli import main
    from galdust.models import shipped_path
    from galdust.posterior.data import read_simulations, sims_provenance
    from galdust.posterior.model import luptitudes

    pop = Population.load(shipped_path("population-sdss-images"))
    assert pop.simulator == "images" and pop.meta["c2st_heldout"] < pop.meta["c2st_heldout_broad"] - 0.1
    out = tmp_path / "img.parquet"
    assert main(["simulate-sed", "--images", "--n", "24", "--r-limit", "17.77", "--seed", "3", "--batch", "16",
                 "--out", str(out)]) == 0
    prov = sims_provenance([out])[0]
    assert prov["prior"] == "sdss_images" and prov["images"] is True and prov["n"] == 24
    cat, imgs = read_simulations([out], images=True)
    assert 0 < len(cat.flux) == len(imgs) == prov["kept"] <= 24
    assert (luptitudes(cat.flux[:, 2], 1.07) < 17.77).all()
    t = pq.read_table(out)
    names = t.column("name").to_pylist()
    assert names == sorted(set(names))  # each kept galaxy's number among the 24 drawn
    ratio = np.asarray(imgs, np.float32)[:, 1].sum(axis=(1, 2)) / t.column("flux_true_sdss_r").to_numpy()
    assert 0.9 < np.median(ratio) < 1.05  # row i's image is row i's galaxy
