"""Posterior diagnostics on held-out simulated galaxies (the seed's metrics); prints tables, writes figures.

    python bench/bench_posterior_diag.py --model src/galdust/data/posterior/cfm_phot_sdss.eqx \
        --onestep src/galdust/data/posterior/cfm_phot_sdss_onestep.eqx \
        --train scratch/post/sed_train.parquet --test scratch/post/sed_test.parquet --n 5000 --figures docs/figures

Per model (the CFM with RK4, its distilled one-step sampler): per-property bias, NMAD, 16–84 %
coverage, the Wasserstein distance between the test marginal and the posterior means (the seed's
Table 1), TARP expected-coverage deviation, SBC rank-histogram χ² p-values, samples/s. For the CFM:
Δlog p = log p(θ*|x) − log p(θ*) per object (exact log density by the divergence integral; prior: a
Gaussian KDE of the training θ) and KL(posterior ‖ prior) = E_post[log p(θ|x) − log p(θ)] on a subset;
scaling relations (M*–SFR, M*–Z, SFR–Z) of posterior medians against the truths; corner plots of two
objects. The test galaxies are SDSS-selected (r < 17.77), as the model's training set. Not a test.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax.random as jr
import numpy as np

from galdust.posterior.data import read_catalog
from galdust.posterior.diagnostics import (empirical_log_prior, rank_uniformity, sbc_ranks, tarp,
                                           wasserstein_per_property)
from galdust.posterior.model import log_prob_batched, luptitudes, sample_batched
from galdust.posterior.kinds import load_model


def select(path, model, n):
    c = read_catalog(path, model.bands)
    r = luptitudes(c.flux, model.soft)[:, model.bands.index("sdss_r")]
    th = np.stack([c.truth[p] for p in model.props], 1)
    ok = (r < 17.77) & np.all(np.isfinite(th), 1) & np.all(np.isfinite(c.flux), 1)
    idx = np.nonzero(ok)[0][:n]
    return c.flux[idx], th[idx]


def draw(model, flux, n_samp, steps, key, batch=64):
    """Samples (n, n_samp, d) and the rate in objects/s (after a compiling call)."""
    cond = model.features(flux)
    sample_batched(model, cond[:batch], key, n_samp, steps, batch)
    t0 = time.perf_counter()
    s = sample_batched(model, cond, key, n_samp, steps, batch)
    return s, len(flux) / (time.perf_counter() - t0)


def log_post(model, theta, flux, steps):
    return log_prob_batched(model, theta, model.features(flux), steps)


def table(label, model, smp, truth, rate):
    p16, p50, p84 = np.percentile(smp, [16, 50, 84], axis=1)
    _, _, tdev = tarp(smp, truth)
    ranks = sbc_ranks(smp, truth)
    ru = rank_uniformity(ranks, smp.shape[1])
    wd = wasserstein_per_property(truth, smp.mean(1))
    print(f"\n{label}: {len(truth)} held-out galaxies, {smp.shape[1]} samples each, {rate:.1f} objects/s; "
          f"TARP max |ECP − α| = {tdev:.3f} (goal ≤ 0.03)\n")
    print("| property | bias (p50 − truth) | NMAD | 16–84 % coverage | WD(truth, posterior means) | SBC χ² p-value |")
    print("|---|---|---|---|---|---|")
    for j, p in enumerate(model.props):
        d = p50[:, j] - truth[:, j]
        cov = np.mean((truth[:, j] >= p16[:, j]) & (truth[:, j] <= p84[:, j]))
        print(f"| {p} | {np.median(d):+.3f} | {1.4826 * np.median(np.abs(d - np.median(d))):.3f} | {100 * cov:.1f} % | "
              f"{wd[j]:.4f} | {ru[j][2]:.3g} |")
    return p50


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--onestep", default=None)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--samples", type=int, default=300, help="CFM samples per object (RK4, --steps)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--n-kl", type=int, default=200)
    ap.add_argument("--figures", default=None)
    a = ap.parse_args()
    model, _ = load_model(a.model)
    flux, truth = select(a.test, model, a.n)
    _, train_th = select(a.train, model, 20000)
    smp, rate = draw(model, flux, a.samples, a.steps, jr.PRNGKey(0))
    p50 = table(f"CFM ({a.steps} RK4 steps)", model, smp, truth, rate)
    if a.onestep:
        os_model, _ = load_model(a.onestep)
        smp1, rate1 = draw(os_model, flux, 1000, 1, jr.PRNGKey(0), batch=256)
        table("One-step sampler (distilled from the CFM)", os_model, smp1, truth, rate1)
    # Δlog p and KL against the empirical prior
    log_prior = empirical_log_prior(train_th)
    t0 = time.perf_counter()
    lp = log_post(model, truth, flux, 50)
    t_lp = time.perf_counter() - t0
    dlogp = lp - log_prior(truth)
    k = min(a.n_kl, len(truth))
    th_s = smp[:k, :32].reshape(-1, truth.shape[1])
    lp_s = log_post(model, th_s, np.repeat(flux[:k], 32, axis=0), 20)
    kl = (lp_s - log_prior(th_s)).reshape(k, 32).mean(1)
    print(f"\nΔlog p = log p(θ*|x) − log p(θ*) on {len(truth)} galaxies (exact log density, 50 RK4 steps, "
          f"{len(truth) / t_lp:.0f} objects/s; prior: Gaussian KDE of 20,000 training θ): median {np.median(dlogp):.2f}, "
          f"mean {np.mean(dlogp):.2f}, > 0 for {100 * np.mean(dlogp > 0):.1f} %. KL(posterior ‖ prior) on {k} galaxies "
          f"(32 samples each): median {np.median(kl):.2f} nats.")
    print("\nScaling relations: least-squares slope of the relation in the truths and in the posterior medians\n")
    print("| relation | slope (truth) | slope (posterior p50) | Spearman ρ (truth) | Spearman ρ (p50) |")
    print("|---|---|---|---|---|")
    from scipy.stats import spearmanr

    ix = {p: j for j, p in enumerate(model.props)}
    for x, y in (("log_mstar", "log_sfr"), ("log_mstar", "logzsol"), ("log_sfr", "logzsol")):
        st = np.polyfit(truth[:, ix[x]], truth[:, ix[y]], 1)[0]
        sp = np.polyfit(p50[:, ix[x]], p50[:, ix[y]], 1)[0]
        print(f"| {y} vs {x} | {st:.3f} | {sp:.3f} | {spearmanr(truth[:, ix[x]], truth[:, ix[y]])[0]:.3f} | "
              f"{spearmanr(p50[:, ix[x]], p50[:, ix[y]])[0]:.3f} |")
    if a.figures:
        figures(Path(a.figures), model, smp, truth, p50, ix)


def figures(out: Path, model, smp, truth, p50, ix):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    d = len(model.props)
    for n, i in enumerate((0, 1)):
        fig, ax = plt.subplots(d, d, figsize=(2 * d, 2 * d))
        for r in range(d):
            for c in range(d):
                a = ax[r, c]
                if c > r:
                    a.axis("off")
                    continue
                if r == c:
                    a.hist(smp[i, :, r], 30, color="0.4", histtype="step")
                    a.axvline(truth[i, r], color="C3")
                else:
                    a.scatter(smp[i, :, c], smp[i, :, r], s=1, color="0.3", alpha=0.4)
                    a.plot(truth[i, c], truth[i, r], "*", color="C3", ms=10)
                if r == d - 1:
                    a.set_xlabel(model.props[c])
                if c == 0 and r > 0:
                    a.set_ylabel(model.props[r])
                a.tick_params(labelsize=6)
        fig.suptitle(f"held-out simulated galaxy {i}: CFM posterior (photometry), truth in red")
        fig.savefig(out / f"posterior_corner_{n + 1}.png", dpi=80)
        plt.close(fig)
    fig, ax = plt.subplots(2, 3, figsize=(12, 7))
    for k, (x, y) in enumerate((("log_mstar", "log_sfr"), ("log_mstar", "logzsol"), ("log_sfr", "logzsol"))):
        for row, (src, lab) in enumerate(((truth, "truth"), (p50, "posterior median"))):
            ax[row, k].hexbin(src[:, ix[x]], src[:, ix[y]], gridsize=40, mincnt=1, cmap="Greys")
            ax[row, k].set(xlabel=x, ylabel=y, title=lab)
    fig.tight_layout()
    fig.savefig(out / "posterior_scaling_relations.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
