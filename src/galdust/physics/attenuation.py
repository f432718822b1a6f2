"""Attenuation curves: Calzetti et al. (2000) and its Noll et al. (2009) / Kriek & Conroy (2013) tilt.

All wavelengths are in micron. Everything is written in ``jax.numpy`` so it is differentiable in the
slope ``δ`` and can be used inside jitted fits.

Curves
------
``k_calzetti(λ)`` is Calzetti et al. (2000, ApJ 533, 682), eq. 4, with ``R_V = 4.05``::

    k = 2.659 (-2.156 + 1.509/λ - 0.198/λ² + 0.011/λ³) + R_V     0.12 ≤ λ < 0.63 µm
    k = 2.659 (-1.857 + 1.040/λ) + R_V                           0.63 ≤ λ ≤ 2.20 µm

The two published branches do not meet exactly at 0.63 µm (3.477 vs 3.502, 0.7 %). Outside the
published range we extrapolate: below 0.12 µm linearly in 1/λ with the slope of the UV branch at
0.12 µm; above 2.2 µm as a power law ``k(2.2) (λ/2.2)^-1.75`` (the usual near-IR extinction slope),
which stays positive where the optical branch would turn negative (λ > 3.1 µm).

The modified curve (Noll et al. 2009; Kriek & Conroy 2013) is::

    k(λ, δ) = [k_calz(λ) + D(λ)] / R_V · (λ/λ₀)^δ

with the optional 2175 Å Drude bump ``D(λ) = E_b (λΔλ)² / ((λ² - λ_b²)² + (λΔλ)²)``,
``λ_b = 0.2175 µm``, ``Δλ = 0.035 µm``, ``E_b = 0.85 - 1.9 δ`` (Kriek & Conroy 2013; clipped ≥ 0).
``λ₀`` is configurable (the dust-map seed papers use 0.4754 µm). A_V is always reported at
:data:`LAMBDA_V` = 0.551 µm.

Per-band coefficients
---------------------
``K_b(δ) = A_b / A_ref``, the attenuation in band b per magnitude of attenuation at the reference
wavelength, either at the band's effective wavelength or averaged over the filter curve with weights
``R(λ) f_λ λ dλ`` for a source spectrum (flat in f_ν by default). The filter average is the exact
small-attenuation limit of the band-integrated attenuation, and it keeps the model
``A_b = K_b · A_ref`` linear in A as the dust-map model requires.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .filters import get_filter, is_known

__all__ = [
    "R_V",
    "LAMBDA_V",
    "LAMBDA_REF",
    "k_calzetti",
    "drude_bump",
    "k_modified",
    "attenuation_ratio",
    "BandAttenuation",
    "band_coefficients",
    "av_from_aref",
]

R_V = 4.05
LAMBDA_V = 0.551  # micron, where A_V is reported
LAMBDA_REF = 0.4754  # micron, default reference wavelength of the transmission map D
BUMP_CENTER = 0.2175
BUMP_WIDTH = 0.035
_LAM_UV_MIN = 0.12
_LAM_IR_MAX = 2.20
_IR_SLOPE = 1.75


def _uv_branch(x):
    return 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + R_V


def _opt_branch(x):
    return 2.659 * (-1.857 + 1.040 * x) + R_V


def k_calzetti(lam):
    """Calzetti (2000) k(λ) = A_λ / E(B-V), λ in micron (array-like), with documented extrapolation."""
    lam = jnp.asarray(lam, dtype=float)
    x = 1.0 / lam
    x_uv = 1.0 / _LAM_UV_MIN
    slope_uv = 2.659 * (1.509 - 2 * 0.198 * x_uv + 3 * 0.011 * x_uv**2)
    far_uv = _uv_branch(x_uv) + slope_uv * (x - x_uv)
    k_ir_edge = _opt_branch(1.0 / _LAM_IR_MAX)
    # keep the power law's argument positive on every branch (jnp.where evaluates all of them)
    far_ir = k_ir_edge * (jnp.maximum(lam, _LAM_IR_MAX) / _LAM_IR_MAX) ** (-_IR_SLOPE)
    return jnp.where(
        lam < _LAM_UV_MIN,
        far_uv,
        jnp.where(lam < 0.63, _uv_branch(x), jnp.where(lam <= _LAM_IR_MAX, _opt_branch(x), far_ir)),
    )


def drude_bump(lam, delta):
    """The 2175 Å bump D(λ) with the Kriek & Conroy (2013) strength E_b = 0.85 − 1.9 δ (≥ 0)."""
    lam = jnp.asarray(lam, dtype=float)
    eb = jnp.maximum(0.85 - 1.9 * delta, 0.0)
    lw = lam * BUMP_WIDTH
    return eb * lw**2 / ((lam**2 - BUMP_CENTER**2) ** 2 + lw**2)


def k_modified(lam, delta=0.0, lam0: float = LAMBDA_REF, bump: bool = False):
    """Noll et al. (2009) curve k(λ, δ) = [k_calz + D_bump] / R_V · (λ/λ₀)^δ (dimensionless)."""
    lam = jnp.asarray(lam, dtype=float)
    k = k_calzetti(lam)
    if bump:
        k = k + drude_bump(lam, delta)
    return k / R_V * (lam / lam0) ** delta


def attenuation_ratio(lam, delta=0.0, lam_ref: float = LAMBDA_REF, bump: bool = False):
    """A_λ / A_ref for the tilted curve: how many magnitudes at λ per magnitude at ``lam_ref``."""
    return k_modified(lam, delta, lam_ref, bump) / k_modified(lam_ref, delta, lam_ref, bump)


def av_from_aref(a_ref, delta=0.0, lam_ref: float = LAMBDA_REF, bump: bool = False):
    """Convert attenuation at ``lam_ref`` (mag) to A_V at 0.551 µm."""
    return a_ref * attenuation_ratio(LAMBDA_V, delta, lam_ref, bump)


class BandAttenuation(eqx.Module):
    """Per-band coefficients K_b(δ) = A_b / A_ref for a fixed list of bands (a pytree).

    Build with :func:`band_coefficients`-style arguments; call with δ (scalar, differentiable).
    ``mode="integrated"`` averages k over each filter curve, ``"effective"`` evaluates it at the
    band's effective wavelength (or at a given wavelength for bands outside the registry).
    """

    wave: jnp.ndarray  # (n_band, n_grid) micron
    weight: jnp.ndarray  # (n_band, n_grid) normalised quadrature weights
    lam_ref: float = eqx.field(static=True)
    bump: bool = eqx.field(static=True)

    def __init__(
        self,
        bands: Sequence[str],
        *,
        lam_ref: float = LAMBDA_REF,
        mode: str = "integrated",
        bump: bool = False,
        wave_eff: Sequence[float | None] | None = None,
    ):
        if mode not in ("integrated", "effective"):
            raise ValueError(f"mode must be 'integrated' or 'effective', not {mode!r}")
        waves, weights = [], []
        for i, b in enumerate(bands):
            given = None if wave_eff is None else wave_eff[i]
            if given is not None and (mode == "effective" or not is_known(b)):
                waves.append(np.array([float(given)]))
                weights.append(np.array([1.0]))
            elif mode == "effective":
                waves.append(np.array([get_filter(b).effective]))
                weights.append(np.array([1.0]))
            else:
                f = get_filter(b)
                waves.append(np.asarray(f.wave))
                weights.append(f.weights())
        # stack on a common grid length; single-point bands are padded with zero weight
        n = max(len(w) for w in waves)
        W = np.zeros((len(waves), n))
        V = np.zeros((len(waves), n))
        for i, (w, v) in enumerate(zip(waves, weights)):
            W[i, : len(w)] = w
            W[i, len(w) :] = w[-1]
            V[i, : len(v)] = v
        self.wave = jnp.asarray(W)
        self.weight = jnp.asarray(V)
        self.lam_ref = float(lam_ref)
        self.bump = bool(bump)

    def __call__(self, delta=0.0, z=0.0):
        """K_b(δ), shape (n_band,). ``z``: the galaxy's redshift, for dust in its rest frame (λ₀ and
        the curve at rest wavelengths, each filter's wavelengths divided by 1 + z; differentiable, may
        be traced); 0 is the observed frame."""
        r = attenuation_ratio(self.wave / (1.0 + z), delta, self.lam_ref, self.bump)
        return jnp.sum(self.weight * r, axis=-1)


def band_coefficients(
    bands: Sequence[str],
    delta=0.0,
    *,
    lam_ref: float = LAMBDA_REF,
    mode: str = "integrated",
    bump: bool = False,
    wave_eff: Sequence[float | None] | None = None,
):
    """K_b(δ) = A_b / A_ref for ``bands`` (see :class:`BandAttenuation`), shape (n_band,)."""
    return BandAttenuation(bands, lam_ref=lam_ref, mode=mode, bump=bump, wave_eff=wave_eff)(delta)
