"""The MAP fit from the amortised network (``galdust fit --start amortized``, a warm start) against the
red start (the default) and session 27's full-step start from the network, on held-out simulations.

    python bench/bench_warm_start.py [--n 64] [--seed 1001] [--no-old]

Per set (realistic / isochromatic / dust-free hosts, griz and grizJ, peak S/N 50): median |ΔA_V,LW|
over f < 0.9, median map correlation over the structured maps, the fraction of dust-free hosts
given A_V,LW ≤ 0.03, median iterations (NITER: dust-free + dust fit) and the wall time of the fits
(batches of 16, compilation included in the first row of each start). The other simulator's
dust-free hosts: ``python bench/bench_other_simulator.py --hosts auto --starts red,amortized``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_amortized import _metrics_map, _sets, _sim, _summ  # noqa: E402


def main():
    from galdust.dust.amortized import AmortizedFitter
    from galdust.dust.api import make_fitter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1001)
    ap.add_argument("--no-old", action="store_true", help="skip session 27's full-step start")
    a = ap.parse_args()
    net = AmortizedFitter.load(batch_size=64)
    red = make_fitter(batch_size=16, start="red")
    warm = dataclasses.replace(red, start="amortized", init_net=net)
    c = red.cfg
    starts = [("red (default)", red)]
    if not a.no_old:
        starts.append(("network, full steps, 300", dataclasses.replace(
            warm, cfg=dataclasses.replace(c, warm_steps=1.0, warm_iter=c.max_iter))))
    starts.append((f"network, warm (dust steps x{c.warm_steps:g}, {c.warm_iter} it)", warm))
    print(f"{a.n} galaxies per set, seed {a.seed}\n")
    print("| set | start | |ΔA_V,LW| | map correlation (N) | dust-free ≤ 0.03 | iterations | wall [s] |")
    print("|---|---|---|---|---|---|---|")
    for label, hosts, bset, snr, psf in _sets(False):
        sim, _, obs = _sim(hosts, bset, snr, psf, a.n, a.seed)
        cov = np.asarray(sim["covfrac"])
        psf0 = obs[0].psf[0]
        free = hosts.endswith("dust-free")
        for name, f in starts:
            t0 = time.time()
            res = f.fit(obs)
            s = _summ([_metrics_map(r, sim, i, psf0) for i, r in enumerate(res)], cov, free=free)
            print(f"| {label} | {name} | {s['absd']:.3f} | {s['corr']:.3f} ({s['n_struct']}) | "
                  f"{format(s['free_ok'], '.0%') if free else ''} | {s['niter']:.0f} | {time.time() - t0:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
