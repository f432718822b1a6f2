"""Every command that reads a user's file answers a bad one with one line, a non-zero exit and no output.

One line on stderr naming the file and the problem (``galdust: error: FILE: ...``), never a Python
traceback, exit status ≠ 0, and nothing written where the output would go.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from galdust.cli import main


def _cube(path, data, ivar=None, bands="sdss_g,sdss_r", extra=None):
    h = fits.PrimaryHDU(data)
    if bands is not None:
        h.header["BANDS"] = bands
    hdus = [h]
    if ivar is not None:
        hdus.append(fits.ImageHDU(ivar, name="IVAR"))
    for e in extra or []:
        hdus.append(e)
    fits.HDUList(hdus).writeto(path)
    return path


def _good(nb=2, n=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    img = np.exp(-(yy**2 + xx**2) / 8.0)
    return (img[None] * np.arange(1, nb + 1)[:, None, None] + 0.01 * rng.normal(size=(nb, n, n))).astype(np.float32)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """name -> path of each bad input (images and tables)."""
    d = tmp_path_factory.mktemp("bad")
    g = _good()
    f = {}
    f["missing"] = d / "does_not_exist.fits"
    (d / "text.fits").write_text("this is not a FITS file\n" * 20)
    f["not FITS"] = d / "text.fits"
    _cube(d / "full.fits", g, np.full_like(g, 1e4))
    raw = (d / "full.fits").read_bytes()
    (d / "truncated.fits").write_bytes(raw[: len(raw) // 2 + 100])
    f["truncated FITS"] = d / "truncated.fits"
    f["1-D image"] = _cube(d / "oned.fits", np.arange(10.0))
    f["4-D image"] = _cube(d / "fourd.fits", g[None])
    f["NaN everywhere"] = _cube(d / "nan.fits", np.full_like(g, np.nan), np.full_like(g, 1e4))
    f["inf pixels only"] = _cube(d / "inf.fits", np.full_like(g, np.inf), np.full_like(g, 1e4))
    f["negative ivar"] = _cube(d / "negivar.fits", g, -np.ones_like(g))
    f["zero ivar"] = _cube(d / "zeroivar.fits", g, np.zeros_like(g))
    f["ivar of wrong shape"] = _cube(d / "ivarshape.fits", g, np.ones((2, 8, 8), np.float32))
    f["unknown band"] = _cube(d / "unknown.fits", g, np.full_like(g, 1e4), bands="sdss_g,nosuch_band")
    f["no band names"] = _cube(d / "nobands.fits", g, np.full_like(g, 1e4), bands=None)
    f["band count mismatch"] = _cube(d / "nbands.fits", g, np.full_like(g, 1e4), bands="sdss_g")
    f["constant image"] = _cube(d / "constant.fits", np.ones_like(g))
    f["empty (no data)"] = d / "empty.fits"
    fits.PrimaryHDU().writeto(f["empty (no data)"])
    t = {}
    t["missing table"] = d / "no_table.csv"
    (d / "garbage.csv").write_bytes(b"\x00\x01\x02garbage\xff\xfe" * 50)
    t["garbage table"] = d / "garbage.csv"
    Table(dict(a=[1.0, 2.0], b=[3.0, 4.0])).write(d / "wrong_cols.csv")
    t["missing columns (csv)"] = d / "wrong_cols.csv"
    Table(dict(a=[1.0, 2.0], b=[3.0, 4.0])).write(d / "wrong_cols.fits")
    t["missing columns (FITS)"] = d / "wrong_cols.fits"
    (d / "empty.csv").write_text("")
    t["empty table"] = d / "empty.csv"
    return d, f, t


IMAGE_CASES = ["missing", "not FITS", "truncated FITS", "1-D image", "4-D image", "NaN everywhere", "inf pixels only",
               "negative ivar", "zero ivar", "ivar of wrong shape", "unknown band", "no band names",
               "band count mismatch", "constant image", "empty (no data)"]
TABLE_CASES = ["missing table", "garbage table", "missing columns (csv)", "missing columns (FITS)", "empty table"]

# command templates: {IN} the bad file, {OUT} where the output would go
IMAGE_COMMANDS = {
    "fit": ["fit", "{IN}", "--out", "{OUT}", "--max-iter", "5", "--quiet"],
    "fit per-band": ["fit", "{IN},{IN}", "--bands", "sdss_g,sdss_r", "--out", "{OUT}", "--quiet"],
    "fir map": ["fir", "map", "--images", "{IN}", "--out", "{OUT}/x.fir.fits"],
    "info": ["info", "{IN}"],
}
TABLE_COMMANDS = {
    "fir predict": ["fir", "predict", "--photometry", "{IN}", "--out", "{OUT}/pred.csv"],
    "fir train": ["fir", "train", "--photometry", "{IN}", "--properties", "{IN}", "--out", "{OUT}/m"],
    "posterior sample": ["posterior", "sample", "--catalog", "{IN}", "--out", "{OUT}/post.fits"],
    "posterior train": ["posterior", "train", "--sims", "{IN}", "--out", "{OUT}/m.eqx"],
    "posterior train-z": ["posterior", "train-z", "--catalog", "{IN}", "--out", "{OUT}/z"],
    "posterior train-vaenf": ["posterior", "train-vaenf", "--sims", "{IN}", "--out", "{OUT}/v.eqx"],
    "posterior distill": ["posterior", "distill", "--model", "cfm-phot", "--sims", "{IN}", "--out", "{OUT}/o.eqx"],
}


def _check(argv, out, capsys):
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.lstrip().startswith(("Warning", "warnings.warn"))
             and "Warning:" not in x and not x.startswith("galdust: warning:")]
    assert rc != 0, f"{argv}: exit 0"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("galdust: error: "), err
    assert not out.exists() or not any(out.iterdir()), f"partial outputs left in {out}: {list(out.iterdir())}"
    return lines[0]


CASES = ([("image", c, k) for c in IMAGE_COMMANDS for k in IMAGE_CASES]
         + [("table", c, k) for c in TABLE_COMMANDS for k in TABLE_CASES])


@pytest.mark.parametrize("kind,command,case", CASES, ids=[f"{c}-{k}" for _, c, k in CASES])
def test_bad_input_is_one_line_naming_the_file_and_writes_nothing(kind, command, case, bad, tmp_path, capsys):
    _, images, tables = bad
    path = (images if kind == "image" else tables)[case]
    template = (IMAGE_COMMANDS if kind == "image" else TABLE_COMMANDS)[command]
    out = tmp_path / "out"
    line = _check([a.replace("{IN}", str(path)).replace("{OUT}", str(out)) for a in template], out, capsys)
    assert path.name in line


def test_bad_mask_file_and_mistyped_option(bad, tmp_path, capsys):
    d, f, _ = bad
    good = _cube(tmp_path / "good.fits", _good(), np.full((2, 16, 16), 1e4, np.float32))
    out = tmp_path / "out"
    for m in (f["not FITS"], f["1-D image"], f["missing"]):
        assert f"{m.name}" in _check(["fit", str(good), "--out", str(out), "--mask", str(m)], out, capsys)
    line = _check(["fit", str(good), "--out", str(out), "--noise-hdus", "2"], out, capsys)
    assert "--noise-hdus" in line


def test_existing_output_needs_overwrite(tmp_path, capsys):
    good = _cube(tmp_path / "good.fits", _good(), np.full((2, 16, 16), 1e4, np.float32))
    out = tmp_path / "out"
    out.mkdir()
    (out / "good.dust.fits").write_text("keep me")
    line = _check(["fit", str(good), "--out", str(out), "--max-iter", "5", "--quiet", "--no-priors"], tmp_path / "none",
                  capsys)
    assert "exists" in line and (out / "good.dust.fits").read_text() == "keep me"
    (tmp_path / "post.fits").write_text("keep me")
    Table(dict(MODELFLUX=np.ones((2, 5)))).write(tmp_path / "t.fits")
    _check(["posterior", "sample", "--catalog", str(tmp_path / "t.fits"), "--out", str(tmp_path / "post.fits")],
           tmp_path / "none", capsys)
    assert (tmp_path / "post.fits").read_text() == "keep me"


def test_bad_training_store_and_fir_photometry(bad, tmp_path, capsys):
    """train-prior reads an npz store; fir distill a photometry table into a model folder it must not touch."""
    import shutil

    from galdust.fir.model import DEFAULT_MODEL

    _, f, t = bad
    out = tmp_path / "out"
    (tmp_path / "empty.npz").write_bytes(b"")
    np.savez(tmp_path / "nos.npz", other=np.ones(3))
    for store in (f["missing"], f["not FITS"], tmp_path / "empty.npz", tmp_path / "nos.npz"):
        assert store.name in _check(["train-prior", "dust", "--data", str(store), "--out", str(out / "p.eqx"),
                                     "--steps", "2"], out, capsys)
    model = tmp_path / "fir"
    shutil.copytree(DEFAULT_MODEL, model)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    for case in TABLE_CASES:
        assert t[case].name in _check(["fir", "distill", "--model", str(model), "--photometry", str(t[case])], out,
                                      capsys)
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
