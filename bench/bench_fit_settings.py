"""Dust-fit settings on development galaxies: one row per (FitConfig override, start, host); prints a table.

    python bench/bench_fit_settings.py [--n 48] [--seed 2001] [--snr 50] \
        [--setting '{}' --setting '{"a_scale": 1.0}' ...] [--starts red,blue] [--hosts realistic,dust-free]

Development galaxies: simulation seed 2001, neither the dust prior's training seed (1) nor the
evaluation seed of ``galdust evaluate dust`` (1001), so settings chosen here are not tuned on the
evaluation. Each row fits the same ``--n`` galaxies through ``DustFitter`` (the ``galdust fit``
path) and reports, over galaxies with covering fraction f < 0.9 (the issue's goal set): median
|ΔA_V|, median ΔA_V and median A_V-map correlation; the median fit/truth A_V,LW ratio of the
galaxies with A_V,LW > 0.1 (all f), which shows under- or over-estimation of real dust; and the
wall time. A setting is a JSON object of :class:`~galdust.dust.fit.FitConfig` fields, plus
optionally ``"priors": false`` and ``"dust_sigma"`` (the dust prior's noise level). Not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from galdust.dust.evaluate import evaluate_config
from galdust.dust.fit import FitConfig
from galdust.dust.job import DustFitter
from galdust.priors.dust import dust_prior


def run(setting: dict, *, start: str, hosts: str, n: int, seed: int, snr: float) -> dict:
    setting = dict(setting)
    priors = bool(setting.pop("priors", True))
    sigma = setting.pop("dust_sigma", None)
    cfg = dataclasses.replace(FitConfig(), **setting)
    fitter = DustFitter.with_priors(cfg=cfg) if priors else DustFitter(cfg=cfg)
    if priors and sigma is not None:
        fitter.dust_score = dust_prior(sigma=float(sigma))
    t0 = time.perf_counter()
    rows = evaluate_config(n=n, snr=snr, snr_kind="peak", hosts=hosts, start=start, priors=priors,
                           seed=seed, batch_size=16, fitter=fitter)
    wall = time.perf_counter() - t0
    rows = [r for r in rows if not r["error"]]
    col = lambda k: np.array([r[k] for r in rows], float)  # noqa: E731
    cov, d, c, avt, avf = col("covfrac"), col("dAV"), col("corr"), col("av_lw_true"), col("av_lw_fit")
    m = cov < 0.9
    dusty = avt > 0.1
    return dict(absd=float(np.median(np.abs(d[m]))), dmed=float(np.median(d[m])), corr=float(np.nanmedian(c[m])),
                ratio=float(np.median(avf[dusty] / avt[dusty])) if dusty.any() else np.nan, n=int(m.sum()), wall=wall)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=2001)
    ap.add_argument("--snr", type=float, default=50.0)
    ap.add_argument("--setting", action="append", default=None, help="JSON object of FitConfig overrides")
    ap.add_argument("--starts", default="red,blue")
    ap.add_argument("--hosts", default="realistic,dust-free")
    a = ap.parse_args()
    settings = [json.loads(s) for s in (a.setting or ["{}"])]
    print(f"development galaxies: seed {a.seed}, {a.n} per row, peak S/N {a.snr:g}; f < 0.9 medians")
    print()
    print("| setting | start | host | N (f<0.9) | median abs ΔA_V | median ΔA_V | median corr | "
          "fit/true A_V,LW (A_V,LW > 0.1) | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in settings:
        for start in a.starts.split(","):
            for host in a.hosts.split(","):
                r = run(s, start=start, hosts=host, n=a.n, seed=a.seed, snr=a.snr)
                print(f"| `{json.dumps(s)}` | {start} | {host} | {r['n']} | {r['absd']:.3f} | {r['dmed']:+.3f} | "
                      f"{r['corr']:.2f} | {r['ratio']:.2f} | {r['wall']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
