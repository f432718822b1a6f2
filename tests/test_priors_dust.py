"""The shipped conditional dust prior: loading, API, and a minimum denoising quality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from galdust.priors import DustPrior, dust_prior
from galdust.priors.dust import DEFAULT_WEIGHTS
from galdust.priors.host import pad_to
from galdust.simulate import SimConfig, simulate
from galdust.weights import read_sidecar


@pytest.fixture(scope="module")
def prior():
    return dust_prior(sigma=0.05)


@pytest.fixture(scope="module")
def fresh():
    """32 galaxies of the training simulator (a seed the training store did not use), noiseless:
    the prior sees the truths D and S only, which the noise does not change."""
    return simulate(jax.random.PRNGKey(777), 32, SimConfig(snr=None), batch=32)


@pytest.fixture(scope="module")
def heldout(fresh):
    keep = fresh["D"].reshape(32, -1).std(axis=1) > 0.02  # clearly dusty
    return fresh["S"][keep][:12], fresh["D"][keep][:12]


def test_shipped_weights_and_sidecar():
    assert DEFAULT_WEIGHTS.exists()
    side = read_sidecar(DEFAULT_WEIGHTS)
    assert side["kind"] == "dust" and side["config"]["representation"] == "D"
    assert DEFAULT_WEIGHTS.stat().st_size < 20e6


def test_validation_loss_recomputed_on_fresh_simulations(prior, fresh):
    """The denoising loss at the trainer's four validation noise levels (same σ-weighted objective,
    fixed noise), recomputed on 32 galaxies simulated here. Measured: 0.0447 / 0.0248 / 0.0138 /
    0.0085 at σ = 0.01 / 0.03 / 0.1 / 0.3, within 9 % of the sidecar's 0.0430 / 0.0240 / 0.0133 /
    0.0078 (1,000 held-out training-store galaxies); a network that predicts nothing scores 1."""
    from galdust.priors.train import VAL_SIGMAS, _val_loss, eps_function

    cfg = read_sidecar(DEFAULT_WEIGHTS)["config"]
    got = _val_loss(eps_function("dust", prior.sigma_data), prior.net, fresh["D"], fresh["S"], cfg["sigma_min"],
                    cfg["sigma_max"], batch=32)
    stored = read_sidecar(DEFAULT_WEIGHTS)["metrics"]["val_loss"]
    for s, bound in zip(VAL_SIGMAS, (0.056, 0.031, 0.0175, 0.0106)):
        assert got[f"{s:g}"] < bound, (s, got[f"{s:g}"])
        assert got[f"{s:g}"] == pytest.approx(stored[f"{s:g}"], rel=0.25), s


def test_api_shapes_batching_padding(prior, heldout):
    S, D = (jnp.asarray(a) for a in heldout)
    assert isinstance(prior, DustPrior)
    out = prior(D[:3], S[:3])
    assert out.shape == (3, 64, 64) and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out[2]), np.asarray(prior(D[2], S[2])), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(prior(D[:3], S[:3])), np.asarray(out))
    # smaller cutouts: D padded with 1 (no dust), S with 0; the score is cropped back
    small = prior(D[0, 8:56, 8:56], S[0, 8:56, 8:56])
    full = prior(pad_to(D[0, 8:56, 8:56], value=1.0), pad_to(S[0, 8:56, 8:56]))
    assert small.shape == (48, 48)
    np.testing.assert_allclose(np.asarray(small), np.asarray(full[8:56, 8:56]), rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError):
        prior(D[0], S[0, :10])
    assert np.isfinite(np.asarray(jax.jit(lambda d, s: prior(d, s))(D[:2], S[:2]))).all()


def test_denoising_meets_minimum_correlation(prior, heldout):
    S, D = heldout
    rng = np.random.default_rng(0)
    y = D + 0.1 * rng.standard_normal(D.shape).astype(np.float32)
    den = np.asarray(prior.denoise(jnp.asarray(y), jnp.asarray(S), 0.1))
    before = np.median([np.corrcoef(D[i].ravel(), y[i].ravel())[0, 1] for i in range(len(D))])
    after = np.median([np.corrcoef(D[i].ravel(), den[i].ravel())[0, 1] for i in range(len(D))])
    assert after > 0.85 and after > before + 0.1, (before, after)
