"""``galdust fir``: far-infrared dust properties (global model, per-pixel maps, training)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import UserError, _one_line, app


fir_app = typer.Typer(help="Far-infrared dust properties from UV-MIR photometry.", no_args_is_help=True)
app.add_typer(fir_app, name="fir")


@fir_app.command("predict")
def fir_predict(
    photometry: Annotated[Path, typer.Option("--photometry", help="DustPedia-format or galdust-format CSV (Jy).")],
    out: Annotated[Path, typer.Option("--out", help="Output CSV.")],
    model: Annotated[Optional[Path], typer.Option("--model", help="Model folder (default: the shipped one).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
):
    """Predict log sL_d, log sM_d and T_d (with calibrated σ) for every row of a photometry table; rows
    outside the model's training domain are answered with flag = 1 and a note naming why."""
    import csv

    import numpy as np

    from ..fir.data import read_photometry
    from ..fir.features import build_features
    from ..fir.model import DEFAULT_MODEL, FIRModel
    from ..io import atomic_path

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    ph = read_photometry(photometry)
    m = FIRModel.load(model or DEFAULT_MODEL)
    X, usable = build_features(ph)
    pred = m.predict(X)
    why = m.outside(X)  # rows outside the training domain: answered, flagged
    cols = ["name", "log_sLd", "log_sLd_err", "log_sMd", "log_sMd_err", "Td", "Td_err", "flag", "note"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, overwrite) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i, name in enumerate(ph.names):
            if not usable[i]:
                w.writerow([name, "", "", "", "", "", "", 0, "no WISE 3.4 um or IRAC 3.6 um flux to normalise by"])
                continue
            row = [name]
            for t in ("log_sLd", "log_sMd", "Td"):
                mu, sg = pred[t][0][i], pred[t][1][i]
                row += [f"{mu:.4f}", f"{sg:.4f}"]
            n_missing = int(np.sum(~np.isfinite(ph.flux[i])))
            notes = [why[i]] + ([f"{n_missing} of {ph.flux.shape[1]} bands missing"] if n_missing else [])
            w.writerow(row + [int(bool(why[i])), "; ".join(n for n in notes if n)])
    n_flag = sum(bool(why[i]) for i in np.nonzero(usable)[0])
    typer.echo(f"predicted {int(usable.sum())} of {len(ph.names)} rows -> {out}"
               + (f" ({n_flag} flagged outside the model's training domain: see note)" if n_flag else ""))


@fir_app.command("train")
def fir_train(
    photometry: Annotated[Path, typer.Option("--photometry", help="Photometry CSV (DustPedia or galdust format).")],
    properties: Annotated[Path, typer.Option("--properties", help="CIGALE results CSV (Nersesian+19 format).")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    seed: Annotated[int, typer.Option(help="Seed (folds, forests).")] = 0,
    cv: Annotated[bool, typer.Option("--cv/--no-cv", help="Also run galaxy-level 4-fold CV (metrics in the sidecar).")] = True,
    distill_: Annotated[bool, typer.Option("--distill/--no-distill", help="Also distil the fast per-pixel MLP "
                                                                         "(fast.eqx) that maps use.")] = True,
    distill_steps: Annotated[int, typer.Option("--distill-steps", min=100, help="Training steps of the MLP.")] = 40000,
    dropout_copies: Annotated[int, typer.Option("--dropout-copies", min=0, help="Copies of every galaxy seen through "
                                                "another galaxy's bands, from which the σ models learn how much "
                                                "missing bands cost (0: none).")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing model folder.")] = False,
):
    """Retrain the global FIR model (random forest + calibrated Gaussian-NLL σ), with 4-fold CV, and
    distil it into the fast per-pixel MLP."""
    from ..fir.data import read_photometry, read_properties
    from ..fir.features import band_dropout_features
    from ..fir.model import cross_validate, nan_to_none, train_model, training_set
    from ..ml.trees import FitCache
    from ..nn.train import remove_checkpoint
    from ..weights import git_commit

    if (out / "fir_model.json").exists() and not overwrite:
        raise UserError(f"{out}: a model exists there (use --overwrite to replace it)")
    ph = read_photometry(photometry)
    pr = read_properties(properties)
    X, Y, names, keep = training_set(ph, pr)
    if len(names) < 20:
        raise UserError(f"{properties}: only {len(names)} galaxies with both photometry and properties")
    t0 = time.perf_counter()
    extra = dict(training_rows=len(names), photometry=str(photometry), properties=str(properties),
                 commit=git_commit(), dropout_copies=dropout_copies)
    aug = band_dropout_features(ph, keep, dropout_copies, seed) if dropout_copies else None
    cache = FitCache(f"{out}.ckpt-trees")  # killed and run again, the training reads back what it had fitted
    if cv:
        res = cross_validate(X, Y, names, k=4, seed=seed, augment=aug, cache=cache)
        extra["cv"] = nan_to_none(res["metrics"])
        extra["cv_seconds"] = round(time.perf_counter() - t0, 1)
        for t, mm in res["metrics"].items():
            typer.echo(f"CV {t}: RMSE {mm['rmse']:.3f} ± {mm['rmse_err']:.3f}, R² {mm['r2']:.3f}, "
                       f"bias {mm['bias']:+.3f} ± {mm['bias_err']:.3f}, χ² {mm['chi2']:.2f}")
    t1 = time.perf_counter()
    model = train_model(X, Y, seed=seed, augment=aug, cache=cache)
    extra["train_seconds"] = round(time.perf_counter() - t1, 1)
    if distill_:
        _distill_into(model, ph, distill_steps, seed, f"{out}.ckpt-fast")
    model.save(out, extra=extra)
    remove_checkpoint(f"{out}.ckpt-fast")
    cache.clear()
    typer.echo(f"trained on {len(names)} galaxies in {extra['train_seconds']} s -> {out}")


def _distill_into(model, ph, steps: int, seed: int, checkpoint) -> None:
    """Distil ``model``'s trees into its MLP (resumable from ``checkpoint`` after an interruption)."""
    from ..fir.fast import distill
    from ..nn.train import CheckpointMismatch

    try:
        student, meta = distill(model, ph, steps=steps, seed=seed, checkpoint=checkpoint, log=typer.echo)
    except CheckpointMismatch as e:
        raise UserError(str(e)) from None
    model.fast, model.meta["fast"] = student, meta
    for t, v in meta["fidelity"].items():
        if isinstance(v, dict):
            typer.echo(f"fast MLP {t}: rms (MLP - trees) = {v['rms_dmu']:.3f} ({v['rms_dmu_over_sigma']:.2f} σ), "
                       f"rms Δln σ = {v['rms_dlnsigma']:.3f}")
    typer.echo(f"distilled in {meta['fidelity']['train_seconds']} s")


@fir_app.command("distill")
def fir_distill(
    model: Annotated[Path, typer.Option("--model", help="FIR model folder (gets fast.eqx + fast.json).")],
    photometry: Annotated[Path, typer.Option("--photometry", help="Photometry CSV whose galaxies' SEDs seed the "
                                                                  "distillation inputs (e.g. the training one).")],
    steps: Annotated[int, typer.Option("--steps", min=100, help="Training steps of the MLP.")] = 40000,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
):
    """Distil a FIR model's trees into the fast per-pixel MLP that `galdust fir map` uses."""
    from ..fir.data import read_photometry
    from ..fir.model import FIRModel

    if not (model / "fir_model.json").exists():
        raise UserError(f"{model}: not a FIR model folder (no fir_model.json)")
    m = FIRModel.load(model)
    _distill_into(m, read_photometry(photometry), steps, seed, f"{model}.ckpt-fast")
    m.save(model)
    from ..nn.train import remove_checkpoint

    remove_checkpoint(f"{model}.ckpt-fast")
    typer.echo(f"-> {model / 'fast.eqx'}")


def _kv_files(values: list[str] | None, what: str) -> dict[str, Path]:
    out = {}
    for v in values or []:
        if "=" not in v:
            raise UserError(f"{what} {v!r}: expected BAND=FILE")
        k, f = v.split("=", 1)
        out[k.strip()] = Path(f.strip())
    return out


@fir_app.command("map")
def fir_map(
    images: Annotated[list[str], typer.Option("--images", help="Per-band FITS images with WCS: FILE (header BAND) or "
                                                               "BAND=FILE; comma-separated, globs, or repeated.")],
    out: Annotated[Path, typer.Option("--out", help="Output NAME.fir.fits (and NAME.fir.png with --plot).")],
    model: Annotated[Optional[Path], typer.Option("--model", help="FIR model folder (default: the shipped one).")] = None,
    pixel_scale: Annotated[Optional[float], typer.Option("--pixel-scale", help="Output pixels [arcsec] (default: "
                                                                               "worst FWHM / 3).")] = None,
    kernel: Annotated[Optional[list[str]], typer.Option("--kernel", help="BAND=FILE: a convolution kernel to the "
                                                                         "worst PSF on that band's pixel grid.")] = None,
    fwhm: Annotated[Optional[list[str]], typer.Option("--fwhm", help="BAND=ARCSEC: PSF FWHM when the header has no "
                                                                     "PSF_FWHM (default: the survey's typical one).")] = None,
    ellipse: Annotated[Optional[str], typer.Option("--ellipse", help="RA,DEC,A,Q,PA: aperture centre [deg], semi-major "
                                                                     "axis [arcsec], axis ratio, PA [deg] (default: "
                                                                     "automatic).")] = None,
    stars: Annotated[Optional[Path], typer.Option("--stars", help="CSV with ra,dec [deg] of stars to mask.")] = None,
    no_detect: Annotated[bool, typer.Option("--no-detect", help="Do not detect and mask stars.")] = False,
    distance: Annotated[Optional[float], typer.Option("--distance", help="Distance [Mpc] (pixel scale in pc for "
                                                                         "models that use it).")] = None,
    lowres: Annotated[Optional[list[str]], typer.Option("--lowres", help="MAP=FILE: rescale the prediction to match a "
                                                                         "lower-resolution map of LOG_SLD, LOG_SMD or "
                                                                         "TD (e.g. from Herschel).")] = None,
    plot: Annotated[bool, typer.Option("--plot", help="Also write NAME.fir.png.")] = False,
    exact: Annotated[bool, typer.Option("--exact", help="Predict with the trees, not the distilled MLP.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
):
    """Per-pixel log sL_d, log sM_d and T_d (with σ) of one galaxy from its UV-MIR images."""
    import glob as _glob

    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS

    from ..fir.maps import make_maps, read_band_image, rescale_to_lowres
    from ..fir.model import DEFAULT_MODEL, FIRModel
    from ..fir.products import MAP_KEYS, plot_fir_maps, write_fir_fits
    from ..io import InputError

    png = out.with_suffix("").with_suffix(".fir.png") if out.name.endswith(".fir.fits") else out.with_suffix(".png")
    for p in [out] + ([png] if plot else []):
        if p.exists() and not overwrite:
            raise UserError(f"{p}: exists (use --overwrite to replace it)")
    fwhms = {}
    for k, v in _kv_files(fwhm, "--fwhm").items():  # BAND=ARCSEC (a number, not a file)
        try:
            fwhms[k] = float(str(v))
        except ValueError:
            raise UserError(f"--fwhm {k}={v}: expected BAND=ARCSEC, a number") from None
        if not fwhms[k] > 0:
            raise UserError(f"--fwhm {k}={v}: the FWHM must be positive")
    specs = []
    for v in images:
        for part in [x for x in v.split(",") if x]:
            band, f = part.split("=", 1) if "=" in part and not Path(part).exists() else (None, part)
            files = sorted(_glob.glob(f)) or [f]
            specs += [(band, x) for x in files]
    if not specs:
        raise UserError("no --images given")
    imgs = [read_band_image(f, band, fwhms.get(band) if band else None) for band, f in specs]
    for im in imgs:
        if im.band in fwhms:
            im.fwhm = fwhms[im.band]
    kernels = {}
    for b, f in _kv_files(kernel, "--kernel").items():
        try:
            kernels[b] = np.asarray(fits.getdata(f), float)
        except (OSError, ValueError) as e:
            raise InputError(f"{f}: cannot read the kernel ({e})") from None
    ell = None
    if ellipse:
        try:
            ell = tuple(float(x) for x in ellipse.split(","))
            assert len(ell) == 5
        except (ValueError, AssertionError):
            raise UserError(f"--ellipse {ellipse!r}: expected RA,DEC,A,Q,PA") from None
    star_list = None
    if stars is not None:
        from astropy.table import Table

        try:
            t = Table.read(stars, format="ascii.csv")
            star_list = [(float(r["ra"]), float(r["dec"])) for r in t]
        except Exception as e:  # noqa: BLE001
            raise InputError(f"{stars}: cannot read ra,dec columns ({' '.join(str(e).split())})") from None
    if pixel_scale is not None and not pixel_scale > 0:
        raise UserError(f"--pixel-scale {pixel_scale}: must be positive (arcsec)")
    if distance is not None and not distance > 0:
        raise UserError(f"--distance {distance}: must be positive (Mpc)")
    try:
        fm = make_maps(imgs, FIRModel.load(model or DEFAULT_MODEL), pixscale=pixel_scale, kernels=kernels,
                       ellipse=ell, stars=star_list, detect=not no_detect, distance_mpc=distance, exact=exact)
    except ValueError as e:  # images without a source, or not overlapping: the user's data, in one line
        raise UserError(f"{_one_line(e)} (bands {', '.join(i.band for i in imgs)}: check that each image has data "
                        f"and covers the galaxy, or give --ellipse)") from None
    if not fm.mask.any():  # an --ellipse off the images: nothing to write (it wrote an empty map, exit 0)
        raise UserError(f"no pixel inside the aperture ({'--ellipse ' + ellipse if ellipse else 'automatic'}) has "
                        f"data in every band: does it lie on the images?")
    for k, f in _kv_files(lowres, "--lowres").items():
        if k not in MAP_KEYS:
            raise UserError(f"--lowres {k}: one of {', '.join(MAP_KEYS)}")
        try:
            with fits.open(f) as h:
                hdu = next(x for x in h if x.data is not None)
                low, wl = np.asarray(hdu.data, float), WCS(hdu.header).celestial
        except (OSError, ValueError, StopIteration) as e:
            raise InputError(f"{f}: cannot read the low-resolution map ({e})") from None
        fm.maps[k] = rescale_to_lowres(fm.maps[k], fm.wcs, low, wl, log=k != "TD")
        fm.notes.append(f"{k} rescaled to match {Path(f).name}")
    write_fir_fits(out, fm, overwrite=overwrite)
    if plot:
        plot_fir_maps(png, fm, overwrite=overwrite)
    for n in fm.notes:
        typer.echo(f"note: {n}")
    typer.echo(f"{int(fm.mask.sum())} pixels predicted ({len(fm.bands)} bands at {fm.fwhm:.1f} arcsec FWHM, "
               f"{fm.pixscale:.2f} arcsec pixels) -> {out}")
