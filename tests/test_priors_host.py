import jax
import jax.numpy as jnp
import numpy as np
import pytest

import galdust.priors.host as host_mod
from galdust.priors.host import (HostPrior, HostPriorFallback, fallback_host_prior, galaxygrad_file, host_prior,
                                 load_galaxygrad_net, pad_to)
from galdust.weights import WeightsError

# galdust depends on galaxygrad (pyproject.toml): its weights missing is a failure here, not a skip


@pytest.fixture(scope="module")
def prior():
    return host_prior(t=0.02)


def blob(n=64, r=4.0):
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    return jnp.asarray(np.exp(-0.5 * (x**2 + (y / 0.7) ** 2) / r**2), jnp.float32)


def test_loads_galaxygrad_weights_into_own_architecture(prior):
    assert isinstance(prior, HostPrior)
    n = sum(a.size for a in jax.tree.leaves(prior.net) if hasattr(a, "size"))
    assert n > 1_000_000  # the HSC 64x64 mixer has ~1.6 M parameters


def test_chain_rule_matches_galaxygrad_wrapper(prior):
    S = blob()
    raw = prior.net((jnp.log(S + 1) / 0.1)[None], 0.02)[0]
    expected = raw / (0.1 * (S + 1))
    np.testing.assert_allclose(np.asarray(prior(S)), np.asarray(expected), rtol=1e-3, atol=2e-3)


def test_shapes_dtype_batching_and_determinism(prior):
    S = jnp.stack([blob(), 0.5 * blob(r=6.0)])
    out = prior(S)
    assert out.shape == (2, 64, 64) and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out[1]), np.asarray(prior(S[1])), rtol=1e-3, atol=2e-3)
    np.testing.assert_array_equal(np.asarray(prior(S)), np.asarray(out))
    jitted = jax.jit(lambda s: prior(s))
    np.testing.assert_allclose(np.asarray(jitted(S)), np.asarray(out), rtol=1e-3, atol=2e-3)


def test_small_images_are_padded_and_cropped(prior):
    S = blob(40)
    out = prior(S)
    assert out.shape == (40, 40)
    full = prior(pad_to(S))
    np.testing.assert_allclose(np.asarray(out), np.asarray(full[12:52, 12:52]), rtol=1e-3, atol=2e-3)
    with pytest.raises(ValueError, match="larger than"):
        prior(blob(72))


def test_score_points_from_noisy_to_clean_galaxy(prior):
    S = blob()
    noisy = S + 0.05 * jax.random.normal(jax.random.PRNGKey(0), S.shape)
    g = prior(noisy)
    assert float(jnp.sum(g * (S - noisy))) > 0


def test_denoise_improves_correlation_on_simulated_host(prior):
    from galdust.simulate import SimConfig, simulate

    sim = simulate(jax.random.PRNGKey(2), 4, SimConfig(snr=None, size=64), batch=4)
    S = jnp.asarray(sim["S"])
    noisy = S + 0.1 * jax.random.normal(jax.random.PRNGKey(1), S.shape)
    den = prior.denoise(noisy, 0.1)
    c_before = [np.corrcoef(np.ravel(S[i]), np.ravel(noisy[i]))[0, 1] for i in range(4)]
    c_after = [np.corrcoef(np.ravel(S[i]), np.ravel(den[i]))[0, 1] for i in range(4)]
    assert np.median(c_after) > np.median(c_before) + 0.05


def test_galaxygrad_weights_are_installed():
    path = galaxygrad_file()
    assert path is not None and path.name == "eqx_hsc_ScoreNet64.eqx" and path.stat().st_size > 1e6


def test_missing_galaxygrad_weights_raise_one_line_instead_of_falling_back(monkeypatch):
    monkeypatch.setattr(host_mod, "galaxygrad_file", lambda name="": None)
    with pytest.raises(WeightsError, match="galaxygrad") as e:
        host_mod.host_prior()
    assert len(str(e.value).splitlines()) == 1


def test_fit_with_priors_uses_the_galaxygrad_hsc_prior():
    from galdust.dust.job import DustFitter

    f = DustFitter.with_priors()
    assert isinstance(f.host_score, HostPrior) and not isinstance(f.host_score, HostPriorFallback)
    ref = load_galaxygrad_net()  # the very weights of galaxygrad's file
    for a, b in zip(jax.tree.leaves(f.host_score.net), jax.tree.leaves(ref)):
        if hasattr(a, "shape"):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fallback_prior_only_when_asked_for():
    fb = fallback_host_prior()
    assert isinstance(fb, HostPriorFallback)
    S = blob()
    noisy = S + 0.05 * jax.random.normal(jax.random.PRNGKey(3), S.shape)
    g = fb(noisy)
    assert g.shape == (64, 64) and np.isfinite(np.asarray(g)).all()
    assert float(jnp.sum(g * (S - noisy))) > 0
    assert fb(S[8:56, 8:56]).shape == (48, 48)


def test_direct_load_function():
    net = load_galaxygrad_net()
    assert net.t1 == 10.0
