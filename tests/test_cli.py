import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits

from galdust.cli import main
from galdust.io import read_cube


def run(*args):
    return subprocess.run([sys.executable, "-m", "galdust.cli", *args], capture_output=True, text=True)


def test_version_and_help(capsys):
    r = run("--version")  # the module entry point, in a fresh process
    assert r.returncode == 0 and r.stdout.startswith("galdust ")
    for cmd in ([], ["simulate"], ["demo"], ["posterior", "train-z"]):  # in this process: no interpreter start-up
        capsys.readouterr()
        assert main([*cmd, "--help"]) == 0
        assert "Usage" in capsys.readouterr().out
    # help texts are plain text: a unit in brackets is shown, not read as markup and dropped
    assert main(["fir", "map", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Output pixels [arcsec]" in out and "PA [deg]" in out


def test_simulate_writes_readable_cubes_and_truth(tmp_path, capsys):
    """Cubes with their truth; hosts with rest-frame dust (--dust-frame rest) carry their REDSHIFT, which
    `galdust fit` reads and says its dust is rest-frame (AVFRAME, REDSHIFT); a bad --redshift is one
    line (the option replacing the header: test_io)."""
    import json

    out = tmp_path / "sim"
    rc = main(["simulate", "--n", "3", "--size", "32", "--seed", "1", "--out", str(out), "--quiet", "--plot",
               "--z-range", "0.4,0.4", "--dust-frame", "rest"])
    assert rc == 0
    files = sorted(out.glob("gal_*.fits"))
    assert len(files) == 3
    obs = read_cube(files[0])
    assert obs.bands == ("sdss_g", "sdss_r", "sdss_i", "sdss_z") and obs.cube.shape == (4, 32, 32)
    assert obs.redshift == pytest.approx(0.4)
    with fits.open(files[0]) as h:
        assert {"TRUE_HOST", "TRUE_S", "TRUE_D", "TRUE_AV", "IVAR", "PSF"} <= {x.name for x in h}
        av_lw = h[0].header["T_AVLW"]
        assert h[0].header["REDSHIFT"] == pytest.approx(0.4) and h[0].header["DUSTFRM"] == "rest"
    capsys.readouterr()
    assert main(["fit", str(files[0]), "--out", str(tmp_path / "a"), "--method", "amortized"]) == 0
    assert "(rest frame, z 0.4)" in capsys.readouterr().out
    d = json.loads((tmp_path / "a" / "gal_000000.json").read_text())
    assert d["AVFRAME"] == "rest" and d["REDSHIFT"] == pytest.approx(0.4)
    with fits.open(tmp_path / "a" / "gal_000000.dust.fits") as h:
        assert h[0].header["AVFRAME"] == "rest"
    capsys.readouterr()
    assert main(["fit", str(files[0]), "--out", str(tmp_path / "c"), "--redshift", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--redshift -1: not a redshift" in err and err.count("\n") == 1 and not (tmp_path / "c").exists()
    import pyarrow.parquet as pq

    t = pq.read_table(out / "truth.parquet").to_pydict()
    assert t["name"] == ["gal_000000", "gal_000001", "gal_000002"]
    assert t["av_lw"][0] == pytest.approx(av_lw)
    assert (out / "truth.csv").exists() and (out / "simulations.png").stat().st_size > 10000
    # refuses to overwrite
    rc = main(["simulate", "--n", "3", "--size", "32", "--out", str(out), "--quiet"])
    assert rc == 2 and "exists" in capsys.readouterr().err


def test_simulate_bulk_store(tmp_path):
    out = tmp_path / "train.npz"
    assert main(["simulate", "--bulk", "--n", "5", "--size", "32", "--out", str(out), "--quiet", "--isochromatic"]) == 0
    with np.load(out) as d:
        assert d["S"].shape == (5, 32, 32) and d["D"].shape == (5, 32, 32)
        assert (d["D"] <= 1).all() and int(d["seed"]) == 0
        assert "isochromatic=True" in str(d["config"])
    # hosts farther than the default z 0.02-0.15 (stores for a network trained over redshift)
    far = tmp_path / "far.npz"
    assert main(["simulate", "--bulk", "--n", "3", "--size", "16", "--z-range", "0.5,0.8", "--out", str(far), "--quiet"]) == 0
    with np.load(far) as d:
        assert ((d["p_z_sed"] >= 0.5) & (d["p_z_sed"] <= 0.8)).all() and "z_range=(0.5, 0.8)" in str(d["config"])


@pytest.mark.parametrize("args,words", [(["--z-range", "0.8"], "expected LO,HI"),
                                        (["--z-range", "0.8,0.3"], "z_range must be 0 < lo <= hi"),
                                        (["--z-range", "0.3,0.8", "--hosts", "stress"], "only for --hosts realistic"),
                                        (["--dust-frame", "rest", "--hosts", "stress"], "only for --hosts realistic"),
                                        (["--dust-frame", "sideways"], "dust_frame must be one of observed, rest")])
def test_a_bad_redshift_range_is_one_line_error(tmp_path, capsys, args, words):
    rc = main(["simulate", "--n", "1", "--out", str(tmp_path / "never"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and words in err and not (tmp_path / "never").exists()


def test_unknown_band_is_one_line_error(tmp_path, capsys):
    rc = main(["simulate", "--n", "1", "--out", str(tmp_path / "never"), "--bands", "sdss_g,sdss_rr"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "sdss_r" in err


def test_commands_keep_compiled_programs_in_the_user_cache(tmp_path, monkeypatch):
    """A command compiles into $XDG_CACHE_HOME/galdust/xla (read back by the next command), unless the
    user chose a folder (JAX_COMPILATION_CACHE_DIR) or switched it off (GALDUST_XLA_CACHE=off)."""
    import os

    from galdust.cli import xla_cache_dir

    assert xla_cache_dir({"XDG_CACHE_HOME": "/c"}) == "/c/galdust/xla"
    assert xla_cache_dir({"XDG_CACHE_HOME": "/c", "JAX_COMPILATION_CACHE_DIR": "/mine"}) is None
    assert xla_cache_dir({"XDG_CACHE_HOME": "/c", "GALDUST_XLA_CACHE": "off"}) is None
    assert xla_cache_dir({}).endswith(os.path.join(".cache", "galdust", "xla"))
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}  # the suite's own cache
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    r = subprocess.run([sys.executable, "-m", "galdust.cli", "simulate", "--n", "1", "--size", "16", "--hosts", "stress",
                        "--out", str(tmp_path / "s"), "--quiet"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "cache" / "galdust" / "xla").iterdir())  # the simulator (> 1 s to compile)
    from galdust.cli import _use_xla_cache

    (tmp_path / "file").write_text("")  # a cache folder that cannot be made: no cache, nothing set
    env = {"XDG_CACHE_HOME": str(tmp_path / "file")}
    _use_xla_cache(env)
    assert "JAX_COMPILATION_CACHE_DIR" not in env


def test_fit_takes_quoted_globs_cubes_named_by_bands_and_refuses_clashing_names_in_one_line(tmp_path, capsys):
    """What a user types: a quoted glob (expanded as the shell would), a cube whose header lacks BANDS
    (--bands names its planes), and the mistakes: two inputs with one output name (the second is
    refused, the first written), --out a file, a folder or a text file as input; galdust's warnings
    are one line each."""
    from conftest import FAST, pipeline_galaxy

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    pipeline_galaxy(tmp_path / "a" / "g0.fits", 0)
    pipeline_galaxy(tmp_path / "a" / "g1.fits", 1)
    pipeline_galaxy(tmp_path / "b" / "g0.fits", 2)
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "a" / "g*.fits"), "--out", str(tmp_path / "o1"), *FAST]) == 0
    assert "fitted 2 of 2 inputs" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "o1").glob("*.dust.fits")) == ["g0.dust.fits", "g1.dust.fits"]
    assert main(["fit", str(tmp_path / "nothing*.fits"), "--out", str(tmp_path / "o0"), *FAST]) == 2
    assert "nothing*.fits: no file matches" in capsys.readouterr().err

    rc = main(["fit", str(tmp_path / "a" / "g0.fits"), str(tmp_path / "b" / "g0.fits"), "--out", str(tmp_path / "o2"),
               "--overwrite", "--quiet", *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "b/g0.fits: its outputs (g0.dust.fits, ...) would be those of" in err[0]
    assert [p.name for p in (tmp_path / "o2").glob("*.dust.fits")] == ["g0.dust.fits"]

    (tmp_path / "afile").write_text("x")
    assert main(["fit", str(tmp_path / "a" / "g0.fits"), "--out", str(tmp_path / "afile"), *FAST]) == 2
    assert capsys.readouterr().err.strip() == f"galdust: error: {tmp_path / 'afile'}: --out is a file, not a folder"
    (tmp_path / "notes.txt").write_text("not an image\n" * 100)
    assert main(["fit", str(tmp_path / "a"), str(tmp_path / "notes.txt"), "--out", str(tmp_path / "o3"), *FAST]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a'}: a folder, not a FITS file (give its files, e.g. {tmp_path / 'a' / '*.fits'})" in err
    assert f"{tmp_path / 'notes.txt'}: not a FITS file" in err and "ignore_missing_simple" not in err

    # a cube without BANDS (and without noise: galdust warns, in one line)
    data = fits.getdata(tmp_path / "a" / "g1.fits")
    fits.PrimaryHDU(data).writeto(tmp_path / "nobands.fits")
    assert main(["fit", str(tmp_path / "nobands.fits"), "--out", str(tmp_path / "o4"), *FAST]) == 1
    assert "no band names" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "nobands.fits"), "--bands", "sdss_g,sdss_r,sdss_i,sdss_z", "--out",
                 str(tmp_path / "o4"), "--quiet", *FAST]) == 0
    err = capsys.readouterr().err
    assert "galdust: warning: " in err and "no noise given" in err and "UserWarning" not in err
    assert fits.getheader(tmp_path / "o4" / "nobands.dust.fits")["BANDS"] == "sdss_g,sdss_r,sdss_i,sdss_z"
    assert main(["fit", str(tmp_path / "a" / "g1.fits"), "--bands", "sdss_r,sdss_g,sdss_i,sdss_z", "--out",
                 str(tmp_path / "o5"), *FAST]) == 1
    assert "header BANDS sdss_g,sdss_r,sdss_i,sdss_z differ from --bands sdss_r,sdss_g" in capsys.readouterr().err
    fits.PrimaryHDU(data[0]).writeto(tmp_path / "g.fits")  # per-band files given space-separated
    assert main(["fit", str(tmp_path / "g.fits"), "--bands", "sdss_g,sdss_r", "--out", str(tmp_path / "o6"), *FAST]) == 1
    assert "one image with 2 bands: give one galaxy's per-band files as one comma-separated input" in (
        capsys.readouterr().err)


@pytest.mark.parametrize("args,words", [
    (["--snr", "-5"], "Invalid value for '--snr'"),  # wrote noisy images with a noiseless IVAR
    (["--snr-kind", "bogus"], "snr_kind must be 'matched' or 'peak', not 'bogus'"),  # was 'unexpected ValueError'
    (["--n-los", "0"], "Invalid value for '--n-los'"),  # was 'unexpected ZeroDivisionError'
    (["--psf-fwhm", "-1"], "Invalid value for '--psf-fwhm'"),
    (["--bands", "sdss_g,sdss_g"], "a band is given twice"),
])
def test_simulate_refuses_impossible_settings_in_one_line(tmp_path, capsys, args, words):
    assert main(["simulate", "--n", "1", "--out", str(tmp_path / "s"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("galdust: error: ") and words in err[0]
    assert not (tmp_path / "s").exists()


def test_simulate_refuses_a_store_name_without_bulk(tmp_path, capsys):
    # was: a folder named s.npz full of cube FITS
    assert main(["simulate", "--n", "1", "--out", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a .npz store is written with --bulk" in err[0]
    assert not (tmp_path / "s.npz").exists()
