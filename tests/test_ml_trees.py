import os

import pytest

from galdust.ml.trees import ROWS_PER_THREAD, n_threads


def test_threads_follow_the_environment_then_the_cpu_affinity(monkeypatch):
    monkeypatch.setenv("GALDUST_THREADS", "3")
    assert n_threads() == 3
    assert n_threads(100) == 3  # the user's choice wins, whatever the rows
    monkeypatch.setenv("GALDUST_THREADS", "zero")
    with pytest.raises(ValueError, match="GALDUST_THREADS"):
        n_threads()
    monkeypatch.delenv("GALDUST_THREADS")
    if hasattr(os, "sched_getaffinity"):
        assert n_threads() == len(os.sched_getaffinity(0))
        assert n_threads(10 * ROWS_PER_THREAD) == len(os.sched_getaffinity(0))
    # a small training set trains on one thread (threads that wait for each other cost more)
    assert n_threads(600) == 1 and n_threads(ROWS_PER_THREAD - 1) == 1


class Killed(Exception):
    pass


def test_a_killed_tree_training_resumes_from_the_models_it_had_fitted(tmp_path, monkeypatch):
    import numpy as np
    import xgboost as xgb

    from galdust.ml.trees import FitCache
    from galdust.posterior.redshift import PARAMS, train_redshift

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4)).astype(np.float32)
    y = 0.1 + 0.05 * np.abs(X[:, 0] + 0.5 * X[:, 1]) + 0.01 * rng.normal(size=400)
    params = dict(PARAMS, n_estimators=20)
    straight = train_redshift(X, y, seed=1, k=3, params=params)  # 3 folds x (3 inner + 1) + 3 + 1 = 16 fits
    fit, calls, kill_at = xgb.XGBRegressor.fit, [], [7]

    def dying_fit(self, *a, **kw):
        calls.append(1)
        if len(calls) == kill_at[0]:
            raise Killed  # killed during the 7th fit
        return fit(self, *a, **kw)

    monkeypatch.setattr(xgb.XGBRegressor, "fit", dying_fit)
    cache = FitCache(tmp_path / "ckpt")
    with pytest.raises(Killed):
        train_redshift(X, y, seed=1, k=3, params=params, cache=cache)
    assert len(list((tmp_path / "ckpt").glob("*.json"))) == 6
    calls.clear()
    kill_at[0] = 0
    resumed = train_redshift(X, y, seed=1, k=3, params=params, cache=cache)
    assert len(calls) == 16 - 6  # only what had not been fitted
    assert resumed.meta["cv"] == straight.meta["cv"] and resumed.scale == straight.scale
    np.testing.assert_array_equal(resumed.booster.inplace_predict(X), straight.booster.inplace_predict(X))
    cache.clear()
    assert not (tmp_path / "ckpt").exists()


def test_threads_option_of_the_command_line(monkeypatch, capsys):
    from galdust.cli import main

    monkeypatch.setenv("GALDUST_THREADS", "1")  # restored after the test
    assert main(["--threads", "3", "models"]) in (0, None)
    assert n_threads() == 3 and "fir" in capsys.readouterr().out
