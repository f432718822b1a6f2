"""Photometry CFM vs image + photometry CFM vs VAE + flows, on the same held-out simulated galaxies.

    python bench/bench_posterior_models.py --phot scratch/post/cfm_phot_img.eqx --image scratch/post/cfm_image.eqx \
        --vaenf scratch/post/vaenf.eqx --train scratch/post/img_train.parquet --test scratch/post/img_test.parquet

All three models were trained on the same simulated bulge + disk galaxies with images
(``simulate-sed --images --r-limit 17.77 --seed 2``); the test galaxies come from another seed.
Prints, per model and property: bias, NMAD, outlier rate, 16–84 % coverage, Wasserstein distance of
the posterior means to the test marginal; TARP deviation; objects/s for 1,000 samples. For the two
CFMs: Δlog p = log p(θ*|x) − log p(θ*) per object (exact densities, empirical KDE prior) and the
fraction of objects where the image model's is higher (the seed's test). For the VAE + flows: the
emission lines (bias and NMAD of log flux where detected, detection accuracy, line-ratio recovery,
BPT classes, Balmer A_V against the truth's). Not a test.
"""

from __future__ import annotations

import argparse
import time

import jax.random as jr
import numpy as np

from galdust.posterior.data import read_catalog
from galdust.posterior.diagnostics import empirical_log_prior, tarp, wasserstein_per_property
from galdust.posterior.model import log_prob_batched, sample_batched
from galdust.posterior.kinds import load_model

from bench_posterior_speed import rate  # bench/ is on sys.path when run as a script

OUTLIER = {"log_mstar": 0.5, "log_sfr": 1.0, "logzsol": 0.5, "dn4000": 0.2, "av": 0.5, "z": 0.05, "log_mbh": 1.0}


def stats_table(label, props, smp, truth, rate):
    p16, p50, p84 = np.percentile(smp, [16, 50, 84], axis=1)
    _, _, tdev = tarp(smp, truth)
    wd = wasserstein_per_property(truth, smp.mean(1))
    print(f"\n{label}: {len(truth)} galaxies, {smp.shape[1]} samples each, {rate:.1f} objects/s, TARP max |ECP − α| = "
          f"{tdev:.3f}\n")
    print("| property | bias | NMAD | outliers | 16–84 % coverage | WD(truth, posterior means) |")
    print("|---|---|---|---|---|---|")
    out = {}
    for j, p in enumerate(props):
        d = p50[:, j] - truth[:, j]
        thr = OUTLIER.get(p, 0.5) * ((1 + truth[:, j]) if p == "z" else 1.0)
        nmad = 1.4826 * np.median(np.abs(d - np.median(d)))
        cov = np.mean((truth[:, j] >= p16[:, j]) & (truth[:, j] <= p84[:, j]))
        out[p] = dict(bias=np.median(d), nmad=nmad, wd=wd[j], cov=cov)
        print(f"| {p} | {np.median(d):+.3f} | {nmad:.3f} | {100 * np.mean(np.abs(d) > thr):.1f} % | {100 * cov:.1f} % | "
              f"{wd[j]:.4f} |")
    return out, tdev


def cfm_samples(model, cond, n_samp, steps, batch=64):
    """Samples (n, n_samp, d) and the rate in objects/s (after a compiling call)."""
    sample_batched(model, cond[:batch], jr.PRNGKey(0), n_samp, steps, batch)
    t0 = time.perf_counter()
    s = sample_batched(model, cond, jr.PRNGKey(0), n_samp, steps, batch)
    return s, cond.shape[0] / (time.perf_counter() - t0)


def log_post(model, theta, cond, steps=50):
    return log_prob_batched(model, theta, cond, steps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--phot", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--phot-budget", default=None, help="photometry CFM trained with the image model's budget")
    ap.add_argument("--vaenf", default=None)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--n-speed", type=int, default=64)
    ap.add_argument("--lp-steps", type=int, default=50, help="RK4 steps of the exact log density")
    a = ap.parse_args()
    test = read_catalog(a.test)
    imgs = np.load(a.test.replace(".parquet", ".images.npy"), mmap_mode="r")
    n = min(a.n, len(test.flux))
    flux, img = test.flux[:n], np.asarray(imgs[:n], np.float32)
    phot, _ = load_model(a.phot)
    image, _ = load_model(a.image)
    props = list(phot.props)
    truth = np.stack([test.truth[p][:n] for p in props], 1)
    tr = read_catalog(a.train)
    log_prior = empirical_log_prior(np.stack([tr.truth[p] for p in props], 1))
    res = {}
    conds = {"photometry CFM": phot.features(flux), "image + photometry CFM": image.conditions(flux, img)}
    models = {"photometry CFM": phot, "image + photometry CFM": image}
    if a.phot_budget:
        pb, _ = load_model(a.phot_budget)
        conds["photometry CFM, image model's budget"] = pb.features(flux)
        models["photometry CFM, image model's budget"] = pb
    dlogp = {}
    for lab, m in models.items():
        smp, rate = cfm_samples(m, conds[lab], a.samples, a.steps)
        res[lab] = stats_table(f"{lab} ({a.steps} RK4 steps)", props, smp, truth, rate)
        dlogp[lab] = log_post(m, truth, conds[lab], a.lp_steps) - log_prior(truth)
    print(f"\nΔlog p = log p(θ*|x) − log p(θ*) ({a.lp_steps} RK4 steps, exact divergence; prior: Gaussian KDE of the "
          f"training θ)\n")
    print("| photometry model | its median Δlog p | image model's median Δlog p | image model higher for | "
          "properties with lower WD for the image model |")
    print("|---|---|---|---|---|")
    im = "image + photometry CFM"
    for lab in models:
        if lab == im:
            continue
        better = np.mean(dlogp[im] > dlogp[lab])
        wd_better = [p for p in props if res[im][0][p]["wd"] < res[lab][0][p]["wd"]]
        print(f"| {lab} | {np.median(dlogp[lab]):.2f} | {np.median(dlogp[im]):.2f} | {100 * better:.1f} % (goal ≥ 85 %) | "
              f"{len(wd_better)} of {len(props)} ({', '.join(wd_better)}) |")
    # speed: 1,000 samples, 100 and 20 RK4 steps
    print("\n| model | sampler | objects/s (1,000 samples) |\n|---|---|---|")
    rk100 = {}
    for lab, m in models.items():
        for st in (100, 20):
            _, r = cfm_samples(m, conds[lab][: a.n_speed], 1000, st)
            print(f"| {lab} | RK4, {st} steps | {r:.2f} |")
            if st == 100:
                rk100[lab] = r
    if a.vaenf:
        vres, vtdev, vrate = vaenf_block(a, test, n, flux, img, props)
        side_by_side(res, rk100, vres, vtdev, vrate)


def side_by_side(res, rk100, vres, vtdev, vrate):
    """NMAD per property in common, TARP and speed: the CFMs against the VAE + flows."""
    common = [p for p in vres if all(p in r[0] for r in res.values())]
    labs = list(res)
    print("\nSide by side on the same galaxies (NMAD of the posterior median; lower is better)\n")
    print("| property | " + " | ".join(labs) + " | VAE + flows | VAE + flows ≤ every CFM? |")
    print("|---|" + "---|" * (len(labs) + 2))
    for p in common:
        cf = [res[lab][0][p]["nmad"] for lab in labs]
        print(f"| {p} | " + " | ".join(f"{v:.4f}" for v in cf) + f" | {vres[p]['nmad']:.4f} | "
              f"{'yes' if vres[p]['nmad'] <= min(cf) else 'no'} |")
    print("| TARP max deviation | " + " | ".join(f"{res[lab][1]:.3f}" for lab in labs) + f" | {vtdev:.3f} | |")
    print("| objects/s, 1,000 samples (CFM: RK4 100 steps) | " + " | ".join(f"{rk100[lab]:.2f}" for lab in labs)
          + f" | {vrate:.1f} | {vrate / max(rk100.values()):.0f}× the fastest CFM |")


def vaenf_block(a, test, n, flux, img, cfm_props):
    from galdust.posterior.vaenf import F_LIM, LINES, balmer_av, bpt_class, summarise

    m, meta = load_model(a.vaenf)
    t0 = time.perf_counter()
    res = summarise(m, flux, img, jr.PRNGKey(0), 1000)
    dt = time.perf_counter() - t0
    truth = np.stack([test.truth[p][:n] for p in m.props], 1)
    vres, vtdev = stats_table(f"VAE + flows (1,000 samples; wall time {dt:.0f} s incl. encoding)", list(m.props),
                              res["samples"], truth, n / dt)
    t0 = time.perf_counter()
    summarise(m, flux[: a.n_speed * 4], img[: a.n_speed * 4], jr.PRNGKey(1), 1000)
    r = a.n_speed * 4 / (time.perf_counter() - t0)
    print(f"\nVAE + flows speed: {r:.1f} objects/s for 1,000 samples of the properties and 1,000 of the lines "
          f"(encoding included)")
    vrate = rate(m, flux, 1, img, n=a.n_speed * 4)  # properties only, as bench_posterior_speed measures it
    print(f"VAE + flows speed, properties only (as the CFMs; encoding included): {vrate:.1f} objects/s")
    lt = np.stack([test.truth[ln][:n] for ln in LINES], 1)
    det = lt >= F_LIM
    print(f"\nEmission lines (log10 flux [1e-17 erg/s/cm²]; non-detection: F < {F_LIM:g})\n")
    print("| line | detected (truth) | detection accuracy (P_det > 0.5) | bias (detected) | NMAD (detected) | "
          "16–84 % coverage (detected) |")
    print("|---|---|---|---|---|---|")
    for j, ln in enumerate(LINES):
        pd = res["p_det"][:, j] > 0.5
        d = res["lines"][det[:, j], j, 1] - np.log10(lt[det[:, j], j])
        cov = np.mean((np.log10(lt[det[:, j], j]) >= res["lines"][det[:, j], j, 0]) &
                      (np.log10(lt[det[:, j], j]) <= res["lines"][det[:, j], j, 2]))
        print(f"| {ln} | {100 * det[:, j].mean():.1f} % | {100 * np.mean(pd == det[:, j]):.1f} % | {np.median(d):+.3f} | "
              f"{1.4826 * np.median(np.abs(d - np.median(d))):.3f} | {100 * cov:.1f} % |")
    alld = det.all(1)
    ix = {k: j for j, k in enumerate(LINES)}
    x_t = np.log10(lt[alld, ix["nii_6584"]] / lt[alld, ix["halpha"]])
    y_t = np.log10(lt[alld, ix["oiii_5007"]] / lt[alld, ix["hbeta"]])
    L = res["line_samples"][alld]
    x_p = np.median(L[..., ix["nii_6584"]] - L[..., ix["halpha"]], 1)
    y_p = np.median(L[..., ix["oiii_5007"]] - L[..., ix["hbeta"]], 1)
    nm = lambda d: 1.4826 * np.median(np.abs(d - np.median(d)))  # noqa: E731
    print(f"\nLine ratios ({alld.sum()} galaxies with all four lines detected): log [NII]/Hα bias "
          f"{np.median(x_p - x_t):+.3f}, NMAD {nm(x_p - x_t):.3f}; log [OIII]/Hβ bias {np.median(y_p - y_t):+.3f}, "
          f"NMAD {nm(y_p - y_t):.3f}.")
    cls_t = bpt_class(x_t, y_t)
    cls_p = np.nanargmax(np.nan_to_num(res["bpt"][alld], nan=-1), axis=1)
    print(f"BPT (truth classes SF/composite/AGN: {np.bincount(cls_t, minlength=3).tolist()}): most probable class = "
          f"truth's for {100 * np.mean(cls_p == cls_t):.1f} %.")
    av_t = balmer_av(np.log10(lt[alld, ix["halpha"]]), np.log10(lt[alld, ix["hbeta"]]))
    av_p = res["av_balmer"][alld, 1]
    ok = np.isfinite(av_p)
    cov = np.mean((av_t[ok] >= res["av_balmer"][alld][ok, 0]) & (av_t[ok] <= res["av_balmer"][alld][ok, 2]))
    print(f"Balmer-decrement A_V (from the true lines vs from the line posteriors): bias {np.median(av_p[ok] - av_t[ok]):+.3f}, "
          f"NMAD {nm(av_p[ok] - av_t[ok]):.3f}, 16–84 % coverage {100 * cov:.1f} %.")
    print(f"\nVAE: validation reconstruction MSE {meta.get('vae_val_mse', float('nan')):.4f} (stretched units; noise "
          f"variance {(1 / 3) ** 2:.4f}); training {meta.get('train_seconds')} s (VAE {meta.get('vae_seconds')} s, flows "
          f"{meta.get('flow_seconds')} s).")
    return vres, vtdev, vrate


if __name__ == "__main__":
    main()
