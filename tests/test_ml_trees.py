import os

import pytest

from galdust.ml.trees import n_threads


def test_threads_follow_the_environment_then_the_cpu_affinity(monkeypatch):
    monkeypatch.setenv("GALDUST_THREADS", "3")
    assert n_threads() == 3
    monkeypatch.setenv("GALDUST_THREADS", "zero")
    with pytest.raises(ValueError, match="GALDUST_THREADS"):
        n_threads()
    monkeypatch.delenv("GALDUST_THREADS")
    if hasattr(os, "sched_getaffinity"):
        assert n_threads() == len(os.sched_getaffinity(0))
