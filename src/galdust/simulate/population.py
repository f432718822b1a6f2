"""The galaxy population of a real survey: the SED simulator's prior calibrated to real photometry.

The simulator's own prior (:class:`galdust.simulate.sed.SEDConfig`, 'broad') covers far more than
real galaxies do (uniform mass, every SFH, A_V to 3 mag): a posterior trained on it answers real SDSS
galaxies with the wrong prior (the sim-to-real gap, ``bench/bench_sim_to_real.py``). This module
learns, from real photometry alone (no property of a real galaxy), a weight ν(θ) on the simulator's
parameters such that the calibrated prior ν(θ)·p_broad(θ), pushed through the simulator (SED, noise,
selection), reproduces the real catalogue: magnitudes, colours, S/N and spectroscopic redshifts.

Method: iterative classifier reweighting, the classifier form of the EM (Richardson–Lucy) update of a
population prior — OmniFold (Andreassen et al. 2020, PRL 124, 182001):

1. *observed space*: a classifier told real galaxies from selected simulated ones (weighted by the
   current ν) gives the density ratio w(x) = p/(1 − p) at each simulated galaxy's observables;
2. *parameter space*: a second classifier, told the simulated galaxies weighted by ν·w from the same
   galaxies weighted by ν, on their physical parameters θ only, gives the update ν ← ν·q/(1 − q): the
   part of w that the parameters explain (E[w | θ]). Because the update depends on θ alone, the new
   prior is a proper prior (weighting by w(x) would not change any posterior).

Each update is clipped to [1/clip, clip] and the parameter classifiers are shallow and regularised, so
ν is smooth in θ. ν is a product of the parameter classifiers' odds: :meth:`Population.log_weight`
evaluates it on any θ, and :func:`galdust.simulate.sed.simulate_photometry` draws from the calibrated
prior by rejection (accept with probability ν/ν_max).

Photometric zero-points: the stellar-population models and the survey's photometric system differ by
a few hundredths of a magnitude per band (SDSS u and z are 0.04 and 0.02 mag off AB; BC03 colours of old
populations carry their own systematics), and no reweighting can move a colour locus. Between rounds
of reweighting, one offset per band (r fixed) is fitted by minimising the maximum mean discrepancy of the
colours, the template-calibration step of photometric-redshift codes (Ilbert et al. 2006; Brammer et
al. 2008). They are stored with the weights and applied by the simulator with this population.

The bulge + disk image simulator (:mod:`galdust.simulate.sed_images`) gets its own population
(``calibrate(..., simulator='images')``, ``galdust calibrate-population --images``): the same method
on its photometry (the two components' light summed), with ``IMAGE_THETA_NAMES`` (B/T, the bulge's
age and e-folding time, the inclination) among the weighted parameters; the images of the accepted
galaxies are rendered afterwards.

Model folder: the parameter classifiers (xgboost JSON) and the sidecar ``population.json`` with their
SHA-256 (:func:`galdust.weights.save_folder`). What the shipped population gives: ``docs/sim_to_real.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["THETA_NAMES", "IMAGE_THETA_NAMES", "OBS_NAMES", "theta_features", "image_theta_features",
           "observed_features", "Population", "calibrate", "c2st_auc", "is_population"]

#: the physical parameters the weights depend on (sample_params' draws and derived truths)
THETA_NAMES = ("z", "log_mstar", "logzsol", "nonparametric", "age_frac", "log_tau", "burst", "log_t_burst",
               "ratio_1", "ratio_2", "ratio_3", "ratio_4", "ratio_5", "ratio_6", "logu", "av_ism", "delta",
               "log_ssfr", "dn4000", "av_eff", "nuv")
#: the bulge + disk image simulator's (:mod:`galdust.simulate.sed_images`): the combined galaxy's
#: parameters and truths above (the disk's history and dust, the whole galaxy's sSFR, Dn4000 and
#: A_V), then the bulge-to-total mass ratio, the bulge's age and e-folding time, and the disk's
#: inclination (its dust grows with it)
IMAGE_THETA_NAMES = THETA_NAMES + ("bt", "log_age_bulge", "log_tau_bulge", "cos_incl")
#: the observables of a real catalogue compared with the simulation
OBS_NAMES = ("r", "u-g", "g-r", "r-i", "i-z", "log_snr_r", "z")
R_LIMIT = 17.77  # SDSS main sample (extinction-corrected r)
SIDECAR = "population.json"
ENVELOPE_QUANTILE = 0.995


def theta_features(params: dict, truths: dict) -> np.ndarray:
    """(n, len(THETA_NAMES)) float32 from ``sed.sample_params`` draws and ``sed.sed_truths`` truths."""
    p = {k: np.asarray(v) for k, v in params.items()}
    return np.column_stack([
        p["z"], p["logm"], p["logz"], p["nonparam"].astype(float), p["age"] / p["t_univ"], np.log10(p["tau"]),
        p["burst"], np.log10(p["t_burst"]), p["ratios"], p["logu"], p["av"], p["delta"],
        np.asarray(truths["log_sfr"]) - np.asarray(truths["log_mstar"]), np.asarray(truths["dn4000"]),
        np.asarray(truths["av"]), p.get("nuv", np.zeros(len(p["z"])))]).astype(np.float32)


def image_theta_features(params: dict, truths: dict) -> np.ndarray:
    """(n, len(IMAGE_THETA_NAMES)) float32 from ``sed_images`` component draws and their truths."""
    p = {k: np.asarray(v) for k, v in params.items()}
    return np.column_stack([theta_features(params, truths), p["bt"], np.log10(p["age_b"]), np.log10(p["tau_b"]),
                            np.cos(p["incl"])]).astype(np.float32)


def _theta_names(simulator: str) -> tuple[str, ...]:
    return IMAGE_THETA_NAMES if simulator == "images" else THETA_NAMES


def observed_features(flux, flux_err, z) -> np.ndarray:
    """(n, 7): r [mag], the four adjacent ugriz colours, log10 S/N in r, redshift. NaN where unusable."""
    flux, flux_err = np.asarray(flux, float), np.asarray(flux_err, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = 22.5 - 2.5 * np.log10(np.clip(flux, 1e-2, None))
        snr = np.log10(np.clip(flux[:, 2] / flux_err[:, 2], 1e-2, None))
    return np.column_stack([m[:, 2], m[:, :-1] - m[:, 1:], snr, np.asarray(z, float)])


def _classifier(seed: int, depth: int, n: int, min_child_weight: float, n_rows: int | None = None):
    import xgboost as xgb

    from ..ml.trees import n_threads

    return xgb.XGBClassifier(n_estimators=n, max_depth=depth, learning_rate=0.05, subsample=0.8,
                             colsample_bytree=0.8, min_child_weight=min_child_weight, reg_lambda=5.0,
                             n_jobs=n_threads(n_rows), random_state=seed, tree_method="hist")


def _fit_classifier(cache, seed: int, depth: int, n: int, min_child_weight: float, X, y, w):
    """:func:`_classifier` fitted to (X, y, w), or read back from ``cache`` (a FitCache) after a kill."""
    from ..ml.trees import FitCache

    def fit():
        return _classifier(seed, depth, n, min_child_weight, len(y)).fit(X, y, sample_weight=w)

    return (cache or FitCache())(fit, X, y, w, seed, depth, n, min_child_weight)


def _odds(p, clip):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.clip(p / (1 - p), 1.0 / clip, clip)


def c2st_auc(X_sim, w_sim, X_real, *, seed: int = 0, n_max: int = 5000) -> float:
    """Classifier two-sample test: 5-fold out-of-fold ROC AUC of gradient-boosted trees told ``X_real``
    from an equal number of rows of ``X_sim`` drawn with probabilities ∝ ``w_sim``. 0.5: alike."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    m = min(len(X_real), n_max)
    w = np.ones(len(X_sim)) if w_sim is None else np.asarray(w_sim, float)
    ia = rng.choice(len(X_sim), size=m, p=w / w.sum(), replace=True)
    ib = rng.permutation(len(X_real))[:m]
    X, y = np.r_[X_sim[ia], X_real[ib]], np.r_[np.ones(m), np.zeros(m)]
    p = np.zeros(len(y))
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y):
        p[te] = _classifier(seed, 3, 200, 1.0, len(tr)).fit(X[tr], y[tr]).predict_proba(X[te])[:, 1]
    return float(roc_auc_score(y, p))


@dataclass
class Population:
    """ν(θ) = Π_k clip(odds of parameter classifier k), normalised so its mean over the broad prior's
    selected galaxies is 1; ``log_w_max``: the largest log ν seen there (the rejection envelope);
    ``zeropoints``: band → mag added to the simulator's magnitudes; ``meta['nuv_max']``, ``meta['z0']``,
    ``meta['z_max']``: the broad prior's near-UV correction range and redshift distribution it was
    calibrated on (:meth:`config` puts them in a simulator config); ``meta['simulator']``: 'sed' (the
    photometric simulator, parameters ``THETA_NAMES``) or 'images' (bulge + disk images,
    ``IMAGE_THETA_NAMES``)."""

    boosters: list
    clip: float
    zeropoints: dict[str, float]
    log_norm: float
    log_w_max: float
    meta: dict = field(default_factory=dict)

    @property
    def simulator(self) -> str:
        return str(self.meta.get("simulator", "sed"))

    @property
    def theta_names(self) -> tuple[str, ...]:
        return _theta_names(self.simulator)

    def log_weight(self, theta: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        theta = np.asarray(theta, np.float32)
        if theta.ndim != 2 or theta.shape[1] != len(self.theta_names):
            raise ValueError(f"the population weights take {len(self.theta_names)} parameters, got {theta.shape}")
        d = xgb.DMatrix(theta)
        lw = np.zeros(len(theta))
        for b in self.boosters:
            lw += np.log(_odds(b.predict(d), self.clip))
        return lw - self.log_norm

    def config(self, cfg):
        """``cfg`` (a :class:`~galdust.simulate.sed.SEDConfig`) with the broad prior this population
        reweights: its near-UV correction range and, where its sidecar has them, its redshift
        distribution (``z0``, ``z_max``; older populations reweight the simulator's default)."""
        from dataclasses import replace

        kw = dict(nuv_max=float(self.meta.get("nuv_max", 0.0)))
        if "z0" in self.meta:
            kw["z0"] = float(self.meta["z0"])
        if "z_max" in self.meta:
            kw["z_range"] = (cfg.z_range[0], float(self.meta["z_max"]))
        return replace(cfg, **kw)

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        from ..weights import save_folder

        names = [f"theta_classifier_{i}.json" for i in range(len(self.boosters))]

        def write(tmp: Path) -> None:
            for b, name in zip(self.boosters, names):
                b.save_model(str(tmp / name))

        meta = dict({k: v for k, v in self.meta.items() if not k.startswith("_")}, kind="population",
                    simulator=self.simulator, theta=list(self.theta_names), observables=list(OBS_NAMES),
                    clip=self.clip, zeropoints=self.zeropoints,
                    log_norm=self.log_norm, log_w_max=self.log_w_max, boosters=[dict(file=n) for n in names])
        return save_folder(directory, write, SIDECAR, meta, overwrite=overwrite)

    @classmethod
    def load(cls, directory: str | Path) -> "Population":
        import xgboost as xgb

        from ..io import InputError
        from ..ml.trees import load_booster
        from ..weights import load_folder

        directory = Path(directory)
        meta = load_folder(directory, SIDECAR)
        theta, names = list(meta.get("theta", [])), _theta_names(str(meta.get("simulator", "sed")))
        if theta != list(names):
            missing = [t for t in names if t not in theta]
            other = [t for t in theta if t not in names]
            raise InputError(f"{directory}: calibrated on another version of the simulator's parameters (missing "
                             f"{', '.join(missing) or 'none'}; unknown {', '.join(other) or 'none'}): calibrate it "
                             f"again with galdust calibrate-population")
        try:
            boosters = [load_booster(directory / f["file"]) for f in meta["boosters"]]
        except (OSError, ValueError, KeyError, xgb.core.XGBoostError) as e:
            raise InputError(f"{directory}: cannot read population weights ({' '.join(str(e).split())[:200]})") \
                from None
        return cls(boosters, float(meta["clip"]), {k: float(v) for k, v in meta["zeropoints"].items()},
                   float(meta["log_norm"]), float(meta["log_w_max"]), meta)


def is_population(path: str | Path) -> bool:
    return (Path(path) / SIDECAR).is_file()


def _mmd(a, wa, b, scale=0.5):
    """Squared MMD (Gaussian kernel of width ``scale`` in standardised units) of weighted ``a`` and ``b``."""
    def k(p, q):
        return np.exp(-0.5 * ((p[:, None, :] - q[None]) ** 2).sum(-1) / scale**2)

    wa = wa / wa.sum()
    return float(wa @ k(a, a) @ wa - 2 * wa @ k(a, b).mean(1) + k(b, b).mean())


def fit_zeropoints(colours_sim, w_sim, colours_real, start, *, seed: int = 0, n: int = 1500) -> np.ndarray:
    """Offsets (u, g, i, z; r fixed) [mag] added to simulated magnitudes that bring the weighted
    simulated colours (u−g, g−r, r−i, i−z) closest to the real ones (Nelder–Mead on the MMD)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    ia = rng.choice(len(colours_sim), size=min(n, len(colours_sim)), p=w_sim / w_sim.sum(), replace=True)
    a0 = colours_sim[ia]
    b = colours_real[rng.permutation(len(colours_real))[:n]]
    mu, sd = b.mean(0), b.std(0)
    ones = np.ones(len(a0))

    def shift(o):  # o = (du, dg, di, dz): colours change by du−dg, dg−0, 0−di, di−dz
        return np.array([o[0] - o[1], o[1], -o[2], o[2] - o[3]])

    def obj(o):
        return _mmd((a0 + shift(o) - mu) / sd, ones, (b - mu) / sd)

    res = minimize(obj, np.asarray(start, float), method="Nelder-Mead",
                   options=dict(xatol=0.003, fatol=1e-7, maxiter=150))
    return res.x


def calibrate(theta: np.ndarray, flux_model: np.ndarray, noise: Callable, z: np.ndarray, real_obs: np.ndarray, *,
              rounds: int = 3, iterations: int = 3, clip: float = 20.0, seed: int = 0, zeropoints: bool = True,
              log: Callable[[str], None] = print, cache=None, simulator: str = "sed") -> tuple[Population, list[dict]]:
    """Fit ν(θ) (and the zero-points) so that the simulation matches ``real_obs`` (:func:`observed_features`).

    ``theta`` (n, len(THETA_NAMES)) (``simulator='images'``: (n, len(IMAGE_THETA_NAMES))) and
    ``flux_model`` (n, 5) ugriz noiseless [nmgy] of a broad simulation; ``noise(flux) -> (noisy, err)`` its noise model (fixed draws); ``z`` its redshifts.
    ``rounds`` alternations of zero-point fit and ``iterations`` OmniFold updates each. ``cache``: a
    :class:`~galdust.ml.trees.FitCache` (a killed run resumes).
    Returns the population and a history (per round: zero-points, the in-sample C2ST AUC, ESS); the
    last round's observables and selection are in ``pop.meta['_last']`` (not saved) for held-out tests.
    """
    n = len(theta)
    zp = np.zeros(4)  # u, g, i, z
    hist = []
    boosters = []
    nu = np.ones(n)
    for rnd in range(rounds):
        t0 = time.perf_counter()
        off = np.array([zp[0], zp[1], 0.0, zp[2], zp[3]])
        noisy, err = noise(flux_model * 10 ** (-0.4 * off))
        X = observed_features(noisy, err, z)
        sel = np.isfinite(X).all(axis=1) & (X[:, 0] < R_LIMIT)
        nu, boosters = np.ones(n), []
        for it in range(iterations):
            Xo = np.r_[X[sel], real_obs]
            yo = np.r_[np.zeros(sel.sum()), np.ones(len(real_obs))]
            wo = np.r_[nu[sel] / nu[sel].sum() * len(real_obs), np.ones(len(real_obs))]
            c1 = _fit_classifier(cache, seed + 10 * rnd + it, 3, 200, 20.0, Xo, yo, wo)
            # the selected galaxies' total weight is kept (the real catalogue says nothing about how
            # many galaxies the selection misses); unselected ones keep theirs
            odds = _odds(c1.predict_proba(X[sel])[:, 1], clip)
            w = nu.copy()
            w[sel] = nu[sel] * odds * nu[sel].sum() / (nu[sel] * odds).sum()
            c2 = _fit_classifier(cache, seed + 100 + 10 * rnd + it, 5, 300, 50.0, np.r_[theta, theta],
                                 np.r_[np.ones(n), np.zeros(n)], np.r_[w, nu] * (2 * n / (w.sum() + nu.sum())))
            nu = nu * _odds(c2.predict_proba(theta)[:, 1], clip)
            nu /= nu[sel].mean()
            boosters.append(c2.get_booster())
        ess = nu[sel].sum() ** 2 / (nu[sel] ** 2).sum()
        auc = c2st_auc(X[sel], nu[sel], real_obs, seed=seed)
        hist.append(dict(round=rnd, zeropoints=dict(zip("ugriz", off.round(4).tolist())), c2st_in_sample=auc,
                         ess=float(ess), n_selected=int(sel.sum()), seconds=round(time.perf_counter() - t0, 1)))
        log(f"round {rnd + 1}/{rounds}: zero-points u,g,r,i,z {np.round(off, 3).tolist()}  C2ST AUC (fit rows) "
            f"{auc:.3f}  ESS {ess:.0f} of {sel.sum()}  ({time.perf_counter() - t0:.0f} s)")
        if zeropoints and rnd < rounds - 1:
            zp = fit_zeropoints(X[sel][:, 1:5], nu[sel], real_obs[:, 1:5], zp, seed=seed + rnd)
    # the product of the last round's classifiers reproduces nu (recomputed here from the boosters)
    pop = Population(boosters, clip, dict(zip(("sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z"),
                                              off.round(4).tolist())), 0.0, 0.0, dict(simulator=simulator))
    lw = pop.log_weight(theta)
    pop.log_norm = float(np.log(np.mean(np.exp(lw[sel]))))
    pop.meta["_last"] = dict(X=X, selected=sel, log_weight=lw - pop.log_norm)
    # the rejection envelope: the 99.5th percentile of the selected galaxies' weights. The rarest 0.5 %
    # are truncated to it (what that costs and gains in acceptance: docs/sim_to_real.md)
    pop.log_w_max = float(np.quantile(lw[sel], ENVELOPE_QUANTILE) - pop.log_norm)
    return pop, hist
