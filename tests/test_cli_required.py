"""Each command with only its required options: the defaults are what a new user runs first.

Not here, because their defaults are long jobs (and each is run by the README test with a step
limit): ``train-prior``, ``fir train``/``distill``, ``posterior train``/``train-vaenf``/``distill``/
``train-z`` (training runs of minutes to hours) and ``evaluate dust`` (3,600 fits). ``demo`` runs with
its defaults in ``test_dust_products``; ``run fit`` with only ``--inputs`` and ``--out`` is the README's
first ``galdust run`` command (``test_readme`` checks that it stays so and that it writes no error row).
"""

import numpy as np
from astropy.io import fits

from galdust.cli import main
from conftest import FIR_SED, sdss_table
from test_readme import _fir_images, _sim_cube


def _ok(argv, capsys):
    capsys.readouterr()
    rc = main(argv)
    out = capsys.readouterr()
    assert rc == 0, f"{argv}: exit {rc}\n{out.err[-1500:]}"
    assert "Traceback" not in out.err
    return out


def test_simulate_info_and_simulate_sed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _ok(["simulate", "--out", "sims"], capsys)
    files = sorted((tmp_path / "sims").glob("gal_*.fits"))
    assert len(files) == 8 and fits.getdata(files[0]).shape == (4, 64, 64)
    out = _ok(["info", str(files[0])], capsys)
    assert "sdss_g" in out.out
    _ok(["simulate-sed", "--out", "sed.parquet"], capsys)
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "sed.parquet").num_rows == 1000


def test_fit_with_defaults(tmp_path, capsys):
    o = _sim_cube(tmp_path / "gal.fits", 11)
    out = _ok(["fit", str(tmp_path / "gal.fits"), "--out", str(tmp_path / "o")], capsys)
    assert "priors hsc+dust" in out.out  # the default uses the HSC host prior and the dust prior
    with fits.open(tmp_path / "o" / "gal.dust.fits") as h:
        assert h["AV"].data.shape == o.cube.shape[1:] and h[0].header["PRIORS"] == "hsc+dust"


def test_fir_predict_and_map_with_defaults(tmp_path, capsys):
    from astropy.table import Table

    from galdust.fir.data import UVMIR_BANDS

    rng = np.random.default_rng(0)
    sed = FIR_SED
    cols = {"name": ["a", "b"]}
    for i, b in enumerate(UVMIR_BANDS):
        cols[b] = sed[i] * rng.uniform(0.8, 1.2, 2)
        cols[f"{b}_err"] = 0.05 * cols[b]
    Table(cols).write(tmp_path / "phot.csv")
    _ok(["fir", "predict", "--photometry", str(tmp_path / "phot.csv"), "--out", str(tmp_path / "pred.csv")], capsys)
    t = Table.read(tmp_path / "pred.csv")
    assert len(t) == 2 and np.isfinite(np.asarray(t["Td"], float)).all()
    _fir_images(tmp_path / "img")
    _ok(["fir", "map", "--images", str(tmp_path / "img" / "*.fits"), "--out", str(tmp_path / "m.fir.fits")], capsys)
    with fits.open(tmp_path / "m.fir.fits") as h:
        assert h["TD"].data.shape == h["MASK"].data.shape and h["MASK"].data.sum() > 50


def test_posterior_sample_with_defaults(tmp_path, capsys):
    sdss_table(tmp_path / "sdss.fits")
    # every row has a spectroscopic redshift (Z): by default the properties are those at it, and the
    # user is told so in one line
    out = _ok(["posterior", "sample", "--catalog", str(tmp_path / "sdss.fits"), "--out", str(tmp_path / "z.fits")],
              capsys)
    assert out.out.startswith("cfm-onestep-z:") and out.err.count("\n") == 1 and "spectroscopic redshift (Z)" in out.err
    with fits.open(tmp_path / "z.fits") as h:
        assert h[0].header["ZGIVEN"] == "Z" and h[0].header["ZAUTO"] is True
        np.testing.assert_allclose(h[1].data["z_p50"], fits.getdata(tmp_path / "sdss.fits", 1)["Z"])
    # --photo-z: the SDSS-trained redshift model instead
    out = _ok(["posterior", "sample", "--catalog", str(tmp_path / "sdss.fits"), "--out", str(tmp_path / "p.fits"),
               "--photo-z"], capsys)
    assert out.out.startswith("z-sdss:")
    with fits.open(tmp_path / "p.fits") as h:
        z = h[1].data["z_p50"]
        assert h[0].header["MODEL"] == "z-sdss" and np.isfinite(z).all() and (z > 0).all()
        assert "ZGIVEN" not in h[0].header
        # the input's id column comes along, to join the output back to the input
        assert h[1].data.columns.names[:2] == ["name", "OBJID"] and list(h[1].data["OBJID"]) == list(
            fits.getdata(tmp_path / "sdss.fits", 1)["OBJID"])
