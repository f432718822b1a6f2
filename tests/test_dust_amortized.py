"""The amortised dust network: training that resumes on its trajectory, the shipped network's
accuracy and calibration on held-out simulations, and `galdust fit --method amortized`."""

from __future__ import annotations

import dataclasses
import json

import equinox as eqx
import jax
import numpy as np
import pytest
from astropy.io import fits

from galdust.cli import main
from galdust.dust.amortized import (DEFAULT_CONFIG, AmortizedFitter, AmortizedNet, _predict_batch, _psf_scaled,
                                    _scale_spec, _scaled, _store_psf_fwhm, assign_slots, encode, make_batch_fn,
                                    padded_size, predict, psf_channel, psf_fwhm, psf_sigma_curves, sigma_curve,
                                    stage_sigma_curves, train_amortized, transplant)
from galdust.dust.evaluate import galaxy_metrics, host_config, light_contour, sim_observations
from galdust.io import write_cube
from galdust.simulate import SimConfig, simulate
from galdust.simulate.store import write_bulk

GRIZ = ("sdss_g", "sdss_r", "sdss_i", "sdss_z")
LSST4 = ["lsst_g", "lsst_r", "lsst_i", "lsst_z"]
LSST = ("lsst_u", *LSST4, "lsst_y")
TINY = {"widths": [8, 16, 32], "emb_dim": 16, "band_sets": [list(GRIZ), list(GRIZ) + ["2mass_j"]]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small noiseless grizJ store, as `galdust simulate --bulk --with-cubes --snr 0` writes it."""
    cfg = SimConfig(bands=GRIZ + ("2mass_j",), snr=None)
    sim = simulate(jax.random.PRNGKey(3), 12, cfg, batch=12)
    path = tmp_path_factory.mktemp("store") / "s.npz"
    write_bulk(sim, cfg, path, seed=3, with_cubes=True)
    return path


def test_the_snr_stage_calibrates_what_the_set_and_psf_stages_leave_at_each_snr():
    # σ right on average and at each PSF, but 1.6× too wide at low S/N and 1.6× too narrow at high S/N
    # (continuous ln S/N, as the training's noise draws): four groups, and after the PSF stage each
    # calibrated to 68 % by its own curve; between the knots the factor is interpolated in ln S/N
    rng = np.random.default_rng(2)
    n = 40000
    lp = rng.choice([np.log(1.2 / 2.0), np.log(4.5 / 2.0)], n)
    ls = rng.uniform(np.log(15.0), np.log(300.0), n)
    tilt = np.exp(-np.log(1.6) * (ls - np.log(67.0)) / (0.5 * np.log(20.0)))  # 1.6 at S/N 15, 1/1.6 at 300
    pred = np.exp(rng.uniform(np.log(0.02), np.log(0.5), n))
    err = np.abs(rng.normal(0.0, pred * np.where(lp > 0, 2.0, 0.5) / tilt))
    outs = ("pixel", "delta", "av_lw")
    z = {o: np.stack([err, pred]) for o in outs}
    z["lp"], z["ls"] = {o: lp for o in outs}, {o: ls for o in outs}
    curves = {o: sigma_curve(err, pred) for o in outs}
    psf = psf_sigma_curves([(z, curves)])
    stage = stage_sigma_curves([(z, curves)], "ls", "log_snr", before=[(psf, "lpsf", "lp")])
    np.testing.assert_allclose([e["log_snr"] for e in stage], np.quantile(ls, [0.125, 0.375, 0.625, 0.875]),
                               atol=0.03)
    spec = lambda st, k: tuple((e[k], tuple(_scale_spec(e[o]) for o in outs)) for e in st)  # noqa: E731
    cal = jax.vmap(lambda s, a, b: _psf_scaled(_psf_scaled(s, spec(psf, "lpsf"), a, 0), spec(stage, "log_snr"), b, 0))
    two = jax.vmap(lambda s, a: _psf_scaled(s, spec(psf, "lpsf"), a, 0))
    set_sig = _scaled(jax.numpy.asarray(pred), _scale_spec(curves["pixel"]))
    full = np.asarray(cal(set_sig, jax.numpy.asarray(lp), jax.numpy.asarray(ls)))
    psf_only = np.asarray(two(set_sig, jax.numpy.asarray(lp)))
    for lo, hi in ((np.log(15.0), np.log(30.0)), (np.log(150.0), np.log(300.0))):
        m = (ls >= lo) & (ls < hi)
        assert abs(np.mean(err[m] < psf_only[m]) - 0.683) > 0.08  # without it: off at both ends
        assert abs(np.mean(err[m] < full[m]) - 0.683) < 0.03
    # a network whose sidecar has the stage uses it; one without (the sidecars before it) is unchanged
    cfg = dict(DEFAULT_CONFIG, slots=["g", "r"], slot_wave=None, widths=[8], emb_dim=4, stem=1,
               sigma_scale={"pixel": 1.0, "delta": 1.0, "av_lw": 1.0, "by_snr": stage})
    assert AmortizedNet(cfg, key=jax.random.PRNGKey(0)).sigma_scale_snr == spec(stage, "log_snr")
    cfg["sigma_scale"] = {"pixel": 1.0, "delta": 1.0, "av_lw": 1.0}
    assert AmortizedNet(cfg, key=jax.random.PRNGKey(0)).sigma_scale_snr == ()


def test_the_dust_stage_calibrates_galaxies_with_little_and_much_dust_alike():
    # σ right when pooled over a calibration set half dust-free (a synthetic case), but dust-free
    # galaxies' errors are half their σ and dusty ones' 1.4 times theirs: after the S/N stage (nothing to do here) the dust
    # stage (six groups by predicted A_V,LW) brings each kind to 68 %; _heads applies it at the
    # galaxy's pooled A_V,LW mean
    from galdust.dust.amortized import DUST_GROUPS, _heads

    rng = np.random.default_rng(3)
    n = 40000
    dusty = rng.random(n) < 0.5
    la = np.where(dusty, rng.uniform(0.05, 0.8, n), rng.uniform(-0.01, 0.02, n))
    pred = np.exp(rng.uniform(np.log(0.02), np.log(0.5), n))
    err = np.abs(rng.normal(0.0, pred * np.where(dusty, 1.4, 0.5)))
    outs = ("pixel", "delta", "av_lw")
    z = {o: np.stack([err, pred]) for o in outs}
    z["ls"], z["la"] = {o: np.full(n, 4.0) for o in outs}, {o: la for o in outs}
    curves = {o: sigma_curve(err, pred) for o in outs}
    assert stage_sigma_curves([(z, curves)], "ls", "log_snr") == []  # one S/N: no S/N stage
    stage = stage_sigma_curves([(z, curves)], "la", "av_lw_pred", groups=DUST_GROUPS)
    assert len(stage) == DUST_GROUPS and all(b["av_lw_pred"] > a["av_lw_pred"] for a, b in zip(stage, stage[1:]))
    spec = tuple((e["av_lw_pred"], tuple(_scale_spec(e[o]) for o in outs)) for e in stage)
    set_sig = _scaled(jax.numpy.asarray(pred), _scale_spec(curves["pixel"]))
    full = np.asarray(jax.vmap(lambda s, a: _psf_scaled(s, spec, a, 0))(set_sig, jax.numpy.asarray(la)))
    # the calibration applies the stages in numpy, a knot position per σ: the same factors
    np.testing.assert_allclose(_psf_scaled(np.asarray(set_sig), spec, la, 0, np), full, rtol=1e-5)
    for m in (dusty, ~dusty):
        assert abs(np.mean(err[m] < np.asarray(set_sig)[m]) - 0.683) > 0.15  # without it
        assert abs(np.mean(err[m] < full[m]) - 0.683) < 0.03
    # _heads: the stage's factor at the pooled A_V,LW mean (channel 6), after the other stages
    raw = jax.numpy.zeros((8, 4, 4)).at[6].set(0.25)
    w = jax.numpy.full((4, 4), 1.0 / 16)
    two = ((0.0, (1.0, 1.0, 1.0)), (0.5, (2.0, 2.0, 2.0)))
    a, b = _heads(raw, w), _heads(raw, w, dust_scale=two)
    for k in ("av_sig", "delta_sig", "av_lw_sig"):
        np.testing.assert_allclose(np.asarray(b[k]), 1.5 * np.asarray(a[k]), rtol=1e-5)
    cfg = dict(DEFAULT_CONFIG, slots=["g", "r"], slot_wave=None, widths=[8], emb_dim=4, stem=1,
               sigma_scale={"pixel": 1.0, "delta": 1.0, "av_lw": 1.0, "by_dust": stage})
    assert AmortizedNet(cfg, key=jax.random.PRNGKey(0)).sigma_scale_dust == spec


@pytest.fixture(scope="module")
def held_out():
    """16 held-out galaxies (seed 1001, as galdust evaluate dust), realistic hosts, griz, peak S/N 50."""
    cfg = host_config("realistic", bands=GRIZ, snr=50.0, snr_kind="peak")
    sim = simulate(jax.random.PRNGKey(1001), 16, cfg, batch=16)
    return sim, sim_observations(sim, cfg, "h")


def test_encoding_ignores_absent_bands_and_the_flux_scale():
    rng = np.random.default_rng(0)
    Y = rng.uniform(0.5, 2.0, (5, 64, 64)).astype(np.float32)
    iv = np.full_like(Y, 100.0)
    present = np.array([1, 1, 1, 1, 0], np.float32)
    x1, s1, w1 = encode(Y, iv, present)
    Y2 = Y.copy()
    Y2[4] = 1e6  # an absent slot's values do not matter
    x2, s2, _ = encode(Y2 * 7.0, iv / 49.0, present)  # nor the flux unit (noise scaled with it)
    np.testing.assert_allclose(np.asarray(x1), np.asarray(x2), rtol=1e-4, atol=1e-4)
    assert float(s1) == pytest.approx(float(s2), rel=1e-5)
    assert np.all(np.asarray(x1)[4::5][4] == 0) and float(np.sum(w1)) == pytest.approx(1.0, rel=1e-5)


def test_bands_of_any_survey_take_the_wavelength_slot_nearest_their_filter():
    slots, wave = list("ugrizyYJH"), [0.365, 0.475, 0.62, 0.76, 0.88, 0.975, 1.08, 1.25, 1.70]
    for g in ("sdss_g", "hsc_g", "lsst_g"):
        idx, dl = assign_slots(slots, wave, [g])
        assert list(idx) == [1] and abs(dl[1]) < 0.02 and np.count_nonzero(dl) == 1
    (j2,), d2 = assign_slots(slots, wave, ["2mass_j"])
    (je,), de = assign_slots(slots, wave, ["euclid_j"])
    assert j2 == je == 7 and d2[7] == pytest.approx(np.log(1.2355 / 1.25), abs=2e-3) and de[7] == pytest.approx(
        np.log(1.3638 / 1.25), abs=2e-3)
    idx, _ = assign_slots(slots, wave, ["lsst_u", "lsst_g", "lsst_r", "lsst_i", "lsst_z", "lsst_y", "euclid_y",
                                        "euclid_j", "euclid_h"])
    assert list(idx) == list(range(9))
    with pytest.raises(ValueError, match="'wise_w1' .* in none of the amortised model's wavelength slots"):
        assign_slots(slots, wave, ["sdss_g", "wise_w1"])
    with pytest.raises(ValueError, match="'sdss_g' and 'hsc_g' fall in the same slot"):
        assign_slots(slots, wave, ["sdss_g", "hsc_g"])
    with pytest.raises(ValueError, match="band 'sdss_g' is given twice"):
        assign_slots(slots, wave, ["sdss_g", "sdss_r", "sdss_g"])
    # the wavelength channel: the offset / 0.05 where the slot has data, zero elsewhere
    Y = np.ones((9, 64, 64), np.float32)
    present = np.zeros(9, np.float32)
    present[1:5] = 1
    _, dl = assign_slots(slots, wave, list(GRIZ))
    x, _, _ = encode(Y, np.full_like(Y, 100.0), present, dl)
    assert x.shape == (54, 64, 64)
    np.testing.assert_allclose(np.asarray(x[45:])[:, 10, 10], np.where(present > 0, dl / 0.05, 0.0), atol=1e-6)


def test_a_filter_slot_network_transplanted_into_wavelength_slots_answers_the_same():
    """Fine-tuning the first (SDSS filter-slot) networks into wavelength slots starts from their
    answers: the weights of each old slot go to the new slot of its band, the new inputs start at 0."""
    old = AmortizedNet(dict(TINY, slots=list(GRIZ) + ["2mass_j"], stem=2, size=64), key=jax.random.PRNGKey(1))
    # a non-zero output layer (a fresh U-Net's is zero), so the comparison means something
    old = eqx.tree_at(lambda m: m.unet.conv_out.weight, old,
                      0.1 * jax.random.normal(jax.random.PRNGKey(2), old.unet.conv_out.weight.shape))
    new = transplant(old, AmortizedNet(dict(TINY, slots=list("ugrizyYJH"), stem=2, size=64,
                                            slot_wave=[0.365, 0.475, 0.62, 0.76, 0.88, 0.975, 1.08, 1.25, 1.70]),
                                       key=jax.random.PRNGKey(3)))
    rng = np.random.default_rng(4)
    cube = rng.uniform(0.1, 2.0, (5, 64, 64)).astype(np.float32)
    iv = np.full_like(cube, 400.0)
    a = predict(old, cube, iv, np.array([1, 1, 1, 1, 0], np.float32), calibrated=False)
    Yn, ivn = np.zeros((9, 64, 64), np.float32), np.zeros((9, 64, 64), np.float32)
    idx, dl = assign_slots(new.slots, new.slot_wave, list(GRIZ))
    Yn[idx], ivn[idx] = cube[:4], iv[:4]
    pres = np.zeros(9, np.float32)
    pres[idx] = 1
    b = predict(new, Yn, ivn, pres, dl, calibrated=False)
    assert float(np.std(np.asarray(a["av"]))) > 1e-3
    for k in ("av", "av_sig", "delta", "av_lw"):
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-4, atol=1e-5)


def _transplant_case(old_cfg: dict, new_cfg: dict, bands):
    """A wavelength-slot network (``old_cfg`` over TINY, a non-zero output layer so that comparisons
    mean something), the one ``new_cfg`` fine-tunes it into (:func:`transplant`), and one galaxy's
    input in ``bands``: (old, new, Y, ivar, present, dlnw)."""
    wave = dict(TINY, slots=list("ugrizyYJH"), stem=2, size=64, slot_wave=DEFAULT_CONFIG["slot_wave"])
    old = AmortizedNet(dict(wave, **old_cfg), key=jax.random.PRNGKey(1))
    old = eqx.tree_at(lambda m: m.unet.conv_out.weight, old,
                      0.1 * jax.random.normal(jax.random.PRNGKey(2), old.unet.conv_out.weight.shape))
    new = transplant(old, AmortizedNet(dict(wave, **new_cfg), key=jax.random.PRNGKey(3)))
    idx, dl = assign_slots(new.slots, new.slot_wave, bands)
    Y, iv, pres = np.zeros((9, 64, 64), np.float32), np.zeros((9, 64, 64), np.float32), np.zeros(9, np.float32)
    Y[idx], iv[idx], pres[idx] = np.random.default_rng(4).uniform(0.1, 2.0, (len(bands), 64, 64)), 400.0, 1.0
    return old, new, Y, iv, pres, dl


def test_a_wavelength_slot_network_given_the_psf_channel_answers_the_same_at_any_psf():
    """Fine-tuning the session-30 network (6 inputs per slot) into one that reads each band's PSF (7)
    starts from its answers: the PSF channel's weights start at 0."""
    old, new, Y, iv, pres, dl = _transplant_case({"psf_input": False}, {"psf_input": True}, LSST)
    assert new.psf_input and new.unet.conv_in.weight.shape[2] == old.unet.conv_in.weight.shape[2] // 6 * 7
    run = eqx.filter_jit(lambda n, lp: predict(n, Y, iv, pres, dl, calibrated=False, lpsf=lp))
    a = run(old, None)
    for lp in (np.zeros(9, np.float32), np.log(np.linspace(1.0, 5.0, 9) / 2.0).astype(np.float32)):
        b = run(new, lp)
        for k in ("av", "av_sig", "delta", "av_lw"):
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-4, atol=1e-5)


def test_psf_fwhm_from_the_core_of_gaussian_and_moffat_psfs():
    yy, xx = np.indices((25, 25)) - 12.0
    r2 = yy ** 2 + xx ** 2
    for f in (1.0, 2.0, 3.0, 4.5):  # sampled Gaussians: exact
        assert psf_fwhm(np.exp(-r2 / (2 * (f / 2.3548) ** 2))) == pytest.approx(f, rel=1e-3)
    for f, beta in ((2.0, 4.0), (3.5, 2.5)):  # Moffat: the core's Gaussian, within 13 % (second moments: ×1.5+)
        a = f / (2 * np.sqrt(2 ** (1 / beta) - 1))
        assert psf_fwhm((1 + r2 / a ** 2) ** -beta) == pytest.approx(f, rel=0.13)
    g = np.exp(-r2 / (2 * (4.0 / 2.3548) ** 2))
    # the channel: ln(FWHM / 2 px) on the fit grid (input rebinned by k); no PSF: the training's 2 px
    np.testing.assert_allclose(psf_channel(np.stack([g, g]), 2, 2), [0.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(psf_channel(np.stack([g]), 1, 1), [np.log(2.0)], atol=1e-3)
    assert np.all(psf_channel(None, 1, 3) == 0)
    # a training store's PSF from its simulator config; one without a PSF is refused
    assert list(_store_psf_fwhm("SimConfig(size=64, psf_fwhm=(1.5, 3.0), snr=None)", 2, "s")) == [1.5, 3.0]
    assert list(_store_psf_fwhm("SimConfig(size=64, psf_fwhm=2.0, snr=None)", 3, "s")) == [2.0] * 3
    assert np.isnan(_store_psf_fwhm("SimConfig(size=64, psf_fwhm=None, snr=None)", 3, "s")).all()


def test_a_network_reading_the_psf_refuses_a_store_simulated_without_one(tmp_path):
    cfg = SimConfig(bands=GRIZ + ("2mass_j",), snr=None, psf_fwhm=None)
    write_bulk(simulate(jax.random.PRNGKey(4), 2, cfg, batch=2), cfg, tmp_path / "nopsf.npz", seed=4, with_cubes=True)
    with pytest.raises(ValueError, match="nopsf.npz: simulated without a PSF"):
        train_amortized([tmp_path / "nopsf.npz"], tmp_path / "a.eqx", steps=1, n_val=1,
                        config=dict(TINY, psf_input=True), log=lambda s: None)


def test_band_dropout_trains_on_subsets_of_three_or_more_bands_and_the_network_serves_them():
    cfg = dict(DEFAULT_CONFIG, band_sets=[list(LSST)], band_set_p=None, band_dropout=0.5)
    fn = make_batch_fn(cfg, list(LSST))
    n, rng = 256, np.random.default_rng(0)
    cube = rng.uniform(0.5, 1.0, (n, 6, 64, 64)).astype(np.float32)
    maps = np.ones((n, 64, 64), np.float32)
    psf = np.tile(np.array([1.0, 1.5, 2.0, 2.5, 3.0, 4.0], np.float32), (n, 1))
    Y, ivar, present, dlnw, lpsf = fn(jax.random.split(jax.random.PRNGKey(0), n), cube, maps * 0, maps, maps,
                                      maps[:, 0, 0], maps[:, 0, 0], psf)[:5]
    present, Y, lpsf = np.asarray(present), np.asarray(Y), np.asarray(lpsf)
    k = present.sum(axis=1)
    assert k.min() == 3 and k.max() == 6 and 0.1 < np.mean(k < 6) < 0.95  # dropped, never below 3
    assert np.all(Y[present == 0] == 0) and np.all(np.asarray(ivar)[present == 0] == 0)
    idx, _ = assign_slots(cfg["slots"], cfg["slot_wave"], LSST)
    np.testing.assert_allclose(lpsf[:, idx], np.log(psf / 2.0) * present[:, idx], atol=1e-6)
    # a network trained so serves 3 or more bands of a set; others are refused in one line
    sub = dict(DEFAULT_CONFIG, **TINY, band_dropout=0.15)
    fitter = AmortizedFitter(AmortizedNet(sub, key=jax.random.PRNGKey(0)), {"config": sub})
    assert fitter.supports(["sdss_r", "sdss_g", "sdss_i"]) and fitter.supports(["sdss_g", "sdss_i", "2mass_j"])
    assert not fitter.supports(["sdss_g", "sdss_r"]) and not fitter.supports(["sdss_g", "sdss_r", "lsst_i"])
    with pytest.raises(ValueError, match="it serves 3 or more bands of: sdss griz, sdss griz \\+ 2mass j"):
        fitter.check_bands(["sdss_g", "sdss_r"], "x.fits")
    whole = dict(sub, band_dropout=0.0)
    assert not AmortizedFitter(AmortizedNet(whole, key=jax.random.PRNGKey(0)), {"config": whole}).supports(
        ["sdss_r", "sdss_g", "sdss_i"])  # without band dropout: whole sets only


def test_inference_drops_absent_slots_and_batches_mixed_band_sets_in_order(held_out):
    """Inference feeds only a band set's slots (and their input weights) to the network: the same maps
    as the full-slot input, for a network whose every input weight counts; inputs of two band sets
    come back in their order, each as fitted alone."""
    cfg = dict(TINY, slots=list("ugrizyYJH"), stem=2, size=64, band_sets=[list(GRIZ), LSST4],
               slot_wave=[0.365, 0.475, 0.62, 0.76, 0.88, 0.975, 1.08, 1.25, 1.70])
    net = AmortizedNet(cfg, key=jax.random.PRNGKey(5))
    net = eqx.tree_at(lambda m: m.unet.conv_out.weight, net,
                      0.1 * jax.random.normal(jax.random.PRNGKey(6), net.unet.conv_out.weight.shape))
    rng = np.random.default_rng(7)
    cube = rng.uniform(0.1, 2.0, (4, 64, 64)).astype(np.float32)
    iv = np.full_like(cube, 400.0)
    idx, dl = assign_slots(net.slots, net.slot_wave, ["sdss_z", "sdss_g", "sdss_r", "sdss_i"])  # any order
    Yn, ivn, pres = np.zeros((9, 64, 64), np.float32), np.zeros((9, 64, 64), np.float32), np.zeros(9, np.float32)
    Yn[idx], ivn[idx], pres[idx] = cube, iv, 1.0
    lpsf = np.zeros(9, np.float32)
    lpsf[idx] = np.log([1.5, 2.5, 3.0, 4.0])  # the PSF channel: each band's ln(FWHM / 2 px)
    full = predict(net, Yn, ivn, pres, dl, calibrated=False, lpsf=lpsf)
    part = _predict_batch(net, cube[None], iv[None], dl[idx][None], lpsf[idx][None], tuple(int(i) for i in idx))
    assert float(np.std(np.asarray(full["av"]))) > 1e-3
    for k in ("av", "av_sig", "delta", "av_lw"):
        np.testing.assert_allclose(np.asarray(part[k][0]), np.asarray(full[k]), rtol=1e-4, atol=1e-5)
    _, obs = held_out
    lsst = [dataclasses.replace(o, bands=tuple(LSST4), source=o.source + "L") for o in obs[:3]]
    fitter = AmortizedFitter(net, {"config": cfg}, batch_size=2)
    mixed = fitter.fit([obs[0], lsst[0], obs[1], lsst[1], obs[2], lsst[2]])
    alone = fitter.fit(obs[:3]) + fitter.fit(lsst)
    for a, b in zip(mixed, [alone[0], alone[3], alone[1], alone[4], alone[2], alone[5]]):
        np.testing.assert_allclose(a.AV, b.AV, atol=1e-5)
    assert not np.allclose(mixed[0].AV, mixed[1].AV, atol=1e-3)  # the filters' wavelengths count
    # a batch is padded to the next power of two (a few compiled programs for every count): the
    # padding changes no galaxy's answer
    assert [padded_size(n, 8, False) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8] and padded_size(3, 8, True) == 8
    big = AmortizedFitter(net, {"config": cfg}, batch_size=8)
    three, one = big.fit(obs[:3]), big.fit(obs[:1])  # 3 padded to 4; 1
    for a in (one[0], alone[0]):
        np.testing.assert_allclose(three[0].AV, a.AV, atol=1e-5)


@pytest.mark.parametrize("sets,words", [
    ("sdss_g,hsc_g", "'sdss_g' and 'hsc_g' fall in the same slot (g)"),
    ("sdss_g,wise_w1", "'wise_w1' (3.368 µm) is in none of the amortised model's wavelength slots"),
    ("sdss_g,sdss_q", "--band-sets: unknown band 'sdss_q'"),
])
def test_train_refuses_band_sets_without_slots_in_one_line(store, tmp_path, capsys, sets, words):
    assert main(["train", "amortized", "--data", str(store), "--out", str(tmp_path / "n.eqx"), "--band-sets",
                 sets]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not list(tmp_path.iterdir())


def test_fine_tuning_defaults_to_a_smaller_learning_rate(store, tmp_path, monkeypatch):
    """--init (fine-tuning a trained network) starts at 3e-4 unless --lr says otherwise; from scratch 1e-3."""
    import galdust.dust.amortized as A

    seen = []
    monkeypatch.setattr(A, "train_amortized", lambda *a, **k: seen.append(k["lr"]) or {"stopped_at": 0})
    base = ["train", "amortized", "--data", str(store), "--out", str(tmp_path / "n.eqx")]
    (tmp_path / "w.eqx").write_bytes(b"")
    assert main(base) == 0 and main(base + ["--init", str(tmp_path / "w.eqx")]) == 0
    assert main(base + ["--init", str(tmp_path / "w.eqx"), "--lr", "1e-3"]) == 0
    assert seen == [1e-3, 3e-4, 1e-3]


def test_training_stops_resumes_and_calibrates_sigma(store, tmp_path):
    # an interrupted run: stop after 4 steps (a checkpoint, no weights yet), then the same command
    # resumes (that the resumed trajectory is the uninterrupted one, bit for bit, is the shared
    # loop's: tests/test_nn_train.py, tests/test_priors_train.py) and calibrates the σ
    kw = dict(steps=6, batch=4, n_val=4, ckpt_every=3, config=TINY, log=lambda s: None)
    assert train_amortized([store], tmp_path / "a.eqx", stop_at=4, **kw) == {"stopped_at": 4}
    assert not (tmp_path / "a.eqx").exists()
    side = train_amortized([store], tmp_path / "a.eqx", calibrate=[store], **kw)
    assert side["training"]["steps"] == 6 and [h["step"] for h in side["history"]] == [3, 6]
    assert np.isfinite(side["metrics"]["val_nll"])
    # σ calibration: the curves that give 68.3 % coverage are in the sidecar and in the loaded model
    scales = side["calibration"]["sigma_scale"]
    fitter = AmortizedFitter.load(tmp_path / "a.eqx")
    outs = ("pixel", "delta", "av_lw")
    assert fitter.net.sigma_scale == tuple(_scale_spec(scales[k]) for k in outs)
    assert all(min(scales[k]["factor"]) > 0 for k in outs) and len(scales["pixel"]["log_sigma"]) == 12
    assert len(scales["av_lw"]["log_sigma"]) == 1  # 12 galaxies, 2 draws, 2 band sets: one bin, a single factor
    # and each band set its own, which its galaxies get
    by_set = scales["by_band_set"]
    assert [e["bands"] for e in by_set] == TINY["band_sets"]
    for e in by_set:
        assert fitter.net.scale_for(e["bands"][::-1]) == tuple(_scale_spec(e[k]) for k in outs)
    assert fitter.net.scale_for(["sdss_g", "sdss_r"]) == fitter.net.sigma_scale  # no curve of its own: pooled
    assert by_set[0]["pixel"] != by_set[1]["pixel"]
    # the S/N stage (every galaxy's noise drawn anew: four equal-count groups by ln S/N), loaded
    knots = [e["log_snr"] for e in scales["by_snr"]]
    assert len(knots) == 4 and knots == sorted(knots) and np.all(np.isfinite(knots))
    assert [k for k, _ in fitter.net.sigma_scale_snr] == knots
    # then the dust stage (six equal-count groups by the predicted A_V,LW), loaded
    knots = [e["av_lw_pred"] for e in scales["by_dust"]]
    assert len(knots) == 6 and knots == sorted(knots) and [k for k, _ in fitter.net.sigma_scale_dust] == knots
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["data"]["stores"][0]["seed"] == 3 and side["config"]["widths"] == TINY["widths"]
    # the training galaxies' colours (adjacent bands, wavelength order), which inputs are checked against
    dom = side["domain"]["by_band_set"]
    assert [d["band_set"] for d in dom] == TINY["band_sets"]
    assert dom[1]["features"] == ["sdss_g-sdss_r", "sdss_r-sdss_i", "sdss_i-sdss_z", "sdss_z-2mass_j"]
    assert dom[0]["n"] == 12 and all(lo < hi for lo, hi in zip(dom[0]["lo"], dom[0]["hi"]))
    # `galdust train recalibrate`: the same weights, calibrated anew (here on the same store: the same
    # curves), the old calibration on record, the command appended; never over a file without --overwrite
    cmd = ["train", "recalibrate", "--model", str(tmp_path / "a.eqx"), "--calibrate", str(store), "--out",
           str(tmp_path / "b.eqx")]
    assert main(cmd) == 0
    new = json.loads((tmp_path / "b.json").read_text())
    assert new["sha256"] == side["sha256"] and new["config"]["sigma_scale"] == side["config"]["sigma_scale"]
    assert new["calibration"]["previous"]["sha256"] == side["sha256"] and new["data"] == side["data"]
    assert new["commands"][-1] == f"galdust train recalibrate --model a.eqx --calibrate {store.name} --out b.eqx"
    assert AmortizedFitter.load(tmp_path / "b.eqx").net.sigma_scale_dust == fitter.net.sigma_scale_dust
    assert main(cmd) == 2


def test_sigma_curve_calibrates_a_sigma_of_the_wrong_shape_at_every_sigma():
    # the truth's error scale grows as s, the prediction as sqrt(s)/3 (too wide where small, too
    # narrow where large, as the trained network's pixel σ): one factor cannot fix both ends
    rng = np.random.default_rng(0)
    s_true = np.exp(rng.uniform(np.log(0.01), 0.0, 40000))
    pred, err = np.sqrt(s_true) / 3, np.abs(rng.normal(0.0, s_true))
    curve = sigma_curve(err, pred)
    assert curve["factor"][0] < 0.45 and curve["factor"][-1] > 2.5  # analytic: 0.1·3 (×~1.2), 3 (×~0.9)
    # fresh draws of the same kind: 68 % within ±σ at small, middle and large σ alike
    s_true = np.exp(rng.uniform(np.log(0.01), 0.0, 40000))
    pred, err = np.sqrt(s_true) / 3, np.abs(rng.normal(0.0, s_true))
    cal = np.asarray(_scaled(jax.numpy.asarray(pred), _scale_spec(curve)))
    for lo, hi in ((0.01, 0.05), (0.05, 0.2), (0.2, 1.0)):
        m = (s_true >= lo) & (s_true < hi)
        assert abs(np.mean(err[m] < cal[m]) - 0.683) < 0.025
    one = float(np.quantile(err / pred, 0.6827))  # a single factor: right on average, wrong at the ends
    m = s_true < 0.05
    assert np.mean(err[m] < one * pred[m]) > 0.9
    # the calibrated σ still grows with σ, even where the errors would ask for a falling factor
    dec = sigma_curve(np.abs(rng.normal(0.0, 0.1, 40000)), np.exp(rng.uniform(-5, 0, 40000)))
    x = np.linspace(-6, 1, 400)
    assert np.all(np.diff(np.asarray(_scaled(jax.numpy.exp(jax.numpy.asarray(x)), _scale_spec(dec)))) >= -1e-7)
    # an older sidecar's single factor still loads; a malformed curve is refused
    assert _scale_spec(0.85) == 0.85
    with pytest.raises(ValueError, match="increasing"):
        _scale_spec({"log_sigma": [0.0, -1.0], "factor": [1.0, 1.0]})


def test_the_psf_stage_calibrates_what_the_band_sets_curve_leaves_at_each_psf():
    # one band set whose σ is right on average but 2× too narrow at the broad PSF and 2× too wide at
    # the sharp one: the set's curve cannot tell them apart, the PSF stage can
    rng = np.random.default_rng(1)
    n = 30000
    lp = rng.choice([np.log(1.2 / 2.0), np.log(4.5 / 2.0)], n)
    pred = np.exp(rng.uniform(np.log(0.02), np.log(0.5), n))
    err = np.abs(rng.normal(0.0, pred * np.where(lp > 0, 2.0, 0.5)))
    z = {o: np.stack([err, pred]) for o in ("pixel", "delta", "av_lw")}
    z["lp"] = {o: lp for o in ("pixel", "delta", "av_lw")}
    curves = {o: sigma_curve(err, pred) for o in ("pixel", "delta", "av_lw")}
    stage = psf_sigma_curves([(z, curves)])
    assert [round(e["lpsf"], 3) for e in stage] == [round(np.log(0.6), 3), round(np.log(2.25), 3)]
    net_like = tuple((e["lpsf"], tuple(_scale_spec(e[o]) for o in ("pixel", "delta", "av_lw"))) for e in stage)
    set_sig = np.asarray(_scaled(jax.numpy.asarray(pred), _scale_spec(curves["pixel"])))
    for knot in (np.log(0.6), np.log(2.25)):
        m = np.abs(lp - knot) < 1e-6
        assert abs(np.mean(err[m] < set_sig[m]) - 0.683) > 0.2  # the set's curve alone: far off at each PSF
        cal = np.asarray(jax.vmap(lambda s: _psf_scaled(s, net_like, knot, 0))(jax.numpy.asarray(set_sig[m])))
        assert abs(np.mean(err[m] < cal) - 0.683) < 0.02
    # between the knots the factor is interpolated in ln FWHM; beyond them it stays the end knot's
    s = jax.numpy.asarray(0.1)
    f = [float(_psf_scaled(s, net_like, v, 2)) / 0.1 for v in (np.log(0.3), np.log(0.6), 0.5 * np.log(1.35),
                                                                np.log(2.25), np.log(5.0))]
    assert f[0] == pytest.approx(f[1]) and f[3] == pytest.approx(f[4]) and f[1] < f[2] < f[3]
    assert f[2] == pytest.approx(0.5 * (f[1] + f[3]), rel=1e-4)
    assert psf_sigma_curves([({**z, "lp": {o: np.zeros(n) for o in z["lp"]}}, curves)]) == []  # one PSF: no stage
    # a PSF drawn per galaxy (more than eight values): four equal-count groups at their median ln FWHM
    cont = rng.uniform(np.log(0.6), np.log(2.25), n)
    knots = [e["lpsf"] for e in psf_sigma_curves([({**z, "lp": {o: cont for o in z["lp"]}}, curves)])]
    np.testing.assert_allclose(knots, np.quantile(cont, [0.125, 0.375, 0.625, 0.875]), atol=0.02)


@pytest.fixture(scope="module")
def held_out_lsst():
    """The same galaxies (seed 1001) in LSST ugrizy."""
    cfg = host_config("realistic", bands=LSST, snr=50.0, snr_kind="peak")
    sim = simulate(jax.random.PRNGKey(1001), 16, cfg, batch=16)
    return sim, sim_observations(sim, cfg, "l")


@pytest.mark.parametrize("survey", ["sdss griz", "lsst ugrizy"])
def test_shipped_network_maps_held_out_galaxies_with_calibrated_sigma(survey, request):
    sim, obs = request.getfixturevalue("held_out" if survey == "sdss griz" else "held_out_lsst")
    res = AmortizedFitter.load(batch_size=16).fit(obs)
    dav, corr, inside_pix, inside_lw = [], [], [], []
    for i, r in enumerate(res):
        assert r.scalars["METHOD"] == "amortized" and r.AV_ERR.shape == r.AV.shape
        lw_true = float(sim["av_lw"][i])  # the truth the network's A_V,LW (header AV_LW) estimates
        dav.append(abs(r.scalars["AV_LW"] - lw_true))
        m = galaxy_metrics(r.AV, r.HOST, sim["AV"][i], sim["S"][i])
        if m["av_sd_true"] >= 0.03:  # a map with structure to correlate with
            corr.append(m["corr"])
        inside = light_contour(sim["S"][i], 0.84)
        inside_pix.append(np.abs(r.AV - sim["AV"][i])[inside] < r.AV_ERR[inside])
        inside_lw.append(abs(r.scalars["AV_LW"] - lw_true) < r.scalars["AVLW_ERR"])
    cov_pix = float(np.mean(np.concatenate(inside_pix)))
    # measured on these 16 galaxies (session 30 network): median |ΔA_V,LW| 0.098 (LSST: 0.077), map
    # correlation 0.50 (0.52; 12 structured maps), 68 % intervals holding 70 % (71 %) of the pixels and 9
    # (11) of the 16 A_V,LW (session 32's σ curves: 70 % (72 %) and 9 (10); session 33's network with the
    # PSF channel and its PSF stage: 0.091 (0.074), 0.51 (0.51), 70 % (72 %), 9 (11); session 23 network, griz:
    # 0.098, 0.40, 64 %, 9; on 64 galaxies of the same
    # seed, f < 0.9: 0.026, 0.50, 76 %, 77 %: bench/bench_amortized.py, docs/amortized_dust.md)
    assert np.median(dav) < 0.13
    assert np.median(corr) > 0.25
    assert 0.55 < cov_pix < 0.75
    assert 0.35 <= np.mean(inside_lw) <= 0.9


def test_cli_amortized_writes_the_sigma_map_and_refuses_other_bands(held_out, store, tmp_path, capsys):
    sim, obs = held_out
    o = obs[0]
    write_cube(tmp_path / "g.fits", o.cube, o.bands, ivar=o.ivar, psf=o.psf, wave_eff=o.wave_eff)
    assert main(["fit", str(tmp_path / "g.fits"), "--out", str(tmp_path / "o"), "--method", "amortized"]) == 0
    with fits.open(tmp_path / "o" / "g.dust.fits") as h:
        assert h[0].header["METHOD"] == "amortized" and h[0].header["NITER"] == 0
        assert h["AV_ERR"].data.shape == h["AV"].data.shape and np.all(h["AV_ERR"].data > 0)
    # galdust info on the output and on a simulation store says what they hold (it said 'no image data in
    # the primary HDU', 'npz scene has no images array')
    capsys.readouterr()
    assert main(["info", str(tmp_path / "o" / "g.dust.fits")]) == 0
    text = capsys.readouterr().out
    assert ": dust map (galdust fit)" in text and "METHOD = amortized" in text and "HDU AV_ERR" in text
    assert main(["info", str(store)]) == 0
    text = capsys.readouterr().out
    assert "simulation store (galdust simulate --bulk), 12 galaxies of 64 x 64 pixels, seed 3, cubes yes" in text
    assert "bands: sdss_g, sdss_r, sdss_i, sdss_z, 2mass_j" in text
    assert main(["info", str(tmp_path / "g.fits")]) == 0  # an input still reads as an input
    assert "4 bands x 64 x 64 pixels" in capsys.readouterr().out
    # two bands: no band set of the network
    write_cube(tmp_path / "gr.fits", o.cube[:2], o.bands[:2], ivar=o.ivar[:2], wave_eff=o.wave_eff[:2])
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "gr.fits"), "--out", str(tmp_path / "o2"), "--method", "amortized"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no band set sdss_g,sdss_r" in err[0] and "--method map" in err[0]
    # MAP-only options are refused with one line
    assert main(["fit", str(tmp_path / "g.fits"), "--out", str(tmp_path / "o3"), "--method", "amortized",
                 "--max-iter", "5"]) == 2
    assert "--max-iter: only for --method map" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "g.fits"), "--out", str(tmp_path / "o3"), "--method", "amortized",
                 "--no-psf"]) == 2  # a MAP option: the network reads the PSF FWHM it was trained with
    assert "--no-psf: only for --method map" in capsys.readouterr().err


def test_many_inputs_are_shared_by_worker_processes_with_the_same_outputs(held_out, tmp_path, capsys, monkeypatch):
    """More than SHARD inputs: --method amortized fits them in one process per core (two here), each
    output the same as one process writes, the per-galaxy lines in the inputs' order; one bad input
    fails alone and two inputs with one output name are refused before any worker starts. (Shards of
    16 instead of 128 here: the same two shards over two workers, with 20 inputs instead of 132.)"""
    import galdust.dust.shards

    monkeypatch.setattr(galdust.dust.shards, "SHARD", 16)
    SHARD = galdust.dust.shards.SHARD
    sim, obs = held_out
    d = tmp_path / "in"
    d.mkdir()
    n = SHARD + 4
    for i in range(n):
        o = obs[i % len(obs)]
        write_cube(d / f"g{i:03d}.fits", o.cube, o.bands, ivar=o.ivar, psf=o.psf, wave_eff=o.wave_eff)
    (d / "g999.fits").write_bytes(b"not FITS" * 100)
    files = sorted(str(p) for p in d.glob("*.fits"))
    capsys.readouterr()
    assert main(["fit", *files, "--out", str(tmp_path / "o"), "--method", "amortized", "--workers", "2"]) == 1
    cap = capsys.readouterr()
    lines = [x for x in cap.out.splitlines() if x.startswith("g")]
    assert [x.split(":")[0] for x in lines] == [f"g{i:03d}" for i in range(n)]
    assert f"fitted {n} of {n + 1} inputs" in cap.out and "g999.fits: not a FITS file" in cap.err
    assert main(["fit", files[0], "--out", str(tmp_path / "one"), "--method", "amortized", "--workers", "1"]) == 0
    for k in (0, SHARD + 1):  # same maps and keys as one process (the first and the last shard)
        name = f"g{k:03d}"
        with fits.open(tmp_path / "o" / f"{name}.dust.fits") as a:
            b_path = tmp_path / "one" / "g000.dust.fits" if k == 0 else None
            assert a[0].header["METHOD"] == "amortized" and np.all(np.isfinite(a["AV"].data))
            if b_path is not None:
                with fits.open(b_path) as b:
                    np.testing.assert_allclose(a["AV"].data, b["AV"].data, atol=1e-5)
                    np.testing.assert_allclose(a["AV_ERR"].data, b["AV_ERR"].data, atol=1e-5)
                    assert a[0].header["AV_LW"] == pytest.approx(b[0].header["AV_LW"], abs=1e-5)
    other = tmp_path / "other"
    other.mkdir()
    (other / "g000.fits").write_bytes((d / "g000.fits").read_bytes())
    assert main(["fit", *files[:-1], str(other / "g000.fits"), "--out", str(tmp_path / "o4"), "--method", "amortized",
                 "--quiet"]) == 1
    assert "other/g000.fits: its outputs (g000.dust.fits, ...) would be those of" in capsys.readouterr().err
    assert main(["fit", files[0], "--out", str(tmp_path / "o5"), "--workers", "2"]) == 2  # MAP: galdust run fit
    assert "--workers: only for --method amortized" in capsys.readouterr().err


def test_map_fit_from_the_network_is_a_warm_start_fewer_iterations_and_a_converged_host(held_out):
    """``galdust fit --start amortized``: the dust map takes small steps over a short schedule
    (FitConfig.warm_*), the host full ones. Against the red start on the same 16 held-out galaxies
    (without the learned priors, to keep the test short; with them: bench/bench_warm_start.py): fewer
    iterations, a closer A_V,LW, and a host that still converges (the dust fit explains the data
    better than the dust-free fit)."""
    from galdust.dust.api import make_fitter
    from galdust.dust.evaluate import effective_av_maps

    sim, obs = held_out
    psf0 = obs[0].psf[0]
    out = {}
    for start in ("red", "amortized"):
        res = make_fitter(start=start, batch_size=16, priors=False).fit(obs)
        dav = []
        for i, r in enumerate(res):
            av, host = effective_av_maps(r.HOST, r.D, r.scalars["DELTA"], psf0)
            dav.append(abs(galaxy_metrics(np.asarray(av), np.asarray(host), sim["AV"][i], sim["S"][i])["dAV"]))
        out[start] = dict(dav=np.median(dav), niter=np.median([r.scalars["NITER"] for r in res]),
                          chi2_gain=np.median([r.scalars["CHI2ND"] - r.scalars["CHI2"] for r in res]),
                          start={r.scalars["START"] for r in res})
    red, warm = out["red"], out["amortized"]
    assert warm["start"] == {"amortized"} and red["start"] == {"red"}
    # measured here (session 28): 240 against 364 iterations (dust-free fit ≤ 100 + dust fit ≤ warm_iter
    # = 150, against up to 100 + 300), |ΔA_V,LW| 0.148 against 0.263
    assert warm["niter"] <= 250 and warm["niter"] < 0.8 * red["niter"], (warm, red)
    assert warm["dav"] < 0.8 * red["dav"], (warm, red)
    assert warm["chi2_gain"] > 0, warm


def test_map_fit_started_from_the_network_begins_at_its_map(held_out):
    from galdust.dust.api import make_fitter

    sim, obs = held_out
    net = AmortizedFitter.load(batch_size=2)
    first = net.fit(obs[:2])
    # a few iterations only, no learned priors (fast): the dust map is still the network's
    fitter = make_fitter(start="amortized", priors=False, max_iter=5, batch_size=2)
    res = fitter.fit(obs[:2])
    for a, r, o in zip(first, res, obs[:2]):
        assert r.scalars["START"] == "amortized"
        lit = a.HOST > 0.1
        assert np.corrcoef(a.AV[lit], r.AV[lit])[0, 1] > 0.7
    # a band set the network lacks gets a one-line error for that input only
    bad = obs[0].__class__(obs[0].cube[:2], obs[0].ivar[:2], obs[0].bands[:2], obs[0].wave_eff[:2], None, None, "",
                           "two-bands")
    out = fitter.fit([bad])
    assert isinstance(out[0], ValueError) and "no band set" in str(out[0])
    assert str(out[0]).endswith("use --start auto, red or blue")  # not '--method map': this is the MAP fit


def test_hosts_redder_than_every_training_host_are_flagged_and_the_map_fit_starts_red(held_out, tmp_path):
    """The shipped network saw hosts at z 0.02-0.15 only: farther ones are redder than any of them
    (the 4000 A break in r), and it reads that as dust (dust-free z 0.35-0.5 HSC hosts: 0.55 mag,
    bench/bench_amortized_redshift.py). Their colours are outside its training domain: FLAG 1 with a
    NOTE; the held-out galaxies at its own redshifts are not flagged; a MAP fit asked to start from
    the network starts red there and says why."""
    from galdust.dust.api import make_fitter

    _, obs = held_out
    net = AmortizedFitter.load(batch_size=16)
    assert sum(r.scalars["FLAG"] for r in net.fit(obs)) <= 2  # measured: 0 of 16
    cfg = dataclasses.replace(host_config("dust-free", bands=GRIZ, snr=50.0, snr_kind="peak"), z_range=(0.5, 0.8))
    far = sim_observations(simulate(jax.random.PRNGKey(1002), 4, cfg, batch=4), cfg, "far")
    res = net.fit(far)
    assert all(r.scalars["FLAG"] == 1 for r in res)
    assert all(r.scalars["NOTE"].startswith("outside the training domain: ") for r in res)
    assert all(r.scalars["AV_LW"] > 0.3 for r in res)  # what the flag is for: dust-free, read as dusty
    warm = make_fitter(start="amortized", priors=False, max_iter=5, batch_size=2).fit([far[0], obs[0]])
    assert warm[0].scalars["START"] == "red" and warm[0].scalars["NOTE"].startswith("red start instead of the network")
    assert warm[1].scalars["START"] == "amortized" and "NOTE" not in warm[1].scalars
    # the flag is in the output file, and in the line galdust fit prints
    write_cube(tmp_path / "far.fits", far[0].cube, far[0].bands, ivar=far[0].ivar, psf=far[0].psf,
               wave_eff=far[0].wave_eff)
    assert main(["fit", str(tmp_path / "far.fits"), "--out", str(tmp_path / "o"), "--method", "amortized"]) == 0
    with fits.open(tmp_path / "o" / "far.dust.fits") as h:
        assert h[0].header["FLAG"] == 1 and h[0].header["NOTE"].startswith("outside the training domain")


def test_the_networks_observed_frame_answer_moves_to_the_rest_frame_of_a_galaxy_with_a_redshift():
    """The network learned the dust at observed wavelengths: for a galaxy at z its A_V is the attenuation
    at observed 0.551(1 + z) µm under its own curve, A at λ₀ at observed λ₀(1 + z); δ and z = None stay."""
    from galdust.dust.amortized import to_rest_frame
    from galdust.physics.attenuation import LAMBDA_REF, LAMBDA_V, attenuation_ratio

    pred = dict(aref=np.full((4, 4), 0.5), aref_sig=np.full((4, 4), 0.1), av=np.full((4, 4), 0.4),
                av_sig=np.full((4, 4), 0.05), av_lw=0.4, av_lw_sig=0.05, delta=-0.3, delta_sig=0.1)
    assert to_rest_frame(pred, None) is pred and to_rest_frame(pred, 0.0) is pred
    out = to_rest_frame(pred, 0.5)
    f_v = float(attenuation_ratio(LAMBDA_V * 1.5, -0.3) / attenuation_ratio(LAMBDA_V, -0.3))
    f_ref = float(attenuation_ratio(LAMBDA_REF * 1.5, -0.3))
    assert 0.5 < f_v < 0.6 and 0.5 < f_ref < 0.6  # redder observed wavelengths: less attenuation
    np.testing.assert_allclose(out["av"], 0.4 * f_v)
    np.testing.assert_allclose(out["av_sig"], 0.05 * f_v)
    assert out["av_lw"] == pytest.approx(0.4 * f_v) and out["av_lw_sig"] == pytest.approx(0.05 * f_v)
    np.testing.assert_allclose(out["aref"], 0.5 * f_ref)
    assert out["delta"] == -0.3 and out["delta_sig"] == 0.1 and pred["av_lw"] == 0.4


def test_a_network_reading_the_redshift_learns_rest_frame_dust_and_serves_the_galaxies_with_one(store, tmp_path):
    """``z_input``: a last input channel per slot, ln(1 + z) / ln 2. Training refuses observed-frame
    stores; fine-tuning a network without it starts from its answers at every z; a fitter holding both
    gives a galaxy with a redshift the rest-frame network (its answer flagged rest-frame, which
    to_rest_frame leaves), one without the other, and a galaxy without z asked of the z network alone
    gets one line."""
    from galdust.dust.amortized import to_rest_frame
    from galdust.dust.job import prepare

    with pytest.raises(ValueError, match="s.npz: dust at the observed wavelengths"):
        train_amortized([store], tmp_path / "z.eqx", steps=1, n_val=1, config=dict(TINY, z_input=True),
                        log=lambda s: None)
    cfg = SimConfig(bands=GRIZ + ("2mass_j",), snr=None, dust_frame="rest", z_range=(0.3, 0.6))
    rest_store = tmp_path / "rest.npz"
    write_bulk(simulate(jax.random.PRNGKey(8), 2, cfg, batch=2), cfg, rest_store, seed=8, with_cubes=True)
    # the training batch carries each host's redshift (the store's, 0.3-0.6), which the loss reads
    fn = make_batch_fn(dict(DEFAULT_CONFIG, **TINY), list(GRIZ) + ["2mass_j"])
    with np.load(rest_store) as d:
        cube, zs = d["cube"][:2], d["p_z_sed"][:2]
        maps = np.ones((2, 64, 64), np.float32)
        b = fn(jax.random.split(jax.random.PRNGKey(0), 2), cube, maps, maps, maps, maps[:, 0, 0], maps[:, 0, 0],
               np.full((2, 5), 2.0, np.float32), zs)
    np.testing.assert_allclose(np.asarray(b[5]), zs)
    from galdust.dust.amortized import _load_stores

    np.testing.assert_allclose(_load_stores([rest_store], list(GRIZ))[0]["z"], zs)
    assert np.all((zs > 0.3) & (zs < 0.6))

    old, znet, Y, iv, pres, dl = _transplant_case({"psf_input": True}, {"psf_input": True, "z_input": True}, GRIZ)
    assert znet.z_input and znet.unet.conv_in.weight.shape[2] == old.unet.conv_in.weight.shape[2] // 7 * 8
    a = predict(old, Y, iv, pres, dl, calibrated=False)
    for z in (0.05, 0.9):
        b = predict(znet, Y, iv, pres, dl, calibrated=False, z=z)
        np.testing.assert_allclose(np.asarray(a["av"]), np.asarray(b["av"]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="reads the redshift: give z"):
        predict(znet, Y, iv, pres, dl)
    # once trained, the channel counts: the answer moves with z
    moved = eqx.tree_at(lambda m: m.unet.conv_in.weight, znet,
                        znet.unet.conv_in.weight + 0.05 * jax.random.normal(jax.random.PRNGKey(9),
                                                                             znet.unet.conv_in.weight.shape))
    assert not np.allclose(np.asarray(predict(moved, Y, iv, pres, dl, calibrated=False, z=0.05)["av"]),
                           np.asarray(predict(moved, Y, iv, pres, dl, calibrated=False, z=0.9)["av"]), atol=1e-4)

    wave = dict(TINY, slots=list("ugrizyYJH"), stem=2, size=64, slot_wave=DEFAULT_CONFIG["slot_wave"], psf_input=True)
    meta = {"config": dict(DEFAULT_CONFIG, **dict(wave, band_sets=[list(GRIZ)]))}
    zfit = AmortizedFitter(moved, {"config": dict(meta["config"], z_input=True)}, batch_size=2)
    both = AmortizedFitter(old, meta, batch_size=2, rest=zfit)
    with pytest.raises(ValueError, match="must read the redshift"):
        AmortizedFitter(old, meta, rest=both)
    gcfg = SimConfig(bands=GRIZ, snr=50.0, snr_kind="peak", dust_frame="rest", z_range=(0.3, 0.9))
    obs = sim_observations(simulate(jax.random.PRNGKey(11), 3, gcfg, batch=3), gcfg, "g")
    obs[1] = dataclasses.replace(obs[1], redshift=None)
    r_z, r_none, r_far = both.fit(obs)
    alone = zfit.fit([obs[0], obs[2]])
    np.testing.assert_allclose(r_z.AV, alone[0].AV, atol=1e-6)
    np.testing.assert_allclose(r_far.AV, alone[1].AV, atol=1e-6)
    np.testing.assert_allclose(r_none.AV, AmortizedFitter(old, meta).fit([obs[1]])[0].AV, atol=1e-6)
    assert r_z.scalars["AVFRAME"] == "rest" and r_none.scalars["AVFRAME"] == "observed"
    (err,) = zfit.fit([obs[1]])
    assert isinstance(err, ValueError) and "g1: the amortised network reads the redshift and this galaxy has none" in str(err)
    pred = zfit.predict_prepared([(prepare(obs[0]), GRIZ, None, obs[0].redshift)])[0]
    assert pred["rest_frame"] and to_rest_frame(pred, obs[0].redshift) is pred
    # a network whose sidecar lists its training stores keeps the galaxies at redshifts no higher than
    # its hosts' (a store without z_range: the simulator's 0.02-0.15); the others go to the z network
    from galdust.dust.amortized import training_z_range

    stores = [{"simulator_config": "SimConfig(bands=('sdss_g',), size=64)"},
              {"simulator_config": "SimConfig(bands=('sdss_g',), z_range=(0.05, 0.4), dust_frame='rest')"}]
    assert training_z_range({}) is None and training_z_range({"data": {"stores": stores[:1]}}) == (0.02, 0.15)
    assert training_z_range({"data": {"stores": stores}}) == (0.02, 0.4)
    near = AmortizedFitter(old, dict(meta, data={"stores": stores[:1]}), batch_size=2, rest=zfit)
    assert near.member(GRIZ, 0.1) is near and near.member(GRIZ, 0.15) is near and near.member(GRIZ, None) is near
    assert near.member(GRIZ, 0.16) is zfit and both.member(GRIZ, 0.1) is zfit
    assert near.member(("sdss_u",) + GRIZ, 0.1) is near  # bands neither serves: this one's check refuses them
    r_near, r_far2 = near.fit([dataclasses.replace(obs[0], redshift=0.1), obs[2]])
    np.testing.assert_allclose(r_near.AV, AmortizedFitter(old, meta).fit([dataclasses.replace(obs[0], redshift=0.1)])[0].AV,
                               atol=1e-5)  # batches of 2 and 1: float32 summation order
    np.testing.assert_allclose(r_far2.AV, alone[1].AV, atol=1e-5)
    assert r_near.scalars["AVFRAME"] == "rest"


def test_the_shipped_redshift_network_maps_far_hosts_that_the_observed_frame_one_reads_as_dust():
    """Hosts at z 0.5-0.8 (HSC grizy, rest-frame dust, peak S/N 50, held-out seeds 7373/7374): the
    observed-frame network, trained on hosts at z 0.02-0.15, reads their redder light as dust; the
    shipped network with the redshift channel, which every galaxy with a redshift gets, does not, and
    maps the dust of dusty ones with calibrated σ; nearer hosts with little or no dust do not get
    much invented."""
    hsc = ("hsc_g", "hsc_r", "hsc_i", "hsc_z", "hsc_y")
    fitter = AmortizedFitter.load(batch_size=16)
    assert fitter.rest is not None and fitter.rest.net.z_input
    free_cfg = dataclasses.replace(host_config("dust-free", bands=hsc, snr=50.0, snr_kind="peak"), z_range=(0.5, 0.8),
                                   dust_frame="rest")
    free = sim_observations(simulate(jax.random.PRNGKey(7374), 16, free_cfg, batch=16), free_cfg, "f")
    lw = np.array([r.scalars["AV_LW"] for r in fitter.fit(free)])
    lw_obs = np.array([r.scalars["AV_LW"] for r in fitter.fit([dataclasses.replace(o, redshift=None) for o in free])])
    cfg = dataclasses.replace(host_config("realistic", bands=hsc, snr=50.0, snr_kind="peak"), z_range=(0.5, 0.8),
                              dust_frame="rest")
    sim = simulate(jax.random.PRNGKey(7373), 16, cfg, batch=16)
    res = fitter.fit(sim_observations(sim, cfg, "d"))
    sel = np.asarray(sim["covfrac"]) < 0.9
    dav, corr, cov = [], [], []
    for i in np.flatnonzero(sel):
        r = res[i]
        assert r.scalars["AVFRAME"] == "rest"
        dav.append(abs(r.scalars["AV_LW"] - float(sim["av_lw"][i])))
        cov.append(dav[-1] < r.scalars["AVLW_ERR"])
        m = galaxy_metrics(r.AV, r.HOST, sim["AV"][i], sim["S"][i])
        if m["av_sd_true"] >= 0.03:
            corr.append(m["corr"])
    # measured (session 37's network; session 36's in brackets): dust-free median A_V,LW 0.012 (0.026;
    # the observed-frame network 1.63, in its own frame); dusty, f < 0.9 (11): median |dA_V,LW| 0.101
    # (0.095), map correlation 0.63 (0.65; 9 structured maps), 8 of 11 within the 68 % interval (8)
    # (bench/bench_amortized_z.py, 32 a bin: docs/amortized_dust.md)
    assert np.median(lw_obs) > 0.3 and np.median(lw) < 0.04
    assert np.median(dav) < 0.13 and np.median(corr) > 0.5
    assert 0.35 <= np.mean(cov) <= 0.95
    # nearer hosts with little dust (seed 5151, z 0.02-0.3, median truth 0.049 over 12 with f < 0.9) and
    # dust-free ones: measured a median excess of +0.015 (session 38: those at z <= 0.15, 7 of 16, get
    # the observed-frame network; session 37, every one the redshift network: +0.031; session 36's
    # network: +0.057) and dust-free median 0.003 (0.003; 0.015)
    near = dataclasses.replace(cfg, z_range=(0.02, 0.3))
    sim = simulate(jax.random.PRNGKey(5151), 16, near, batch=16)
    lw = np.array([r.scalars["AV_LW"] for r in fitter.fit(sim_observations(sim, near, "l"))])
    sel = np.asarray(sim["covfrac"]) < 0.9
    assert np.median(lw[sel] - np.asarray(sim["av_lw"])[sel]) < 0.03  # the redshift network alone fails it
    near_free = dataclasses.replace(free_cfg, z_range=(0.02, 0.3))
    free = sim_observations(simulate(jax.random.PRNGKey(7374), 16, near_free, batch=16), near_free, "n")
    assert np.median([r.scalars["AV_LW"] for r in fitter.fit(free)]) < 0.01
