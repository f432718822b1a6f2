"""Simulated galaxy photometry with truths, from :mod:`galdust.physics.sps` (one ``jax.vmap``).

Per galaxy: redshift, stellar mass, a star-formation history (delayed-τ with an optional burst, or
a non-parametric 'continuity' history), metallicity, ionisation parameter, dust (A_V, δ, birth
clouds), a bulge fraction for the black hole; photometry in any registry bands below 6 µm in
nanomaggies with SDSS-like noise, and the truths ``log_mstar`` (mass in living stars, the bagpipes convention), ``log_sfr`` (mean
over 100 Myr), ``logzsol``, ``dn4000`` (Balogh et al. 1999, on the attenuated model spectrum),
``av`` (the galaxy's effective V-band attenuation), ``z``, observed (attenuated) fluxes of
``halpha``, ``hbeta``, ``nii_6584``, ``oiii_5007`` [erg/s/cm²] and ``log_mbh`` (Kormendy & Ho 2013,
eq. 10, M_BH from the bulge mass with 0.29 dex scatter).

Priors (``SEDConfig``) are broad and documented in the fields; the redshift distribution follows the
SDSS main sample's (p(z) ∝ z² exp(−(z/z₀)^1.5), z₀ = 0.065, in ``z_range``). ``nuv_max`` > 0 adds a
parameter ``nuv``: a near-UV correction of the stars older than 1 Gyr (:func:`galdust.physics.sps.nuv_shape`),
off in the broad prior and drawn by the calibrated SDSS population (docs/sim_to_real.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..physics import sps as S

__all__ = ["SEDConfig", "sample_params", "sed_truths", "simulate_photometry", "brighter_than", "TRUTHS", "SDSS_SKY_NMGY"]

#: truth columns, in this order
TRUTHS = ("log_mstar", "log_sfr", "logzsol", "dn4000", "av", "z", "halpha", "hbeta", "nii_6584", "oiii_5007",
          "log_mbh")
#: per-band sky noise [nanomaggies] of SDSS MODELFLUX, fitted to MODELFLUX_IVAR of the 2,500
#: development galaxies (σ² = sky² + (f·frac)², frac ≈ 0.2 %); others: typical survey depths
SDSS_SKY_NMGY = {"sdss_u": 1.16, "sdss_g": 0.65, "sdss_r": 1.07, "sdss_i": 1.63, "sdss_z": 5.07,
                 "galex_fuv": 0.4, "galex_nuv": 0.4, "2mass_j": 40.0, "2mass_h": 60.0, "2mass_ks": 60.0,
                 "wise_w1": 8.0, "wise_w2": 15.0}
#: SDSS MODELFLUX errors, fitted to MODELFLUX_IVAR of the 2,500 development galaxies (before the
#: Galactic-extinction correction): σ² = a² + b·f + (c·f)² [nmgy], then a per-galaxy log-normal factor
#: (one factor common to all bands, ln-σ 0.13 — size and surface brightness — plus one per band); the
#: fit's residual scatter in ln σ is 0.25, 0.17, 0.16, 0.17, 0.22 (u…z), correlated ~0.65 between bands
SDSS_NOISE = {"sdss_u": (0.646, 0.0289, 0.0031, 0.20), "sdss_g": (0.218, 0.00291, 0.0016, 0.10),
              "sdss_r": (0.178, 0.00394, 0.0015, 0.08), "sdss_i": (0.174, 0.00638, 0.0014, 0.10),
              "sdss_z": (1.279, 0.0421, 0.0009, 0.18)}  # (a, b, c, independent ln-σ)
NOISE_COMMON = 0.13
#: noise the reported errors do not contain: SDSS photometric calibration (≈2 % in u, 1 % in griz,
#: Padmanabhan et al. 2008) and model-magnitude systematics; added to the flux, not to flux_err
SDSS_UNREPORTED = {"sdss_u": 0.02, "sdss_g": 0.01, "sdss_r": 0.01, "sdss_i": 0.01, "sdss_z": 0.01}
COARSE = (0.0, 1e7, 1e8, 3e8, 1e9, 3e9, 6e9)  # lookback edges [yr] of the non-parametric SFH (+ t_univ)


@dataclass(frozen=True)
class SEDConfig:
    bands: tuple[str, ...] = ("sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z")
    z_range: tuple[float, float] = (0.005, 0.3)
    z0: float = 0.065  # SDSS-main-like redshift distribution scale
    logm_range: tuple[float, float] = (8.5, 12.0)  # log10 M* [M_⊙], uniform
    p_nonparametric: float = 0.3  # fraction of continuity SFHs
    p_burst: float = 0.3  # fraction of delayed-τ SFHs with a burst
    av_mean: float = 0.4  # A_V ~ exponential (ISM), capped at 3
    calib_floor: float = 0.01  # fractional calibration noise added in quadrature (non-SDSS bands)
    nuv_max: float = 0.0  # near-UV correction of old stars [mag] ~ U(0, nuv_max) (physics.sps.nuv_shape); 0: none
    sky: tuple = tuple(SDSS_SKY_NMGY.items())  # (band, σ_sky [nmgy]) pairs (hashable: a jit static)


def _sample_z(key, n, cfg):
    zs = jnp.linspace(cfg.z_range[0], cfg.z_range[1], 2048)
    p = zs**2 * jnp.exp(-((zs / cfg.z0) ** 1.5))
    c = jnp.cumsum(p) / jnp.sum(p)
    return jnp.interp(jax.random.uniform(key, (n,)), c, zs)


def draw_size(n: int) -> int:
    """The size :func:`sample_params` draws at for ``n`` galaxies: the next power of two ≥ n, at least 1024."""
    return max(1024, 1 << max(n - 1, 0).bit_length())


def sample_params(key, n: int, cfg: SEDConfig, grid: S.SPSGrid) -> dict:
    """Draw ``n`` galaxies' parameters from the priors (a dict of numpy arrays).

    Drawn at :func:`draw_size` (n) in one compiled program and cut to the first ``n``: every draw is
    element-wise under JAX's partitionable threefry (element j depends on j, not on the shape), so
    these are the random numbers a draw of ``n`` gives (the parameters derived from them equal those of
    op-by-op evaluation to float32 rounding: the compiled program fuses the arithmetic), while the
    calibrated population's rejection rounds and the tests' many sizes compile a handful of programs
    instead of every random and array operation again for each new ``n`` (``jax.random.t`` alone took
    0.95 s per size)."""
    p = _sample_params(key, draw_size(n), cfg, grid)
    return {k: np.asarray(v)[:n] for k, v in p.items()}


@eqx.filter_jit
def _sample_params(key, n: int, cfg: SEDConfig, grid: S.SPSGrid) -> dict:
    k = jax.random.split(key, 16)
    z = _sample_z(k[0], n, cfg)
    t_u = jnp.interp(z, grid.z_grid, grid.t_univ)
    logm = jax.random.uniform(k[1], (n,), minval=cfg.logm_range[0], maxval=cfg.logm_range[1])
    logz = jnp.clip(0.25 * (logm - 10.5) - 0.1 + 0.3 * jax.random.normal(k[2], (n,)), -2.0, 0.65)
    return dict(
        z=z, t_univ=t_u, logm=logm, logz=logz,
        nonparam=jax.random.uniform(k[3], (n,)) < cfg.p_nonparametric,
        age=1e9 + jax.random.uniform(k[4], (n,)) * (t_u - 1e9),  # time since the SFH started [yr]
        tau=10.0 ** jax.random.uniform(k[5], (n,), minval=8.0, maxval=10.2),
        burst=jnp.where(jax.random.uniform(k[6], (n,)) < cfg.p_burst,
                        jax.random.uniform(k[7], (n,), maxval=0.3), 0.0),
        t_burst=10.0 ** jax.random.uniform(k[8], (n,), minval=7.0, maxval=9.0),
        ratios=jnp.clip(0.3 * jax.random.t(k[9], 2.0, (n, len(COARSE) - 1)), -2.0, 2.0),
        logu=jnp.clip(-3.0 + 0.4 * jax.random.normal(k[10], (n,)), -4.0, -1.0),
        av=jnp.minimum(cfg.av_mean * jax.random.exponential(k[11], (n,)), 3.0),
        delta=jax.random.uniform(k[12], (n,), minval=-0.8, maxval=0.4),
        bt=jax.random.uniform(k[13], (n,)),
        mbh_scatter=0.29 * jax.random.normal(k[14], (n,)),
        # drawn only where the prior has it: the other draws, and the programs of nuv_max = 0, are unchanged
        **({"nuv": cfg.nuv_max * jax.random.uniform(k[15], (n,))} if cfg.nuv_max > 0 else {}),
    )


def _weights(grid, p):
    w_tau = S.delayed_tau_weights(grid.age_edges, p["age"], p["tau"])
    w_b = S.burst_weights(grid.age_edges, p["t_burst"], 0.2 * p["t_burst"])
    w_d = (1.0 - p["burst"]) * w_tau + p["burst"] * w_b
    edges = jnp.concatenate([jnp.asarray(COARSE), p["t_univ"][None]])
    w_np = S.binned_sfh_weights(grid.age_edges, edges, p["ratios"])
    w = jnp.where(p["nonparam"], w_np, w_d)
    return w * (grid.age_edges[:-1] < p["t_univ"])


def _sfr100_frac(grid, w):
    lo, hi = grid.age_edges[:-1], grid.age_edges[1:]
    frac = jnp.clip(jnp.minimum(hi, 1e8) - lo, 0.0, None) / (hi - lo)
    return jnp.sum(w * frac) / 1e8  # per M_⊙ formed per yr


def sed_truths(grid: S.SPSGrid, fs: S.FilterSet, p: dict) -> dict:
    """A batch of galaxies (``p`` from :func:`sample_params`): noiseless fluxes [nmgy] and truths.
    Line fluxes in 10⁻¹⁷ erg/s/cm² (the SDSS unit)."""
    w = jax.vmap(_weights, (None, 0))(grid, p)
    sp = S.galaxy_spectrum(grid, w, p["logz"], p["logu"], p["av"], p["delta"], nuv=p.get("nuv"))
    mass_formed = 10.0 ** p["logm"] / sp["mstar"]
    flux = S.photometry_nmgy(grid, fs, sp["lum"], p["z"], mass_formed)
    lines = S.line_flux_cgs(grid, sp["lines"], p["z"], mass_formed) * 1e17
    sfr = jax.vmap(_sfr100_frac, (None, 0))(grid, w) * mass_formed
    log_mbh = 8.69 + 1.16 * (p["logm"] + jnp.log10(jnp.maximum(p["bt"], 1e-3)) - 11.0) + p["mbh_scatter"]
    return dict(flux=flux, log_mstar=p["logm"], log_sfr=jnp.log10(jnp.maximum(sfr, 1e-6)),
                logzsol=p["logz"], dn4000=S.dn4000(grid.wave_d4, sp["lum_d4"]), av=sp["av_eff"], z=p["z"],
                halpha=lines[:, 0], hbeta=lines[:, 1], nii_6584=lines[:, 2], oiii_5007=lines[:, 3], log_mbh=log_mbh)


def add_noise(key, flux, bands, cfg: SEDConfig):
    """Noise; returns (noisy flux, reported σ).

    SDSS bands: the errors of real SDSS MODELFLUX (``SDSS_NOISE``: σ² = a² + b·f + (c·f)² with a
    per-galaxy log-normal spread) are the reported σ; the flux also gets the calibration noise the
    reported errors lack (``SDSS_UNREPORTED``). Other bands: σ² = sky² + (calib_floor · f)², reported.
    """
    kc, ki, kn, ku = jax.random.split(key, 4)
    sky = jnp.asarray([dict(cfg.sky)[b] for b in bands])
    f = jnp.abs(flux)
    sig = jnp.sqrt(sky**2 + (cfg.calib_floor * f) ** 2)
    sdss = jnp.asarray([b in SDSS_NOISE for b in bands])
    if bool(sdss.any()):
        a, b_, c, s_ind = (jnp.asarray([SDSS_NOISE.get(b, (1.0, 0.0, 0.0, 0.0))[i] for b in bands]) for i in range(4))
        spread = NOISE_COMMON * jax.random.normal(kc, flux.shape[:-1] + (1,)) + s_ind * jax.random.normal(ki, flux.shape)
        sig = jnp.where(sdss, jnp.sqrt(a**2 + b_ * f + (c * f) ** 2) * jnp.exp(spread), sig)
    extra = jnp.asarray([SDSS_UNREPORTED.get(b, 0.0) for b in bands]) * f
    return flux + sig * jax.random.normal(kn, flux.shape) + extra * jax.random.normal(ku, flux.shape), sig


def brighter_than(flux, bands, r_limit: float) -> np.ndarray:
    """Indices of the rows whose r (asinh magnitude of the noisy flux, softened by the SDSS sky) is
    brighter than ``r_limit``: a survey's selection (17.77: the SDSS main sample)."""
    from ..posterior.model import luptitudes

    j = list(bands).index("sdss_r")
    return np.nonzero(luptitudes(np.asarray(flux)[:, j], SDSS_SKY_NMGY["sdss_r"]) < r_limit)[0]


def _draw(key, n: int, cfg: SEDConfig, grid, fs, batch: int) -> tuple[dict, dict]:
    """Parameters and noiseless truths of ``n`` galaxies from the broad prior (numpy dicts)."""
    params = sample_params(key, n, cfg, grid)  # numpy: slicing and padding compile nothing
    outs = []
    for i in range(0, n, batch):
        sl = {k: v[i : i + batch] for k, v in params.items()}
        m = len(sl["z"])
        if m < batch:  # pad to one compiled shape
            sl = {k: np.concatenate([v, np.repeat(v[-1:], batch - m, axis=0)]) for k, v in sl.items()}
        outs.append({k: np.asarray(a)[:m] for k, a in _batched_truths(grid, fs, sl).items()})
    return params, {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def draw_population(key, n: int, cfg: SEDConfig, grid, fs, population, batch: int = 4096,
                    max_draws: int = 200_000_000, draw=None, features=None) -> tuple[dict, dict]:
    """``n`` galaxies from a calibrated prior (:class:`galdust.simulate.population.Population`):
    broad-prior draws accepted with probability min(1, ν(θ)/ν_max). The broad prior is ``cfg`` with the
    population's own near-UV correction range (:meth:`~galdust.simulate.population.Population.config`).
    ``draw(key, m, cfg) -> (params, truths)`` and ``features(params, truths) -> θ``: another simulator's
    broad draws and parameters (the image simulator's); by default this module's."""
    from .population import theta_features

    features = features or theta_features
    draw = draw or (lambda k, m, c: _draw(k, m, c, grid, fs, batch))
    cfg = population.config(cfg)
    kept_p, kept_t, n_kept, drawn, i = [], [], 0, 0, 0
    while n_kept < n:
        if drawn > max_draws:
            raise RuntimeError(f"the population accepted {n_kept} of {drawn} draws; stopped")
        m = max(batch, min(4 * (n - n_kept), 65536))
        # independent keys for the draws and the acceptance (fold_in(k, 1) can equal split(k)[1])
        kd, ka = jax.random.split(jax.random.fold_in(key, i))
        p, t = draw(kd, m, cfg)
        lw = population.log_weight(features(p, t)) - population.log_w_max
        u = np.asarray(jax.random.uniform(ka, (m,)))
        acc = np.nonzero(np.log(np.maximum(u, 1e-30)) < lw)[0]
        kept_p.append({k: v[acc] for k, v in p.items()})
        kept_t.append({k: v[acc] for k, v in t.items()})
        n_kept += len(acc)
        drawn += m
        i += 1
    cat = {k: np.concatenate([d[k] for d in kept_p])[:n] for k in kept_p[0]}
    return cat, {k: np.concatenate([d[k] for d in kept_t])[:n] for k in kept_t[0]}


def simulate_photometry(key, n: int, cfg: SEDConfig = SEDConfig(), grid: S.SPSGrid | None = None,
                        batch: int = 4096, population=None) -> dict[str, np.ndarray]:
    """``n`` galaxies: ``flux``, ``flux_err``, ``flux_true`` (n, n_band) [nmgy] and the ``TRUTHS``.

    ``population``: a calibrated prior (:mod:`galdust.simulate.population`, e.g. the shipped SDSS
    one) instead of the broad ``cfg`` prior; its photometric zero-points are applied to its bands."""
    grid = grid if grid is not None else S.load_sps()
    fs = S.filter_set(cfg.bands)
    kp, kn = jax.random.split(key)
    if population is None:
        _, out = _draw(kp, n, cfg, grid, fs, batch)
    else:
        # the draws are many more than n (a few % are accepted): never a small compiled batch
        _, out = draw_population(kp, n, cfg, grid, fs, population, max(batch, 4096))  # its broad prior's cfg
        zp = np.array([population.zeropoints.get(b, 0.0) for b in cfg.bands])
        out["flux"] = out["flux"] * 10 ** (-0.4 * zp)
    noisy, sig = add_noise(kn, jnp.asarray(out["flux"]), cfg.bands, cfg)
    out["flux_true"] = out.pop("flux")
    out["flux"], out["flux_err"] = np.asarray(noisy), np.asarray(sig)
    return out


_batched_truths = eqx.filter_jit(sed_truths)
