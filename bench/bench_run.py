"""Survey-scale runs (``galdust run fit``): scaling, pipeline overhead, kill-and-resume; prints tables.

    python bench/bench_run.py [--n 200] [--kills 20] [--kill-n 16]

* throughput for ``--n`` simulated 64×64 griz galaxies (peak S/N 50, learned priors) with 1 and 2
  local workers, each a single-threaded process (wall time of the whole command: cluster start,
  imports, JIT compilation, fits, writes, catalogue);
* the same inputs fitted by the bare batched fit in this process (read, ``DustFitter.fit``, write the
  same files; JAX's default threading), for the pipeline overhead of the default configuration;
* ``--kills`` times: a run over ``--kill-n`` 32×32 inputs (no priors, 300 iterations, batches of 2)
  killed (SIGKILL to the driver and its workers) at a random moment between the first rows and the
  end of an uninterrupted run, resumed to completion, and the catalogue checked for lost and duplicated rows.
Not a test: it never gates CI.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

GALDUST = [sys.executable, "-m", "galdust.cli"]


def simulate(out: Path, n: int, size: int, seed: int):
    subprocess.run(GALDUST + ["simulate", "--n", str(n), "--size", str(size), "--snr", "50", "--snr-kind", "peak",
                              "--seed", str(seed), "--out", str(out), "--quiet"], check=True)
    (out / "truth.csv").unlink()
    (out / "truth.parquet").unlink()


def galdust_run(inputs: Path, out: Path, workers: int, extra=()) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run(GALDUST + ["run", "fit", "--inputs", str(inputs / "*.fits"), "--out", str(out),
                                  "--workers", str(workers), "--quiet", *extra], capture_output=True, text=True)
    return time.perf_counter() - t0, r


def bare(inputs: Path, out: Path, batch: int) -> float:
    from galdust.dust.job import DustFitter
    from galdust.dust.products import output_paths, write_dust_fits, write_json
    from galdust.io import input_name, read_observation

    t0 = time.perf_counter()
    files = sorted(inputs.glob("*.fits"))
    obs = [read_observation([f]) for f in files]
    res = DustFitter.with_priors(batch_size=batch).fit(obs)
    for f, o, r in zip(files, obs, res):
        p = output_paths(out, input_name(f))
        write_dust_fits(p["fits"], r, o)
        write_json(p["json"], r, o)
    return time.perf_counter() - t0


def kill_test(inputs: Path, root: Path, reps: int, seed: int = 0):
    rng = random.Random(seed)
    args = ["--no-priors", "--max-iter", "300", "--batch-size", "2"]
    # an uninterrupted run, timing when its first rows land (the end of start-up and compilation)
    full = root / "full"
    t0 = time.perf_counter()
    p = subprocess.Popen(GALDUST + ["run", "fit", "--inputs", str(inputs / "*.fits"), "--out", str(full),
                                    "--workers", "2", "--quiet", *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    t_first = None
    while p.poll() is None:
        if t_first is None and any((full / ".galdust-run" / "parts").glob("*.parquet")):
            t_first = time.perf_counter() - t0
        time.sleep(0.02)
    t_full = time.perf_counter() - t0
    assert p.returncode == 0
    t_first = t_first or 0.0
    n = len(list(inputs.glob("*.fits")))
    rows = []
    for k in range(reps):
        out = root / f"kill{k}"
        t_kill = rng.uniform(t_first, t_full)  # while results are being written
        p = subprocess.Popen(GALDUST + ["run", "fit", "--inputs", str(inputs / "*.fits"), "--out", str(out),
                                        "--workers", "2", "--quiet", *args],
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(t_kill)
        finished_before = p.poll() is not None
        if not finished_before:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        from galdust.pipeline import catalog as cat
        from galdust.pipeline.tasks import FitTask

        at_kill = cat.read_rows(out, cat.schema(FitTask.fields))[0].num_rows if out.exists() else 0
        _, r = galdust_run(inputs, out, 2, args)
        t = pq.read_table(out / "catalog.parquet")
        names = t.column("name").to_pylist()
        expected = {f.name[:-5] for f in inputs.glob("*.fits")}
        lost = len(expected - set(names))
        dup = len(names) - len(set(names))
        missing_files = sum(not (out / f"{x}.dust.fits").exists() for x in expected)
        tmp_left = sum(1 for _ in out.glob(".*.tmp"))
        rows.append((k, t_kill, finished_before, at_kill, r.returncode, lost, dup, missing_files, tmp_left))
        shutil.rmtree(out)
    print(f"uninterrupted run: first rows at {t_first:.1f} s, done at {t_full:.1f} s; kills drawn uniformly in "
          f"between\n")
    print(f"| kill | killed at s | rows at kill (of {n}) | resume rc | lost rows | "
          f"duplicated rows | missing outputs | temp files left |")
    print("|---|---|---|---|---|---|---|---|")
    for k, tk, fin, ak, rc, lost, dup, mf, tl in rows:
        print(f"| {k} | {tk:.1f}{' (had finished)' if fin else ''} | {ak} | {rc} | {lost} | {dup} | {mf} | {tl} |")
    print(f"\ntotal over {reps} kills: lost {sum(r[5] for r in rows)}, duplicated {sum(r[6] for r in rows)}, "
          f"missing outputs {sum(r[7] for r in rows)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--kill-n", type=int, default=64)
    ap.add_argument("--skip-throughput", action="store_true")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="galdust_bench_run_"))
    try:
        print(f"{os.cpu_count()} CPU cores; inputs: 64x64 griz simulated galaxies, peak S/N 50, priors on, "
              f"batch {a.batch}; local workers are single-threaded processes pinned to one core each\n")
        if not a.skip_throughput:
            inp = root / "inputs"
            simulate(inp, a.n, 64, seed=7)
            t_bare = bare(inp, root / "bare", a.batch)
            res = {}
            for w in (1, 2):
                dt, r = galdust_run(inp, root / f"w{w}", w, ["--batch-size", str(a.batch)])
                assert r.returncode == 0, r.stderr
                res[w] = dt
            print("| configuration | wall s (incl. start + JIT) | galaxies/s |")
            print("|---|---|---|")
            print(f"| bare batched fit, one process (JAX default threads) | {t_bare:.1f} | {a.n / t_bare:.2f} |")
            for w, dt in res.items():
                print(f"| galdust run, {w} worker{'s' if w > 1 else ''} x 1 thread | {dt:.1f} | {a.n / dt:.2f} |")
            print(f"\nscaling 1 -> 2 workers: {res[1] / res[2]:.2f}x; pipeline overhead of the default (2 workers) "
                  f"against the bare batched fit: {100 * (res[2] / t_bare - 1):+.1f} %\n")
        if a.kills:
            kin = root / "kill_inputs"
            simulate(kin, a.kill_n, 32, seed=11)
            kill_test(kin, root, a.kills)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
