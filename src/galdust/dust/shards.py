"""``galdust fit --method amortized`` over many files in worker processes, one per core.

One process reads a cube, prepares it, runs the network and writes the outputs in turn: on 2 cores
about 51 galaxies/s, of which the network (batched, both cores) is a third and reading and writing
FITS the rest, in Python on one core. :func:`fit_files_in_workers` cuts the inputs into shards of
:data:`SHARD` and gives them to ``workers`` spawned processes, each single-threaded and pinned to its
core (:mod:`galdust.threads`, as ``galdust run``'s Dask workers), each fitting its shards with
:func:`galdust.dust.api.fit_files` and the network loaded once per process. The outputs are the same
files; the parent checks names and existing outputs first, so that no two inputs write one output.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["SHARD", "fit_files_in_workers", "ResultScalars"]

#: inputs per task of a worker process (two network batches of 64)
SHARD = 128


class ResultScalars:
    """What a worker process sends back for a written object: its scalars (the maps are in its files)."""

    def __init__(self, scalars: dict):
        self.scalars = scalars


def _init(env: dict, cores: list[int], counter) -> None:  # in the worker, before it starts JAX
    os.environ.update(env)
    with counter.get_lock():
        i = counter.value
        counter.value += 1
    from ..threads import pin_process

    pin_process(cores[i % len(cores)])


@functools.lru_cache(maxsize=1)
def _fitter(options: str):  # the network, loaded once per worker process
    from .api import make_fitter

    return make_fitter(**json.loads(options))


def _shard(items: list, out: str, options: str, kw: dict):
    from .api import fit_files

    rep = fit_files(items, out, fitter=_fitter(options), **kw)
    return [(n, r.scalars, p) for n, r, p in rep.written], rep.failures


def fit_files_in_workers(inputs: Sequence, out: str | Path, workers: int, fitter_options: dict, *,
                         bands=None, mask=None, overwrite: bool = False, plot: bool = False,
                         progress: Callable | None = None, read_options: dict | None = None):
    """:func:`~galdust.dust.api.fit_files` in ``workers`` processes (see the module docstring); returns a
    :class:`~galdust.dust.api.FitReport` whose written results carry their scalars only."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from ..io import InputError
    from ..threads import cpu_cores, worker_env
    from .api import FitReport, _one_line, claim_outputs

    report = FitReport()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: --out is a file, not a folder")
    todo, first = [], {}
    for inp in inputs:  # the checks fit_files makes before it reads, made here across all the shards
        files = [inp] if isinstance(inp, (str, Path)) else list(inp)
        try:
            claim_outputs(files[0], out, first, plot=plot, overwrite=overwrite)
            todo.append(inp)
        except Exception as e:  # noqa: BLE001 - reported, the others go on
            report.failures.append((",".join(map(str, files)), _one_line(e)))
    if not todo:
        return report
    shards = [todo[i:i + SHARD] for i in range(0, len(todo), SHARD)]
    kw = dict(bands=bands, mask=mask, overwrite=overwrite, plot=plot, read_options=read_options)
    options = json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in fitter_options.items()})
    ctx = mp.get_context("spawn")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(cpu_cores()))
    t0, done = time.perf_counter(), 0
    with ProcessPoolExecutor(max_workers=min(workers, len(shards)), mp_context=ctx, initializer=_init,
                             initargs=(worker_env(), cores, ctx.Value("i", 0))) as pool:
        futures = {pool.submit(_shard, s, str(out), options, kw): s for s in shards}
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    shard = futures[fut]
                    try:
                        written, failures = fut.result()
                    except Exception as e:  # noqa: BLE001 - a worker process died: its shard's inputs failed
                        failures = [(str(i), f"the worker process fitting it failed ({_one_line(e)})") for i in shard]
                        written = []
                    report.written += [(n, ResultScalars(s), p) for n, s, p in written]
                    report.failures += failures
                    done += len(shard)
                    if progress is not None:
                        progress(done)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    report.seconds = time.perf_counter() - t0
    rank = {name: k for k, name in enumerate(first)}  # the inputs' order, whichever shard finished first
    report.written.sort(key=lambda w: rank.get(w[0], len(rank)))
    return report
