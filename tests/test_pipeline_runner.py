"""galdust.pipeline.runner: discovery, run folders, bad inputs as error rows, resume after a kill, worker crashes."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from galdust.cli import main
from galdust.io import InputError
from galdust.pipeline import catalog as cat
from galdust.pipeline.runner import ClusterLost, discover, prepare_out, run
from galdust.pipeline.tasks import FitTask
from conftest import FAST, pipeline_galaxy as _galaxy


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


def test_local_workers_keep_the_callers_xla_flags_and_add_the_thread_caps():
    from galdust.pipeline.runner import SINGLE_THREAD_ENV, worker_env

    assert worker_env({}) == SINGLE_THREAD_ENV
    env = worker_env({"XLA_FLAGS": " --xla_backend_optimization_level=1 "})
    assert env["XLA_FLAGS"] == "--xla_backend_optimization_level=1 " + SINGLE_THREAD_ENV["XLA_FLAGS"]
    assert {k: v for k, v in env.items() if k != "XLA_FLAGS"} == {k: v for k, v in SINGLE_THREAD_ENV.items()
                                                                  if k != "XLA_FLAGS"}


def test_prepare_out_refuses_foreign_folders_and_changed_options(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(ValueError, match="not a galdust run folder"):
        prepare_out(tmp_path, FitTask())
    prepare_out(tmp_path / "run", FitTask(max_iter=10))
    prepare_out(tmp_path / "run", FitTask(max_iter=10))  # same options: resume
    with pytest.raises(ValueError, match=r"other options \(max_iter was 10, now 20\); resume with the same"):
        prepare_out(tmp_path / "run", FitTask(max_iter=20))


def test_run_against_a_scheduler_address_bad_inputs_become_error_rows(tmp_path, good_inputs, bad_inputs, cluster,
                                                                      capsys, monkeypatch):
    out = tmp_path / "run"
    args = ["run", "fit", "--inputs", str(tmp_path / "in" / "*.fits"), "--out", str(out), "--scheduler",
            cluster.scheduler_address, "--batch-size", "4", "--quiet", *FAST]
    assert main(args) == 1  # some inputs failed
    cap = capsys.readouterr()
    assert "5 ok, 5 errors" in cap.out
    lines = cap.err.strip().splitlines()  # which inputs failed and why, one line each
    assert len(lines) == 5 and all(x.startswith("galdust: error: ") for x in lines), cap.err
    for name, text in bad_inputs.items():  # the input's path once (the messages that start with it say it)
        path = str(tmp_path / "in" / f"{name}.fits")
        assert any(x.startswith(f"galdust: error: {name}") and text in x and x.count(path) == 1 for x in lines), \
            (name, lines)
    t = pq.read_table(out / "catalog.parquet")
    assert t.schema == cat.schema(FitTask.fields)
    rows = {r["name"]: r for r in t.to_pylist()}
    assert len(rows) == t.num_rows == 10
    for name, text in bad_inputs.items():
        assert rows[name]["status"] == "error" and text in rows[name]["error"], (name, rows[name]["error"])
    for i in range(5):
        r = rows[f"g{i}"]
        assert r["status"] == "ok" and r["error"] is None and r["niter"] > 0 and r["runtime_s"] > 0
        assert r["galdust_version"] and r["worker"] and r["start"] == "red"  # auto: the red start for griz too
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
    # with nothing left to run, a re-run starts no local cluster
    import galdust.pipeline.runner as runner_mod

    monkeypatch.setattr(runner_mod, "local_cluster", lambda *a, **k: pytest.fail("a cluster for nothing to run"))
    local = [a for a in args if a not in ("--scheduler", cluster.scheduler_address)]
    assert main(local) == 0 and "0 ok, 0 errors, 10 already done" in capsys.readouterr().out


@pytest.mark.slow
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
            # a cluster that loses both workers for good (a nanny whose restart fails) fails the test
            # in a minute instead of hanging it
            return run(CrashTask(batch_size=batch_size), items, out, client, no_worker_timeout=60.0, **kw)


class SlowTask(FitTask):
    """A fit task that takes a moment per batch and always succeeds."""

    def run_batch(self, items, out):
        time.sleep(0.3)
        return [dict(name=n, input=p, status="ok", error=None, runtime_s=0.3) for n, p in items]


def test_a_cluster_that_loses_every_worker_stops_in_one_line_and_keeps_the_rows_done(tmp_path):
    """The cluster's only worker goes away after the first batch and nothing replaces it: the run
    stops after ``no_worker_timeout`` (instead of waiting forever) with the rows done so far kept."""
    import cloudpickle
    from distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    items = [(f"g{i}", f"g{i}.fits") for i in range(6)]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as c, \
            Client(c) as client:
        def lose_the_workers(ok, err, todo):
            if ok == 1:
                c.scale(0)

        t0 = time.perf_counter()
        with pytest.raises(ClusterLost, match=r"no worker for 1 s .* inputs were recorded, run the same command again"):
            run(SlowTask(batch_size=1), items, tmp_path / "run", client, max_in_flight=1,
                progress=lose_the_workers, no_worker_timeout=1.0)
        assert time.perf_counter() - t0 < 30
    names = cat.read_rows(tmp_path / "run", cat.schema(FitTask.fields))[0].column("name").to_pylist()
    assert 1 <= len(names) < 6 and set(names) <= {n for n, _ in items}


class _StallingClient:
    """A client whose first wait overruns (a loaded machine) and finds the cluster between two workers
    (a nanny restarting one); its tasks run at submission."""

    def __init__(self):
        self.waits = 0

    def submit(self, fn, *args, pure=True):
        from concurrent.futures import Future

        f = Future()
        f.set_result(fn(*args))
        f.release = lambda: None
        return f

    def scheduler_info(self):
        return {"workers": {"w0": {}}}

    def nthreads(self):
        return {} if self.waits == 1 else {"w0": 1}

    def wait(self, futures, timeout, return_when):
        self.waits += 1
        if self.waits == 1:
            time.sleep(0.3)
            raise TimeoutError
        return type("Done", (), {"done": set(futures)})()


def test_a_long_wait_that_ends_between_two_workers_is_not_a_lost_cluster(tmp_path, monkeypatch):
    """The time without a worker is counted from when the cluster is first seen without one: a stall
    longer than ``no_worker_timeout`` that ends while a worker restarts does not stop the run."""
    import distributed

    client = _StallingClient()
    monkeypatch.setattr(distributed, "wait", client.wait)
    items = [(f"g{i}", f"g{i}.fits") for i in range(3)]
    s = run(SlowTask(batch_size=3), items, tmp_path / "run", client, no_worker_timeout=0.2)
    assert (s.ok, s.errors) == (3, 0) and client.waits == 2


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
