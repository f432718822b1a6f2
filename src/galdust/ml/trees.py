"""Shared settings of galdust's tree models (xgboost: the FIR forests and σ models, the SDSS redshift model).

:func:`n_threads`: the threads one tree training or prediction uses: ``GALDUST_THREADS`` when set,
else the cores this process may run on (its CPU affinity: one on a pinned Dask worker, all of a
SLURM allocation), never a hard-coded number (two trainings with two threads each on two cores ran
8× slower than one after the other).
"""

from __future__ import annotations

import os

__all__ = ["n_threads"]


def n_threads() -> int:
    env = os.environ.get("GALDUST_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"GALDUST_THREADS={env!r}: expected a positive integer") from None
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
