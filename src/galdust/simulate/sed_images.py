"""Bulge + disk galaxy images with their own stellar populations (SDSS-like gri cutouts) and truths.

Per galaxy: a bulge (Sérsic n = 4, an old population: delayed-τ with τ = 0.1–1 Gyr that started
8–12 Gyr ago, metal-rich, little dust) and a disk (exponential, star-forming history of the
photometric simulator, dust that grows with inclination: A_V,disk = A_V,0 (1 + 2 (1 − cos i))), with
bulge-to-total mass ratio B/T. Sizes follow mass–size relations with 0.2 dex scatter (disk
R_d = 3 kpc (M_d / 10¹⁰·⁵)^0.3, bulge R_e = 1.5 kpc (M_b / 10¹⁰·⁵)^0.5), converted with the angular
diameter distance and clipped to a fifth of the cutout. Images: 0.396″ pixels, Gaussian PSF of 1.4″ FWHM, white sky noise per pixel
(``SKY_PIX``, nanomaggies). The photometry is the image's integrated (noiseless) flux plus the
photometric noise model of :mod:`galdust.simulate.sed`, so colour gradients, B/T, size and
inclination are in the images but not in the photometry. The black hole follows the bulge mass
(Kormendy & Ho 2013), which is why images help for it. The galaxies come from the broad prior of
:class:`~galdust.simulate.sed.SEDConfig` or, given one, from a population calibrated to real
photometry (:mod:`galdust.simulate.population`, ``simulator='images'``).
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..physics import sps as S
from .sed import TRUTHS, SEDConfig, add_noise, sample_params

__all__ = ["ImageConfig", "simulate_images", "noiseless_images", "draw_components", "SKY_PIX"]

#: per-pixel sky noise [nanomaggies] of SDSS gri at 0.396″ (sky ≈ 22.0/20.9/20.2 mag arcsec⁻², 54 s)
SKY_PIX = {"sdss_u": 0.12, "sdss_g": 0.045, "sdss_r": 0.06, "sdss_i": 0.09, "sdss_z": 0.3}


@dataclass(frozen=True)
class ImageConfig:
    image_bands: tuple[str, ...] = ("sdss_g", "sdss_r", "sdss_i")
    size: int = 64
    pixscale: float = 0.396  # arcsec
    psf_fwhm: float = 1.4  # arcsec
    sed: SEDConfig = SEDConfig()


def _sersic_image(size, re_px, n, q, pa, bn):
    c = (size - 1) / 2
    y, x = jnp.mgrid[:size, :size] - c
    # 2x2 sub-pixel sampling for the central cusp
    offs = jnp.array([-0.25, 0.25])
    xx = x[None, None] + offs[:, None, None, None]
    yy = y[None, None] + offs[None, :, None, None]
    u = xx * jnp.cos(pa) + yy * jnp.sin(pa)
    v = -xx * jnp.sin(pa) + yy * jnp.cos(pa)
    r = jnp.sqrt(u**2 + (v / q) ** 2 + 1e-6)
    img = jnp.exp(-bn * ((r / re_px) ** (1.0 / n) - 1.0)).mean(axis=(0, 1))
    return img / jnp.maximum(img.sum(), 1e-30)


def _psf_fft(size, sigma_px):
    f = jnp.fft.fftfreq(size)
    fy, fx = jnp.meshgrid(f, f, indexing="ij")
    return jnp.exp(-2 * (jnp.pi * sigma_px) ** 2 * (fx**2 + fy**2))


def _render(p, flux_b, flux_d, cfg: ImageConfig, da_mpc):
    """(n_img_band, size, size) noiseless image [nmgy] of one galaxy."""
    kpc_per_px = da_mpc * 1e3 * cfg.pixscale / 206264.806
    rd = 3.0 * 10 ** (0.3 * (p["logm_d"] - 10.5) + p["size_d"]) / kpc_per_px  # scale length [px]
    re = 1.5 * 10 ** (0.5 * (p["logm_b"] - 10.5) + p["size_b"]) / kpc_per_px
    rd, re = jnp.clip(rd, 0.5, cfg.size / 5), jnp.clip(re, 0.3, cfg.size / 5)  # keep the galaxy in the cutout
    q_d = jnp.sqrt(jnp.cos(p["incl"]) ** 2 * (1 - 0.15**2) + 0.15**2)
    disk = _sersic_image(cfg.size, rd * 1.678, 1.0, q_d, p["pa"], 1.678)  # R_e = 1.678 R_d
    bulge = _sersic_image(cfg.size, re, 4.0, p["q_b"], p["pa"], 7.669)
    img = flux_b[:, None, None] * bulge[None] + flux_d[:, None, None] * disk[None]
    k = _psf_fft(cfg.size, cfg.psf_fwhm / cfg.pixscale / 2.3548)
    return jnp.real(jnp.fft.ifft2(jnp.fft.fft2(img) * k[None]))


def _component_params(key, n, cfg: SEDConfig, grid):
    p = sample_params(key, n, cfg, grid)
    k = jax.random.split(jax.random.fold_in(key, 7), 10)
    bt = p["bt"]
    logm = p["logm"]
    p.update(
        logm_b=logm + jnp.log10(jnp.maximum(bt, 1e-3)), logm_d=logm + jnp.log10(jnp.maximum(1 - bt, 1e-3)),
        incl=jnp.arccos(jax.random.uniform(k[0], (n,), minval=0.05, maxval=1.0)),
        pa=jax.random.uniform(k[1], (n,), maxval=jnp.pi), q_b=jax.random.uniform(k[2], (n,), minval=0.6, maxval=1.0),
        size_d=0.2 * jax.random.normal(k[3], (n,)), size_b=0.2 * jax.random.normal(k[4], (n,)),
        age_b=jnp.minimum(8e9 + 4e9 * jax.random.uniform(k[5], (n,)), p["t_univ"]),
        tau_b=10 ** jax.random.uniform(k[6], (n,), minval=8.0, maxval=9.0),
        logz_b=jnp.clip(p["logz"] + 0.2 + 0.1 * jax.random.normal(k[7], (n,)), -2.0, 0.65),
    )
    return p


def _sed_batch(grid, fs_img, fs_phot, p):
    """The two components' spectra of a batch of galaxies (``p`` from :func:`_component_params`):
    the photometry (n, n_phot_band) [nmgy], the ``TRUTHS`` and the extras (``bt``, ``incl_deg``,
    ``av_disk``, the components' image-band fluxes ``flux_b``, ``flux_d`` [nmgy]). Where ``p`` has a
    near-UV correction ``nuv`` (a calibrated population's broad prior), both components' old stars get it."""
    from .sed import _sfr100_frac, _weights

    n = p["z"].shape[0]
    w_d = jax.vmap(_weights, (None, 0))(grid, p)
    w_b = jax.vmap(S.delayed_tau_weights, (None, 0, 0))(grid.age_edges, p["age_b"], p["tau_b"])
    av_d = p["av"] * (1 + 2 * (1 - jnp.cos(p["incl"])))
    av_b = 0.2 * p["av"]
    nuv = jnp.concatenate([p["nuv"], p["nuv"]]) if "nuv" in p else None
    sp = S.galaxy_spectrum(grid, jnp.concatenate([w_b, w_d]), jnp.concatenate([p["logz_b"], p["logz"]]),
                           jnp.concatenate([p["logu"], p["logu"]]), jnp.concatenate([av_b, av_d]),
                           jnp.concatenate([p["delta"], p["delta"]]), nuv=nuv)
    mstar_b, mstar_d = sp["mstar"][:n], sp["mstar"][n:]
    mf_b, mf_d = 10 ** p["logm_b"] / mstar_b, 10 ** p["logm_d"] / mstar_d
    z2, mf2 = jnp.concatenate([p["z"], p["z"]]), jnp.concatenate([mf_b, mf_d])
    fi = S.photometry_nmgy(grid, fs_img, sp["lum"], z2, mf2)
    fp = S.photometry_nmgy(grid, fs_phot, sp["lum"], z2, mf2)
    lines = S.line_flux_cgs(grid, sp["lines"], z2, mf2) * 1e17
    lum_v = sp["lum"][:n] * mf_b[:, None] + sp["lum"][n:] * mf_d[:, None]
    lum_vi = sp["lum_intr"][:n] * mf_b[:, None] + sp["lum_intr"][n:] * mf_d[:, None]
    i_v = jnp.argmin(jnp.abs(grid.wave - 5510.0))
    d4 = sp["lum_d4"][:n] * mf_b[:, None] + sp["lum_d4"][n:] * mf_d[:, None]
    sfr = (jax.vmap(_sfr100_frac, (None, 0))(grid, w_b) * mf_b + jax.vmap(_sfr100_frac, (None, 0))(grid, w_d) * mf_d)
    mz = (10 ** p["logm_b"] * 10 ** p["logz_b"] + 10 ** p["logm_d"] * 10 ** p["logz"]) / 10 ** p["logm"]
    line_tot = lines[:n] + lines[n:]
    truths = dict(log_mstar=p["logm"], log_sfr=jnp.log10(jnp.maximum(sfr, 1e-6)), logzsol=jnp.log10(mz),
                  dn4000=S.dn4000(grid.wave_d4, d4), av=-2.5 * jnp.log10(lum_v[:, i_v] / lum_vi[:, i_v]), z=p["z"],
                  halpha=line_tot[:, 0], hbeta=line_tot[:, 1], nii_6584=line_tot[:, 2], oiii_5007=line_tot[:, 3],
                  log_mbh=8.69 + 1.16 * (p["logm_b"] - 11.0) + p["mbh_scatter"])
    extra = dict(bt=p["bt"], incl_deg=jnp.rad2deg(p["incl"]), av_disk=av_d, flux_b=fi[:n], flux_d=fi[n:])
    return fp[:n] + fp[n:], truths, extra


def _render_batch(grid, p, flux_b, flux_d, cfg: ImageConfig):
    """(n, n_img_band, size, size) noiseless images [nmgy] of components of image-band fluxes ``flux_b``, ``flux_d``."""
    da = jnp.interp(p["z"], grid.z_grid, grid.dl_mpc) / (1 + p["z"]) ** 2
    return jax.vmap(lambda q, a, b, d: _render(q, a, b, cfg, d))(p, flux_b, flux_d, da)


def _one_batch(grid, fs_img, fs_phot, p, cfg: ImageConfig):
    flux, truths, extra = _sed_batch(grid, fs_img, fs_phot, p)
    return _render_batch(grid, p, extra["flux_b"], extra["flux_d"], cfg), flux, truths, extra


_one_batch_jit = eqx.filter_jit(_one_batch)
_sed_batch_jit = eqx.filter_jit(_sed_batch)
_render_batch_jit = eqx.filter_jit(_render_batch)


def _rows(a: np.ndarray, i: int, batch: int) -> np.ndarray:
    """Rows i…i+batch of ``a``, the last one repeated up to ``batch`` rows (one compiled shape)."""
    a = a[i : i + batch]
    return a if len(a) == batch else np.concatenate([a, np.repeat(a[-1:], batch - len(a), axis=0)])


def draw_components(key, n: int, cfg: SEDConfig, grid: S.SPSGrid, fs_img, fs_phot, batch: int = 1024
                    ) -> tuple[dict, dict]:
    """``n`` bulge + disk galaxies of the broad prior ``cfg``, without images: their parameters and
    (numpy dicts) ``flux`` (the photometry, noiseless [nmgy]), the ``TRUTHS``, ``bt``, ``incl_deg``,
    ``av_disk`` and the components' image-band fluxes ``flux_b``, ``flux_d``. What a calibrated
    population's rejection needs (only the accepted galaxies are rendered)."""
    params = {k: np.asarray(v) for k, v in _component_params(key, n, cfg, grid).items()}
    outs = []
    for i in range(0, n, batch):
        flux, truths, extra = _sed_batch_jit(grid, fs_img, fs_phot, {k: _rows(v, i, batch) for k, v in params.items()})
        outs.append(jax.tree.map(lambda a, m=min(batch, n - i): np.asarray(a)[:m], dict(flux=flux, **truths, **extra)))
    return params, {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def simulate_images(key, n: int, cfg: ImageConfig = ImageConfig(), grid: S.SPSGrid | None = None,
                    batch: int = 256, population=None, r_limit: float | None = None) -> dict[str, np.ndarray]:
    """``n`` galaxies: ``images`` (n, n_img_band, size, size) float32 with noise, ``image_sigma``
    (n_img_band,), photometry ``flux``/``flux_err``/``flux_true`` in ``cfg.sed.bands``, the
    ``TRUTHS`` and ``bt``, ``incl_deg``, ``av_disk``, and ``index``: each row's number among the ``n``.

    ``r_limit``: only the galaxies whose noisy r (asinh magnitude) is brighter are kept, and only they
    are rendered (a survey's selection: at r < 17.77 about half the broad prior's galaxies).

    ``population``: a calibrated prior of this simulator (a
    :class:`~galdust.simulate.population.Population` with ``simulator='images'``, e.g. the shipped
    SDSS one) instead of the broad ``cfg.sed`` prior: component draws accepted by rejection on their
    parameters and photometry, then rendered; its zero-points are applied to the photometry and the
    images alike (they are the stellar models' offsets from the survey's photometric system)."""
    from .population import image_theta_features
    from .sed import draw_population

    grid = grid if grid is not None else S.load_sps()
    fs_img, fs_phot = S.filter_set(cfg.image_bands), S.filter_set(cfg.sed.bands)
    kp, kn, ki = jax.random.split(key, 3)
    if population is None:
        params, out = draw_components(kp, n, cfg.sed, grid, fs_img, fs_phot, batch)
    else:
        if population.simulator != "images":
            raise ValueError("this population was calibrated on the photometric simulator, not the image one "
                             "(galdust calibrate-population --images)")
        sed_batch = 1024  # the rejection computes many more spectra than it keeps: never a small batch
        params, out = draw_population(kp, n, cfg.sed, grid, None, population, batch=sed_batch,
                                      draw=lambda k, m, c: draw_components(k, m, c, grid, fs_img, fs_phot, sed_batch),
                                      features=image_theta_features)
        zp = lambda bands: 10 ** (-0.4 * np.array([population.zeropoints.get(b, 0.0) for b in bands]))  # noqa: E731
        out["flux"] = out["flux"] * zp(cfg.sed.bands)
        out["flux_b"], out["flux_d"] = out["flux_b"] * zp(cfg.image_bands), out["flux_d"] * zp(cfg.image_bands)
    noisy, sig = (np.asarray(a) for a in add_noise(kn, jnp.asarray(out["flux"]), cfg.sed.bands, cfg.sed))
    index = np.arange(n)
    if r_limit is not None:
        from .sed import brighter_than

        index = brighter_than(noisy, cfg.sed.bands, r_limit)
        params, out = ({k: v[index] for k, v in d.items()} for d in (params, out))
        noisy, sig, n = noisy[index], sig[index], len(index)
    sky = jnp.asarray([SKY_PIX[b] for b in cfg.image_bands])
    imgs = [np.zeros((0, len(cfg.image_bands), cfg.size, cfg.size), np.float32)]
    for i in range(0, n, batch):
        im = _render_batch_jit(grid, {k: _rows(v, i, batch) for k, v in params.items()}, _rows(out["flux_b"], i, batch),
                               _rows(out["flux_d"], i, batch), cfg)
        im = im + sky[:, None, None] * jax.random.normal(jax.random.fold_in(ki, i), im.shape)
        imgs.append(np.asarray(im.astype(jnp.float32))[: min(batch, n - i)])
    return dict(images=np.concatenate(imgs), image_sigma=np.array([SKY_PIX[b] for b in cfg.image_bands], np.float32),
                flux=noisy, flux_err=sig, flux_true=out["flux"], index=index,
                **{k: out[k] for k in TRUTHS}, **{k: out[k] for k in ("bt", "incl_deg", "av_disk")})


def noiseless_images(key, n: int, cfg: ImageConfig = ImageConfig(), grid: S.SPSGrid | None = None,
                     dust: bool = True) -> dict[str, np.ndarray]:
    """``n`` galaxies in one batch, without noise: ``images`` (n, n_img_band, size, size) [nmgy], the
    components' image-band fluxes ``flux_b`` and ``flux_d`` [nmgy] (bulge − disk colours), the
    ``TRUTHS`` and ``bt``, ``incl_deg``, ``av_disk``. ``dust=False`` switches the dust off in both
    components (dust-free hosts for ``bench/bench_other_simulator.py``)."""
    grid = grid if grid is not None else S.load_sps()
    p = _component_params(key, n, cfg.sed, grid)
    if not dust:
        p["av"] = jnp.zeros_like(p["av"])
    imgs, _, truths, extra = _one_batch_jit(grid, S.filter_set(cfg.image_bands), S.filter_set(cfg.sed.bands), p, cfg)
    return jax.tree.map(np.asarray, dict(images=imgs, **truths, **extra))

