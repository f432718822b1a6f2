"""Real HSC galaxies fitted with each host model (``galdust fit --host``); prints a table.

    python bench/bench_hsc_hosts.py [--hosts single,bulge-disk] [--starts auto] [--size 40] [--out DIR]
    python bench/bench_hsc_hosts.py --hosts auto --starts red,amortized   # the MAP fit from the network

Every catalogued source of the two HSC scenes in ``../shared/data/hsc`` (scarlet's hsc_cosmos_35 and
hsc_cosmos) with enough light is cut out (``size``×``size`` around its centre; hsc_cosmos has no
variance plane, so its noise is the sky's, from the scene's outskirts) and fitted with galdust fit's
defaults and each ``--host``. Per galaxy: its g − i colour (inside r < 5 px) as an early-type marker, and
per host model (and ``--starts``) A_V,LW, χ² of the dust and the dust-free fit, and the fitted bulge share
(bulge-disk); with the network's start, the start used (red where the galaxy is outside the network's
training colours: its ``NOTE``).
No truth is known: an early-type galaxy (red, smooth) should get little dust and a host without rings
or holes (the figures in ``--out``). Not a test: it never gates CI.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from galdust.cli.demo import cutout
from galdust.dust.api import fit_files
from galdust.io import read_npz, write_cube

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hsc"


def cutouts(out: Path, size: int) -> list[tuple[Path, float]]:
    """(cube FITS, g − i) of each bright catalogued source of the two scenes."""
    made = []
    for name in ("hsc_cosmos_35", "hsc_cosmos"):
        scene = SHARED / f"{name}.npz"
        obs = read_npz(scene)
        cat = np.load(scene)["catalog"]
        ivar = obs.ivar
        if not np.any(ivar > 0) or np.all(ivar == 1):  # no variance plane: sky noise from the outskirts
            edge = np.concatenate([obs.cube[:, :5].reshape(obs.cube.shape[0], -1),
                                   obs.cube[:, -5:].reshape(obs.cube.shape[0], -1)], axis=1)
            sig = 1.4826 * np.median(np.abs(edge - np.median(edge, axis=1, keepdims=True)), axis=1)
            ivar = np.broadcast_to((1.0 / sig**2)[:, None, None], obs.cube.shape).astype(np.float32)
        yy, xx = np.mgrid[: obs.cube.shape[1], : obs.cube.shape[2]]
        for k, c in enumerate(cat):
            r2 = (yy - c["y"]) ** 2 + (xx - c["x"]) ** 2
            inner = r2 < 25
            flux = obs.cube[:, inner].sum(axis=1)
            if flux[2] <= 0 or flux[0] <= 0:
                continue
            snr = flux[2] / np.sqrt(np.sum(1.0 / np.maximum(ivar[2][inner], 1e-30)))
            if snr < 50:
                continue
            gi = -2.5 * np.log10(flux[0] / flux[2])
            cube, iv = cutout(obs.cube, ivar, int(round(c["y"])), int(round(c["x"])), size)
            path = write_cube(out / f"{name}_src{k}.fits", cube, obs.bands, ivar=iv, psf=obs.psf,
                              wave_eff=obs.wave_eff, overwrite=True,
                              header={"ORIGIN": (f"scarlet {name}.npz", "pmelchior/scarlet, MIT")})
            made.append((Path(path), float(gi)))
    return made


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", default="single,bulge-disk")
    ap.add_argument("--starts", default="auto", help="galdust fit --start values, comma-separated")
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--out", default=None, help="keep the fits (and --plot figures) here")
    a = ap.parse_args()
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    srcs = cutouts(out / "inputs", a.size)
    runs = [(h, st) for h in a.hosts.split(",") for st in a.starts.split(",")]
    label = {r: r[0] if len(runs) == len(set(h for h, _ in runs)) else f"{r[0]}, {r[1]} start" for r in runs}
    res = {}
    for h, st in runs:
        rep = fit_files([str(p) for p, _ in srcs], out / f"{h}_{st}", host=h, start=st, overwrite=True, plot=bool(a.out))
        res[(h, st)] = {name: r for name, r, _ in rep.written}
    head = "| galaxy | g − i (r < 5 px) | " + " | ".join(f"{label[r]}: A_V,LW | χ² | χ²(no dust)" for r in runs)
    print(head + " | bulge share | start used |")
    print("|" + "---|" * (2 + 3 * len(runs) + 2))
    for p, gi in sorted(srcs, key=lambda t: -t[1]):
        row = f"| {p.stem} | {gi:.2f} | "
        bt, used = "", []
        for r in runs:
            fit = res[r].get(p.stem)
            if fit is None:
                row += "failed | | | "
                continue
            s = fit.scalars
            row += f"{s['AV_LW']:.3f} | {s['CHI2']:.3f} | {s['CHI2ND']:.3f} | "
            bt = f"{s['BT']:.2f}" if "BT" in s else bt
            if r[1] == "amortized":
                used.append(s["START"] + (" (outside the network's colours)" if s.get("NOTE") else ""))
        print(row + bt + " | " + ", ".join(used) + " |")


if __name__ == "__main__":
    main()
