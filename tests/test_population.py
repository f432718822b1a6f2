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
