"""Redshift of SDSS galaxies: gradient-boosted quantile regression on the photometry and on the
simulation-trained CFM's posterior (``galdust posterior train-z`` / ``sample --model z-sdss``).

Neither the simulator alone (its quiescent galaxies are too red) nor a few thousand real galaxies
alone give SDSS-grade redshifts (measurements: ``docs/sim_to_real.md``). This model uses both:
xgboost quantile regression (16, 50, 84 %) of z on

* extinction-corrected ugriz model luptitudes and adjacent colours,
* Petrosian − model luptitudes per band (the light profile's concentration),
* 2MASS r − J, J − H, H − K, r − K (NaN where 2MASS has no detection),
* the photometric CFM's posterior summary of the same galaxy: p16/p50/p84 of each of its properties
  (log M*, log SFR, log Z, Dn4000, A_V, z): the simulator's knowledge of which colours go with which
  redshift and population,

trained on real SDSS galaxies with spectroscopic redshifts. Missing columns (no Petrosian or 2MASS
photometry) enter as missing values. The 16–84 % interval is widened about the median by a factor
set by nested cross-validation so that it covers 68 % of the training galaxies' out-of-fold
redshifts. The CFM features use the same noise draws for every row (common random numbers), so a
galaxy's prediction does not depend on its place in the table.

Model folder: ``booster.json`` (xgboost JSON, one booster, three quantiles) and the sidecar
``z_model.json`` (features, calibration factor, training rows and data digest, cross-validated metrics,
SHA-256 of the booster; :func:`galdust.weights.save_folder`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import InputError, float_column
from ..ml.trees import FitCache, folds, load_booster, n_threads, out_of_fold
from ..weights import load_folder, read_sidecar, save_folder

__all__ = ["FEATURES", "QUANTILES", "RedshiftModel", "sdss_table_features", "cfm_features", "train_redshift",
           "cross_validate_redshift", "zstats", "is_redshift_model", "redshift_cfm_path"]

QUANTILES = (0.16, 0.5, 0.84)
BANDS = "ugriz"
PHOT_FEATURES = ([f"{b}" for b in BANDS] + [f"{a}-{b}" for a, b in zip(BANDS, BANDS[1:])]
                 + [f"petro-model_{b}" for b in BANDS] + ["r-J", "J-H", "H-K", "r-K"])
CFM_PROPS = ("log_mstar", "log_sfr", "logzsol", "dn4000", "av", "z")
CFM_FEATURES = [f"cfm_{p}_{q}" for p in CFM_PROPS for q in ("p16", "p50", "p84")]
FEATURES = PHOT_FEATURES + CFM_FEATURES
SIDECAR = "z_model.json"
# chosen by 5-fold CV on the development galaxies (docs/sim_to_real.md)
PARAMS = dict(n_estimators=1500, max_depth=6, learning_rate=0.01, subsample=0.8, colsample_bytree=0.8,
              min_child_weight=5)
CFM_SAMPLES, CFM_STEPS = 300, 20


def _lupt(flux):
    from .model import luptitudes

    return luptitudes(flux, [1.0] * 5)


def sdss_table_features(path: str | Path):
    """Photometric features (n, len(PHOT_FEATURES)) of an SDSS table (``MODELFLUX`` (n, 5) ugriz [nmgy],
    optional ``EXTINCTION``, ``PETROFLUX``, ``J_M_EXT``/``H_M_EXT``/``K_M_EXT`` [Vega mag]) and the
    spectroscopic ``Z`` when the table has it (else None)."""
    from astropy.table import Table

    path = Path(path)
    try:
        t = Table.read(path)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: cannot read the table ({' '.join(str(e).split())[:200]})") from None
    if "MODELFLUX" not in t.colnames:
        raise InputError(f"{path}: the redshift model reads SDSS tables (MODELFLUX ugriz); this one has none")
    f = float_column(t, "MODELFLUX")
    if f.ndim != 2 or f.shape[1] != 5:
        raise InputError(f"{path}: MODELFLUX must be (n, 5) ugriz, got {f.shape}")
    corr = 10 ** (0.4 * float_column(t, "EXTINCTION")) if "EXTINCTION" in t.colnames else np.ones_like(f)
    m = _lupt(f * corr)
    pm = _lupt(float_column(t, "PETROFLUX") * corr) - m if "PETROFLUX" in t.colnames else np.full_like(m, np.nan)

    def nir(name):
        if name not in t.colnames:
            return np.full(len(t), np.nan)
        v = float_column(t, name)
        return np.where((v > 0) & np.isfinite(v), v, np.nan)

    J, H, K = nir("J_M_EXT"), nir("H_M_EXT"), nir("K_M_EXT")
    X = np.c_[m, m[:, :-1] - m[:, 1:], pm, m[:, 2] - J, J - H, H - K, m[:, 2] - K]
    z = float_column(t, "Z") if "Z" in t.colnames else None
    return X, z


def cfm_features(cfm, flux, key=None) -> np.ndarray:
    """The CFM posterior summary features (n, len(CFM_FEATURES)) of ugriz fluxes (n, 5) [nmgy], with
    the same noise draws for every row."""
    import jax.numpy as jnp
    import jax.random as jr

    from .model import percentiles

    key = jr.PRNGKey(0) if key is None else key
    if tuple(cfm.props) != CFM_PROPS:
        raise ValueError(f"the redshift model reads a CFM of {', '.join(CFM_PROPS)}; this one infers {cfm.props}")
    keys = jnp.tile(jnp.asarray(key)[None], (len(flux), 1))  # the same key for every row
    pct, _ = percentiles(cfm, flux, keys, CFM_SAMPLES, CFM_STEPS)
    return pct.reshape(len(flux), -1)  # (prop, quantile), as CFM_FEATURES


def zstats(z_true, z_pred, lo=None, hi=None) -> dict:
    """σ_NMAD of Δz/(1+z), outlier fraction (|Δz|/(1+z) > 0.05), median bias, 16–84 % coverage."""
    d = (z_pred - z_true) / (1 + z_true)
    out = dict(nmad=float(1.4826 * np.median(np.abs(d - np.median(d)))), outliers=float(np.mean(np.abs(d) > 0.05)),
               bias=float(np.median(d)), n=int(len(d)))
    if lo is not None:
        out["coverage"] = float(np.mean((z_true >= lo) & (z_true <= hi)))
    return out


def _fit(X, y, seed, params=None, cache=None):
    import xgboost as xgb

    def fit():
        m = xgb.XGBRegressor(objective="reg:quantileerror", quantile_alpha=np.array(QUANTILES), n_jobs=n_threads(len(y)),
                             random_state=seed, **(params or PARAMS))
        return m.fit(X, y)

    return (cache or FitCache())(fit, X, y, seed, params or PARAMS, QUANTILES)


def _widen(q, s):
    return np.c_[q[:, 1] - s * (q[:, 1] - q[:, 0]), q[:, 1], q[:, 1] + s * (q[:, 2] - q[:, 1])]


def _oof(X, y, seed, k, params=None, cache=None):
    return out_of_fold(folds(len(y), k, seed), k, lambda tr, f: _fit(X[tr], y[tr], seed, params, cache),
                       lambda m, te: np.sort(m.predict(X[te]), axis=1))


def _scale(q, y) -> float:
    """The widening factor of the 16–84 % interval about the median that covers 68 % of ``y``."""
    grid = np.linspace(0.5, 3.0, 251)
    cov = [np.mean((y >= q[:, 1] - s * (q[:, 1] - q[:, 0])) & (y <= q[:, 1] + s * (q[:, 2] - q[:, 1]))) for s in grid]
    return float(grid[np.argmin(np.abs(np.asarray(cov) - 0.68))])


def cross_validate_redshift(X, y, seed: int = 0, k: int = 5, params=None, cache=None) -> tuple[np.ndarray, dict]:
    """k-fold out-of-fold quantiles (n, 3), each fold's interval widened by a factor that nested CV on
    that fold's training galaxies sets; and their :func:`zstats` with the factors. ``cache``: a
    :class:`~galdust.ml.trees.FitCache` (a killed run resumes)."""
    fold = folds(len(y), k, seed)
    q, scales = np.empty((len(y), 3)), []
    for f in range(k):
        tr, te = fold != f, fold == f
        s = _scale(_oof(X[tr], y[tr], seed + 1, k, params, cache), y[tr])
        scales.append(s)
        q[te] = _widen(np.sort(_fit(X[tr], y[tr], seed, params, cache).predict(X[te]), axis=1), s)
    return q, dict(zstats(y, q[:, 1], q[:, 0], q[:, 2]), k=k, seed=seed, scales=scales)


@dataclass
class RedshiftModel:
    """xgboost quantile booster + calibration factor; ``predict(X) -> (n, 3)`` z p16/p50/p84."""

    booster: object
    scale: float
    features: list[str]
    meta: dict = field(default_factory=dict)

    def predict(self, X: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        X = np.asarray(X, np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"the redshift model takes {len(self.features)} features, got {X.shape[-1]}")
        q = np.sort(np.asarray(self.booster.predict(xgb.DMatrix(X, missing=np.nan)), float).reshape(len(X), 3), axis=1)
        return _widen(q, self.scale)

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write the model folder (``booster.json``, xgboost JSON, and the sidecar ``z_model.json``)
        atomically: a temporary folder renamed onto ``directory``."""
        meta = dict(self.meta, kind="z-sdss", features=self.features, scale=self.scale, quantiles=list(QUANTILES))
        return save_folder(directory, lambda tmp: self.booster.save_model(str(tmp / "booster.json")), SIDECAR, meta,
                           overwrite=overwrite)

    def cfm_path(self, shipped_dir: str | Path) -> Path:
        """The CFM whose posterior this model reads: the shipped file of that name when its digest
        matches, else the path it was trained with."""
        return _cfm_path(self.meta, shipped_dir)

    @classmethod
    def load(cls, directory: str | Path) -> "RedshiftModel":
        import xgboost as xgb

        directory = Path(directory)
        meta = load_folder(directory, SIDECAR)
        try:
            return cls(load_booster(directory / "booster.json"), float(meta["scale"]), list(meta["features"]), meta)
        except (OSError, ValueError, KeyError, xgb.core.XGBoostError) as e:
            raise InputError(f"{directory}: cannot read a redshift model ({' '.join(str(e).split())[:200]})") from None


def is_redshift_model(path: str | Path) -> bool:
    return (Path(path) / SIDECAR).is_file()


def redshift_cfm_path(directory: str | Path, shipped_dir: str | Path) -> Path:
    """``RedshiftModel.cfm_path`` from the model folder's sidecar alone (without reading the booster)."""
    return _cfm_path(load_folder(directory, SIDECAR, check_hash=False), shipped_dir)


def _cfm_path(meta: dict, shipped_dir: str | Path) -> Path:
    shipped = Path(shipped_dir) / meta["cfm"]
    if shipped.exists() and read_sidecar(shipped).get("sha256") == meta.get("cfm_sha256"):
        return shipped
    other = Path(meta.get("cfm_path", shipped))
    if not other.exists():
        raise InputError(f"{other}: the CFM this redshift model was trained with is missing")
    return other


def train_redshift(X, y, *, seed: int = 0, k: int = 5, source: str = "", params=None, cache=None) -> RedshiftModel:
    """Fit on all rows; the calibration factor from k-fold out-of-fold quantiles; the sidecar carries
    the nested-CV metrics (:func:`cross_validate_redshift`). ``cache``: a
    :class:`~galdust.ml.trees.FitCache` (a killed run resumes)."""
    ok = np.isfinite(y)
    X, y = np.asarray(X, np.float32)[ok], np.asarray(y, float)[ok]
    _, cv = cross_validate_redshift(X, y, seed, k, params, cache)
    scale = _scale(_oof(X, y, seed + 1, k, params, cache), y)
    m = _fit(X, y, seed, params, cache)
    digest = hashlib.sha256(np.ascontiguousarray(X).tobytes() + y.tobytes()).hexdigest()[:16]
    meta = dict(n_train=int(len(y)), seed=seed, params=params or PARAMS, data=source, data_digest=digest, cv=cv)
    return RedshiftModel(m.get_booster(), scale, list(FEATURES), meta)
