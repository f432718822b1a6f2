"""Far-infrared dust properties: global CV, training time, prediction speed, per-pixel validation on
mocks; prints tables.

    python bench/bench_fir.py [--mocks 40] [--pixels 1000000] [--skip-cv] [--mock-snr 50]

* galaxy-level 4-fold CV of the global model on the DustPedia development split (RMSE, R², bias with
  bootstrap errors, χ² of the calibrated σ) and the wall time of one training on all galaxies;
* prediction speed in pixels/s (``FIRModel.predict`` on N feature rows), and the whole map pipeline
  (convolution, reprojection, masks, prediction) on a mock galaxy;
* the maps on ``--mocks`` mock galaxies with per-pixel truth, built from held-out folds' galaxies
  (galaxy-grouped folds), at two pixel scales: galaxy-weighted bias and RMSE, between- and
  within-galaxy residual scatter, the truth's own within-galaxy scatter and the within-galaxy slope of
  prediction on truth; then the bias split per galaxy into the templates' own global errors and what
  predicting per pixel adds (pure and mixed pixels apart).
Not a test: it never gates CI.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from galdust.fir.data import TARGETS, read_photometry, read_properties
from galdust.fir.evaluate import global_fold_models, summarise_pixels, train_pixel_models, validate_maps
from galdust.fir.maps import make_maps
from galdust.fir.mock import make_mock
from galdust.fir.model import DEFAULT_MODEL, FIRModel, cross_validate, train_model, training_set

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dustpedia"
UNIT = {"log_sLd": "dex", "log_sMd": "dex", "Td": "K"}


def load():
    ph = read_photometry(DATA / "DustPedia_Aperture_Photometry_2.2.csv")
    pr = read_properties(DATA / "dustpedia_cigale_results_final_version.csv")
    return ph, pr


def by_type(names, Y, mu, pr):
    """The CV residuals per HyperLEDA morphological class, beside the median CIGALE uncertainty of the
    labels themselves (an RMSE cannot be judged below the noise of what it is measured against)."""
    import csv

    with open(DATA / "DustPedia_HyperLEDA_Herschel.csv", newline="") as fh:
        T = {r["objname"]: float(r["t"]) if r.get("t") not in (None, "", "nan") else np.nan for r in csv.DictReader(fh)}
    t = np.array([T.get(n, np.nan) for n in names])
    print("CV residuals per morphological type (HyperLEDA T) and the median CIGALE uncertainty of the labels\n")
    print("| T | galaxies | " + " | ".join(f"{p} RMSE | {p} label σ" for p in TARGETS) + " |")
    print("|---|---|" + "---|---|" * len(TARGETS))
    for lab, sel in (("< 0 (E, S0)", t < 0), ("0–3 (S0/a–Sb)", (t >= 0) & (t < 3)), ("3–6 (Sb–Scd)", (t >= 3) & (t < 6)),
                     ("≥ 6 (Sd–Irr)", t >= 6), ("≥ 0 (all spirals and irregulars)", t >= 0), ("all", np.ones(len(t), bool))):
        cells = []
        for p in TARGETS:
            r = mu[p][sel] - Y[p][sel]
            err = np.array([pr[n][p + "_err"] for n in np.asarray(names)[sel]], float)
            cells.append(f"{np.sqrt(np.nanmean(r ** 2)):.3f} | {np.nanmedian(err):.3f}")
        print(f"| {lab} | {int(sel.sum())} | " + " | ".join(cells) + " |")
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mocks", type=int, default=40)
    ap.add_argument("--pixels", type=int, default=1_000_000)
    ap.add_argument("--skip-cv", action="store_true")
    ap.add_argument("--distill-steps", type=int, default=40000, help="MLP steps per fold model")
    ap.add_argument("--train-mocks", type=int, default=60, help="mocks per fold for the per-pixel models (0: skip)")
    ap.add_argument("--mock-snr", type=float, default=50.0, help="peak S/N per band of the validation mocks")
    a = ap.parse_args()
    ph, pr = load()
    X, Y, names, keep = training_set(ph, pr)
    if not a.skip_cv:
        t0 = time.perf_counter()
        train_model(X, Y)
        t_train = time.perf_counter() - t0
        cvr = cross_validate(X, Y, names)
        res = cvr["metrics"]
        print(f"Global model, galaxy-level 4-fold CV on {len(keep)} DustPedia galaxies (training on all: "
              f"{t_train:.0f} s)\n")
        print("| property | RMSE | R² | bias | χ² of σ | within 1σ | goal RMSE |")
        print("|---|---|---|---|---|---|---|")
        goal = {"log_sLd": "0.16 dex", "log_sMd": "0.30 dex", "Td": "3.0 K"}
        for t, m in res.items():
            print(f"| {t} | {m['rmse']:.3f} ± {m['rmse_err']:.3f} {UNIT[t]} | {m['r2']:.3f} ± {m['r2_err']:.3f} | "
                  f"{m['bias']:+.3f} ± {m['bias_err']:.3f} | {m['chi2']:.2f} ± {m['chi2_err']:.2f} | "
                  f"{m['frac_1sigma']:.2f} | {goal[t]} |")
        print()
        by_type(names, Y, cvr["oof_mu"], pr)
    model = FIRModel.load(DEFAULT_MODEL)
    rng = np.random.default_rng(0)
    rows = X[rng.integers(0, len(keep), a.pixels)]
    rows = rows + rng.normal(0, 0.05, rows.shape).astype(rows.dtype)
    model.predict(rows[:1000])
    t0 = time.perf_counter()
    model.predict(rows)
    dt = time.perf_counter() - t0
    model.predict_pixels(rows[:1000])
    model.predict_pixels(rows)
    times = []
    for _ in range(5):  # the median of 5 calls: single calls took 0.70 s and 1.05 s in two bench runs
        t0 = time.perf_counter()
        model.predict_pixels(rows)
        times.append(time.perf_counter() - t0)
    dt_fast = float(np.median(times))
    pool = [i for i in keep if np.isfinite(ph.flux[i]).sum() >= 16]
    i, j = pool[0], pool[1]
    m = make_mock(ph.flux[i], ph.flux[j], pr[ph.names[i]], pr[ph.names[j]], w1_total=float(ph.flux[i, 10]), rng=rng,
                  fov=400.0, h=30.0)
    t1 = time.perf_counter()
    fm = make_maps(m.images, model, pixscale=2.0, exact=True)
    dt_map = time.perf_counter() - t1
    make_maps(m.images, model, pixscale=2.0)
    t1 = time.perf_counter()
    make_maps(m.images, model, pixscale=2.0)
    dt_map_fast = time.perf_counter() - t1
    n_in = sum(im.data.size for im in m.images)
    print("| speed | pixels | s | pixels/s |")
    print("|---|---|---|---|")
    print(f"| trees: FIRModel.predict (3 properties, μ and σ) | {a.pixels:,} | {dt:.2f} | {a.pixels / dt:,.0f} |")
    print(f"| distilled MLP: FIRModel.predict_pixels (the maps' default; median of 5 calls, "
          f"{min(times):.2f}–{max(times):.2f} s) | {a.pixels:,} | {dt_fast:.2f} | {a.pixels / dt_fast:,.0f} |")
    for lab, t in (("trees", dt_map), ("MLP", dt_map_fast)):
        print(f"| whole map pipeline ({lab}), {len(m.bands)} bands ({n_in:,} input pixels) -> {fm.mask.size:,} output "
              f"pixels, {int(fm.mask.sum()):,} predicted | {fm.mask.size:,} | {t:.2f} | {fm.mask.size / t:,.0f} |")
    print()
    if a.mocks:
        t0 = time.perf_counter()
        fold_models = global_fold_models(ph, pr, k=4, seed=0, distill_steps=a.distill_steps)
        t_fold = time.perf_counter() - t0
        print(f"Global fold models (4 galaxy folds), each distilled ({a.distill_steps} steps): {t_fold:.0f} s\n")
        t0 = time.perf_counter()
        runs = {"global model per pixel (trees)": validate_maps(ph, pr, n_mocks=a.mocks, k=4, seed=0, exact=True, peak_snr=a.mock_snr,
                                                                pixscale_factors=(1 / 3, 1.0), models=fold_models),
                "global model per pixel (distilled MLP)": validate_maps(ph, pr, n_mocks=a.mocks, k=4, seed=0,
                                                                        peak_snr=a.mock_snr,
                                                                        pixscale_factors=(1 / 3, 1.0),
                                                                        models=fold_models)}
        t_val = time.perf_counter() - t0
        if a.train_mocks:
            t1 = time.perf_counter()
            pm = train_pixel_models(ph, pr, k=4, seed=0, n_mocks=a.train_mocks)
            t_pm = time.perf_counter() - t1
            runs["per-pixel model"] = validate_maps(ph, pr, n_mocks=a.mocks, k=4, seed=0, pixscale_factors=(1 / 3, 1.0),
                                                    peak_snr=a.mock_snr,
                                                    models=pm)
            print(f"Per-pixel models: 4 folds, each trained on the pixels of {a.train_mocks} mocks from the other "
                  f"folds' galaxies (1/N_pix weights, mock-grouped folds, + log pixel scale in pc): {t_pm:.0f} s\n")
        print(f"Maps on {a.mocks} mock galaxies from held-out folds (4 galaxy-grouped folds, fold models trained "
              f"on the other folds; {t_val:.0f} s). Residual = prediction − per-pixel truth; every galaxy weighs "
              f"the same (1/N_pix).\n")
        scatter, split = [], []  # the rows of the two tables, one pass over the runs
        for label, out in runs.items():
            for fac in (1 / 3, 1.0):
                s = summarise_pixels([r for r in out if r["pixscale_factor"] == fac])
                ps = np.median([r["pixscale"] for r in out if r["pixscale_factor"] == fac])
                for t, v in s.items():
                    head = f"| {label} | {ps:.1f}\" (FWHM×{fac:.2f}) | {t} | "
                    scatter.append(head + f"{v['n_gal']} | {v['n_pix']} | {v['bias']:+.3f} ± {v['bias_err']:.3f} | "
                                   f"{v['rmse']:.3f} | {v['between']:.3f} | {v['within']:.3f} | {v['truth_within']:.3f} | "
                                   f"{v['within_slope']:.2f} | {v['chi2']:.2f} | {v['template_rmse']:.3f} |")
                    split.append(head + " | ".join(f"{v[k]:+.3f} ± {v[k + '_err']:.3f}" for k in (
                        "bias", "template_bias", "pixel_bias", "pixel_bias_pure", "pixel_bias_mixed")) + " |")
        print("| model | pixels | property | galaxies | pixels | bias | RMSE | between σ | within σ | truth within σ | "
              "within slope | χ² of σ | templates' global RMSE |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(scatter))
        print("\nThe bias split per galaxy (paired): what the global model's own errors on the two template galaxies "
              "(with the mock's bands) predict for the pixels, and what predicting per pixel adds; pure pixels show "
              "one template's SED (mix < 0.1 or > 0.9), mixed pixels the mock's blend of the two, whose truth (a "
              "linear mix of the logs) is the mock's convention.\n")
        print("| model | pixels | property | bias | templates' global errors | per pixel − templates | pure pixels | "
              "mixed pixels |")
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(split))


if __name__ == "__main__":
    main()
