"""``galdust demo``: the main job on the embedded example (and a real HSC galaxy when the data are there)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import app
from .fit import _print_fit_report


EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "examples" / "sim_dusty_galaxy.fits"
#: the HSC scene of the demo: ../shared/data beside the working directory or beside the source checkout
HSC_SCENES = (Path("../shared/data/hsc/hsc_cosmos_35.npz"),
              Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "hsc" / "hsc_cosmos_35.npz")


def cutout(cube, ivar, cy: int, cx: int, size: int):
    """size×size (cube, ivar) centred on pixel (cy, cx) of a scene; zero (no data) beyond its edges."""
    import numpy as np

    h = size // 2
    out = np.zeros((cube.shape[0], size, size), np.float32)
    iv = np.zeros_like(out)
    y0, x0 = cy - h, cx - h
    ys, xs = slice(max(y0, 0), min(y0 + size, cube.shape[1])), slice(max(x0, 0), min(x0 + size, cube.shape[2]))
    ty, tx = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
    out[:, ty, tx] = cube[:, ys, xs]
    iv[:, ty, tx] = ivar[:, ys, xs]
    return out, iv


def _hsc_cutout(scene: Path, out: Path, size: int = 40, overwrite: bool = False) -> Path:
    """Cut a size×size cube FITS (IVAR, PSF) around the catalogued source of an HSC scene with the most
    flux within 10 px (the large red galaxy of hsc_cosmos_35)."""
    import numpy as np

    from ..io import read_npz, write_cube

    obs = read_npz(scene)
    cat = np.load(scene)["catalog"]
    det = np.sum(obs.cube * (obs.ivar > 0), axis=0)
    yy, xx = np.mgrid[: det.shape[0], : det.shape[1]]
    flux = [det[(yy - c["y"]) ** 2 + (xx - c["x"]) ** 2 < 100].sum() for c in cat]  # r < 10 px: extended
    c = cat[int(np.argmax(flux))]
    cy, cx = int(round(c["y"])), int(round(c["x"]))
    cube, ivar = cutout(obs.cube, obs.ivar, cy, cx, size)
    return write_cube(out, cube, obs.bands, ivar=ivar, psf=obs.psf, wave_eff=obs.wave_eff, overwrite=overwrite,
                      header={"ORIGIN": ("scarlet hsc_cosmos_35.npz", "pmelchior/scarlet, MIT"),
                              "CUTCEN": (f"{cy},{cx}", "cutout centre (y,x) in the scene")})


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("demo_out"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
):
    """Run the main job (galdust fit) on the embedded example: a simulated dusty galaxy shipped in the
    package and, when ../shared/data/hsc is present, a real HSC galaxy cut from its scene."""
    import shutil

    from ..dust.api import fit_files

    out.mkdir(parents=True, exist_ok=True)
    inputs = [out / "sim_dusty_galaxy.fits"]
    if overwrite or not inputs[0].exists():
        shutil.copyfile(EXAMPLE, inputs[0])
    scene = next((p.resolve() for p in HSC_SCENES if p.exists()), None)
    if scene is not None:
        inputs.append(_hsc_cutout(scene, out / "hsc_cosmos_35_cut.fits", overwrite=True))
    else:
        typer.echo(f"demo: {HSC_SCENES[0]} not found; fitting the simulated example only")
    # galdust fit's defaults, exactly as `galdust fit FILES --out DIR --plot` runs them
    report = fit_files([str(p) for p in inputs], out / "fit", overwrite=overwrite, plot=True)
    _print_fit_report(report, len(inputs), quiet=False)
    typer.echo(f"demo: dust maps, host cubes and figures in {out / 'fit'} (truth of the simulated galaxy: "
               f"HDUs TRUE_AV, TRUE_S of {inputs[0]})")
