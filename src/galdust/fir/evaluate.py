"""Validation of the FIR maps on mocks with per-pixel truth (Dobbels & Baes 2021, §4).

Galaxy-grouped folds: the DustPedia galaxies are split into k folds; the model of fold f is trained
on the other folds' galaxies, and the mocks of fold f are built from pairs of fold-f galaxies only,
so no template was seen in training. Per-pixel statistics weight each pixel by 1/N_pix of its galaxy
(every galaxy counts once), and the residual variance splits into a between-galaxy part (variance of
the galaxies' mean residuals) and a within-galaxy part (mean variance about each galaxy's mean).
"""

from __future__ import annotations

import numpy as np

from .data import TARGETS, UVMIR_BANDS, Photometry
from .maps import make_maps
from .mock import W1, make_mock, truth_on_grid

__all__ = ["template_pool", "galaxy_folds", "global_fold_models", "train_pixel_models", "validate_maps",
           "summarise_pixels"]


def template_pool(phot: Photometry, props: dict, min_bands: int = 12) -> np.ndarray:
    """Indices of galaxies usable as templates: CIGALE properties, W1 and ≥ ``min_bands`` detected bands."""
    return np.array([i for i, n in enumerate(phot.names) if n in props and np.isfinite(phot.flux[i, W1])
                     and np.isfinite(phot.flux[i]).sum() >= min_bands], int)


def galaxy_folds(phot: Photometry, props: dict, k: int = 4, seed: int = 0) -> np.ndarray:
    """Fold of every row of ``phot`` (−1: no properties); whole galaxies, at random."""
    names = [n for n in phot.names if n in props]
    gal_fold = {n: f for n, f in zip(names, np.random.default_rng(seed).permutation(len(names)) % k)}
    return np.array([gal_fold.get(n, -1) for n in phot.names])


def _random_mock(phot, props, cand, rng, peak_snr: float = 50.0):
    a, b = rng.choice(cand, 2, replace=False)
    m = make_mock(phot.flux[a], phot.flux[b], props[phot.names[a]], props[phot.names[b]],
                  w1_total=float(phot.flux[a, W1]), rng=rng, h=float(rng.uniform(8, 16)),
                  q=float(rng.uniform(0.4, 1.0)), pa=float(rng.uniform(0, 180)), peak_snr=peak_snr)
    return m, a, b


def global_fold_models(phot: Photometry, props: dict, *, k: int = 4, seed: int = 0, distill_steps: int = 0,
                       progress=None) -> list:
    """Global models per galaxy fold (fold f trained on the other folds), optionally each with its
    distilled MLP (distillation inputs from the other folds' galaxies only)."""
    from .fast import distill
    from .model import DROPOUT_COPIES, band_dropout_features, build_features, train_model

    fold_of = galaxy_folds(phot, props, k, seed)
    X, _ = build_features(phot)
    Y = {t: np.array([props.get(n, {}).get(t, np.nan) for n in phot.names]) for t in TARGETS}
    models = []
    for f in range(k):
        tr = (fold_of >= 0) & (fold_of != f)
        aug = band_dropout_features(phot, np.flatnonzero(tr), DROPOUT_COPIES, seed + f) if DROPOUT_COPIES else None
        m = train_model(X[tr], {t: Y[t][tr] for t in TARGETS}, seed=seed + f, augment=aug)
        if distill_steps:
            sub = Photometry([n for n, o in zip(phot.names, tr) if o], phot.flux[tr], phot.err[tr], phot.upper[tr],
                             measured=phot.measured_flux()[tr])
            m.fast, m.meta["fast"] = distill(m, sub, steps=distill_steps, seed=seed + f)
        models.append(m)
        if progress is not None:
            progress(f + 1)
    return models


def train_pixel_models(phot: Photometry, props: dict, *, k: int = 4, seed: int = 0, n_mocks: int = 60,
                       pixscale_factor: float = 1 / 3, progress=None) -> list:
    """Per-pixel fold models (Dobbels & Baes 2021): fold f's model is trained on the pixels of
    ``n_mocks`` mocks built from the other folds' galaxies, with weights 1/N_pix(galaxy), folds grouped
    by mock galaxy, and the pixel scale in pc (distance drawn in 5–40 Mpc) as an extra feature."""
    from .maps import log_pixscale_pc, pixel_features
    from .model import feature_names, train_model

    fold_of = galaxy_folds(phot, props, k, seed)
    pool = template_pool(phot, props)
    rng = np.random.default_rng(seed + 1000)
    models = []
    for f in range(k):
        cand = pool[(fold_of[pool] >= 0) & (fold_of[pool] != f)]
        Xs, Ys, gs, ws = [], {t: [] for t in TARGETS}, [], []
        for j in range(n_mocks):
            m, _, _ = _random_mock(phot, props, cand, rng)
            worst = max(im.fwhm for im in m.images)
            p = pixel_features(m.images, pixscale=worst * pixscale_factor)
            tr = truth_on_grid(m, p.wcs, p.good.shape, p.fwhm)
            n = int(p.usable.sum())
            if n == 0:
                continue
            d = float(rng.uniform(5, 40))
            Xs.append(np.concatenate([p.X[p.usable], np.full((n, 1), log_pixscale_pc(p.pixscale, d))], axis=1))
            for t in TARGETS:
                Ys[t].append(tr[t][p.good][p.usable])
            gs.append(np.full(n, j))
            ws.append(np.full(n, 1.0 / n))
            if progress is not None:
                progress(f, j + 1)
        models.append(train_model(np.concatenate(Xs), {t: np.concatenate(v) for t, v in Ys.items()}, seed=seed + f,
                                  weights=np.concatenate(ws), groups=np.concatenate(gs),
                                  features=feature_names() + ["log_pixscale_pc"]))
    return models


def validate_maps(phot: Photometry, props: dict, *, n_mocks: int = 40, k: int = 4, seed: int = 0,
                  pixscale_factors=(1 / 3,), models=None, exact: bool = False, peak_snr: float = 50.0,
                  progress=None) -> list[dict]:
    """Per mock galaxy and pixel scale: arrays of per-pixel truth and prediction, and the templates'
    truths and global predictions. ``models``: optional list of k fold models (else global models
    trained here); models with the pixel-scale feature get a distance drawn in 5–40 Mpc per mock.
    The templates' global predictions use the mock's bands only, as the pixels do. ``peak_snr``: S/N
    of each band's brightest native pixel in the mocks."""
    from .model import features_in_bands

    rng = np.random.default_rng(seed)
    fold_of = galaxy_folds(phot, props, k, seed)
    pool = template_pool(phot, props)
    if models is None:
        models = global_fold_models(phot, props, k=k, seed=seed)
    rows = []
    for j in range(n_mocks):
        f = j % k
        m, a, b = _random_mock(phot, props, pool[fold_of[pool] == f], rng, peak_snr)
        dist = float(rng.uniform(5, 40))
        pix = "log_pixscale_pc" in models[f].features
        # the templates as the mock shows them: the bands of the mock only (detected in both)
        Xt = features_in_bands(phot, [a, b], np.isin(UVMIR_BANDS, m.bands))
        glob = models[f].predict(np.concatenate([Xt, np.full((2, 1), np.nan)], axis=1) if pix else Xt)
        worst = max(im.fwhm for im in m.images)
        for fac in pixscale_factors:
            fm = make_maps(m.images, models[f], pixscale=worst * fac, distance_mpc=dist, exact=exact)
            tr = truth_on_grid(m, fm.wcs, fm.mask.shape, fm.fwhm)
            g = fm.mask == 1
            key = {"log_sLd": "LOG_SLD", "log_sMd": "LOG_SMD", "Td": "TD"}
            rows.append(dict(mock=j, fold=f, pixscale=fm.pixscale, pixscale_factor=fac, n_pix=int(g.sum()),
                             templates=(phot.names[a], phot.names[b]), n_bands=len(m.bands),
                             truth={t: tr[t][g] for t in TARGETS}, mix=tr["mix"][g],
                             pred={t: fm.maps[key[t]][g] for t in TARGETS},
                             sigma={t: fm.maps[key[t] + "_ERR"][g] for t in TARGETS},
                             template_truth={t: (props[phot.names[a]][t], props[phot.names[b]][t]) for t in TARGETS},
                             template_pred={t: tuple(glob[t][0]) for t in TARGETS}))
        if progress is not None:
            progress(j + 1)
    return rows


def summarise_pixels(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per target: galaxy-weighted bias and RMSE, between/within-galaxy residual σ, the truth's own
    within-galaxy σ, the within-galaxy slope of prediction on truth, χ² of the σ, and the templates'
    global-model RMSE for comparison.

    Where rows carry ``mix`` (template B's weight in each pixel's truth), the bias is also split in
    two: ``template_bias``, the residual that the global model's own errors on the two template
    galaxies predict for the pixels, ``(1 − mix)·(pred_A − truth_A) + mix·(pred_B − truth_B)``, and
    ``pixel_bias`` = bias − template_bias, what predicting per pixel adds (Dobbels & Baes 2021,
    §4.1: is the global model, applied to pixels, biased relative to itself applied to galaxies?).
    Both are means over galaxies with their standard errors; the difference is paired per galaxy, so
    the templates' own errors, which dominate the between-galaxy scatter, cancel from it.
    ``pixel_bias_pure`` / ``pixel_bias_mixed`` (with ``_err``) split it by pixel: pure pixels
    (mix < 0.1 or > 0.9) show one real galaxy's SED, mixed ones the mock's blend of two, whose truth
    (a linear mix of the logs) is a convention of the mock rather than a measured property."""
    out = {}
    rows = [r for r in rows if r["n_pix"] > 0]
    for t in TARGETS:
        means, wvar, tvar, ms2, chi2, slopes, glob, expect = [], [], [], [], [], [], [], []
        paired = {"pure": [], "mixed": []}
        for r in rows:
            res = r["pred"][t] - r["truth"][t]
            ok = np.isfinite(res)
            if ok.sum() < 2:
                continue
            if "mix" in r:
                (pa, pb), (ta, tb) = r["template_pred"][t], r["template_truth"][t]
                mix = r["mix"][ok]
                e_pix = (1 - mix) * (pa - ta) + mix * (pb - tb)
                expect.append(np.mean(e_pix))
                pure = (mix < 0.1) | (mix > 0.9)
                for kind, sel in (("pure", pure), ("mixed", ~pure)):
                    if sel.sum() >= 3:
                        paired[kind].append(np.mean(res[ok][sel] - e_pix[sel]))
            res, tru, pr, sg = res[ok], r["truth"][t][ok], r["pred"][t][ok], r["sigma"][t][ok]
            means.append(res.mean())
            wvar.append(res.var())
            tvar.append(tru.var())
            ms2.append(np.mean(res**2))
            chi2.append(np.mean((res / sg) ** 2))
            if tru.std() > 0:
                slopes.append((np.cov(tru, pr)[0, 1] / tru.var(), tru.var()))
            glob += [p - y for p, y in zip(r["template_pred"][t], r["template_truth"][t])]
        means = np.array(means)
        sl = np.array(slopes) if slopes else np.zeros((0, 2))
        out[t] = dict(n_gal=len(means), n_pix=int(sum(r["n_pix"] for r in rows)), bias=float(means.mean()),
                      bias_err=float(means.std(ddof=1) / np.sqrt(len(means))), rmse=float(np.sqrt(np.mean(ms2))),
                      between=float(means.std(ddof=1)), within=float(np.sqrt(np.mean(wvar))),
                      truth_within=float(np.sqrt(np.mean(tvar))),
                      within_slope=float(np.average(sl[:, 0], weights=sl[:, 1])) if len(sl) else float("nan"),
                      chi2=float(np.mean(chi2)), template_rmse=float(np.sqrt(np.mean(np.square(glob)))))
        if len(expect) == len(means):
            e = np.array(expect)
            out[t].update(template_bias=float(e.mean()), template_bias_err=float(e.std(ddof=1) / np.sqrt(len(e))),
                          pixel_bias=float((means - e).mean()),
                          pixel_bias_err=float((means - e).std(ddof=1) / np.sqrt(len(e))))
            for kind, v in paired.items():
                v = np.array(v)
                out[t][f"pixel_bias_{kind}"] = float(v.mean()) if len(v) else float("nan")
                out[t][f"pixel_bias_{kind}_err"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    return out
