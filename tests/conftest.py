import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# OpenMP threads (xgboost's n_jobs=2) that spin while they wait: on 2 shared cores with other
# processes running (pytest-xdist workers, JAX) a 3-fold quantile CV of 600 rows took 103 s of CPU
# instead of 1.3 s. Passive waiting gives the single-process speed back; set before xgboost loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# One persistent XLA compilation cache for the whole test session, inherited by the CLI subprocesses
# and Dask workers the tests start, and by the pytest-xdist worker processes of `make test` (they
# inherit the variable): a function compiled once (same program, same shapes) is read back
# instead of compiled again. It starts empty on every run and is removed at the end.
_JAX_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _JAX_CACHE = tempfile.mkdtemp(prefix="galdust-test-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _JAX_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")


def pytest_sessionfinish(session, exitstatus):
    if _JAX_CACHE is not None:
        shutil.rmtree(_JAX_CACHE, ignore_errors=True)

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared_data():
    if not SHARED.exists():
        pytest.skip("../shared/data is not present (fresh clone without the development data)")
    return SHARED.resolve()
