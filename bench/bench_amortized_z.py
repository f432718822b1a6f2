"""The amortised dust network over redshift: the rest-frame network (redshift channel) against the
observed-frame one and the MAP fit, on held-out hosts with rest-frame dust (issue 29).

    python bench/bench_amortized_z.py [--n 32] [--bands HSC,LSST] [--psf 2] [--model-z FILE] [--model-obs FILE] [--no-map] [--warm]

Realistic hosts of `galdust.simulate` with the dust curve at their rest wavelengths
(`galdust simulate --dust-frame rest`), in redshift bins, peak S/N 50, PSF `--psf` px; dusty hosts from
seed 7373 and dust-free ones from seed 7374 (the training stores: seeds 6101-6113 and 62xx). Every
galaxy is given its redshift. Per band set and bin:

- dust-free hosts: the share with A_V,LW <= 0.03 from the rest-frame network (`amortized-dust-z`, or
  `--model-z`), from the observed-frame network (`amortized-dust`, its answer moved to the rest frame)
  and the median of the default (the pair as `galdust fit --method amortized` holds them: the
  observed-frame network at z <= 0.15, its training redshifts, the rest-frame one beyond);
- dusty hosts with covering fraction f < 0.9: the truth's median A_V,LW (rest frame); median |dA_V,LW| of
  the rest-frame network, the observed-frame one and the MAP fit (`galdust fit`'s defaults, with z);
  median map correlation inside the 84 % host-light contour over the structured maps (truth varying by
  >= 0.03 mag) of the default and the MAP fit; the default's 68 % interval coverage of A_V,LW
  (galaxies) and of A_V (pixels inside the 84 % contour); the share it flags;
- a second draw of dusty hosts (seed 5151, bench_rest_frame.py's; f < 0.9), whose dust happens to be
  low (median A_V,LW about 0.05): the truth's median, and the median A_V,LW (median |dA_V,LW|) of the
  rest-frame and the observed-frame network, to show a pull towards the training sample's dust.

With `--warm`, a second table: the MAP fit started from the rest-frame network (`--start amortized`)
against the default start, on the same dusty galaxies: median |dA_V,LW|, map correlation and median
iterations (NITER), and the same for the dust-free hosts' share at <= 0.03.

Then the rest-frame network's throughput (galaxies/s, network pass only, batches of 64, after compilation).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import jax
import numpy as np

from galdust.dust.amortized import AmortizedFitter
from galdust.dust.api import make_fitter
from galdust.dust.evaluate import host_config, sim_observations
from galdust.dust.metrics import STRUCTURE_MIN, galaxy_metrics, light_contour
from galdust.models import shipped_path
from galdust.simulate import simulate

BANDS = {"HSC": ("hsc_g", "hsc_r", "hsc_i", "hsc_z", "hsc_y"), "SDSS": ("sdss_g", "sdss_r", "sdss_i", "sdss_z"),
         "LSST": ("lsst_u", "lsst_g", "lsst_r", "lsst_i", "lsst_z", "lsst_y")}
BINS = ((0.02, 0.15), (0.15, 0.3), (0.3, 0.5), (0.5, 0.8), (0.8, 1.0))


def _lw(results):
    return np.array([np.nan if isinstance(r, Exception) else r.scalars["AV_LW"] for r in results])


def _sim(hosts, bands, psf, zr, seed, n):
    cfg = dataclasses.replace(host_config(hosts, bands=bands, snr=50.0, snr_kind="peak", psf_fwhm=psf),
                              z_range=zr, dust_frame="rest")
    sim = simulate(jax.random.PRNGKey(seed), n, cfg, batch=min(n, 32))
    return sim, sim_observations(sim, cfg, f"{hosts}{zr[0]}_")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="galaxies per bin and host set")
    ap.add_argument("--bands", default="HSC,LSST", help="comma-separated, of " + ", ".join(sorted(BANDS)))
    ap.add_argument("--psf", type=float, default=2.0, help="PSF FWHM (px)")
    ap.add_argument("--model-z", default=None, help="rest-frame network (default: the shipped amortized-dust-z)")
    ap.add_argument("--model-obs", default=None, help="observed-frame network (default: the shipped amortized-dust)")
    ap.add_argument("--no-map", action="store_true")
    ap.add_argument("--warm", action="store_true", help="the MAP fit from the network: a second table")
    a = ap.parse_args()
    znet = AmortizedFitter.load(a.model_z or shipped_path("amortized-dust-z"), batch_size=64)
    old = AmortizedFitter.load(a.model_obs or shipped_path("amortized-dust"), batch_size=64)
    both = AmortizedFitter(old.net, old.meta, batch_size=64, rest=znet)  # the default: each galaxy its network
    mapfit = None if a.no_map else make_fitter(batch_size=16)
    if a.warm:
        return warm_table(a, znet, old)
    print(f"{a.n} dusty (seed 7373) and {a.n} dust-free (seed 7374) realistic hosts per bin, dust in their rest "
          f"frame, peak S/N 50, PSF {a.psf:g} px; every galaxy given its redshift; dusty columns over f < 0.9\n")
    for name in a.bands.split(","):
        bands = BANDS[name.strip()]
        print(f"\n{name} {','.join(bands)}\n")
        print("| host z | dust-free <= 0.03: z-net | obs-net | default median | N dusty | truth A_V,LW median "
              "| median abs dA_V,LW: z-net | obs-net | MAP | map corr (N struct): default | MAP "
              "| 68 % coverage A_V,LW | pixels | flagged | low-dust draw: N, truth median | z-net | obs-net |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for zr in BINS:
            _, free = _sim("dust-free", bands, a.psf, zr, 7374, a.n)
            fz, fo, fd = _lw(znet.fit(free)), _lw(old.fit(free)), _lw(both.fit(free))
            sim, obs = _sim("realistic", bands, a.psf, zr, 7373, a.n)
            sel = np.asarray(sim["covfrac"]) < 0.9
            tr = np.asarray(sim["av_lw"])
            rz = both.fit(obs)
            lz, lo = _lw(znet.fit(obs)), _lw(old.fit(obs))
            rm = mapfit.fit(obs) if mapfit is not None else None
            cz, cm, pix, cov = [], [], [], []
            for i in np.flatnonzero(sel):
                r = rz[i]
                m = galaxy_metrics(r.AV, r.HOST, sim["AV"][i], sim["S"][i])
                if m["av_sd_true"] >= STRUCTURE_MIN:
                    cz.append(m["corr"])
                    if rm is not None and not isinstance(rm[i], Exception):
                        cm.append(galaxy_metrics(rm[i].AV, rm[i].HOST, sim["AV"][i], sim["S"][i])["corr"])
                inside = light_contour(sim["S"][i], 0.84)
                pix.append(np.abs(r.AV - sim["AV"][i])[inside] < r.AV_ERR[inside])
                cov.append(abs(r.scalars["AV_LW"] - tr[i]) < r.scalars["AVLW_ERR"])
            d = lambda lw: f"{np.nanmedian(np.abs(lw[sel] - tr[sel])):.3f}"  # noqa: E731
            row = [f"{zr[0]:g}-{zr[1]:g}", f"{np.mean(fz <= 0.03):.0%}", f"{np.mean(fo <= 0.03):.0%}",
                   f"{np.median(fd):.3f}", str(int(sel.sum())), f"{np.median(tr[sel]):.3f}", d(lz), d(lo),
                   d(_lw(rm)) if rm is not None else "", f"{np.nanmedian(cz):.2f} ({len(cz)})",
                   f"{np.nanmedian(cm):.2f}" if cm else "", f"{np.mean(cov):.0%}",
                   f"{np.mean(np.concatenate(pix)):.0%}", f"{np.mean([r.scalars['FLAG'] for r in rz]):.0%}"]
            lsim, lobs = _sim("realistic", bands, a.psf, zr, 5151, a.n)
            ls = np.asarray(lsim["covfrac"]) < 0.9
            lt = np.asarray(lsim["av_lw"])[ls]
            m = lambda lw: f"{np.median(lw[ls]):.3f} ({np.median(np.abs(lw[ls] - lt)):.3f})"  # noqa: E731
            row += [f"{ls.sum()}, {np.median(lt):.3f}", m(_lw(znet.fit(lobs))), m(_lw(old.fit(lobs)))]
            print("| " + " | ".join(row) + " |", flush=True)
        # throughput of the network pass (prepared inputs, batches of 64, compiled)
        from galdust.dust.job import prepare

        items = [(prepare(o), tuple(o.bands), znet.psf_input(o, prepare(o)), o.redshift) for o in obs]
        items = (items * (128 // len(items) + 1))[:128]
        znet.predict_prepared(items[:64], pad=True)
        t = time.perf_counter()
        znet.predict_prepared(items, pad=True)
        print(f"\nz-net pass: {len(items) / (time.perf_counter() - t):.0f} galaxies/s (128 prepared galaxies, "
              "batches of 64)")


def warm_table(a, znet, old):
    """The MAP fit from the rest-frame network against the default start (``--warm``)."""
    both = AmortizedFitter(old.net, old.meta, batch_size=64, rest=znet)
    default = make_fitter(batch_size=16)
    warm = dataclasses.replace(default, start="amortized", init_net=both)
    print(f"{a.n} dusty (seed 7373) and dust-free (seed 7374) realistic hosts per bin, rest-frame dust, peak S/N "
          f"50, PSF {a.psf:g} px, with their redshifts; MAP fit with galdust fit's defaults, default start against "
          "--start amortized (the rest-frame network); dusty columns over f < 0.9\n")
    for name in a.bands.split(","):
        bands = BANDS[name.strip()]
        print(f"\n{name} {','.join(bands)}\n")
        print("| host z | start | median abs dA_V,LW | map corr (N struct) | median iterations (dusty) "
              "| dust-free <= 0.03 | median iterations (dust-free) |")
        print("|---|---|---|---|---|---|---|")
        for zr in BINS:
            _, free = _sim("dust-free", bands, a.psf, zr, 7374, a.n)
            sim, obs = _sim("realistic", bands, a.psf, zr, 7373, a.n)
            sel = np.asarray(sim["covfrac"]) < 0.9
            tr = np.asarray(sim["av_lw"])
            for label, f in (("default", default), ("network", warm)):
                res, rf = f.fit(obs), f.fit(free)
                corr = [galaxy_metrics(res[i].AV, res[i].HOST, sim["AV"][i], sim["S"][i])["corr"]
                        for i in np.flatnonzero(sel) if galaxy_metrics(res[i].AV, res[i].HOST, sim["AV"][i],
                                                                        sim["S"][i])["av_sd_true"] >= STRUCTURE_MIN]
                lw, lf = _lw(res), _lw(rf)
                print(f"| {zr[0]:g}-{zr[1]:g} | {label} | {np.nanmedian(np.abs(lw[sel] - tr[sel])):.3f} | "
                      f"{np.nanmedian(corr):.2f} ({len(corr)}) | {np.median([r.scalars['NITER'] for r in res]):.0f} | "
                      f"{np.mean(lf <= 0.03):.0%} | {np.median([r.scalars['NITER'] for r in rf]):.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
