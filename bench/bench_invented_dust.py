"""What makes the fit invent dust on dust-free hosts: the same 64 dust-free realistic galaxies (seed
1001, grizJ, peak S/N 50) with and without their star-forming clumps (f_clump = 0), fitted with
galdust fit's defaults (red start) and ``--host`` (default: galdust fit's); prints one line per case.
Not a test: it never gates CI.

    python bench/bench_invented_dust.py [--host single]   # 1.5 min on 2 cores

Session 24 (host single, then the default): 43 of 64 at or below 0.03 mag with their clumps, 63 of 64
without them.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np

from galdust.dust.evaluate import RED_BANDS, host_config, sim_observations
from galdust.dust.api import make_fitter
from galdust.simulate import simulate


def main():
    from galdust.dust.fit import DEFAULT_HOST

    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--host", default=DEFAULT_HOST, help="fit host model (galdust fit --host)")
    args = a.parse_args()
    cfg = host_config("dust-free", bands=RED_BANDS, snr=50.0, snr_kind="peak")
    sim = simulate(jax.random.PRNGKey(1001), 64, cfg, batch=32)
    p = sim["params"]
    fitter = dataclasses.replace(make_fitter(host=args.host), start="red", batch_size=16)
    print(f"fit host: {args.host} ({fitter.cfg.host})")
    out = {}
    for label, params in (("with clumps", None), ("no clumps", p._replace(f_clump=0.0 * p.f_clump))):
        t = time.perf_counter()
        s = sim if params is None else simulate(jax.random.PRNGKey(1001), 64, cfg, batch=32, params=params)
        obs = sim_observations(s, cfg, "nc_")
        res = fitter.fit(obs)
        lw = np.array([r.scalars["AV_LW"] for r in res])
        out[label] = lw
        print(f"{label}: A_V,LW <= 0.03 on {(lw <= 0.03).sum()} of 64 ({(lw <= 0.03).mean():.0%}); median {np.median(lw):.3f}, "
              f"84 % {np.percentile(lw, 84):.3f}; {time.perf_counter() - t:.0f} s", flush=True)
    fc = np.asarray(p.f_clump)
    m = fc > 0.1
    print(f"galaxies with f_clump > 0.1 ({m.sum()}): median A_V,LW {np.median(out['with clumps'][m]):.3f} with, "
          f"{np.median(out['no clumps'][m]):.3f} without their clumps")


if __name__ == "__main__":
    main()
