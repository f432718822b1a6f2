"""Threads and cores of galdust's worker processes (Dask workers of ``galdust run``, the processes of
``galdust fit --method amortized --workers``): one thread each, one core each.

XLA's CPU backend and BLAS otherwise use every core in each worker process, so that N workers on N
cores contend; XLA's flags alone leave some work on a second thread, hence the pinning as well.
"""

from __future__ import annotations

import os

__all__ = ["SINGLE_THREAD_ENV", "worker_env", "pin_process", "cpu_cores"]

#: the environment of a one-thread worker process (set before it starts JAX, XLA or BLAS)
SINGLE_THREAD_ENV = {
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def worker_env(environ=os.environ) -> dict[str, str]:
    """The environment of a local worker process: :data:`SINGLE_THREAD_ENV`, with the XLA flags this
    process was started with kept in front of the thread caps (so the caps win where both set one)."""
    env = dict(SINGLE_THREAD_ENV)
    own = environ.get("XLA_FLAGS", "").strip()
    if own:
        env["XLA_FLAGS"] = f"{own} {env['XLA_FLAGS']}"
    return env


def pin_process(core: int) -> None:
    """Pin every thread of this process (and the threads it creates later) to one CPU core (Linux)."""
    if not hasattr(os, "sched_setaffinity"):
        return
    for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else [0]:
        try:
            os.sched_setaffinity(int(tid), {core})
        except OSError:
            pass


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
