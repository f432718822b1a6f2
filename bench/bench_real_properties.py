"""Posterior stellar masses and SFRs of real SDSS galaxies against independent measurements.

The development tables `../shared/data/sdss/sdss_dev_alfalfa_props.fits` (34 galaxies: GSWLC-2 log M*
and log SFR, UV-IR CIGALE fits, Chabrier IMF, SFR over 100 Myr; Taylor et al. 2011 colour-M/L masses)
and `sdss_dev_manga_props.fits` (67 galaxies: NSA log M*, kcorrect, Chabrier) are run through
`galdust.posterior.api.summarise_catalog` with each model; the table prints the median offset
(galdust − reference), σ_NMAD and the fraction of references inside galdust's 16–84 % interval.
Conventions are not converted here (galdust's log M* is the living mass, bagpipes' convention; the
references' IMF is Chabrier as galdust's BC03 grid): the offsets include that difference.
Baseline: a colour–M/L mass (Taylor et al. 2011, log M/L_i = −0.68 + 0.70 (g − i), observed
extinction-corrected colours, M_i⊙ = 4.58, Planck18 distances; for the ALFALFA rows the catalogue's own
Taylor masses are printed too). Small samples: for checking, never for tuning.

    python bench/bench_real_properties.py [--models default,photo-z,photo-z-heldout,known-z,cfm-phot]

``default``: what ``galdust posterior sample`` does with these tables: every row has a spectroscopic
``Z``, so the properties at it (cfm-onestep-z). ``known-z``: the same, asked for (``--redshift-column
Z``). ``photo-z``: ``--photo-z`` (z from ``z-sdss``, whose training rows include these galaxies).
``photo-z-heldout``: the same with a ``z-sdss`` booster refitted (shipped settings and interval
factor) on the development rows that are not in these two tables, so their redshifts are
out-of-sample, as for the held-back galaxies.
Coverage is printed for the posterior's own 16–84 % interval and with a systematic floor added in
quadrature (``--floor-mass 0.1 --floor-sfr 0.2`` dex: stellar-population model, IMF and SFH-family
systematics between SED codes, e.g. Pacifici et al. 2023 find 0.1–0.2 dex in M* and 0.3 in SFR).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from astropy.table import Table

from galdust.posterior.api import summarise_catalog

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sdss"


def stats(x, ref, lo=None, hi=None, floor=0.0):
    ok = np.isfinite(x) & np.isfinite(ref)
    d = x[ok] - ref[ok]
    cov = ""
    if lo is not None:
        inside = lambda lo_, hi_: 100 * np.mean((ref[ok] >= lo_) & (ref[ok] <= hi_))  # noqa: E731
        lo2 = x[ok] - np.hypot(x[ok] - lo[ok], floor)
        hi2 = x[ok] + np.hypot(hi[ok] - x[ok], floor)
        cov = f"{inside(lo[ok], hi[ok]):.0f} % | {inside(lo2, hi2):.0f} %"
    return f"{ok.sum()} | {np.median(d):+.2f} | {1.4826 * np.median(np.abs(d - np.median(d))):.2f} | {cov}"


def taylor_mass(t):
    from astropy.cosmology import Planck18

    f = np.asarray(t["MODELFLUX"], float) * 10 ** (0.4 * np.asarray(t["EXTINCTION"], float))
    m = 22.5 - 2.5 * np.log10(np.clip(f, 1e-3, None))
    dl = Planck18.luminosity_distance(np.asarray(t["Z"], float)).to("pc").value
    Mi = m[:, 3] - 5 * np.log10(dl / 10.0)
    return -0.68 + 0.70 * (m[:, 1] - m[:, 3]) - 0.4 * (Mi - 4.58)


def heldout_redshift_model(tables) -> str:
    """A z-sdss model folder (in a temporary directory) whose booster is refitted, with the shipped
    settings, on the development rows that are not in ``tables`` (matched by position to 1″); the
    shipped interval factor and CFM."""
    import tempfile

    from galdust.posterior.api import NAMED_POSTERIORS
    from galdust.posterior.data import read_catalog
    from galdust.posterior.kinds import load_model
    from galdust.posterior.redshift import RedshiftModel, _fit, cfm_features, sdss_table_features

    dev = DATA / "sdss_galaxies_dev.fits"
    shipped = RedshiftModel.load(NAMED_POSTERIORS["z-sdss"])
    td = Table.read(dev)
    ra, dec = np.asarray(td["RA"], float), np.asarray(td["DEC"], float)
    keep = np.ones(len(td), bool)
    for t in tables:
        for r, d in zip(np.asarray(t["RA"], float), np.asarray(t["DEC"], float)):
            sep = np.hypot((ra - r) * np.cos(np.radians(d)), dec - d) * 3600
            keep &= sep > 1.0
    X, z = sdss_table_features(dev)
    cfm, _ = load_model(shipped.cfm_path(NAMED_POSTERIORS["z-sdss"].parent))
    cat = read_catalog(dev, cfm.bands)
    keep &= np.array([not n for n in cat.notes]) & np.isfinite(z)
    Xf = np.c_[X[keep], cfm_features(cfm, cat.flux[keep])].astype(np.float32)
    booster = _fit(Xf, z[keep], shipped.meta.get("seed", 0), shipped.meta.get("params")).get_booster()
    print(f"photo-z-heldout: z-sdss refitted on {keep.sum()} of {len(td)} development rows")
    out = Path(tempfile.mkdtemp()) / "z_heldout"
    meta = {k: v for k, v in shipped.meta.items() if k not in ("files", "sha256")}
    RedshiftModel(booster, shipped.scale, shipped.features, meta).save(out)
    return str(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="default,known-z")
    ap.add_argument("--floor-mass", type=float, default=0.1)
    ap.add_argument("--floor-sfr", type=float, default=0.2)
    a = ap.parse_args()
    alf = DATA / "sdss_dev_alfalfa_props.fits"
    man = DATA / "sdss_dev_manga_props.fits"
    ta, tm = Table.read(alf), Table.read(man)
    gsw_m, gsw_s = np.asarray(ta["logMstarGSWLC"], float), np.asarray(ta["logSFRGSWLC"], float)
    nsa = np.asarray(tm["MANGA_PHOTOMETRIC_MASS"], float)
    nsa = np.where(nsa > 100, np.log10(np.clip(nsa, 1, None)), nsa)  # linear masses to log
    sf = np.isfinite(gsw_s) & (gsw_s - gsw_m > -11.0)  # star-forming by GSWLC sSFR
    print(f"| what | against | N | median offset [dex] | σ_NMAD [dex] | inside 16–84 % | with floor "
          f"({a.floor_mass:g} M*, {a.floor_sfr:g} SFR dex) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| Taylor colour–M/L (here) | GSWLC log M* | {stats(taylor_mass(ta), gsw_m)} |")
    print(f"| Taylor (ALFALFA catalogue) | GSWLC log M* | {stats(np.asarray(ta['logMstarTaylor'], float), gsw_m)} |")
    print(f"| Taylor colour–M/L (here) | NSA log M* | {stats(taylor_mass(tm), nsa)} |")
    for name in a.models.split(","):
        model = None if name in ("default", "known-z", "photo-z") else name
        if name == "photo-z-heldout":
            model = heldout_redshift_model([ta, tm])
        zcol = "Z" if name == "known-z" else None
        photo_z = name == "photo-z"
        ra = summarise_catalog(alf, model, samples=1000, redshift_column=zcol, photo_z=photo_z).columns
        rm = summarise_catalog(man, model, samples=1000, redshift_column=zcol, photo_z=photo_z).columns
        c = lambda r, k: np.asarray(r[k], float)  # noqa: E731
        print(f"| galdust {name} log M* | GSWLC log M* | {stats(c(ra, 'log_mstar_p50'), gsw_m, c(ra, 'log_mstar_p16'), c(ra, 'log_mstar_p84'), a.floor_mass)} |")
        print(f"| galdust {name} log M* | NSA log M* | {stats(c(rm, 'log_mstar_p50'), nsa, c(rm, 'log_mstar_p16'), c(rm, 'log_mstar_p84'), a.floor_mass)} |")
        s50, s16, s84 = (np.where(sf, c(ra, f"log_sfr_{q}"), np.nan) for q in ("p50", "p16", "p84"))
        print(f"| galdust {name} log SFR (star-forming) | GSWLC log SFR | {stats(s50, gsw_s, s16, s84, a.floor_sfr)} |")


if __name__ == "__main__":
    main()
