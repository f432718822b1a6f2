"""FIR photometry readers and features on hand-made rows (flags, NaN, negative fluxes, formats)."""

import numpy as np
import pytest

from galdust.fir.data import UVMIR_BANDS, read_photometry, read_properties
from galdust.fir.model import build_features, feature_names, metrics
from galdust.io import InputError

I = {b: i for i, b in enumerate(UVMIR_BANDS)}


def _dustpedia_csv(path, rows):
    cols = ["GALEX_FUV", "SDSS_r", "WISE_3.4", "WISE_22", "Spitzer_3.6"]
    head = ["name"] + [c + s for c in cols for s in ("", "_err", "_flag")]
    lines = [",".join(head)]
    for name, vals in rows:
        lines.append(",".join([name] + [str(v) for c in cols for v in vals.get(c, ("", "", ""))]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dustpedia_flags_nan_and_negative(tmp_path):
    p = _dustpedia_csv(tmp_path / "dp.csv", [
        ("A", {"GALEX_FUV": (0.01, 0.001, ""), "SDSS_r": (0.5, 0.01, "c"), "WISE_3.4": (1.0, 0.01, ""),
               "WISE_22": (0.2, 0.01, "C")}),
        ("B", {"GALEX_FUV": (-0.001, 0.002, ""), "SDSS_r": ("nan", "", ""), "WISE_3.4": (0.8, 0.01, "N"),
               "Spitzer_3.6": (0.9, 0.01, "")}),
        ("C", {"GALEX_FUV": (0.002, 0.001, ""), "WISE_3.4": (2.0, 0.02, "")}),
    ])
    ph = read_photometry(p)
    assert ph.names == ["A", "B", "C"]
    f = ph.flux
    assert f[0, I["galex_fuv"]] == pytest.approx(0.01) and f[0, I["sdss_r"]] == pytest.approx(0.5)  # 'c' kept
    assert np.isnan(f[0, I["wise_w4"]]) and not ph.upper[0, I["wise_w4"]]  # 'C' contaminated: unusable
    assert np.isnan(f[1, I["galex_fuv"]]) and ph.upper[1, I["galex_fuv"]]  # negative: non-detection
    assert np.isnan(f[1, I["wise_w1"]]) and ph.upper[1, I["wise_w1"]]  # 'N' flag
    assert np.isnan(f[2, I["galex_fuv"]]) and ph.upper[2, I["galex_fuv"]]  # 2σ: non-detection
    X, usable = build_features(ph)
    names = feature_names()
    assert X.shape == (3, len(names)) and usable.tolist() == [True, True, True]
    j = names.index("log_galex_fuv_w1")
    assert X[0, j] == pytest.approx(np.log10(0.01 / 1.0))
    # row B has no WISE 3.4: IRAC 3.6 normalises instead; its missing bands stay NaN
    assert X[1, names.index("log_irac_1_w1")] == pytest.approx(0.0) and np.isnan(X[1, j])
    k = names.index("log_galex_fuv_wise_w4")
    assert np.isnan(X[0, k])
    # the linear ratios keep what was measured, non-detections included; unusable ('C') stays missing
    lin = names.index("lin_galex_fuv_w1")
    assert X[0, lin] == pytest.approx(0.01)
    assert X[1, lin] == pytest.approx(-0.001 / 0.9)  # negative flux, normalised by IRAC 3.6
    assert X[2, lin] == pytest.approx(0.002 / 2.0)  # a 2σ measurement
    assert np.isnan(X[0, names.index("lin_wise_w4_w1")])  # 'C'
    assert np.isnan(X[1, names.index("lin_sdss_r_w1")])  # NaN in the table


def test_our_format_and_errors(tmp_path):
    p = tmp_path / "ours.csv"
    p.write_text("name,sdss_r,sdss_r_err,wise_w1,wise_w1_err\nx,0.5,0.01,1.0,0.01\ny,0.2,0.01,,\n")
    ph = read_photometry(p)
    X, usable = build_features(ph)
    assert usable.tolist() == [True, False]
    assert X[0, feature_names().index("log_sdss_r_w1")] == pytest.approx(np.log10(0.5))
    bad = tmp_path / "bad.csv"
    bad.write_text("name,foo\nx,1\n")
    with pytest.raises(InputError, match="no known band columns"):
        read_photometry(bad)
    with pytest.raises(InputError, match="no such file"):
        read_photometry(tmp_path / "nope.csv")


def test_properties_reader(tmp_path):
    p = tmp_path / "cig.csv"
    p.write_text("id,Mstar__Msol,Mstar_err,Lbolo__Lsol,Lbolo_err,Mdust__Msol,Mdust_err,Ldust__Lsol,Ldust_err,"
                 "Tdust__K,Tdust_err\n"
                 "g1,1e10,1e9,1e11,1e10,1e7,1e6,1e10,1e9,25,1\n"
                 "g2,nan,nan,nan,nan,nan,nan,nan,nan,nan,nan\n")
    pr = read_properties(p)
    assert list(pr) == ["g1"]
    assert pr["g1"]["log_sLd"] == pytest.approx(-1.0) and pr["g1"]["log_sMd"] == pytest.approx(-3.0)
    assert pr["g1"]["Td"] == 25 and pr["g1"]["log_sLd_err"] == pytest.approx(np.hypot(0.1, 0.1) / np.log(10))


def test_metrics_and_calibration_maths():
    rng = np.random.default_rng(0)
    y = rng.normal(size=4000)
    sig = np.exp(rng.normal(-1, 0.3, size=4000))
    mu = y + sig * rng.normal(size=4000)
    m = metrics(y, mu, sig, n_boot=200)
    assert m["chi2"] == pytest.approx(1.0, abs=0.06) and m["frac_1sigma"] == pytest.approx(0.683, abs=0.02)
    assert abs(m["bias"]) < 3 * m["bias_err"] + 1e-3
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(sig**2)), rel=0.05)
    m2 = metrics(y, mu, 2 * sig, n_boot=50)
    assert m2["chi2"] == pytest.approx(m["chi2"] / 4, rel=1e-6)
