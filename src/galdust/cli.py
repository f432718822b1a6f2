"""``galdust`` command line: thin commands over the library.

User errors (bad input files, existing outputs) print one line ``galdust: error: ...`` on stderr
and exit with status 2, without a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__

app = typer.Typer(
    name="galdust",
    help="Recover what dust hides in galaxies from multi-band images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class UserError(Exception):
    """An error the user can fix; printed as one line."""


def _version(value: bool):
    if value:
        typer.echo(f"galdust {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = None,
):
    """galdust: dust maps, far-infrared dust properties and galaxy posteriors from images."""


def _progress(total: int, label: str, quiet: bool = False):
    """A rich progress bar; returns (update(n_done), close())."""
    if quiet or not sys.stderr.isatty():
        return (lambda n: None), (lambda: None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    prog = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=True)
    prog.start()
    task = prog.add_task(label, total=total)
    return (lambda n: prog.update(task, completed=n)), prog.stop


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Output folder (per-galaxy mode) or .npz file (--bulk).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of galaxies.")] = 8,
    bands: Annotated[str, typer.Option(help="Comma-separated registry bands.")] = "sdss_g,sdss_r,sdss_i,sdss_z",
    size: Annotated[int, typer.Option(min=16, help="Image size in pixels (square).")] = 64,
    snr: Annotated[float, typer.Option(help="Per-band S/N (see --snr-kind); 0 for noiseless.")] = 50.0,
    snr_kind: Annotated[str, typer.Option(help="'matched' (whole-galaxy matched-filter S/N) or 'peak' "
                                               "(S/N of the brightest pixel).")] = "matched",
    seed: Annotated[int, typer.Option(help="Random seed (deterministic output).")] = 0,
    psf_fwhm: Annotated[float, typer.Option(help="Gaussian PSF FWHM in pixels; 0 for none.")] = 2.0,
    isochromatic: Annotated[bool, typer.Option("--isochromatic", help="One SED for bulge, disk and clumps.")] = False,
    n_los: Annotated[int, typer.Option(help="Samples along each line of sight.")] = 40,
    bulk: Annotated[bool, typer.Option("--bulk", help="Write one .npz array store (for prior training).")] = False,
    with_cubes: Annotated[bool, typer.Option("--with-cubes", help="Bulk: also store the image cubes.")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="Write a figure of the first galaxies.")] = False,
    batch: Annotated[int, typer.Option(min=1, help="Galaxies rendered at once (vmap).")] = 64,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
):
    """Simulate dusty galaxies with per-pixel truth (cube FITS + truth table, or a bulk .npz store)."""
    import jax

    from .physics.filters import get_filter
    from .simulate import SimConfig
    from .simulate import simulate as run_sim
    from .simulate.store import write_bulk, write_galaxies

    band_list = tuple(b.strip().lower() for b in bands.split(",") if b.strip())
    for b in band_list:
        get_filter(b)  # unknown band -> error listing close matches
    cfg = SimConfig(bands=band_list, size=size, n_los=n_los, psf_fwhm=psf_fwhm or None,
                    snr=snr or None, snr_kind=snr_kind, isochromatic=isochromatic)
    if bulk and out.suffix != ".npz":
        out = out.with_suffix(".npz")
    target = out if bulk else out / "truth.parquet"
    if target.exists() and not overwrite:
        raise UserError(f"{target}: exists (use --overwrite to replace it)")
    t0 = time.perf_counter()
    upd, close = _progress(n, "simulating", quiet)
    try:
        keep = None if (not bulk or with_cubes or plot) else ("S", "D", "AV", "F", "sigma", "av_lw", "covfrac")
        sim = run_sim(jax.random.PRNGKey(seed), n, cfg, batch=min(batch, n), progress=upd, keep=keep)
    finally:
        close()
    t_sim = time.perf_counter() - t0
    if bulk:
        write_bulk(sim, cfg, out, seed=seed, overwrite=overwrite, with_cubes=with_cubes)
        written = str(out)
    else:
        write_galaxies(sim, cfg, out, overwrite=overwrite)
        written = f"{n} cube FITS + truth.parquet/csv in {out}"
    if plot:
        from .report import plot_simulations

        fig = (out.with_suffix(".png") if bulk else out / "simulations.png")
        plot_simulations(sim, fig, n=min(n, 8), title=f"galdust simulate (seed {seed}, S/N {snr:g})")
        written += f"; figure {fig}"
    if not quiet:
        typer.echo(f"simulated {n} galaxies in {t_sim:.1f} s ({n / t_sim:.1f}/s); wrote {written}")


@app.command()
def info(
    inputs: Annotated[list[Path], typer.Argument(help="A cube FITS, an .npz scene, or one FITS per band.")],
    bands: Annotated[Optional[str], typer.Option(help="Comma-separated bands, for one file per band.")] = None,
):
    """Read an input image as galdust would and print what it found (bands, shape, noise, PSF, WCS)."""
    import warnings

    import numpy as np

    from .io import read_observation

    band_list = [b.strip() for b in bands.split(",")] if bands else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obs = read_observation([str(p) for p in inputs], band_list)
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    nb, ny, nx = obs.cube.shape
    typer.echo(f"{obs.source}: {nb} bands x {ny} x {nx} pixels, unit '{obs.unit or '?'}', "
               f"PSF {'none' if obs.psf is None else 'x'.join(map(str, obs.psf.shape[1:]))}, "
               f"WCS {'yes' if obs.wcs is not None else 'no'}")
    for b, w, img, iv in zip(obs.bands, obs.wave_eff, obs.cube, obs.ivar):
        good = iv > 0
        sig = np.median(1 / np.sqrt(iv[good])) if good.any() else float("nan")
        typer.echo(f"  {b:12s} λ_eff {w:7.4f} µm  median σ {sig:.4g}  masked {np.mean(~good):.1%}  "
                   f"sum {img[good].sum():.4g}")


@app.command("simulate-sed")
def simulate_sed(
    out: Annotated[Path, typer.Option("--out", help="Output table (.parquet or .csv).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of galaxies.")] = 10000,
    bands: Annotated[str, typer.Option(help="Comma-separated registry bands (below 6 µm).")] =
        "sdss_u,sdss_g,sdss_r,sdss_i,sdss_z",
    seed: Annotated[int, typer.Option(help="Random seed (deterministic output).")] = 0,
    batch: Annotated[int, typer.Option(min=1, help="Galaxies computed at once.")] = 4096,
    images: Annotated[bool, typer.Option("--images", help="Bulge + disk galaxies with SDSS gri 64x64 images, "
                                                          "written to OUT.images.npy (n, 3, 64, 64) float16 "
                                                          "[nmgy/pixel], row i = table row i.")] = False,
    r_limit: Annotated[Optional[float], typer.Option("--r-limit", help="Keep galaxies brighter than this r "
                                                                       "(asinh mag of the noisy flux).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
):
    """Simulate galaxy photometry (nanomaggies, SDSS-like noise) with truths from the stellar-population
    simulator: one row per galaxy, columns flux_<band>, flux_err_<band>, flux_true_<band> and the truths
    (with --images also bt, incl_deg, av_disk and the images)."""
    import jax
    import numpy as np
    import pyarrow as pa

    from .io import atomic_path
    from .simulate.sed import TRUTHS, SEDConfig, simulate_photometry

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    band_list = tuple(_csv_list(bands))
    try:
        from .physics.sps import filter_set

        filter_set(band_list)  # unknown bands, bands beyond the simulator's 6 µm
        cfg = SEDConfig(bands=band_list)
        missing = [b for b in band_list if b not in dict(cfg.sky)]
        if missing:
            raise ValueError(f"no noise model for band(s) {', '.join(missing)}")
        t0 = time.perf_counter()
        if images:
            from .simulate.sed_images import ImageConfig, simulate_images

            sim = simulate_images(jax.random.PRNGKey(seed), n, ImageConfig(sed=cfg), batch=min(batch, 256))
        else:
            sim = simulate_photometry(jax.random.PRNGKey(seed), n, cfg, batch=min(batch, n))
    except (ValueError, KeyError) as e:
        raise UserError(" ".join(str(e).split())) from None
    dt = time.perf_counter() - t0
    keep = np.arange(n)
    if r_limit is not None:
        from .posterior.model import luptitudes
        from .simulate.sed import SDSS_SKY_NMGY

        if "sdss_r" not in band_list:
            raise UserError("--r-limit needs sdss_r in --bands")
        j = band_list.index("sdss_r")
        keep = np.nonzero(luptitudes(sim["flux"][:, j], SDSS_SKY_NMGY["sdss_r"]) < r_limit)[0]
    cols = {"name": [f"sed{seed}_{i:07d}" for i in keep]}
    for j, b in enumerate(band_list):
        for k in ("flux", "flux_err", "flux_true"):
            cols[f"{k}_{b}"] = np.asarray(sim[k])[keep, j]
    for t in TRUTHS + (("bt", "incl_deg", "av_disk") if images else ()):
        cols[t] = np.asarray(sim[t])[keep]
    table = pa.table(cols)
    out.parent.mkdir(parents=True, exist_ok=True)
    if images:
        img_path = out.with_suffix(".images.npy")
        with atomic_path(img_path, overwrite) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, sim["images"][keep].astype(np.float16))
    with atomic_path(out, overwrite) as tmp:
        if out.suffix.lower() == ".csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, tmp)
        else:
            import json

            import pyarrow.parquet as pq

            from . import __version__
            from .weights import git_commit

            # how the table was made, so that the sidecars of models trained on it can say so
            prov = dict(command="galdust simulate-sed", n=n, seed=seed, bands=list(band_list), images=images,
                        r_limit=r_limit, kept=int(len(keep)), galdust_version=__version__, commit=git_commit())
            pq.write_table(table.replace_schema_metadata({"galdust": json.dumps(prov)}), tmp)
    typer.echo(f"simulated {n} galaxies in {dt:.1f} s ({n / dt:.0f}/s), kept {len(keep)} -> {out}"
               + (f" + {out.with_suffix('.images.npy')}" if images else ""))


@app.command("train-prior")
def train_prior(
    kind: Annotated[str, typer.Argument(help="'dust' (p(D|S)) or 'host' (fallback host prior).")],
    data: Annotated[Path, typer.Option("--data", help="Bulk store from 'galdust simulate --bulk'.")],
    out: Annotated[Path, typer.Option("--out", help="Weights file to write (.eqx) + JSON sidecar.")],
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps.")] = 10000,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, batches and noise.")] = 0,
    batch: Annotated[int, typer.Option(min=1, help="Batch size.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (warm-up + cosine).")] = 3e-4,
    ckpt_every: Annotated[int, typer.Option(min=1, help="Checkpoint + validation every N steps.")] = 500,
    n_val: Annotated[int, typer.Option(min=1, help="Rows at the end of the store held out.")] = 1000,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (and save) after this wall time.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing weights.")] = False,
):
    """Train a score prior by denoising score matching (resumable from OUT.ckpt.eqx)."""
    from .priors.train import train

    if kind not in ("dust", "host"):
        raise UserError(f"unknown prior kind {kind!r} (use 'dust' or 'host')")
    if not data.exists():
        raise UserError(f"{data}: no such file")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    try:
        train(kind, data, steps, out, seed=seed, batch=batch, lr=lr, ckpt_every=ckpt_every, n_val=n_val,
              max_minutes=max_minutes)
    except (KeyError, ValueError) as e:
        raise UserError(f"{data}: {e}") from None


def _read_mask(path: Path):
    import numpy as np
    from astropy.io import fits

    from .io import InputError

    try:
        with fits.open(path) as h:
            arr = next((x.data for x in h if x.data is not None), None)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the mask ({e})") from None
    if arr is None or np.asarray(arr).ndim not in (2, 3):
        raise InputError(f"{path}: the mask must be a 2-D (y, x) or 3-D (band, y, x) image")
    return np.asarray(arr)


@app.command()
def fit(
    inputs: Annotated[list[str], typer.Argument(help="Cube FITS files (one galaxy each); with --bands, each "
                                                     "INPUT is a comma-separated list of per-band FITS.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    start: Annotated[str, typer.Option(help="auto (red if a band has λ_eff ≥ 1 µm), red or blue.")] = "auto",
    max_iter: Annotated[Optional[int], typer.Option("--max-iter", min=1, help="Iteration limit of the dust fit "
                                                    "(default 300; 1000 with --dust-level gauge).")] = None,
    dust_level: Annotated[str, typer.Option("--dust-level", help="How the dust level (a uniform screen, which the "
                                            "data cannot see) is fixed: 'shrink' (exponential prior on A, learned "
                                            "priors) or 'gauge' (least-attenuated 10 % of the light dust-free, "
                                            "smoothness penalty, no learned priors): see docs/eval_dust.md.")] = "shrink",
    no_psf: Annotated[bool, typer.Option("--no-psf", help="Ignore the input PSF.")] = False,
    mask: Annotated[Optional[Path], typer.Option("--mask", help="User mask FITS (nonzero = bad), (y, x) or "
                                                               "(band, y, x); applies to every input.")] = None,
    no_detect: Annotated[bool, typer.Option("--no-detect", help="Do not mask neighbouring sources.")] = False,
    no_priors: Annotated[bool, typer.Option("--no-priors", help="Likelihood only (no learned priors).")] = False,
    bands: Annotated[Optional[str], typer.Option(help="Band names for per-band inputs (bands on different pixel "
                                                     "grids are reprojected onto the finest one with their WCS).")] = None,
    psf: Annotated[Optional[str], typer.Option("--psf", help="PSF files: FILE[,FILE...], one 2-D stamp per band at "
                                                             "that band's pixels, or one (band, py, px) cube.")] = None,
    noise_hdu: Annotated[Optional[int], typer.Option("--noise-hdu", min=0, help="HDU index of the noise when it is "
                                                     "not named IVAR/VAR/ERR.")] = None,
    noise_kind: Annotated[str, typer.Option("--noise-kind", help="What --noise-hdu holds: ivar, var or sigma.")] = "ivar",
    mask_hdu: Annotated[Optional[int], typer.Option("--mask-hdu", min=0, help="HDU index of a bad-pixel mask "
                                                    "(nonzero = bad) when it is not named MASK.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Galaxies fitted at once (vmap).")] = 8,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="Also write NAME.png.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or per-input lines.")] = False,
):
    """Fit the joint galaxy-dust model to each input: writes NAME.dust.fits and NAME.json (and NAME.png)."""
    from .dust.api import fit_files, make_fitter

    band_list = [b.strip() for b in bands.split(",")] if bands else None
    user_mask = _read_mask(mask) if mask is not None else None
    if noise_kind not in ("ivar", "var", "sigma"):
        raise UserError(f"--noise-kind {noise_kind!r}: expected ivar, var or sigma")
    items = [[f for f in inp.split(",") if f] for inp in inputs] if band_list else list(inputs)
    try:
        fitter = make_fitter(level=dust_level, max_iter=max_iter, priors=not no_priors, start=start,
                             use_psf=not no_psf, detect=not no_detect, batch_size=min(batch_size, len(items)))
    except ValueError as e:
        raise UserError(str(e)) from None
    upd, close = _progress(len(items), "fitting", quiet)
    try:
        report = fit_files(items, out, fitter=fitter, bands=band_list, mask=user_mask, overwrite=overwrite,
                           plot=plot, progress=upd,
                           read_options=dict(noise_hdu=noise_hdu, noise_kind=noise_kind, mask_hdu=mask_hdu,
                                             psf=[f for f in psf.split(",") if f] if psf else None))
    finally:
        close()
    _print_fit_report(report, len(inputs), quiet)


def _print_fit_report(report, n_inputs: int, quiet: bool) -> None:
    """One line per fitted galaxy, a summary, one error line per failed input (then exit status 1)."""
    if not quiet:
        for name, res, paths in report.written:
            s = res.scalars
            typer.echo(f"{name}: A_V,LW {s['AV_LW']:.3f}  δ {s['DELTA']:+.2f}  covfrac {s['COVFRAC']:.2f}  "
                       f"χ² {s['CHI2']:.3f} (dust-free {s['CHI2ND']:.3f})  {s['NITER']} it  "
                       f"start {s['START']}  priors {s.get('PRIORS', '?')} -> {paths['fits']}")
        if report.written or report.seconds:
            typer.echo(f"fitted {len(report.written)} of {n_inputs} inputs in {report.seconds:.1f} s")
    for src, msg in report.failures:
        typer.echo(f"galdust: error: {msg}" if msg.startswith(src) else f"galdust: error: {src}: {msg}", err=True)
    if report.failures:
        raise typer.Exit(1)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__


evaluate_app = typer.Typer(help="Evaluate galdust's jobs against simulated truth.", no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")


def _csv_list(text: str, kind=str) -> list:
    return [kind(x.strip()) for x in text.split(",") if x.strip()]


@evaluate_app.command("dust")
def evaluate_dust(
    out: Annotated[Path, typer.Option("--out", help="Output folder (per-galaxy CSV + summary tables).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Held-out simulated galaxies per configuration.")] = 150,
    seed: Annotated[int, typer.Option(help="Simulation seed (the shipped prior was trained on seed 1).")] = 1001,
    snr: Annotated[str, typer.Option(help="Comma-separated S/N values.")] = "20,50,100",
    snr_kind: Annotated[str, typer.Option(help="'peak' (brightest pixel) or 'matched' (whole galaxy).")] = "peak",
    hosts: Annotated[str, typer.Option(help="fiducial and/or isochromatic.")] = "fiducial,isochromatic",
    starts: Annotated[str, typer.Option(help="red (griz + 2MASS J) and/or blue (griz).")] = "red,blue",
    priors: Annotated[str, typer.Option(help="on, off (likelihood + exponential A prior only) and/or gauge "
                                             "(galdust fit --dust-level gauge).")] = "on,off",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Galaxies fitted at once.")] = 16,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
):
    """Fit held-out simulated galaxies and tabulate ΔA_V and A_V-map correlation per covering fraction
    (the seed's Figure 4), for each start, host type, S/N and with/without the learned priors."""
    import csv

    import numpy as np

    from .dust.api import make_fitter
    from .dust.evaluate import evaluate_config, format_table, summarise
    from .io import atomic_path

    csv_path, md_path = out / "eval_dust.csv", out / "eval_dust.md"
    for p in (csv_path, md_path):
        if p.exists() and not overwrite:
            raise UserError(f"{p}: exists (use --overwrite to replace it)")
    for h in _csv_list(hosts):
        if h not in ("fiducial", "isochromatic"):
            raise UserError(f"unknown host type {h!r} (fiducial, isochromatic)")
    for st in _csv_list(starts):
        if st not in ("red", "blue"):
            raise UserError(f"unknown start {st!r} (red, blue)")
    for pr in _csv_list(priors):
        if pr not in ("on", "off", "gauge"):
            raise UserError(f"unknown priors setting {pr!r} (on, off, gauge)")
    fitters = {"on": make_fitter() if "on" in _csv_list(priors) else None, "off": None,
               "gauge": make_fitter(level="gauge")}
    rows, blocks = [], []
    for pr in _csv_list(priors):
        for st in _csv_list(starts):
            for h in _csv_list(hosts):
                for sn in _csv_list(snr, float):
                    t0 = time.perf_counter()
                    r = evaluate_config(n=n, snr=sn, snr_kind=snr_kind, isochromatic=h == "isochromatic", start=st,
                                        priors=pr == "on", seed=seed, batch_size=batch_size,
                                        fitter=fitters[pr])
                    dt = time.perf_counter() - t0
                    r = [dict(x, setting=pr) for x in r]  # on, off or gauge (``priors`` is a bool)
                    rows += r
                    ok = [x for x in r if not x["error"]]
                    cov = np.array([x["covfrac"] for x in ok])
                    title = (f"{st} start, {h} hosts, S/N {sn:g} ({snr_kind}), priors {pr}: {len(ok)} galaxies, "
                             f"{dt:.0f} s")
                    dusty = [x for x in ok if x["av_lw_true"] > 0.1]
                    better = sum(x["chi2"] < x["chi2_nd"] for x in dusty)
                    lw = [(lo, [x for x in ok if x["covfrac"] < 0.9 and x["av_lw_true"] > lo]) for lo in (0.1, 0.3)]
                    table = format_table(summarise(ok, cov), title)
                    table += (f"\n\nχ²(dust) < χ²(dust-free) on {better} of {len(dusty)} galaxies with A_V,LW > 0.1; "
                              f"converged {sum(x['converged'] for x in ok)} of {len(ok)}; "
                              f"median |Δδ| {np.median([abs(x['delta'] - x['delta_true']) for x in ok]):.2f}")
                    for lo, sel in lw:  # dusty galaxies (f < 0.9): does the fit shrink real dust?
                        if sel:
                            table += (f"; f < 0.9 and A_V,LW > {lo:g}: {len(sel)} galaxies, median ΔA_V "
                                      f"{np.median([x['dAV'] for x in sel]):+.3f}, fit/truth "
                                      f"{np.median([x['av_lw_fit'] / x['av_lw_true'] for x in sel]):.2f}, corr "
                                      f"{np.nanmedian([x['corr'] for x in sel]):.2f}")
                    blocks.append(table)
                    if not quiet:
                        typer.echo(table + "\n")
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(csv_path, overwrite) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    with atomic_path(md_path, overwrite) as tmp:
        tmp.write_text("\n\n".join(blocks) + "\n")
    if not quiet:
        typer.echo(f"wrote {csv_path} and {md_path}")


fir_app = typer.Typer(help="Far-infrared dust properties from UV-MIR photometry.", no_args_is_help=True)
app.add_typer(fir_app, name="fir")


@fir_app.command("predict")
def fir_predict(
    photometry: Annotated[Path, typer.Option("--photometry", help="DustPedia-format or galdust-format CSV (Jy).")],
    out: Annotated[Path, typer.Option("--out", help="Output CSV.")],
    model: Annotated[Optional[Path], typer.Option("--model", help="Model folder (default: the shipped one).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
):
    """Predict log sL_d, log sM_d and T_d (with calibrated σ) for every row of a photometry table."""
    import csv

    import numpy as np

    from .fir.data import read_photometry
    from .fir.model import DEFAULT_MODEL, FIRModel, build_features
    from .io import atomic_path

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    ph = read_photometry(photometry)
    m = FIRModel.load(model or DEFAULT_MODEL)
    X, usable = build_features(ph)
    pred = m.predict(X)
    cols = ["name", "log_sLd", "log_sLd_err", "log_sMd", "log_sMd_err", "Td", "Td_err", "note"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, overwrite) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i, name in enumerate(ph.names):
            if not usable[i]:
                w.writerow([name, "", "", "", "", "", "", "no WISE 3.4 um or IRAC 3.6 um flux to normalise by"])
                continue
            row = [name]
            for t in ("log_sLd", "log_sMd", "Td"):
                mu, sg = pred[t][0][i], pred[t][1][i]
                row += [f"{mu:.4f}", f"{sg:.4f}"]
            n_missing = int(np.sum(~np.isfinite(ph.flux[i])))
            row.append(f"{n_missing} of {ph.flux.shape[1]} bands missing" if n_missing else "")
            w.writerow(row)
    typer.echo(f"predicted {int(usable.sum())} of {len(ph.names)} rows -> {out}")


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
    from .fir.data import read_photometry, read_properties
    from .fir.model import band_dropout_features, cross_validate, nan_to_none, train_model, training_set
    from .weights import git_commit

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
    if cv:
        res = cross_validate(X, Y, names, k=4, seed=seed, augment=aug)
        extra["cv"] = nan_to_none(res["metrics"])
        extra["cv_seconds"] = round(time.perf_counter() - t0, 1)
        for t, mm in res["metrics"].items():
            typer.echo(f"CV {t}: RMSE {mm['rmse']:.3f} ± {mm['rmse_err']:.3f}, R² {mm['r2']:.3f}, "
                       f"bias {mm['bias']:+.3f} ± {mm['bias_err']:.3f}, χ² {mm['chi2']:.2f}")
    t1 = time.perf_counter()
    model = train_model(X, Y, seed=seed, augment=aug)
    extra["train_seconds"] = round(time.perf_counter() - t1, 1)
    if distill_:
        _distill_into(model, ph, distill_steps, seed)
    model.save(out, extra=extra)
    typer.echo(f"trained on {len(names)} galaxies in {extra['train_seconds']} s -> {out}")


def _distill_into(model, ph, steps: int, seed: int) -> None:
    from .fir.fast import distill

    student, meta = distill(model, ph, steps=steps, seed=seed)
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
    from .fir.data import read_photometry
    from .fir.model import FIRModel

    if not (model / "fir_model.json").exists():
        raise UserError(f"{model}: not a FIR model folder (no fir_model.json)")
    m = FIRModel.load(model)
    _distill_into(m, read_photometry(photometry), steps, seed)
    m.save(model)
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

    from .fir.maps import make_maps, read_band_image, rescale_to_lowres
    from .fir.model import DEFAULT_MODEL, FIRModel
    from .fir.products import MAP_KEYS, plot_fir_maps, write_fir_fits
    from .io import InputError

    png = out.with_suffix("").with_suffix(".fir.png") if out.name.endswith(".fir.fits") else out.with_suffix(".png")
    for p in [out] + ([png] if plot else []):
        if p.exists() and not overwrite:
            raise UserError(f"{p}: exists (use --overwrite to replace it)")
    fwhms = {k: float(v) for k, v in _kv_files(fwhm, "--fwhm").items()}
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
    fm = make_maps(imgs, FIRModel.load(model or DEFAULT_MODEL), pixscale=pixel_scale, kernels=kernels,
                   ellipse=ell, stars=star_list, detect=not no_detect, distance_mpc=distance, exact=exact)
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


posterior_app = typer.Typer(help="Amortized posteriors of galaxy properties (conditional flow matching).",
                            no_args_is_help=True)
app.add_typer(posterior_app, name="posterior")
from .posterior.api import NAMED_POSTERIORS  # noqa: E402 - light (no JAX at import)

DEFAULT_POSTERIOR = NAMED_POSTERIORS["cfm-phot"]  # the photometric CFM (training and distillation default)


@posterior_app.command("train")
def posterior_train(
    sims: Annotated[list[Path], typer.Option("--sims", help="Simulated table from galdust simulate-sed (repeat the "
                                                           "option to train on several).")],
    out: Annotated[Path, typer.Option("--out", help="Weights file to write (.eqx, with a .json sidecar).")],
    props: Annotated[str, typer.Option(help="Comma-separated properties to infer.")] =
        "log_mstar,log_sfr,logzsol,dn4000,av,z",
    r_limit: Annotated[Optional[float], typer.Option("--r-limit", help="Keep sims with r (asinh mag) brighter than "
                                                                       "this (17.77: the SDSS main sample).")] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Training steps (early stopping).")] = 20000,
    width: Annotated[int, typer.Option(min=8, help="Velocity MLP width (3 hidden layers).")] = 256,
    seed: Annotated[int, typer.Option(help="Seed (split, initialisation, batches).")] = 0,
    images: Annotated[bool, typer.Option("--images", help="Image + photometry model: the sims' cutouts "
                                                          "(SIMS.images.npy from simulate-sed --images) "
                                                          "through a jointly trained CNN.")] = False,
    batch: Annotated[int, typer.Option("--batch", min=8, help="Batch size.")] = 1024,
    init: Annotated[Optional[Path], typer.Option("--init", help="Image model: continue training these weights (same "
                                                               "configuration; a new learning-rate schedule).")] = None,
    warm_start: Annotated[Optional[Path], typer.Option("--warm-start", help="Image model: start from this trained "
                                                                           "photometry model (same properties and "
                                                                           "bands): its velocity network and "
                                                                           "standardisation, with zero weights on "
                                                                           "the image embedding.")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (cosine decay).")] = 1e-3,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing weights.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
):
    """Train a photometry (or image + photometry) -> properties conditional flow-matching posterior on
    simulated galaxies."""
    import jax.random as jr
    import numpy as np

    from .posterior.cfm import train_cfm
    from .posterior.data import read_simulations, sims_provenance
    from .posterior.model import build, luptitudes, save_model
    from .simulate.sed import SDSS_SKY_NMGY

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    cat, imgs = read_simulations(sims, images)
    plist = _csv_list(props)
    missing = [p for p in plist if p not in cat.truth]
    if missing:
        raise UserError(f"{cat.source}: no truth column(s) {', '.join(missing)}")
    theta = np.stack([cat.truth[p] for p in plist], axis=1)
    soft = [SDSS_SKY_NMGY[b] for b in cat.bands]
    keep = np.all(np.isfinite(theta), axis=1) & np.all(np.isfinite(cat.flux), axis=1)
    if r_limit is not None:
        keep &= luptitudes(cat.flux, soft)[:, cat.bands.index("sdss_r")] < r_limit
    theta, flux = theta[keep], cat.flux[keep]
    key = jr.PRNGKey(seed)
    if images:
        from .posterior.image import build_image_model, save_image_model, train_image_cfm
        from .simulate.sed_images import SKY_PIX, ImageConfig

        rows = np.nonzero(keep)[0]
        ib = ImageConfig().image_bands
        if init is not None and warm_start is not None:
            raise UserError("--init and --warm-start exclude each other")
        if init is not None:
            from .posterior.model import load_model

            model, init_meta = load_model(init)
            if init_meta.get("kind") != "cfm-image" or list(model.props) != plist:
                raise UserError(f"{init}: not an image model of the properties {', '.join(plist)}")
        elif warm_start is not None:
            from .posterior.image import image_model_from_photometric
            from .posterior.model import load_model

            try:
                phot, phot_meta = load_model(warm_start)
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                raise UserError(f"{warm_start}: cannot read a model ({e})") from None
            if (phot_meta.get("kind") != "cfm-photometry" or list(phot.props) != plist
                    or list(phot.bands) != list(cat.bands)):
                raise UserError(f"{warm_start}: not a photometry model of the properties {', '.join(plist)} "
                                f"and bands {', '.join(cat.bands)}")
            model = image_model_from_photometric(phot, ib, [SKY_PIX[b] for b in ib], key=jr.fold_in(key, 1))
        else:
            model = build_image_model(plist, cat.bands, soft, ib, [SKY_PIX[b] for b in ib], theta, flux, width=width,
                                      key=jr.fold_in(key, 1))
        t0 = time.perf_counter()
        prog = None if quiet else (lambda s, tl, vl: typer.echo(f"step {s}: train {tl:.4f} validation {vl:.4f}"))

        class _Rows:  # the kept rows of the memory-mapped images, read batch by batch
            def __getitem__(self, i):
                return imgs[rows[i]]

        model, hist = train_image_cfm(model, theta, flux, _Rows(), key=jr.fold_in(key, 2 if init is None else 3),
                                      max_steps=max_steps, batch=batch, lr=lr, progress=prog)
        # the --init model's history, time and runs come first: the sidecar describes the whole chain
        prev = init_meta if init is not None else {}
        hist = [tuple(h) for h in prev.get("history", [])] + [(h[0] + prev.get("steps", 0), h[1], h[2]) for h in hist]
        dt = time.perf_counter() - t0 + prev.get("train_seconds", 0.0)
        init_s, warm_s = (None if x is None else str(x) for x in (init, warm_start))
        runs = prev.get("runs", []) + [dict(steps=hist[-1][0] - prev.get("steps", 0), lr=lr, batch=batch, init=init_s,
                                            warm_start=warm_s)]
        save_image_model(out, model, dict(sims=[str(p) for p in sims], sims_provenance=sims_provenance(sims),
                                          n_train=int(keep.sum()), r_limit=r_limit, seed=seed,
                                          steps=hist[-1][0], batch=batch, train_seconds=round(dt, 1),
                                          init=init_s, warm_start=warm_s, runs=runs,
                                          best_val_loss=min(h[2] for h in hist), history=hist))
        typer.echo(f"trained on {int(keep.sum())} simulated galaxies with images in {dt:.0f} s ({hist[-1][0]} steps) "
                   f"-> {out}")
        return
    model = build(plist, cat.bands, soft, theta, flux, width=width, key=jr.fold_in(key, 1))
    cond = np.asarray(model.features(flux))
    z = (theta - np.asarray(model.theta_mean)) / np.asarray(model.theta_std)
    t0 = time.perf_counter()
    prog = None if quiet else (lambda s, tl, vl: typer.echo(f"step {s}: train {tl:.4f} validation {vl:.4f}"))
    vel, hist = train_cfm(model.velocity, z, cond, key=jr.fold_in(key, 2), max_steps=max_steps, batch=batch, lr=lr,
                          progress=prog)
    model = eqx_replace_velocity(model, vel)
    dt = time.perf_counter() - t0
    save_model(out, model, dict(kind="cfm-photometry", sims=[str(p) for p in sims],
                                sims_provenance=sims_provenance(sims), n_train=int(keep.sum()), r_limit=r_limit,
                                seed=seed, steps=hist[-1][0], train_seconds=round(dt, 1),
                                best_val_loss=min(h[2] for h in hist), history=hist))
    typer.echo(f"trained on {int(keep.sum())} simulated galaxies in {dt:.0f} s ({hist[-1][0]} steps) -> {out}")


def eqx_replace_velocity(model, vel):
    import equinox as eqx

    return eqx.tree_at(lambda m: m.velocity, model, vel)


@posterior_app.command("train-vaenf")
def posterior_train_vaenf(
    sims: Annotated[list[Path], typer.Option("--sims", help="Simulated table with images (simulate-sed --images); "
                                                           "repeat the option to train on several.")],
    out: Annotated[Path, typer.Option("--out", help="Weights file to write (.eqx + .json).")],
    latent: Annotated[int, typer.Option(min=2, help="VAE latent dimensions.")] = 16,
    beta: Annotated[float, typer.Option(help="Weight of the VAE's KL term.")] = 1.0,
    vae_steps: Annotated[int, typer.Option("--vae-steps", min=1, help="VAE training steps (batch 256).")] = 3000,
    flow_epochs: Annotated[int, typer.Option("--flow-epochs", min=1, help="Maximum flow epochs (early stopping).")] = 60,
    flow_width: Annotated[int, typer.Option("--flow-width", min=4, help="Width of the flows' conditioner MLPs.")] = 128,
    flow_layers: Annotated[int, typer.Option("--flow-layers", min=1, help="Coupling layers per flow.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    init_vae: Annotated[Optional[Path], typer.Option("--init-vae", help="Keep the VAE of this trained vae-nf model "
                                                                     "(its latent size and image scaling) and train "
                                                                     "the flows only.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing weights.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
):
    """Train the VAE + conditional normalizing flows model (properties, black-hole mass, emission lines)."""
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    from .posterior.data import read_simulations, sims_provenance
    from .posterior.vaenf import (LINES, PROPS_NF, VAE, VAENFModel, censor_lines, encode_means, make_flow,
                                  photometric_features, save_vaenf, train_flow, train_vae)
    from .simulate.sed import SDSS_SKY_NMGY
    from .simulate.sed_images import SKY_PIX, ImageConfig

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    cat, imgs = read_simulations(sims, images=True)
    missing = [p for p in PROPS_NF + LINES if p not in cat.truth]
    if missing:
        raise UserError(f"{cat.source}: no truth column(s) {', '.join(missing)}")
    key = jr.PRNGKey(seed)
    rng = np.random.default_rng(seed)
    sig = tuple(SKY_PIX[b] for b in ImageConfig().image_bands)
    soft = tuple(SDSS_SKY_NMGY[b] for b in cat.bands)
    t0 = time.perf_counter()
    prog = None if quiet else (lambda s, tl, vl, vm: typer.echo(f"VAE step {s}: train {tl:.1f} validation {vl:.1f} "
                                                                 f"(MSE {vm:.4f})"))
    ch = (16, 32, 64)
    if init_vae is not None:
        from .posterior.vaenf import load_vaenf

        try:
            prev, pmeta = load_vaenf(init_vae)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{init_vae}: cannot read a vae-nf model ({' '.join(str(e).split())[:200]})") from None
        if tuple(prev.image_sigma) != sig or tuple(prev.bands) != tuple(cat.bands):
            raise UserError(f"{init_vae}: its VAE was trained for other bands or image noise")
        vae, vh, t_vae = prev.vae, pmeta["vae_history"], pmeta["vae_seconds"]
        latent, ch, beta, vae_steps = pmeta["config"]["latent"], tuple(pmeta["config"]["vae_channels"]), \
            pmeta["config"]["beta"], pmeta["vae_steps"]
    else:
        vae, vh = train_vae(VAE(3, latent, ch, key=jr.fold_in(key, 1)), imgs, sig, key=jr.fold_in(key, 2), beta=beta,
                            steps=vae_steps, progress=prog)
        t_vae = time.perf_counter() - t0
    lat = encode_means(vae, imgs, sig)
    cond = np.concatenate([lat, photometric_features(cat.flux, soft, colours=True)], axis=1)
    theta = np.stack([cat.truth[p] for p in PROPS_NF], 1)
    lines = np.stack([censor_lines(cat.truth[ln], rng) for ln in LINES], 1)
    st = lambda a: (a.mean(0), np.maximum(a.std(0), 1e-6))  # noqa: E731
    (cm, cs), (pm, ps), (lm, ls) = st(cond), st(theta), st(lines)
    flow_cfg = dict(layers=flow_layers, width=flow_width, depth=2, knots=8)
    c = (cond - cm) / cs
    t1 = time.perf_counter()
    fp, hp = train_flow(make_flow(len(PROPS_NF), c.shape[1], key=jr.fold_in(key, 3), **flow_cfg), (theta - pm) / ps, c,
                        key=jr.fold_in(key, 4), max_epochs=flow_epochs)
    fl, hl = train_flow(make_flow(len(LINES), c.shape[1], key=jr.fold_in(key, 5), **flow_cfg), (lines - lm) / ls, c,
                        key=jr.fold_in(key, 6), max_epochs=flow_epochs)
    t_flow = time.perf_counter() - t1
    total = time.perf_counter() - t0 + (t_vae if init_vae is not None else 0.0)  # VAE + flows, however trained
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    stats = dict(cond_mean=f32(cm), cond_std=f32(cs), props_mean=f32(pm), props_std=f32(ps), lines_mean=f32(lm),
                 lines_std=f32(ls))
    model = VAENFModel(vae, fp, fl, stats, PROPS_NF, tuple(cat.bands), soft, sig, colours=True)
    cfg = dict(props=list(PROPS_NF), bands=list(cat.bands), soft=list(soft), image_sigma=list(sig), latent=latent,
               vae_channels=list(ch), flow=flow_cfg, beta=beta, colours=True)
    save_vaenf(out, model, dict(config=cfg, sims=[str(p) for p in sims], sims_provenance=sims_provenance(sims),
                                n_train=len(cat.flux), seed=seed, vae_steps=vae_steps,
                                vae_history=vh, vae_val_mse=vh[-1][3], vae_seconds=round(t_vae, 1),
                                vae_from=str(init_vae) if init_vae is not None else None,
                                flow_props=hp, flow_lines=hl, flow_seconds=round(t_flow, 1),
                                train_seconds=round(total, 1)))
    typer.echo(f"trained on {len(cat.flux)} galaxies in {total:.0f} s "
               f"(VAE {t_vae:.0f} s{' in ' + str(init_vae) if init_vae else ''}, "
               f"reconstruction MSE {vh[-1][3]:.4f}; flows {t_flow:.0f} s) -> {out}")


@posterior_app.command("distill")
def posterior_distill(
    model: Annotated[Path, typer.Option("--model", help="CFM weights (the teacher).")],
    sims: Annotated[Path, typer.Option("--sims", help="Simulated table whose fluxes condition the training pairs.")],
    out: Annotated[Path, typer.Option("--out", help="One-step sampler weights to write (.eqx + .json).")],
    r_limit: Annotated[Optional[float], typer.Option("--r-limit", help="Keep sims brighter than this r (asinh mag).")] = None,
    pairs: Annotated[int, typer.Option("--pairs", min=100, help="(noise, teacher sample) training pairs.")] = 200_000,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps.")] = 15000,
    teacher_steps: Annotated[int, typer.Option("--teacher-steps", min=1, help="RK4 steps of the teacher.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing weights.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
):
    """Distil a CFM posterior into a one-step sampler (one network evaluation per sample)."""
    import jax.random as jr
    import numpy as np

    from .posterior.data import read_catalog, sims_provenance
    from .posterior.model import load_model, luptitudes
    from .posterior.onestep import distill_sampler, save_onestep

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    teacher, tmeta = load_model(model)
    if tmeta.get("kind") == "cfm-onestep":
        raise UserError(f"{model}: already a one-step sampler; give the CFM it came from")
    cat = read_catalog(sims, teacher.bands)
    keep = np.all(np.isfinite(cat.flux), axis=1)
    if r_limit is not None:
        keep &= luptitudes(cat.flux, teacher.soft)[:, teacher.bands.index("sdss_r")] < r_limit
    t0 = time.perf_counter()
    prog = None if quiet else (lambda s, tl, vl: typer.echo(f"step {s}: train {tl:.4f} validation {vl:.4f}"))
    m, hist = distill_sampler(teacher, cat.flux[keep], key=jr.PRNGKey(seed), n_pairs=pairs, steps=steps,
                              teacher_steps=teacher_steps, progress=prog)
    dt = time.perf_counter() - t0
    save_onestep(out, m, dict(teacher=model.name, teacher_sha256=tmeta.get("sha256"), sims=str(sims),
                              sims_provenance=sims_provenance([sims])[0],
                              n_conditions=int(keep.sum()), r_limit=r_limit, pairs=pairs, steps=steps,
                              teacher_steps=teacher_steps, seed=seed, train_seconds=round(dt, 1),
                              best_val_loss=min(h[2] for h in hist), history=hist))
    typer.echo(f"distilled in {dt:.0f} s -> {out}")


@posterior_app.command("train-z")
def posterior_train_z(
    catalog: Annotated[Path, typer.Option("--catalog", help="SDSS table with spectroscopic Z (MODELFLUX, EXTINCTION; "
                                                            "PETROFLUX and 2MASS J/H/K_M_EXT used when present).")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    cfm: Annotated[Optional[Path], typer.Option("--cfm", help="Photometric CFM whose posterior summary is a feature "
                                                              "(default: the shipped cfm-phot).")] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Cross-validation folds (metrics and calibration).")] = 5,
    trees: Annotated[int, typer.Option("--trees", min=1, help="Boosting rounds (fewer: a quicker, coarser model; "
                                                              "the shipped one has 1500).")] = 1500,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing model folder.")] = False,
):
    """Train the SDSS redshift model (xgboost quantiles on photometry + the CFM's posterior summary)."""
    import numpy as np

    from .posterior.data import read_catalog
    from .posterior.model import load_model
    from .posterior.redshift import CFM_PROPS, PARAMS, cfm_features, sdss_table_features, train_redshift

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    cfm_path = cfm or DEFAULT_POSTERIOR
    c, cmeta = load_model(cfm_path)
    if cmeta.get("kind") not in (None, "cfm-photometry", "cfm-onestep") or tuple(c.props) != CFM_PROPS:
        raise UserError(f"{cfm_path}: not a photometric CFM of {', '.join(CFM_PROPS)}")
    X, z = sdss_table_features(catalog)
    if z is None:
        raise UserError(f"{catalog}: no Z column (spectroscopic redshifts) to train on")
    cat = read_catalog(catalog, c.bands)
    ok = np.array([not n for n in cat.notes]) & np.isfinite(z)
    t0 = time.perf_counter()
    Xf = np.c_[X[ok], cfm_features(c, cat.flux[ok])]
    params = None if trees == PARAMS["n_estimators"] else dict(PARAMS, n_estimators=trees)
    m = train_redshift(Xf, z[ok], seed=seed, k=folds, source=str(catalog), params=params)
    m.meta.update(cfm=cfm_path.name, cfm_path=str(cfm_path.resolve()), cfm_sha256=cmeta.get("sha256"),
                  rows_skipped=int((~ok).sum()), train_seconds=round(time.perf_counter() - t0, 1))
    m.save(out, overwrite)
    cv = m.meta["cv"]
    typer.echo(f"trained on {m.meta['n_train']} galaxies in {m.meta['train_seconds']:.0f} s; {folds}-fold CV: "
               f"sigma_NMAD {cv['nmad']:.4f}, outliers {100 * cv['outliers']:.2f} %, 16-84 % coverage "
               f"{100 * cv['coverage']:.1f} % -> {out}")


@posterior_app.command("sample")
def posterior_sample(
    catalog: Annotated[Path, typer.Option("--catalog", help="galdust simulator table or SDSS FITS table.")],
    out: Annotated[Path, typer.Option("--out", help="Output FITS table POST.fits.")],
    model: Annotated[Optional[str], typer.Option("--model", help="Weights file, or a shipped model: cfm-phot, "
                                                                 "cfm-onestep, cfm-image, vae-nf (these two need "
                                                                 "--images), z-sdss (SDSS tables: redshift from the "
                                                                 "SDSS-trained model, the other properties from the "
                                                                 "one-step CFM it reads). Default: z-sdss on SDSS "
                                                                 "tables, cfm-phot on others.")] = None,
    samples: Annotated[int, typer.Option("--samples", min=10, help="Posterior samples per object.")] = 1000,
    steps: Annotated[int, typer.Option("--steps", min=1, help="RK4 steps.")] = 100,
    save_samples: Annotated[bool, typer.Option("--save-samples", help="Also write the samples (HDU SAMPLES).")] = False,
    images: Annotated[Optional[Path], typer.Option("--images", help="Image cutouts for image models: .npy (n, 3, H, W) "
                                                                    "or FITS cube, nmgy/pixel, row i = table row "
                                                                    "i.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
):
    """Posterior percentiles (p16, p50, p84) of each property for every row of a catalogue."""
    import jax.random as jr
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    from .io import atomic_path
    from .posterior.api import resolve_model, summarise_rows
    from .posterior.data import read_catalog
    from .posterior.model import load_model
    from .posterior.redshift import RedshiftModel, sdss_table_features

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    plan = resolve_model(model, catalog)
    zmodel = RedshiftModel.load(plan.zmodel) if plan.zmodel is not None else None
    m, meta = load_model(plan.cfm)
    cat = read_catalog(catalog, m.bands)
    ok = np.array([not n for n in cat.notes])
    t0 = time.perf_counter()
    zfeat = None
    if zmodel is not None:
        zfeat = sdss_table_features(catalog)[0][ok]  # an InputError unless an SDSS table
    imgs = None
    if hasattr(m, "encoder") or hasattr(m, "vae"):
        if images is None:
            raise UserError(f"{model}: an image model; give the cutouts with --images")
        try:
            imgs = np.load(images, mmap_mode="r") if images.suffix == ".npy" else fits.getdata(images)
        except (OSError, ValueError) as e:
            raise UserError(f"{images}: cannot read the cutouts ({' '.join(str(e).split())})") from None
        if imgs.ndim != 4 or len(imgs) != len(cat.names):
            raise UserError(f"{images}: expected ({len(cat.names)}, bands, H, W) cutouts, got {imgs.shape}")
        imgs = np.asarray(imgs[ok], np.float32)
        bad = ~np.all(np.isfinite(imgs), axis=(1, 2, 3))
        if bad.any():
            raise UserError(f"{images}: {int(bad.sum())} cutouts contain NaN")
    extra = {}
    if hasattr(m, "vae"):
        from .posterior.vaenf import LINES, summarise

        res = summarise(m, cat.flux[ok], imgs, jr.PRNGKey(seed), samples)
        pct, smp = res["props"], (res["samples"] if save_samples else None)
        for j, ln in enumerate(LINES):
            for k, q in enumerate(("p16", "p50", "p84")):
                extra[f"{ln}_{q}"] = res["lines"][:, j, k]  # log10 flux [1e-17 erg/s/cm2]
            extra[f"{ln}_pdet"] = res["p_det"][:, j]
        for k, c in enumerate(("sf", "composite", "agn")):
            extra[f"p_bpt_{c}"] = res["bpt"][:, k]
        extra["f_lines_detected"] = res["f_lines"]
        for k, q in enumerate(("p16", "p50", "p84")):
            extra[f"av_balmer_{q}"] = res["av_balmer"][:, k]
    else:
        pct, smp = summarise_rows(m, cat.flux[ok], [n for n, g in zip(cat.names, ok) if g], seed=seed,
                                  samples=samples, steps=steps, zmodel=zmodel, zfeat=zfeat, images=imgs,
                                  keep_samples=save_samples)
    dt = time.perf_counter() - t0
    cols = {"name": cat.names}
    for j, p in enumerate(m.props):
        for k, q in enumerate(("p16", "p50", "p84")):
            v = np.full(len(cat.names), np.nan)
            v[ok] = pct[:, j, k]
            cols[f"{p}_{q}"] = v
    for c, vals in extra.items():
        v = np.full(len(cat.names), np.nan)
        v[ok] = vals
        cols[c] = v
    cols["note"] = cat.notes
    hdus = [fits.PrimaryHDU(), fits.table_to_hdu(Table(cols))]
    hdus[1].name = "POSTERIOR"
    if save_samples:
        full = np.full((len(cat.names), samples, len(m.props)), np.nan, np.float32)
        full[ok] = smp
        h = fits.ImageHDU(full, name="SAMPLES")
        h.header["PROPS"] = ",".join(m.props)
        if zmodel is not None:
            h.header["ZSAMPLES"] = ("cfm", "z samples: the CFM's; z_p16/50/84: z-sdss's")
        hdus.append(h)
    hdus[0].header["MODEL"] = (plan.label, "default for this table" if model is None else "as asked")
    if zmodel is not None:
        hdus[0].header["ZMODEL"] = (plan.zmodel.name, "z from the SDSS redshift model")
        hdus[0].header["CFMMODEL"] = (zmodel.meta["cfm"], "the other properties")
    hdus[0].header["NSAMPLE"] = samples
    hdus[0].header["RK4STEP"] = steps
    with atomic_path(out, overwrite) as tmp:
        fits.HDUList(hdus).writeto(tmp)
    typer.echo(f"{plan.label}: sampled {int(ok.sum())} of {len(cat.names)} rows ({samples} samples each) in {dt:.1f} s "
               f"({ok.sum() / max(dt, 1e-9):.1f} objects/s) -> {out}")


def _run_progress(quiet: bool):
    """A progress bar for ``galdust run`` (objects done / errors / rate / ETA); (update, close)."""
    if quiet or not sys.stderr.isatty():
        return None, (lambda: None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    prog = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[errors]} errors"), TextColumn("{task.fields[rate]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=True)
    task = prog.add_task("run", total=None, errors=0, rate="")
    t0 = time.perf_counter()
    prog.start()

    def update(ok: int, err: int, todo: int):
        n = ok + err
        prog.update(task, completed=n, total=todo, errors=err, rate=f"{n / max(time.perf_counter() - t0, 1e-9):.2f}/s")

    return update, prog.stop


@app.command("run")
def run_cmd(
    task: Annotated[str, typer.Argument(help="The job per object: fit, fir-map or posterior.")],
    inputs: Annotated[Optional[list[str]], typer.Option("--inputs", help="Glob pattern (quote it), repeatable: fit: cube "
                                                                         "FITS files; fir-map: folders of band images, "
                                                                         "one per galaxy; posterior: tables.")] = None,
    catalog: Annotated[Optional[Path], typer.Option("--catalog", help="fit: table (CSV/FITS/Parquet) with 'path' (and "
                                                                      "'name'); fir-map: one row per galaxy with 'name', "
                                                                      "'images' (';'-separated) or 'path' (folder), "
                                                                      "'distance' [Mpc]; posterior: the photometry "
                                                                      "table itself, one object per row.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Run folder: outputs, catalog.parquet, run state.")] = Path("."),
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Local worker processes (default: "
                                                                            "one per core, one thread each).")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Address of a running Dask scheduler "
                                                                         "(tcp://host:port) instead of a local cluster.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Objects per task (default: fit 8, "
                                                                                  "the vmapped batch; fir-map 1; "
                                                                                  "posterior 256).")] = None,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Re-attempt inputs with an error row.")] = False,
    max_iter: Annotated[Optional[int], typer.Option("--max-iter", min=1, help="fit: iteration limit of the dust fit "
                                                    "(default 300; 1000 with --dust-level gauge).")] = None,
    dust_level: Annotated[str, typer.Option("--dust-level", help="fit: 'shrink' or 'gauge', as in galdust fit.")] = "shrink",
    start: Annotated[str, typer.Option(help="fit: auto, red or blue start.")] = "auto",
    no_priors: Annotated[bool, typer.Option("--no-priors", help="fit: likelihood only.")] = False,
    no_psf: Annotated[bool, typer.Option("--no-psf", help="fit: ignore input PSFs.")] = False,
    no_detect: Annotated[bool, typer.Option("--no-detect", help="fit: do not mask neighbours; fir-map: do not "
                                                                "detect stars.")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="fit, fir-map: also write the figure per object.")] = False,
    model: Annotated[Optional[Path], typer.Option("--model", help="fir-map: FIR model folder; posterior: weights "
                                                                  "or a shipped name: cfm-phot (default), "
                                                                  "cfm-onestep, z-sdss.")] = None,
    exact: Annotated[bool, typer.Option("--exact", help="fir-map: predict with the trees, not the distilled MLP.")] = False,
    samples: Annotated[int, typer.Option("--samples", min=10, help="posterior: samples per object.")] = 1000,
    steps: Annotated[int, typer.Option("--steps", min=1, help="posterior: RK4 steps.")] = 100,
    save_samples: Annotated[bool, typer.Option("--save-samples", help="posterior: also write NAME.samples.fits.")] = False,
    seed: Annotated[int, typer.Option(help="posterior: seed (each object's key derives from it and its name).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar (batch systems); summary only.")] = False,
):
    """Run a job over many inputs on Dask: resumable (re-run the same command), one row per input in
    OUT/catalog.parquet, bad inputs recorded as error rows while the run goes on."""
    from .dust.fit import level_config
    from .dust.init import choose_start
    from .pipeline.runner import RunError, local_cluster, prepare_out, run
    from .pipeline.tasks import TASKS, get_task

    if not inputs and catalog is None:
        raise UserError("give --inputs 'GLOB' or --catalog TABLE")
    if task not in TASKS:
        raise UserError(f"unknown task {task!r} (available: {', '.join(TASKS)})")
    opts = {"fit": dict(max_iter=max_iter, priors=not no_priors, start=start, use_psf=not no_psf,
                        detect=not no_detect, plot=plot, dust_level=dust_level),
            "fir-map": dict(model=str(model.resolve()) if model else None, detect=not no_detect, plot=plot,
                            exact=exact),
            "posterior": dict(model=str(model.resolve()) if model else None, samples=samples, steps=steps,
                              seed=seed, save_samples=save_samples)}[task]
    if task == "posterior":  # the model galdust posterior sample would use (the same default per table)
        from .posterior.api import resolve_model

        if model is not None and str(model) in NAMED_POSTERIORS:
            model = NAMED_POSTERIORS[str(model)]
        elif model is None and catalog is not None:
            model = NAMED_POSTERIORS[resolve_model(None, catalog).label]
        opts["model"] = str(Path(model).resolve()) if model is not None else None
    if batch_size:
        opts["batch_size"] = batch_size
    try:
        if task == "fit":
            choose_start([1.0], start)
            level_config(dust_level)  # a one-line error before the cluster starts
        if model is not None and not Path(model).exists():
            raise ValueError(f"{model}: no such model")
        job = get_task(task, **opts)
        items = job.discover(inputs or [], catalog)
        prepare_out(out, job)
    except (RunError, ValueError) as e:
        raise UserError(str(e)) from None
    from distributed import Client

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = local_cluster(workers)
        client = Client(cluster)
    upd, close = _run_progress(quiet)
    try:
        s = run(job, items, out, client, retry_errors=retry_errors, progress=upd)
    finally:
        close()
        client.close()
        if cluster is not None:
            cluster.close()
    typer.echo(f"{task}: {s.ok} ok, {s.errors} errors, {s.skipped} already done, of {s.total} inputs in "
               f"{s.wall_s:.1f} s ({s.rate:.2f} objects/s) -> {s.catalog}"
               + (f"; {s.earlier_errors} earlier error rows kept (--retry-errors re-attempts them)"
                  if s.earlier_errors else ""))
    return 1 if s.errors else 0


EXAMPLE = Path(__file__).resolve().parent / "data" / "examples" / "sim_dusty_galaxy.fits"
#: the HSC scene of the demo: ../shared/data beside the working directory or beside the source checkout
HSC_SCENES = (Path("../shared/data/hsc/hsc_cosmos_35.npz"),
              Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hsc" / "hsc_cosmos_35.npz")


def _hsc_cutout(scene: Path, out: Path, size: int = 40, overwrite: bool = False) -> Path:
    """Cut a size×size cube FITS (IVAR, PSF) around the catalogued source of an HSC scene with the most
    flux within 10 px (the large red galaxy of hsc_cosmos_35)."""
    import numpy as np

    from .io import read_npz, write_cube

    obs = read_npz(scene)
    cat = np.load(scene)["catalog"]
    det = np.sum(obs.cube * (obs.ivar > 0), axis=0)
    yy, xx = np.mgrid[: det.shape[0], : det.shape[1]]
    flux = [det[(yy - c["y"]) ** 2 + (xx - c["x"]) ** 2 < 100].sum() for c in cat]  # r < 10 px: extended
    c = cat[int(np.argmax(flux))]
    cy, cx, h = int(round(c["y"])), int(round(c["x"])), size // 2
    cube = np.zeros((obs.cube.shape[0], size, size), np.float32)
    ivar = np.zeros_like(cube)
    y0, x0 = cy - h, cx - h
    ys, xs = slice(max(y0, 0), min(y0 + size, det.shape[0])), slice(max(x0, 0), min(x0 + size, det.shape[1]))
    ty, tx = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
    cube[:, ty, tx] = obs.cube[:, ys, xs]
    ivar[:, ty, tx] = obs.ivar[:, ys, xs]
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

    from .dust.api import fit_files

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


def _click_error(e: BaseException) -> tuple[str, int] | None:
    """(one line, exit status) of a command-line usage error from click or typer's vendored click."""
    if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
        return None
    msg = " ".join(str(e.format_message()).split())
    ctx = getattr(e, "ctx", None)
    cmd = getattr(ctx, "command_path", None) or "galdust"
    hint = f" (see '{cmd} --help')" if type(e).__name__ != "ClickException" else ""
    return f"galdust: error: {cmd}: {msg}{hint}", int(e.exit_code)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors print one line on stderr, never a traceback (set
    ``GALDUST_DEBUG=1`` to see the traceback of an unexpected error)."""
    import os

    from .io import InputError, OutputExistsError
    from .physics.filters import UnknownBandError

    try:
        rv = app(args=argv, standalone_mode=False)
    except (UserError, InputError, OutputExistsError, UnknownBandError) as e:
        typer.echo(f"galdust: error: {_one_line(e)}", err=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("galdust: interrupted", err=True)
        return 130
    except Exception as e:  # noqa: BLE001 - usage errors, then anything unexpected: one line
        usage = _click_error(e)
        if usage is not None:
            typer.echo(usage[0], err=True)
            return usage[1]
        if os.environ.get("GALDUST_DEBUG"):
            raise
        typer.echo(f"galdust: error: unexpected {type(e).__name__}: {_one_line(e)} "
                   "(GALDUST_DEBUG=1 shows the traceback; please report it)", err=True)
        return 1
    if hasattr(rv, "exit_code"):  # click's Exit returned in non-standalone mode
        return int(rv.exit_code)
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())


def _entry() -> None:  # console script
    sys.exit(main())
