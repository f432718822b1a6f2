"""`galdust posterior sample` on the real SDSS development table: the default against each --model.

Rate: objects per second of `galdust.posterior.api.summarise_catalog` (what the command computes; 1,000
samples per object; reading the table and loading the models included, compilation excluded by a
warm-up call on 64 rows), on 2 CPU cores, over all rows (the 100-step CFM over ``--slow-rows``). Redshift against the spectroscopic Z of the same rows: σ_NMAD = 1.48 median |Δz|/(1+z) and
the outlier fraction |Δz|/(1+z) > 0.05. The redshift models were trained on this table, so their
numbers here are in-sample; their 5-fold out-of-fold (CV) numbers from the sidecar are printed beside.

    python bench/bench_posterior_defaults.py [--rows 2500] [--models default,cfm-phot,cfm-onestep,z-sdss]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from galdust.posterior.api import resolve_model, summarise_catalog

SDSS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sdss" / "sdss_galaxies_dev.fits"


def zstats(z, zp):
    d = (zp - z) / (1 + z)
    ok = np.isfinite(d)
    return 1.4826 * np.median(np.abs(d[ok] - np.median(d[ok]))), float(np.mean(np.abs(d[ok]) > 0.05))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2500)
    ap.add_argument("--slow-rows", type=int, default=200, help="rows for cfm-phot (1-2 objects/s)")
    ap.add_argument("--models", default="default,cfm-phot,cfm-onestep,z-sdss")
    ap.add_argument("--table", default=str(SDSS))
    a = ap.parse_args()
    t = Table.read(a.table)
    with tempfile.TemporaryDirectory() as tmp:
        sub, slow = Path(tmp) / "sub.fits", Path(tmp) / "slow.fits"
        t[: a.rows].write(sub)
        t[: a.slow_rows].write(slow)
        warm = Path(tmp) / "warm.fits"
        t[-64:].write(warm)
        print(f"SDSS development table, {a.rows} rows ({a.slow_rows} for cfm-phot), 1,000 samples per object")
        print("| --model | answers with | objects/s | z σ_NMAD | z outliers | CV σ_NMAD | CV outliers |")
        print("|---|---|---|---|---|---|---|")
        for name in a.models.split(","):
            model = None if name == "default" else name
            table, n = (slow, a.slow_rows) if name == "cfm-phot" else (sub, a.rows)
            z = np.asarray(t["Z"][:n], float)
            plan = resolve_model(model, table)
            summarise_catalog(warm, model, samples=1000)  # compilation
            t0 = time.perf_counter()
            res = summarise_catalog(table, model, samples=1000)
            dt = time.perf_counter() - t0
            nm, out = zstats(z, np.asarray(res.columns["z_p50"], float))
            cv = ("", "")
            if plan.zmodel is not None:
                c = json.loads((plan.zmodel / "z_model.json").read_text())["cv"]
                cv = (f"{c['nmad']:.4f}", f"{100 * c['outliers']:.2f} %")
            what = plan.cfm.name + (f" + {plan.zmodel.name}" if plan.zmodel is not None else "")
            print(f"| {name} | {what} | {n / dt:.1f} | {nm:.4f} | {100 * out:.2f} % | {cv[0]} | {cv[1]} |",
                  flush=True)


if __name__ == "__main__":
    main()
