"""Simulator throughput: galaxies/s for 64x64 griz on this machine (prints a table).

    python bench/bench_simulate.py [--n 512] [--big 20000]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import jax

from galdust.simulate import SimConfig, simulate


def rate(cfg: SimConfig, n: int, batch: int, seed: int = 0) -> tuple[float, float, float]:
    simulate(jax.random.PRNGKey(seed), batch, cfg, batch=batch)  # compile
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    simulate(jax.random.PRNGKey(seed + 1), n, cfg, batch=batch)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return n / dt, dt, (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--big", type=int, default=0, help="also time a bulk run of this many galaxies")
    ap.add_argument("--n-los", type=int, nargs="*", default=[32, 48])
    ap.add_argument("--batch", type=int, nargs="*", default=[32, 64])
    a = ap.parse_args()
    print(f"cores: {os.cpu_count()}  jax {jax.__version__}  device: {jax.devices()[0].platform}")
    print(f"{'n_los':>5} {'batch':>5} {'N':>6} {'gal/s':>8} {'wall s':>8} {'cpu/wall':>8}")
    for nl in a.n_los:
        for b in a.batch:
            r, dt, u = rate(SimConfig(n_los=nl), a.n, b)
            print(f"{nl:>5} {b:>5} {a.n:>6} {r:>8.1f} {dt:>8.2f} {u:>8.2f}")
    if a.big:
        cfg = SimConfig()
        r, dt, u = rate(cfg, a.big, 64)
        print(f"bulk {a.big} galaxies (default n_los={cfg.n_los}): {dt:.1f} s = {r:.1f} gal/s")


if __name__ == "__main__":
    main()
