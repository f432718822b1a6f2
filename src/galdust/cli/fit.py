"""``galdust fit``: the joint galaxy + dust fit of cutouts (a thin parser over :mod:`galdust.dust.api`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import UserError, _progress, app


def _read_mask(path: Path):
    import numpy as np
    from astropy.io import fits

    from ..io import InputError

    try:
        with fits.open(path) as h:
            arr = next((x.data for x in h if x.data is not None), None)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the mask ({e})") from None
    if arr is None or np.asarray(arr).ndim not in (2, 3):
        raise InputError(f"{path}: the mask must be a 2-D (y, x) or 3-D (band, y, x) image")
    return np.asarray(arr)


def _expand(inputs: list[str]) -> list[str]:
    """Inputs as given, a quoted glob (a name with * ? [ that is not a file) expanded as the shell would
    (sorted; ** for subfolders), as ``galdust run --inputs`` takes them."""
    import glob
    import os

    out = []
    for inp in inputs:
        if not os.path.exists(inp) and any(c in inp for c in "*?["):
            found = sorted(glob.glob(inp, recursive=True))
            if not found:
                raise UserError(f"{inp}: no file matches")
            out += found
        else:
            out.append(inp)
    return out


@app.command()
def fit(
    inputs: Annotated[list[str], typer.Argument(help="Cube FITS files or scarlet-style .npz scenes (one galaxy "
                                                     "each; quoted globs are expanded); with --bands, each INPUT is "
                                                     "a comma-separated list of per-band FITS (or a cube without a "
                                                     "BANDS header).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    method: Annotated[str, typer.Option("--method", help="'map': the iterative fit under the learned priors; "
                                        "'amortized': one pass of a network trained on simulations, with a "
                                        "per-pixel sigma (AV_ERR), for the band sets it was trained on "
                                        "(galdust models).")] = "map",
    model: Annotated[Optional[Path], typer.Option("--model", help="--method amortized: a network from galdust "
                                                  "train amortized instead of the shipped one.")] = None,
    start: Annotated[str, typer.Option(help="auto (the red start, for every band set), red, blue, or amortized "
                                            "(from the amortised network's dust map and δ).")] = "auto",
    max_iter: Annotated[Optional[int], typer.Option("--max-iter", min=1, help="Iteration limit of the dust fit "
                                                    "(default 300; 1000 with --dust-level gauge).")] = None,
    dust_level: Annotated[str, typer.Option("--dust-level", help="How the dust level (a uniform screen, which the "
                                            "data cannot see) is fixed: 'shrink' (exponential prior on A, learned "
                                            "priors) or 'gauge' (least-attenuated 10 % of the light dust-free, "
                                            "smoothness penalty, no learned priors): see docs/eval_dust.md.")] = "shrink",
    host: Annotated[str, typer.Option("--host", help="Host model: 'auto' ('clumps', or 'single' with --dust-level "
                                      "gauge), 'clumps' (one SED for the host plus a sparse map of star-forming "
                                      "clumps with their own SED: far less dust invented on clumpy dust-free "
                                      "hosts), 'single' (one SED for the whole host), 'bulge-disk' (a Sérsic bulge "
                                      "with its own SED plus a free-form disk), 'nucleus' or 'bulge-disk-nucleus' "
                                      "(either, plus a point source with its own SED: an AGN or a nuclear star "
                                      "cluster), 'bulge-disk-clumps'; measurements in docs/eval_dust.md.")] = "auto",
    no_psf: Annotated[bool, typer.Option("--no-psf", help="Ignore the input PSF (--method map; the amortised "
                                                         "network reads each band's PSF FWHM).")] = False,
    redshift: Annotated[Optional[float], typer.Option("--redshift", help="The galaxies' redshift (in place of a "
                                                      "header REDSHIFT): A_V, D and δ in the rest frame. Without "
                                                      "either, at observed wavelengths (AVFRAME 'observed').")] = None,
    mask: Annotated[Optional[Path], typer.Option("--mask", help="User mask FITS (nonzero = bad), (y, x) or "
                                                               "(band, y, x); applies to every input.")] = None,
    no_detect: Annotated[bool, typer.Option("--no-detect", help="Do not mask neighbouring sources.")] = False,
    no_priors: Annotated[bool, typer.Option("--no-priors", help="Likelihood only (no learned priors).")] = False,
    bands: Annotated[Optional[str], typer.Option(help="Band names for per-band inputs (bands on different pixel "
                                                     "grids are reprojected onto the finest one with their WCS), or "
                                                     "for the planes of a cube FITS without a BANDS header.")] = None,
    psf: Annotated[Optional[str], typer.Option("--psf", help="PSF files: FILE[,FILE...], one 2-D stamp per band at "
                                                             "that band's pixels, or one (band, py, px) cube.")] = None,
    noise_hdu: Annotated[Optional[int], typer.Option("--noise-hdu", min=0, help="HDU index of the noise when it is "
                                                     "not named IVAR/VAR/ERR.")] = None,
    noise_kind: Annotated[str, typer.Option("--noise-kind", help="What --noise-hdu holds: ivar, var or sigma.")] = "ivar",
    mask_hdu: Annotated[Optional[int], typer.Option("--mask-hdu", min=0, help="HDU index of a bad-pixel mask "
                                                    "(nonzero = bad) when it is not named MASK.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Galaxies fitted at once (vmap).")] = 8,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="--method amortized: processes (one "
                                                   "thread each) sharing many inputs; default one per core when "
                                                   "there are more than 128 inputs (MAP fits: galdust run fit).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="Also write NAME.png.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or per-input lines.")] = False,
):
    """Fit the joint galaxy-dust model to each input: writes NAME.dust.fits and NAME.json (and NAME.png)."""
    from ..dust.api import fit_files, make_fitter

    band_list = [b.strip() for b in bands.split(",")] if bands else None
    user_mask = _read_mask(mask) if mask is not None else None
    if noise_kind not in ("ivar", "var", "sigma"):
        raise UserError(f"--noise-kind {noise_kind!r}: expected ivar, var or sigma")
    if redshift is not None and not 0.0 <= redshift < 20.0:
        raise UserError(f"--redshift {redshift:g}: not a redshift (0 <= z < 20)")
    items = [[f for f in inp.split(",") if f] for inp in inputs] if band_list else _expand(inputs)
    options = dict(level=dust_level, max_iter=max_iter, priors=not no_priors, start=start, use_psf=not no_psf,
                   detect=not no_detect, batch_size=min(batch_size, len(items)), host=host, method=method,
                   model=model)
    if workers is not None and workers > 1 and method != "amortized":
        raise UserError("--workers: only for --method amortized (MAP fits of many files: galdust run fit)")
    from ..dust.shards import SHARD
    from ..threads import cpu_cores

    n_proc = (workers or (cpu_cores() if len(items) > SHARD else 1)) if method == "amortized" else 1
    n_proc = min(n_proc, -(-len(items) // SHARD))
    try:
        if n_proc > 1:  # the worker processes load the network; here only the options and the file are checked
            from ..dust.api import check_method

            check_method(method, level=dust_level, max_iter=max_iter, start=start, host=host, priors=not no_priors,
                         use_psf=not no_psf)
            if model is not None and not Path(model).exists():
                raise UserError(f"{model}: no such file (--model)")
            fitter = None
        else:
            fitter = make_fitter(**options)  # checks the options (and loads the models), in one line if wrong
    except ValueError as e:
        raise UserError(str(e)) from None
    upd, close = _progress(len(items), "fitting", quiet)
    kw = dict(bands=band_list, mask=user_mask, overwrite=overwrite, plot=plot, progress=upd,
              read_options=dict(noise_hdu=noise_hdu, noise_kind=noise_kind, mask_hdu=mask_hdu,
                                psf=[f for f in psf.split(",") if f] if psf else None, redshift=redshift))
    try:
        if n_proc > 1:
            from ..dust.shards import fit_files_in_workers

            report = fit_files_in_workers(items, out, n_proc, options, **kw)
        else:
            report = fit_files(items, out, fitter=fitter, **kw)
    finally:
        close()
    _print_fit_report(report, len(items), quiet)


def _print_fit_report(report, n_inputs: int, quiet: bool) -> None:
    """One line per fitted galaxy, a summary, one error line per failed input (then exit status 1)."""
    if not quiet:
        for name, res, paths in report.written:
            s = res.scalars
            if s.get("METHOD") == "amortized":  # one network pass: the σ beside each value, no iterations
                head = f"A_V,LW {s['AV_LW']:.3f} ± {s['AVLW_ERR']:.3f}  δ {s['DELTA']:+.2f} ± {s['DELTAERR']:.2f}"
                how = "amortised"
            else:
                head = f"A_V,LW {s['AV_LW']:.3f}  δ {s['DELTA']:+.2f}"
                stop = f" (the dust fit's {s['NITERD']} iterations did not converge: a larger --max-iter?)"
                how = (f"{s['NITER']} it{'' if s.get('CONVERGE', True) else stop}"
                       f"  start {s['START']}  priors {s.get('PRIORS', '?')}")
            if "REDSHIFT" in s:  # the dust in the galaxy's rest frame
                head = f"{head} (rest frame, z {s['REDSHIFT']:g})"
            typer.echo(f"{name}: {head}  covfrac {s['COVFRAC']:.2f}  χ² {s['CHI2']:.3f} (dust-free {s['CHI2ND']:.3f})  "
                       f"{how}" + (f"  bulge share {s['BT']:.2f}" if "BT" in s else "") + f" -> {paths['fits']}"
                       + (f"  [FLAG: {s['NOTE']}]" if s.get("FLAG") else f"  [{s['NOTE']}]" if s.get("NOTE") else ""))
        if report.written or report.seconds:
            typer.echo(f"fitted {len(report.written)} of {n_inputs} inputs in {report.seconds:.1f} s")
    for src, msg in report.failures:
        typer.echo(f"galdust: error: {msg}" if msg.startswith(src) else f"galdust: error: {src}: {msg}", err=True)
    if report.failures:
        raise typer.Exit(1)
