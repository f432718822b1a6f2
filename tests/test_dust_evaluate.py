"""`galdust evaluate dust` end to end on a few simulated galaxies: tables and per-galaxy CSV."""

import csv

import numpy as np

from galdust.cli import main
from galdust.dust.evaluate import galaxy_metrics, light_contour


def test_metrics_on_a_known_map():
    host = np.zeros((8, 8))
    host[2:6, 2:6] = 1.0
    truth = np.where(host > 0, np.linspace(0.0, 1.0, 64).reshape(8, 8), 0.0)
    m = galaxy_metrics(2.0 * truth + 0.1, host, truth, host)
    assert m["corr"] == 1.0 or abs(m["corr"] - 1.0) < 1e-12
    assert abs(m["dAV"] - (np.sum(host * (truth + 0.1)) / np.sum(host))) < 1e-12
    assert light_contour(host, 0.84).sum() == 14  # 14 of the 16 equal pixels hold ≥ 84 %
    inside = truth[light_contour(host, 0.84)]
    assert abs(m["av_sd_true"] - inside.std()) < 1e-12 and abs(m["av_sd_fit"] - 2.0 * inside.std()) < 1e-12


def test_evaluate_dust_off_and_gauge(tmp_path):
    out = tmp_path / "ev"
    rc = main(["evaluate", "dust", "--out", str(out), "--n", "2", "--snr", "50", "--hosts", "isochromatic",
               "--starts", "red", "--priors", "off,gauge", "--batch-size", "2", "--quiet"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "eval_dust.csv")))
    assert [r["setting"] for r in rows] == ["off", "off", "gauge", "gauge"]
    assert all(np.isfinite(float(r["dAV"])) for r in rows)
    md = (out / "eval_dust.md").read_text()
    assert "priors off" in md and "priors gauge" in md
    assert main(["evaluate", "dust", "--out", str(tmp_path / "x"), "--priors", "maybe"]) == 2
