"""Shared settings of galdust's tree models (xgboost: the FIR forests and σ models, the SDSS redshift model).

:func:`n_threads`: the threads one tree training or prediction uses: ``GALDUST_THREADS`` when set,
else one for fewer than :data:`ROWS_PER_THREAD` rows, else the cores this process may run on (its
CPU affinity: one on a pinned Dask worker, all of a SLURM allocation), never a hard-coded number (two
trainings with two threads each on two cores ran much slower than one after the other, and two
threads on a few hundred rows 4.6× slower than one: docs/implementation.md).

:func:`folds` and :func:`out_of_fold`: the k-fold split and out-of-fold predictions on the training set
that the σ models and calibration factors learn from; :func:`load_booster`: an xgboost booster from its
JSON file (model folders are written and checked by :func:`galdust.weights.save_folder` /
:func:`galdust.weights.load_folder`); :class:`FitCache`: what makes a killed tree training resume.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ROWS_PER_THREAD", "n_threads", "folds", "out_of_fold", "load_booster", "FitCache"]


#: below this many training rows a tree model trains on one thread: xgboost's threads wait for each
#: other at every tree node (passively, OMP_WAIT_POLICY=PASSIVE, as they must beside other processes),
#: which cost more than the work they share. Measured on 2 cores (200-tree forest, depth 8, 30
#: features): 155 rows 0.15 s on one thread, 0.71 s on two; 5,000 rows 0.95 / 1.22 s; 50,000 rows
#: 2.6 / 2.1 s.
ROWS_PER_THREAD = 50_000


def n_threads(n_rows: int | None = None) -> int:
    """Threads for a tree model trained on ``n_rows`` rows (None: the cores available)."""
    env = os.environ.get("GALDUST_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"GALDUST_THREADS={env!r}: expected a positive integer") from None
    if n_rows is not None and n_rows < ROWS_PER_THREAD:
        return 1
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def folds(n: int, k: int, seed: int, groups=None) -> np.ndarray:
    """Fold index (0 … k−1) per row: rows at random, or whole groups (e.g. galaxies) at random."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.permutation(n) % k
    u, inv = np.unique(np.asarray(groups), return_inverse=True)
    return (rng.permutation(len(u)) % k)[inv]


def out_of_fold(fold: np.ndarray, k: int, fit: Callable[[np.ndarray, int], Any],
                predict: Callable[[Any, np.ndarray], np.ndarray]) -> np.ndarray:
    """Out-of-fold predictions (n, ...): for each fold f, ``model = fit(train_mask, f)`` on the other
    folds' rows and ``predict(model, test_mask)`` for the rows of fold f."""
    out = None
    for f in range(k):
        te = fold == f
        p = np.asarray(predict(fit(fold != f, f), te), float)
        if out is None:
            out = np.empty((len(fold),) + p.shape[1:])
        out[te] = p
    return out


def load_booster(path: str | os.PathLike):
    """An ``xgboost.Booster`` read from its JSON file."""
    import xgboost as xgb

    b = xgb.Booster()
    b.load_model(str(Path(path)))
    return b


class FitCache:
    """The tree models one training has fitted, kept in ``folder`` while it runs: killed and run again,
    the training reads back every model it had fitted (same inputs and settings: the same model, bit
    for bit) and fits only the rest. ``FitCache(None)`` keeps nothing; :meth:`clear` once the trained
    model is written."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = None if folder is None else Path(folder)

    def __call__(self, fit: Callable[[], Any], *key) -> Any:
        """``fit()``'s model (an xgboost Booster or scikit-learn-style model), or the one it gave for
        the same ``key`` (the arrays and settings it depends on) in an earlier run."""
        if self.folder is None:
            return fit()
        from ..weights import digest

        name = digest(*key)
        for f in self.folder.glob(f"{name}.*.json"):
            import xgboost as xgb

            kind = f.name.split(".")[1]
            m = getattr(xgb, kind)()
            m.load_model(str(f))
            if kind == "Booster":
                m.set_param({"nthread": n_threads()})
            else:
                m.set_params(n_jobs=n_threads())
            return m
        m = fit()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{name}.{os.getpid()}.json"
        m.save_model(str(tmp))
        os.replace(tmp, self.folder / f"{name}.{type(m).__name__}.json")
        return m

    def clear(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
