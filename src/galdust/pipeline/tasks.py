"""The jobs ``galdust run`` can spread over a Dask cluster.

A task is a small frozen dataclass (shipped to the workers by pickling its options, never its
models) with

* ``fields``: the summary columns it adds to the catalogue (name, arrow type);
* ``outputs(out, name)``: the files one object produces (the ones a single-object command writes);
* ``run_batch(items, out)``: process a list of ``(name, input)`` on a worker and return one row dict
  per item (``status`` ``ok`` or ``error``), after writing each object's outputs atomically.

Heavy state (priors, compiled functions) is built once per worker process by a cached constructor.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

__all__ = ["FitTask", "TASKS", "get_task"]


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


@functools.lru_cache(maxsize=4)
def _dust_fitter(max_iter: int, priors: bool, start: str, use_psf: bool, detect: bool, batch_size: int):
    """One fitter per worker process and option set (loads the priors once)."""
    import dataclasses

    from ..dust.fit import FitConfig
    from ..dust.job import DustFitter

    cfg = dataclasses.replace(FitConfig(), max_iter=max_iter, use_priors=priors)
    kw = dict(cfg=cfg, start=start, use_psf=use_psf, batch_size=batch_size, detect=detect)
    return DustFitter.with_priors(**kw) if priors else DustFitter(**kw)


@dataclass(frozen=True)
class FitTask:
    """``galdust fit`` per object: NAME.dust.fits + NAME.json (+ NAME.png with ``plot``)."""

    max_iter: int = 300
    priors: bool = True
    start: str = "auto"
    use_psf: bool = True
    detect: bool = True
    plot: bool = False
    batch_size: int = 8

    name = "fit"
    fields = [("av_lw", pa.float64()), ("delta", pa.float64()), ("covfrac", pa.float64()),
              ("chi2", pa.float64()), ("chi2nd", pa.float64()), ("niter", pa.int64()),
              ("converged", pa.bool_()), ("start", pa.string())]

    def options(self) -> dict:
        return dict(max_iter=self.max_iter, priors=self.priors, start=self.start, use_psf=self.use_psf,
                    detect=self.detect, plot=self.plot)

    def outputs(self, out: Path, name: str) -> list[Path]:
        from ..dust.products import output_paths

        p = output_paths(out, name)
        return [p["fits"], p["json"]] + ([p["png"]] if self.plot else [])

    def run_batch(self, items: list[tuple[str, str]], out: Path) -> list[dict]:
        from ..dust.products import output_paths, plot_fit, write_dust_fits, write_json
        from ..io import read_observation

        t0 = time.perf_counter()
        rows: dict[int, dict] = {}
        obs, where = [], []
        for k, (name, inp) in enumerate(items):
            try:
                obs.append(read_observation([inp]))
                where.append(k)
            except Exception as e:  # noqa: BLE001 - an error row, the batch goes on
                rows[k] = dict(status="error", error=_one_line(e))
        if obs:
            fitter = _dust_fitter(self.max_iter, self.priors, self.start, self.use_psf, self.detect,
                                  self.batch_size)
            results = fitter.fit(obs)
            for k, o, res in zip(where, obs, results):
                if isinstance(res, Exception):
                    rows[k] = dict(status="error", error=_one_line(res))
                    continue
                paths = output_paths(out, items[k][0])
                try:  # the run owns its folder: an object without a row is redone and replaced
                    write_dust_fits(paths["fits"], res, o, overwrite=True)
                    write_json(paths["json"], res, o, overwrite=True)
                    if self.plot:
                        plot_fit(paths["png"], res, o, overwrite=True)
                except Exception as e:  # noqa: BLE001
                    rows[k] = dict(status="error", error=_one_line(e))
                    continue
                s = res.scalars
                rows[k] = dict(status="ok", error=None, av_lw=s["AV_LW"], delta=s["DELTA"], covfrac=s["COVFRAC"],
                               chi2=s["CHI2"], chi2nd=s["CHI2ND"], niter=s["NITER"], converged=s["CONVERGE"],
                               start=s["START"])
        dt = (time.perf_counter() - t0) / len(items)
        return [dict(rows[k], name=name, input=inp, runtime_s=dt) for k, (name, inp) in enumerate(items)]


TASKS = {"fit": FitTask}


def get_task(name: str, **options):
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r} (one of: {', '.join(TASKS)})") from None
    return cls(**options)
