"""Know when not to answer, for the FIR model: its training-domain flag on DustPedia galaxies of types
it did not learn from.

The FIR model learns from real DustPedia galaxies (CIGALE properties). Here the same recipe (the
shipped settings) is trained on one part of the morphological sequence and tested on (a) galaxies of
that part it did not see (4-fold cross-validation: the in-domain set) and (b) the galaxies of another
part (the out-of-domain set). For each: the fraction of rows flagged (`FIRModel.outside`: a log flux
ratio or colour outside the training range) and the share of CIGALE values inside μ ± σ for the
unflagged and the flagged rows (goal for the unflagged rows: 63–73 % on both sets).

    python bench/bench_fir_domain.py [--data ../shared/data/dustpedia]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from galdust.fir.data import TARGETS, read_photometry, read_properties
from galdust.fir.features import band_dropout_features
from galdust.fir.model import train_model, training_set
from galdust.ml.trees import folds

SPLITS = {  # name: (training rows, out-of-domain rows) by HyperLEDA type T
    "train late (T ≥ 0), out: early (T < 0)": (lambda t: t >= 0, lambda t: t < 0),
    "train T < 7, out: late spirals and irregulars (T ≥ 7)": (lambda t: t < 7, lambda t: t >= 7),
}


def fit(ph, keep, X, Y, rows, seed):
    aug = band_dropout_features(ph, np.asarray(keep)[rows], 1, seed)
    return train_model(X[rows], {k: v[rows] for k, v in Y.items()}, seed=seed, augment=aug)


def cover(Y, pred, rows, sel):
    out = []
    for t in TARGETS:
        mu, sg = pred[t]
        y = Y[t][rows]
        ok = sel & np.isfinite(y)
        out.append(f"{np.mean(np.abs(mu[ok] - y[ok]) < sg[ok]):.0%}" if ok.sum() else "–")
    return ", ".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/dustpedia")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    dp = Path(a.data)
    ph = read_photometry(dp / "DustPedia_Aperture_Photometry_2.2.csv")
    X, Y, names, keep = training_set(ph, read_properties(dp / "dustpedia_cigale_results_final_version.csv"))
    T = pd.read_csv(dp / "DustPedia_HyperLEDA_Herschel.csv").set_index("objname").reindex(names)["t"].to_numpy()
    print("| split | test set | N | flagged | inside μ ± σ, unflagged (log sL_d, log sM_d, T_d) | flagged |")
    print("|---|---|---|---|---|---|")
    for name, (is_train, is_out) in SPLITS.items():
        tr, od = np.nonzero(is_train(T))[0], np.nonzero(is_out(T))[0]
        fold = folds(len(tr), 4, a.seed)
        flag_in = np.zeros(len(tr), bool)
        pred_in = {t: (np.zeros(len(tr)), np.zeros(len(tr))) for t in TARGETS}
        for f in range(4):  # in-domain: each training-type galaxy predicted by a model that did not see it
            m = fit(ph, keep, X, Y, tr[fold != f], a.seed + f)
            te = fold == f
            p = m.predict(X[tr[te]])
            for t in TARGETS:
                pred_in[t][0][te], pred_in[t][1][te] = p[t]
            flag_in[te] = [bool(w) for w in m.outside(X[tr[te]])]
        m = fit(ph, keep, X, Y, tr, a.seed)
        pred_od = m.predict(X[od])
        flag_od = np.array([bool(w) for w in m.outside(X[od])])
        for label, rows, pred, flag in (("in (CV)", tr, pred_in, flag_in), ("out", od, pred_od, flag_od)):
            print(f"| {name} | {label} | {len(rows)} | {flag.mean():.1%} | {cover(Y, pred, rows, ~flag)} "
                  f"| {cover(Y, pred, rows, flag)} |")


if __name__ == "__main__":
    main()
