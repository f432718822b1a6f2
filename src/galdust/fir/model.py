"""Global far-infrared dust-property model: random forest + Gaussian-NLL boosted σ.

Method (Dobbels et al. 2020, "D20"), on the features of :mod:`galdust.fir.features`. Per target
(log sL_d, log sM_d, T_d):

* the prediction μ is a random forest (xgboost's random-forest mode: bagged, column-subsampled
  trees; missing bands are handled natively by the trees' default directions);
* the aleatoric σ is a gradient-boosted model of s = ln σ with the Gaussian negative log-likelihood
  objective ``s + r²/(2 e^{2s})`` on out-of-fold residuals r of the forest;
* σ is recalibrated by one factor so that the mean of (r/σ)² is 1 on held-out rows: the σ model is
  cross-fitted (trained on 9/10 of the rows, predicted on the other 1/10, ten times), so the factor
  rests on every training row rather than on one small split.

The sidecar also keeps the training domain (:mod:`galdust.ml.domain`: the range of every log flux
ratio and colour over the training galaxies, and the galaxies themselves for a nearest-neighbour
test); :meth:`FIRModel.outside` says why a row falls outside it, and ``galdust fir predict`` flags
such rows.

Everything is saved as xgboost JSON plus a JSON sidecar with their SHA-256 (never pickle). Why these
settings, with the measurements that chose them: ``docs/fir_model.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..ml.domain import fit_neighbours, fit_ranges, outside_notes
from ..ml.trees import FitCache, folds, load_booster, n_threads, out_of_fold
from ..models import shipped_path
from ..weights import load_folder, save_folder
from .data import TARGETS, Photometry
from .features import COLOURS, band_dropout_features, build_features, feature_names, features_in_bands

__all__ = ["DEFAULT_MODEL", "feature_names", "build_features", "features_in_bands", "band_dropout_features",
           "COLOURS", "training_set", "FIRModel", "train_model", "cross_validate", "metrics"]

SIDECAR = "fir_model.json"
#: folds of the out-of-fold forest residuals that the σ model learns from
OOF_FOLDS = 5
#: band-dropout copies per training galaxy for the σ models (:func:`band_dropout_features`): without
#: them σ was too small for galaxies seen through fewer bands (``docs/fir_model.md``)
DROPOUT_COPIES = 1


def training_set(phot: Photometry, props: dict) -> tuple[np.ndarray, dict[str, np.ndarray], list[str], list[int]]:
    """The galaxies that have both properties and a normalising band: (X, {target: y}, names, rows of
    ``phot``)."""
    X, usable = build_features(phot)
    keep = [i for i, n in enumerate(phot.names) if n in props and usable[i]]
    names = [phot.names[i] for i in keep]
    return X[keep], {t: np.array([props[n][t] for n in names]) for t in TARGETS}, names, keep


def metrics(y, mu, sigma=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """RMSE, R², mean error (bias) with bootstrap 1σ uncertainties; χ² = mean((r/σ)²) if σ given."""
    y, mu = np.asarray(y, float), np.asarray(mu, float)
    r = mu - y
    rng = np.random.default_rng(seed)

    def stats(i):
        rr, yy = r[i], y[i]
        return np.sqrt(np.mean(rr**2)), 1.0 - np.sum(rr**2) / np.sum((yy - yy.mean()) ** 2), np.mean(rr)

    point = stats(np.arange(len(y)))
    boots = np.array([stats(rng.integers(0, len(y), len(y))) for _ in range(n_boot)])
    out = dict(n=len(y), rmse=point[0], rmse_err=boots[:, 0].std(), r2=point[1], r2_err=boots[:, 1].std(),
               bias=point[2], bias_err=boots[:, 2].std())
    if sigma is not None:
        z2 = (r / np.asarray(sigma)) ** 2
        out.update(chi2=float(np.mean(z2)), chi2_err=float(np.std([np.mean(z2[rng.integers(0, len(y), len(y))])
                                                                   for _ in range(n_boot)])),
                   frac_1sigma=float(np.mean(np.abs(r) < sigma)))
    return {k: float(v) if not isinstance(v, int) else v for k, v in out.items()}


DEFAULT_MODEL = shipped_path("fir")

RF_PARAMS = dict(n_estimators=200, max_depth=8, subsample=0.8, colsample_bynode=0.3, min_child_weight=2,
                 learning_rate=1.0, reg_lambda=1e-5)
# σ model: shallow, few rounds and large leaves. A σ model that fits its training residuals closely
# has noisy σ, and the calibration factor then overestimates σ (``docs/fir_model.md``)
SIGMA_PARAMS = dict(max_depth=3, eta=0.05, subsample=0.8, colsample_bynode=0.6, min_child_weight=20, reg_lambda=1.0)
SIGMA_ROUNDS = 50


def _nll_objective(preds, dtrain):
    r = dtrain.get_label()
    e = np.exp(-2.0 * preds)
    grad = 1.0 - r**2 * e
    hess = np.maximum(2.0 * r**2 * e, 1e-6)
    return grad, hess


@dataclass
class _TargetModel:
    forest: object  # xgboost.XGBRFRegressor
    sigma: object  # xgboost.Booster predicting ln σ
    scale: float  # calibration factor on σ


@dataclass
class FIRModel:
    """Per-target random forest + σ model; ``predict(X) -> {target: (μ, σ)}``."""

    models: dict[str, _TargetModel]
    features: list[str]
    meta: dict = field(default_factory=dict)
    fast: object = None  # a distilled galdust.fir.fast.FastFIR (maps use it), or None

    def predict_pixels(self, X: np.ndarray, exact: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """As :meth:`predict`, by the distilled MLP when the model has one (faster), else the trees."""
        return self.predict(X) if exact or self.fast is None else self.fast.predict(X)

    def predict(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        import xgboost as xgb

        X = np.asarray(X, np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"the model takes {len(self.features)} features, got {X.shape[-1]}: it was trained with "
                             "another galdust version (retrain it with `galdust fir train`)")
        out = {}
        dm = xgb.DMatrix(X, missing=np.nan)
        for t, m in self.models.items():
            mu = m.forest.predict(X)
            s = m.sigma.predict(dm)
            out[t] = (mu.astype(float), (m.scale * np.exp(s)).astype(float))
        return out

    def outside(self, X: np.ndarray) -> list[str]:
        """Per row of ``X`` (:func:`build_features`): '' inside the training domain, else a note naming
        the features out of range (no note when the model has no stored domain)."""
        dom = self.meta.get("domain")
        if not dom:
            return [""] * len(X)
        cols = [self.features.index(f) for f in dom["features"]]
        return outside_notes(dom, np.asarray(X, float)[:, cols])

    def save(self, directory: str | Path, extra: dict | None = None) -> Path:
        """Write the model folder atomically (a temporary folder renamed onto ``directory``); the
        sidecar records the SHA-256 of the trees (``fast.eqx`` has its own sidecar)."""

        def write(tmp: Path) -> list[str]:
            names = []
            for t, m in self.models.items():
                m.forest.save_model(tmp / f"{t}.forest.json")
                m.sigma.save_model(tmp / f"{t}.sigma.json")
                names += [f"{t}.forest.json", f"{t}.sigma.json"]
            if self.fast is not None:
                from .fast import save_fast

                save_fast(tmp, self.fast, self.meta.get("fast", {}))
            return names

        meta = dict(self.meta, features=self.features, targets=list(self.models),
                    scales={t: m.scale for t, m in self.models.items()}, **(extra or {}))
        return save_folder(directory, write, SIDECAR, meta, overwrite=True)

    @classmethod
    def load(cls, directory: str | Path) -> "FIRModel":
        import xgboost as xgb

        from .fast import load_fast

        directory = Path(directory)
        meta = load_folder(directory, SIDECAR)
        models = {}
        for t in meta["targets"]:
            f = xgb.XGBRFRegressor()
            f.load_model(directory / f"{t}.forest.json")
            models[t] = _TargetModel(f, load_booster(directory / f"{t}.sigma.json"), float(meta["scales"][t]))
        return cls(models, meta["features"], meta, load_fast(directory))


def _fit_forest(X, y, seed, w=None, cache=None):
    import xgboost as xgb

    def fit():
        m = xgb.XGBRFRegressor(**RF_PARAMS, random_state=seed, n_jobs=n_threads(len(y)), tree_method="hist")
        return m.fit(X, y, sample_weight=w)

    return (cache or FitCache())(fit, X, y, np.zeros(0) if w is None else w, seed, RF_PARAMS)


def _fit_sigma(X, r, seed, w=None, params=None, rounds=SIGMA_ROUNDS, cache=None):
    import xgboost as xgb

    params = dict(params or SIGMA_PARAMS, seed=seed, base_score=float(np.log(np.std(r) + 1e-12)))

    def fit():
        d = xgb.DMatrix(X, label=r, weight=w, missing=np.nan)
        return xgb.train(dict(params, nthread=n_threads(len(r))), d, rounds, obj=_nll_objective)

    return (cache or FitCache())(fit, X, r, np.zeros(0) if w is None else w, params, rounds)


def _oof(views, y, k, seed, w=None, groups=None, cache=None):
    """Out-of-fold forest predictions (k folds) on the training set, one array per view of the rows
    (``views[0]`` is what the forests learn from; the others, e.g. fewer bands, are only predicted)."""
    p = out_of_fold(folds(len(y), k, seed, groups), k,
                    lambda tr, f: _fit_forest(views[0][tr], y[tr], seed + f, None if w is None else w[tr], cache),
                    lambda m, te: np.stack([m.predict(v[te]) for v in views], axis=1))
    return list(p.T)


def train_model(X: np.ndarray, Y: dict[str, np.ndarray], *, seed: int = 0, calib_frac: float = 0.1,
                weights: np.ndarray | None = None, groups: np.ndarray | None = None,
                features: list[str] | None = None, oof_folds: int = OOF_FOLDS,
                sigma_params: dict | None = None, sigma_rounds: int = SIGMA_ROUNDS,
                augment: np.ndarray | None = None, cache=None) -> FIRModel:
    """Train the forests (all rows), σ models (out-of-fold residuals) and σ calibration.

    ``sigma_params`` / ``sigma_rounds`` replace the σ model's xgboost settings (default
    ``SIGMA_PARAMS`` / ``SIGMA_ROUNDS``); ``calib_frac`` is 1 / the folds of the calibration factor.

    ``augment`` (n_copies, N, n_feat): the same rows seen through fewer bands
    (:func:`band_dropout_features`). The forests and the calibration factor use ``X`` alone; the σ
    models also learn from the copies' out-of-fold residuals (each copy in its row's folds), so that σ
    grows as much as the error does when bands are missing.

    Per-pixel training (Dobbels & Baes 2021): ``groups`` = galaxy of each pixel (out-of-fold
    predictions and the calibration folds keep galaxies whole) and ``weights`` = 1/N_pix(galaxy), so
    that every galaxy counts once. ``cache``: a :class:`~galdust.ml.trees.FitCache` (a killed run resumes).
    """
    import xgboost as xgb

    sigma_params = dict(sigma_params or SIGMA_PARAMS)
    X = np.asarray(X, np.float32)
    if augment is not None and (weights is not None or groups is not None):
        raise ValueError("augment is for galaxy-level training (no weights or groups)")
    copies = [] if augment is None else [np.asarray(a, np.float32) for a in augment]
    models = {}
    for t in TARGETS:
        y = np.asarray(Y[t], float)
        ok = np.isfinite(y)
        Xt, yt = X[ok], y[ok]
        wt = None if weights is None else np.asarray(weights, float)[ok]
        gt = None if groups is None else np.asarray(groups)[ok]
        views = [Xt] + [a[ok] for a in copies]  # every view of the same rows
        r = np.concatenate([p - yt for p in _oof(views, yt, oof_folds, seed, wt, gt, cache)])
        Xs = np.concatenate(views)
        ws = None if wt is None else np.tile(wt, len(views))
        # calibration factor from σ predicted on held-out rows: cross-fitted over 1/calib_frac folds
        # (every row is held out once, so the factor rests on all rows, not on one small split)
        n_cal = max(2, int(round(1.0 / calib_frac)))
        cfold = np.tile(folds(len(yt), n_cal, seed + 1, gt), len(views))  # a row's copies share its folds
        s_cal = np.full(len(r), np.nan)
        for c in range(n_cal):
            held = cfold == c
            if not held.any() or held.all():  # fewer groups than folds
                continue
            sig = _fit_sigma(Xs[~held], r[~held], seed + c, None if ws is None else ws[~held], sigma_params,
                             sigma_rounds, cache)
            s_cal[held] = np.exp(sig.predict(xgb.DMatrix(Xs[held], missing=np.nan)))
        cal = np.isfinite(s_cal)
        cal[len(yt):] = False  # the factor is set on the rows as given; the copies shape σ, not its scale
        scale = float(np.sqrt(np.average((r[cal] / s_cal[cal]) ** 2, weights=None if ws is None else ws[cal])))
        sig = _fit_sigma(Xs, r, seed, ws, sigma_params, sigma_rounds, cache)  # all rows; the held-out factor
        models[t] = _TargetModel(_fit_forest(Xt, yt, seed, wt, cache), sig, scale)
    features = features or feature_names()
    logs = [i for i, f in enumerate(features) if f.startswith("log_")]  # the linear ratios repeat them
    domain = dict(fit_ranges(X[:, logs], [features[i] for i in logs]), neighbours=fit_neighbours(X[:, logs]))
    return FIRModel(models, features, dict(domain=domain, seed=seed, n_train=int(len(X)), rf_params=RF_PARAMS,
                                           sigma_params=sigma_params, sigma_rounds=sigma_rounds,
                                           per_pixel=groups is not None, dropout_copies=len(copies)))


def cross_validate(X, Y: dict[str, np.ndarray], names, *, k: int = 4, seed: int = 0, oof_folds: int = OOF_FOLDS,
                   augment: np.ndarray | None = None, test_views: dict[str, np.ndarray] | None = None,
                   **train_kw) -> dict:
    """Galaxy-level k-fold CV: {target: metrics}, plus the out-of-fold predictions (``train_kw``: more
    :func:`train_model` options, e.g. the σ model's settings). ``augment``: band-dropout copies of the
    rows (each fold trains on its rows' copies); ``test_views``: other feature matrices of the same
    rows (e.g. fewer bands), predicted by each fold's model too (``views[name]`` = oof_mu, oof_sigma)."""
    X = np.asarray(X, np.float32)
    fold = folds(len(X), k, seed)
    views = dict(full=X, **(test_views or {}))
    mu = {v: {t: np.full(len(X), np.nan) for t in TARGETS} for v in views}
    sg = {v: {t: np.full(len(X), np.nan) for t in TARGETS} for v in views}
    for f in range(k):
        tr, te = fold != f, fold == f
        m = train_model(X[tr], {t: np.asarray(Y[t])[tr] for t in TARGETS}, seed=seed + 17 * f, oof_folds=oof_folds,
                        augment=None if augment is None else np.asarray(augment)[:, tr], **train_kw)
        for v, Xv in views.items():
            p = m.predict(np.asarray(Xv, np.float32)[te])
            for t in TARGETS:
                mu[v][t][te], sg[v][t][te] = p[t]
    res = {}
    for t in TARGETS:
        y = np.asarray(Y[t], float)
        ok = np.isfinite(y)
        res[t] = metrics(y[ok], mu["full"][t][ok], sg["full"][t][ok])
    return dict(metrics=res, oof_mu=mu["full"], oof_sigma=sg["full"], folds=fold.tolist(), k=k, seed=seed,
                names=list(names), views={v: dict(oof_mu=mu[v], oof_sigma=sg[v]) for v in test_views or {}})


def nan_to_none(d):
    if isinstance(d, dict):
        return {k: nan_to_none(v) for k, v in d.items()}
    if isinstance(d, float) and not math.isfinite(d):
        return None
    return d
