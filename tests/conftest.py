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
# Half of the suite's CPU is XLA compiling programs that then run for well under a second. XLA's
# older CPU emitters compile them faster (a simulator: 3.7 s instead of 4.9 s) to programs that give
# the same numbers at the tests' tolerances (batch invariance to 1e-6 included), and LLVM at -O1 halves
# what is left (the simulator of 8 64x64 galaxies: 4.6 -> 2.5 s to compile, 0.14 -> 0.16 s to run;
# test_simulate + test_dust_fit 121 -> 65 s; the suite 694 -> 514 s). For the tests, their CLI
# subprocesses and Dask workers (galdust.threads.worker_env keeps them); never for users.
# (-O0 compiles faster still but made the programs that run long, fits and trainings, so slow that
# the suite took longer.)
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=1")
# One persistent XLA compilation cache for the whole test session, inherited by the CLI subprocesses
# and Dask workers the tests start, and by the pytest-xdist worker processes of `make test` (they
# inherit the variable): a function compiled once (same program, same shapes) is read back
# instead of compiled again. It starts empty on every run and is removed at the end. Every program is
# kept, however short its compilation: the op-by-op programs of eager JAX code (thousands, 10-50 ms
# each) are then compiled once for all processes (suite 531 -> 481 s, 962 -> 872 CPU-s).
_JAX_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _JAX_CACHE = tempfile.mkdtemp(prefix="galdust-test-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _JAX_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def pytest_collection_modifyitems(session, config, items):
    """The longest files first (the README's blocks: ~5 min in one process), so that pytest-xdist's
    ``--dist loadfile`` starts them at once and the other process takes the many short files
    meanwhile, instead of one process running them alone at the end (collection order is by name)."""
    first = ("test_readme.py", "test_population.py", "test_fir_model.py")
    items.sort(key=lambda it: first.index(it.path.name) if it.path.name in first else len(first))


def pytest_sessionfinish(session, exitstatus):
    if _JAX_CACHE is not None:
        shutil.rmtree(_JAX_CACHE, ignore_errors=True)

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared_data():
    if not SHARED.exists():
        pytest.skip("../shared/data is not present (fresh clone without the development data)")
    return SHARED.resolve()


# ----------------------------------------------------------------------------- shared builders
# (imported by the test modules with ``from conftest import ...``)

import numpy as np  # noqa: E402

#: a star-forming spiral's UV-MIR SED [Jy] in galdust.fir.data.UVMIR_BANDS order, and its FIR truth
FIR_SED = np.array([2e-3, 4e-3, 1.5e-2, 5e-2, 9e-2, 0.12, 0.14, 0.17, 0.19, 0.16, 0.1, 0.065, 0.09, 0.11,
                    0.095, 0.062, 0.07, 0.16])
FIR_TRUTH = dict(log_sLd=-0.8, log_sMd=-2.7, Td=22.0)


def gauss_blob(n: int, y: float, x: float, sigma: float, amp: float = 1.0) -> np.ndarray:
    """An (n, n) round Gaussian of peak ``amp`` centred at pixel (y, x)."""
    yy, xx = np.mgrid[:n, :n]
    return amp * np.exp(-0.5 * ((yy - y) ** 2 + (xx - x) ** 2) / sigma**2)


def tan_wcs(scale_arcsec: float, n: int, ra: float = 150.0, dec: float = 2.0, rot: float = 0.0,
            crpix: float | None = None):
    """A north-up (or rotated by ``rot`` degrees) TAN WCS of n×n pixels of ``scale_arcsec``, with the
    reference pixel at the centre (or at ``crpix``, 1-based, on both axes)."""
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    c = (n + 1) / 2 if crpix is None else crpix
    w.wcs.crpix = [c, c]
    co, si = np.cos(np.deg2rad(rot)), np.sin(np.deg2rad(rot))
    w.wcs.cd = np.array([[-co, si], [si, co]]) * scale_arcsec / 3600.0
    return w


def sdss_table(path, n: int = 7, nan_flux: tuple[int, int] | None = None, seed: int = 0, extinction: float = 0.05,
               z=(0.03, 0.15)):
    """A small table in the SDSS format (OBJID, MODELFLUX ugriz [nmgy] with IVAR 4, EXTINCTION, Z spread
    over ``z``) written to ``path``; ``nan_flux`` (row, band) makes one flux missing. Returns the fluxes."""
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    flux = 10 ** rng.uniform(1.0, 2.0, (n, 1)) * np.array([0.2, 0.5, 1.0, 1.4, 1.7])
    if nan_flux is not None:
        flux[nan_flux] = np.nan
    Table(dict(OBJID=np.arange(100, 100 + n), MODELFLUX=flux, MODELFLUX_IVAR=np.full((n, 5), 4.0),
               EXTINCTION=np.full((n, 5), extinction), Z=np.linspace(*z, n))).write(path, overwrite=True)
    return flux


def array_leaves(tree) -> list:
    """The array leaves of a pytree (an equinox module's parameters)."""
    import equinox as eqx
    import jax

    return jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))


# ----------------------------------------------------------------------------- galdust run (pipeline tests)

BANDS = ["sdss_g", "sdss_r", "sdss_i", "sdss_z"]
FAST = ["--no-priors", "--max-iter", "20", "--no-detect"]


def pipeline_galaxy(path, seed, size=24):
    """A small exponential griz galaxy cube FITS with IVAR (fast to fit)."""
    from galdust.io import write_cube

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    S = np.exp(-np.hypot(x / 4.0, y / 2.5))
    F = np.array([1.0, 1.5, 1.8, 2.0])
    cube = F[:, None, None] * S[None] + rng.normal(0, 0.02, (4, size, size))
    write_cube(path, cube, BANDS, ivar=np.full(cube.shape, 2500.0), provenance=[])
    return path


@pytest.fixture
def good_inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    return [pipeline_galaxy(d / f"g{i}.fits", i) for i in range(5)]


@pytest.fixture
def bad_inputs(tmp_path):
    """Bad cube files and the words of the error each must give."""
    from astropy.io import fits

    from galdust.io import write_cube

    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    (d / "corrupt.fits").write_bytes(b"SIMPLE  =   this is not FITS" * 10)
    fits.PrimaryHDU(np.ones((24, 24), np.float32)).writeto(d / "flat2d.fits")  # wrong shape: 2-D
    write_cube(d / "noivar.fits", np.ones((4, 24, 24)), BANDS, ivar=np.zeros((4, 24, 24)), provenance=[])
    nan = np.ones((4, 24, 24))
    nan[2] = np.nan
    write_cube(d / "nanband.fits", nan, BANDS, ivar=np.ones((4, 24, 24)), provenance=[])
    write_cube(d / "badband.fits", np.ones((4, 24, 24)), ["sdss_g", "sdss_r", "no_such_band", "sdss_z"],
               ivar=np.ones((4, 24, 24)), provenance=[])
    return {"corrupt": "not a FITS file", "flat2d": "3-D", "noivar": "zero everywhere", "nanband": "NaN",
            "badband": "no_such_band"}


@pytest.fixture(scope="module")
def cluster():
    """An in-process Dask cluster for the tests that pass --scheduler."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as c:
        yield c
