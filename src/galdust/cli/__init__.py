"""``galdust`` command line: thin commands over the library, one module per command group.

User errors (bad input files, existing outputs, mistyped options) print one line
``galdust: error: ...`` on stderr and exit with a non-zero status, without a traceback.

Modules: :mod:`._app` (the Typer app), :mod:`.simulate`, :mod:`.fit`, :mod:`.evaluate`, :mod:`.fir`,
:mod:`.posterior`, :mod:`.run`, :mod:`.demo`; each command parses options and calls the library
(:mod:`galdust.dust.api`, :mod:`galdust.posterior.api`, ...).
"""

from __future__ import annotations

import sys

import typer

from . import demo, evaluate, fir, fit, posterior, run, simulate, train  # noqa: F401 - registers the commands
from ._app import UserError, _one_line, app
from .fir import fir_train  # noqa: F401 - re-exported
from .posterior import DEFAULT_POSTERIOR, NAMED_POSTERIORS  # noqa: F401 - re-exported

__all__ = ["app", "main", "UserError"]


def _click_error(e: BaseException) -> tuple[str, int] | None:
    """(one line, exit status) of a command-line usage error from click or typer's vendored click."""
    if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
        return None
    msg = " ".join(str(e.format_message()).split())
    ctx = getattr(e, "ctx", None)
    cmd = getattr(ctx, "command_path", None) or "galdust"
    hint = f" (see '{cmd} --help')" if type(e).__name__ != "ClickException" else ""
    return f"galdust: error: {cmd}: {msg}{hint}", int(e.exit_code)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """galdust's own warnings (a NaN patch masked, noise estimated from the background) as one line
    ``galdust: warning: ...`` on stderr; other packages' warnings as Python shows them."""
    import os
    import warnings

    if issubclass(category, UserWarning) and f"{os.sep}galdust{os.sep}" in str(filename):
        typer.echo(f"galdust: warning: {_one_line(message)}", err=True)
    else:
        warnings._showwarning_orig(message, category, filename, lineno, file, line)  # noqa: SLF001


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors print one line on stderr, never a traceback (set
    ``GALDUST_DEBUG=1`` to see the traceback of an unexpected error)."""
    import os

    # xgboost's OpenMP threads spin while they wait: on a shared 2-core machine (Dask workers, JAX) a
    # quantile CV took 80x its CPU time; passive waiting costs nothing alone (set before xgboost loads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _use_xla_cache(os.environ)
    from ..io import InputError, OutputExistsError
    from ..physics.filters import UnknownBandError
    from ..weights import WeightsError

    import warnings

    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            rv = app(args=argv, standalone_mode=False)
    except (UserError, InputError, OutputExistsError, UnknownBandError, WeightsError) as e:
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


def xla_cache_dir(environ) -> str | None:
    """Where ``galdust`` commands keep compiled XLA programs: ``$XDG_CACHE_HOME/galdust/xla`` (default
    ``~/.cache/galdust/xla``); None when ``GALDUST_XLA_CACHE`` is ``off``/``0``/``no`` or the user chose
    a folder with ``JAX_COMPILATION_CACHE_DIR`` (JAX uses theirs)."""
    from ..io import cache_dir

    if environ.get("JAX_COMPILATION_CACHE_DIR") or environ.get("GALDUST_XLA_CACHE", "").lower() in ("off", "0", "no"):
        return None
    return str(cache_dir(environ) / "xla")


def _use_xla_cache(environ) -> None:
    """A persistent XLA compilation cache for this command and the processes it starts (Dask workers read
    the variable): the programs a command compiles (a 64×64 griz fit: ~2 s of a 7 s `galdust fit` of two
    galaxies) are read back by the next command instead of compiled again. JAX keeps programs that took
    ≥ 1 s to compile (a fit's: a few hundred kB); an entry that another process is still writing does not
    decompress, and JAX then warns and compiles the program."""
    import os

    d = xla_cache_dir(environ)
    if d is None:
        return
    try:
        os.makedirs(d, exist_ok=True)
    except OSError:  # a read-only home: no cache, and no warning from JAX on every compilation
        return
    environ["JAX_COMPILATION_CACHE_DIR"] = d
    import jax

    jax.config.update("jax_compilation_cache_dir", d)


def _entry() -> None:  # console script
    sys.exit(main())
