"""galdust run: catalogue bookkeeping, bad inputs as error rows, resume after a kill, worker crashes."""

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import FIR_SED, FIR_TRUTH, sdss_table
from astropy.io import fits

from galdust.cli import main
from galdust.io import InputError, write_cube
from galdust.pipeline import catalog as cat
from galdust.pipeline.runner import discover, prepare_out, run
from galdust.pipeline.tasks import FitTask

BANDS = ["sdss_g", "sdss_r", "sdss_i", "sdss_z"]
FAST = ["--no-priors", "--max-iter", "20", "--no-detect"]


def _galaxy(path, seed, size=24):
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
    return [_galaxy(d / f"g{i}.fits", i) for i in range(5)]


@pytest.fixture
def bad_inputs(tmp_path):
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
    return {"corrupt": "cannot read FITS", "flat2d": "3-D", "noivar": "zero everywhere", "nanband": "NaN",
            "badband": "no_such_band"}


# ----------------------------------------------------------------------------- catalogue


def _row(name, status, minutes):
    return dict(name=name, input=f"{name}.fits", status=status, error=None if status == "ok" else "boom",
                finished=datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=minutes))


def test_catalog_dedup_prefers_ok_then_latest_and_survives_a_kill_during_consolidation(tmp_path):
    sch = cat.schema(FitTask.fields)
    cat.write_part(tmp_path, [_row("a", "error", 0), _row("b", "ok", 0)], sch)
    cat.write_part(tmp_path, [_row("a", "ok", 1), _row("b", "error", 5), _row("c", "error", 0)], sch)
    cat.write_part(tmp_path, [_row("c", "error", 3)], sch)
    parts = sorted((tmp_path / ".galdust-run" / "parts").glob("*.parquet"))
    saved = {p: p.read_bytes() for p in parts}
    t = cat.consolidate(tmp_path, sch)
    assert t.column("name").to_pylist() == ["a", "b", "c"]
    assert t.column("status").to_pylist() == ["ok", "ok", "error"]
    assert t.column("finished").to_pylist()[2].minute == 3
    assert not list((tmp_path / ".galdust-run" / "parts").glob("*.parquet"))
    for p, b in saved.items():  # a kill after the rename, before the parts were deleted
        p.write_bytes(b)
    t2 = cat.consolidate(tmp_path, sch)
    assert t2.num_rows == 3 and t2.equals(t)
    assert pq.read_table(tmp_path / "catalog.parquet").schema == sch


def test_discover_globs_catalogue_and_duplicate_names(tmp_path, good_inputs):
    items = discover([str(tmp_path / "in" / "g*.fits")])
    assert [n for n, _ in items] == ["g0", "g1", "g2", "g3", "g4"]
    (tmp_path / "list.csv").write_text("path,name\nin/g1.fits,first\nin/g3.fits,third\n")
    items = discover(catalog=tmp_path / "list.csv")
    assert items == [("first", str(tmp_path / "in" / "g1.fits")), ("third", str(tmp_path / "in" / "g3.fits"))]
    other = tmp_path / "other"
    other.mkdir()
    _galaxy(other / "g1.fits", 9)
    with pytest.raises(InputError, match="g1"):
        discover([str(tmp_path / "in" / "g*.fits"), str(other / "*.fits")])
    with pytest.raises(InputError, match="no input matches"):
        discover([str(tmp_path / "nothing*.fits")])


def test_prepare_out_refuses_foreign_folders_and_changed_options(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(ValueError, match="not a galdust run folder"):
        prepare_out(tmp_path, FitTask())
    prepare_out(tmp_path / "run", FitTask(max_iter=10))
    prepare_out(tmp_path / "run", FitTask(max_iter=10))  # same options: resume
    with pytest.raises(ValueError, match="options"):
        prepare_out(tmp_path / "run", FitTask(max_iter=20))


# ----------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as c:
        yield c


def test_run_against_a_scheduler_address_bad_inputs_become_error_rows(tmp_path, good_inputs, bad_inputs, cluster,
                                                                      capsys):
    out = tmp_path / "run"
    args = ["run", "fit", "--inputs", str(tmp_path / "in" / "*.fits"), "--out", str(out), "--scheduler",
            cluster.scheduler_address, "--batch-size", "4", "--quiet", *FAST]
    assert main(args) == 1  # some inputs failed
    assert "5 ok, 5 errors" in capsys.readouterr().out
    t = pq.read_table(out / "catalog.parquet")
    assert t.schema == cat.schema(FitTask.fields)
    rows = {r["name"]: r for r in t.to_pylist()}
    assert len(rows) == t.num_rows == 10
    for name, text in bad_inputs.items():
        assert rows[name]["status"] == "error" and text in rows[name]["error"], (name, rows[name]["error"])
    for i in range(5):
        r = rows[f"g{i}"]
        assert r["status"] == "ok" and r["error"] is None and r["niter"] > 0 and r["runtime_s"] > 0
        assert r["galdust_version"] and r["worker"] and r["start"] == "blue"
        assert (out / f"g{i}.dust.fits").exists() and (out / f"g{i}.json").exists()
    with fits.open(out / "g0.dust.fits") as h:
        assert h[0].header["AV_LW"] == pytest.approx(rows["g0"]["av_lw"])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # re-running skips everything; --retry-errors re-attempts only the error rows
    assert main(args) == 0
    assert "0 ok, 0 errors, 10 already done" in capsys.readouterr().out
    assert main(args + ["--retry-errors"]) == 1
    assert "0 ok, 5 errors, 5 already done" in capsys.readouterr().out
    assert pq.read_table(out / "catalog.parquet").num_rows == 10


def test_resume_after_the_run_is_killed_loses_and_duplicates_nothing(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    paths = [_galaxy(d / f"k{i:02d}.fits", i) for i in range(12)]
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "galdust.cli", "run", "fit", "--inputs", str(d / "*.fits"), "--out", str(out),
           "--workers", "2", "--batch-size", "2", "--quiet", *FAST]
    p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = out / ".galdust-run" / "parts"
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None and not (parts.is_dir() and any(parts.glob("*.parquet"))):
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)  # the driver and its worker processes, mid-run
    p.wait()
    killed_rows = cat.read_rows(out, cat.schema(FitTask.fields))[0].num_rows
    assert 0 < killed_rows < 12, killed_rows  # really killed mid-run
    (out / ".k00.dust.fits.abc123.tmp").write_bytes(b"half")  # as a write interrupted by the kill leaves
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not list(out.glob(".*.tmp"))
    assert "already done" in r.stdout
    t = pq.read_table(out / "catalog.parquet")
    names = t.column("name").to_pylist()
    assert sorted(names) == [f"k{i:02d}" for i in range(12)]  # none lost, none twice
    assert set(t.column("status").to_pylist()) == {"ok"}
    assert all((out / f"k{i:02d}.dust.fits").exists() for i in range(len(paths)))


class CrashTask(FitTask):
    """A fit task whose worker process dies on inputs named crash*."""

    def run_batch(self, items, out):
        if any(n.startswith("crash") for n, _ in items):
            os._exit(3)
        return [dict(name=n, input=p, status="ok", error=None, runtime_s=0.0) for n, p in items]


def _crash_run(items, out, n_workers, batch_size, **kw):
    """``run`` of a CrashTask on a local cluster of worker processes, each task allowed one death."""
    import cloudpickle
    import dask
    from distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0") as c, \
                Client(c) as client:
            return run(CrashTask(batch_size=batch_size), items, out, client, **kw)


def test_a_worker_crash_is_retried_then_becomes_one_error_row(tmp_path):
    items = [(f"ok{i}", f"ok{i}.fits") for i in range(5)] + [("crash0", "crash0.fits")]
    s = _crash_run(items, tmp_path / "run", n_workers=1, batch_size=3)
    assert (s.ok, s.errors) == (5, 1)
    rows = {r["name"]: r for r in pq.read_table(tmp_path / "run" / "catalog.parquet").to_pylist()}
    assert len(rows) == 6
    assert rows["crash0"]["status"] == "error" and "worker died" in rows["crash0"]["error"]
    assert all(rows[f"ok{i}"]["status"] == "ok" for i in range(5))


def test_isolated_inputs_run_alone_so_crashes_take_no_innocent_input_with_them(tmp_path):
    """Two poisonous inputs in different batches, two workers, tasks queued on the dying workers:
    every innocent input still ends ``ok`` and each poisonous one is one ``error`` row."""
    items = [(f"ok{i}", f"ok{i}.fits") for i in range(8)]
    items[2:2] = [("crash0", "crash0.fits")]
    items[7:7] = [("crash1", "crash1.fits")]
    s = _crash_run(items, tmp_path / "run", n_workers=2, batch_size=2, max_in_flight=4)
    rows = {r["name"]: r["status"] for r in pq.read_table(tmp_path / "run" / "catalog.parquet").to_pylist()}
    assert rows == {**{f"ok{i}": "ok" for i in range(8)}, "crash0": "error", "crash1": "error"}
    assert (s.ok, s.errors) == (8, 2)


# ----------------------------------------------------------------------------- fir-map and posterior


def test_fir_map_run_from_a_catalogue_with_a_bad_galaxy(tmp_path, cluster, capsys):
    from astropy.table import Table

    from galdust.fir.maps import write_band_image
    from galdust.fir.mock import make_mock
    from galdust.pipeline.tasks import FirMapTask

    sed, truth = FIR_SED, FIR_TRUTH
    rows = []
    for i in range(2):
        m = make_mock(sed, sed, truth, truth, w1_total=0.1, rng=np.random.default_rng(i), peak_snr=300.0)
        d = tmp_path / "img" / f"ngc{i}"
        d.mkdir(parents=True)
        files = [write_band_image(d / f"{im.band}.fits", im).relative_to(tmp_path) for im in m.images]
        rows.append((f"ngc{i}", ";".join(map(str, files)), 10.0 + i))
    rows.append(("broken", "img/ngc0/wise_w1.fits;img/missing.fits", 5.0))
    Table(rows=rows, names=["name", "images", "distance"]).write(tmp_path / "gals.csv")
    out = tmp_path / "run"
    args = ["run", "fir-map", "--catalog", str(tmp_path / "gals.csv"), "--out", str(out), "--scheduler",
            cluster.scheduler_address, "--quiet"]
    assert main(args) == 1
    assert "2 ok, 1 errors" in capsys.readouterr().out
    t = pq.read_table(out / "catalog.parquet")
    assert t.schema == cat.schema(FirMapTask.fields)
    r = {x["name"]: x for x in t.to_pylist()}
    assert r["broken"]["status"] == "error" and "missing.fits" in r["broken"]["error"]
    for i in range(2):
        x = r[f"ngc{i}"]
        assert x["status"] == "ok" and x["n_bands"] == 18 and x["n_pix"] > 100 and x["distance_mpc"] == 10.0 + i
        with fits.open(out / f"ngc{i}.fir.fits") as h:
            td, mask = h["TD"].data, h["MASK"].data
            assert x["n_pix"] == int(mask.sum()) and x["td_median"] == pytest.approx(np.median(td[mask == 1]))
    assert main(args) == 0
    assert "0 ok, 0 errors, 3 already done" in capsys.readouterr().out


def _sdss_table(path, n=7):
    sdss_table(path, n, nan_flux=(3, 1))  # a row that cannot be predicted
    return path


def test_posterior_run_rows_are_the_same_whatever_the_batching(tmp_path, cluster, capsys):
    from galdust.pipeline.tasks import PosteriorTask

    table = _sdss_table(tmp_path / "sdss.fits")
    common = ["--catalog", str(table), "--scheduler", cluster.scheduler_address, "--samples", "200", "--steps", "8",
              "--quiet"]
    res = []
    for bs in (2, 5):
        out = tmp_path / f"run{bs}"
        assert main(["run", "posterior", "--out", str(out), "--batch-size", str(bs), *common]) == 1
        assert "6 ok, 1 errors" in capsys.readouterr().out
        t = pq.read_table(out / "catalog.parquet")
        assert t.schema == cat.schema(PosteriorTask().fields)
        res.append({x["name"]: x for x in t.to_pylist()})
    a, b = res
    assert a["103"]["status"] == "error" and "missing flux in sdss_g" in a["103"]["error"]
    assert a["103"]["z_p50"] is None
    for name in a:
        if name == "103":
            continue
        assert a[name]["input"] == f"{table}#{int(name) - 100}"
        for p in PosteriorTask().props:
            lo, mid, hi = (a[name][f"{p}_{q}"] for q in ("p16", "p50", "p84"))
            assert lo < mid < hi, (name, p)
            assert b[name][f"{p}_p50"] == pytest.approx(mid, abs=1e-5)  # each object's key is its own
        assert 0.0 <= a[name]["z_p50"] < 0.4


def test_posterior_run_with_the_sdss_redshift_model(tmp_path, cluster, capsys):
    """``--model z-sdss``: z from the redshift model on the row's features and CFM summary, the other
    properties the CFM's, as ``galdust posterior sample --model z-sdss`` does."""
    from galdust.cli import DEFAULT_POSTERIOR, NAMED_POSTERIORS
    from galdust.pipeline.tasks import PosteriorTask
    from galdust.posterior.data import read_catalog
    from galdust.posterior.model import load_model
    from galdust.posterior.redshift import RedshiftModel, cfm_features, sdss_table_features

    table = _sdss_table(tmp_path / "sdss.fits")
    out = tmp_path / "run"
    # the batching and sample counts of the test above: its compiled samplers are reused
    assert main(["run", "posterior", "--out", str(out), "--model", "z-sdss", "--save-samples", "--catalog", str(table),
                 "--scheduler", cluster.scheduler_address, "--samples", "200", "--steps", "8", "--batch-size", "5",
                 "--quiet"]) == 1
    assert "6 ok, 1 errors" in capsys.readouterr().out
    t = pq.read_table(out / "catalog.parquet")
    assert t.schema == cat.schema(PosteriorTask(model=str(NAMED_POSTERIORS["z-sdss"])).fields)
    z = {x["name"]: x for x in t.to_pylist()}
    assert z["103"]["status"] == "error" and z["103"]["z_p50"] is None
    with fits.open(out / "100.samples.fits") as h:
        assert h[0].header["MODEL"] == "z_sdss" and h[0].header["ZSAMPLES"] == "cfm"
        assert h[0].data.shape == (200, 6)
    zm = RedshiftModel.load(NAMED_POSTERIORS["z-sdss"])
    cfm, _ = load_model(zm.cfm_path(DEFAULT_POSTERIOR.parent))
    flux, X = read_catalog(table).flux, sdss_table_features(table)[0]
    for rows in ([0, 1, 2, 4], [5, 6]):  # the rows of each batch
        want = zm.predict(np.c_[X[rows], cfm_features(cfm, flux[rows])])
        for j, i in enumerate(rows):
            r = z[str(100 + i)]
            assert [r[f"z_{q}"] for q in ("p16", "p50", "p84")] == pytest.approx(want[j], abs=1e-5)
    # the same object gets the same numbers from galdust posterior sample (one API, per-name keys)
    assert main(["posterior", "sample", "--catalog", str(table), "--out", str(tmp_path / "p.fits"), "--model",
                 "z-sdss", "--samples", "200", "--steps", "8"]) == 0
    with fits.open(tmp_path / "p.fits") as h:
        single = {str(n): row for n, row in zip(h[1].data["name"], h[1].data)}
    for name, r in z.items():
        if r["status"] != "ok":
            continue
        for p in ("log_mstar", "log_sfr", "logzsol", "dn4000", "av", "z"):
            for q in ("p16", "p50", "p84"):
                assert r[f"{p}_{q}"] == pytest.approx(float(single[name][f"{p}_{q}"]), abs=1e-5), (name, p, q)


def test_run_fit_dust_level_gauge_matches_galdust_fit(tmp_path, good_inputs, cluster, capsys):
    """``galdust run fit --dust-level gauge`` fits as ``galdust fit --dust-level gauge`` does."""
    out = tmp_path / "run"
    common = ["--max-iter", "30", "--no-detect", "--dust-level", "gauge"]
    assert main(["run", "fit", "--inputs", str(good_inputs[0]), "--out", str(out), "--scheduler",
                 cluster.scheduler_address, "--quiet", *common]) == 0
    assert main(["fit", str(good_inputs[0]), "--out", str(tmp_path / "single"), "--quiet", *common]) == 0
    with fits.open(out / "g0.dust.fits") as a, fits.open(tmp_path / "single" / "g0.dust.fits") as b:
        assert a[0].header["NITER"] == b[0].header["NITER"]  # dust-free + dust iterations
        assert a[0].header["AV_LW"] == pytest.approx(b[0].header["AV_LW"], abs=1e-4)  # as the map below
        np.testing.assert_allclose(a["AV"].data, b["AV"].data, atol=1e-4)  # float32, batched differently
    capsys.readouterr()
    assert main(["run", "fit", "--inputs", str(good_inputs[0]), "--out", str(tmp_path / "r2"), "--dust-level",
                 "deep"]) == 2
    assert "unknown --dust-level 'deep'" in capsys.readouterr().err


def test_fit_task_options_resolve_the_level_defaults():
    assert FitTask().options()["max_iter"] == 300 and "dust_level" not in FitTask().options()
    o = FitTask(dust_level="gauge").options()
    assert o["max_iter"] == 1000 and o["dust_level"] == "gauge"
    assert FitTask(max_iter=50, dust_level="gauge").options()["max_iter"] == 50
