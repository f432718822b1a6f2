"""A one-step sampler distilled from a CFM posterior (knowledge distillation of the ODE's map).

The CFM samples by integrating dθ/dt = v(t, θ, x) from θ₀ ~ N(0, I): with RK4 that is 4 network
evaluations per step, 80 for 20 steps, for every one of the 1,000 samples per object. The flow's
end point is a deterministic function θ₁ = Φ(θ₀; x) of the noise, so a network G(θ₀, x) trained by
regression on pairs (θ₀, Φ(θ₀; x)) drawn with the teacher (Luhman & Luhman 2021) samples in one
evaluation. G is parametrised as θ₀ + MLP([θ₀, x]) (the identity plus a correction). What it costs in
accuracy is measured on held-out simulations (coverage, NMAD) against the teacher in
``bench/bench_posterior.py``; it has no exact log density (use the CFM for Δlog p).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .base import Posterior
from .cfm import _rk4

__all__ = ["OneStepPosterior", "distill_sampler", "save_onestep", "load_onestep"]


class OneStepPosterior(Posterior):
    """A CFM distilled into one network evaluation per sample (no exact density)."""

    KIND: ClassVar[str] = "cfm-onestep"

    net: eqx.nn.MLP
    theta_mean: jnp.ndarray
    theta_std: jnp.ndarray
    cond_mean: jnp.ndarray
    cond_std: jnp.ndarray
    props: tuple = eqx.field(static=True)
    bands: tuple = eqx.field(static=True)
    soft: tuple = eqx.field(static=True)
    given: tuple = eqx.field(static=True, default=())

    def map(self, theta0, cond):
        """Standardised sample from standardised noise ``theta0`` (d,) and condition (c,)."""
        return theta0 + self.net(jnp.concatenate([theta0, cond]))

    def sample(self, cond, key, n_samples: int = 1000, n_steps: int = 1):
        """Physical-unit samples (n_samples, d) for one standardised conditioning vector (``n_steps``
        is ignored: one network evaluation per sample)."""
        th0 = jr.normal(key, (n_samples, len(self.props)))
        return jax.vmap(lambda t: self.map(t, cond))(th0) * self.theta_std + self.theta_mean


def _teacher_pairs(teacher, cond, key, n_pairs: int, n_steps: int, chunk: int = 8192):
    d = len(teacher.props)

    @eqx.filter_jit
    def run(vel, c, th0):
        def f(t, th):
            return jax.vmap(lambda x, cc: vel(t, x, cc))(th, c)

        return _rk4(f, th0, 0.0, 1.0, n_steps)

    ki, kn = jr.split(key)
    idx = np.asarray(jr.randint(ki, (n_pairs,), 0, cond.shape[0]))
    th0 = np.asarray(jr.normal(kn, (n_pairs, d)), np.float32)
    th1 = np.empty_like(th0)
    for i in range(0, n_pairs, chunk):
        j = slice(i, min(i + chunk, n_pairs))
        c, t0 = cond[idx[j]], th0[j]
        m = t0.shape[0]
        if m < chunk:  # one shape, one compilation
            c = np.concatenate([c, np.repeat(c[-1:], chunk - m, 0)])
            t0 = np.concatenate([t0, np.repeat(t0[-1:], chunk - m, 0)])
        th1[j] = np.asarray(run(teacher.velocity, jnp.asarray(c), jnp.asarray(t0)))[:m]
    return th0, np.asarray(cond[idx], np.float32), th1


def distill_sampler(teacher, flux: np.ndarray, *, key, n_pairs: int = 200_000,
                    teacher_steps: int = 20, width: int = 256, depth: int = 3, steps: int = 10000,
                    batch: int = 1024, lr: float = 1e-3, val_frac: float = 0.05, given=None, checkpoint=None,
                    log=None):
    """Train a :class:`OneStepPosterior` on the teacher's ODE map at the fluxes of ``flux`` (n, b)
    (and the known properties ``given`` (n, k) of a teacher conditioned on them), by
    :func:`galdust.nn.train.fit` (best validated weights; resumable from ``checkpoint``). Returns
    (model, ``Trained``)."""
    from ..nn.train import adam, digest, fit

    cond = np.asarray(teacher.features(flux, given), np.float32)
    kp, km, kt = jr.split(key, 3)
    th0, c, th1 = _teacher_pairs(teacher, cond, kp, n_pairs, teacher_steps)
    d, cd = th0.shape[1], c.shape[1]
    net = eqx.nn.MLP(d + cd, d, width, depth, activation=jax.nn.silu, key=km)
    net = eqx.tree_at(lambda n: (n.layers[-1].weight, n.layers[-1].bias), net,
                      (net.layers[-1].weight * 0.1, jnp.zeros(d)))  # start near the identity map
    model = OneStepPosterior(net, teacher.theta_mean, teacher.theta_std, teacher.cond_mean, teacher.cond_std,
                             teacher.props, teacher.bands, teacher.soft, teacher.given)
    n_val = max(int(val_frac * n_pairs), 1)
    data = (jnp.asarray(th0), jnp.asarray(c), jnp.asarray(th1))

    def loss_fn(m, b, _key=None):
        x0, cc, y = b
        return jnp.mean(jnp.sum((jax.vmap(m.map)(x0, cc) - y) ** 2, axis=1))

    def sample(d, k):
        i = jr.randint(k, (batch,), n_val, n_pairs)
        return tuple(a[i] for a in d)

    val = tuple(a[:n_val] for a in data)
    vloss = eqx.filter_jit(loss_fn)
    res = fit(model, loss_fn, adam(lr, steps, final=0.02, weight_decay=1e-5), steps=steps, seed=kt, sample=sample,
              data=data, validate=lambda m: float(vloss(m, val)), eval_every=500, keep_best=True,
              checkpoint=checkpoint, match={"batch": batch, "lr": lr, "data": digest(*data)}, log=log, name="one-step")
    return res.model, res


def save_onestep(path: str | Path, model: OneStepPosterior, sidecar: dict) -> Path:
    from ..weights import save

    cfg = dict(props=list(model.props), bands=list(model.bands), soft=list(model.soft),
               width=model.net.width_size, depth=model.net.depth)
    if model.given:
        cfg["given"] = list(model.given)
    return save(path, model, dict(sidecar, kind=OneStepPosterior.KIND, config=cfg))


def _skeleton(meta):
    c = meta["config"]
    given = tuple(c.get("given", ()))
    d, b = len(c["props"]), len(c["bands"]) + len(given)
    z = lambda n: jnp.zeros(n, jnp.float32)  # noqa: E731
    net = eqx.nn.MLP(d + b, d, c["width"], c["depth"], activation=jax.nn.silu, key=jr.PRNGKey(0))
    return OneStepPosterior(net, z(d), z(d), z(b), z(b), tuple(c["props"]), tuple(c["bands"]), tuple(c["soft"]),
                            given)


def load_onestep(path: str | Path) -> tuple[OneStepPosterior, dict]:
    from ..weights import load

    return load(path, _skeleton)
