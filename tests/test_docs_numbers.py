"""Numbers the README quotes for shipped models equal the metrics their sidecars hold."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DATA = ROOT / "src" / "galdust" / "data"


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_fir_global_cv_numbers_match_the_sidecar():
    cv = json.loads((DATA / "fir" / "fir_model.json").read_text())["cv"]
    m = re.search(r"RMSE ([\d.]+) dex \(sL_d\), ([\d.]+) dex \(sM_d\), ([\d.]+) K \(T_d\)", _flat(README))
    assert m, "the README's FIR CV sentence is gone"
    for got, t, nd in zip(m.groups(), ("log_sLd", "log_sMd", "Td"), (3, 3, 2)):
        assert float(got) == pytest.approx(round(cv[t]["rmse"], nd), abs=10 ** -nd / 2)
    m = re.search(r"σ calibration χ² ([\d.]+) / ([\d.]+) / ([\d.]+)", _flat(README))
    for got, t in zip(m.groups(), ("log_sLd", "log_sMd", "Td")):
        assert float(got) == pytest.approx(round(cv[t]["chi2"], 2), abs=0.005)


def test_fast_fir_mlp_fidelity_matches_the_sidecar():
    fid = json.loads((DATA / "fir" / "fast.json").read_text())["fidelity"]
    m = re.search(r"rms difference from the trees is ([\d.]+) dex \(log sL_d\), ([\d.]+) dex \(log sM_d\) and "
                  r"([\d.]+) K \(T_d\), ([\d.]+)–([\d.]+) of the model's own σ", _flat(README))
    assert m, "the README's fast-MLP sentence is gone"
    a, b, c, lo, hi = map(float, m.groups())
    assert a == pytest.approx(fid["log_sLd"]["rms_dmu"], abs=5e-4)
    assert b == pytest.approx(fid["log_sMd"]["rms_dmu"], abs=5e-4)
    assert c == pytest.approx(fid["Td"]["rms_dmu"], abs=5e-3)
    ratios = [fid[t]["rms_dmu_over_sigma"] for t in ("log_sLd", "log_sMd", "Td")]
    assert lo == pytest.approx(min(ratios), abs=5e-3) and hi == pytest.approx(max(ratios), abs=5e-3)
