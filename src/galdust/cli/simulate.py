"""``galdust simulate``, ``simulate-sed``, ``info`` and ``train-prior``: simulators and prior training."""

from __future__ import annotations

import zipfile

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import UserError, _csv_list, _one_line, _progress, app


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Output folder (per-galaxy mode) or .npz file (--bulk).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of galaxies.")] = 8,
    bands: Annotated[str, typer.Option(help="Comma-separated registry bands.")] = "sdss_g,sdss_r,sdss_i,sdss_z",
    size: Annotated[int, typer.Option(min=16, help="Image size in pixels (square).")] = 64,
    snr: Annotated[float, typer.Option(min=0.0, help="Per-band S/N (see --snr-kind); 0 for noiseless.")] = 50.0,
    snr_kind: Annotated[str, typer.Option(help="'matched' (whole-galaxy matched-filter S/N) or 'peak' "
                                               "(S/N of the brightest pixel).")] = "matched",
    seed: Annotated[int, typer.Option(help="Random seed (deterministic output).")] = 0,
    psf_fwhm: Annotated[float, typer.Option(min=0.0, help="Gaussian PSF FWHM in pixels; 0 for none.")] = 2.0,
    isochromatic: Annotated[bool, typer.Option("--isochromatic", help="One SED for bulge, disk and clumps.")] = False,
    hosts: Annotated[str, typer.Option(help="Component SEDs: 'realistic' (stellar populations; bulge - disk "
                                            "colours as in real galaxies) or 'stress' (power laws, "
                                            "extreme colour gradients).")] = "realistic",
    dust_free: Annotated[bool, typer.Option("--dust-free", help="The same galaxies without any dust.")] = False,
    z_range: Annotated[Optional[str], typer.Option("--z-range", help="LO,HI: redshift range of the realistic hosts' "
                                                   "stellar populations (default 0.02,0.15, the shipped amortised "
                                                   "network's; farther hosts are redder).")] = None,
    dust_frame: Annotated[str, typer.Option("--dust-frame", help="'observed' (the dust curve at the filters' "
                                            "wavelengths, as the shipped networks were trained) or 'rest' (at the "
                                            "host's rest wavelengths; each cube gets the header REDSHIFT, which "
                                            "galdust fit reads).")] = "observed",
    n_los: Annotated[int, typer.Option(min=2, help="Samples along each line of sight.")] = 40,
    bulk: Annotated[bool, typer.Option("--bulk", help="Write one .npz array store (for prior training).")] = False,
    with_cubes: Annotated[bool, typer.Option("--with-cubes", help="Bulk: also store the image cubes.")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="Write a figure of the first galaxies.")] = False,
    batch: Annotated[int, typer.Option(min=1, help="Galaxies rendered at once (vmap).")] = 64,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
):
    """Simulate dusty galaxies with per-pixel truth (cube FITS + truth table, or a bulk .npz store)."""
    import jax

    from ..physics.filters import get_filter
    from ..simulate import SimConfig
    from ..simulate import simulate as run_sim
    from ..simulate.store import write_bulk, write_galaxies

    band_list = tuple(b.strip().lower() for b in bands.split(",") if b.strip())
    for b in band_list:
        get_filter(b)  # unknown band -> error listing close matches
    from ..simulate.host_sed import HOSTS, channel_filters

    if hosts not in HOSTS:
        raise UserError(f"--hosts {hosts!r}: one of {', '.join(HOSTS)}")
    if len(set(band_list)) != len(band_list):
        raise UserError(f"--bands {bands}: a band is given twice")
    if dust_frame == "rest" and hosts != "realistic":
        raise UserError("--dust-frame rest: only for --hosts realistic (the stress hosts' power laws have no redshift)")
    zr = {}
    if z_range is not None:
        if hosts != "realistic":
            raise UserError("--z-range: only for --hosts realistic (the stress hosts' power laws have no redshift)")
        try:
            lo, hi = (float(v) for v in z_range.split(","))
        except ValueError:
            raise UserError(f"--z-range {z_range!r}: expected LO,HI (e.g. 0.3,0.8)") from None
        zr = {"z_range": (lo, hi)}
    try:
        cfg = SimConfig(bands=band_list, size=size, n_los=n_los, psf_fwhm=psf_fwhm or None,
                        snr=snr or None, snr_kind=snr_kind, isochromatic=isochromatic, hosts=hosts,
                        dust_free=dust_free, dust_frame=dust_frame, **zr)
    except ValueError as e:  # e.g. an unknown --snr-kind, a z range with LO > HI
        raise UserError(f"{e}") from None
    if hosts == "realistic":
        try:
            channel_filters(band_list, cfg.lam_ref)
        except ValueError as e:
            raise UserError(f"--hosts realistic: {e} (use --hosts stress)") from None
    if bulk and out.suffix != ".npz":
        out = out.with_suffix(".npz")
    if not bulk and out.suffix.lower() == ".npz":
        raise UserError(f"--out {out}: a .npz store is written with --bulk (without it, --out is a folder of cube FITS)")
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
        from ..report import plot_simulations

        fig = (out.with_suffix(".png") if bulk else out / "simulations.png")
        plot_simulations(sim, fig, n=min(n, 8), title=f"galdust simulate (seed {seed}, S/N {snr:g})")
        written += f"; figure {fig}"
    if not quiet:
        typer.echo(f"simulated {n} galaxies in {t_sim:.1f} s ({n / t_sim:.1f}/s); wrote {written}")


#: primary-header keys worth showing for a galdust output (the rest: the file's header)
_PRODUCT_KEYS = ("METHOD", "BANDS", "AV_LW", "AVLW_ERR", "AVFRAME", "REDSHIFT", "DELTA", "DELTAERR", "COVFRAC",
                 "CHI2", "CHI2ND", "NITER", "NITERD", "CONVERGE", "START", "FWHM", "PIXSCALE")


def _describe_product(path: Path) -> list[str] | None:
    """Lines describing a galdust output (a dust map NAME.dust.fits, a FIR map NAME.fir.fits) or a
    simulation store (``galdust simulate --bulk``); None for anything else (an input image)."""
    import numpy as np

    if path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as d:
                if "config" not in d.files or "S" not in d.files:
                    return None
                n, (h, w) = len(d["S"]), d["S"].shape[1:]
                sig = np.asarray(d["sigma"]) if "sigma" in d.files else np.zeros(1)
                return [f"{path}: simulation store (galdust simulate --bulk), {n} galaxies of {h} x {w} pixels, seed "
                        f"{int(d['seed']) if 'seed' in d.files else '?'}, cubes {'yes' if 'cube' in d.files else 'no'}, "
                        f"{'noiseless' if not np.any(sig > 0) else 'with noise'}",
                        f"  bands: {', '.join(str(b) for b in d['bands'])}" if "bands" in d.files else "  bands: ?",
                        f"  arrays: {', '.join(sorted(d.files))}",
                        f"  simulator: {d['config']}"]
        except (OSError, ValueError):
            return None
    if path.suffix.lower() not in (".fits", ".fit", ".fz") or not path.is_file():
        return None
    from astropy.io import fits

    try:
        with fits.open(path) as h:
            names = [x.name for x in h]
            kind = ("dust map (galdust fit)" if "AV" in names else
                    "FIR map (galdust fir map)" if "LOG_SLD" in names else None)
            if kind is None:
                return None
            head = h[0].header
            lines = [f"{path}: {kind}"]
            keys = [f"{k} = {head[k]:.4g}" if isinstance(head[k], float) else f"{k} = {head[k]}"
                    for k in _PRODUCT_KEYS if k in head]
            if keys:
                lines.append("  " + ", ".join(keys))
            for x in h[1:]:
                shape = "x".join(map(str, x.data.shape)) if x.data is not None else "-"
                unit = x.header.get("BUNIT", "")
                lines.append(f"  HDU {x.name:12s} {shape:>12s}" + (f"  [{unit}]" if unit else ""))
            return lines
    except OSError:
        return None


@app.command()
def info(
    inputs: Annotated[list[Path], typer.Argument(help="A cube FITS, an .npz scene, or one FITS per band; or a "
                                                      "galdust output (NAME.dust.fits, NAME.fir.fits) or simulation "
                                                      "store.")],
    bands: Annotated[Optional[str], typer.Option(help="Comma-separated bands, for one file per band.")] = None,
):
    """Read an input image as galdust would and print what it found (bands, shape, noise, PSF, WCS);
    for a galdust output or simulation store, what it holds."""
    import warnings

    import numpy as np

    from ..io import read_observation

    band_list = [b.strip() for b in bands.split(",")] if bands else None
    if len(inputs) == 1 and bands is None:
        summary = _describe_product(inputs[0])
        if summary:  # a galdust output or simulation store, not an input image
            for line in summary:
                typer.echo(line)
            return
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
    n: Annotated[int, typer.Option("--n", min=1, help="Number of galaxies (training sets: tens of thousands; "
                                                   "the shipped posteriors used 220,000).")] = 1000,
    bands: Annotated[str, typer.Option(help="Comma-separated registry bands (below 6 µm).")] =
        "sdss_u,sdss_g,sdss_r,sdss_i,sdss_z",
    seed: Annotated[int, typer.Option(help="Random seed (deterministic output).")] = 0,
    batch: Annotated[int, typer.Option(min=1, help="Galaxies computed at once.")] = 4096,
    images: Annotated[bool, typer.Option("--images", help="Bulge + disk galaxies with SDSS gri 64x64 images, "
                                                          "written to OUT.images.npy (n, 3, 64, 64) float16 "
                                                          "[nmgy/pixel], row i = table row i.")] = False,
    r_limit: Annotated[Optional[float], typer.Option("--r-limit", help="Keep galaxies brighter than this r "
                                                                       "(asinh mag of the noisy flux).")] = None,
    prior: Annotated[Optional[str], typer.Option("--prior", help="Galaxy population: 'sdss' (the simulator's prior "
                                                                 "calibrated to real SDSS main-sample photometry, "
                                                                 "shipped, with --images the image simulator's; the "
                                                                 "default), 'broad' (the uncalibrated prior), or a "
                                                                 "folder from galdust calibrate-population (with "
                                                                 "--images: calibrate-population --images).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
):
    """Simulate galaxy photometry (nanomaggies, SDSS-like noise) with truths from the stellar-population
    simulator: one row per galaxy, columns flux_<band>, flux_err_<band>, flux_true_<band> and the truths
    (with --images also bt, incl_deg, av_disk and the images)."""
    import jax
    import numpy as np
    import pyarrow as pa

    from ..io import atomic_path
    from ..simulate.sed import TRUTHS, SEDConfig, simulate_photometry

    if out.suffix.lower() not in (".parquet", ".csv"):
        raise UserError(f"{out}: the table is written as .parquet or .csv (name it so)")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    band_list = tuple(_csv_list(bands))
    if r_limit is not None and "sdss_r" not in band_list:
        raise UserError("--r-limit needs sdss_r in --bands")
    try:
        from ..physics.sps import filter_set

        filter_set(band_list)  # unknown bands, bands beyond the simulator's 6 µm
        cfg = SEDConfig(bands=band_list)
        missing = [b for b in band_list if b not in dict(cfg.sky)]
        if missing:
            raise ValueError(f"no noise model for band(s) {', '.join(missing)}")
        population = _population(prior or "sdss", images)
        t0 = time.perf_counter()
        if images:
            from ..simulate.sed_images import ImageConfig, simulate_images

            # the selection before the rendering: only the kept galaxies are drawn as images
            sim = simulate_images(jax.random.PRNGKey(seed), n, ImageConfig(sed=cfg), batch=min(batch, 256),
                                  population=population, r_limit=r_limit)
        else:
            sim = simulate_photometry(jax.random.PRNGKey(seed), n, cfg, batch=min(batch, n), population=population)
    except (ValueError, KeyError) as e:
        raise UserError(" ".join(str(e).split())) from None
    dt = time.perf_counter() - t0
    if images:  # selected before the rendering
        keep = np.arange(len(sim["index"]))
    elif r_limit is not None:
        from ..simulate.sed import brighter_than

        keep = brighter_than(sim["flux"], band_list, r_limit)
    else:
        keep = np.arange(n)
    if not len(keep):
        raise UserError(f"--r-limit {r_limit:g}: none of the {n} simulated galaxies is brighter (nothing written)")
    names = sim["index"] if images else keep  # the row's number among the n simulated
    cols = {"name": [f"sed{seed}_{i:07d}" for i in names]}
    for j, b in enumerate(band_list):
        for k in ("flux", "flux_err", "flux_true"):
            cols[f"{k}_{b}"] = np.asarray(sim[k])[keep, j]
    for t in TRUTHS + (("bt", "incl_deg", "av_disk") if images else ()):
        cols[t] = np.asarray(sim[t])[keep]
    table = pa.table(cols)
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

            from .. import __version__
            from ..weights import git_commit

            # how the table was made, so that the sidecars of models trained on it can say so
            prov = dict(command="galdust simulate-sed", n=n, seed=seed, bands=list(band_list), images=images,
                        prior="broad" if population is None else population.meta.get("name", prior),
                        prior_commit=None if population is None else population.meta.get("commit"), r_limit=r_limit, kept=int(len(keep)), galdust_version=__version__, commit=git_commit())
            pq.write_table(table.replace_schema_metadata({"galdust": json.dumps(prov)}), tmp)
    typer.echo(f"simulated {n} galaxies in {dt:.1f} s ({n / dt:.0f}/s), kept {len(keep)} -> {out}"
               + (f" + {out.with_suffix('.images.npy')}" if images else ""))


def _population(prior: str, images: bool = False):
    """None for 'broad', else the calibrated population of the photometric (``images``: the image)
    simulator: 'sdss' the shipped one, or a folder."""
    if prior == "broad":
        return None
    from ..simulate.population import Population, is_population

    if prior == "sdss":
        from ..models import shipped_path

        return Population.load(shipped_path("population-sdss-images" if images else "population-sdss"))
    if not is_population(prior):
        raise UserError(f"{prior}: not a population folder (expected 'sdss', 'broad' or a folder from galdust "
                        f"calibrate-population)")
    pop = Population.load(prior)
    if (pop.simulator == "images") != images:
        raise UserError(f"{prior}: a population of the {'image' if pop.simulator == 'images' else 'photometric'} "
                        f"simulator; " + ("use it with --images" if not images else
                                          "--images needs one from galdust calibrate-population --images"))
    return pop


@app.command("calibrate-population")
def calibrate_population(
    real: Annotated[Path, typer.Option("--real", help="Real SDSS table (MODELFLUX, MODELFLUX_IVAR, EXTINCTION, Z).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (classifiers + population.json).")],
    n: Annotated[int, typer.Option("--n", min=1000, help="Broad-prior galaxies simulated to calibrate.")] = 200_000,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Zero-point fits alternated with reweighting.")] = 3,
    iterations: Annotated[int, typer.Option("--iterations", min=1, help="Reweighting updates per round.")] = 6,
    nuv_max: Annotated[float, typer.Option("--nuv-max", min=0.0, max=2.0, help="Range [mag] of the near-UV "
                                                                              "correction of old stars the broad "
                                                                              "prior draws (0: none).")] = 0.6,
    z0: Annotated[float, typer.Option("--z0", min=0.01, max=1.0,
                                      help="Scale of the broad prior's redshift distribution, "
                                           "p(z) ∝ z² exp(-(z/z0)^1.5) (the simulator's own: 0.065).")] = 0.1,
    z_max: Annotated[float, typer.Option("--z-max", min=0.05, max=1.5,
                                         help="Largest redshift the broad prior draws (the simulator's own: "
                                              "0.3).")] = 0.45,
    holdout: Annotated[float, typer.Option("--holdout", min=0.0, max=0.9, help="Fraction of the real rows kept out "
                                                                                "of the fit (their indices go to "
                                                                                "the sidecar, for an honest "
                                                                                "two-sample test).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the simulation and the classifiers.")] = 0,
    images: Annotated[bool, typer.Option("--images", help="Calibrate the bulge + disk image simulator "
                                                          "(simulate-sed --images) instead of the photometric one: "
                                                          "its photometry, with B/T, the bulge's age and the "
                                                          "inclination among the weighted parameters.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
):
    """Calibrate the simulator's galaxy population to real photometry: weights on the simulator's
    parameters (iterative classifier reweighting) and per-band zero-points, so that simulated
    magnitudes, colours, S/N and redshifts match the real table's. Writes the folder simulate-sed
    --prior reads."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ..physics import sps as S
    from ..posterior.data import SDSS_BANDS, read_catalog
    from ..simulate.population import calibrate, image_theta_features, observed_features, theta_features
    from ..simulate.sed import SEDConfig, _draw, add_noise

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    cat = read_catalog(real)
    if "z" not in cat.truth:
        raise UserError(f"{real}: no Z column (spectroscopic redshifts) to calibrate against")
    X = observed_features(cat.flux, cat.flux_err, cat.truth["z"])
    rows = np.nonzero(np.isfinite(X).all(axis=1))[0]
    if len(rows) < 100:
        raise UserError(f"{real}: {len(rows)} usable rows; at least 100 are needed")
    perm = np.random.default_rng(seed).permutation(rows)
    n_out = int(round(holdout * len(rows)))
    held, fit_rows = np.sort(perm[:n_out]), np.sort(perm[n_out:])
    cfg = SEDConfig(bands=SDSS_BANDS, nuv_max=nuv_max, z0=z0, z_range=(SEDConfig().z_range[0], z_max))
    grid = S.load_sps()
    t0 = time.perf_counter()
    kp, kn = jax.random.split(jax.random.PRNGKey(seed))
    if images:
        from ..simulate.sed_images import ImageConfig, draw_components

        params, truths = draw_components(kp, n, cfg, grid, S.filter_set(ImageConfig().image_bands),
                                         S.filter_set(cfg.bands), 1024)
        theta = image_theta_features(params, truths)
    else:
        params, truths = _draw(kp, n, cfg, grid, S.filter_set(cfg.bands), 4096)
        theta = theta_features(params, truths)
    typer.echo(f"simulated {n} broad-prior {'bulge + disk ' if images else ''}galaxies in "
               f"{time.perf_counter() - t0:.0f} s; fitting to "
               f"{len(fit_rows)} real rows ({len(held)} held out)")

    def noise(flux):
        a, b = add_noise(kn, jnp.asarray(flux), cfg.bands, cfg)
        return np.asarray(a), np.asarray(b)

    from ..ml.trees import FitCache

    cache = FitCache(f"{out}.ckpt-trees")  # killed and run again, the calibration reads back its classifiers
    pop, hist = calibrate(theta, truths["flux"], noise, params["z"], X[fit_rows], rounds=rounds,
                          iterations=iterations, seed=seed, log=typer.echo, cache=cache,
                          simulator="images" if images else "sed")
    if len(held):
        from ..simulate.population import c2st_auc

        last = pop.meta["_last"]
        sel = last["selected"]
        w = np.exp(np.minimum(last["log_weight"][sel], pop.log_w_max))
        pop.meta["c2st_heldout"] = c2st_auc(last["X"][sel], w, X[held], seed=seed)
        pop.meta["c2st_heldout_broad"] = c2st_auc(last["X"][sel], None, X[held], seed=seed)
        typer.echo(f"C2ST AUC on the {len(held)} held-out real rows: {pop.meta['c2st_heldout']:.3f} "
                   f"(broad prior: {pop.meta['c2st_heldout_broad']:.3f})")
    import sys

    pop.meta.update(name=out.name, command="galdust " + " ".join(sys.argv[1:]), real=str(real), n_real_fit=int(len(fit_rows)), heldout_rows=held.tolist(),
                    n_broad=n, nuv_max=nuv_max, z0=z0, z_max=z_max, seed=seed, rounds=rounds, iterations=iterations,
                    history=hist, train_seconds=round(time.perf_counter() - t0, 1))
    pop.save(out, overwrite)
    cache.clear()
    typer.echo(f"-> {out} (zero-points {pop.zeropoints}; acceptance of the broad prior "
               f"{np.exp(-pop.log_w_max):.3f} or more)")


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
    from ..priors.train import train

    if kind not in ("dust", "host"):
        raise UserError(f"unknown prior kind {kind!r} (use 'dust' or 'host')")
    if not data.exists():
        raise UserError(f"{data}: no such file")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    try:
        train(kind, data, steps, out, seed=seed, batch=batch, lr=lr, ckpt_every=ckpt_every, n_val=n_val,
              max_minutes=max_minutes)
    except (KeyError, ValueError, EOFError, OSError, zipfile.BadZipFile) as e:  # a bad or empty store
        raise UserError(f"{data}: cannot read the store ({_one_line(e) or type(e).__name__})") from None


@app.command("models")
def models():
    """List the shipped models: name, kind, size and the headline metrics their sidecars record."""
    from ..models import SHIPPED, describe

    for name in SHIPPED:
        d = describe(name)
        size = "missing" if d["bytes"] is None else f"{d['bytes'] / 1e6:.1f} MB"
        mets = ", ".join(f"{k} {v:.4g}" if isinstance(v, (int, float)) else f"{k} {v}"
                         for k, v in d["metrics"].items() if v is not None)
        typer.echo(f"{name:15s} {d['kind']:12s} {size:>9s}  {d['what']}" + (f"  [{mets}]" if mets else "")
                   + (f"  ({d['error']})" if d.get("error") else ""))
