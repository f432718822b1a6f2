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
    snr: Annotated[float, typer.Option(help="Per-band matched-filter S/N; 0 for noiseless.")] = 50.0,
    seed: Annotated[int, typer.Option(help="Random seed (deterministic output).")] = 0,
    psf_fwhm: Annotated[float, typer.Option(help="Gaussian PSF FWHM in pixels; 0 for none.")] = 2.0,
    isochromatic: Annotated[bool, typer.Option("--isochromatic", help="One SED for bulge, disk and clumps.")] = False,
    n_los: Annotated[int, typer.Option(help="Samples along each line of sight.")] = 32,
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
                    snr=snr or None, isochromatic=isochromatic)
    if bulk and out.suffix != ".npz":
        out = out.with_suffix(".npz")
    target = out if bulk else out / "truth.parquet"
    if target.exists() and not overwrite:
        raise UserError(f"{target}: exists (use --overwrite to replace it)")
    t0 = time.perf_counter()
    upd, close = _progress(n, "simulating", quiet)
    try:
        sim = run_sim(jax.random.PRNGKey(seed), n, cfg, batch=min(batch, n), progress=upd)
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
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("demo_out"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
):
    """Run the main job on the embedded default input and write its outputs."""
    out.mkdir(parents=True, exist_ok=True)
    simulate(out=out / "simulated", n=8, seed=42, plot=True, overwrite=overwrite, bands="sdss_g,sdss_r,sdss_i,sdss_z",
             size=64, snr=50.0, psf_fwhm=2.0, isochromatic=False, n_los=32, bulk=False, with_cubes=False, batch=8,
             quiet=True)
    typer.echo(f"demo: simulated dusty galaxies and their figure in {out / 'simulated'}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    from .io import InputError, OutputExistsError
    from .physics.filters import UnknownBandError

    try:
        app(args=argv, standalone_mode=False)
    except (UserError, InputError, OutputExistsError, UnknownBandError) as e:
        typer.echo(f"galdust: error: {e}", err=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("galdust: interrupted", err=True)
        return 130
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return e.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _entry() -> None:  # console script
    sys.exit(main())
