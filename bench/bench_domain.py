"""Know when not to answer: the training-domain flag of the posterior models on held-out simulations.

Two test sets from the calibrated SDSS population (`galdust simulate-sed --prior sdss`), one inside the
training selection (r < 17.77) and one outside it (17.77 ≤ r < 19.5, what the models never saw). For
each model: the fraction of rows flagged (`flag` = 1: outside the training domain, see
`galdust.posterior.domain`) and the 16–84 % coverage of the truth for the unflagged and the flagged
rows, per property (goal: 63–73 % for the unflagged rows of both sets).

The simulator's log SFR has a floor (SFR < 10⁻⁶ M⊙/yr is written as −6: about a quarter of the
galaxies, the quiescent ones), a point mass that the posterior samples share. A truth at the floor
lies inside [p16, p84] whenever p16 reaches the floor, i.e. whenever the posterior gives the floor
≥ 16 %, so the plain coverage over-counts. The last column counts such a truth by its randomised PIT
(u uniform on [0, a], a the posterior's mass at the floor; covered with probability
|[0, a] ∩ [0.16, 0.84]| / a), the calibrated coverage of a distribution with an atom; truths above
the floor count as before.

    python bench/bench_domain.py [--n 20000] [--models cfm-onestep,cfm-phot] [--samples 500]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
from astropy.table import Table

from galdust.cli import main as galdust
from galdust.posterior.api import summarise_catalog
from galdust.posterior.model import luptitudes

PROPS = ("log_mstar", "log_sfr", "z")
SFR_FLOOR = -6.0  # galdust.simulate.sed: log10(max(SFR, 1e-6))


def sfr_coverage_with_floor(truth, samples) -> float:
    """16–84 % coverage of log SFR ``truth`` (n,) by ``samples`` (n, s): a truth at the floor counted
    by its randomised PIT (see the module docstring)."""
    truth, samples = np.asarray(truth, float), np.asarray(samples, float)
    at = truth <= SFR_FLOOR + 1e-4
    lo, hi = np.percentile(samples, [16, 84], axis=1)
    inside = ((truth >= lo) & (truth <= hi)).astype(float)
    a = np.mean(samples <= SFR_FLOOR + 1e-4, axis=1)  # the posterior's mass at the floor
    p = np.clip(np.minimum(a, 0.84) - 0.16, 0.0, None) / np.maximum(a, 1e-9)
    return float(np.mean(np.where(at, p, inside)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=103)
    ap.add_argument("--models", default="cfm-onestep")
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--max-rows", type=int, default=3000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        assert galdust(["simulate-sed", "--n", str(a.n), "--seed", str(a.seed), "--out", f"{tmp}/all.parquet"]) == 0
        t = Table.read(f"{tmp}/all.parquet")
        r = luptitudes(np.asarray(t["flux_sdss_r"], float)[:, None], [1.07])[:, 0]
        sets = {"in (r < 17.77)": r < 17.77, "out (17.77 ≤ r < 19.5)": (r >= 17.77) & (r < 19.5)}
        paths = {}
        for name, sel in sets.items():
            rows = np.nonzero(sel)[0][: a.max_rows]
            paths[name] = f"{tmp}/{len(paths)}.parquet"
            t[rows].write(paths[name])
        print("| model | test set | N | flagged | coverage unflagged (M*, SFR, z) | coverage flagged | "
              "SFR unflagged: truths at the floor / above it / all, floor by PIT |")
        print("|---|---|---|---|---|---|---|")
        for model in a.models.split(","):
            for name, p in paths.items():
                res = summarise_catalog(p, model, samples=a.samples, keep_samples=True)
                c, truth = res.columns, Table.read(p)
                flag = np.asarray(c["flag"]) == 1
                s_sfr = res.samples[:, :, res.props.index("log_sfr")]
                t_sfr = np.asarray(truth["log_sfr"], float)
                at = t_sfr <= SFR_FLOOR + 1e-4
                plain = (t_sfr >= np.asarray(c["log_sfr_p16"])) & (t_sfr <= np.asarray(c["log_sfr_p84"]))
                u = ~flag
                sfr = (f"{100 * plain[u & at].mean():.0f} % ({(u & at).sum()}) / {100 * plain[u & ~at].mean():.0f} % "
                       f"/ {100 * sfr_coverage_with_floor(t_sfr[u], s_sfr[u]):.0f} %")

                def cov(sel):
                    if sel.sum() == 0:
                        return "–"
                    out = []
                    for q in PROPS:
                        v = np.asarray(truth[q], float)[sel]
                        out.append(f"{100 * np.mean((v >= np.asarray(c[q + '_p16'])[sel]) & (v <= np.asarray(c[q + '_p84'])[sel])):.0f}")
                    return ", ".join(out) + " %"

                print(f"| {model} | {name} | {len(flag)} | {100 * flag.mean():.1f} % | {cov(~flag)} | {cov(flag)} "
                      f"| {sfr} |")


if __name__ == "__main__":
    main()
