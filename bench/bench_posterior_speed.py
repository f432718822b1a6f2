"""Sampling speed of galdust's posterior models against bagpipes + nautilus, in one run on this machine.

    python bench/bench_posterior_speed.py --fits 3 [--image scratch/post/cfm_image.eqx --vaenf scratch/post/vaenf.eqx \
        --images-table scratch/post/img_test.parquet]

* galdust: objects/s for 1,000 posterior samples per object (after compilation) with the shipped
  photometric CFM (RK4 100 and 20 steps), its one-step distilled sampler, and optionally the image
  CFM and the VAE + flows on simulated cutouts;
* bagpipes 1.3.6 + nautilus (pool of 2 processes), fitting the same SDSS ugriz photometry
  (extinction-corrected MODELFLUX, errors from MODELFLUX_IVAR with a 2 % floor) of ``--fits`` SDSS
  galaxies with a comparable model: delayed-τ SFH, Calzetti dust, nebular emission, free redshift
  in 0–0.35; seconds per galaxy and the ratio to each galdust sampler.
Not a test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import jax.random as jr
import numpy as np

from galdust.posterior.data import read_catalog
from galdust.posterior.model import percentiles
from galdust.posterior.kinds import load_model

ROOT = Path(__file__).resolve().parents[1]
SDSS = ROOT / ".." / "shared" / "data" / "sdss" / "sdss_galaxies_dev.fits"
DATA = ROOT / "src" / "galdust" / "data" / "posterior"


def rate(model, flux, n_steps, images=None, n=64):
    percentiles(model, flux[:n], jr.PRNGKey(0), 1000, n_steps, images=None if images is None else images[:n])
    t0 = time.perf_counter()
    percentiles(model, flux[:n], jr.PRNGKey(1), 1000, n_steps, images=None if images is None else images[:n])
    return n / (time.perf_counter() - t0)


def bagpipes_fits(cat, k):
    import bagpipes as pipes

    from galdust.physics.filters import get_filter

    tmp = Path(tempfile.mkdtemp(prefix="galdust_pipes_"))
    files = []
    for b in cat.bands:
        f = get_filter(b)
        p = tmp / f"{b}.txt"
        np.savetxt(p, np.c_[f.wave * 1e4, f.response])
        files.append(str(p))
    ujy = 3.631  # µJy per nanomaggy

    def load(i):
        i = int(i)
        flux = cat.flux[i] * ujy
        err = np.sqrt((cat.flux_err[i] * ujy) ** 2 + (0.02 * flux) ** 2)
        return np.c_[flux, err]

    fit_instructions = {"redshift": (0.0, 0.35),
                        "delayed": {"age": (0.1, 13.0), "tau": (0.3, 10.0), "massformed": (6.0, 13.0),
                                    "metallicity": (0.2, 2.5)},
                        "dust": {"type": "Calzetti", "Av": (0.0, 2.0)},
                        "nebular": {"logU": -3.0}}
    out = []
    cwd = os.getcwd()
    os.chdir(tmp)  # bagpipes writes its pipes/ folder in the working directory (made at its import)
    for d in ("pipes/plots", "pipes/posterior", "pipes/cats"):
        os.makedirs(d, exist_ok=True)
    try:
        for i in range(k):
            t0 = time.perf_counter()
            gal = pipes.galaxy(str(i), load, spectrum_exists=False, filt_list=files)
            fit = pipes.fit(gal, fit_instructions, run=f"bench{i}")
            fit.fit(verbose=False, n_live=400, sampler="nautilus", pool=2)
            dt = time.perf_counter() - t0
            z = np.percentile(fit.posterior.samples["redshift"], [16, 50, 84])
            out.append((i, dt, z, cat.truth["z"][i]))
            print(f"bagpipes + nautilus, galaxy {i}: {dt:.0f} s, z = {z[1]:.4f} (+{z[2] - z[1]:.4f} / -{z[1] - z[0]:.4f}), "
                  f"spectroscopic {cat.truth['z'][i]:.4f}", flush=True)
    finally:
        os.chdir(cwd)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fits", type=int, default=3)
    ap.add_argument("--image", default=None)
    ap.add_argument("--vaenf", default=None)
    ap.add_argument("--images-table", default=None)
    a = ap.parse_args()
    phot, _ = load_model(DATA / "cfm_phot_sdss.eqx")
    cat = read_catalog(SDSS, phot.bands)
    ok = np.array([not n for n in cat.notes])
    flux = cat.flux[ok]
    rows = [("CFM photometry, RK4 100 steps", rate(phot, flux, 100)), ("CFM photometry, RK4 20 steps", rate(phot, flux, 20))]
    one, _ = load_model(DATA / "cfm_phot_sdss_onestep.eqx")
    rows.append(("CFM photometry, one-step distilled sampler", rate(one, flux, 1, n=512)))
    if a.images_table:
        t = read_catalog(a.images_table)
        imgs = np.asarray(np.load(a.images_table.replace(".parquet", ".images.npy"), mmap_mode="r")[:512], np.float32)
        if a.image:
            im, _ = load_model(a.image)
            rows += [("CFM image + photometry, RK4 100 steps", rate(im, t.flux, 100, imgs)),
                     ("CFM image + photometry, RK4 20 steps", rate(im, t.flux, 20, imgs))]
        if a.vaenf:
            from galdust.posterior.vaenf import summarise

            vm, _ = load_model(a.vaenf)
            rows.append(("VAE + flows, properties only (as the CFMs)", rate(vm, t.flux, 1, imgs, n=512)))
            summarise(vm, t.flux[:64], imgs[:64], jr.PRNGKey(0), 1000)
            t0 = time.perf_counter()
            summarise(vm, t.flux[:512], imgs[:512], jr.PRNGKey(1), 1000)
            rows.append(("VAE + flows (properties and lines, 1,000 samples each)", 512 / (time.perf_counter() - t0)))
    fits = bagpipes_fits(cat, a.fits) if a.fits else []
    sec = np.mean([f[1] for f in fits]) if fits else float("nan")
    base = rows[0][1]
    print("\n| sampler (1,000 samples per object) | objects/s | × faster than CFM RK4-100 | × faster than bagpipes + nautilus |")
    print("|---|---|---|---|")
    for lab, r in rows:
        print(f"| {lab} | {r:.2f} | {r / base:.1f} | {sec * r:,.0f} |")
    if fits:
        print(f"| bagpipes + nautilus ({len(fits)} SDSS galaxies, n_live 400) | {1 / sec:.5f} ({sec:.0f} s per galaxy) | | 1 |")


if __name__ == "__main__":
    main()
