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
(Kormendy & Ho 2013), which is why images help for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..physics import sps as S
from .sed import TRUTHS, SEDConfig, add_noise, sample_params

__all__ = ["ImageConfig", "simulate_images", "noiseless_images", "SKY_PIX"]

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


def _one_batch(grid, fs_img, fs_phot, p, cfg: ImageConfig):
    from .sed import _sfr100_frac, _weights

    n = p["z"].shape[0]
    w_d = jax.vmap(_weights, (None, 0))(grid, p)
    w_b = jax.vmap(S.delayed_tau_weights, (None, 0, 0))(grid.age_edges, p["age_b"], p["tau_b"])
    av_d = p["av"] * (1 + 2 * (1 - jnp.cos(p["incl"])))
    av_b = 0.2 * p["av"]
    sp = S.galaxy_spectrum(grid, jnp.concatenate([w_b, w_d]), jnp.concatenate([p["logz_b"], p["logz"]]),
                           jnp.concatenate([p["logu"], p["logu"]]), jnp.concatenate([av_b, av_d]),
                           jnp.concatenate([p["delta"], p["delta"]]))
    mstar_b, mstar_d = sp["mstar"][:n], sp["mstar"][n:]
    mf_b, mf_d = 10 ** p["logm_b"] / mstar_b, 10 ** p["logm_d"] / mstar_d
    z2, mf2 = jnp.concatenate([p["z"], p["z"]]), jnp.concatenate([mf_b, mf_d])
    fi = S.photometry_nmgy(grid, fs_img, sp["lum"], z2, mf2)
    fp = S.photometry_nmgy(grid, fs_phot, sp["lum"], z2, mf2)
    lines = S.line_flux_cgs(grid, sp["lines"], z2, mf2) * 1e17
    da = jnp.interp(p["z"], grid.z_grid, grid.dl_mpc) / (1 + p["z"]) ** 2
    imgs = jax.vmap(lambda q, a, b, d: _render(q, a, b, cfg, d))(p, fi[:n], fi[n:], da)
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
    # the components' image-band fluxes [nmgy] (bulge - disk colours)
    extra = dict(bt=p["bt"], incl_deg=jnp.rad2deg(p["incl"]), av_disk=av_d, flux_b=fi[:n], flux_d=fi[n:])
    return imgs, fp[:n] + fp[n:], truths, extra


_one_batch_jit = eqx.filter_jit(_one_batch)


def simulate_images(key, n: int, cfg: ImageConfig = ImageConfig(), grid: S.SPSGrid | None = None,
                    batch: int = 256) -> dict[str, np.ndarray]:
    """``n`` galaxies: ``images`` (n, n_img_band, size, size) float32 with noise, ``image_sigma``
    (n_img_band,), photometry ``flux``/``flux_err``/``flux_true`` in ``cfg.sed.bands``, the
    ``TRUTHS`` and ``bt``, ``incl_deg``, ``av_disk``."""
    grid = grid if grid is not None else S.load_sps()
    fs_img, fs_phot = S.filter_set(cfg.image_bands), S.filter_set(cfg.sed.bands)
    kp, kn, ki = jax.random.split(key, 3)
    params = _component_params(kp, n, cfg.sed, grid)
    outs = []
    for i in range(0, n, batch):
        sl = {k: v[i : i + batch] for k, v in params.items()}
        m = len(sl["z"])
        if m < batch:
            sl = {k: jnp.concatenate([v, jnp.repeat(v[-1:], batch - m, axis=0)]) for k, v in sl.items()}
        imgs, flux, truths, extra = _one_batch_jit(grid, fs_img, fs_phot, sl, cfg)
        sky = jnp.asarray([SKY_PIX[b] for b in cfg.image_bands])
        imgs = imgs + sky[:, None, None] * jax.random.normal(jax.random.fold_in(ki, i), imgs.shape)
        outs.append(jax.tree.map(lambda a, m=m: np.asarray(a[:m]), (imgs.astype(jnp.float32), flux, truths, extra)))
    imgs, flux, truths, extra = jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
    noisy, sig = add_noise(kn, jnp.asarray(flux), cfg.sed.bands, cfg.sed)
    return dict(images=imgs, image_sigma=np.array([SKY_PIX[b] for b in cfg.image_bands], np.float32),
                flux=np.asarray(noisy), flux_err=np.asarray(sig), flux_true=flux,
                **{k: truths[k] for k in TRUTHS}, **{k: extra[k] for k in ("bt", "incl_deg", "av_disk")})


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

