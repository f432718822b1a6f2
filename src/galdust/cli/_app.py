"""The ``galdust`` Typer application and what every command group shares.

User errors (bad input files, existing outputs) print one line ``galdust: error: ...`` on stderr
and exit with status 2, without a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from .. import __version__

app = typer.Typer(
    name="galdust",
    help="Recover what dust hides in galaxies from multi-band images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain text: units such as [arcsec] and [deg] must show
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
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Threads of the tree models (FIR, "
                                                   "redshift, population); default: GALDUST_THREADS, else the cores "
                                                   "this process may use.")] = None,
):
    """galdust: dust maps, far-infrared dust properties and galaxy posteriors from images."""
    if threads is not None:  # read by galdust.ml.trees.n_threads (and inherited by local Dask workers)
        os.environ["GALDUST_THREADS"] = str(threads)


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


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _csv_list(text: str, kind=str) -> list:
    return [kind(x.strip()) for x in text.split(",") if x.strip()]
