"""The one-step sampler learns the ODE map of a CFM teacher whose flow is known in closed form."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from galdust.posterior.model import build, percentiles

from galdust.posterior.kinds import load_model
from galdust.posterior.onestep import distill_sampler, save_onestep

S = 0.5  # posterior width (standardised units)


class GaussianFlow(eqx.Module):
    """Exact velocity of the straight path from N(0, I) to N(m(c), S² I), m(c) = c[:2] (σ_path → 0):
    θ_t = t m + (1 − t + t S) θ₀, so v = m + (S − 1) (θ − t m) / (1 − t + t S) and Φ(θ₀) = m + S θ₀."""

    dim: int = eqx.field(static=True, default=2)

    def __call__(self, t, theta, cond):
        m = cond[:2]
        return m + (S - 1) * (theta - t * m) / (1 - t + t * S)


def test_one_step_sampler_reproduces_a_known_flow(tmp_path):
    rng = np.random.default_rng(0)
    flux = 10 ** rng.uniform(0.5, 2.0, (3000, 2))
    theta = rng.normal(size=(3000, 2))
    teacher = build(("a", "b"), ("sdss_g", "sdss_r"), (1.0, 1.0), theta, flux, width=8, key=jr.PRNGKey(0))
    teacher = eqx.tree_at(lambda m: m.velocity, teacher, GaussianFlow())
    student, hist = distill_sampler(teacher, flux, key=jr.PRNGKey(1), n_pairs=20000, teacher_steps=20, width=64,
                                    depth=2, steps=2000, batch=512)
    assert hist.history[-1]["val"] < 0.01  # validation MSE (sum over 2 dims, standardised)
    cond = np.asarray(teacher.features(flux[:5]))
    for c in cond:
        th0 = jr.normal(jr.PRNGKey(2), (4000, 2))
        got = np.asarray(eqx.filter_vmap(student.map, in_axes=(0, None))(th0, jnp.asarray(c)))
        want = c[:2] + S * np.asarray(th0)
        assert np.sqrt(np.mean((got - want) ** 2)) < 0.08
        assert got.mean(0) == pytest.approx(c[:2], abs=0.05) and got.std(0) == pytest.approx([S, S], abs=0.05)
    path = save_onestep(tmp_path / "os.eqx", student, dict(steps=2000))
    back, meta = load_model(path)  # load_model recognises the kind
    assert meta["kind"] == "cfm-onestep"
    p1, _ = percentiles(student, flux[:4], jr.PRNGKey(3), 4000, 1)
    p2, _ = percentiles(back, flux[:4], jr.PRNGKey(3), 4000, 1)
    assert np.array_equal(p1, p2)
    # the percentiles are the known posterior's, m(c) + S·(−1, 0, +1) in physical units (measured: within 0.028)
    c = np.asarray(teacher.features(flux[:4]))[:, :2, None] + S * np.array([-1.0, 0.0, 1.0])
    want = c * np.asarray(teacher.theta_std)[:, None] + np.asarray(teacher.theta_mean)[:, None]
    np.testing.assert_allclose(p1, want, atol=0.06)
