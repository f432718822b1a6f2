"""``galdust train amortized``: the amortised dust network (resumable, checkpoints)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import UserError, app

train_app = typer.Typer(help="Train networks on simulations (resumable).", no_args_is_help=True)
app.add_typer(train_app, name="train")


#: the default peak learning rate of a fine-tuning (--init): at 1e-3 the shipped network's validation
#: NLL got worse within 3 steps; its own fine-tuning (session 30) used 3e-4
FINE_TUNE_LR = 3e-4


@train_app.command("amortized")
def train_amortized_cmd(
    data: Annotated[list[Path], typer.Option("--data", help="Bulk stores from 'galdust simulate --bulk --with-cubes "
                                                            "--snr 0' holding the model's bands (repeatable).")],
    out: Annotated[Path, typer.Option("--out", help="Weights file to write (.eqx) + JSON sidecar.")],
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps (fixes the schedule).")] = 6000,
    batch: Annotated[int, typer.Option(min=1, help="Batch size.")] = 32,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (warm-up + cosine); default 1e-3, and "
                                                     "3e-4 with --init (1e-3 damages a trained network within a "
                                                     "few steps).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, batches, noise and band sets.")] = 0,
    n_val: Annotated[int, typer.Option("--n-val", min=1, help="Galaxies held out for validation.")] = 512,
    ckpt_every: Annotated[int, typer.Option(min=1, help="Checkpoint + validation every N steps.")] = 250,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop with a checkpoint after this wall time "
                                                              "(rerun the command to resume).")] = None,
    calibrate: Annotated[Optional[list[Path]], typer.Option("--calibrate", help="Held-out stores (as --data, other "
                                                                        "seeds) on which each σ is calibrated to 68 % "
                                                                        "coverage, by σ and per band set "
                                                                        "(repeatable).")] = None,
    init: Annotated[Optional[Path], typer.Option("--init", help="Start from these weights (fine-tuning).")] = None,
    beta_nll: Annotated[float, typer.Option("--beta-nll", min=0.0, max=1.0, help="β of the β-NLL loss (0: the "
                                            "Gaussian NLL; 0.5 lets the mean learn where σ is large).")] = 0.0,
    band_sets: Annotated[Optional[str], typer.Option("--band-sets", help="Band sets to train for, ';'-separated, "
                                                     "each comma-separated bands (default: SDSS griz, griz+2MASS J, "
                                                     "ugriz, ugriz+2MASS JH, HSC grizy, LSST ugrizy, HSC and LSST "
                                                     "+ Euclid YJH).")] = None,
    band_dropout: Annotated[Optional[float], typer.Option("--band-dropout", min=0.0, max=0.9, help="Drop each band "
                                                          "of a drawn set with this probability (3 bands at least "
                                                          "kept), so that the network serves subsets of its band "
                                                          "sets too (default 0: whole sets only).")] = None,
    psf_input: Annotated[bool, typer.Option("--psf-input", help="Give the network each band's PSF FWHM as an input "
                                            "channel (train on stores simulated with several --psf-fwhm).")] = False,
    z_input: Annotated[bool, typer.Option("--z-input", help="Give the network the galaxy's redshift as an input "
                                          "channel: it learns rest-frame dust (train on stores simulated with "
                                          "--dust-frame rest and a --z-range).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing weights.")] = False,
):
    """Train the amortised dust-map network (Gaussian NLL; noise, band set and orientation drawn per step)."""
    from ..dust.amortized import train_amortized

    out = out.with_suffix(".eqx")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    for p in list(data) + list(calibrate or []) + ([init] if init else []):
        if not p.exists():
            raise UserError(f"{p}: no such file")
    lr = lr if lr is not None else (FINE_TUNE_LR if init is not None else 1e-3)
    config = {"beta_nll": beta_nll} if beta_nll else {}
    if band_dropout:
        config["band_dropout"] = band_dropout
    if psf_input:
        config["psf_input"] = True
    if z_input:
        config["z_input"] = True
    if band_sets is not None:
        sets = [[b.strip().lower().replace("-", "_") for b in part.split(",") if b.strip()]
                for part in band_sets.split(";") if part.strip()]
        if not sets:
            raise UserError(f"--band-sets {band_sets!r}: no bands")
        from ..physics.filters import UnknownBandError, get_filter

        try:
            for b in {b for s in sets for b in s}:
                get_filter(b)
        except UnknownBandError as e:  # its message lists close matches
            raise UserError(f"--band-sets: {e}") from None
        config["band_sets"] = sets
    try:
        side = train_amortized(data, out, steps=steps, batch=batch, lr=lr, seed=seed, n_val=n_val,
                               ckpt_every=ckpt_every, max_minutes=max_minutes, calibrate=calibrate or (),
                               init=init, config=config or None)
    except ValueError as e:
        raise UserError(str(e)) from None
    if "stopped_at" in side:
        typer.echo(f"stopped at step {side['stopped_at']} of {steps}; rerun the same command to resume")
    else:
        typer.echo(f"done: {out} (val NLL {side['metrics']['val_nll']:.4f})")


@train_app.command("recalibrate")
def recalibrate_cmd(
    model: Annotated[Path, typer.Option("--model", help="A trained amortised network (.eqx + sidecar).")],
    calibrate: Annotated[list[Path], typer.Option("--calibrate", help="Held-out stores (as for 'galdust train "
                                                                     "amortized --calibrate'; repeatable).")],
    out: Annotated[Path, typer.Option("--out", help="Weights file to write (.eqx) + JSON sidecar: the same "
                                                    "weights, the σ calibrated anew.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing weights.")] = False,
):
    """Calibrate a trained amortised network's σ anew (every stage of this galdust: band set, PSF, S/N,
    predicted dust), without training; the old calibration is kept in the sidecar's record."""
    from ..dust.amortized import recalibrate_amortized

    out = out.with_suffix(".eqx")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    for p in [model] + list(calibrate):
        if not p.exists():
            raise UserError(f"{p}: no such file")
    command = " ".join(["galdust train recalibrate --model", model.name] + [f"--calibrate {p.name}" for p in calibrate]
                       + ["--out", out.name])  # as the sidecar's other commands: file names, no folders
    try:
        recalibrate_amortized(model, calibrate, out, command=command, log=typer.echo)
    except ValueError as e:
        raise UserError(str(e)) from None
