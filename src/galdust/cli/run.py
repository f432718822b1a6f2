"""``galdust run``: the jobs over many inputs on Dask (:mod:`galdust.pipeline`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import UserError, app
from .posterior import NAMED_POSTERIORS


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
    out: Annotated[Path, typer.Option("--out", help="Run folder (new or an earlier run's): outputs, catalog.parquet, "
                                                    "run state.")],
    inputs: Annotated[Optional[list[str]], typer.Option("--inputs", help="Glob pattern (quote it), repeatable: fit: cube "
                                                                         "FITS files; fir-map: folders of band images, "
                                                                         "one per galaxy; posterior: tables.")] = None,
    catalog: Annotated[Optional[Path], typer.Option("--catalog", help="fit: table (CSV/FITS/Parquet) with 'path' (and "
                                                                      "'name'; 'redshift': dust in the rest frame); fir-map: one row per galaxy with 'name', "
                                                                      "'images' (';'-separated) or 'path' (folder), "
                                                                      "'distance' [Mpc]; posterior: the photometry "
                                                                      "table itself, one object per row.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Local worker processes (default: "
                                                                            "one per core, one thread each, no more "
                                                                            "than there are batches to run).")] = None,
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
    host: Annotated[str, typer.Option("--host", help="fit: host model, as in galdust fit ('auto': 'clumps', or "
                                            "'single' with --dust-level gauge; 'clumps', 'single', 'bulge-disk', "
                                            "'nucleus', 'bulge-disk-nucleus', 'bulge-disk-clumps').")] = "auto",
    method: Annotated[str, typer.Option("--method", help="fit: 'map' or 'amortized' (one network pass), as in "
                                                         "galdust fit.")] = "map",
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
    redshift_column: Annotated[Optional[str], typer.Option("--redshift-column", help="posterior: column of known "
                                                                                     "(spectroscopic) redshifts; the "
                                                                                     "properties at that z (as "
                                                                                     "galdust posterior "
                                                                                     "sample).")] = None,
    photo_z: Annotated[bool, typer.Option("--photo-z", help="posterior: infer z from the photometry even when every "
                                                            "SDSS table has spectroscopic redshifts (Z), as "
                                                            "galdust posterior sample.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar (batch systems); summary only.")] = False,
):
    """Run a job over many inputs on Dask: resumable (re-run the same command), one row per input in
    OUT/catalog.parquet, bad inputs recorded as error rows while the run goes on."""
    from ..dust.fit import level_config
    from ..dust.init import choose_start
    from ..pipeline.runner import (LOCAL_NO_WORKER_TIMEOUT, ClusterLost, RunError, cpu_cores, local_cluster,
                                   prepare_out, run)
    from ..pipeline.tasks import TASKS

    if not inputs and catalog is None:
        raise UserError("give --inputs 'GLOB' or --catalog TABLE")
    if task not in TASKS:
        raise UserError(f"unknown task {task!r} (available: {', '.join(TASKS)})")
    opts = {"fit": dict(max_iter=max_iter, priors=not no_priors, start=start, use_psf=not no_psf,
                        detect=not no_detect, plot=plot, dust_level=dust_level, host=host, method=method),
            "fir-map": dict(model=str(model.resolve()) if model else None, detect=not no_detect, plot=plot,
                            exact=exact),
            "posterior": dict(model=str(model.resolve()) if model else None, samples=samples, steps=steps,
                              seed=seed, save_samples=save_samples, redshift_column=redshift_column)}[task]
    if (redshift_column is not None or photo_z) and task != "posterior":
        raise UserError("--redshift-column and --photo-z are for galdust run posterior")
    if task == "posterior":  # the model galdust posterior sample would use (the same default per table)
        from ..posterior.api import check_photo_z, default_redshift_column, resolve_model

        check_photo_z(photo_z, model, redshift_column)

        if model is not None and str(model) in NAMED_POSTERIORS:
            model = NAMED_POSTERIORS[str(model)]
        elif model is None:  # the default of the tables, as galdust posterior sample resolves it
            import glob

            tables = ([catalog] if catalog is not None else []) + sorted(
                {f for pat in inputs or [] for f in glob.glob(pat, recursive=True)})
            if redshift_column is None and not photo_z:
                redshift_column = default_redshift_column(tables)  # SDSS tables whose every row has Z
                if redshift_column is not None:
                    opts["redshift_column"] = redshift_column
                    typer.echo(f"every row has a spectroscopic redshift ({redshift_column}); the properties are "
                               f"those at it (--photo-z: infer z from the photometry)", err=True)
            first = tables[0] if tables else None
            if first is not None or redshift_column is not None:
                model = NAMED_POSTERIORS[resolve_model(None, first, known_z=redshift_column is not None).label]
        opts["model"] = str(Path(model).resolve()) if model is not None else None
    if batch_size:
        opts["batch_size"] = batch_size
    try:
        if task == "fit":
            choose_start([1.0], start)
            level_config(dust_level)  # a one-line error before the cluster starts
            from ..dust.fit import resolve_host

            resolve_host(host, dust_level)  # ValueError for an unknown host model
            from ..dust.api import check_method

            check_method(method, level=dust_level, max_iter=max_iter, start=start, host=host, priors=not no_priors,
                         use_psf=not no_psf)
        if model is not None and not Path(model).exists():
            raise ValueError(f"{model}: no such model")
        job = TASKS[task](**opts)
        items = job.discover(inputs or [], catalog)
        prepare_out(out, job)
    except (RunError, ValueError) as e:
        raise UserError(str(e)) from None
    from distributed import Client

    opened = []  # the client, then the local cluster it runs on: closed in that order

    def connect(n_batches: int):  # only when some input is left to run (a finished run re-run starts no cluster)
        if scheduler:
            opened.append(Client(scheduler))
        else:  # one worker per core, but no more than there are batches (each worker compiles its own)
            opened.append(local_cluster(workers or min(n_batches, cpu_cores())))
            opened.insert(0, Client(opened[0]))
        return opened[0]

    upd, close = _run_progress(quiet)
    try:
        s = run(job, items, out, connect, retry_errors=retry_errors, progress=upd,
                no_worker_timeout=None if scheduler else LOCAL_NO_WORKER_TIMEOUT)
    except ClusterLost as e:
        raise UserError(f"{out}: {e}") from None
    finally:
        close()
        for r in opened:
            r.close()
    typer.echo(f"{task}: {s.ok} ok, {s.errors} errors, {s.skipped} already done, of {s.total} inputs in "
               f"{s.wall_s:.1f} s ({s.rate:.2f} objects/s) -> {s.catalog}"
               + (f"; {s.earlier_errors} earlier error rows kept (--retry-errors re-attempts them)"
                  if s.earlier_errors else ""))
    shown = 10  # which inputs failed and why (all of them are in the catalogue's 'error' column)
    for name, src, msg in s.error_rows[:shown]:
        where = f"{name}: " if str(msg).startswith(str(src)) else f"{name} ({src}): "  # the path once
        typer.echo(f"galdust: error: {where}{msg}", err=True)
    if len(s.error_rows) > shown:
        typer.echo(f"galdust: ... and {len(s.error_rows) - shown} more error rows in {s.catalog}", err=True)
    return 1 if s.errors else 0
