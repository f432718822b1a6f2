"""Speed of the dust fit (galdust fit's engine) on 64×64 griz simulated galaxies; prints tables.

    python bench/bench_fit.py [--n 64] [--batch 1 8 16 32] [--host single|bulge-disk] [--scarlet2-python PATH]

* single galaxy: wall time of the first call (JIT compilation + fit) and of a second call on
  another galaxy (converged fit after JIT), through ``DustFitter`` (the ``galdust fit`` path:
  masking, both fits, products), with the learned priors;
* batched throughput in galaxies/s for several batch sizes (vmap);
* peak resident memory of the process;
* optionally the same image fitted dust-free by scarlet2 (HSC prior, 1000 iterations) in a
  separate interpreter that has scarlet2 (``bench/scarlet2_fit.py``), and the time ratio.
Not a test: it never gates CI.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from galdust.dust.evaluate import sim_observations
from galdust.dust.fit import FitConfig
from galdust.dust.job import DustFitter
from galdust.io import write_cube
from galdust.simulate import SimConfig, simulate


def observations(n, seed=7):
    cfg = SimConfig(snr=50.0, snr_kind="peak")
    return sim_observations(simulate(jax.random.PRNGKey(seed), n, cfg, batch=min(n, 32)), cfg, "bench")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 16, 32])
    ap.add_argument("--scarlet2-python", default=None, help="python of a venv with scarlet2 installed")
    ap.add_argument("--host", default="single", help="the fit's host model (galdust fit --host)")
    a = ap.parse_args()
    cfg = FitConfig(host=a.host)
    obs = observations(a.n)
    print(f"device: {jax.devices()[0].platform}, {jax.device_count()} device(s); 64x64 griz, peak S/N 50, "
          f"host {a.host}")
    print()
    fitter = DustFitter.with_priors(batch_size=1, cfg=cfg)
    t0 = time.perf_counter()
    r0 = fitter.fit(obs[:1])[0]
    t_first = time.perf_counter() - t0
    times, iters = [], []
    for o in obs[1:6]:
        t0 = time.perf_counter()
        r = fitter.fit([o])[0]
        times.append(time.perf_counter() - t0)
        iters.append(r.scalars["NITER"])
    print("| single galaxy | wall s |")
    print("|---|---|")
    print(f"| first call (JIT compile + fit) | {t_first:.1f} |")
    print(f"| after JIT, median of 5 galaxies ({int(np.median(iters))} iterations) | {np.median(times):.2f} |")
    print(f"| per iteration | {1e3 * np.median(times) / np.median(iters):.1f} ms |")
    print()
    print("| batch size | compile + first batch s | galaxies/s (after JIT) |")
    print("|---|---|---|")
    for b in a.batch:
        if b == 1:
            print(f"| 1 | {t_first:.1f} | {1.0 / np.median(times):.2f} |")
            continue
        f = DustFitter.with_priors(batch_size=b, cfg=cfg)
        t0 = time.perf_counter()
        f.fit(obs[:b])
        t_c = time.perf_counter() - t0
        m = (len(obs) // b) * b
        t0 = time.perf_counter()
        f.fit(obs[:m])
        dt = time.perf_counter() - t0
        print(f"| {b} | {t_c:.1f} | {m / dt:.2f} |")
    print()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {rss:.0f} MiB")
    if a.scarlet2_python:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "g.fits"
            o = obs[1]
            write_cube(p, o.cube, o.bands, ivar=o.ivar, psf=o.psf)
            out = subprocess.run([a.scarlet2_python, str(Path(__file__).with_name("scarlet2_fit.py")), str(p)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print("scarlet2 run failed:", out.stderr.strip().splitlines()[-1:])
                return
            s2 = json.loads(out.stdout.strip().splitlines()[-1])
        print()
        print("| same galaxy | wall s | ratio to galdust (after JIT) |")
        print("|---|---|---|")
        print(f"| galdust joint dust fit, after JIT | {times[0]:.2f} | 1.0 |")
        print(f"| scarlet2 dust-free, {s2['iters']} it, HSC prior, first call | {s2['first_s']:.2f} | "
              f"{s2['first_s'] / times[0]:.1f} |")
        print(f"| scarlet2 dust-free, {s2['iters']} it, HSC prior, second call | {s2['second_s']:.2f} | "
              f"{s2['second_s'] / times[0]:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
