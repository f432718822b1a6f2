"""A fast per-pixel FIR predictor: the tree model distilled into a small MLP (JAX).

Why: the global model (3 random forests of 200 depth-8 trees + 3 boosted σ models) predicts
~85,000 pixels/s on 2 cores, because every pixel walks ~6,000 tree nodes; maps of millions of pixels
want ≥ 10⁶ pixels/s. A two-hidden-layer MLP on the same features does ~10⁴ multiply-adds per pixel,
as dense matrix products, and runs on a GPU unchanged.

How (knowledge distillation): the student is trained to reproduce the teacher's outputs (μ and ln σ
of every target), not the truths, on inputs that cover what maps show: the training galaxies' own
SEDs, log-linear mixtures of two galaxies' W1-normalised SEDs (what a pixel between a bulge-like and a
disc-like region looks like), per-band log-normal scatter, and the missing-band patterns of real
galaxies (with what those galaxies measured there, for the linear features) plus random drop-outs
(non-detections in faint pixels, measured at −1 to +1 times their level). A missing log feature
enters as a filled value plus a missing indicator per band (a colour is missing exactly when one of
its bands is, so colours need no indicator of their own); a missing linear ratio (band not observed
or unusable) is filled with −10, far outside the measured ratios, so it needs none either. Fewer
inputs keep the student above 10⁶ pixels/s. The fidelity (student − teacher, in units of the teacher's σ) is
measured on held-out inputs and stored in the sidecar; ``FIRModel.predict`` uses the trees, and maps
use the student when the model folder has one (``fast.eqx``) unless asked for the exact trees.
"""

from __future__ import annotations

import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .data import TARGETS, UVMIR_BANDS, Photometry
from .features import build_features

__all__ = ["FastFIR", "distill_inputs", "distill", "save_fast", "load_fast", "FAST_NAME"]

FAST_NAME = "fast.eqx"
W1 = UVMIR_BANDS.index("wise_w1")


class FastFIR(eqx.Module):
    """Features (n, n_feat) with NaN for missing -> {target: (μ, σ)}."""

    mlp: eqx.nn.MLP
    fill: jnp.ndarray  # (n_feat,) value of a missing feature (before standardising)
    x_mean: jnp.ndarray
    x_std: jnp.ndarray
    y_mean: jnp.ndarray  # (2 n_target,) [μ..., ln σ...]
    y_std: jnp.ndarray
    targets: tuple = eqx.field(static=True)
    #: columns that get a missing indicator (None: every column)
    indicators: tuple | None = eqx.field(static=True, default=None)

    def raw(self, X: jnp.ndarray) -> jnp.ndarray:
        miss = jnp.isnan(X)
        x = (jnp.where(miss, self.fill, X) - self.x_mean) / self.x_std
        ind = miss if self.indicators is None else miss[:, jnp.asarray(self.indicators)]
        z = jax.vmap(self.mlp)(jnp.concatenate([x, ind.astype(x.dtype)], axis=1))
        return z * self.y_std + self.y_mean

    def predict(self, X, chunk: int = 262144) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        X = np.asarray(X, np.float32)
        outs = []
        for i in range(0, len(X), chunk):
            xb = X[i : i + chunk]
            n = len(xb)
            m = 1 << max(10, int(np.ceil(np.log2(max(n, 1)))))  # few shapes: few compilations
            xb = np.concatenate([xb, np.zeros((m - n, X.shape[1]), np.float32)]) if m > n else xb
            outs.append(np.asarray(_raw(self, jnp.asarray(xb)))[:n])
        y = np.concatenate(outs) if outs else np.zeros((0, 2 * len(self.targets)))
        k = len(self.targets)
        return {t: (y[:, j].astype(float), np.exp(y[:, k + j]).astype(float)) for j, t in enumerate(self.targets)}


@eqx.filter_jit
def _raw(model, X):
    return model.raw(X)


def distill_inputs(phot: Photometry, n: int, seed: int = 0, n_extra: int = 0) -> np.ndarray:
    """``n`` feature vectors for distillation from the galaxies of ``phot`` (see the module doc)."""
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        lf = np.where(phot.flux > 0, np.log10(phot.flux), np.nan)
    norm = lf[:, W1]
    ok = np.isfinite(norm)
    lf = lf[ok] - norm[ok, None]  # W1-normalised log SEDs
    g = len(lf)
    a, b = rng.integers(0, g, n), rng.integers(0, g, n)
    m = rng.random(n)[:, None]
    m[rng.random(n) < 0.25] = 0.0  # a quarter are the galaxies' own SEDs
    la, lb = lf[a], lf[b]
    mix = np.where(np.isfinite(la) & np.isfinite(lb), (1 - m) * la + m * lb, np.where(np.isfinite(la), la, lb))
    scat = rng.choice([0.0, 0.05, 0.15, 0.3], size=(n, 1), p=[0.25, 0.35, 0.25, 0.15])
    mix = mix + scat * rng.normal(size=mix.shape)
    mix[:, W1] = 0.0
    c = rng.integers(0, g, n)
    miss = ~np.isfinite(lf[c])  # a real galaxy's missing bands ...
    with np.errstate(invalid="ignore"):  # ... and what it measured there (its non-detections)
        lin = phot.measured_flux()[ok] / phot.flux[ok][:, [W1]]
    meas_ratio = lin[c]
    drop = rng.random(mix.shape) < rng.choice([0.0, 0.1, 0.3], size=(n, 1))  # faint-pixel drop-outs
    drop &= ~miss
    miss |= drop
    miss[:, W1] = False
    flux = np.where(miss, np.nan, 10.0**mix)
    # a drop-out was measured below its detection threshold: anything from -1 to +1 times its true level
    measured = np.where(drop, 10.0**mix * rng.uniform(-1.0, 1.0, mix.shape), np.where(miss, meas_ratio, flux))
    measured[:, W1] = 1.0
    X, _ = build_features(Photometry([""] * n, flux, flux * 0.1, miss, measured=measured))
    if n_extra:  # e.g. log pixel scale in pc, drawn over the range maps see
        X = np.concatenate([X, rng.uniform(0.5, 4.0, (n, n_extra))], axis=1)
    return X.astype(np.float32)


def _teacher(model, X) -> np.ndarray:
    p = model.predict(X)
    return np.concatenate([np.stack([p[t][0] for t in TARGETS], 1), np.log(np.stack([p[t][1] for t in TARGETS], 1))],
                          axis=1).astype(np.float32)


#: a short distillation sees each teacher row about this many times (:func:`distill`) ...
PASSES = 10
#: ... from at least this many rows
MIN_ROWS = 50_000


def distill(model, phot: Photometry, *, n: int = 400_000, n_val: int = 40_000, width: int = 128, depth: int = 2,
            steps: int = 6000, batch: int = 2048, lr: float = 2e-3, seed: int = 0, checkpoint=None, log=None):
    """Train a :class:`FastFIR` on ``model``'s (a ``FIRModel``) outputs (:func:`galdust.nn.train.fit`,
    resumable from ``checkpoint``); returns (student, metrics).

    ``n`` teacher rows at most: a short run draws at most ``PASSES`` batches' worth of rows per step
    (``steps · batch / PASSES``, at least ``MIN_ROWS``), since the teacher's predictions are most of
    its time (1,000 steps: 205k rows instead of 400k; the shipped 40,000 steps keep 400k)."""
    from ..nn.train import adam, digest, fit

    t0 = time.perf_counter()
    n = int(min(n, max(MIN_ROWS, steps * batch // PASSES)))
    n_extra = len(model.features) - len(build_features(Photometry([""], np.ones((1, len(UVMIR_BANDS))),
                                                                  np.ones((1, len(UVMIR_BANDS))),
                                                                  np.zeros((1, len(UVMIR_BANDS)), bool)))[0][0])
    X = distill_inputs(phot, n + n_val, seed, n_extra)
    Y = _teacher(model, X)
    t_teacher = time.perf_counter() - t0
    Xt, Yt, Xv, Yv = X[:n], Y[:n], X[n:], Y[n:]
    names = list(getattr(model, "features", []))
    if len(names) != X.shape[1]:
        names = names + [""] * (X.shape[1] - len(names))
    lin = np.array([nm.startswith("lin_") for nm in names])
    indicators = tuple(j for j, nm in enumerate(names) if nm.startswith("log_") and nm.endswith("_w1"))
    if not indicators:  # a teacher without feature names: an indicator for every column
        indicators = None
    fill = np.nanmedian(Xt, axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    fill = np.where(lin, -10.0, fill)
    Xf = np.where(np.isnan(Xt), fill, Xt)
    xm, xs = Xf.mean(0), np.maximum(Xf.std(0), 1e-3)
    ym, ys = Yt.mean(0), np.maximum(Yt.std(0), 1e-3)
    nf, k = X.shape[1], len(TARGETS)
    key = jr.PRNGKey(seed)
    n_ind = nf if indicators is None else len(indicators)
    mlp = eqx.nn.MLP(nf + n_ind, 2 * k, width, depth, activation=jax.nn.gelu, key=key)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    student = FastFIR(mlp, f32(fill), f32(xm), f32(xs), f32(ym), f32(ys), tuple(TARGETS), indicators)
    Xd, Yd = jnp.asarray(Xt, jnp.float32), jnp.asarray(Yt, jnp.float32)

    def sample(d, k):
        i = jr.randint(k, (batch,), 0, n)
        return d[0][i], d[1][i]

    student = fit(student, lambda s, b, _: jnp.mean(((s.raw(b[0]) - b[1]) / s.y_std) ** 2),
                  adam(lr, steps, final=0.02, weight_decay=1e-5), steps=steps, seed=seed, sample=sample, data=(Xd, Yd),
                  trainable=eqx.is_array, checkpoint=checkpoint, ckpt_every=1000,
                  match={"batch": batch, "lr": lr, "data": digest(Xt, Yt)},
                  log=log, name="FIR distillation").model
    pv = student.predict(Xv)
    mu_t, sig_t = Yv[:, :k], np.exp(Yv[:, k:])
    met = {}
    for j, t in enumerate(TARGETS):
        d = (pv[t][0] - mu_t[:, j]) / sig_t[:, j]
        met[t] = dict(rms_dmu_over_sigma=float(np.sqrt(np.mean(d**2))), p99_abs_dmu_over_sigma=float(np.quantile(np.abs(d), 0.99)),
                      rms_dmu=float(np.sqrt(np.mean((pv[t][0] - mu_t[:, j]) ** 2))),
                      rms_dlnsigma=float(np.sqrt(np.mean((np.log(pv[t][1]) - Yv[:, k + j]) ** 2))))
    met["train_seconds"] = round(time.perf_counter() - t0, 1)
    met["teacher_seconds"] = round(t_teacher, 1)
    return student, dict(n_train=n, n_val=n_val, width=width, depth=depth, steps=steps, seed=seed,
                         n_features=nf, indicators=None if indicators is None else list(indicators), fidelity=met)


def save_fast(directory: str | Path, student: FastFIR, meta: dict) -> Path:
    from ..weights import save

    return save(Path(directory) / FAST_NAME, student, dict(meta, targets=list(student.targets)))


def load_fast(directory: str | Path) -> FastFIR | None:
    """The model folder's distilled student, or None when it has none."""
    from ..weights import load

    path = Path(directory) / FAST_NAME
    if not path.exists():
        return None

    def skeleton(meta):
        nf, k = meta["n_features"], len(meta["targets"])
        ind = meta.get("indicators")
        ind = None if ind is None else tuple(int(j) for j in ind)
        n_in = nf + (nf if ind is None else len(ind))
        mlp = eqx.nn.MLP(n_in, 2 * k, meta["width"], meta["depth"], activation=jax.nn.gelu, key=jr.PRNGKey(0))
        z = lambda m: jnp.zeros(m, jnp.float32)  # noqa: E731
        return FastFIR(mlp, z(nf), z(nf), z(nf), z(2 * k), z(2 * k), tuple(meta["targets"]), ind)

    return load(path, skeleton)[0]
