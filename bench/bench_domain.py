"""Know when not to answer: the training-domain flag of the posterior models on held-out simulations.

Two test sets from the calibrated SDSS population (`galdust simulate-sed --prior sdss`), one inside the
training selection (r < 17.77) and one outside it (17.77 ≤ r < 19.5, what the models never saw). For
each model: the fraction of rows flagged (`flag` = 1: outside the training domain, see
`galdust.posterior.domain`) and the 16–84 % coverage of the truth for the unflagged and the flagged
rows, per property (goal: 63–73 % for the unflagged rows of both sets).

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
        print("| model | test set | N | flagged | coverage unflagged (M*, SFR, z) | coverage flagged |")
        print("|---|---|---|---|---|---|")
        for model in a.models.split(","):
            for name, p in paths.items():
                res = summarise_catalog(p, model, samples=a.samples)
                c, truth = res.columns, Table.read(p)
                flag = np.asarray(c["flag"]) == 1

                def cov(sel):
                    if sel.sum() == 0:
                        return "–"
                    out = []
                    for q in PROPS:
                        v = np.asarray(truth[q], float)[sel]
                        out.append(f"{100 * np.mean((v >= np.asarray(c[q + '_p16'])[sel]) & (v <= np.asarray(c[q + '_p84'])[sel])):.0f}")
                    return ", ".join(out) + " %"

                print(f"| {model} | {name} | {len(flag)} | {100 * flag.mean():.1f} % | {cov(~flag)} | {cov(flag)} |")


if __name__ == "__main__":
    main()
