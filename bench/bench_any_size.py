"""Cutouts of any size through the default `galdust fit` path: accuracy against simulated truth.

The same held-out galaxies (seed 1001, the simulator's parameters scale with the image size) are
simulated at 64×64 (the priors' grid), 66×66 (an SDSS-like cutout just over it) and 300×300 (a
large galaxy; PSF FWHM scaled with the size), at peak S/N 50 per input pixel, red start (griz + J),
and fitted with `galdust.make_fitter()` defaults. Metrics on the input grid (galdust.dust.evaluate):
|ΔA_V,LW| and the A_V-map correlation inside the truth's 84 % light contour.

    python bench/bench_any_size.py [--n 12] [--sizes 64,66,300]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from galdust.dust.api import make_fitter
from galdust.dust.evaluate import RED_BANDS, effective_av_maps, galaxy_metrics, sim_observations
from galdust.simulate import SimConfig, simulate


def run(size: int, n: int, seed: int, fitter) -> dict:
    cfg = SimConfig(bands=RED_BANDS, size=size, psf_fwhm=2.0 * size / 64.0, snr=50.0, snr_kind="peak")
    sim = simulate(jax.random.PRNGKey(seed), n, cfg, batch=4)
    obs = sim_observations(sim, cfg, f"s{size}_")
    t0 = time.perf_counter()
    res = fitter.fit(obs)
    dt = (time.perf_counter() - t0) / n
    rows = []
    for i, r in enumerate(res):
        if isinstance(r, Exception):
            rows.append(dict(err=str(r)))
            continue
        D = np.nan_to_num(r.D, nan=1.0)
        av, host = effective_av_maps(r.HOST, D, r.scalars["DELTA"], obs[i].psf[0])
        m = galaxy_metrics(np.asarray(av), np.asarray(host), sim["AV"][i], sim["S"][i])
        g = r.grid
        rows.append(dict(m, k=g.k if g else 1, box=g.size_y if g else size, covfrac=float(sim["covfrac"][i])))
    ok = [x for x in rows if "err" not in x]
    sel = [x for x in ok if x["covfrac"] < 0.9]
    return dict(size=size, n=len(ok), errors=len(rows) - len(ok), k=sorted({x["k"] for x in ok}),
                box=sorted({x["box"] for x in ok}),
                absdav=float(np.median([abs(x["dAV"]) for x in sel])) if sel else np.nan,
                corr=float(np.nanmedian([x["corr"] for x in sel])) if sel else np.nan, n_sel=len(sel), s=dt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1001)
    ap.add_argument("--sizes", default="64,66,300")
    a = ap.parse_args()
    fitter = make_fitter(start="red", batch_size=4)
    print("| input size | galaxies (errors) | block factor k | fit box [input px] | f < 0.9: N | median abs ΔA_V,LW "
          "| median corr | s / galaxy (with compilation) |")
    print("|---|---|---|---|---|---|---|---|")
    for size in (int(s) for s in a.sizes.split(",")):
        r = run(size, a.n, a.seed, fitter)
        print(f"| {size}×{size} | {r['n']} ({r['errors']}) | {r['k']} | {r['box']} | {r['n_sel']} | {r['absdav']:.3f} "
              f"| {r['corr']:.3f} | {r['s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
