"""Stellar-population SEDs of the dusty simulator's host components (bulge, disk, clumps).

``SimConfig(hosts="realistic")`` (the default) gives each component of
:mod:`galdust.simulate.dusty_images` a spectrum from :mod:`galdust.physics.sps` (BC03 + Cloudy),
observed at a redshift z ∈ [0.02, 0.15] (``Z_RANGE``; ``SimConfig.z_range`` draws others: the shipped
amortised network breaks beyond z ≈ 0.25, ``bench/bench_amortized_redshift.py``) (the dust is applied
in the observed frame, as the fit's model does); ``hosts="stress"`` keeps the power-law SEDs ``f_ν ∝ λ^β`` (bulge − disk Δ(g−i) up to 1.4 mag), a
named stress set.

Components (no dust in these spectra: the ray-marcher applies it):

* **bulge**: old and metal-rich: delayed-τ, started 6–11 Gyr ago (at most the age of the Universe), τ
  0.1–1 Gyr, log Z/Z_⊙ ∈ [−0.2, 0.2];
* **disk**: the bulge's old population, less metal-rich (log Z lower by 0–0.3 dex), plus a fraction
  ``y_disk`` of the light at λ_ref (0.475 µm) from constant star formation that started 3–10 Gyr ago (log Z lower by
  another 0–0.3 dex), ``y_disk = 0.5 u^1.5`` (u uniform);
* **clumps**: young: constant star formation over the last 10–300 Myr, nebular emission with
  log U ∈ [−3, −2], the disk's young metallicity.

The ``y_disk`` law is set so that the bulge − disk colours are those measured in real galaxies
(``bench/bench_host_colours.py`` prints both): Δ(g−i) median 0.19 mag, 5–95 % 0.04–0.42, against a mean
0.09 ± 0.01 mag for Coma S0s (Head et al. 2014), Δ(B−R) 0.24 for L* cluster galaxies (Hudson et al.
2010), and bulges and disks that are similar in early types and differ more in later types (Lackner
& Gunn 2012; Kennedy et al. 2016; Quilley et al. 2025).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..physics import sps as S
from ..physics.attenuation import LAMBDA_V

__all__ = ["HOSTS", "channel_filters", "draw_components", "component_seds", "Z_RANGE", "Y_DISK"]

#: ``SimConfig.hosts``: 'realistic' (stellar populations) or 'stress' (power laws, extreme gradients)
HOSTS = ("realistic", "stress")
Z_RANGE = (0.02, 0.15)
#: the disk's young-light fraction at λ_ref: Y_DISK[0] * u ** Y_DISK[1]
Y_DISK = (0.5, 1.5)
_MASS = 1e10  # M_⊙ formed per component (any value: SEDs are normalised; keeps float32 away from 0)


def channel_filters(bands, lam_ref: float) -> S.FilterSet:
    """The bands' filter curves plus two narrow (±1 %) top-hats at λ_ref and at 0.551 µm (V): the
    monochromatic truth channels of the simulator."""
    fs = S.filter_set(tuple(bands))
    extra_w, extra_r = [], []
    for lam in (lam_ref, LAMBDA_V):
        w = np.linspace(0.99, 1.01, fs.wave.shape[1]) * lam * 1e4
        dw = np.gradient(w)
        extra_w.append(w)
        extra_r.append(w * dw / np.sum(S.C_AA / w * dw))
    return S.FilterSet(jnp.concatenate([fs.wave, jnp.asarray(np.stack(extra_w), fs.wave.dtype)]),
                       jnp.concatenate([fs.weight, jnp.asarray(np.stack(extra_r), fs.weight.dtype)]),
                       tuple(bands) + ("ref", "v"))


def draw_components(key, t_univ_of_z, z_range: tuple[float, float] = Z_RANGE) -> dict:
    """One galaxy's component populations (scalars; vmap over keys). ``t_univ_of_z``: z → age of the
    Universe [yr]; the redshift is uniform in ``z_range``."""
    k = jax.random.split(key, 12)
    u = lambda i, lo, hi: jax.random.uniform(k[i], (), minval=lo, maxval=hi)  # noqa: E731
    z = u(0, *z_range)
    tu = t_univ_of_z(z)
    lz_b = u(1, -0.2, 0.2)
    lz_o = lz_b - u(2, 0.0, 0.3)
    lz_y = lz_o - u(3, 0.0, 0.3)
    return dict(z=z, age_b=jnp.minimum(u(4, 6e9, 11e9), tu), tau_b=10.0 ** u(5, 8.0, 9.0), logz_b=lz_b,
                logz_old=lz_o, logz_young=lz_y, age_young=jnp.minimum(u(6, 3e9, 10e9), tu),
                y_disk=Y_DISK[0] * u(7, 0.0, 1.0) ** Y_DISK[1], t_clump=10.0 ** u(8, 7.0, np.log10(3e8)),
                logu_clump=u(9, -3.0, -2.0))


def component_seds(grid: S.SPSGrid, fs: S.FilterSet, c: dict):
    """(3, C) f_ν of [bulge, disk, clumps] in the channels of ``fs`` (the bands, then λ_ref and V),
    each normalised to 1 in the λ_ref channel (index C − 2), for one galaxy ``c`` of
    :func:`draw_components`."""
    edges = grid.age_edges
    w_old = S.delayed_tau_weights(edges, c["age_b"], c["tau_b"])
    w_young = S.delayed_tau_weights(edges, c["age_young"], 3e10)  # ≈ constant SFR
    w_clump = S.burst_weights(edges, 0.0, c["t_clump"])
    w = jnp.stack([w_old, w_old, w_young, w_clump])
    lz = jnp.stack([c["logz_b"], c["logz_old"], c["logz_young"], c["logz_young"]])
    logu = jnp.stack([jnp.float32(-3.0), jnp.float32(-3.0), jnp.float32(-3.0), c["logu_clump"]])
    zero = jnp.zeros(4)
    lum = S.galaxy_spectrum(grid, w, lz, logu, zero, zero)["lum_intr"]
    f = S.photometry_nmgy(grid, fs, lum, jnp.full(4, c["z"]), jnp.full(4, _MASS))  # (4, C)
    i_ref = f.shape[1] - 2
    f = f / f[:, i_ref : i_ref + 1]
    # the disk: old stars plus a fraction y of the light at λ_ref from steady star formation
    disk = (1.0 - c["y_disk"]) * f[1] + c["y_disk"] * f[2]
    return jnp.stack([f[0], disk, f[3]])
