"""Dusty-galaxy simulator: 3-D stars and dust, absorption-only ray marching along the line of sight.

A galaxy is a stellar bulge (3-D Sérsic-like spheroid), an exponential stellar disk with logarithmic
spiral arms, and star-forming clumps on the arms, each with its own SED: stellar populations
(``hosts='realistic'``, the default: an old metal-rich bulge, a disk with steady star formation, young
clumps, with bulge − disk colours as measured in real galaxies; :mod:`galdust.simulate.host_sed`) or
power laws ``f_ν ∝ (λ/λ_ref)^β`` (``hosts='stress'``: bulge − disk Δ(g−i) up to 1.4 mag, a stress
set); ``isochromatic`` gives all components the disk's SED. ``nucleus`` adds an unresolved nucleus
(an AGN) at the galaxy's centre: a power law f_ν ∝ λ^β_nuc (β_nuc from −0.5, bluer than any disk, to
2.5, a reddened AGN) with 3–30 % of the host's flux at λ_ref, seen through half the dust column of the
central line of sight (it sits in the midplane).
Dust is an exponential disk thinner than the stars (with its own scale length and a truncation
radius), spiral-arm dust lanes on the inner edge of the stellar arms, an optional ring, dust tied to
the star-forming clumps, and random patches. Attenuation per band follows the Calzetti/Noll curve
with a per-galaxy slope δ, using the filter-integrated coefficients K_b(δ) of
:mod:`galdust.physics.attenuation`.

Rendering: for each pixel (x, y) the line of sight s is sampled at ``n_los`` points, denser near the
galaxy's centre (``s = L sinh(a u)/sinh(a)``). The optical depth at the reference wavelength in front
of each sample is the cumulative dust column toward the observer (midpoint rule), and the band
intensity is ``I_b = Σ_c SED_cb Σ_s j_c(s) exp(-K_b τ(s)) ds``. Two monochromatic extra channels, at
λ_ref and at 0.551 µm, give the truth transmission map D and the A_V map. Everything is then
convolved with the PSF (Gaussian FWHM per band, or a given PSF cube) and, optionally, noise is added.

S/N definition: per band, the matched-filter S/N of the noiseless observed image in white noise,
``S/N_b = sqrt(Σ_p Y_bp²) / σ_b``; the constant background σ_b is set to reach the requested S/N.
That is a whole-galaxy S/N: at S/N 50 the brightest pixel has S/N ≈ 11 and the mean pixel inside
the 84 % light contour ≈ 1.8. ``snr_kind="peak"`` sets instead the S/N of the brightest pixel
(``σ_b = max_p Y_bp / S/N``), the per-pixel convention of resolved dust mapping.

Truth per galaxy (after the PSF): intrinsic host cube, host morphology S (intrinsic host at λ_ref,
peak 1), host SED F_b (so that host_b ≈ F_b S; exact for isochromatic hosts), transmission map D at
λ_ref, effective A_V map ``-2.5 log10(obs_V / host_V)``, host-light-weighted A_V, covering fraction
(fraction of host V-band light with A_V > 0.02), δ and the geometry parameters.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..physics.attenuation import LAMBDA_REF, LAMBDA_V, BandAttenuation, attenuation_ratio
from ..physics.filters import get_filter
from ..physics.psf import convolve_fft, gaussian_psf
from .host_sed import HOSTS, Z_RANGE, channel_filters, component_seds, draw_components

__all__ = [
    "SimConfig",
    "GalaxyParams",
    "sample_params",
    "render",
    "simulate",
]

#: SimConfig.dust_frame: where the dust curve acts (observed wavelengths, or the host's rest frame)
DUST_FRAMES = ("observed", "rest")
N_CLUMP = 8
N_PATCH = 10
NUCLEUS_SIGMA = 0.5  # px: the simulated nucleus before the PSF (unresolved)


@dataclass(frozen=True)
class SimConfig:
    """Settings of a simulation run (hashable: the jit static argument, but for :data:`TRACED_FIELDS`)."""

    bands: tuple[str, ...] = ("sdss_g", "sdss_r", "sdss_i", "sdss_z")
    size: int = 64
    n_los: int = 40
    lam_ref: float = LAMBDA_REF
    psf_fwhm: float | tuple[float, ...] | None = 2.0  # pixels; None: no PSF
    snr: float | None = 50.0  # per band, see module docstring; None: noiseless
    snr_kind: str = "matched"  # "matched": matched-filter S/N; "peak": S/N of the brightest pixel
    isochromatic: bool = False
    hosts: str = "realistic"  # component SEDs: 'realistic' (stellar populations) or 'stress' (power laws)
    screen: bool = False  # thin foreground screen instead of mixed 3-D dust (tests)
    dust_free: bool = False
    total_flux: float = 1000.0  # host flux at λ_ref, arbitrary units
    bump: bool = False
    nucleus: bool = False  # an unresolved nucleus (AGN) at the centre (module docstring)
    # redshift range of the stellar-population SEDs (realistic hosts; the shipped stores and networks
    # used host_sed.Z_RANGE = 0.02-0.15)
    z_range: tuple[float, float] = Z_RANGE
    # where the dust curve acts: 'observed' (at the filters' wavelengths, as the shipped stores and networks
    # were made; the fit without a redshift) or 'rest' (at the host's rest wavelengths λ/(1 + z): the truth
    # D, A_V and δ are rest-frame, and `galdust simulate` writes the host's REDSHIFT for the fit to read)
    dust_frame: str = "observed"

    def __post_init__(self):
        object.__setattr__(self, "bands", tuple(self.bands))
        if self.hosts not in HOSTS:
            raise ValueError(f"hosts must be one of {', '.join(HOSTS)}, not {self.hosts!r}")
        if self.dust_frame not in DUST_FRAMES:
            raise ValueError(f"dust_frame must be one of {', '.join(DUST_FRAMES)}, not {self.dust_frame!r}")
        if self.snr_kind not in ("matched", "peak"):
            raise ValueError(f"snr_kind must be 'matched' or 'peak', not {self.snr_kind!r}")
        if isinstance(self.psf_fwhm, list):
            object.__setattr__(self, "psf_fwhm", tuple(self.psf_fwhm))
        object.__setattr__(self, "z_range", tuple(float(v) for v in self.z_range))
        if not 0.0 < self.z_range[0] <= self.z_range[1]:
            raise ValueError(f"z_range must be 0 < lo <= hi, not {self.z_range}")


class GalaxyParams(NamedTuple):
    """Parameters of one galaxy (or a batch, with a leading axis on every field)."""

    inc: jnp.ndarray  # inclination (rad), 0 face-on
    pa: jnp.ndarray  # position angle (rad)
    x0: jnp.ndarray  # centre offset (px)
    y0: jnp.ndarray
    re_b: jnp.ndarray  # bulge effective radius (px)
    n_b: jnp.ndarray  # bulge Sérsic index
    q_b: jnp.ndarray  # bulge flattening
    bt: jnp.ndarray  # bulge-to-total at λ_ref
    h_r: jnp.ndarray  # stellar disk scale length (px)
    h_z: jnp.ndarray  # stellar disk scale height (px)
    r_trunc: jnp.ndarray  # stellar truncation radius (px)
    arm_amp: jnp.ndarray  # spiral-arm strength [0, 1]
    n_arms: jnp.ndarray  # 2 or 3
    pitch: jnp.ndarray  # pitch angle (rad)
    arm_phase: jnp.ndarray
    f_clump: jnp.ndarray  # clump light fraction at λ_ref
    clump_r: jnp.ndarray  # (N_CLUMP,) disk-plane radius (px)
    clump_phi: jnp.ndarray  # (N_CLUMP,) azimuth (rad)
    clump_size: jnp.ndarray  # (N_CLUMP,) px
    clump_w: jnp.ndarray  # (N_CLUMP,) relative weights (0 = absent)
    beta_b: jnp.ndarray  # SED slopes f_ν ∝ (λ/λ_ref)^β
    beta_d: jnp.ndarray
    beta_c: jnp.ndarray
    tau_disk: jnp.ndarray  # face-on central optical depth of the dust disk at λ_ref
    h_rd: jnp.ndarray  # dust scale length (px)
    h_zd: jnp.ndarray  # dust scale height (px)
    r_trunc_d: jnp.ndarray  # dust truncation radius (px)
    dust_arm: jnp.ndarray  # dust-lane strength [0, 1]
    tau_ring: jnp.ndarray
    r_ring: jnp.ndarray
    w_ring: jnp.ndarray
    tau_clump: jnp.ndarray  # dust tied to the clumps
    tau_patch: jnp.ndarray
    patch_r: jnp.ndarray  # (N_PATCH,)
    patch_phi: jnp.ndarray  # (N_PATCH,)
    patch_size: jnp.ndarray  # (N_PATCH,)
    patch_w: jnp.ndarray  # (N_PATCH,)
    delta: jnp.ndarray  # attenuation-curve slope
    sed: jnp.ndarray  # (3, n_band + 2) f_ν of [bulge, disk, clumps] in the bands, λ_ref and V; 1 at λ_ref
    z_sed: jnp.ndarray  # redshift of the stellar-population SEDs (0 for power laws)
    dgi: jnp.ndarray  # bulge − disk colour between the first and third band (g − i for griz) [mag]
    f_nuc: jnp.ndarray  # nucleus flux at λ_ref / the host's (0: no nucleus)
    beta_nuc: jnp.ndarray  # nucleus SED slope, f_ν ∝ (λ/λ_ref)^β
    sed_nuc: jnp.ndarray  # (n_band + 2,) f_ν of the nucleus in the bands, λ_ref and V; 1 at λ_ref


#: scalar parameters written to truth tables
PARAM_NAMES = tuple(
    n
    for n in GalaxyParams._fields
    if not n.startswith("clump_") and not n.startswith("patch_") and n not in ("sed", "sed_nuc")
)


class _Draws:
    """Uniform draws from the keys ``jax.random.split(key, 64)`` in turn, one key per draw: the
    values of ``jax.random.uniform(keys[i], shape, minval=lo, maxval=hi)`` for the i-th draw (with
    JAX's default partitionable threefry, element j of a draw depends on j only, not on the shape),
    generated by one vmapped random-bits call for all keys instead of one call per draw: the same
    numbers, compiled faster (``docs/eval_dust.md``)."""

    def __init__(self, key, n: int = 64):
        keys = jax.random.split(key, n)
        self.u01 = jax.vmap(lambda k: jax.random.uniform(k, (max(N_CLUMP, N_PATCH),)))(keys)
        self.i = 0

    def __call__(self, lo, hi, shape=()):
        f = self.u01[self.i, 0] if tuple(shape) == () else self.u01[self.i, : shape[0]]
        self.i += 1
        lo, hi = jnp.asarray(lo, jnp.float32), jnp.asarray(hi, jnp.float32)
        return jnp.maximum(lo, f * (hi - lo) + lo)  # as jax.random.uniform maps [0, 1) to [lo, hi)

    def log(self, lo, hi):
        """Log-uniform in [lo, hi)."""
        return jnp.exp(self(jnp.log(lo), jnp.log(hi)))


def sample_params(key, cfg: SimConfig, sed_grid=None) -> GalaxyParams:
    """Draw one galaxy's parameters (vmap over keys for a batch). ``sed_grid``: (SPS grid, channel
    filters) for ``hosts='realistic'`` (:func:`sed_setup`; loaded here when not given).

    Dust regimes: 10 % dust-free, 10 % nearly dust-free (τ ≤ 0.05), 15 % compact/clumpy dust only
    (low covering fraction), 65 % disk dust with face-on central τ_ref log-uniform in [0.05, 6];
    truncation radii from 0.7 to 6 dust scale lengths vary the covering fraction.
    """
    u = _Draws(key)
    s = cfg.size
    h_r = u.log(0.05 * s, 0.14 * s)
    inc = jnp.arccos(u(0.0, 1.0))  # isotropic orientations
    n_arms = jnp.where(u(0, 1) < 0.6, 2.0, 3.0)
    pitch = jnp.deg2rad(u(10.0, 30.0))
    arm_phase = u(0.0, 2 * jnp.pi)
    # clumps sit on the arms
    clump_r = h_r * u(0.4, 3.0, (N_CLUMP,))
    arm_k = jnp.floor(u(0.0, 3.0, (N_CLUMP,)))
    clump_phi = (jnp.log(clump_r / h_r) / jnp.tan(pitch) - arm_phase / n_arms + 2 * jnp.pi * arm_k / n_arms
                 + u(-0.25, 0.25, (N_CLUMP,)))
    n_clumps = jnp.floor(u(0.0, N_CLUMP + 1.0))
    clump_w = jnp.where(jnp.arange(N_CLUMP) < n_clumps, u(0.3, 1.0, (N_CLUMP,)), 0.0)
    f_clump = jnp.where(n_clumps > 0, u(0.0, 0.25), 0.0)
    beta_d = u(-0.2, 1.0)
    beta_b = jnp.where(cfg.isochromatic, beta_d, u(1.0, 2.5))
    beta_c = jnp.where(cfg.isochromatic, beta_d, u(-1.2, 0.0))

    regime = u(0.0, 1.0)
    dust_free = (regime < 0.10) | cfg.dust_free
    nearly = (regime >= 0.10) & (regime < 0.20)
    compact = (regime >= 0.20) & (regime < 0.35)
    tau_disk = jnp.where(nearly, u.log(0.005, 0.05), u.log(0.05, 6.0))
    tau_disk = jnp.where(compact | dust_free, 0.0, tau_disk)
    h_rd = h_r * u(0.8, 1.6)
    r_trunc_d = h_rd * u.log(0.7, 6.0)
    has_ring = (u(0, 1) < 0.25) & ~dust_free & ~nearly
    tau_ring = jnp.where(has_ring, u.log(0.1, 3.0), 0.0)
    has_cl = ((u(0, 1) < 0.5) | compact) & ~dust_free & ~nearly
    tau_clump = jnp.where(has_cl, u.log(0.3, 5.0), 0.0)
    has_patch = ((u(0, 1) < 0.5) | compact) & ~dust_free & ~nearly
    tau_patch = jnp.where(has_patch, u.log(0.2, 4.0), 0.0)
    h_z = jnp.maximum(h_r * u(0.08, 0.15), 0.8)
    lam = jnp.asarray([get_filter(b).effective for b in cfg.bands] + [cfg.lam_ref, LAMBDA_V])
    if cfg.hosts == "stress":
        beta = jnp.stack([beta_b, beta_d, beta_c])
        sed = (lam[None, :] / cfg.lam_ref) ** beta[:, None]
        z_sed = jnp.float32(0.0)
    else:
        grid, fs = sed_grid if sed_grid is not None else sed_setup(cfg)
        comp = draw_components(jax.random.fold_in(key, 1), lambda z: jnp.interp(z, grid.z_grid, grid.t_univ),
                               cfg.z_range)
        sed = component_seds(grid, fs, comp)
        z_sed = comp["z"]
        if cfg.isochromatic:
            sed = jnp.broadcast_to(sed[1], sed.shape)
    dgi = -2.5 * jnp.log10(sed[0, 0] / sed[0, min(2, len(cfg.bands) - 1)]) + 2.5 * jnp.log10(
        sed[1, 0] / sed[1, min(2, len(cfg.bands) - 1)])
    # the nucleus from keys of its own: every other draw is the same with and without it
    un = _Draws(jax.random.fold_in(key, 2), 2)
    f_nuc = jnp.where(cfg.nucleus, un.log(0.03, 0.3), 0.0)
    beta_nuc = un(-0.5, 2.5)
    return GalaxyParams(
        inc=inc,
        pa=u(0.0, jnp.pi),
        x0=u(-1.5, 1.5),
        y0=u(-1.5, 1.5),
        re_b=h_r * u(0.15, 0.5),
        n_b=u(1.5, 4.0),
        q_b=u(0.6, 1.0),
        bt=jnp.where(u(0, 1) < 0.15, 0.0, u(0.0, 0.6)),
        h_r=h_r,
        h_z=h_z,
        r_trunc=h_r * u(3.5, 5.0),
        arm_amp=u(0.0, 0.9),
        n_arms=n_arms,
        pitch=pitch,
        arm_phase=arm_phase,
        f_clump=f_clump,
        clump_r=clump_r,
        clump_phi=clump_phi,
        clump_size=u(0.6, 1.5, (N_CLUMP,)),
        clump_w=clump_w,
        beta_b=beta_b,
        beta_d=beta_d,
        beta_c=beta_c,
        tau_disk=tau_disk,
        h_rd=h_rd,
        h_zd=jnp.maximum(h_z * u(0.3, 0.6), 0.5),
        r_trunc_d=r_trunc_d,
        dust_arm=u(0.0, 1.0),
        tau_ring=tau_ring,
        r_ring=h_r * u(1.0, 3.0),
        w_ring=h_r * u(0.15, 0.4),
        tau_clump=tau_clump,
        tau_patch=tau_patch,
        patch_r=h_rd * jnp.sqrt(u(0.0, 1.0, (N_PATCH,))) * 2.5,
        patch_phi=u(0.0, 2 * jnp.pi, (N_PATCH,)),
        patch_size=u(0.7, 3.0, (N_PATCH,)),
        patch_w=u(0.0, 1.0, (N_PATCH,)),
        delta=u(-1.0, 0.5),
        sed=sed,
        z_sed=z_sed,
        dgi=dgi,
        f_nuc=f_nuc,
        beta_nuc=beta_nuc,
        sed_nuc=(lam / cfg.lam_ref) ** beta_nuc,
    )


def sed_setup(cfg: SimConfig):
    """(SPS grid, channel filters) for ``hosts='realistic'``; None for power-law hosts."""
    if cfg.hosts == "stress":
        return None
    from ..physics.sps import load_sps

    return load_sps(), channel_filters(cfg.bands, cfg.lam_ref)


# ----------------------------------------------------------------------------- geometry


def _los_grid(p: GalaxyParams, cfg: SimConfig):
    """Line-of-sight sampling for every pixel: offsets (n_los,) from a per-pixel centre s₀ (n, n),
    and the segment lengths (n_los,).

    Samples are sinh-stretched around s₀ = v tan i, where the ray crosses the disk mid-plane (v the
    pixel's minor-axis offset; clipped to the image), so thin dust layers are resolved wherever they
    are crossed. The stretch eases from a = 3.5 face-on (dense near the mid-plane) to 0.5 edge-on
    (nearly uniform, since an edge-on ray runs along the disk).
    """
    n = cfg.size
    c = (n - 1) / 2.0
    yy, xx = jnp.meshgrid(jnp.arange(n) - c - p.y0, jnp.arange(n) - c - p.x0, indexing="ij")
    v = -xx * jnp.sin(p.pa) + yy * jnp.cos(p.pa)
    lim = 0.45 * n
    s0 = jnp.clip(v * jnp.tan(jnp.minimum(p.inc, 1.5607)), -lim, lim)
    a = 0.5 + 3.0 * jnp.cos(p.inc)
    half = 0.6 * n
    u = (jnp.arange(cfg.n_los) + 0.5) / cfg.n_los * 2.0 - 1.0
    du = 2.0 / cfg.n_los
    ds = half * a * jnp.cosh(a * u) / jnp.sinh(a) * du
    return half * jnp.sinh(a * u) / jnp.sinh(a), ds, s0


def _slice_coords(p: GalaxyParams, cfg: SimConfig, s):
    """Galaxy-frame coordinates (x', y', z') of the pixels at line-of-sight positions s (scalar or
    (n, n)); z' is the disk normal."""
    n = cfg.size
    c = (n - 1) / 2.0
    yy, xx = jnp.meshgrid(jnp.arange(n) - c - p.y0, jnp.arange(n) - c - p.x0, indexing="ij")
    cpa, spa = jnp.cos(p.pa), jnp.sin(p.pa)
    u = xx * cpa + yy * spa  # along the major axis
    v = -xx * spa + yy * cpa
    ci, si = jnp.cos(p.inc), jnp.sin(p.inc)
    return u, v * ci + s * si, -v * si + s * ci


def _arm(R, phi, p: GalaxyParams, phase_shift=0.0, sharp: int = 3):
    """Logarithmic spiral-arm modulation in [0, 1] (``sharp`` narrows the arms)."""
    ph = p.n_arms * (phi - jnp.log(jnp.maximum(R, 0.3) / p.h_r) / jnp.tan(p.pitch)) + p.arm_phase + phase_shift
    c = 0.5 * (1.0 + jnp.cos(ph))
    out = c
    for _ in range(sharp - 1):
        out = out * c
    return out


def _blobs(xg, yg, r, phi, sizes_weights):
    """Sums of Gaussian blobs in the disk plane, centres (r, φ) shared: one map per (size, weight)."""
    cx, cy = r * jnp.cos(phi), r * jnp.sin(phi)
    d2 = (xg[..., None] - cx) ** 2 + (yg[..., None] - cy) ** 2  # (n, n, blobs)
    # one vectorised pass over the blobs rather than one unrolled pass per blob: faster to run and to
    # compile (``docs/eval_dust.md``)
    return [jnp.sum(w * jnp.exp((-0.5 / size**2) * d2), axis=-1) for size, w in sizes_weights]


def _slice_fields(p: GalaxyParams, cfg: SimConfig, s):
    """Stellar emissivities (3, n, n) [bulge, disk, clumps] and dust opacity (n, n) at position s."""
    xg, yg, zg = _slice_coords(p, cfg, s)
    R = jnp.sqrt(xg**2 + yg**2 + 1e-6)
    phi = jnp.arctan2(yg, xg)
    az = jnp.abs(zg)
    # --- stars
    m = jnp.sqrt(xg**2 + yg**2 + (zg / p.q_b) ** 2 + 0.01)
    b_n = 2.0 * p.n_b - 1.0 / 3.0
    j_bulge = jnp.exp(-b_n * (m / p.re_b) ** (1.0 / p.n_b))
    trunc = jax.nn.sigmoid((p.r_trunc - R) / 1.0)
    arm = _arm(R, phi, p)
    j_disk = jnp.exp(-R / p.h_r - az / p.h_z) * (1.0 - p.arm_amp + 2.5 * p.arm_amp * arm) * trunc
    blob, dblob = _blobs(xg, yg, p.clump_r, p.clump_phi, [
        (p.clump_size, p.clump_w), (p.clump_size * 1.3, (p.clump_w > 0).astype(xg.dtype))])
    j_clump = blob * jnp.exp(-az / (0.7 * p.h_z))
    # --- dust (optical depth per pixel length at λ_ref)
    vert = jnp.exp(-az / p.h_zd) / (2.0 * p.h_zd)
    trunc_d = jax.nn.sigmoid((p.r_trunc_d - R) / 0.7)
    arm_d = _arm(R, phi, p, phase_shift=-0.6, sharp=4)
    sig_disk = jnp.exp(-R / p.h_rd) * (1.0 - 0.8 * p.dust_arm + 3.0 * p.dust_arm * arm_d) * trunc_d
    ring = jnp.exp(-0.5 * ((R - p.r_ring) / p.w_ring) ** 2)
    (patch,) = _blobs(xg, yg, p.patch_r, p.patch_phi, [(p.patch_size, p.patch_w)])
    rho = (p.tau_disk * sig_disk + p.tau_ring * ring + p.tau_clump * dblob + p.tau_patch * patch) * vert
    return jnp.stack([j_bulge, j_disk, j_clump]), jnp.maximum(rho, 0.0)


def _march(p: GalaxyParams, cfg: SimConfig, K):
    """Ray-march from the observer (+s) backwards; returns attenuated (3, C, n, n) and intrinsic
    (3, n, n) emission per stellar component, for channels with coefficients ``K`` (C,)."""
    s_off, ds_all, s0 = _los_grid(p, cfg)
    n = cfg.size
    order = jnp.arange(cfg.n_los)[::-1]  # front (largest s) first
    C = K.shape[0]
    if cfg.screen:  # thin foreground screen: all dust in front of all stars
        tau_screen = dust_column(p, cfg, order)

    def step(carry, k):
        tau, obs, host = carry
        j, rho = _slice_fields(p, cfg, s0 + s_off[k])
        col = rho * ds_all[k]
        t_mid = tau_screen if cfg.screen else tau + 0.5 * col
        att = jnp.exp(-K[:, None, None] * t_mid[None])  # (C, n, n)
        jd = j * ds_all[k]
        obs = obs + jd[:, None] * att[None]
        host = host + jd
        return (tau + col, obs, host), None

    init = (jnp.zeros((n, n)), jnp.zeros((3, C, n, n)), jnp.zeros((3, n, n)))
    (_, obs, host), _ = jax.lax.scan(step, init, order)
    return obs, host


def dust_column(p: GalaxyParams, cfg: SimConfig, order=None):
    """Total optical depth at λ_ref through the galaxy along each pixel's line of sight (n, n), summed
    over the line-of-sight samples in ``order`` (default: from the back)."""
    s_off, ds_all, s0 = _los_grid(p, cfg)

    def body(tau, k):
        return tau + _slice_fields(p, cfg, s0 + s_off[k])[1] * ds_all[k], None

    order = jnp.arange(cfg.n_los) if order is None else order
    tau, _ = jax.lax.scan(body, jnp.zeros((cfg.size, cfg.size)), order)
    return tau


def _psf_kernels(cfg: SimConfig, n_ch: int, psf=None):
    """(n_ch, k, k) PSF kernels: given cube, or Gaussians with cfg.psf_fwhm (None for no PSF)."""
    if psf is not None:
        return jnp.asarray(psf)
    if cfg.psf_fwhm is None:
        return None
    fw = np.atleast_1d(np.asarray(cfg.psf_fwhm, float))
    if fw.size > 1 and fw.size == n_ch - 2:  # per band: the truth channels use band 0's
        fw = np.concatenate([fw, fw[:1], fw[:1]])
    return jnp.asarray(gaussian_psf(fw, n_ch))


def render(p: GalaxyParams, cfg: SimConfig, K: jnp.ndarray, psf=None) -> dict:
    """Noiseless images and truth of one galaxy.

    ``K`` (n_band + 2,) are the attenuation coefficients A/A_ref of the bands plus the two
    monochromatic truth channels (λ_ref: 1, 0.551 µm); the components' SEDs in those channels are ``p.sed``.
    """
    obs_c, host_c = _march(p, cfg, K)  # (3, C, n, n), (3, n, n)
    # each stellar component normalised to unit total (intrinsic) emission
    norm = 1.0 / jnp.maximum(jnp.sum(host_c, axis=(1, 2)), 1e-30)
    obs_c = obs_c * norm[:, None, None, None]
    host_c = host_c * norm[:, None, None]
    frac = jnp.stack([p.bt, (1.0 - p.bt) * (1.0 - p.f_clump), (1.0 - p.bt) * p.f_clump])
    sed = cfg.total_flux * frac[:, None] * p.sed  # (3, C)
    obs = jnp.einsum("ac,acyx->cyx", sed, obs_c)
    host = jnp.einsum("ac,ayx->cyx", sed, host_c)
    if cfg.nucleus:  # a point source at the centre, in the midplane: behind half the central column
        n = cfg.size
        yy, xx = jnp.meshgrid(jnp.arange(n) - (n - 1) / 2.0 - p.y0, jnp.arange(n) - (n - 1) / 2.0 - p.x0,
                              indexing="ij")
        pt = jnp.exp(-0.5 * (xx**2 + yy**2) / NUCLEUS_SIGMA**2)
        pt = pt / jnp.sum(pt)
        tau_c = jnp.sum(dust_column(p, cfg) * pt)
        nuc = cfg.total_flux * p.f_nuc * p.sed_nuc[:, None, None] * pt[None]
        host = host + nuc
        obs = obs + nuc * jnp.exp(-K[:, None, None] * 0.5 * tau_c)
    kern = _psf_kernels(cfg, obs.shape[0], psf)
    if kern is not None:
        if kern.shape[0] == obs.shape[0] - 2:  # given PSF for the bands: truth channels use band 0's
            kern = jnp.concatenate([kern, kern[:1], kern[:1]])
        # also convolve the absorbed light (host - obs >= 0): without dust it is exactly zero, so
        # D = 1 and A_V = 0 exactly, free of FFT round-off in the faint outskirts
        absorbed = convolve_fft(host - obs, kern)
        obs = convolve_fft(obs, kern)
        host = convolve_fft(host, kern)
    else:
        absorbed = host - obs
    obs = jnp.clip(obs, 0.0, None)
    nb = obs.shape[0] - 2
    D = _safe_transmission(obs[nb], absorbed[nb], host[nb])
    hv = host[nb + 1]
    av = -2.5 * jnp.log10(_safe_transmission(obs[nb + 1], absorbed[nb + 1], hv))
    S = host[nb] / jnp.max(host[nb])
    F = jnp.sum(host[:nb], axis=(1, 2)) / jnp.sum(S)
    av_lw = jnp.sum(hv * av) / jnp.sum(hv)
    cov = jnp.sum(hv * (av > 0.02)) / jnp.sum(hv)
    return dict(
        cube=obs[:nb],
        host_cube=host[:nb],
        S=S,
        D=D,
        AV=av,
        F=F,
        av_lw=av_lw,
        covfrac=cov,
    )


def _safe_transmission(obs, absorbed, host, floor: float = 1e-5):
    """Transmission in (0, 1] from observed and absorbed light; 1 where the host is fainter than
    ``floor`` × its peak. Uses obs/host when small and 1 - absorbed/host when near 1 (precision)."""
    lit = host > floor * jnp.max(host)
    h = jnp.where(lit, host, 1.0)
    t_direct = obs / h
    t = jnp.where(t_direct < 0.5, t_direct, 1.0 - absorbed / h)
    return jnp.clip(jnp.where(lit, t, 1.0), 1e-20, 1.0)


def _channel_setup(cfg: SimConfig, delta, z=0.0):
    """K of the bands, of the D channel (1: λ₀) and of the A_V channel, for dust at rest wavelengths of a
    host at redshift ``z`` (``cfg.dust_frame`` 'rest') or at the observed ones."""
    att = BandAttenuation(cfg.bands, lam_ref=cfg.lam_ref, bump=cfg.bump)
    K_b = att(delta, z if cfg.dust_frame == "rest" else 0.0)
    K_v = attenuation_ratio(LAMBDA_V, delta, cfg.lam_ref, cfg.bump)
    return jnp.concatenate([K_b, jnp.ones((1,)), jnp.atleast_1d(K_v)])


def _simulate_one(key, cfg: SimConfig, psf=None, params: GalaxyParams | None = None, sed_grid=None, peak=False):
    kp, kn = jax.random.split(key)
    p = sample_params(kp, cfg, sed_grid) if params is None else params
    keep = 1.0 - jnp.asarray(cfg.dust_free, jnp.float32)  # dust-free: every optical depth times 0
    p = p._replace(tau_disk=keep * p.tau_disk, tau_ring=keep * p.tau_ring,
                   tau_clump=keep * p.tau_clump, tau_patch=keep * p.tau_patch)
    K = _channel_setup(cfg, p.delta, p.z_sed)
    out = render(p, cfg, K, psf)
    level = jnp.where(peak, jnp.max(out["cube"], axis=(1, 2)), jnp.sqrt(jnp.sum(out["cube"] ** 2, axis=(1, 2))))
    sigma = level * (1.0 / cfg.snr)  # noiseless: snr is inf, sigma 0 and the cube is the truth's
    noisy = out["cube"] + sigma[:, None, None] * jax.random.normal(kn, out["cube"].shape)
    return dict(out, truth_cube=out["cube"], cube=noisy, sigma=sigma, params=p)


#: SimConfig fields that are numbers of the simulator's program rather than part of what XLA compiles:
#: one program serves every S/N (and none), S/N kind, flux scale, redshift range and dust-free setting
#: of a band set, size and host kind (each static value cost a compilation of several seconds)
TRACED_FIELDS = ("snr", "snr_kind", "total_flux", "z_range", "dust_free")


def _program(cfg: SimConfig) -> tuple[SimConfig, dict]:
    """(the static config with :data:`TRACED_FIELDS` at fixed values, those fields as arrays)."""
    nums = dict(snr=np.float32(np.inf if cfg.snr is None else cfg.snr), peak=np.bool_(cfg.snr_kind == "peak"),
                total_flux=np.float32(cfg.total_flux), z_range=np.asarray(cfg.z_range, np.float32),
                dust_free=np.bool_(cfg.dust_free))
    return dataclasses.replace(cfg, snr=None, snr_kind="matched", total_flux=1.0, z_range=Z_RANGE,
                               dust_free=False), nums


def _with_numbers(cfg: SimConfig, nums: dict) -> SimConfig:
    """``cfg`` with the traced values of :func:`_program` in its fields (inside the program only)."""
    c = object.__new__(SimConfig)
    c.__dict__.update(cfg.__dict__, snr=nums["snr"], total_flux=nums["total_flux"],
                      z_range=(nums["z_range"][0], nums["z_range"][1]), dust_free=nums["dust_free"])
    return c


@functools.partial(jax.jit, static_argnums=(1,))
def _simulate_batch(keys, cfg: SimConfig, nums, psf, params, sed_grid=None):
    cfg = _with_numbers(cfg, nums)
    return jax.vmap(lambda k, pp: _simulate_one(k, cfg, psf, pp, sed_grid, nums["peak"]))(keys, params)  # params may be None


def simulate(key, n: int, cfg: SimConfig, *, batch: int = 32, psf=None, params: GalaxyParams | None = None,
             progress=None, keep: Sequence[str] | None = None) -> dict:
    """Simulate ``n`` galaxies; returns numpy arrays with a leading galaxy axis.

    Keys are split deterministically from ``key`` (galaxy i always gets the same key for a given
    ``key``, whatever ``batch``). ``params`` (batched) overrides the random draw. ``progress`` is an
    optional callable ``progress(n_done)``. ``keep`` limits the returned arrays to these keys (plus
    ``params``), which saves memory for large training sets.
    """
    keys = jax.random.split(key, n)
    psf = None if psf is None else jnp.asarray(psf)
    sed_grid = sed_setup(cfg) if params is None else None
    program, nums = _program(cfg)
    chunks = []
    for i in range(0, n, batch):
        kb = keys[i : i + batch]
        m = kb.shape[0]
        kb = _pad(kb, batch)  # pad the last chunk so that only one shape is compiled
        pb = None if params is None else jax.tree.map(lambda a: _pad(a[i : i + batch], batch), params)
        out = _simulate_batch(kb, program, nums, psf, pb, sed_grid)
        if keep is not None:
            out = {k: v for k, v in out.items() if k in keep or k == "params"}
        chunks.append(jax.tree.map(lambda a: np.asarray(a)[:m], out))
        if progress is not None:
            progress(min(i + batch, n))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *chunks)


def _pad(a, batch):
    a = jnp.asarray(a)
    if a.shape[0] == batch:
        return a
    return jnp.concatenate([a, jnp.repeat(a[-1:], batch - a.shape[0], axis=0)])


def params_table(p: GalaxyParams) -> dict[str, np.ndarray]:
    """Scalar parameters of a batch as columns."""
    return {k: np.asarray(getattr(p, k)) for k in PARAM_NAMES}
