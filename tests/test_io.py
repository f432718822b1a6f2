import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from galdust.io import InputError, OutputExistsError, read_band_files, read_cube, read_npz, read_observation, write_cube

BANDS = ["sdss_g", "sdss_r", "sdss_i"]


def make_wcs(n=16):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [n / 2, n / 2]
    w.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    return w


def write_raw(path, data, bands=BANDS, ivar=None, psf=None, var=None, err=None, extra_hdr=None, wcs=None, sci=False):
    hdr = wcs.to_header() if wcs is not None else fits.Header()
    if bands is not None:
        hdr["BANDS"] = ",".join(bands)
    for k, v in (extra_hdr or {}).items():
        hdr[k] = v
    if sci:
        hdus = [fits.PrimaryHDU(), fits.ImageHDU(data, header=hdr, name="SCI")]
    else:
        hdus = [fits.PrimaryHDU(data, header=hdr)]
    for name, arr in (("IVAR", ivar), ("VAR", var), ("ERR", err), ("PSF", psf)):
        if arr is not None:
            hdus.append(fits.ImageHDU(arr, name=name))
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture
def cube():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3, 16, 16)).astype(np.float32) + 5.0


def test_round_trip_keeps_data_wcs_and_provenance(tmp_path, cube):
    ivar = np.full_like(cube, 4.0)
    psf = np.ones((3, 5, 5))
    w = make_wcs()
    p = write_cube(tmp_path / "c.fits", cube, BANDS, ivar=ivar, psf=psf, wcs=w, unit="nanomaggy",
                   provenance=[("GDVERS", "0.1.0", "v"), ("GDCMD", "galdust test", "c")])
    obs = read_cube(p)
    np.testing.assert_array_equal(obs.cube, cube)
    np.testing.assert_array_equal(obs.ivar, ivar)
    np.testing.assert_allclose(obs.psf.sum(axis=(1, 2)), 1.0, rtol=1e-6)
    assert obs.bands == tuple(BANDS)
    assert obs.unit == "nanomaggy"
    assert obs.wcs is not None
    np.testing.assert_allclose(obs.wcs.pixel_to_world_values(3, 4), w.pixel_to_world_values(3, 4))
    h = fits.getheader(p)
    assert h["GDCMD"] == "galdust test"
    assert obs.wave_eff[1] == pytest.approx(0.6168, abs=1e-3)


def test_write_refuses_to_overwrite_and_leaves_no_temp(tmp_path, cube):
    p = write_cube(tmp_path / "c.fits", cube, BANDS)
    with pytest.raises(OutputExistsError):
        write_cube(p, cube, BANDS)
    write_cube(p, cube * 2, BANDS, overwrite=True)
    assert read_cube(p).cube.mean() == pytest.approx(2 * cube.mean(), rel=1e-5)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c.fits"]


def test_writer_checks_band_count(tmp_path, cube):
    with pytest.raises(ValueError, match="does not match 2 bands"):
        write_cube(tmp_path / "c.fits", cube, BANDS[:2])
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing(tmp_path, cube):
    with pytest.raises(Exception):
        write_cube(tmp_path / "c.fits", cube, BANDS, extra={"BAD": np.array(["x"])})
    assert list(tmp_path.iterdir()) == []


def test_sci_hdu_var_and_err(tmp_path, cube):
    var = np.full_like(cube, 0.25)
    o1 = read_cube(write_raw(tmp_path / "a.fits", cube, var=var, sci=True))
    np.testing.assert_allclose(o1.ivar, 4.0)
    o2 = read_cube(write_raw(tmp_path / "b.fits", cube, err=np.full_like(cube, 0.5)))
    np.testing.assert_allclose(o2.ivar, 4.0)


def test_waveeff_for_unknown_band(tmp_path, cube):
    p = write_raw(tmp_path / "a.fits", cube, bands=["sdss_g", "mycam_x", "sdss_i"],
                  ivar=np.ones_like(cube), extra_hdr={"WAVEEFF": "0.47,0.62,0.75"})
    obs = read_cube(p)
    assert obs.bands[1] == "mycam_x" and obs.wave_eff[1] == pytest.approx(0.62)


def test_nan_pixels_masked_and_counted(tmp_path, cube):
    cube[0, 2, 3] = np.nan
    cube[2, 5, 5] = np.inf
    p = write_raw(tmp_path / "a.fits", cube, ivar=np.ones_like(cube))
    with pytest.warns(UserWarning, match="2 NaN/inf pixel values masked"):
        obs = read_cube(p)
    assert obs.ivar[0, 2, 3] == 0 and obs.ivar[2, 5, 5] == 0
    assert np.isfinite(obs.cube).all()
    assert (obs.ivar == 0).sum() == 2


def test_noise_estimated_from_background(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(0, 0.3, size=(3, 64, 64)).astype(np.float32)
    data[:, 30:34, 30:34] += 50.0  # a source, clipped away
    p = write_raw(tmp_path / "a.fits", data)
    with pytest.warns(UserWarning, match="noise estimated"):
        obs = read_cube(p)
    np.testing.assert_allclose(1 / np.sqrt(obs.ivar[:, 0, 0]), 0.3, rtol=0.05)


@pytest.mark.parametrize(
    "kind,match",
    [
        ("negative_ivar", "negative"),
        ("zero_ivar", "zero everywhere"),
        ("ivar_shape", "does not match"),
        ("psf_bands", "PSF must be"),
        ("unknown_band", "unknown band 'sdss_rr'"),
        ("band_count", "2 band names"),
        ("not_3d", "must be 3-D"),
        ("no_bands", "no band names"),
        ("truncated", "cannot read FITS"),
        ("missing", "no such file"),
        ("garbage", "not a FITS file (no valid FITS header at its start)"),
        ("nan_band", "NaN/inf everywhere"),
        ("text_ivar", "IVAR HDU is not a numeric image"),
    ],
)
def test_bad_input_one_line_error_naming_file(tmp_path, cube, kind, match):
    p = tmp_path / f"{kind}.fits"
    ones = np.ones_like(cube)
    if kind == "negative_ivar":
        write_raw(p, cube, ivar=-ones)
    elif kind == "zero_ivar":
        iv = ones.copy()
        iv[1] = 0
        write_raw(p, cube, ivar=iv)
    elif kind == "ivar_shape":
        write_raw(p, cube, ivar=ones[:, :8])
    elif kind == "psf_bands":
        write_raw(p, cube, ivar=ones, psf=np.ones((2, 5, 5)))
    elif kind == "unknown_band":
        write_raw(p, cube, bands=["sdss_g", "sdss_rr", "sdss_i"])
    elif kind == "band_count":
        write_raw(p, cube, bands=["sdss_g", "sdss_r"])
    elif kind == "not_3d":
        write_raw(p, cube[0])
    elif kind == "no_bands":
        write_raw(p, cube, bands=None)
    elif kind == "truncated":
        write_raw(tmp_path / "full.fits", cube, ivar=ones)
        b = (tmp_path / "full.fits").read_bytes()
        p.write_bytes(b[: len(b) - 4000])
    elif kind == "garbage":
        p.write_bytes(b"this is not a FITS file" * 200)
    elif kind == "nan_band":
        c = cube.copy()
        c[1] = np.nan
        write_raw(p, c, ivar=ones)
    elif kind == "text_ivar":
        from astropy.table import Table

        hdr = fits.Header()
        hdr["BANDS"] = ",".join(BANDS)
        fits.HDUList([fits.PrimaryHDU(cube, header=hdr),
                      fits.BinTableHDU(Table({"a": ["x", "y"]}), name="IVAR")]).writeto(p)
    with pytest.raises(InputError) as e:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_cube(p)
    msg = str(e.value)
    assert match in msg
    assert str(p) in msg
    assert "\n" not in msg


def test_per_band_files(tmp_path, cube):
    w = make_wcs()
    paths = []
    for b, plane in zip(BANDS, cube):
        fits.PrimaryHDU(plane, header=w.to_header()).writeto(tmp_path / f"{b}.fits")
        paths.append(tmp_path / f"{b}.fits")
    with pytest.warns(UserWarning):
        obs = read_observation(paths, bands=BANDS)
    np.testing.assert_array_equal(obs.cube, cube)
    assert obs.wcs is not None
    fits.PrimaryHDU(cube[0, :8]).writeto(tmp_path / "small.fits")
    with pytest.raises(InputError, match="differs"):
        read_band_files([paths[0], tmp_path / "small.fits", paths[2]], BANDS)


def test_npz_scene(shared_data):
    obs = read_npz(shared_data / "hsc" / "hsc_cosmos_35.npz")
    assert obs.bands == ("hsc_g", "hsc_r", "hsc_i", "hsc_z", "hsc_y")
    assert obs.cube.shape == (5, 58, 48) and obs.psf.shape == (5, 43, 43)
    assert (obs.ivar >= 0).all() and (obs.ivar > 0).mean() > 0.5
    np.testing.assert_allclose(obs.psf.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_npz_without_variance_warns(shared_data):
    with pytest.warns(UserWarning, match="noise estimated"):
        obs = read_npz(shared_data / "hsc" / "hsc_cosmos.npz")
    assert (obs.ivar > 0).all()


def test_atomic_dir_renames_only_a_finished_folder(tmp_path):
    from galdust.io import atomic_dir

    d = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_dir(d) as tmp:
            (tmp / "a.json").write_text("{}")
            raise RuntimeError("interrupted")
    assert not d.exists() and list(tmp_path.iterdir()) == []  # nothing half-written is left
    with atomic_dir(d) as tmp:
        (tmp / "a.json").write_text("1")
    assert (d / "a.json").read_text() == "1"
    with pytest.raises(OutputExistsError):
        with atomic_dir(d) as tmp:
            pass
    with atomic_dir(d, overwrite=True) as tmp:
        (tmp / "b.json").write_text("2")
    assert sorted(p.name for p in d.iterdir()) == ["b.json"] and len(list(tmp_path.iterdir())) == 1


def test_write_image_fits_is_the_file_astropy_writes(tmp_path):
    """The text-assembled extension headers give, card for card (keys and values) and byte for byte
    of data, what astropy's HDUList.writeto gives: WCS, quotes, a long string (CONTINUE), uint8 and
    float images."""
    from galdust.io import fits_card, write_image_fits

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [150.1, 2.2], [32.5, 32.5], [-4.7e-5, 4.7e-5]
    prim = fits.Header()
    prim["BANDS"] = ("sdss_g,sdss_r", "band names")
    prim["GDCMD"] = "galdust fit " + " ".join(f"/long/path/galaxy_{i}.fits" for i in range(12))
    prim["CHI2"] = (1.0123456789, "reduced chi2")
    rng = np.random.default_rng(0)
    imgs = [("AV", rng.normal(size=(8, 8)).astype(np.float32), "mag"),
            ("CUBE", rng.normal(size=(2, 8, 8)).astype(np.float32), "it's nMgy"),
            ("MASK", (rng.random((8, 8)) > 0.5).astype(np.uint8), "")]
    wcs_cards = w.to_header().tostring(endcard=False, padding=False)
    write_image_fits(tmp_path / "ours.fits", prim, [
        (n, a, wcs_cards + (fits_card("BUNIT", u) if u else "") + (fits_card("BANDS", "sdss_g,sdss_r") if a.ndim == 3 else ""))
        for n, a, u in imgs])
    hdus = [fits.PrimaryHDU(header=prim)]
    for n, a, u in imgs:
        h = fits.ImageHDU(a, header=w.to_header(), name=n)
        if u:
            h.header["BUNIT"] = u
        if a.ndim == 3:
            h.header["BANDS"] = "sdss_g,sdss_r"
        hdus.append(h)
    fits.HDUList(hdus).writeto(tmp_path / "astropy.fits")
    with fits.open(tmp_path / "ours.fits") as ours, fits.open(tmp_path / "astropy.fits") as ref:
        ours.verify("exception")
        assert len(ours) == len(ref) == 4
        for x, y in zip(ours, ref):
            assert dict(x.header.items()) == dict(y.header.items())  # EXTNAME may sit elsewhere
            assert (x.data is None and y.data is None) or (x.data.dtype == y.data.dtype and np.array_equal(x.data, y.data))
        assert WCS(ours["AV"].header).wcs.compare(w.wcs) and ours[0].header["GDCMD"] == prim["GDCMD"]
    with pytest.raises(OutputExistsError):
        write_image_fits(tmp_path / "ours.fits", prim, [])


def test_card_cuts_the_comment_to_one_card_without_astropy_warning():
    """A too-long comment used to reach astropy, whose 'comment will be truncated' warning every fit
    printed, and which open_fits' filter made an error in a thread writing while another read (a
    fit_files that read ahead, tried in session 24, lost every file of its second chunk to it)."""
    import warnings

    from astropy.io import fits

    from galdust.io import card

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for key, value in (("HOSTS", "realistic"), ("AV_LW", 0.003299735486507415), ("CONVERGE", False), ("N", 7)):
            v, c = card(key, value, "a comment much too long to fit beside its value on one card, " * 2)
            im = fits.Card(key, v, c).image
            assert len(im) == 80 and v == value and len(c) >= 40 and im.rstrip().endswith(c)
        assert card("K", 1.0, "short") == (1.0, "short")
        assert card("LONG", "x" * 75, "comment") == ("x" * 75, "")  # a CONTINUE'd value keeps no comment


def test_the_recorded_command_line_shortens_long_input_lists_and_keeps_the_options(monkeypatch):
    """Each output records the command that wrote it (GDCMD); over thousands of inputs the list is
    shortened (each file names its own inputs in GDIN cards), the options all kept."""
    import sys

    from galdust.io import command_line, provenance_cards

    argv = ["/venv/bin/galdust", "fit"] + [f"/data/gal_{i:06d}.fits" for i in range(2048)] + [
        "--out", "fits/", "--method", "amortized", "--quiet"]
    assert command_line(argv) == ("galdust fit /data/gal_000000.fits ... (+2047 more) --out fits/ --method amortized "
                                  "--quiet")
    short = ["/venv/bin/galdust", "fit", "a.fits", "b.fits", "--out", "fits/", "--plot"]
    assert command_line(short) == "galdust fit a.fits b.fits --out fits/ --plot"  # short ones stay whole
    monkeypatch.setattr(sys, "argv", argv)
    cards = dict((k, v) for k, v, _ in provenance_cards(inputs=["/data/gal_000007.fits"]))
    assert cards["GDCMD"] == command_line(argv) and cards["GDIN1"] == "/data/gal_000007.fits"


def test_the_header_redshift_is_read_and_a_given_one_takes_its_place(tmp_path, cube):
    """A cube whose header has REDSHIFT is a galaxy at that redshift (the dust fit then works in its rest
    frame); ``redshift=`` (galdust fit --redshift) replaces it; a bad value is one line naming the file."""
    ones = np.ones_like(cube)
    write_raw(tmp_path / "z.fits", cube, ivar=ones, extra_hdr={"REDSHIFT": 0.42})
    write_raw(tmp_path / "noz.fits", cube, ivar=ones)
    assert read_cube(tmp_path / "z.fits").redshift == pytest.approx(0.42)
    assert read_cube(tmp_path / "noz.fits").redshift is None
    assert read_observation(tmp_path / "z.fits", redshift=0.1).redshift == pytest.approx(0.1)
    assert read_observation(tmp_path / "noz.fits", redshift=0.7).redshift == pytest.approx(0.7)
    for bad, words in (("-0.2", "is not a redshift"), ("far", "is not a number")):
        write_raw(tmp_path / "bad.fits", cube, ivar=ones, extra_hdr={"REDSHIFT": bad if bad == "far" else float(bad)})
        with pytest.raises(InputError) as e:
            read_cube(tmp_path / "bad.fits")
        assert words in str(e.value) and "bad.fits" in str(e.value) and "\n" not in str(e.value)
        (tmp_path / "bad.fits").unlink()
    # per-band files: one band's REDSHIFT is the galaxy's; two that differ are an error
    paths = []
    for j, (b, plane) in enumerate(zip(BANDS, cube)):
        hdr = fits.Header()
        if j < 2:
            hdr["REDSHIFT"] = 0.3 + 0.1 * j
        fits.HDUList([fits.PrimaryHDU(plane, header=hdr), fits.ImageHDU(np.ones_like(plane), name="IVAR")]).writeto(
            tmp_path / f"{b}.fits")
        paths.append(tmp_path / f"{b}.fits")
    with pytest.raises(InputError, match="different REDSHIFT"):
        read_band_files(paths, BANDS)
    with fits.open(paths[1], mode="update") as h:
        h[0].header["REDSHIFT"] = 0.3
    assert read_band_files(paths, BANDS).redshift == pytest.approx(0.3)
