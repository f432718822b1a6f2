"""Amortised dust maps (issue 29): accuracy against the MAP fit, calibration, generalisation, speed.

    python bench/bench_amortized.py                       # the shipped network, 64 galaxies per set
    python bench/bench_amortized.py --model my.eqx --n 32 --no-map --no-speed
    python bench/bench_amortized.py --n 256 --seed 1003 --no-map --no-speed --quick --subsets --psfs

Held-out galaxies: seed 1001 by default (--seed; no training or calibration store uses 1001–1003),
peak S/N 50 unless a row says otherwise, the simulator's default 2-px Gaussian PSF. Per set: median |ΔA_V,LW| (f < 0.9),
median map correlation over the structured maps (truth spread ≥ 0.03 mag, f < 0.9), the fraction
of pixels inside the truth's 84 % host-light contour whose truth lies in the network's 68 %
interval (all galaxies), the same for A_V,LW per galaxy (all, and f < 0.9), and for the dust-free set the fraction with A_V,LW ≤ 0.03.
The MAP fit (``galdust fit`` defaults, red start) and the MAP fit started from the network
(``--start amortized``) run on the same galaxies. Speed: ``galdust fit --method amortized`` over
FITS files in one command (marginal rate: the difference of two runs of N and 4N files, start-up
aside), and ``galdust fit`` (MAP) the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from scipy.stats import norm

from galdust.dust.amortized import AmortizedFitter
from galdust.dust.evaluate import BAND_SETS, effective_av_maps, galaxy_metrics, host_config, light_contour, sim_observations
from galdust.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]


def _sets(full: bool, sets=None, surveys: bool = False, subsets: bool = False, psfs: bool = False):
    # (label, host set, band set, S/N, PSF FWHM px)
    rows = [("realistic griz", "realistic", "griz", 50, 2.0), ("realistic grizJ", "realistic", "grizJ", 50, 2.0),
            ("isochromatic griz", "isochromatic", "griz", 50, 2.0),
            ("isochromatic grizJ", "isochromatic", "grizJ", 50, 2.0),
            ("dust-free griz", "dust-free", "griz", 50, 2.0), ("dust-free grizJ", "dust-free", "grizJ", 50, 2.0)]
    if full:
        rows += [("stress griz", "stress", "griz", 50, 2.0), ("realistic griz, S/N 20", "realistic", "griz", 20, 2.0),
                 ("realistic griz, S/N 200", "realistic", "griz", 200, 2.0),
                 ("realistic griz, PSF 3 px", "realistic", "griz", 50, 3.0),
                 ("realistic griz, PSF 1 px", "realistic", "griz", 50, 1.0),
                 ("nucleus (AGN) griz", "nucleus", "griz", 50, 2.0),
                 ("nucleus (AGN), dust-free griz", "nucleus-dust-free", "griz", 50, 2.0)]
    if surveys:
        for name in SURVEY_SETS:
            rows += [(f"realistic {name}", "realistic", name, 50, 2.0), (f"dust-free {name}", "dust-free", name, 50, 2.0)]
    if subsets:
        for name in SUBSET_SETS:
            rows += [(f"realistic {name}", "realistic", name, 50, 2.0), (f"dust-free {name}", "dust-free", name, 50, 2.0)]
    if psfs:
        for name in ("SDSS griz", "LSST ugrizy", "HSC grizy + Euclid YJH"):
            for fw in (1.2, 3.0, 4.5):
                rows += [(f"realistic {name}, PSF {fw:g} px", "realistic", name, 50, fw)]
    return [r for r in rows if sets is None or r[0] in sets]


#: the other surveys' band sets of the wavelength-slot network (issue 29)
SURVEY_SETS = {"SDSS ugriz": ("sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z"),
               "SDSS ugriz + 2MASS JH": ("sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z", "2mass_j", "2mass_h"),
               "HSC grizy": ("hsc_g", "hsc_r", "hsc_i", "hsc_z", "hsc_y"),
               "HSC grizy + Euclid YJH": ("hsc_g", "hsc_r", "hsc_i", "hsc_z", "hsc_y", "euclid_y", "euclid_j", "euclid_h"),
               "LSST ugrizy": ("lsst_u", "lsst_g", "lsst_r", "lsst_i", "lsst_z", "lsst_y"),
               "LSST ugrizy + Euclid YJH": ("lsst_u", "lsst_g", "lsst_r", "lsst_i", "lsst_z", "lsst_y", "euclid_y",
                                            "euclid_j", "euclid_h")}


#: subsets of the trained band sets (a network trained with band dropout serves them)
SUBSET_SETS = {"LSST gri": ("lsst_g", "lsst_r", "lsst_i"), "HSC gri": ("hsc_g", "hsc_r", "hsc_i"),
               "SDSS gri": ("sdss_g", "sdss_r", "sdss_i"), "LSST riz + Euclid J": ("lsst_r", "lsst_i", "lsst_z", "euclid_j")}


def _sim(hosts, band_set, snr, psf, n, seed):
    bands = {"SDSS griz": BAND_SETS["griz"], **SURVEY_SETS, **SUBSET_SETS}.get(band_set) or BAND_SETS[band_set]
    cfg = host_config(hosts, bands=bands, snr=snr, snr_kind="peak", psf_fwhm=psf)
    sim = simulate(jax.random.PRNGKey(seed), n, cfg, batch=min(n, 32))
    return sim, cfg, sim_observations(sim, cfg, f"b{seed}_")


def _metrics_amortized(res, sim, i):
    """The map's correlation as for the MAP fit; A_V,LW is the network's own (header AV_LW, the pooled
    output trained on the simulator's V-light-weighted truth ``av_lw``), not the mean of the clipped map."""
    m = galaxy_metrics(res.AV, res.HOST, sim["AV"][i], sim["S"][i])
    inside = light_contour(sim["S"][i], 0.84)
    z = np.abs(res.AV - sim["AV"][i]) / np.maximum(res.AV_ERR, 1e-6)
    lw_true, lw = float(sim["av_lw"][i]), res.scalars["AV_LW"]
    return dict(m, av_lw_fit=lw, av_lw_true=lw_true, dAV=lw - lw_true, z_pix=z[inside],
                av_lw_sig=res.scalars["AVLW_ERR"], z_lw=abs(lw - lw_true) / max(res.scalars["AVLW_ERR"], 1e-6))


def _metrics_map(res, sim, i, psf0):
    av, host = effective_av_maps(res.HOST, res.D, res.scalars["DELTA"], psf0)
    return dict(galaxy_metrics(np.asarray(av), np.asarray(host), sim["AV"][i], sim["S"][i]), niter=res.scalars["NITER"])


def _summ(rows, cov, free=False):
    d = np.array([r["dAV"] for r in rows])
    c = np.array([r["corr"] for r in rows])
    sd = np.array([r["av_sd_true"] for r in rows])
    m = cov < 0.9
    ms = m & (sd >= 0.03) & np.isfinite(c)
    out = dict(absd=float(np.median(np.abs(d[m]))) if m.any() else np.nan,
               corr=float(np.median(c[ms])) if ms.any() else np.nan, n_struct=int(ms.sum()), n=int(m.sum()))
    if free:
        lw = np.array([r["av_lw_fit"] for r in rows])
        out["free_ok"] = float(np.mean(lw <= 0.03))
        out["free_med"] = float(np.median(lw))
    if "z_pix" in rows[0]:
        zp = np.concatenate([r["z_pix"] for r in rows])
        out["cov_pix"] = float(np.mean(zp < 1.0))
        out["cov_lw"] = float(np.mean([r["z_lw"] < 1.0 for r in rows]))
        out["cov_lw9"] = float(np.mean([r["z_lw"] < 1.0 for r, k in zip(rows, m) if k])) if m.any() else np.nan
        out["zp"] = zp
        out["zl"] = np.array([r["z_lw"] for r in rows])
    if "niter" in rows[0]:
        out["niter"] = float(np.median([r["niter"] for r in rows]))
    return out


def _speed(model_arg, n_small, n_big, method="amortized", run=False, extra=()):
    """Marginal galaxies/s of one `galdust fit` (or, with ``run``, `galdust run fit` on the local Dask
    cluster: one worker process per core) command over FITS files (N and 4N files)."""
    from galdust.simulate import SimConfig
    from galdust.simulate.store import write_galaxies

    cfg = SimConfig(snr=50.0, snr_kind="peak")
    sim = simulate(jax.random.PRNGKey(4242), n_big, cfg, batch=32)
    times = {}
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        write_galaxies(sim, cfg, td / "in")
        files = sorted(str(p) for p in (td / "in").glob("gal_*.fits"))
        for n in (n_small, n_big):
            if run:
                (td / f"in{n}").mkdir()
                for f in files[:n]:
                    (td / f"in{n}" / Path(f).name).hardlink_to(f)
                cmd = [sys.executable, "-m", "galdust.cli", "run", "fit", "--inputs", str(td / f"in{n}" / "*.fits"),
                       "--out", str(td / f"o{n}"), "--quiet", "--batch-size", "64"]
            else:
                cmd = [sys.executable, "-m", "galdust.cli", "fit", *files[:n], "--out", str(td / f"o{n}"), "--quiet"]
            if method == "amortized":
                cmd += ["--method", "amortized"] + (["--model", model_arg] if model_arg else [])
                cmd += [] if run else ["--batch-size", "64"]
            cmd += list(extra)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            times[n] = time.perf_counter() - t0
    rate = (n_big - n_small) / (times[n_big] - times[n_small])
    startup = times[n_small] - n_small / rate
    return rate, startup, times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="weights (.eqx); default the shipped network")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1001)
    ap.add_argument("--no-map", action="store_true", help="skip the MAP fits")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--quick", action="store_true", help="only the first six sets")
    ap.add_argument("--surveys", action="store_true", help="also the other surveys' band sets (SDSS ugriz, HSC, "
                    "LSST, with 2MASS / Euclid)")
    ap.add_argument("--subsets", action="store_true", help="also subsets of the band sets (LSST gri, ...)")
    ap.add_argument("--psfs", action="store_true", help="also PSF FWHM 1.2, 3 and 4.5 px on three band sets")
    ap.add_argument("--sets", default=None, help="only these sets (labels, ';'-separated)")
    ap.add_argument("--speed-only", action="store_true", help="only the speed table")
    ap.add_argument("--map-cache", default=None, help="JSON file keeping the red-start MAP summaries (they do "
                    "not depend on the network)")
    ap.add_argument("--only-map-red", action="store_true", help="only fill --map-cache")
    ap.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "amortized_calibration.png"))
    a = ap.parse_args()
    net = AmortizedFitter.load(a.model, batch_size=64)
    cache = json.loads(Path(a.map_cache).read_text()) if a.map_cache and Path(a.map_cache).exists() else {}
    from galdust.dust.api import make_fitter

    print(f"model: {a.model or 'shipped amortized-dust'}; {a.n} galaxies per set, seed {a.seed}\n")
    head = ("| set | N (f<0.9) | amortised abs ΔA_V | MAP abs ΔA_V | amortised corr (N) | MAP corr | "
            "pixels in 68 % | A_V,LW in 68 % (all / f<0.9) | dust-free ≤ 0.03 (net / MAP) | MAP iters: red / from net |")
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    curves = {}
    only = None if a.sets is None else a.sets.split(";")
    for label, hosts, bset, snr, psf in ([] if a.speed_only else _sets(not a.quick, only, a.surveys, a.subsets, a.psfs)):
        sim, cfg, obs = _sim(hosts, bset, snr, psf, a.n, a.seed)
        if not net.supports(obs[0].bands):
            print(f"| {label} | the network has no band set {','.join(obs[0].bands)} | | | | | | | | |", flush=True)
            continue
        res = net.fit(obs)
        rows = [_metrics_amortized(r, sim, i) for i, r in enumerate(res)]
        cov = np.asarray(sim["covfrac"])
        s = _summ(rows, cov, free=hosts.endswith("dust-free"))
        curves[label] = (s["zp"], s["zl"])
        mp = dict(absd=np.nan, corr=np.nan, free_ok=np.nan, niter=np.nan)
        it_net = np.nan
        main_map = not a.no_map and snr == 50 and psf == 2.0 and hosts != "stress"
        if main_map:
            psf0 = obs[0].psf[0]
            fitter = make_fitter(batch_size=16, start="red")
            key = f"{label}|{a.n}|{a.seed}"
            if key in cache:  # the red-start MAP fit does not depend on the network
                mp = cache[key]
            else:
                rm = fitter.fit(obs)
                mp = _summ([_metrics_map(r, sim, i, psf0) for i, r in enumerate(rm)], cov, free=hosts.endswith("dust-free"))
                cache[key] = mp
                if a.map_cache:
                    Path(a.map_cache).write_text(json.dumps(cache, indent=1))
            if a.only_map_red:
                print(label, mp, flush=True)
                continue
            fn = dataclasses.replace(fitter, start="amortized", init_net=net)
            rn = fn.fit(obs)
            sn = _summ([_metrics_map(r, sim, i, psf0) for i, r in enumerate(rn)], cov, free=hosts.endswith("dust-free"))
            it_net = sn["niter"]
            mp["net_absd"], mp["net_corr"] = sn["absd"], sn["corr"]
        free = (f"{s['free_ok']:.0%} / {mp.get('free_ok', np.nan):.0%}" if hosts.endswith("dust-free") else "")
        print(f"| {label} | {s['n']} | {s['absd']:.3f} | {mp['absd']:.3f} | {s['corr']:.3f} ({s['n_struct']}) | "
              f"{mp['corr']:.3f} | {s['cov_pix']:.1%} | {s['cov_lw']:.1%} / {s['cov_lw9']:.1%} | {free} | "
              f"{mp['niter']:.0f} / {it_net:.0f} |", flush=True)
        if main_map:
            print(f"|   MAP from the network | | | {mp['net_absd']:.3f} | | {mp['net_corr']:.3f} | | | | |", flush=True)
    if curves:
        _figure(curves, a.figure, a.seed)
        print(f"\ncalibration curve: {a.figure}")
    if not a.no_speed:
        rows = [("galdust fit --method amortized (a process per core)", _speed(a.model, 256, 2048)),
                ("galdust fit --method amortized --workers 1", _speed(a.model, 256, 2048, extra=["--workers", "1"])),
                ("galdust run fit --method amortized (2 workers)", _speed(a.model, 256, 2048, run=True)),
                ("galdust fit (MAP, defaults)", _speed(None, 8, 24, method="map"))]
        print("\n| command | marginal galaxies/s (FITS in and out) | start-up s | runs |")
        print("|---|---|---|---|")
        for label, (r, s0, t) in rows:
            print(f"| {label} | {r:.1f} | {s0:.1f} | {', '.join(f'{k} files {v:.1f} s' for k, v in t.items())} |")
        print(f"\namortized / MAP: {rows[0][1][0] / rows[3][1][0]:.0f}x (galdust fit), "
              f"{rows[1][1][0] / rows[3][1][0]:.0f}x (--workers 1), {rows[2][1][0] / rows[3][1][0]:.0f}x (run fit)")


def _figure(curves, path, seed=1001):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = np.linspace(0.05, 0.99, 40)
    rows = -(-len(curves) // 3)  # the legend under the panels, in three columns, however many sets
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.5 + 0.16 * rows), layout="constrained")
    for label, (zp, zl) in curves.items():
        ax[0].plot(levels, [np.mean(zp < norm.ppf(0.5 + q / 2)) for q in levels], label=label)
        ax[1].plot(levels, [np.mean(zl < norm.ppf(0.5 + q / 2)) for q in levels], label=label)
    for a, t in zip(ax, ("per pixel (inside the 84 % host-light contour)", "light-weighted A_V per galaxy")):
        a.plot([0, 1], [0, 1], "k--", lw=1)
        a.axvline(0.68, color="grey", lw=0.5)
        a.set_xlabel("nominal central interval")
        a.set_ylabel("fraction of truths inside")
        a.set_title(t, fontsize=10)
    fig.legend(*ax[1].get_legend_handles_labels(), loc="outside lower center", fontsize=7, ncol=3)
    fig.suptitle(f"amortised dust maps: calibration on held-out simulations (seed {seed})")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
