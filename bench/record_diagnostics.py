"""Record each shipped posterior's headline diagnostics in its sidecar (``diagnostics``): TARP's
largest expected-coverage deviation and the 16–84 % coverage per property, on held-out simulations
of seeds no model was trained on. ``galdust models`` lists them.

    python bench/record_diagnostics.py [--n 500] [--samples 500] [--work scratch/diag] [--write] [--models cfm-phot,...]
                                       [--candidate vae-nf=NEW.eqx ...]

Without ``--write`` it prints the table only. ``--candidate NAME=FILE`` (repeatable) diagnoses a
retrained model file on the same held-out set, beside the shipped one, and is never written.
The table also gives the posterior medians' bias and σ_NMAD against the truth (log M*, log SFR). The held-out sets: ``galdust simulate-sed --n N --seed
9101`` (the calibrated SDSS prior: the photometric models, the z-conditioned ones at the true z) and
``galdust simulate-sed --images --r-limit 17.77 --n N --seed 9102`` (the image models; since session 40
it draws the image simulator's calibrated population, on which they were trained). Only the JSON
sidecars change; the weights (and their SHA-256) do not. Not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import jax.random as jr
import numpy as np

from galdust.models import shipped_path
from galdust.posterior.data import read_simulations
from galdust.posterior.diagnostics import tarp
from galdust.posterior.kinds import load_model
from galdust.posterior.model import luptitudes

PHOT = ("cfm-phot", "cfm-onestep", "cfm-phot-z", "cfm-onestep-z")
IMAGE = ("cfm-image", "vae-nf")


def held_out(work: Path, n: int, images: bool) -> Path:
    out = work / ("images_9102.parquet" if images else "phot_9101.parquet")
    if not out.exists():
        cmd = ["galdust", "simulate-sed", "--n", str(n), "--out", str(out)]
        cmd += ["--images", "--r-limit", "17.77", "--seed", "9102"] if images else ["--seed", "9101"]
        subprocess.run([str(Path(sys.executable).parent / cmd[0])] + cmd[1:], check=True)
    return out


def diagnose(name: str, table: Path, samples: int, path: Path | None = None) -> dict:
    m, meta = load_model(path or shipped_path(name))
    cat, imgs = read_simulations([table], images=m.needs_images)
    given = np.stack([cat.truth[p] for p in m.given], 1) if m.given else None
    keep = np.all(np.isfinite(cat.flux), axis=1) & np.all([np.isfinite(cat.truth[p]) for p in m.props], axis=0)
    r_limit = meta.get("r_limit")  # the training set's selection (a one-step sampler: its teacher's)
    if r_limit is not None:
        keep &= luptitudes(cat.flux, m.soft)[:, list(m.bands).index("sdss_r")] < r_limit
    truth = np.stack([cat.truth[p] for p in m.props], 1)[keep]
    images = None if imgs is None else np.asarray(imgs[np.nonzero(keep)[0]], np.float32)
    _, smp, _ = m.summarise(cat.flux[keep], jr.PRNGKey(0), n_samples=samples, n_steps=100, images=images,
                            given=None if given is None else given[keep], keep_samples=True)
    p16, p84 = np.percentile(smp, [16, 84], axis=1)
    cover = {p: float(np.mean((truth[:, j] >= p16[:, j]) & (truth[:, j] <= p84[:, j]))) for j, p in enumerate(m.props)}
    d = np.median(smp, axis=1) - truth
    accuracy = {p: dict(bias=float(np.median(d[:, j])), nmad=float(1.4826 * np.median(np.abs(d[:, j] - np.median(d[:, j])))))
                for j, p in enumerate(m.props)}
    return dict(accuracy=accuracy, tarp_max_dev=float(tarp(smp, truth)[2]), coverage_68=cover, r_limit=r_limit,
                coverage_68_mean=float(np.mean(list(cover.values()))), n_test=int(keep.sum()), samples=samples,
                test_set=f"galdust simulate-sed {'--images --r-limit 17.77 --seed 9102' if table.name.startswith('images') else '--seed 9101'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--work", type=Path, default=Path("scratch/diag"))
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--models", default=",".join(PHOT + IMAGE), help="comma-separated (the ones retrained)")
    ap.add_argument("--candidate", action="append", default=[], help="NAME=FILE: a retrained model of that kind")
    a = ap.parse_args()
    names = a.models.split(",")
    cands = [tuple(c.split("=", 1)) for c in a.candidate]
    names += [n for n, _ in cands if n not in names]
    a.work.mkdir(parents=True, exist_ok=True)
    tables = {im: held_out(a.work, a.n, im) for im in {name in IMAGE for name in names}}
    print("| model | N | TARP max deviation | mean 16–84 % coverage | coverage per property | log M* bias / NMAD | "
          "log SFR bias / NMAD |")
    print("|---|---|---|---|---|---|---|")
    for name, path in [(n, None) for n in names] + [(n, Path(f)) for n, f in cands]:
        d = diagnose(name, tables[name in IMAGE], a.samples, path)
        acc = [f"{d['accuracy'][p]['bias']:+.3f} / {d['accuracy'][p]['nmad']:.3f}" if p in d["accuracy"] else "-"
               for p in ("log_mstar", "log_sfr")]
        print(f"| {name}{f' ({path})' if path else ''} | {d['n_test']} | {d['tarp_max_dev']:.3f} | "
              f"{d['coverage_68_mean']:.3f} | " + ", ".join(f"{p} {v:.2f}" for p, v in d["coverage_68"].items())
              + f" | {acc[0]} | {acc[1]} |", flush=True)
        if a.write and path is None:
            side = Path(shipped_path(name)).with_suffix(".json")
            meta = json.loads(side.read_text())
            meta["diagnostics"] = d
            side.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
