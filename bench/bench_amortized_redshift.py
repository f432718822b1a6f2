"""Where the amortised dust network breaks: host redshift (issue 29, "say where it breaks").

    python bench/bench_amortized_redshift.py [--n 32] [--bands HSC] [--no-map]

The shipped network was trained on `galdust.simulate` hosts whose stellar-population SEDs sit at
z 0.02-0.15 (`galdust.simulate.host_sed.Z_RANGE`). Here the same simulator draws hosts in wider
redshift bins (`SimConfig.z_range`; seed 4242, peak S/N 50, PSF 4 px, dust-free and realistic
dusty hosts) and the table gives, per bin: the network's median A_V,LW (truth beside), the fraction
of dust-free hosts it gives A_V,LW <= 0.03, its median |dA_V,LW| on the dusty ones, the fraction
flagged as outside its training colour domain (header FLAG), and, for the dust-free hosts, the MAP
fit's (red start, the default; `--no-map` skips it). Then the real HSC galaxy of `galdust demo`
(`../shared/data/hsc/hsc_cosmos_35.npz`, the large red early-type) through the network, the MAP fit
and the MAP fit started from the network.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from galdust.dust.amortized import AmortizedFitter
from galdust.dust.api import make_fitter
from galdust.dust.evaluate import host_config, sim_observations
from galdust.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
BANDS = {"HSC": ("hsc_g", "hsc_r", "hsc_i", "hsc_z", "hsc_y"), "SDSS": ("sdss_g", "sdss_r", "sdss_i", "sdss_z"),
         "LSST": ("lsst_u", "lsst_g", "lsst_r", "lsst_i", "lsst_z", "lsst_y")}
BINS = ((0.02, 0.15), (0.15, 0.25), (0.25, 0.35), (0.35, 0.5), (0.5, 0.8))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="galaxies per bin and host set")
    ap.add_argument("--bands", default="HSC", choices=sorted(BANDS))
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--no-map", action="store_true")
    a = ap.parse_args()
    bands = BANDS[a.bands]
    net = AmortizedFitter.load(batch_size=64)
    red = None if a.no_map else make_fitter(start="red", batch_size=16)
    print(f"{a.n} galaxies per bin and set, {a.bands} {','.join(bands)}, peak S/N 50, PSF 4 px, seed {a.seed}\n")
    print("| host z | dust-free: network A_V,LW median | <= 0.03 | flagged | MAP (red) median | MAP <= 0.03 "
          "| dusty: network median (truth) | median abs dA_V,LW | flagged |")
    print("|---|---|---|---|---|---|---|---|---|")
    for zr in BINS:
        row = [f"{zr[0]:g}-{zr[1]:g}"]
        for hosts in ("dust-free", "realistic"):
            cfg = dataclasses.replace(host_config(hosts, bands=bands, snr=50.0, snr_kind="peak", psf_fwhm=4.0),
                                      z_range=zr)
            sim = simulate(jax.random.PRNGKey(a.seed), a.n, cfg, batch=min(a.n, 32))
            obs = sim_observations(sim, cfg, f"z{zr[0]}_")
            res = net.fit(obs)
            lw = np.array([r.scalars["AV_LW"] for r in res])
            flag = np.mean([r.scalars["FLAG"] for r in res])
            tr = np.asarray(sim["av_lw"])
            if hosts == "dust-free":
                row += [f"{np.median(lw):.3f}", f"{np.mean(lw <= 0.03):.0%}", f"{flag:.0%}"]
                if red is not None:
                    lm = np.array([r.scalars["AV_LW"] for r in red.fit(obs)])
                    row += [f"{np.median(lm):.3f}", f"{np.mean(lm <= 0.03):.0%}"]
                else:
                    row += ["", ""]
            else:
                row += [f"{np.median(lw):.3f} ({np.median(tr):.3f})", f"{np.median(np.abs(lw - tr)):.3f}", f"{flag:.0%}"]
        print("| " + " | ".join(row) + " |", flush=True)
    scene = ROOT.parent / "shared" / "data" / "hsc" / "hsc_cosmos_35.npz"
    if not scene.exists():
        print(f"\n{scene} not found: no real galaxy")
        return
    from galdust.cli.demo import _hsc_cutout
    from galdust.io import read_observation

    with tempfile.TemporaryDirectory() as d:
        obs = [read_observation([_hsc_cutout(scene, Path(d) / "hsc.fits")])]
    print("\nReal HSC early-type (the demo's hsc_cosmos_35 cutout, grizy, 40x40):")
    r = net.fit(obs)[0].scalars
    print(f"- network: A_V,LW {r['AV_LW']:.3f} +- {r['AVLW_ERR']:.3f}, delta {r['DELTA']:+.2f}, covfrac "
          f"{r['COVFRAC']:.2f}, FLAG {r['FLAG']} {r['NOTE']}")
    for name, start in (("MAP fit, red start (the default)", "red"), ("MAP fit from the network", "amortized")):
        s = make_fitter(start=start, batch_size=1).fit(obs)[0].scalars
        print(f"- {name}: A_V,LW {s['AV_LW']:.3f}, chi2 {s['CHI2']:.3f} (dust-free {s['CHI2ND']:.3f}), "
              f"start {s['START']} {s.get('NOTE', '')}")


if __name__ == "__main__":
    sys.exit(main())
