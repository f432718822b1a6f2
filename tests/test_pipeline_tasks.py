"""galdust.pipeline.tasks: the fit, fir-map and posterior tasks run as their single-object commands do."""


import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import FIR_SED, FIR_TRUTH, sdss_table
from astropy.io import fits
from astropy.table import Table

from galdust.cli import main
from galdust.pipeline import catalog as cat
from galdust.pipeline.tasks import FitTask


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
    # --photo-z: the inferred redshift's samples too must not depend on the batching
    common = ["--catalog", str(table), "--scheduler", cluster.scheduler_address, "--samples", "200", "--steps", "8",
              "--quiet", "--photo-z"]
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
    from galdust.posterior.kinds import load_model
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
        assert h[0].header["MODEL"] == "z_sdss" and h[0].header["CFMMODEL"] == "cfm_phot_sdss_z_onestep.eqx"
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
    # the host model is part of a run's options unless it is 'single', the default before session 25: a
    # run begun then resumes with --host single, and never mixes two host models under the new default
    assert "host" not in FitTask(host="single").options() and FitTask(host="bulge-disk").options()["host"] == "bulge-disk"
    assert FitTask().options()["host"] == "clumps"  # 'auto' is recorded as the model it means ...
    assert "host" not in FitTask(dust_level="gauge").options()  # ... 'single' with the gauge level
    assert FitTask(dust_level="gauge", host="clumps").options()["host"] == "clumps"


def test_auto_host_is_clumps_with_the_default_level_and_single_with_gauge():
    from galdust.dust.api import fit_config
    from galdust.dust.fit import resolve_host

    assert fit_config().host == "clumps" and fit_config("gauge").host == "single"
    assert fit_config("gauge", host="clumps").host == "clumps" and fit_config(host="single").host == "single"
    assert resolve_host("bulge-disk", "gauge") == "bulge-disk"
    with pytest.raises(ValueError, match=r"unknown --host 'spiral' \(auto, single, "):
        resolve_host("spiral")


def test_every_entry_point_has_galdust_fits_default_host():
    """The CLI modules and the run task spell the default host without importing JAX (fast --help):
    they must agree with ``galdust.dust.fit.DEFAULT_HOST``, as ``make_fitter`` does by import."""
    import inspect

    from galdust.cli import evaluate as cli_evaluate, fit as cli_fit, run as cli_run
    from galdust.dust.api import make_fitter
    from galdust.dust.fit import DEFAULT_HOST
    from galdust.pipeline.tasks import _dust_fitter

    def default(fn, name):
        return inspect.signature(inspect.unwrap(fn)).parameters[name].default

    assert DEFAULT_HOST == "auto"
    assert default(cli_fit.fit, "host") == default(cli_run.run_cmd, "host") == DEFAULT_HOST
    assert default(cli_evaluate.evaluate_dust, "host_model") == DEFAULT_HOST
    assert FitTask().host == default(_dust_fitter, "host") == default(make_fitter, "host") == DEFAULT_HOST


def test_run_fit_bad_host_is_a_one_line_error_before_any_cluster(tmp_path, capsys):
    rc = main(["run", "fit", "--inputs", str(tmp_path / "*.fits"), "--out", str(tmp_path / "r"), "--host", "spiral"])
    assert rc == 2 and capsys.readouterr().err.count("\n") == 1


def test_run_posterior_default_is_the_tables_default_as_in_posterior_sample(tmp_path, cluster, capsys):
    """Without --model, SDSS tables given by --inputs get what galdust posterior sample gives them: the
    properties at their spectroscopic redshift (Z) when every row has one, else (or with --photo-z)
    z-sdss."""
    import json

    table = _sdss_table(tmp_path / "sdss.fits")
    out = tmp_path / "run"
    common = ["--scheduler", cluster.scheduler_address, "--samples", "200", "--batch-size", "5", "--quiet"]
    main(["run", "posterior", "--out", str(out), "--inputs", str(table), *common])
    assert "spectroscopic redshift (Z)" in capsys.readouterr().err
    opts = json.loads((out / ".galdust-run" / "run.json").read_text())
    assert json.dumps(opts).count("cfm_phot_sdss_z_onestep") >= 1 and json.dumps(opts).count('"Z"') >= 1
    t = pq.read_table(out / "catalog.parquet").to_pylist()
    assert sum(r["status"] == "ok" for r in t) == 6
    zcol = dict(zip(map(str, Table.read(table)["OBJID"]), Table.read(table)["Z"]))
    assert all(r["z_p50"] == pytest.approx(float(zcol[r["name"]])) for r in t if r["status"] == "ok")
    out = tmp_path / "photoz"
    main(["run", "posterior", "--out", str(out), "--inputs", str(table), "--photo-z", *common])
    opts = json.loads((out / ".galdust-run" / "run.json").read_text())
    assert json.dumps(opts).count("z_sdss") >= 1
    t = pq.read_table(out / "catalog.parquet").to_pylist()
    assert sum(r["status"] == "ok" for r in t) == 6
    assert main(["run", "posterior", "--out", str(out), "--inputs", str(table), "--photo-z", "--redshift-column",
                 "Z", *common]) == 2


def test_run_posterior_at_known_redshifts_equals_posterior_sample(tmp_path, cluster, capsys):
    """--redshift-column Z on Dask: cfm-onestep-z by default, z columns are the column, and each object
    gets the numbers galdust posterior sample gives it."""
    table = _sdss_table(tmp_path / "sdss.fits")
    out = tmp_path / "run"
    main(["run", "posterior", "--out", str(out), "--catalog", str(table), "--redshift-column", "Z",
          "--scheduler", cluster.scheduler_address, "--samples", "200", "--batch-size", "5", "--quiet"])
    rows = {r["name"]: r for r in pq.read_table(out / "catalog.parquet").to_pylist()}
    assert main(["posterior", "sample", "--catalog", str(table), "--out", str(tmp_path / "p.fits"),
                 "--redshift-column", "Z", "--samples", "200"]) == 0
    with fits.open(tmp_path / "p.fits") as h:
        single = {str(n): row for n, row in zip(h[1].data["name"], h[1].data)}
        zcol = dict(zip(map(str, Table.read(table)["OBJID"]), Table.read(table)["Z"]))
    ok = [n for n, r in rows.items() if r["status"] == "ok"]
    assert len(ok) >= 5
    for n in ok:
        assert rows[n]["z_p50"] == pytest.approx(float(zcol[n]))
        for p in ("log_mstar", "log_sfr", "av"):
            assert rows[n][f"{p}_p50"] == pytest.approx(float(single[n][f"{p}_p50"]), abs=1e-5), (n, p)
    assert main(["run", "fit", "--out", str(tmp_path / "f"), "--catalog", str(table), "--redshift-column", "Z"]) == 2


def test_empty_csv_cells_are_missing_and_out_of_range_redshifts_are_flagged_in_sample_and_run(tmp_path, cluster,
                                                                                              capsys):
    """A CSV row with an empty flux or redshift cell is a missing value (a note, no answer; an error row
    in a run), never a measured 0; a known z beyond the simulator's is answered with flag 1 and a note;
    posterior sample and run posterior say the same."""
    f = "{},4.02,0.65,29.4,0.32,98.2,0.58,155.6,0.94,212.4,2.5,{}"
    head = "name," + ",".join(f"flux_sdss_{b},flux_err_sdss_{b}" for b in "ugriz") + ",Z"
    rows = [f.format("ok", 0.05), f.format("noz", ""), f.format("far", 0.9),
            f.format("nog", 0.05).replace(",29.4,", ",,")]
    (tmp_path / "t.csv").write_text("\n".join([head] + rows) + "\n")
    assert main(["posterior", "sample", "--catalog", str(tmp_path / "t.csv"), "--redshift-column", "Z",
                 "--out", str(tmp_path / "p.fits"), "--samples", "50"]) == 0
    t = {str(r["name"]): r for r in fits.getdata(tmp_path / "p.fits", 1)}
    assert t["noz"]["note"] == "no usable redshift in Z" and np.isnan(t["noz"]["log_mstar_p50"])
    assert t["nog"]["note"] == "missing flux in sdss_g" and np.isnan(t["nog"]["log_mstar_p50"])
    assert t["far"]["flag"] == 1 and "Z = 0.9 is beyond the training redshifts" in t["far"]["note"]
    assert t["ok"]["flag"] == 0 and np.isfinite(t["ok"]["log_mstar_p50"])
    out = tmp_path / "run"
    assert main(["run", "posterior", "--catalog", str(tmp_path / "t.csv"), "--redshift-column", "Z", "--out", str(out),
                 "--samples", "50", "--scheduler", cluster.scheduler_address, "--quiet"]) == 1  # error rows
    r = {x["name"]: x for x in pq.read_table(out / "catalog.parquet").to_pylist()}
    assert (r["noz"]["status"], r["noz"]["error"]) == ("error", "no usable redshift in Z")
    assert (r["nog"]["status"], r["nog"]["error"]) == ("error", "missing flux in sdss_g")
    assert r["far"]["status"] == "ok" and r["far"]["flag"] == 1 and r["far"]["note"] == t["far"]["note"]
    assert r["ok"]["flag"] == 0 and r["ok"]["note"] is None
    assert r["ok"]["log_mstar_p50"] == pytest.approx(float(t["ok"]["log_mstar_p50"]), abs=1e-5)
    capsys.readouterr()
    assert main(["posterior", "sample", "--catalog", str(tmp_path / "t.csv"), "--redshift-column", "z",
                 "--out", str(tmp_path / "q.fits")]) == 2
    assert capsys.readouterr().err.strip().endswith("no column 'z' (--redshift-column); did you mean 'Z'?")


def test_run_fit_amortized_catalogue_keeps_the_networks_sigma(tmp_path, good_inputs, cluster, capsys):
    """The σ that --method amortized adds are catalogue columns (they were only in the FITS and JSON).
    A catalogue's ``redshift`` column gives each galaxy its rest frame (an empty cell: none), as the
    header REDSHIFT does; the catalogue records it; a bad one is one line."""
    import pyarrow.parquet as pq

    (tmp_path / "cat.csv").write_text(f"path,redshift\n{good_inputs[0]},0.12\n{good_inputs[1]},\n")
    out = tmp_path / "run"
    assert main(["run", "fit", "--catalog", str(tmp_path / "cat.csv"), "--out", str(out), "--scheduler",
                 cluster.scheduler_address, "--quiet", "--method", "amortized"]) == 0
    rows = {r["name"]: r for r in pq.read_table(out / "catalog.parquet").to_pylist()}
    row = rows["g0"]
    with fits.open(out / "g0.dust.fits") as h:
        assert row["av_lw_err"] == pytest.approx(h[0].header["AVLW_ERR"]) and row["av_lw_err"] > 0
        assert row["delta_err"] == pytest.approx(h[0].header["DELTAERR"])
        assert h[0].header["AVFRAME"] == "rest" and row["redshift"] == pytest.approx(0.12)
    with fits.open(out / "g1.dust.fits") as h:
        assert h[0].header["AVFRAME"] == "observed" and rows["g1"]["redshift"] is None
    (tmp_path / "bad.csv").write_text(f"path,z\n{good_inputs[0]},-3\n")
    capsys.readouterr()
    assert main(["run", "fit", "--catalog", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "r2"),
                 "--scheduler", cluster.scheduler_address, "--quiet", "--method", "amortized"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv: row 'g0': z -3 is not a redshift" in err and err.count("\n") == 1


def test_rows_written_before_a_column_was_added_read_back_with_it_null(tmp_path):
    """A run begun by an older galdust resumes: its rows lack the newer columns, which read as null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from galdust.pipeline import catalog as cat

    old = cat.schema([("av_lw", pa.float64())])
    new = cat.schema([("av_lw", pa.float64()), ("av_lw_err", pa.float64())])
    row = {f.name: None for f in old}
    row.update(name="g0", input="g0.fits", status="ok", av_lw=0.3)
    pq.write_table(pa.Table.from_pylist([row], schema=old), tmp_path / cat.CATALOG)
    table, _ = cat.read_rows(tmp_path, new)
    assert table.schema == new and table.to_pylist()[0]["av_lw"] == 0.3
    assert table.to_pylist()[0]["av_lw_err"] is None
