"""Run a task over many inputs on a Dask cluster: batches, resume, error isolation.

``run(task, items, out, client)`` splits the inputs that have no row yet into batches of the task's
batch size (the vmapped fit's batch), submits them with a bounded number in flight, and records one
catalogue row per input (:mod:`galdust.pipeline.catalog`). A batch whose worker dies is retried by
Dask (``distributed.scheduler.allowed-failures`` times); if it still fails, its inputs are resubmitted
one by one, each alone on the cluster, so that a single poisonous input becomes one ``error`` row and
the others are done.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from .. import __version__
from ..io import InputError, atomic_path, input_name
from ..threads import SINGLE_THREAD_ENV, cpu_cores, pin_process, worker_env  # noqa: F401 - re-exported
from . import catalog as cat

__all__ = ["discover", "prepare_out", "process_batch", "run", "RunSummary", "local_cluster", "SINGLE_THREAD_ENV",
           "ClusterLost", "LOCAL_NO_WORKER_TIMEOUT", "worker_env"]

class RunError(ValueError):
    """A problem with the run's arguments or output folder (one line)."""


class ClusterLost(RuntimeError):
    """The cluster has had no worker for longer than the run waits (one line; the run resumes)."""


#: how long a run on galdust's own local cluster waits with no worker alive before it stops (a
#: restarted worker process is back in seconds; see ``run``'s ``no_worker_timeout``)
LOCAL_NO_WORKER_TIMEOUT = 120.0


def read_table(path: Path):
    """An astropy Table from CSV, FITS or Parquet, or a one-line InputError."""
    from astropy.table import Table

    try:
        return Table.read(path, format="ascii.csv" if path.suffix.lower() == ".csv" else None)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: cannot read the catalogue ({' '.join(str(e).split())})") from None


def discover(patterns: Sequence[str] = (), catalog: str | Path | None = None, *,
             redshift: bool = False) -> list[tuple]:
    """``(name, input path)`` per input, from glob patterns or a table with a ``path`` column.

    Table: CSV, FITS or Parquet (astropy ``Table.read``) with a column ``path`` (or ``input``/``file``)
    and optionally ``name``; relative paths are relative to the table's folder. Names default to the
    file name without its suffix and must be unique (they name the outputs). With ``redshift``, a row
    of a table with a ``redshift`` (or ``z``, ``Z``) column that gives one is ``(name, path, z)``
    (checked: one line naming the table and the row otherwise).
    """
    from ..io import check_redshift, float_column

    items: list[tuple] = []
    if catalog is not None:
        catalog = Path(catalog)
        t = read_table(catalog)
        col = next((c for c in ("path", "input", "file") if c in t.colnames), None)
        if col is None:
            raise InputError(f"{catalog}: no 'path' column (columns: {', '.join(t.colnames)})")
        zcol = next((c for c in ("redshift", "z", "Z") if c in t.colnames), None) if redshift else None
        try:
            zs = float_column(t, zcol) if zcol else [np.nan] * len(t)
        except ValueError:
            raise InputError(f"{catalog}: column {zcol!r} is not numeric") from None
        for r, z in zip(t, zs):
            p = Path(str(r[col]))
            p = p if p.is_absolute() else catalog.parent / p
            name = str(r["name"]) if "name" in t.colnames else input_name(p)
            z = check_redshift(None if np.isnan(z) else z, str(catalog), f"row {name!r}: {zcol}")
            items.append((name, str(p)) if z is None else (name, str(p), z))
    for pat in patterns:
        items += [(input_name(p), p) for p in glob_inputs(pat) if not os.path.isdir(p)]
    return unique_items(items)


def glob_inputs(pattern: str) -> list[str]:
    """The paths matching ``pattern`` (``~`` expanded, ``**`` recursive), sorted; an InputError if none."""
    found = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    if not found:
        raise InputError(f"{pattern}: no input matches")
    return found


def unique_items(items: list[tuple]) -> list[tuple]:
    """Items with duplicates of the same (name, input) dropped; one name for two inputs is an error
    (names name the outputs)."""
    seen: dict[str, tuple] = {}
    for it in items:
        if it[0] in seen and seen[it[0]][1] != it[1]:
            raise InputError(f"{it[1]}: output name {it[0]!r} is also that of {seen[it[0]][1]}; give a catalogue "
                             f"with unique 'name' values")
        seen.setdefault(it[0], it)  # the first: a catalogue row (with its redshift) before a glob's match
    return list(seen.values())


def prepare_out(out: Path, task) -> None:
    """Make ``out`` a run folder of ``task`` or check that it is one with the same options."""
    out = Path(out)
    state = cat.state_dir(out) / "run.json"
    me = dict(task=task.name, options=task.options())
    if state.exists():
        old = json.loads(state.read_text())
        if old.get("task") != me["task"]:
            raise RunError(f"{out}: holds a run of {old.get('task')}, not {me['task']}; choose another --out")
        if old.get("options") != me["options"]:  # name what differs (the task's option names: --no-psf is use_psf)
            was, now = old.get("options") or {}, me["options"]
            diff = "; ".join(f"{k} was {was.get(k)!r}, now {now.get(k)!r}" for k in sorted(set(was) | set(now))
                             if was.get(k) != now.get(k))
            raise RunError(f"{out}: holds a run of {old.get('task')} with other options ({diff}); resume with "
                           f"the same ones or choose another --out")
        return
    if out.exists() and any(p.name != cat.STATE for p in out.iterdir()):
        raise RunError(f"{out}: exists and is not a galdust run folder; choose an empty or new --out")
    cat.state_dir(out).mkdir(parents=True, exist_ok=True)
    with atomic_path(state, overwrite=True) as tmp:
        tmp.write_text(json.dumps(dict(me, galdust_version=__version__,
                                       created=datetime.now(timezone.utc).isoformat()), indent=1))


def _stamp(rows: list[dict]) -> list[dict]:
    now = datetime.now(timezone.utc)
    who = f"{socket.gethostname()}:{os.getpid()}"
    return [dict(r, worker=who, finished=now, galdust_version=__version__) for r in rows]


def process_batch(task, items: list[tuple], out: str) -> list[dict]:
    """Worker side: run the task on one batch, then record its rows in a new catalogue part."""
    rows = _stamp(task.run_batch(items, Path(out)))
    cat.write_part(out, rows, cat.schema(task.fields))
    return rows


@dataclass
class RunSummary:
    total: int  # inputs given
    skipped: int  # already done (rows from earlier runs)
    ok: int  # done in this run
    errors: int  # error rows written in this run
    wall_s: float
    catalog: Path
    earlier_errors: int = 0  # skipped inputs whose row is an error (see --retry-errors)
    error_rows: list = field(default_factory=list)  # (name, input, error) of this run's error rows

    @property
    def rate(self) -> float:
        return (self.ok + self.errors) / self.wall_s if self.wall_s > 0 else 0.0


def _crash_rows(items, e: BaseException) -> list[dict]:
    msg = " ".join(str(e).split()) or type(e).__name__
    if type(e).__name__ == "KilledWorker":
        msg = f"the worker died while processing this input ({msg})"
    return [dict(name=it[0], input=it[1], status="error", error=msg, runtime_s=None) for it in items]


def run(task, items: Sequence[tuple], out: str | Path, client, *, retry_errors: bool = False,
        max_in_flight: int | None = None, consolidate_every: float = 30.0,
        progress: Callable[[int, int, int], None] | None = None,
        no_worker_timeout: float | None = None) -> RunSummary:
    """Process every input of ``items`` that has no row in ``out`` yet; see the module docstring.
    ``client``: a Dask client, or a function of the number of batches to run returning one, called
    only if some input is left to run.

    ``progress(done, errors, todo)`` is called after each batch (counts of this run).
    ``no_worker_timeout``: raise :class:`ClusterLost` when work is in flight and the cluster has had no
    worker for this many seconds (None: wait for workers however long; an external cluster's may be
    queued). A worker process that dies is restarted by its nanny, but a nanny whose restart fails
    (Dask logs "Failed to restart worker") gives up, and a local cluster whose every worker is lost
    would otherwise wait forever; the rows written so far are kept and a re-run resumes.
    """
    from distributed import wait

    out = Path(out)
    t0 = time.perf_counter()
    prepare_out(out, task)
    sch = cat.schema(task.fields)
    for stale in list(out.glob(".*.tmp")) + list(cat.state_dir(out).rglob(".*.tmp")):
        stale.unlink(missing_ok=True)  # temporary files of writes that a kill interrupted
    table = cat.consolidate(out, sch)  # also folds the parts of a killed run
    status = dict(zip(table.column("name").to_pylist(), table.column("status").to_pylist()))
    todo = [it for it in items if not (status.get(it[0]) == "ok" or (status.get(it[0]) == "error"
                                                                      and not retry_errors))]
    skipped = len(items) - len(todo)
    names = {it[0] for it in items}
    earlier_errors = sum(st == "error" for n, st in status.items() if n in names) if not retry_errors else 0
    bs = max(1, int(getattr(task, "batch_size", 1)))
    pending: deque = deque(list(todo[i : i + bs]) for i in range(0, len(todo), bs))
    if todo:
        if not hasattr(client, "submit"):  # a function that connects: called only when there is work
            client = client(len(pending))
        max_in_flight = max_in_flight or 2 * max(1, len(client.scheduler_info().get("workers", {})))
    inflight: dict = {}  # future -> its batch, in submission order
    ok = err = 0
    failed: list[tuple] = []
    gone: float | None = None  # when the cluster was first seen without a worker (None: it has one)
    last = time.perf_counter()

    isolate: deque = deque()  # inputs of failed batches, each to be run alone on the cluster
    isolating: set = set()  # the future of the one input being run alone, if any

    def send(batch):
        fut = client.submit(process_batch, task, batch, str(out), pure=False)
        inflight[fut] = batch
        return fut

    def finished() -> list:
        """The futures in flight that have finished (at least one), in submission order."""
        nonlocal gone
        while True:
            try:
                done = wait(list(inflight), timeout=5.0, return_when="FIRST_COMPLETED").done
                gone = None
                return [f for f in inflight if f in done]
            except TimeoutError:
                if no_worker_timeout is None:
                    continue
                # counted from the first time it is seen without one: time spent outside this wait
                # (a result being recomputed after its worker died, a consolidation) or a wait that
                # overran its 5 s on a loaded machine is not time without workers (it stopped runs
                # whose nannies were still restarting their workers)
                now = time.perf_counter()
                if client.nthreads():
                    gone = None
                elif gone is None:
                    gone = now
                elif now - gone > no_worker_timeout:
                    raise ClusterLost(f"the cluster has had no worker for {no_worker_timeout:.0f} s (their "
                                      f"processes died and were not restarted); {ok + err} inputs were "
                                      f"recorded, run the same command again to resume") from None

    def submit():
        # An input of a failed batch runs alone: nothing else is in flight while it runs, so a
        # poisonous input that kills its worker cannot take an innocent task down with it (Dask
        # counts every task processing on a dying worker as suspicious, queued ones included).
        if isolate or isolating:
            if not inflight and isolate:
                isolating.add(send([isolate.popleft()]))
            return
        while pending and len(inflight) < max_in_flight:
            send(pending.popleft())

    try:
        submit()
        while inflight:
            for fut in finished():
                batch = inflight.pop(fut)
                alone = fut in isolating
                isolating.discard(fut)
                try:
                    rows = fut.result()
                except Exception as e:  # noqa: BLE001 - a crashed worker or a bug: isolate, then record
                    if not alone:
                        isolate.extend(batch)
                        submit()
                        continue
                    rows = _stamp(_crash_rows(batch, e))
                    cat.write_part(out, rows, sch)
                finally:
                    fut.release()
                n_err = sum(r["status"] != "ok" for r in rows)
                failed += [(r["name"], r.get("input"), r.get("error")) for r in rows if r["status"] != "ok"]
                ok += len(rows) - n_err
                err += n_err
                if progress is not None:
                    progress(ok, err, len(todo))
                if time.perf_counter() - last > consolidate_every:
                    cat.consolidate(out, sch)
                    last = time.perf_counter()
                submit()
    finally:
        for fut in inflight:
            fut.cancel()
        cat.consolidate(out, sch)
    return RunSummary(total=len(items), skipped=skipped, ok=ok, errors=err, wall_s=time.perf_counter() - t0,
                      catalog=out / cat.CATALOG, earlier_errors=earlier_errors, error_rows=failed)


class _PinToCore(WorkerPlugin):
    """Worker plugin: worker ``name`` i is pinned to the i-th core this process may use (mod n), so
    that one-thread workers do not contend: XLA's flags alone leave some work on a second thread."""

    name = "galdust-pin-to-core"

    def __init__(self, cores: list[int]):
        self.cores = cores

    def setup(self, worker):
        try:
            i = int(worker.name)
        except (TypeError, ValueError):
            i = abs(hash(worker.name))
        pin_process(self.cores[i % len(self.cores)])


def local_cluster(n_workers: int | None = None, *, allowed_failures: int = 2, pin: bool = True):
    """The default cluster: one single-threaded worker process per core of this machine."""
    import logging

    import dask
    from distributed import LocalCluster

    n = n_workers or cpu_cores()
    # Dask's default MALLOC_TRIM_THRESHOLD_=65536 makes XLA's allocate/free cycles page-fault (README,
    # bench/bench_run.py); unset it, and set the thread caps before the worker interpreters start.
    cfg = {"distributed.scheduler.allowed-failures": allowed_failures,
           "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    cfg.update({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in worker_env().items()})
    with dask.config.set(cfg):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
    if pin and hasattr(os, "sched_getaffinity"):
        from distributed import Client

        with Client(cluster) as c:
            c.register_plugin(_PinToCore(sorted(os.sched_getaffinity(0))))
    return cluster
