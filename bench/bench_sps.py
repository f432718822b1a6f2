"""Stellar-population simulator: grid loading, photometric throughput, a 200k dataset on disk, and the
same model computed by bagpipes itself (time per galaxy and magnitude differences); prints tables.

    python bench/bench_sps.py [--n 200000] [--bagpipes 20]

Not a test: it never gates CI.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from galdust.physics import sps as S
from galdust.simulate.sed import SEDConfig, simulate_photometry


def bagpipes_compare(grid, n: int):
    """Delayed-τ galaxies with Calzetti dust (δ = 0) and nebular emission, through both codes."""
    import bagpipes as pipes

    rng = np.random.default_rng(0)
    names = ["sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z"]
    fs = S.filter_set(names)
    tmp = Path(tempfile.mkdtemp())
    files = []
    for b in names:  # bagpipes reads filter curves from files: ours, so both integrate the same curves
        from galdust.physics.filters import get_filter

        f = get_filter(b)
        p = tmp / f"{b}.dat"
        np.savetxt(p, np.c_[f.wave * 1e4, f.response])
        files.append(str(p))
    diffs, t_bp, t_us = [], [], []
    for _ in range(n):
        z, age, tau = rng.uniform(0.02, 0.25), rng.uniform(2, 9), rng.uniform(0.3, 8)
        logz, av, logu, logm = rng.uniform(-1, 0.3), rng.uniform(0, 1), -3.0, 10.5
        comp = {"redshift": z, "delayed": {"age": age, "tau": tau, "massformed": logm, "metallicity": 10**logz},
                "dust": {"type": "Calzetti", "Av": av, "eta": 2.0}, "nebular": {"logU": logu}, "t_bc": 0.01}
        t0 = time.perf_counter()
        m = pipes.model_galaxy(comp, filt_list=files, phot_units="mujy")
        t_bp.append(time.perf_counter() - t0)
        mag_bp = 23.9 - 2.5 * np.log10(m.photometry)
        t0 = time.perf_counter()
        w = S.delayed_tau_weights(grid.age_edges, age * 1e9, tau * 1e9)
        sp = S.galaxy_spectrum(grid, w, logz, logu, av, 0.0)
        f = S.photometry_nmgy(grid, fs, sp["lum"], z, 10**logm)
        f.block_until_ready()
        t_us.append(time.perf_counter() - t0)
        diffs.append(22.5 - 2.5 * np.log10(np.asarray(f)) - mag_bp)
    d = np.array(diffs)
    print(f"| band | galdust − bagpipes mag, median | max abs ({n} galaxies) |")
    print("|---|---|---|")
    for j, b in enumerate(names):
        print(f"| {b} | {np.median(d[:, j]):+.3f} | {np.max(np.abs(d[:, j])):.3f} |")
    print(f"\nper galaxy: bagpipes model_galaxy {np.median(t_bp[1:]) * 1e3:.0f} ms, galdust unbatched "
          f"{np.median(t_us[1:]) * 1e3:.1f} ms (no JIT, op by op)\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--bagpipes", type=int, default=20)
    a = ap.parse_args()
    t0 = time.perf_counter()
    S._build(S.grid_dir())
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    grid = S.load_sps()
    t_load = time.perf_counter() - t0
    print(f"{os.cpu_count()} CPU cores, device {jax.devices()[0].platform}\n")
    print("| step | s |\n|---|---|")
    print(f"| build the grids from the bagpipes FITS files (first use) | {t_build:.1f} |")
    print(f"| load the cached grids | {t_load:.2f} |")
    cfg = SEDConfig()
    t0 = time.perf_counter()
    simulate_photometry(jax.random.PRNGKey(0), 4096, cfg, grid)
    t_c = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim = simulate_photometry(jax.random.PRNGKey(1), a.n, cfg, grid)
    dt = time.perf_counter() - t0
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(tempfile.mkdtemp()) / "sed.parquet"
    t1 = time.perf_counter()
    cols = {f"flux_{b}": sim["flux"][:, j] for j, b in enumerate(cfg.bands)}
    cols.update({k: v for k, v in sim.items() if v.ndim == 1})
    pq.write_table(pa.table(cols), out)
    t_w = time.perf_counter() - t1
    print(f"| first 4,096 galaxies (incl. JIT compilation) | {t_c:.1f} |")
    print(f"| {a.n:,} galaxies, ugriz + truths | {dt:.1f} ({a.n / dt:,.0f} galaxies/s) |")
    print(f"| write them as Parquet ({out.stat().st_size / 1e6:.0f} MB) | {t_w:.1f} |\n")
    if a.bagpipes:
        bagpipes_compare(grid, a.bagpipes)


if __name__ == "__main__":
    main()
