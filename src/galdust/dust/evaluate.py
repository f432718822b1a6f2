"""Evaluation of dust fits against simulated truth (the seed's Figure 4 as tables): simulated
observations, fits, and the per-galaxy metrics of :mod:`.metrics` (re-exported here), which also
says how the fit's pre-PSF maps are compared with the simulator's post-PSF truth.
"""

from __future__ import annotations

import jax
import numpy as np

from .metrics import (COVFRAC_BINS, STRUCTURE_MIN, effective_av, effective_av_maps, galaxy_metrics,  # noqa: F401
                      light_contour, summarise)


RED_BANDS = ("sdss_g", "sdss_r", "sdss_i", "sdss_z", "2mass_j")  # red start: a band at λ_eff ≥ 1 µm
BLUE_BANDS = ("sdss_g", "sdss_r", "sdss_i", "sdss_z")


def _observations(cube, sigma, bands, psf_fwhm, prefix: str, redshift=None) -> list:
    """Observations of a noisy (n, n_band, y, x) cube with white noise ``sigma`` (n, n_band) and Gaussian
    PSFs of ``psf_fwhm`` pixels, named ``prefix0``, ``prefix1``, ...; ``redshift`` (n,): each one's."""
    from ..io import Observation
    from ..physics.filters import get_filter
    from ..physics.psf import gaussian_psf

    psf = gaussian_psf(psf_fwhm, len(bands)).astype(np.float32)
    waves = tuple(get_filter(b).effective for b in bands)
    cube = np.asarray(cube, np.float32)
    ivar = np.broadcast_to(1.0 / np.asarray(sigma)[:, :, None, None] ** 2, cube.shape).astype(np.float32)
    return [Observation(cube[i], ivar[i], tuple(bands), waves, psf, None, "", f"{prefix}{i}",
                        redshift=None if redshift is None else float(redshift[i])) for i in range(len(cube))]


def sim_observations(sim: dict, cfg, prefix: str = "sim") -> list:
    """:class:`~galdust.io.Observation` objects of simulated galaxies (white-noise ivar, the
    simulator's Gaussian PSF), named ``prefix0``, ``prefix1``, ...; with their hosts' redshifts when the
    dust is in the rest frame (``cfg.dust_frame``), as ``galdust simulate`` writes them in the header."""
    z = np.asarray(sim["params"].z_sed) if getattr(cfg, "dust_frame", "observed") == "rest" else None
    return _observations(sim["cube"], sim["sigma"], cfg.bands, cfg.psf_fwhm, prefix, z)


def noisy_observations(images: np.ndarray, bands, psf_fwhm: float, snr: float, seed: int = 0,
                       prefix: str = "obs") -> list:
    """:class:`~galdust.io.Observation` objects of noiseless images (n, n_band, y, x) from any simulator:
    white noise at a peak S/N ``snr`` per band (σ = the band's brightest pixel / ``snr``, as the
    simulator's ``snr_kind='peak'``), Gaussian PSFs of ``psf_fwhm`` pixels, named ``prefix0``, ..."""
    imgs = np.asarray(images, np.float64)
    sig = imgs.max(axis=(2, 3)) / snr
    noisy = imgs + sig[:, :, None, None] * np.random.default_rng(seed).normal(size=imgs.shape)
    return _observations(noisy, sig, bands, psf_fwhm, prefix)


#: ``galdust evaluate dust --hosts``: the simulator's host sets (:func:`host_config`)
HOST_SETS = ("realistic", "isochromatic", "dust-free", "stress", "nucleus", "nucleus-dust-free")


def host_config(hosts: str, **kw):
    """The :class:`~galdust.simulate.SimConfig` of a host set: 'realistic' (stellar-population bulge,
    disk and clumps with measured bulge − disk colours), 'isochromatic' (one SED for all components),
    'dust-free' (realistic hosts, no dust at all), 'stress' (power-law SEDs, extreme gradients),
    'nucleus' (realistic hosts with an unresolved AGN at the centre) or 'nucleus-dust-free'."""
    from ..simulate import SimConfig

    if hosts not in HOST_SETS:
        raise ValueError(f"unknown host set {hosts!r} ({', '.join(HOST_SETS)})")
    return SimConfig(hosts="stress" if hosts == "stress" else "realistic", isochromatic=hosts == "isochromatic",
                     dust_free=hosts.endswith("dust-free"), nucleus=hosts.startswith("nucleus"), **kw)


#: ``galdust evaluate dust --band-set``: the bands simulated and fitted ('auto': grizJ for the red start,
#: griz for the blue start)
BAND_SETS = {"grizJ": RED_BANDS, "griz": BLUE_BANDS}


def evaluate_config(*, n: int, snr: float, snr_kind: str, hosts: str, start: str, priors: bool,
                    seed: int, batch_size: int = 16, fitter=None, progress=None, band_set: str = "auto") -> list[dict]:
    """Simulate ``n`` held-out galaxies of a host set (:data:`HOST_SETS`) in a band set
    (:data:`BAND_SETS`) and fit them through :class:`DustFitter` (the same path as ``galdust fit``);
    one dict of metrics per galaxy."""
    import dataclasses

    from ..simulate import simulate
    from .api import make_fitter

    bands = (RED_BANDS if start == "red" else BLUE_BANDS) if band_set == "auto" else BAND_SETS[band_set]
    cfg = host_config(hosts, bands=bands, snr=snr, snr_kind=snr_kind)
    sim = simulate(jax.random.PRNGKey(seed), n, cfg, batch=min(n, 32))
    obs = sim_observations(sim, cfg, f"sim{seed}_")
    psf = obs[0].psf
    if fitter is None:
        fitter = make_fitter(priors=priors)  # as galdust fit builds it
    # the given fitter's settings, with the learned priors on or off as asked
    fitter = dataclasses.replace(fitter, start=start, batch_size=batch_size,
                                 cfg=dataclasses.replace(fitter.cfg, use_priors=priors))
    results = fitter.fit(obs, progress=progress)
    rows = []
    for i, res in enumerate(results):
        base = dict(i=i, seed=seed, snr=snr, snr_kind=snr_kind, host=hosts, start=start, bands=",".join(bands),
                    priors=priors,
                    covfrac=float(sim["covfrac"][i]), delta_true=float(sim["params"].delta[i]),
                    dgi_true=float(sim["params"].dgi[i]), bt_true=float(sim["params"].bt[i]),
                    fclump_true=float(sim["params"].f_clump[i]))
        if isinstance(res, Exception):
            rows.append(dict(base, error=str(res)))
            continue
        av, host = effective_av_maps(res.HOST, res.D, res.scalars["DELTA"], psf[0])
        m = galaxy_metrics(np.asarray(av), np.asarray(host), sim["AV"][i], sim["S"][i])
        rows.append(dict(base, **m, delta=res.scalars["DELTA"], chi2=res.scalars["CHI2"],
                         chi2_nd=res.scalars["CHI2ND"], n_iter=res.scalars["NITER"],
                         converged=res.scalars["CONVERGE"], error="",
                         **{k.lower() + "_fit": res.scalars[k] for k in ("BT", "BRE", "BN") if k in res.scalars}))
    return rows


def format_table(summary: list[dict], title: str) -> str:
    """A markdown table of :func:`summarise` output."""
    lines = [f"**{title}**", "", "| covering fraction | N | median ΔA_V | 16–84 % ΔA_V | median abs ΔA_V | median corr | "
             f"median corr, truth A_V spread ≥ {STRUCTURE_MIN:g} mag (N) |", "|---|---|---|---|---|---|---|"]
    for r in summary:
        if r.get("n", 0) == 0:
            lines.append(f"| {r['bin']} | 0 | | | | | |")
            continue
        lines.append(f"| {r['bin']} | {r['n']} | {r['dAV_med']:+.3f} | {r['dAV_p16']:+.3f} … {r['dAV_p84']:+.3f} | "
                     f"{r['absdAV_med']:.3f} | {r['corr_med']:.3f} | {r['corr_med_struct']:.3f} ({r['n_struct']}) |")
    return "\n".join(lines)
