"""The dust fit as a library call: the one place where user options become a fitter and work.

``galdust fit``, ``galdust evaluate dust`` and ``galdust run fit`` call these functions, so the
same options give the same fit everywhere::

    import galdust
    fitter = galdust.make_fitter(level="shrink")            # the defaults of `galdust fit`
    report = galdust.fit_files(["galaxy.fits"], "fits/")     # NAME.dust.fits + NAME.json per input
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import InputError, Observation, read_observation
from .fit import DEFAULT_HOST, DUST_LEVELS, FitConfig, level_config, resolve_host
from .init import AUTO_AMORTIZED, choose_start
from .job import DustFitter, DustResult

__all__ = ["METHODS", "check_method", "make_fitter", "fit_config", "fit", "fit_files", "FitReport", "DUST_LEVELS"]


def fit_config(level: str = "shrink", max_iter: int | None = None, priors: bool = True,
               host: str = DEFAULT_HOST) -> FitConfig:
    """The :class:`FitConfig` of a dust level ('shrink' or 'gauge'); ``max_iter`` None keeps the level's
    default (300 shrink, 1000 gauge); the gauge level never uses the learned priors; ``host`` 'auto' is
    the level's host model (:func:`~galdust.dust.fit.resolve_host`). ValueError for an unknown level or host."""
    cfg = level_config(level)
    return dataclasses.replace(cfg, max_iter=max_iter or cfg.max_iter,
                               use_priors=bool(priors) and level != "gauge", host=resolve_host(host, level))


#: ``galdust fit --method``: 'map' (the iterative fit under the priors) or 'amortized' (one network pass)
METHODS = ("map", "amortized")


def check_method(method: str, *, level: str = "shrink", max_iter: int | None = None, start: str = "auto",
                 host: str = DEFAULT_HOST, priors: bool = True, use_psf: bool = True) -> None:
    """ValueError (one line) for an unknown ``--method`` or MAP-only options given to the amortised one
    (``--no-psf`` too: the MAP fit's convolution; the network reads the PSF's FWHM and was trained with it)."""
    if method not in METHODS:
        raise ValueError(f"unknown --method {method!r} ({', '.join(METHODS)})")
    if method == "amortized":
        given = [name for name, v, d in (("--dust-level", level, "shrink"), ("--max-iter", max_iter, None),
                                          ("--start", start, "auto"), ("--host", host, DEFAULT_HOST),
                                          ("--no-priors", not priors, False), ("--no-psf", not use_psf, False))
                 if v != d]
        if given:
            raise ValueError(f"{', '.join(given)}: only for --method map (the amortised network has no such setting)")


def make_fitter(level: str = "shrink", max_iter: int | None = None, priors: bool = True, start: str = "auto",
                use_psf: bool = True, detect: bool = True, batch_size: int = 8, host: str = DEFAULT_HOST,
                method: str = "map", model: str | Path | None = None):
    """A fitter with ``galdust fit``'s options (same names, same defaults): a :class:`DustFitter`
    (``method='map'``) or an :class:`~galdust.dust.amortized.AmortizedFitter` (``'amortized'``, the
    shipped network or the file ``model``; the MAP-only options must keep their defaults).

    The learned priors (HSC host prior, conditional dust prior) are loaded when the configuration
    uses them."""
    check_method(method, level=level, max_iter=max_iter, start=start, host=host, priors=priors, use_psf=use_psf)
    if method == "amortized":
        from .amortized import AmortizedFitter

        # a network pass is cheap: batches of at least 64 (fewer inputs are not padded up to it)
        return AmortizedFitter.load(model, batch_size=max(batch_size, 64), detect=detect)
    if model is not None:
        raise ValueError("--model: only for --method amortized")
    choose_start([1.0], start)  # ValueError for an unknown start, before anything is loaded
    cfg = fit_config(level, max_iter, priors, host)
    kw = dict(cfg=cfg, start=start, use_psf=use_psf, batch_size=batch_size, detect=detect)
    if start == "amortized" or (start == "auto" and AUTO_AMORTIZED):
        from .amortized import AmortizedFitter

        kw["init_net"] = AmortizedFitter.load(batch_size=batch_size, detect=detect)
    return DustFitter.with_priors(**kw) if cfg.use_priors else DustFitter(**kw)


def fit(observations, *, mask: np.ndarray | None = None, **fitter_options):
    """Fit one observation (an :class:`~galdust.io.Observation` or a file path) or a list of them with
    ``galdust fit``'s defaults (``fitter_options``: see :func:`make_fitter`); returns a
    :class:`DustResult` (or a list), raising the first input's error."""
    single = isinstance(observations, (Observation, str, Path))
    items = [observations] if single else list(observations)
    obs = [o if isinstance(o, Observation) else read_observation(o) for o in items]
    fitter_options.setdefault("batch_size", min(8, len(obs)))
    results = make_fitter(**fitter_options).fit(obs, [mask] * len(obs))
    for r in results:
        if isinstance(r, Exception):
            raise r
    return results[0] if single else results


@dataclass
class FitReport:
    """What :func:`fit_files` did: one entry per written object, one per failed input."""

    written: list[tuple[str, DustResult, dict]] = field(default_factory=list)  # (name, result, paths)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input, one-line message)
    seconds: float = 0.0


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def claim_outputs(path, out, claimed: dict, *, plot: bool = False, overwrite: bool = False) -> str:
    """The output name of input ``path``, recorded in ``claimed`` (name -> input); InputError when an
    earlier input of this command has that name (it would replace the earlier outputs) or when the
    outputs exist without ``overwrite``."""
    from ..io import input_name
    from .products import check_free, output_paths

    name = input_name(path)
    if name in claimed:
        raise InputError(f"{path}: its outputs ({name}.dust.fits, ...) would be those of {claimed[name]} "
                         f"(rename one, or fit them into different --out folders)")
    check_free(list(output_paths(out, name).values())[: 3 if plot else 2], overwrite)
    claimed[name] = path
    return name


def fit_files(inputs: Sequence[str | Sequence[str]], out: str | Path, *, fitter: DustFitter | None = None,
              bands: Sequence[str] | None = None, mask: np.ndarray | None = None, overwrite: bool = False,
              plot: bool = False, progress: Callable | None = None, read_options: dict | None = None,
              **fitter_options) -> FitReport:
    """Fit each input (a cube FITS path, or with ``bands`` a list of per-band files) and write
    ``NAME.dust.fits`` and ``NAME.json`` (and ``NAME.png`` with ``plot``) into ``out``.

    A failing input is reported in :attr:`FitReport.failures` and the others go on; nothing is
    half-written (outputs are atomic and checked before the fit). ``read_options`` go to
    :func:`galdust.io.read_observation` (``noise_hdu``, ``noise_kind``, ``mask_hdu``, ``psf``);
    ``fitter_options`` to :func:`make_fitter` when no ``fitter`` is given."""
    import time

    from .products import output_paths, plot_fit, write_dust_fits, write_json

    report = FitReport()
    if Path(out).exists() and not Path(out).is_dir():
        raise InputError(f"{out}: --out is a file, not a folder")
    obs_list, names, first = [], [], {}
    for inp in inputs:
        files = [inp] if isinstance(inp, (str, Path)) else list(inp)
        try:
            obs = read_observation(files, bands, **(read_options or {}))
            name = claim_outputs(files[0], out, first, plot=plot, overwrite=overwrite)
            obs_list.append(obs)
            names.append(name)
        except Exception as e:  # noqa: BLE001 - reported, the others go on
            report.failures.append((",".join(map(str, files)), _one_line(e)))
    if not obs_list:
        return report
    if fitter is None:
        fitter_options.setdefault("batch_size", min(8, len(obs_list)))
        fitter = make_fitter(**fitter_options)
    t0 = time.perf_counter()
    results = fitter.fit(obs_list, [mask] * len(obs_list), progress=progress)
    report.seconds = time.perf_counter() - t0
    for obs, name, res in zip(obs_list, names, results):
        if isinstance(res, Exception):
            report.failures.append((obs.source, _one_line(res)))
            continue
        paths = output_paths(out, name)
        try:
            write_dust_fits(paths["fits"], res, obs, overwrite=overwrite)
            write_json(paths["json"], res, obs, overwrite=overwrite)
            if plot:
                plot_fit(paths["png"], res, obs, overwrite=overwrite)
        except Exception as e:  # noqa: BLE001
            report.failures.append((obs.source, _one_line(e)))
            continue
        report.written.append((name, res, paths))
    return report
