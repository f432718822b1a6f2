"""Posterior model plumbing: catalogue readers (SDSS format, our tables), weights round trip, the
density in physical units, and the output schema of galdust posterior sample."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import sdss_table
from astropy.io import fits
from astropy.table import Table

from galdust.cli import main
from galdust.posterior.data import StackedImages, read_catalog, read_simulations
from galdust.posterior.model import build, luptitudes, save_model
from galdust.posterior.kinds import load_model

BANDS = ("sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z")
SOFT = (1.16, 0.65, 1.07, 1.63, 5.07)


def test_sdss_reader_corrects_extinction_and_flags_missing_fluxes(tmp_path):
    f = sdss_table(tmp_path / "sdss.fits", n=6, nan_flux=(2, 3), extinction=0.1, z=(0.02, 0.2))
    cat = read_catalog(tmp_path / "sdss.fits")
    assert cat.flux[0, 0] == pytest.approx(f[0, 0] * 10 ** 0.04)
    assert cat.flux_err[0, 0] == pytest.approx(0.5 * 10 ** 0.04)
    assert cat.truth["z"][-1] == pytest.approx(0.2)
    assert cat.notes[2] == "missing flux in sdss_i" and cat.notes[0] == ""
    Table(dict(a=[1.0])).write(tmp_path / "bad.fits")
    with pytest.raises(ValueError, match="bad.fits"):
        read_catalog(tmp_path / "bad.fits")


def _sim_table(path, n, offset, with_images=True):
    t = {f"flux_{b}": np.arange(n, dtype=float) + offset + 10 * j for j, b in enumerate(BANDS)}
    t["log_mstar"] = np.arange(n, dtype=float) + offset
    Table(t).write(path)
    if with_images:
        np.save(path.with_suffix(".images.npy"), (np.arange(n)[:, None, None, None] + offset
                                                    + np.zeros((n, 3, 4, 4))).astype(np.float16))


def test_several_simulated_tables_read_as_one_with_their_images(tmp_path):
    _sim_table(tmp_path / "a.parquet", 5, 0)
    _sim_table(tmp_path / "b.parquet", 3, 100)
    cat, imgs = read_simulations([tmp_path / "a.parquet", tmp_path / "b.parquet"], images=True)
    assert isinstance(imgs, StackedImages) and len(imgs) == 8 and imgs.shape == (8, 3, 4, 4)
    assert np.array_equal(cat.truth["log_mstar"], [0, 1, 2, 3, 4, 100, 101, 102])
    assert cat.flux[6, 1] == 111.0
    # rows follow the table rows, by index array (unsorted, negative), slice and int
    assert np.array_equal(imgs[np.array([6, 0, -1, 4])][:, 0, 0, 0], [101, 0, 102, 4])
    assert np.array_equal(imgs[3:7][:, 2, 1, 1], [3, 4, 100, 101])
    assert imgs[5].shape == (3, 4, 4) and imgs[5][0, 0, 0] == 100
    with pytest.raises(IndexError):
        imgs[np.array([8])]
    one, single = read_simulations([tmp_path / "a.parquet"], images=True)
    assert isinstance(single, np.memmap) and len(one.names) == 5
    _sim_table(tmp_path / "c.parquet", 2, 0, with_images=False)
    with pytest.raises(ValueError, match="c.images.npy: no images"):
        read_simulations([tmp_path / "a.parquet", tmp_path / "c.parquet"], images=True)


def test_luptitudes_match_magnitudes_for_bright_sources_and_stay_finite():
    assert luptitudes([[1000.0]], [1.0])[0, 0] == pytest.approx(22.5 - 2.5 * np.log10(1000.0), abs=1e-3)
    assert np.all(np.isfinite(luptitudes([[-3.0, 0.0]], [1.0, 1.0])))


def _model(key=0, width=16):
    rng = np.random.default_rng(key)
    theta = rng.normal([10.0, 0.0, 0.1], [1.0, 0.5, 0.05], (500, 3))
    flux = rng.uniform(5, 300, (500, 5))
    return build(("log_mstar", "log_sfr", "z"), BANDS, SOFT, theta, flux, width=width, key=jr.PRNGKey(key))


def test_weights_round_trip_and_the_density_in_physical_units(tmp_path):
    m = _model()
    save_model(tmp_path / "m.eqx", m, dict(note="test"))
    m2, meta = load_model(tmp_path / "m.eqx")
    c = m.features(np.full((1, 5), 50.0))[0]
    assert np.allclose(m2.velocity(0.3, jnp.ones(3), c), m.velocity(0.3, jnp.ones(3), c))
    assert meta["config"]["props"] == ["log_mstar", "log_sfr", "z"]
    # a zero velocity field leaves the base Gaussian: p(θ) = N(θ; mean, std²) in physical units
    last = m.velocity.net.layers[-1]
    zero = eqx.tree_at(lambda v: (v.net.layers[-1].weight, v.net.layers[-1].bias), m.velocity,
                       (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))
    mz = eqx.tree_at(lambda q: q.velocity, m, zero)
    th = jnp.array([10.5, -0.2, 0.12])
    zs = (th - mz.theta_mean) / mz.theta_std
    expect = -0.5 * jnp.sum(zs**2) - 1.5 * jnp.log(2 * jnp.pi) - jnp.sum(jnp.log(mz.theta_std))
    assert float(mz.log_prob(th, c, n_steps=10)) == pytest.approx(float(expect), abs=1e-4)


def _zero_velocity(m):
    """The same model with a zero velocity field: its posterior is the base Gaussian N(mean, std²)
    of the training set's standardisation, for every object (known exactly)."""
    last = m.velocity.net.layers[-1]
    return eqx.tree_at(lambda q: (q.velocity.net.layers[-1].weight, q.velocity.net.layers[-1].bias), m,
                       (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))


def test_posterior_sample_cli_schema(tmp_path, capsys):
    m = _zero_velocity(_model())
    save_model(tmp_path / "m.eqx", m, dict(note="test"))
    sdss_table(tmp_path / "sdss.fits", n=6, nan_flux=(2, 3), extinction=0.1, z=(0.02, 0.2))
    out = tmp_path / "post.fits"
    args = ["posterior", "sample", "--catalog", str(tmp_path / "sdss.fits"), "--model", str(tmp_path / "m.eqx"),
            "--out", str(out), "--samples", "2000", "--steps", "4", "--save-samples"]
    assert main(args) == 0
    with fits.open(out) as h:
        t = Table(h["POSTERIOR"].data)
        assert h["SAMPLES"].data.shape == (6, 2000, 3)
    for p in ("log_mstar", "log_sfr", "z"):
        assert {f"{p}_p16", f"{p}_p50", f"{p}_p84"} <= set(t.colnames)
    ok = np.arange(6) != 2
    # the columns are the known posterior's percentiles, mean + std·(−0.994, 0, +0.994), to the
    # sampling error of 2,000 draws (measured: within 0.082 std)
    mean, std = np.asarray(m.theta_mean), np.asarray(m.theta_std)
    for j, p in enumerate(("log_mstar", "log_sfr", "z")):
        for q, k in (("p16", -0.9945), ("p50", 0.0), ("p84", 0.9945)):
            np.testing.assert_allclose(t[f"{p}_{q}"][ok], mean[j] + k * std[j], atol=0.15 * std[j], err_msg=f"{p}_{q}")
    assert np.isnan(t["z_p50"][2]) and "sdss_i" in t["note"][2]
    assert main(args) == 2  # exists


def test_a_model_given_z_samples_the_properties_at_that_z(tmp_path):
    """--given z / --redshift-column: z is an input, not a property; a zero velocity field gives the
    base Gaussian whatever z, and a table without usable z in the column gets a note, not a guess."""
    rng = np.random.default_rng(1)
    theta = rng.normal([10.0, 0.0], [1.0, 0.5], (400, 2))
    flux = rng.uniform(5, 300, (400, 5))
    zs = rng.uniform(0.02, 0.2, (400, 1))
    m = build(("log_mstar", "log_sfr"), BANDS, SOFT, theta, flux, width=16, key=jr.PRNGKey(0), given=("z",),
              given_values=zs)
    assert m.given == ("z",) and m.cond_mean.shape == (6,)
    with pytest.raises(ValueError, match="conditioned on z"):
        m.features(flux[:2])
    # the z input is standardised with the training set's mean and std, like the fluxes
    c = np.asarray(m.features(flux[:3], zs[:3]))
    assert np.allclose(c[:, 5], (zs[:3, 0] - zs.mean()) / zs.std(), atol=1e-4)
    m = _zero_velocity(m)
    save_model(tmp_path / "mz.eqx", m, dict(kind="cfm-photometry"))
    m2, meta = load_model(tmp_path / "mz.eqx")
    assert m2.given == ("z",) and meta["config"]["given"] == ["z"]
    sdss_table(tmp_path / "sdss.fits", n=5, extinction=0.1, z=(0.02, 0.2))
    t = Table.read(tmp_path / "sdss.fits")
    t["Z"][3] = np.nan
    t.write(tmp_path / "sdss.fits", overwrite=True)
    out = tmp_path / "post.fits"
    args = ["posterior", "sample", "--catalog", str(tmp_path / "sdss.fits"), "--model", str(tmp_path / "mz.eqx"),
            "--out", str(out), "--samples", "2000", "--steps", "4", "--redshift-column", "Z"]
    assert main(args) == 0
    with fits.open(out) as h:
        r = Table(h["POSTERIOR"].data)
        assert h[0].header["ZGIVEN"] == "Z"
    ok = np.arange(5) != 3
    np.testing.assert_allclose(r["z_p50"][ok], np.asarray(t["Z"], float)[ok])  # z repeats the column
    mean, std = np.asarray(m.theta_mean), np.asarray(m.theta_std)
    np.testing.assert_allclose(r["log_mstar_p50"][ok], mean[0], atol=0.15 * std[0])
    assert np.isnan(r["log_mstar_p50"][3]) and "no usable redshift in Z" in r["note"][3]
    # a model without z as input refuses the column; one with it needs the column
    save_model(tmp_path / "m.eqx", _zero_velocity(_model()), dict(note="test"))
    assert main(args[:4] + ["--model", str(tmp_path / "m.eqx"), "--out", str(tmp_path / "x.fits"),
                            "--redshift-column", "Z"]) == 2
    assert main(args[:4] + ["--model", str(tmp_path / "mz.eqx"), "--out", str(tmp_path / "y.fits")]) == 2
    assert main(args[:4] + ["--out", str(tmp_path / "w.fits"), "--redshift-column", "NOPE"]) == 2


def test_rows_outside_the_training_domain_are_flagged(tmp_path):
    from galdust.posterior.domain import fit_domain, outside

    rng = np.random.default_rng(2)
    flux = rng.uniform(50, 300, (2000, 5))  # luptitudes ~16.3-18.3, colours within ±2 mag
    dom = fit_domain(flux, SOFT, BANDS)
    assert dom["features"][:5] == ["u", "g", "r", "i", "z"] and dom["features"][5] == "u-g"
    faint = flux[:3] / 100.0  # 5 mag fainter
    why = outside(dom, np.r_[flux[:2], faint], SOFT, BANDS)
    assert why[:2] == ["", ""] and all(w.startswith("outside the training domain: u ") for w in why[2:])
    m = _zero_velocity(_model())
    save_model(tmp_path / "m.eqx", m, dict(note="test", domain=dom))
    sdss_table(tmp_path / "sdss.fits", n=4, extinction=0.0, z=(0.02, 0.2))
    t = Table.read(tmp_path / "sdss.fits")
    t["MODELFLUX"][1] = t["MODELFLUX"][1] / 1e3
    t["MODELFLUX"][2] = np.asarray(flux[0])
    t.write(tmp_path / "sdss.fits", overwrite=True)
    assert main(["posterior", "sample", "--catalog", str(tmp_path / "sdss.fits"), "--model", str(tmp_path / "m.eqx"),
                 "--out", str(tmp_path / "p.fits"), "--samples", "100", "--steps", "2"]) == 0
    r = Table.read(tmp_path / "p.fits", hdu="POSTERIOR")
    notes = [str(x) if x is not np.ma.masked else "" for x in r["note"]]
    assert r["flag"][1] == 1 and "outside the training domain" in notes[1]
    assert r["flag"][2] == 0 and notes[2] == ""
    assert np.isfinite(r["log_mstar_p50"][1])  # answered, flagged


def test_a_known_redshift_beyond_the_models_training_redshifts_is_flagged():
    """A model given z keeps its largest training redshift; a known z beyond it is flagged, one inside
    is not. A model trained before it kept one falls back on the simulator's default range (0.3)."""
    from galdust.posterior.api import domain_notes
    from galdust.posterior.domain import fit_domain

    rng = np.random.default_rng(3)
    flux, z = rng.uniform(50, 300, (500, 5)), rng.uniform(0.01, 0.4, 500)
    dom = fit_domain(flux, SOFT, BANDS, z=z)
    assert dom["z_max"] == pytest.approx(z.max())
    notes = domain_notes(dom, flux[:3], SOFT, BANDS, zgiven=[0.05, 0.35, 0.5], column="Z")
    assert notes[:2] == ["", ""] and notes[2].startswith("Z = 0.5 is beyond the training redshifts (z <= 0.39")
    old = fit_domain(flux, SOFT, BANDS)
    assert "z_max" not in old
    assert "beyond the training redshifts (z <= 0.3)" in domain_notes(old, flux[:1], SOFT, BANDS, zgiven=[0.35])[0]


def test_rows_much_noisier_than_the_training_photometry_are_flagged(tmp_path, capsys):
    """The models read fluxes, not errors: a row whose S/N in a band is below half the training set's
    lowest (padded 0.1 % quantile) is answered with flag 1 and says so; rows without errors or with
    the training's S/N are not."""
    from galdust.posterior.domain import fit_domain, outside

    rng = np.random.default_rng(0)
    bands = ("sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z")
    soft = np.ones(5)
    flux = rng.uniform(50, 100, (2000, 5))
    err = flux / 10 ** rng.uniform(1.0, 2.0, (2000, 5))  # S/N 10-100 in every band
    d = fit_domain(flux, soft, bands, flux_err=err)
    assert d["snr"]["features"] == ["S/N u", "S/N g", "S/N r", "S/N i", "S/N z"] and d["snr"]["margin_dex"] == 0.3
    lo = 10 ** (np.array(d["snr"]["lo"]) - 0.3)  # about 10 / 1.26 / 2
    assert np.allclose(lo, 10 ** (1.0 - 0.1 - 0.3), rtol=0.02)
    f = np.full((4, 5), 75.0)
    e = f / 20.0
    e[1, 2] = 75.0 / 3.0  # r at S/N 3: flagged
    e[2, 0] = 75.0 / 4.5  # u at S/N 4.5, above 10 / 2.5: kept
    e[3] = np.nan  # no errors given: nothing to say
    notes = outside(d, f, soft, bands, e)
    assert notes[0] == notes[2] == notes[3] == ""
    assert notes[1] == f"noisier than the training photometry: S/N r 3 < {lo[2]:.3g}"
    # the shipped models know their training photometry's S/N: errors x 100 are flagged
    rows = ["name," + ",".join(f"flux_{b},flux_err_{b}" for b in bands),
            "a," + ",".join(f"{v},{v / 200}" for v in (10.0, 40.0, 100.0, 150.0, 200.0)),
            "b," + ",".join(f"{v},{v / 0.3}" for v in (10.0, 40.0, 100.0, 150.0, 200.0))]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    assert main(["posterior", "sample", "--catalog", str(tmp_path / "t.csv"), "--out", str(tmp_path / "p.fits"),
                 "--samples", "20"]) == 0
    t = fits.getdata(tmp_path / "p.fits", 1)
    assert list(t["flag"]) == [0, 1] and str(t["note"][1]).startswith("noisier than the training photometry: S/N u")
