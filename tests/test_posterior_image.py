"""Image + photometry CFM: encoder shapes, flux-conserving binning, weights round trip, and an image
feature that the photometry does not carry is learned."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from galdust.posterior.image import ImageEncoder, build_image_model, image_model_from_photometric, train_image_cfm
from galdust.posterior.model import build, percentiles
from galdust.posterior.kinds import load_model


def _blobs(n, size=32, seed=0):
    """Round Gaussian galaxies of the same total flux and random width w [px]: the photometry is the
    same for all, the width is only in the image."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(1.0, 4.0, n)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    prof = np.exp(-0.5 * (x**2 + y**2)[None] / w[:, None, None] ** 2)
    prof /= prof.sum(axis=(1, 2), keepdims=True)
    img = 200.0 * prof[:, None] * np.array([0.8, 1.0, 1.2])[None, :, None, None]
    img = img + rng.normal(0, 0.05, img.shape)
    flux = np.tile([160.0, 200.0, 240.0], (n, 1)) * rng.normal(1, 0.01, (n, 3))
    return img.astype(np.float32), flux, w[:, None]


def test_encoder_shapes_and_binning_conserve_flux():
    enc = ImageEncoder(3, (4, 8, 8, 16), key=jr.PRNGKey(0))
    assert enc(jnp.ones((3, 32, 32))).shape == (16,)
    img, flux, w = _blobs(4)
    m = build_image_model(("w",), ("sdss_g", "sdss_r", "sdss_i"), (1.0, 1.0, 1.0), ("sdss_g", "sdss_r", "sdss_i"),
                          (0.05, 0.05, 0.05), w, flux, channels=(4, 8, 8, 16), width=16, key=jr.PRNGKey(1))
    s = np.asarray(m.stretch(img))
    assert s.shape == (4, 3, 16, 16)
    binned = np.sinh(s) * 3 * 0.05 * 2  # undo the stretch: the 2x2 sums
    assert binned.sum(axis=(2, 3)) == pytest.approx(img.sum(axis=(2, 3)), rel=1e-4)
    assert m.conditions(flux, img).shape == (4, 16 + 3)


def test_image_model_learns_what_only_the_image_shows(tmp_path):
    from galdust.posterior.image import save_image_model

    img, flux, w = _blobs(3000)
    bands = ("sdss_g", "sdss_r", "sdss_i")
    m = build_image_model(("w",), bands, (1.0, 1.0, 1.0), bands, (0.05, 0.05, 0.05), w, flux,
                          channels=(8, 16, 16, 32), width=64, depth=2, key=jr.PRNGKey(2))
    m, hist = train_image_cfm(m, w, flux, img, key=jr.PRNGKey(3), max_steps=300, batch=128, eval_every=100, lr=2e-3)
    ti, tf, tw = _blobs(200, seed=9)
    pct, _ = percentiles(m, tf, jr.PRNGKey(4), 200, 10, images=ti)
    p50 = pct[:, 0, 1]
    # measured: correlation 0.9989, RMSE 0.053 (prior std of w: 0.87), median half-width 0.23
    assert np.corrcoef(p50, tw[:, 0])[0, 1] > 0.99  # the width is read from the image
    assert np.sqrt(np.mean((p50 - tw[:, 0]) ** 2)) < 0.1
    half = np.median(pct[:, 0, 2] - pct[:, 0, 0]) / 2  # the image narrows the posterior well below the prior
    assert half < 0.3
    assert np.mean((tw[:, 0] >= pct[:, 0, 0]) & (tw[:, 0] <= pct[:, 0, 2])) > 0.6  # and it holds the truth
    path = save_image_model(tmp_path / "img.eqx", m, dict(steps=hist.step))
    back, meta = load_model(path)
    assert meta["kind"] == "cfm-image"
    again, _ = percentiles(back, tf[:8], jr.PRNGKey(4), 200, 10, images=ti[:8])
    assert np.allclose(again, pct[:8], atol=1e-5)
    with pytest.raises(ValueError, match="image cutouts"):
        percentiles(back, tf[:8], jr.PRNGKey(4), 200, 10)


def test_warm_start_is_the_photometry_model_before_training():
    """An image model warm-started from a photometry model gives the same posterior until it learns
    from the images: the embedding enters with zero weights."""
    img, flux, w = _blobs(64)
    bands = ("sdss_g", "sdss_r", "sdss_i")
    theta = np.c_[w, np.log(w)]
    phot = build(("w", "lnw"), bands, (1.0, 1.0, 1.0), theta, flux, width=32, depth=2, key=jr.PRNGKey(5))
    m = image_model_from_photometric(phot, bands, (0.05, 0.05, 0.05), channels=(4, 8, 8, 16), key=jr.PRNGKey(6))
    c_img, c_ph = m.conditions(flux[:4], img[:4]), phot.features(flux[:4])
    assert c_img.shape == (4, 16 + 3)
    assert not np.allclose(c_img[:, :16], 0.0)  # the CNN is live ...
    for i in range(4):  # ... yet the velocity ignores it: same density and same samples
        assert float(m.log_prob(jnp.asarray(theta[i]), c_img[i], 10)) == pytest.approx(
            float(phot.log_prob(jnp.asarray(theta[i]), c_ph[i], 10)), abs=1e-4)
    a = m.sample(c_img[0], jr.PRNGKey(7), 50, 10)
    b = phot.sample(c_ph[0], jr.PRNGKey(7), 50, 10)
    assert np.allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    assert m.props == phot.props and np.allclose(m.theta_std, phot.theta_std)


def test_cli_warm_starts_an_image_model_and_continues_it_with_the_chain_of_runs_recorded(tmp_path, capsys):
    from astropy.table import Table

    from galdust.cli import main

    rng = np.random.default_rng(0)
    n = 48
    t = Table({f"flux_sdss_{b}": rng.uniform(20, 200, n) for b in "ugriz"})
    t["log_mstar"], t["z"] = rng.uniform(9, 11.5, n), rng.uniform(0.02, 0.3, n)
    t.write(tmp_path / "s.parquet")
    np.save(tmp_path / "s.images.npy", rng.normal(0.0, 0.1, (n, 3, 64, 64)).astype(np.float16))
    sims = ["--sims", str(tmp_path / "s.parquet"), "--props", "log_mstar,z", "--quiet"]
    phot, a, b = (tmp_path / f"{k}.eqx" for k in ("phot", "a", "b"))
    assert main(["posterior", "train", *sims, "--out", str(phot), "--width", "16", "--max-steps", "2"]) == 0
    img = ["posterior", "train", *sims, "--images", "--batch", "8"]
    assert main([*img, "--warm-start", str(phot), "--out", str(a), "--max-steps", "2", "--lr", "1e-3"]) == 0
    assert main([*img, "--init", str(a), "--out", str(b), "--max-steps", "3", "--lr", "5e-4"]) == 0
    _, ma = load_model(a)
    _, mb = load_model(b)
    assert ma["kind"] == mb["kind"] == "cfm-image"
    assert ma["init"] is None and ma["warm_start"] == str(phot)
    assert mb["init"] == str(a) and mb["warm_start"] is None and mb["steps"] == 5
    assert [(r["steps"], r["lr"], r["init"], r["warm_start"]) for r in mb["runs"]] == [
        (2, 1e-3, None, str(phot)), (3, 5e-4, str(a), None)]
    assert mb["train_seconds"] >= ma["train_seconds"]
    # the best validation loss is this run's (the chain's earlier runs may have had other simulations)
    assert mb["best_val_loss"] == min(h["val"] for h in mb["history"] if h["step"] > 2)
    # --init and --warm-start exclude each other: one line, status 2
    assert main([*img, "--init", str(a), "--warm-start", str(phot), "--out", str(tmp_path / "c.eqx")]) == 2
    assert "exclude each other" in capsys.readouterr().err
