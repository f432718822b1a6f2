"""The sim-to-real gap of the SDSS photometry simulator (`galdust simulate-sed`), measured.

1. A classifier two-sample test (C2ST): gradient-boosted trees told to separate simulated SDSS
   galaxies (r < 17.77 after noise, as the SDSS main sample) from the 2,500 real development galaxies
   (`../shared/data/sdss/sdss_galaxies_dev.fits`, extinction-corrected MODELFLUX) on r, the four
   adjacent colours and log S/N in r; 5-fold out-of-fold ROC AUC overall and per redshift bin
   (spectroscopic z for the real galaxies, true z for the simulated ones; the classes balanced in
   each bin by subsampling). AUC 0.5: indistinguishable; 1: separable.
2. Where the simulator misses: the median colours of each class per bin, and the colours the
   classifier finds most 'simulated' or most 'real'.
3. A simulation-trained redshift (the same trees regressing z on the same features, trained on the
   simulations) on the real galaxies: σ_NMAD and the outlier fraction |Δz|/(1+z) > 0.05.

    python bench/bench_sim_to_real.py [--n-sim 40000] [--seed 11] [--prior sdss|broad|FOLDER] [--images]

``--images``: the bulge + disk image simulator (``simulate-sed --images``, its own calibrated
population for ``--prior sdss``), drawn with ``--r-limit 17.77`` (only those galaxies are rendered).

With a calibrated population (``--prior``, default the shipped ``sdss``) whose sidecar lists the real
rows held out of its fit, every number is computed on those rows only (the fit never saw them).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from galdust.cli import main as galdust
from galdust.posterior.data import read_catalog

SDSS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sdss" / "sdss_galaxies_dev.fits"
NAMES = ["r", "u-g", "g-r", "r-i", "i-z", "log S/N r"]
ZBINS = (0.0, 0.05, 0.1, 0.15, 0.45)


def features(flux, err):
    with np.errstate(divide="ignore", invalid="ignore"):
        m = 22.5 - 2.5 * np.log10(np.clip(flux, 1e-3, None))
        snr = np.log10(np.clip(flux[:, 2] / err[:, 2], 1e-3, None))
    return np.c_[m[:, 2], m[:, :-1] - m[:, 1:], snr]


def c2st(Xs, Xr, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    n = min(len(Xs), len(Xr))
    Xs, Xr = Xs[rng.permutation(len(Xs))[:n]], Xr[rng.permutation(len(Xr))[:n]]
    X, y = np.r_[Xs, Xr], np.r_[np.ones(n), np.zeros(n)]
    p = np.zeros(len(y))
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y):
        clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=seed).fit(X[tr], y[tr])
        p[te] = clf.predict_proba(X[te])[:, 1]
    return roc_auc_score(y, p), n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-sim", type=int, default=40000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--prior", default="sdss")
    ap.add_argument("--figure", default=None, help="also draw real vs broad vs calibrated colour densities here")
    ap.add_argument("--images", action="store_true", help="the bulge + disk image simulator")
    a = ap.parse_args()
    img = ["--images", "--r-limit", "17.77"] if a.images else []
    real = read_catalog(SDSS)
    ok = np.array([not x for x in real.notes]) & np.isfinite(real.truth["z"])
    held = _heldout(a.prior, a.images)
    if held is not None:
        mask = np.zeros(len(ok), bool)
        mask[held] = True
        ok &= mask
        print(f"population {a.prior}: the {ok.sum()} real rows held out of its fit\n")
    Xr, zr = features(real.flux[ok], real.flux_err[ok]), real.truth["z"][ok]
    with tempfile.TemporaryDirectory() as tmp:
        assert galdust(["simulate-sed", "--n", str(a.n_sim), "--seed", str(a.seed), "--prior", a.prior,
                        "--out", f"{tmp}/s.parquet", *img]) == 0
        sim = read_catalog(f"{tmp}/s.parquet")
    Xs_all, zs_all = features(sim.flux, sim.flux_err), sim.truth["z"]
    sel = np.isfinite(Xs_all).all(axis=1) & (Xs_all[:, 0] < 17.77)
    Xs, zs = Xs_all[sel], zs_all[sel]
    print(f"simulated: {a.n_sim} drawn, {sel.sum()} with r < 17.77 ({100 * sel.mean():.1f} %); real: {ok.sum()}\n")
    print("| z bin | N per class | C2ST AUC | median colours real (u-g, g-r, r-i, i-z) | simulated | median r real / sim |")
    print("|---|---|---|---|---|---|")
    auc, n = c2st(Xs, Xr, a.seed)
    print(f"| all | {n} | {auc:.3f} | {_med(Xr)} | {_med(Xs)} | {np.median(Xr[:, 0]):.2f} / {np.median(Xs[:, 0]):.2f} |")
    for lo, hi in zip(ZBINS[:-1], ZBINS[1:]):
        ir, is_ = (zr >= lo) & (zr < hi), (zs >= lo) & (zs < hi)
        if ir.sum() < 50 or is_.sum() < 50:
            print(f"| {lo:.2f}–{hi:.2f} | {min(ir.sum(), is_.sum())} | too few | | | |")
            continue
        auc, n = c2st(Xs[is_], Xr[ir], a.seed)
        print(f"| {lo:.2f}–{hi:.2f} | {n} | {auc:.3f} | {_med(Xr[ir])} | {_med(Xs[is_])} | "
              f"{np.median(Xr[ir, 0]):.2f} / {np.median(Xs[is_, 0]):.2f} |")
    print("\nz distribution: real median %.3f (16-84 %%: %.3f-%.3f), simulated %.3f (%.3f-%.3f)"
          % (np.median(zr), *np.percentile(zr, [16, 84]), np.median(zs), *np.percentile(zs, [16, 84])))
    from sklearn.ensemble import HistGradientBoostingRegressor

    reg = HistGradientBoostingRegressor(max_iter=400, learning_rate=0.05, random_state=a.seed).fit(Xs, zs)
    zp = reg.predict(Xr)
    d = (zp - zr) / (1 + zr)
    print(f"simulation-trained redshift (trees on the same features) on the real galaxies: sigma_NMAD "
          f"{1.4826 * np.median(np.abs(d - np.median(d))):.4f}, outliers {100 * np.mean(np.abs(d) > 0.05):.1f} %, "
          f"median bias {np.median(d):+.4f}")
    if a.figure:
        with tempfile.TemporaryDirectory() as tmp:
            assert galdust(["simulate-sed", "--n", str(a.n_sim), "--seed", str(a.seed), "--prior", "broad",
                            "--r-limit", "17.77", "--out", f"{tmp}/b.parquet", *img[:1]]) == 0
            b = read_catalog(f"{tmp}/b.parquet")
        Xb = features(b.flux, b.flux_err)
        figure(a.figure, Xr, Xs, Xb[np.isfinite(Xb).all(axis=1) & (Xb[:, 0] < 17.77)], a.prior)


def figure(path, Xr, Xs, Xb, label):
    """Colour–magnitude and colour–colour densities: real (contours) over broad and calibrated sims."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(0, 2, "r", "g−r"), (2, 1, "g−r", "u−g"), (3, 4, "r−i", "i−z")]
    lims = {0: (14, 17.8), 1: (0.5, 2.5), 2: (0.1, 1.4), 3: (0.1, 0.7), 4: (-0.1, 0.6)}
    fig, ax = plt.subplots(2, 3, figsize=(12, 7.5))
    for row, (X, name) in enumerate(((Xb, "broad prior"), (Xs, f"calibrated ({label})"))):
        for col, (i, j, xl, yl) in enumerate(pairs):
            a = ax[row, col]
            a.hist2d(X[:, i], X[:, j], bins=60, range=(lims[i], lims[j]), cmap="Greys", density=True)
            h, xe, ye = np.histogram2d(Xr[:, i], Xr[:, j], bins=25, range=(lims[i], lims[j]), density=True)
            lev = np.quantile(h[h > 0], [0.3, 0.6, 0.85])
            a.contour(0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1]), h.T, levels=lev, colors="C3", linewidths=1)
            a.set_xlabel(xl)
            a.set_ylabel(yl)
            a.set_title(f"{name} (grey) vs real SDSS (red)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"figure -> {path}")


def _heldout(prior, images=False):
    """The real rows a calibrated population was not fitted to (None: broad prior, or none held out)."""
    import json

    if prior == "broad":
        return None
    if prior == "sdss":
        from galdust.models import shipped_path

        folder = shipped_path("population-sdss-images" if images else "population-sdss")
    else:
        folder = Path(prior)
    rows = json.loads((folder / "population.json").read_text()).get("heldout_rows") or None
    return None if rows is None else np.asarray(rows, int)


def _med(X):
    return ", ".join(f"{v:.2f}" for v in np.median(X[:, 1:5], axis=0))


if __name__ == "__main__":
    main()
