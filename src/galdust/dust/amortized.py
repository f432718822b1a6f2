"""Amortised dust maps: one network pass per galaxy, with a per-pixel uncertainty.

The network (:class:`AmortizedNet`, a U-Net of :mod:`galdust.nn`) reads an observed cube on the fit
grid (64×64), its inverse variance and which of its band *slots* are present, and returns per pixel
a Gaussian posterior (mean, σ) of the attenuation at λ₀ (A_ref = −2.5 log10 D) and at V (A_V), and
per galaxy the slope δ and the host-light-weighted A_V (each mean, σ). It is trained by Gaussian
negative log-likelihood on simulated galaxies (:mod:`galdust.simulate`) whose noise, band set
(slots masked at random among the sets the model is trained for) and orientation (the 8
rotations/flips) are drawn afresh at every step, so one network serves every trained band set.

Slots: a model's config names its input ``slots``. With ``slot_wave`` (one wavelength per slot, µm:
the *wavelength slots* u g r i z y Y J H of :data:`WAVE_SLOTS`), a filter takes the slot nearest to its
pivot wavelength, and a sixth input channel per slot, ln(λ_filter/λ_slot) / 0.05, tells the network
which survey's filter it is (SDSS, HSC, LSST g differ by 2 %; 2MASS and Euclid J by 10 %): one network
serves SDSS, HSC, LSST, 2MASS and Euclid band sets. Without ``slot_wave`` (the first networks) a
slot is one filter.

Maps are *effective* (after the PSF), as the simulator's truth: ``A_V = −2.5 log10(PSF ∗ (S D^K_V) /
PSF ∗ S)``. Input: the bands must be one of the model's ``band_sets`` (its sidecar); other bands are
refused (the MAP fit serves them).

After training, :func:`calibrate_sigma` scales each σ so that 68.3 % of the truths of held-out
simulations fall within ±σ, by a factor that depends on σ itself (:func:`sigma_curve`: the trained σ
are too wide where they are small, e.g. on dust-free pixels, and a little narrow where they are
large) and on the band set; the curves live in the sidecar's config (older sidecars: one factor per
output). Measured accuracy, calibration and speed: docs/amortized_dust.md (``bench/bench_amortized.py``).

Encoding (per slot b, on the fit grid, with s the galaxy's flux scale, see :func:`encode`):
``y_b = Y_b / s``, ``asinh(y_b / 0.05)``, the colour ``asinh(y_b/0.02) − asinh(ȳ/0.02)`` against the
mean of the present bands, ``ln(σ_b/s)``, the presence mask and (wavelength slots) the filter's
wavelength offset; absent slots are zeros. A network with the PSF channel adds ln(FWHM_b / 2 px); one
with the redshift channel (``z_input``) adds ln(1 + z) / ln 2 in every present slot.

Frames: a network without the redshift channel was trained on dust at the observed wavelengths (its
simulations' hosts at z 0.02–0.15); its answer for a galaxy of known redshift is moved to the rest
frame by :func:`to_rest_frame`. A network with it (``z_input``) was trained on rest-frame dust over a
range of redshifts and answers in the rest frame directly; it needs each galaxy's redshift.
:class:`AmortizedFitter` holds one of each where both exist (the shipped ``amortized-dust`` and
``amortized-dust-z``) and gives each galaxy the one its redshift calls for.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..nn import CondUNet

__all__ = ["AmortizedNet", "AmortizedFitter", "colour_domain", "domain_notes", "DEFAULT_CONFIG", "WAVE_SLOTS", "SURVEY_BAND_SETS", "encode", "predict",
           "nll_loss", "train_amortized", "recalibrate_amortized", "calibrate_sigma", "sigma_curve", "load_amortized", "amortized_result",
           "make_batch_fn", "psf_fwhm", "psf_channel",
           "slot_index", "assign_slots", "N_OUT"]

#: network outputs per pixel: (μ, ln σ) of A_ref, A_V, δ, A_V,LW (the last two pooled over the galaxy)
N_OUT = 8
_PER_SLOT = 5
_LS_MIN, _LS_MAX = -6.0, 2.0

#: wavelength slots (name: λ in µm); a filter takes the slot nearest in ln λ, within _SLOT_TOL
WAVE_SLOTS: dict[str, float] = {"u": 0.365, "g": 0.475, "r": 0.62, "i": 0.76, "z": 0.88, "y": 0.975, "Y": 1.08,
                                "J": 1.25, "H": 1.70}
_SLOT_TOL = 0.12
_WAVE_SCALE = 0.05

#: the survey band sets of the wavelength-slot network (SDSS alone and with 2MASS, HSC and LSST alone
#: and with Euclid's NISP)
SURVEY_BAND_SETS: list[list[str]] = [
    ["sdss_g", "sdss_r", "sdss_i", "sdss_z"],
    ["sdss_g", "sdss_r", "sdss_i", "sdss_z", "2mass_j"],
    ["sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z"],
    ["sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z", "2mass_j", "2mass_h"],
    ["hsc_g", "hsc_r", "hsc_i", "hsc_z", "hsc_y"],
    ["hsc_g", "hsc_r", "hsc_i", "hsc_z", "hsc_y", "euclid_y", "euclid_j", "euclid_h"],
    ["lsst_u", "lsst_g", "lsst_r", "lsst_i", "lsst_z", "lsst_y"],
    ["lsst_u", "lsst_g", "lsst_r", "lsst_i", "lsst_z", "lsst_y", "euclid_y", "euclid_j", "euclid_h"],
]

DEFAULT_CONFIG: dict[str, Any] = {
    "slots": list(WAVE_SLOTS),
    "slot_wave": list(WAVE_SLOTS.values()),
    "band_sets": SURVEY_BAND_SETS,
    # how often each band set is drawn in training: SDSS griz and grizJ (the first networks' sets, and
    # the benchmark's) a little more often than the others
    "band_set_p": [0.2, 0.15] + [0.65 / 6] * 6,
    "widths": [32, 64, 128],
    "stem": 2,
    "emb_dim": 32,
    "size": 64,
    "snr_peak": [15.0, 300.0],  # training: peak S/N per band, log-uniform ...
    "snr_band_jitter": 0.25,  # ... times a per-band factor exp(U(−j, j))
    # a seventh input channel per slot: the band's PSF FWHM on the fit grid, ln(FWHM / 2 px) (off by
    # default: the shipped network, trained at the simulator's 2 px, has none, and a fine-tune with it
    # and band dropout was measured less accurate in A_V,LW: docs/amortized_dust.md, session 32)
    "psf_input": False,
    # training: each band of the drawn set is dropped with this probability (unless fewer than 3
    # would remain), so the network also serves subsets of its band sets (LSST gri, HSC without y)
    "band_dropout": 0.0,
    # a last input channel per slot: the galaxy's redshift, ln(1 + z) / ln 2; such a network is trained
    # on rest-frame dust (galdust simulate --dust-frame rest) and answers in the rest frame
    "z_input": False,
}

#: the PSF FWHM (fit-grid pixels) that ln(FWHM / PSF_REF) of the PSF channel is measured from
PSF_REF = 2.0
#: the redshift channel's value is ln(1 + z) / Z_LN_REF (1 at z = 1)
Z_LN_REF = math.log(2.0)
#: the fewest bands of a subset the network serves (when trained with band dropout)
MIN_BANDS = 3



class AmortizedNet(eqx.Module):
    """U-Net from the encoded cube to N_OUT maps; ``slots`` name the input bands (static);
    ``sigma_scale`` (static, from the sidecar's ``config``) calibrates the σ of (pixel A_ref and A_V,
    δ, A_V,LW): per output a factor, or a curve ``(ln σ knots, factors)`` (:func:`sigma_curve`); set
    by :func:`calibrate_sigma` on held-out simulations, 1 before. ``sigma_scale_sets``: the same per
    band set (sorted bands, calibration), used for that set's galaxies (:meth:`scale_for`).
    ``sigma_scale_psf``: a network with the PSF channel, a second stage by PSF: ``(ln(FWHM / PSF_REF),
    calibration)`` knots, whose curves multiply the band set's σ (:func:`_psf_scaled`).
    ``sigma_scale_snr``: a third stage, by the galaxy's ln S/N (:func:`encode`; the same knots and
    curves, ``log_snr``), multiplying the σ the first two made (sidecars before it: none).
    ``sigma_scale_dust``: a fourth, by the galaxy's predicted A_V,LW (the network's mean, knots
    ``av_lw_pred``), multiplying the σ of the first three (sidecars before it: none). ``z_input``:
    the redshift channel (rest-frame answers; :func:`predict` needs ``z``)."""

    unet: CondUNet
    slots: tuple[str, ...] = eqx.field(static=True)
    sigma_scale: tuple = eqx.field(static=True)
    slot_wave: tuple[float, ...] | None = eqx.field(static=True, default=None)
    sigma_scale_sets: tuple = eqx.field(static=True, default=())
    psf_input: bool = eqx.field(static=True, default=False)
    subsets: bool = eqx.field(static=True, default=False)
    sigma_scale_psf: tuple = eqx.field(static=True, default=())
    z_input: bool = eqx.field(static=True, default=False)
    sigma_scale_snr: tuple = eqx.field(static=True, default=())
    sigma_scale_dust: tuple = eqx.field(static=True, default=())

    def __init__(self, config: dict[str, Any], *, key):
        self.slots = tuple(config["slots"])
        sw = config.get("slot_wave")
        self.slot_wave = None if sw is None else tuple(float(v) for v in sw)
        sc = config.get("sigma_scale") or {}
        self.sigma_scale = tuple(_scale_spec(sc.get(k, 1.0)) for k in ("pixel", "delta", "av_lw"))
        self.sigma_scale_sets = tuple((tuple(sorted(e["bands"])),
                                       tuple(_scale_spec(e[k]) for k in ("pixel", "delta", "av_lw")))
                                      for e in sc.get("by_band_set", ()))
        self.psf_input = bool(config.get("psf_input", False))
        self.sigma_scale_psf = _stage_spec(sc.get("by_psf", ()), "lpsf") if self.psf_input else ()
        self.sigma_scale_snr = _stage_spec(sc.get("by_snr", ()), "log_snr")
        self.sigma_scale_dust = _stage_spec(sc.get("by_dust", ()), "av_lw_pred")
        self.subsets = float(config.get("band_dropout", 0.0)) > 0
        self.z_input = bool(config.get("z_input", False))
        per_slot = _PER_SLOT + (self.slot_wave is not None) + self.psf_input + self.z_input
        self.unet = CondUNet(c_in=per_slot * len(self.slots), c_out=N_OUT, widths=tuple(config["widths"]),
                             emb_dim=int(config["emb_dim"]), stem=int(config["stem"]), key=key)

    def scale_for(self, bands: Sequence[str]) -> tuple:
        """The σ calibration of a band set: its own where :func:`calibrate_sigma` made one, else the
        network's pooled one."""
        key = tuple(sorted(bands))
        return next((sc for b, sc in self.sigma_scale_sets if b == key), self.sigma_scale)

    def __call__(self, x, log_snr):
        """x: (C, H, W) from :func:`encode`; returns the raw (N_OUT, H, W) maps."""
        return self.unet(x, log_snr)


def slot_index(model_slots: Sequence[str], bands: Sequence[str]) -> np.ndarray:
    """Slot of each band (ValueError naming a band the model has no slot for)."""
    idx = []
    for b in bands:
        if b not in model_slots:
            raise ValueError(f"band {b!r} is not one of the amortised model's bands ({', '.join(model_slots)})")
        idx.append(list(model_slots).index(b))
    return np.asarray(idx, int)


def assign_slots(slots: Sequence[str], slot_wave: Sequence[float] | None, bands: Sequence[str]):
    """(slot of each band, ln(λ_band/λ_slot) per slot (0 where no band)). Without ``slot_wave`` a
    band's slot is the one of its name (:func:`slot_index`); with it, the slot nearest in ln λ to
    the filter's pivot wavelength. ValueError naming a band with no slot, or two bands in one slot."""
    if slot_wave is None:
        return slot_index(slots, bands), np.zeros(len(slots), np.float32)
    from ..physics.filters import get_filter

    lw = np.log(np.asarray(slot_wave, float))
    idx, dlnw = [], np.zeros(len(slots), np.float32)
    for b in bands:
        d = math.log(get_filter(b).pivot) - lw
        j = int(np.argmin(np.abs(d)))
        if abs(d[j]) > _SLOT_TOL:
            raise ValueError(f"band {b!r} ({get_filter(b).pivot:.3f} µm) is in none of the amortised model's "
                             f"wavelength slots ({', '.join(f'{s} {w:g}' for s, w in zip(slots, slot_wave))} µm)")
        if j in idx:
            other = bands[idx.index(j)]
            if other == b:
                raise ValueError(f"band {b!r} is given twice")
            raise ValueError(f"bands {other!r} and {b!r} fall in the same slot ({slots[j]}) of the amortised model")
        idx.append(j)
        dlnw[j] = d[j]
    return np.asarray(idx, int), dlnw


def encode(Y, ivar, present, dlnw=None, lpsf=None, z=None):
    """Network input of one galaxy: ``Y``, ``ivar`` (n_slots, H, W) with zeros in absent slots,
    ``present`` (n_slots,) 0/1, ``dlnw`` (n_slots,) the filters' ln(λ/λ_slot) for a wavelength-slot
    network (None for the others), ``lpsf`` (n_slots,) ln(PSF FWHM / PSF_REF) for a network with the
    PSF channel (None for the others), ``z`` the redshift for a network with the redshift channel (None
    for the others). Returns ((5–8 n_slots, H, W), ln S/N, light weights (H, W))."""
    m = present[:, None, None] * (ivar > 0)
    Y = jnp.where(m > 0, Y, 0.0)
    n_p = jnp.maximum(jnp.sum(present), 1.0)
    ybar = jnp.sum(Y, axis=0) / n_p
    s = jnp.maximum(jnp.sum(jnp.clip(ybar, 0.0, None)) / 256.0, 1e-30)
    y = Y / s
    sig = jnp.where(m > 0, 1.0 / jnp.sqrt(jnp.where(m > 0, ivar, 1.0)), 0.0) / s
    ls = jnp.where(m > 0, jnp.clip(jnp.log(jnp.maximum(sig, 1e-30)), -10.0, 4.0), 0.0)
    colour = jnp.where(m > 0, jnp.arcsinh(y / 0.02) - jnp.arcsinh(ybar / s / 0.02)[None], 0.0)
    feats = [y, jnp.arcsinh(y / 0.05), colour, ls, m.astype(y.dtype)]
    if dlnw is not None:
        feats.append(m * (jnp.asarray(dlnw, y.dtype) / _WAVE_SCALE)[:, None, None])
    if lpsf is not None:
        feats.append(m * jnp.asarray(lpsf, y.dtype)[:, None, None])
    if z is not None:
        feats.append(m * (jnp.log1p(jnp.asarray(z, y.dtype)) / Z_LN_REF))
    x = jnp.concatenate(feats, axis=0)
    # light weights for the galaxy-level outputs: the observed mean-band light, positive part
    w = jnp.clip(ybar, 0.0, None)
    w = w / jnp.maximum(jnp.sum(w), 1e-30)
    # each band's typical σ: the geometric mean over its pixels with data (its σ where the noise is white)
    n_b = jnp.maximum(jnp.sum(m, axis=(1, 2)), 1.0)
    sig_b = jnp.exp(jnp.sum(jnp.where(m > 0, jnp.log(jnp.maximum(sig, 1e-30)), 0.0), axis=(1, 2)) / n_b)
    med_sig = jnp.sum(jnp.where(present > 0, sig_b, 0.0)) / n_p
    log_snr = jnp.log(jnp.maximum(jnp.max(ybar / s), 1e-6) / jnp.maximum(med_sig, 1e-6))
    return x, log_snr, w


def _scale_spec(v):
    """A sidecar's calibration of one output: a number, or ``{"log_sigma": [...], "factor": [...]}``
    (:func:`sigma_curve`) -> a float or a hashable ``(knots, factors)`` pair."""
    if isinstance(v, dict):
        knots, fac = tuple(float(x) for x in v["log_sigma"]), tuple(float(x) for x in v["factor"])
        if len(knots) != len(fac) or not knots or any(b <= a for a, b in zip(knots, knots[1:])):
            raise ValueError(f"sigma_scale curve: {len(knots)} increasing ln σ knots for {len(fac)} factors needed")
        return knots, fac
    return float(v)


def _stage_spec(entries, knot: str) -> tuple:
    """A sidecar's calibration stage (``by_psf``, ``by_snr``, ``by_dust``: entries with the knot ``knot`` and a curve
    per output) -> ``((knot, (pixel, δ, A_V,LW specs)), ...)`` as :func:`_psf_scaled` reads it."""
    return tuple((float(e[knot]), tuple(_scale_spec(e[k]) for k in ("pixel", "delta", "av_lw"))) for e in entries)


def _scaled(sig, spec, xp=jnp):
    """σ calibrated by ``spec``: times a factor, or times the curve's factor at ln σ (piecewise linear
    between its knots, constant beyond). ``xp``: ``jnp`` (in the network's compiled pass) or ``np``."""
    if isinstance(spec, tuple):
        return sig * xp.interp(xp.log(sig), xp.asarray(spec[0]), xp.asarray(spec[1]))
    return spec * sig


def _psf_scaled(sig, psf_scale: tuple, lp, out: int, xp=jnp):
    """σ (already calibrated by its band set) times the PSF stage's factor of output ``out`` (0 pixel, 1
    δ, 2 A_V,LW): each PSF knot's curve at σ, interpolated linearly in the galaxy's ln(FWHM / PSF_REF)
    ``lp`` between the knots, constant beyond them. No knots: σ unchanged. (The S/N stage is the same
    with ln S/N knots and the galaxy's ln S/N, the dust stage with its predicted A_V,LW.) ``lp``: a
    number, or (``xp=np``, the calibration) one per σ, of ``sig``'s shape."""
    if not psf_scale:
        return sig
    knots = xp.asarray([k for k, _ in psf_scale])
    facs = xp.stack([_scaled(sig, spec[out], xp) / sig for _, spec in psf_scale])
    t = xp.interp(lp, knots, xp.arange(len(psf_scale), dtype=sig.dtype))
    i0 = xp.clip(xp.floor(t).astype(xp.int32), 0, len(psf_scale) - 1)
    i1 = xp.minimum(i0 + 1, len(psf_scale) - 1)
    f = t - i0
    if np.ndim(lp):  # a knot position per σ
        return sig * ((1.0 - f) * xp.take_along_axis(facs, i0[None], axis=0)[0]
                      + f * xp.take_along_axis(facs, i1[None], axis=0)[0])
    return sig * ((1.0 - f) * facs[i0] + f * facs[i1])


def _heads(raw, w, scale=(1.0, 1.0, 1.0), psf_scale: tuple = (), lp=0.0, snr_scale: tuple = (), lsnr=0.0,
           dust_scale: tuple = ()):
    """Raw maps → dict of per-pixel (μ, σ) and pooled galaxy scalars (σ calibrated by ``scale``, then
    by ``psf_scale`` at the galaxy's ln(FWHM / PSF_REF) ``lp``, then by ``snr_scale`` at its ln S/N
    ``lsnr``, then by ``dust_scale`` at its predicted A_V,LW)."""
    ls = jnp.clip(raw[1::2], _LS_MIN, _LS_MAX)
    mu = raw[0::2]
    pooled_mu = jnp.sum(mu[2:] * w, axis=(-2, -1))
    pooled_ls = jnp.clip(jnp.sum(raw[5::2] * w, axis=(-2, -1)), _LS_MIN, _LS_MAX)
    stages = ((psf_scale, lp), (snr_scale, lsnr), (dust_scale, pooled_mu[1]))

    def cal(sig, k):
        sig = _scaled(sig, scale[k])
        for stage, v in stages:
            sig = _psf_scaled(sig, stage, v, k)
        return sig

    return dict(aref=mu[0], aref_sig=cal(jnp.exp(ls[0]), 0), av=mu[1], av_sig=cal(jnp.exp(ls[1]), 0),
                delta=pooled_mu[0], delta_sig=cal(jnp.exp(pooled_ls[0]), 1),
                av_lw=pooled_mu[1], av_lw_sig=cal(jnp.exp(pooled_ls[1]), 2))


def galaxy_lpsf(lpsf, present):
    """A galaxy's ln(FWHM / PSF_REF): the mean of its present slots' PSF channel."""
    return jnp.sum(lpsf * present) / jnp.maximum(jnp.sum(present), 1.0)


def predict(net: AmortizedNet, Y, ivar, present, dlnw=None, calibrated: bool = True, scale: tuple | None = None,
            lpsf=None, z=None) -> dict:
    """Posterior summaries of one galaxy (vmap for a batch): ``aref``, ``av`` (H, W) means and their
    σ (``*_sig``), ``delta``, ``av_lw`` and their σ. ``dlnw``: see :func:`encode` (ignored by a
    network without wavelength slots). ``calibrated=False``: the σ as trained (the training loss uses
    those); ``scale``: this calibration instead of the network's pooled one (e.g. ``net.scale_for(bands)``);
    ``lpsf``: (n_slots,) ln(PSF FWHM / PSF_REF) per slot (a network with the PSF channel; None: PSF_REF);
    ``z``: the galaxy's redshift (read by a network with the redshift channel, which needs it)."""
    if net.psf_input and lpsf is None:
        lpsf = jnp.zeros(len(net.slots), Y.dtype)
    if net.z_input and z is None:
        raise ValueError("this amortised network reads the redshift: give z")
    x, lsnr, w = encode(Y, ivar, present, None if net.slot_wave is None else dlnw, lpsf if net.psf_input else None,
                        z if net.z_input else None)
    if not calibrated:
        return _heads(net(x, lsnr), w)
    lp = galaxy_lpsf(lpsf, present) if net.sigma_scale_psf else 0.0
    return _heads(net(x, lsnr), w, scale or net.sigma_scale, net.sigma_scale_psf, lp, net.sigma_scale_snr, lsnr,
                  net.sigma_scale_dust)


def _gauss_nll(t, mu, sig, beta: float = 0.0):
    """Gaussian NLL; ``beta`` > 0 weights it by stop_gradient(σ^{2β}) (β-NLL, Seitzer et al. 2022): the
    plain NLL scales the mean's gradient by 1/σ², so where σ is large (griz without J) the mean learns slowly."""
    nll = 0.5 * ((t - mu) / sig) ** 2 + jnp.log(sig)
    return nll * jax.lax.stop_gradient(sig ** (2.0 * beta)) if beta else nll


def nll_loss(net: AmortizedNet, Y, ivar, present, dlnw, lpsf, z, aref, av, weight, delta, av_lw, beta: float = 0.0):
    """Mean Gaussian NLL of one galaxy: per-pixel terms weighted by ``weight`` (H, W), plus δ and A_V,LW."""
    out = predict(net, Y, ivar, present, dlnw, calibrated=False, lpsf=lpsf, z=z)
    wsum = jnp.maximum(jnp.sum(weight), 1e-6)
    pix = (jnp.sum(weight * _gauss_nll(aref, out["aref"], out["aref_sig"], beta))
           + jnp.sum(weight * _gauss_nll(av, out["av"], out["av_sig"], beta))) / wsum
    gal = (_gauss_nll(delta, out["delta"], out["delta_sig"], beta)
           + _gauss_nll(av_lw, out["av_lw"], out["av_lw_sig"], beta))
    return pix + gal


# ----------------------------------------------------------------------------- training data


def _augment8(k, a):
    xs = [jnp.rot90(a, r, axes=(-2, -1)) for r in range(4)]
    xs += [jnp.flip(v, axis=-1) for v in xs]
    return jax.lax.switch(k, [lambda i=i: xs[i] for i in range(8)])


def check_config(cfg: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """A training config (``cfg``: the defaults updated with ``given``) made consistent and checked:
    filter ``slots`` given without ``slot_wave`` are filter slots; band sets other than the default
    are drawn uniformly unless ``band_set_p`` is given; every band of every set has its own slot."""
    cfg = dict(cfg)
    if "slots" in given and "slot_wave" not in given:
        cfg["slot_wave"] = None
    if cfg.get("slot_wave") is not None and len(cfg["slot_wave"]) != len(cfg["slots"]):
        raise ValueError(f"{len(cfg['slot_wave'])} slot wavelengths for {len(cfg['slots'])} slots")
    if "band_sets" in given and "band_set_p" not in given:
        cfg["band_set_p"] = None
    p = cfg.get("band_set_p")
    if p is not None and (len(p) != len(cfg["band_sets"]) or min(p) < 0 or sum(p) <= 0):
        raise ValueError(f"band_set_p {p}: one probability (>= 0, not all 0) per band set ({len(cfg['band_sets'])})")
    if not 0.0 <= float(cfg.get("band_dropout", 0.0)) < 1.0:
        raise ValueError(f"band_dropout {cfg['band_dropout']}: a probability below 1 needed")
    for s in cfg["band_sets"]:
        assign_slots(cfg["slots"], cfg.get("slot_wave"), s)  # ValueError: a band without a slot of its own
    return cfg


def store_bands(config: dict[str, Any]) -> list[str]:
    """The bands a training store must hold: every band of the config's band sets (in their order)."""
    out: list[str] = []
    for s in config["band_sets"]:
        out += [b for b in s if b not in out]
    return out


def _load_stores(paths: Sequence[str | Path], slots: Sequence[str]):
    """Concatenate bulk stores written by ``galdust simulate --bulk --with-cubes --snr 0``; every
    store must hold all the bands ``slots`` (in any order; the cubes come in this order)."""
    fields = {"AV": "AV", "D": "D", "S": "S", "delta": "p_delta", "av_lw": "av_lw"}  # our name: the store's
    arr, meta = {k: [] for k in ("cube", "psf", "z", *fields)}, []
    for p in paths:
        with np.load(p, allow_pickle=False) as d:
            if "cube" not in d.files:
                raise ValueError(f"{p}: no 'cube' array (write it with galdust simulate --bulk --with-cubes --snr 0)")
            bands = [str(b) for b in d["bands"]]
            missing = [b for b in slots if b not in bands]
            if missing:
                raise ValueError(f"{p}: lacks the bands {', '.join(missing)} (simulate them, or train for fewer "
                                 "band sets: --band-sets)")
            sig = np.asarray(d["sigma"])
            if np.any(sig > 0):
                raise ValueError(f"{p}: has noise; training adds its own (simulate with --snr 0)")
            order = [bands.index(b) for b in slots]
            arr["cube"].append(np.asarray(d["cube"][:, order], np.float32))
            fwhm = _store_psf_fwhm(str(d["config"]), len(bands), p)
            arr["psf"].append(np.broadcast_to(fwhm[order], (len(d["S"]), len(order))).astype(np.float32))
            for k, name in fields.items():
                arr[k].append(np.asarray(d[name], np.float32))
            # the hosts' redshifts (stores before the field: the simulator's z 0.02-0.15, unknown: 0)
            arr["z"].append(np.asarray(d["p_z_sed"] if "p_z_sed" in d.files else np.zeros(len(d["S"])), np.float32))
            meta.append({"file": Path(p).name, "seed": int(d["seed"]), "n": int(len(d["S"])),
                         "simulator_config": str(d["config"])})
    return {k: np.concatenate(v) for k, v in arr.items()}, meta


def _store_psf_fwhm(config: str, n_bands: int, path) -> np.ndarray:
    """The PSF FWHM (pixels) of each band of a store, from its simulator config (``psf_fwhm=2.0`` or a
    tuple per band; NaN for a store simulated without a PSF, which a network with the PSF channel
    refuses: :func:`train_amortized`)."""
    import ast
    import re

    m = re.search(r"psf_fwhm=(\([^)]*\)|[^,)]+)", config)
    v = ast.literal_eval(m.group(1)) if m else 2.0  # stores before the field: the simulator's 2 px
    if v is None or np.any(np.asarray(v, float) <= 0):
        return np.full(n_bands, np.nan)
    fwhm = np.broadcast_to(np.asarray(v, float), (n_bands,))
    return np.array(fwhm)


def is_rest_frame(simulator_config: str) -> bool:
    """Whether a store's simulator config put the dust in the hosts' rest frame (``dust_frame='rest'``)."""
    return "dust_frame='rest'" in simulator_config


def training_z_range(meta: dict) -> tuple[float, float] | None:
    """The redshifts of a network's training hosts: the span of its sidecar's stores' ``z_range``
    (a store whose simulator config has none: the simulator's default, ``host_sed.Z_RANGE``); None
    when the sidecar lists no stores."""
    from ..simulate.host_sed import Z_RANGE

    los, his = [], []
    for st in (meta.get("data") or {}).get("stores", ()):
        m = re.search(r"z_range=\(([-+0-9.eE]+), ([-+0-9.eE]+)\)", str(st.get("simulator_config", "")))
        lo, hi = (float(m.group(1)), float(m.group(2))) if m else Z_RANGE
        los.append(lo)
        his.append(hi)
    return (min(los), max(his)) if los else None


#: the store arrays a batch is drawn from (:func:`make_batch_fn`'s arguments after the key)
BATCH_FIELDS = ("cube", "AV", "D", "S", "delta", "av_lw", "psf", "z")


def _split(n: int, n_val: int, seed: int):
    """Validation rows: a fixed random subset (the stores are concatenated, so not the last rows)."""
    perm = np.random.default_rng(seed + 12345).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def make_batch_fn(config: dict[str, Any], bands: Sequence[str], with_S: bool = False):
    """A jitted ``(key, cube, AV, D, S, delta, av_lw, psf) -> batch`` that draws orientation, band set
    (``config['band_sets']``, with the probabilities ``config['band_set_p']`` or uniformly; then each
    band dropped with probability ``config['band_dropout']`` unless fewer than MIN_BANDS would remain)
    and noise for each galaxy of a batch of noiseless cubes whose bands are ``bands``
    (:func:`store_bands`; ``psf``: their PSF FWHM in pixels); ``with_S``: the oriented S appended.
    ``z``: the hosts' redshifts (None: 0).
    A batch: (Y, ivar, present, dlnw, lpsf, z, aref, A_V, weight, δ, A_V,LW)."""
    slots, slot_wave = config["slots"], config.get("slot_wave")
    n_slots = len(slots)
    lo, hi = (math.log(v) for v in config["snr_peak"])
    jit = float(config["snr_band_jitter"])
    # per band set: the store band feeding each slot (0 where none), presence, wavelength offsets
    gather, pres, offs = [], [], []
    for s in config["band_sets"]:
        idx, dl = assign_slots(slots, slot_wave, s)
        g = np.zeros(n_slots, int)
        g[idx] = [list(bands).index(b) for b in s]
        gather.append(g)
        pres.append(np.isin(np.arange(n_slots), idx).astype(np.float32))
        offs.append(dl)
    gather, pres, offs = jnp.asarray(np.stack(gather)), jnp.asarray(np.stack(pres)), jnp.asarray(np.stack(offs))
    p = config.get("band_set_p")
    logits = jnp.log(jnp.asarray(p, jnp.float32) if p is not None else jnp.ones(len(config["band_sets"])))
    p_drop = float(config.get("band_dropout", 0.0))

    def one(key, cube, AV, D, S, delta, av_lw, psf, z=None):
        k_aug, k_set, k_snr, k_jit, k_n = jax.random.split(key, 5)
        r = jax.random.randint(k_aug, (), 0, 8)
        cube, AV, D, S = (_augment8(r, a) for a in (cube, AV, D, S))
        k = jax.random.categorical(k_set, logits)
        present = pres[k]
        if p_drop > 0:  # its own key (folded in), so runs without dropout keep their draws
            drop = present * (jax.random.uniform(jax.random.fold_in(key, 1), (n_slots,)) < p_drop)
            present = jnp.where(jnp.sum(present - drop) >= MIN_BANDS, present - drop, present)
        dlnw = offs[k] * present
        lpsf = jnp.log(psf[gather[k]] / PSF_REF) * present
        cube = cube[gather[k]] * present[:, None, None]
        snr = jnp.exp(jax.random.uniform(k_snr, (), minval=lo, maxval=hi))
        snr_b = snr * jnp.exp(jax.random.uniform(k_jit, (n_slots,), minval=-jit, maxval=jit))
        sigma = jnp.where(present > 0, jnp.max(cube, axis=(1, 2)) / snr_b, 1.0)
        Y = (cube + sigma[:, None, None] * jax.random.normal(k_n, cube.shape)) * present[:, None, None]
        ivar = present[:, None, None] / sigma[:, None, None] ** 2 * jnp.ones_like(cube)
        aref = -2.5 * jnp.log10(jnp.clip(D, 1e-3, 1.0))
        # the posterior is asked for inside the galaxy: pixels of the host's 2 % isophote weigh 1, the
        # sky around it 0.05 (its truth is A = 0, easy, and it would dominate the mean)
        weight = jnp.where(S > 0.02 * jnp.max(S), 1.0, 0.05)
        z = jnp.zeros((), Y.dtype) if z is None else z
        return (Y, ivar, present, dlnw, lpsf, z, aref, AV, weight, delta, av_lw) + ((S,) if with_S else ())

    return jax.jit(jax.vmap(one))


# ----------------------------------------------------------------------------- training loop


def train_amortized(data: Sequence[str | Path], out: str | Path, *, steps: int = 6000, batch: int = 32,
                    lr: float = 1e-3, seed: int = 0, n_val: int = 512, ckpt_every: int = 250,
                    max_minutes: float | None = None, stop_at: int | None = None,
                    config: dict[str, Any] | None = None, calibrate: Sequence[str | Path] = (),
                    init: str | Path | None = None,
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (or resume from ``OUT.ckpt.eqx``) the amortised network; writes ``out`` (.eqx + .json
    sidecar) at the end. Step k's batch, orientation, band set and noise come from
    ``fold_in(PRNGKey(seed), k)``, so a resumed run follows the uninterrupted trajectory.
    ``max_minutes`` or ``stop_at`` (a step) end this run early with a checkpoint, as an interruption
    would; the result is then ``{"stopped_at": step}``. ``calibrate``: held-out stores on which the σ
    are scaled to 68.3 % coverage (:func:`calibrate_sigma`; the factors go into the sidecar's config).
    A finished run resumed with ``calibrate`` only recalibrates. ``init``: weights to start from
    (fine-tuning; ``config['beta_nll']`` > 0 trains with the β-NLL)."""
    from ..nn.train import adam, fit, stderr_log
    from ..weights import git_commit, save

    log = log or stderr_log
    out = Path(out)
    cfg = check_config(dict(DEFAULT_CONFIG, **(config or {})), config or {})
    bands = store_bands(cfg)
    arr, meta = _load_stores(data, bands)
    if cfg.get("z_input"):
        observed = [m["file"] for m in meta if not is_rest_frame(m["simulator_config"])]
        if observed:
            raise ValueError(f"{', '.join(observed)}: dust at the observed wavelengths (a network reading the "
                             "redshift learns rest-frame dust; simulate with --dust-frame rest)")
    if cfg.get("psf_input") and np.isnan(arr["psf"]).any():
        bad = [m["file"] for m in meta if "psf_fwhm=None" in m["simulator_config"]]
        raise ValueError(f"{', '.join(bad) or 'a store'}: simulated without a PSF (the network reads the PSF; "
                         "simulate with --psf-fwhm > 0)")
    n = len(arr["cube"])
    if n_val >= n:
        raise ValueError(f"{n} simulated galaxies cannot hold out {n_val} for validation")
    tr, va = _split(n, n_val, seed)
    batch_fn = make_batch_fn(cfg, bands)
    model = AmortizedNet(cfg, key=jax.random.PRNGKey(seed))
    if init is not None:  # fine-tuning: start from these weights (same U-Net; new input slots start at 0)
        model = transplant(load_amortized(init)[0], model)
    beta = float(cfg.get("beta_nll", 0.0))

    def batch_loss(net, b, _key=None):
        return jnp.mean(jax.vmap(lambda *a: nll_loss(net, *a, beta=beta))(*b))

    loss_jit = eqx.filter_jit(batch_loss)
    base = jax.random.PRNGKey(seed)

    def draw(rows, key):
        keys = jax.random.split(key, len(rows))
        return batch_fn(keys, *(jnp.asarray(arr[k][rows]) for k in BATCH_FIELDS))

    def host_sample(step):  # step k's rows, orientations, band sets and noise, from fold_in(seed, k)
        k_rows, k_b = jax.random.split(jax.random.fold_in(base, step))
        rows = np.sort(np.asarray(jax.random.choice(k_rows, len(tr), (batch,), replace=False)))
        return draw(tr[rows], k_b)

    def validate(net):
        nb = max(len(va) // batch, 1)
        return sum(float(loss_jit(net, draw(va[j * batch:(j + 1) * batch], jax.random.PRNGKey(777 + j))))
                   for j in range(nb)) / nb

    res = fit(model, batch_loss, adam(lr, steps, warmup=min(200, max(steps // 10, 1)), final=0.02, clip=1.0),
              steps=steps, seed=seed, host_sample=host_sample, validate=validate, eval_every=ckpt_every,
              checkpoint=out.with_name(out.name + ".ckpt"),
              match={"config": cfg, "batch": batch, "lr": lr, "n_val": n_val, "init": None if init is None else str(init),
                     "stores": [m["file"] for m in meta]},
              max_minutes=max_minutes, stop_at=stop_at, log=log, name="amortized")
    if not res.done:
        return {"stopped_at": res.step}
    model, history = res.model, res.history
    sidecar = {"kind": "amortized-dust", "config": cfg, "seed": seed, "init": None if init is None else str(init),
               "data": {"stores": meta, "n_train": int(len(tr)), "n_val": int(len(va))},
               "training": {"steps": res.step, "batch": batch, "lr": lr, "optimizer": "adam+cosine, clip 1.0",
                            "wall_s": history[-1]["elapsed_s"], "device": jax.devices()[0].platform},
               "metrics": {"val_nll": history[-1]["val"]}, "history": history, "commit": git_commit()}
    if calibrate:
        model, cal_cfg, scales = _calibrated(model, cfg, calibrate, log)
        sidecar["config"] = cal_cfg
        sidecar["calibration"] = {"stores": [Path(p).name for p in calibrate], "coverage": 0.6827,
                                  "draws_per_band_set": CAL_DRAWS, "bins": CAL_BINS, "sigma_scale": scales}
    sidecar["domain"] = colour_domain(arr["cube"], bands, cfg["band_sets"])  # what it can be asked (domain_notes)
    save(out, model, sidecar)
    log(f"wrote {out} after {res.step} steps")
    return sidecar


def _calibrated(net: AmortizedNet, cfg: dict[str, Any], calibrate: Sequence[str | Path],
                log: Callable[[str], None]) -> tuple[AmortizedNet, dict[str, Any], dict[str, Any]]:
    """(the network with the σ calibration of :func:`calibrate_sigma` on ``calibrate``, its config,
    the calibration): the trained arrays in a network whose static σ factors are the new ones."""
    scales = calibrate_sigma(net, calibrate, cfg)
    log("sigma calibration factors (68.3 % coverage on the calibration stores), from the smallest to the "
        "largest sigma (pooled over the band sets): "
        + "; ".join(f"{k} {scales[k]['factor'][0]:.3f}..{scales[k]['factor'][-1]:.3f}" for k in ("pixel", "delta", "av_lw"))
        + f"; stages: {', '.join(k for k in ('by_psf', 'by_snr', 'by_dust') if k in scales) or 'none'}")
    cal_cfg = dict(cfg, sigma_scale=scales)
    like = eqx.filter_eval_shape(AmortizedNet, cal_cfg, key=jax.random.PRNGKey(0))  # built by shape only
    return eqx.tree_at(lambda m: m.unet, like, net.unet), cal_cfg, scales


def recalibrate_amortized(model: str | Path, calibrate: Sequence[str | Path], out: str | Path, *,
                          command: str = "", log: Callable[[str], None] = print) -> dict[str, Any]:
    """A trained network's σ calibrated anew (:func:`calibrate_sigma`, with every stage this version
    of galdust has) on the held-out stores ``calibrate``, written to ``out`` with the same weights:
    its sidecar is the old one with the new curves in ``config`` and ``calibration``, the old
    calibration's stores, sha256 and commit under ``calibration["previous"]``, and ``command`` (the
    command line, when given) appended to ``commands``."""
    net, meta = load_amortized(model)
    net, cal_cfg, scales = _calibrated(net, meta["config"], calibrate, log)
    old = meta.get("calibration") or {}
    side = {k: v for k, v in meta.items() if k not in ("sha256", "bytes", "weights_file", "commit", "galdust_version")}
    side["config"] = cal_cfg
    side["calibration"] = {"stores": [Path(p).name for p in calibrate], "coverage": 0.6827, "draws_per_band_set": CAL_DRAWS,
                           "bins": CAL_BINS, "sigma_scale": scales,
                           "previous": {"stores": old.get("stores"), "sha256": meta.get("sha256"),
                                        "commit": meta.get("commit")}}
    if command:
        side["commands"] = list(meta.get("commands") or []) + [command]
    from ..weights import save

    save(out, net, side)
    log(f"wrote {out} (the weights of {Path(model).name}, sigma recalibrated)")
    return side


#: equal-count bins in σ of the calibration curves (:func:`sigma_curve`), at least so many values a
#: bin (a 68 % quantile to about ±0.03), and how many times each held-out galaxy is seen in each band
#: set (fresh noise and orientation): 1,152 galaxies, 2 draws and 8 band sets give 18,432 galaxy
#: values pooled (12 bins) and 2,304 per band set (5 bins)
CAL_BINS, CAL_DRAWS, CAL_MIN_PER_BIN = 12, 2, 400
#: the dust stage's groups of galaxies by predicted A_V,LW (equal counts; a third of the shipped networks'
#: calibration galaxies have little dust, dust-free stores or dust-poor dusty hosts: the lowest two groups)
DUST_GROUPS = 6


def sigma_curve(err, sig, bins: int = CAL_BINS, q: float = 0.6827) -> dict[str, list[float]]:
    """A σ-dependent calibration from absolute errors ``err`` and predicted σ ``sig``: in ``bins``
    equal-count bins of σ (fewer where there are under ``CAL_MIN_PER_BIN`` values a bin), the factor
    by which σ must be multiplied for a fraction ``q`` of the errors to lie within ±σ, at the bin's
    median ln σ (``log_sigma``). The curve is applied piecewise linearly in ln σ, constant beyond the
    end knots (:func:`_scaled`); a factor is raised where needed so that the calibrated σ still
    grows with σ (a wider prediction never becomes the narrower one): between knots Δ apart in ln σ
    that holds when f_k ≥ f_(k−1) / (1 + Δ)."""
    err, sig = np.asarray(err, np.float64).ravel(), np.asarray(sig, np.float64).ravel()
    ok = np.isfinite(err) & np.isfinite(sig) & (sig > 0)
    err, sig = err[ok], sig[ok]
    if len(sig) == 0:
        raise ValueError("no finite calibration values")
    bins = max(1, min(bins, len(sig) // CAL_MIN_PER_BIN))  # one bin: a single factor
    order = np.argsort(sig)
    knots, fac = [], []
    for chunk in np.array_split(order, bins):
        knots.append(float(np.median(np.log(sig[chunk]))))
        fac.append(float(np.quantile(err[chunk] / sig[chunk], q)))
    keep = np.r_[True, np.diff(knots) > 1e-9]  # ties (a σ floor): one knot
    knots, fac = np.asarray(knots)[keep], np.maximum(np.asarray(fac)[keep], 1e-3)
    for k in range(1, len(fac)):
        fac[k] = max(fac[k], fac[k - 1] / (1.0 + knots[k] - knots[k - 1]))
    return {"log_sigma": [float(v) for v in knots], "factor": [float(v) for v in fac]}


def calibrate_sigma(net: AmortizedNet, data: Sequence[str | Path], config: dict[str, Any], *, draws: int = CAL_DRAWS,
                    seed: int = 2001, batch: int = 64, bins: int = CAL_BINS) -> dict[str, Any]:
    """σ calibration curves (:func:`sigma_curve`) of the pixels (A_V inside each galaxy's 84 %
    host-light contour), of δ and of A_V,LW, such that 68.3 % of the truths lie within ±σ at every σ,
    on held-out noiseless stores (not the training ones): every galaxy in every band set of the
    config, ``draws`` times each (the training's noise and orientation draws). Returns the curves
    pooled over the band sets and, under ``by_band_set``, each set's own (its galaxies' σ differ:
    e.g. pixel coverage 62 % with SDSS ugriz + 2MASS JH against 72 % with HSC grizy under one curve).
    A network trained with band dropout also sees every galaxy once in every set with each band
    dropped with probability 0.5 (at least MIN_BANDS kept); the pooled curves, which serve the
    subsets, include those. Then the stages on the full sets' values: by PSF (``by_psf``, a network
    with the PSF channel; :func:`psf_sigma_curves`) and by the galaxy's ln S/N (``by_snr``, after the
    PSF stage; :func:`stage_sigma_curves`) and by the galaxy's predicted A_V,LW (``by_dust``, after
    both: at a given σ a galaxy with little dust is covered more often than a dusty one, so coverage
    pooled over calibration stores where a third of the galaxies have little dust would depend on the
    sample's dust)."""
    from .metrics import light_contour

    bands = store_bands(config)
    arr, _ = _load_stores(data, bands)
    pred = eqx.filter_jit(jax.vmap(lambda n, Y, iv, pr, dl, lp, z: predict(n, Y, iv, pr, dl, calibrated=False, lpsf=lp,
                                                                            z=z),
                                   in_axes=(None, 0, 0, 0, 0, 0, 0)))
    snr_of = jax.jit(jax.vmap(lambda Y, iv, pr: encode(Y, iv, pr)[1]))  # each galaxy's ln S/N, as predict reads it
    n = len(arr["cube"])
    per_set = []
    passes = [(bset, 0.0, draws) for bset in config["band_sets"]]
    if float(config.get("band_dropout", 0.0)) > 0:
        passes += [(bset, 0.5, 1) for bset in config["band_sets"]]
    for k, (bset, p_drop, n_draws) in enumerate(passes):
        batch_fn = make_batch_fn(dict(config, band_sets=[bset], band_set_p=None, band_dropout=p_drop), bands,
                                 with_S=True)
        zp, zd, zl, lpp, lpg, lsp, lsg, lap, lag = [], [], [], [], [], [], [], [], []
        for d in range(n_draws):
            for j in range(0, n, batch):
                rows = np.arange(j, min(j + batch, n))
                keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), (k * draws + d) * 100003 + j),
                                        len(rows))
                Y, ivar, present, dlnw, lpsf, z, aref, av, weight, delta, av_lw, S = batch_fn(
                    keys, *(jnp.asarray(arr[q][rows]) for q in BATCH_FIELDS))
                out = jax.tree.map(np.asarray, pred(net, Y, ivar, present, dlnw, lpsf, z))
                inside = np.stack([light_contour(x, 0.84) for x in np.asarray(S)])  # as the goal counts
                zp.append(np.stack([np.abs(np.clip(out["av"], 0.0, None) - np.asarray(av)), out["av_sig"]])[:, inside])
                zd.append(np.stack([np.abs(out["delta"] - np.asarray(delta)), out["delta_sig"]]))
                zl.append(np.stack([np.abs(out["av_lw"] - np.asarray(av_lw)), out["av_lw_sig"]]))
                lp = np.asarray(jax.vmap(galaxy_lpsf)(lpsf, present))  # each galaxy's ln(FWHM / PSF_REF)
                lpg.append(lp)
                lpp.append(np.broadcast_to(lp[:, None, None], inside.shape)[inside])
                ls = np.asarray(snr_of(Y, ivar, present))
                lsg.append(ls)
                lsp.append(np.broadcast_to(ls[:, None, None], inside.shape)[inside])
                la = out["av_lw"]  # the predicted A_V,LW the dust stage is keyed on
                lag.append(la)
                lap.append(np.broadcast_to(la[:, None, None], inside.shape)[inside])
        per_set.append({"pixel": np.concatenate(zp, axis=1), "delta": np.concatenate(zd, axis=1),
                        "av_lw": np.concatenate(zl, axis=1),
                        "lp": {"pixel": np.concatenate(lpp), "delta": np.concatenate(lpg), "av_lw": np.concatenate(lpg)},
                        "ls": {"pixel": np.concatenate(lsp), "delta": np.concatenate(lsg), "av_lw": np.concatenate(lsg)},
                        "la": {"pixel": np.concatenate(lap), "delta": np.concatenate(lag), "av_lw": np.concatenate(lag)}})
    outs = ("pixel", "delta", "av_lw")
    pooled = {o: sigma_curve(*np.concatenate([z[o] for z in per_set], axis=1), bins=bins) for o in outs}
    full = list(zip(config["band_sets"], per_set))  # the full sets' passes
    pooled["by_band_set"] = [dict({o: sigma_curve(*z[o], bins=bins) for o in outs}, bands=list(bset))
                             for bset, z in full]
    sets = [(z, e) for (_, z), e in zip(full, pooled["by_band_set"])]
    psf_stage = psf_sigma_curves(sets, bins) if config.get("psf_input") else []
    if psf_stage:
        pooled["by_psf"] = psf_stage
    before = [(psf_stage, "lpsf", "lp")] if psf_stage else []
    snr_stage = stage_sigma_curves(sets, "ls", "log_snr", bins, before=before)
    if snr_stage:
        pooled["by_snr"] = snr_stage
        before.append((snr_stage, "log_snr", "ls"))
    dust_stage = stage_sigma_curves(sets, "la", "av_lw_pred", bins, before=before, groups=DUST_GROUPS)
    if dust_stage:
        pooled["by_dust"] = dust_stage
    return pooled


def psf_sigma_curves(per_set: list, bins: int = CAL_BINS) -> list[dict]:
    """The PSF stage of the calibration (a network with the PSF channel): the calibration values of
    every band set (``(values, that set's curves)`` pairs, as :func:`calibrate_sigma` gathers them),
    each σ first calibrated by its set's curves, grouped by the galaxy's ln(FWHM / PSF_REF) (the
    stores' distinct PSFs, or four equal-count groups when there are more than eight), and a
    :func:`sigma_curve` per group and output: the factor the set's σ still needs at that PSF. One
    PSF: none (the set's curves are all there is to learn)."""
    return stage_sigma_curves(per_set, "lp", "lpsf", bins)


def stage_sigma_curves(per_set: list, var: str, name: str, bins: int = CAL_BINS, before: Sequence = (),
                       groups: int = 4) -> list[dict]:
    """A stage of the calibration by a galaxy quantity (``var``: the values' key, ``"lp"`` its ln PSF
    FWHM, ``"ls"`` its ln S/N, ``"la"`` its predicted A_V,LW; ``name``: the knots' key in the sidecar):
    each σ first calibrated by its set's curves and by the ``before`` stages (``(stage, knot name,
    values' key)``, applied in order), grouped by the quantity (its distinct values, or ``groups``
    equal-count groups when there are more than eight), and a :func:`sigma_curve` per group and output
    at the group's median. One value: none. (The S/N stage: a network's σ are calibrated on the
    training's S/N draws pooled, and at a given σ a low-S/N galaxy's errors differ from a high-S/N
    one's.)"""
    outs = ("pixel", "delta", "av_lw")
    lp = np.concatenate([z[var]["delta"] for z, _ in per_set])
    uniq = np.unique(np.round(lp, 3))
    if len(uniq) < 2:
        return []
    if len(uniq) <= 8:
        groups = [(float(np.median(lp[np.abs(np.round(lp, 3) - u) < 5e-4])),
                   lambda x, u=u: np.abs(np.round(x, 3) - u) < 5e-4) for u in uniq]
    else:
        edges = list(np.quantile(lp, np.arange(1, groups) / groups))
        bounds: list[list[float]] = []
        for k in range(groups):
            lo, hi = (-np.inf, *edges)[k], (*edges, np.inf)[k]
            sel = (lp >= lo) & (lp < hi)
            if not sel.any():
                continue
            if bounds and np.median(lp[sel]) <= bounds[-1][2]:  # tied values: one group, widened
                bounds[-1][1] = hi
            else:
                bounds.append([lo, hi, float(np.median(lp[sel]))])
        groups = [(float(np.median(lp[(lp >= lo) & (lp < hi)])), lambda x, lo=lo, hi=hi: (x >= lo) & (x < hi))
                  for lo, hi, _ in bounds]
    prior = [(_stage_spec(st, kn), key) for st, kn, key in before]
    stage = []
    for knot, member in groups:
        e = {name: knot}
        for o in outs:
            err, sig = [], []
            for z, curves in per_set:
                m = member(z[var][o])
                err.append(z[o][0][m])
                # numpy: JAX op by op would compile every operation again for each group's array size
                # (docs/implementation.md)
                s = _scaled(np.asarray(z[o][1][m], np.float32), _scale_spec(curves[o]), np)
                for st, key in prior:
                    s = _psf_scaled(s, st, np.asarray(z[key][o][m], np.float32), outs.index(o), np)
                sig.append(s)
            e[o] = sigma_curve(np.concatenate(err), np.concatenate(sig), bins=bins)
        stage.append(e)
    return stage


def transplant(old: AmortizedNet, new: AmortizedNet) -> AmortizedNet:
    """``new`` with ``old``'s trained U-Net: the same arrays where the shapes agree; the input
    convolution's weights of each of ``old``'s slots and features copied to the slot of ``new`` that
    serves the same band (by name, or by wavelength into wavelength slots), new inputs starting at 0."""
    if old.unet.conv_in.weight.shape == new.unet.conv_in.weight.shape and old.slots == new.slots:
        return eqx.tree_at(lambda m: m.unet, new, old.unet)
    from ..physics.filters import is_known

    if old.slot_wave is not None and (old.slots != new.slots or old.slot_wave != new.slot_wave):
        raise ValueError("fine-tuning a wavelength-slot network into other slots is not supported")
    rest = lambda n: [a.shape for a in jax.tree.leaves(eqx.filter(eqx.tree_at(lambda m: m.unet.conv_in.weight, n, 0.0),
                                                                  eqx.is_array))]  # noqa: E731
    if old.unet.stem != new.unet.stem or rest(old) != rest(new):
        raise ValueError("--init: a network of another architecture (widths, emb_dim, stem) than the one trained")
    to = []
    for b in old.slots:
        if old.slot_wave is not None:  # the same wavelength slots (new input features: the PSF channel)
            to.append(list(old.slots).index(b))
        elif new.slot_wave is not None and is_known(b):
            to.append(int(assign_slots(new.slots, new.slot_wave, [b])[0][0]))
        elif b in new.slots:
            to.append(list(new.slots).index(b))
        else:
            raise ValueError(f"--init: the network's band {b!r} has no slot in the one trained")
    if len(set(to)) < len(to):
        raise ValueError("--init: two of the network's bands fall in one slot of the one trained")
    n_feat = _per_slot(old)  # the old features (the new network may add the wavelength or PSF channel)
    w = np.zeros(new.unet.conv_in.weight.shape, np.float32)
    w[:, :, _slot_channels(new, to, n_feat)] = np.asarray(old.unet.conv_in.weight)[
        :, :, _slot_channels(old, range(len(old.slots)), n_feat)]
    unet = eqx.tree_at(lambda u: u.conv_in.weight, old.unet, jnp.asarray(w))
    return eqx.tree_at(lambda m: m.unet, new, unet)


def load_amortized(path: str | Path | None = None):
    """(net, sidecar) of the shipped amortised model (``path`` None) or of a file."""
    from ..weights import load

    if path is None:
        from ..models import shipped_path

        path = shipped_path("amortized-dust")
    return load(path, lambda meta: AmortizedNet(meta["config"], key=jax.random.PRNGKey(0)))


# ----------------------------------------------------------------------------- the network's colour domain


def _wave_order(bands: Sequence[str]) -> list[int]:
    from ..physics.filters import get_filter

    return sorted(range(len(bands)), key=lambda i: get_filter(bands[i]).effective)


def summed_colours(flux: np.ndarray, bands: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(n, n_bands - 1) colours [mag] of adjacent bands in wavelength order from summed fluxes ``flux``
    (n, n_bands) (NaN where a sum is not positive), and their names ('hsc_g-hsc_r', ...)."""
    o = _wave_order(bands)
    f = np.asarray(flux, float)[:, o]
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(f > 0, -2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)
    names = [f"{bands[a]}-{bands[b]}" for a, b in zip(o[:-1], o[1:])]
    return m[:, :-1] - m[:, 1:], names


def colour_domain(cube: np.ndarray, store_bands: Sequence[str], band_sets: Sequence[Sequence[str]],
                  chunk: int = 512) -> dict:
    """The network's training domain in colour space: per band set, the ranges and nearest-neighbour
    test (:mod:`galdust.ml.domain`) of the colours of the training galaxies' summed light (noiseless
    store cubes (n, n_store_bands, y, x))."""
    from ..ml.domain import fit_neighbours, fit_ranges

    tot = np.concatenate([np.asarray(cube[i:i + chunk], np.float64).sum(axis=(2, 3))
                          for i in range(0, len(cube), chunk)])
    out = []
    for bs in band_sets:
        C, names = summed_colours(tot[:, [list(store_bands).index(b) for b in bs]], list(bs))
        out.append(dict(band_set=list(bs), **fit_ranges(C, names), neighbours=fit_neighbours(C)))
    return {"what": "colours of adjacent bands of the galaxy's summed light (the training stores' noiseless "
                    "galaxies; an input's light summed inside its detection footprint)", "by_band_set": out}


@jax.jit
def _footprint(Y, ivar):
    from .init import footprint

    return footprint(Y, ivar)


def domain_notes(domain: dict | None, preps: Sequence, bands: Sequence[str]) -> list[str]:
    """Per prepared observation: '' inside the network's colour domain (or no domain kept), else the
    :func:`galdust.ml.domain.outside_notes` note."""
    from ..ml.domain import outside_notes

    dom = next((d for d in (domain or {}).get("by_band_set", []) if sorted(d["band_set"]) == sorted(bands)), None)
    if dom is None or not preps:
        return [""] * len(preps)
    tot = []
    for p in preps:  # the light inside the fit's detection footprint (one compiled call per grid shape)
        fp = np.asarray(_footprint(jnp.asarray(p.Y), jnp.asarray(p.ivar))) & ~np.asarray(p.mask)
        tot.append(np.where(fp[None], np.asarray(p.Y, np.float64), 0.0).sum(axis=(1, 2)))
    C, names = summed_colours(np.stack(tot), list(bands))
    idx = [names.index(n) if n in names else None for n in dom["features"]]
    if None in idx:  # not the domain's colours (both are in wavelength order, so only another band set)
        return [""] * len(preps)
    return outside_notes(dom, C[:, idx])


# ----------------------------------------------------------------------------- inference on observations


def _pad_to(a: np.ndarray, size: int, fill=0.0) -> tuple[np.ndarray, tuple[int, int]]:
    """Centre-pad (..., h, w) to (..., size, size); returns the array and the offsets (y, x)."""
    h, w = a.shape[-2:]
    oy, ox = (size - h) // 2, (size - w) // 2
    out = np.full(a.shape[:-2] + (size, size), fill, a.dtype)
    out[..., oy:oy + h, ox:ox + w] = a
    return out, (oy, ox)


def _per_slot(net: AmortizedNet) -> int:
    """Input features per slot (5; 6 with the wavelength channel; 7 with the PSF channel too)."""
    return net.unet.conv_in.weight.shape[2] // (net.unet.stem ** 2 * len(net.slots))


def _slot_channels(net: AmortizedNet, idx: Sequence[int], n_feat: int | None = None) -> np.ndarray:
    """The input convolution's channels (space-to-depth order: block, feature, slot) of the slots
    ``idx`` and the first ``n_feat`` features (all by default), in the order a cube of just those
    slots (in that order) feeds them."""
    n, stem, per_slot = len(net.slots), net.unet.stem, _per_slot(net)
    return np.array([blk * per_slot * n + f * n + s for blk in range(stem * stem)
                     for f in range(per_slot if n_feat is None else n_feat) for s in idx], int)


def padded_size(n: int, batch_size: int, whole: bool) -> int:
    """The batch a network pass of ``n`` galaxies is padded to: the batch size (``whole``), else the
    next power of two (at most the batch size). Every batch shape is a program XLA compiles, which
    costs far more than a pass over a batch (docs/implementation.md), so a few shapes serve every
    count: fits of 5, 6, 7 or 8 galaxies share one program, in a command and, through the persistent
    XLA cache, in the next one."""
    if whole or n >= batch_size:
        return max(n, batch_size)
    return min(batch_size, 1 << max(n - 1, 0).bit_length())


@eqx.filter_jit
def _predict_batch(net, Y, ivar, dlnw, lpsf, idx: tuple[int, ...], scale: tuple | None = None, z=None):
    """:func:`predict` of a batch whose cubes hold only the slots ``idx`` (static; all present): an
    absent slot's inputs are zeros, so dropping them and their input weights gives the same maps
    with less work (a griz cube in the 9 wavelength slots). ``scale``: the band set's σ calibration
    (static; :meth:`AmortizedNet.scale_for`), the pooled one by default. ``lpsf``: (batch, len(idx))
    ln(PSF FWHM / PSF_REF) of each galaxy's bands (read by a network with the PSF channel); ``z``: (batch,)
    the galaxies' redshifts (read by a network with the redshift channel)."""
    sub = eqx.tree_at(lambda m: m.unet.conv_in.weight, net, net.unet.conv_in.weight[:, :, _slot_channels(net, idx)])
    present = jnp.ones(len(idx), Y.dtype)
    z = jnp.zeros(len(Y), Y.dtype) if z is None else z
    return jax.vmap(lambda y, i, d, lp, zz: predict(sub, y, i, present, d, scale=scale, lpsf=lp, z=zz))(
        Y, ivar, dlnw, lpsf, z)


def psf_fwhm(psf: np.ndarray) -> float:
    """FWHM (pixels) of a PSF image from its core: a Gaussian fitted to ln I against r² over the
    pixels above 10 % of the peak (0.1 % for a PSF of about a pixel; weighted by I), about the
    centroid of those above 20 %; exact for a sampled Gaussian, and the wings of a real PSF (Moffat)
    do not inflate it as second moments would."""
    p = np.asarray(psf, np.float64)
    peak = float(p.max())
    if not np.isfinite(peak) or peak <= 0:
        raise ValueError("PSF image without a positive peak")
    yy, xx = np.indices(p.shape)
    c = p > 0.2 * peak
    cy, cx = (float(np.sum(v[c] * p[c]) / np.sum(p[c])) for v in (yy, xx))
    m = p > 0.1 * peak
    if m.sum() < 5:  # narrower than about a pixel: the neighbours are below 10 %
        m = p > 1e-3 * peak
    r2, ln, w = ((yy - cy) ** 2 + (xx - cx) ** 2)[m], np.log(p[m]), p[m]
    A = np.stack([np.ones_like(r2), r2], axis=1) * w[:, None]
    coef = np.linalg.lstsq(A, ln * w, rcond=None)[0]
    if coef[1] >= 0:  # a single bright pixel: narrower than a pixel
        return 0.5
    return float(2.3548 * np.sqrt(-0.5 / coef[1]))


def psf_channel(psf: np.ndarray | None, k: int, n_bands: int) -> np.ndarray:
    """ln(FWHM / PSF_REF) per band on the fit grid, from the input grid's PSF images (n_bands, py, px)
    rebinned by ``k``; zeros (the training's PSF_REF) without PSF images."""
    if psf is None:
        return np.zeros(n_bands, np.float32)
    return np.array([math.log(max(psf_fwhm(b) / max(int(k), 1), 0.25) / PSF_REF) for b in np.asarray(psf)], np.float32)


def _set_label(bands: Sequence[str]) -> str:
    """A band set in a few words: ``sdss_u,...,sdss_z,2mass_j`` -> ``sdss ugriz + 2mass j``."""
    parts: list[list[str]] = []
    for b in bands:
        survey, _, name = b.rpartition("_")
        if parts and parts[-1][0] == survey and len(name) == 1:
            parts[-1][1] += name
        else:
            parts.append([survey, name])
    return " + ".join(f"{survey} {names}" if survey else names for survey, names in parts)


#: a network reading the redshift, asked about a galaxy without one
NEEDS_Z = ("the amortised network reads the redshift and this galaxy has none (a header REDSHIFT, --redshift, or "
           "a catalogue column)")


class AmortizedFitter:
    """``galdust fit --method amortized``: :meth:`fit` has :class:`~galdust.dust.job.DustFitter`'s
    signature and returns :class:`~galdust.dust.job.DustResult` objects with ``AV_ERR`` (per-pixel σ)
    and the scalars ``DELTAERR``, ``AVLW_ERR``; no iterations.

    ``rest``: a second fitter whose network reads the redshift (rest-frame dust), for the galaxies
    with a redshift whose bands it serves, beyond this network's training redshifts (:meth:`member`);
    the others get this one's network."""

    def __init__(self, net: AmortizedNet, meta: dict, *, batch_size: int = 64, detect: bool = True,
                 rest: "AmortizedFitter | None" = None):
        self.net, self.meta = net, meta
        self.batch_size, self.detect = batch_size, detect
        self.size = int(meta["config"].get("size", 64))
        self.band_sets = [tuple(s) for s in meta["config"]["band_sets"]]
        if rest is not None and not rest.net.z_input:
            raise ValueError("the rest-frame member of an amortised fitter must read the redshift")
        self.rest = rest
        self.z_train = training_z_range(meta)

    @classmethod
    def load(cls, path: str | Path | None = None, **kw) -> "AmortizedFitter":
        """The network of ``path``, or (None) the shipped ones: ``amortized-dust`` with
        ``amortized-dust-z`` for galaxies with a redshift where it is shipped."""
        net, meta = load_amortized(path)
        rest = None
        if path is None:
            from ..models import SHIPPED, shipped_path

            if "amortized-dust-z" in SHIPPED and shipped_path("amortized-dust-z").exists():
                rest = cls(*load_amortized(shipped_path("amortized-dust-z")), **kw)
        return cls(net, meta, rest=rest, **kw)

    def member(self, bands: Sequence[str], redshift: float | None) -> "AmortizedFitter":
        """The fitter a galaxy gets: ``rest`` for one with a redshift whose bands it serves, unless this
        (observed-frame) network serves them too and the redshift is no higher than its training hosts'
        (``z_train``; the shipped one: z ≤ 0.15), where its answer moved to the rest frame is the closer
        one (docs/amortized_dust.md, session 38: less dust invented on dust-free and low-dust hosts,
        the same on dusty ones); else this."""
        if redshift is None or self.rest is None or not self.rest.supports(bands):
            return self
        if self.z_train is not None and redshift <= self.z_train[1] and self.supports(bands):
            return self
        return self.rest

    def supports(self, bands: Sequence[str]) -> bool:
        """Whether the bands (in any order) are one of the band sets the network was trained on, or
        (a network trained with band dropout) MIN_BANDS or more of one of them."""
        if self.net.subsets:
            return len(set(bands)) == len(bands) >= MIN_BANDS and any(set(bands) <= set(s) for s in self.band_sets)
        return any(sorted(bands) == sorted(s) for s in self.band_sets)

    def check_bands(self, bands: Sequence[str], source: str = "", advice: str = "use --method map") -> None:
        if not self.supports(bands):
            sets = ", ".join(_set_label(s) for s in self.band_sets)
            what = f"serves {MIN_BANDS} or more bands of" if self.net.subsets else "was trained on"
            raise ValueError(f"{source + ': ' if source else ''}the amortised model has no band set "
                             f"{','.join(bands)} (it {what}: {sets}); {advice}")

    def domain_note(self, prep, bands: Sequence[str], redshift: float | None = None) -> str:
        """'' when the prepared observation's colours are inside the training domain of the network it
        gets (:meth:`member`; a sidecar without one: ''), else why not (:func:`domain_notes`)."""
        return domain_notes(self.member(bands, redshift).meta.get("domain"), [prep], tuple(bands))[0]

    def psf_input(self, obs, prep) -> np.ndarray | None:
        """The PSF channel of an observation (:func:`psf_channel`) for a network that reads it, else None."""
        return psf_channel(obs.psf, prep.grid.k, len(obs.bands)) if self.net.psf_input else None

    def encode_prepared(self, prep) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Data and inverse variance of a prepared observation, in its band order, padded to the
        network's grid (n_bands, size, size), and the pad offsets."""
        _, h, w = prep.Y.shape
        if h > self.size or w > self.size:
            raise ValueError(f"fit grid {h}x{w} larger than the network's {self.size}x{self.size}")
        Yi = np.stack([prep.Y, np.where(prep.mask[None], 0.0, prep.ivar)]).astype(np.float32)
        (Yp, ivp), off = _pad_to(Yi, self.size)
        return Yp, ivp, off

    def predict_prepared(self, items: list, pad: bool | None = None) -> list[dict]:
        """Network summaries (numpy, on each item's fit grid) for ``items`` = [(prep, bands, lpsf, z),
        ...] (``lpsf``: :func:`psf_channel`, or None: PSF_REF; ``z``: the redshift or None; both may be
        left out) (each item by the network it gets, :meth:`member`; batched per band set; ``pad``:
        every batch padded to the batch size, one compiled program; None: when a band set has more
        items than a batch; otherwise a batch is padded to the next power of two, :func:`padded_size`).
        A summary of a network reading the redshift is in the galaxy's rest frame
        and says so (``rest_frame`` True; :func:`to_rest_frame` leaves it)."""
        out: list = [None] * len(items)
        by_member: dict[int, tuple[AmortizedFitter, list[int]]] = {}
        for k, item in enumerate(items):
            m = self.member(item[1], item[3] if len(item) > 3 else None)
            by_member.setdefault(id(m), (m, []))[1].append(k)
        for m, ks in by_member.values():
            for k, pred in zip(ks, m._predict_own([items[k] for k in ks], pad)):
                out[k] = pred
        return out

    def _predict_own(self, items: list, pad: bool | None) -> list[dict]:
        """:meth:`predict_prepared` with this fitter's own network for every item."""
        out: list = [None] * len(items)
        groups: dict[tuple[str, ...], list[int]] = {}
        for k, item in enumerate(items):
            groups.setdefault(tuple(item[1]), []).append(k)
        zs = [item[3] if len(item) > 3 else None for item in items]
        if self.net.z_input and any(z is None for z in zs):
            raise ValueError(NEEDS_Z)
        for bands, ks in groups.items():
            idx, dlnw = assign_slots(self.net.slots, self.net.slot_wave, bands)
            whole = len(ks) > self.batch_size if pad is None else pad
            for j in range(0, len(ks), self.batch_size):
                chunk = ks[j:j + self.batch_size]
                enc = [self.encode_prepared(items[k][0]) for k in chunk]
                full = enc + [enc[-1]] * (padded_size(len(enc), self.batch_size, whole) - len(enc))
                Y, iv = (jnp.asarray(np.stack([e[i] for e in full])) for i in range(2))
                dl = jnp.asarray(np.broadcast_to(dlnw[idx], (len(full), len(idx))))
                lp = [items[k][2] if len(items[k]) > 2 and items[k][2] is not None else np.zeros(len(idx))
                      for k in chunk]
                lp = jnp.asarray(np.stack(lp + [lp[-1]] * (len(full) - len(lp))), jnp.float32)
                z = [float(zs[k] or 0.0) for k in chunk]
                z = jnp.asarray(z + [z[-1]] * (len(full) - len(z)), jnp.float32) if self.net.z_input else None
                res = jax.tree.map(np.asarray, _predict_batch(self.net, Y, iv, dl, lp, tuple(int(i) for i in idx),
                                                              self.net.scale_for(bands), z))
                for m, (k, e) in enumerate(zip(chunk, enc)):
                    oy, ox = e[2]
                    h, w = items[k][0].Y.shape[-2:]
                    out[k] = {key: (v[m][oy:oy + h, ox:ox + w] if np.ndim(v[m]) == 2 else float(v[m]))
                              for key, v in res.items()}
                    out[k]["rest_frame"] = self.net.z_input
        return out

    def fit(self, observations, masks=None, progress=None) -> list:
        from .job import prepare

        masks = list(masks) if masks is not None else [None] * len(observations)
        results: list = [None] * len(observations)
        items, where = [], []
        for i, obs in enumerate(observations):
            try:
                self.check_bands(obs.bands, obs.source)
                if obs.redshift is None and self.member(obs.bands, None).net.z_input:
                    raise ValueError(f"{obs.source}: {NEEDS_Z}")
                prep = prepare(obs, mask=masks[i], detect=self.detect)
                items.append((prep, tuple(obs.bands), self.psf_input(obs, prep), obs.redshift))
                where.append(i)
            except Exception as e:  # noqa: BLE001 - reported per input
                results[i] = e
        # one network and band set per batch: one compiled program each
        groups: dict[tuple, tuple[AmortizedFitter, list[int]]] = {}
        for k, item in enumerate(items):
            m = self.member(item[1], item[3])
            groups.setdefault((id(m), item[1]), (m, []))[1].append(k)
        done = 0
        for m, ks in groups.values():
            for j in range(0, len(ks), self.batch_size):
                chunk = ks[j:j + self.batch_size]
                try:  # a larger group's last batch is padded to the batch size (the same program)
                    preds = m._predict_own([items[k] for k in chunk], pad=len(ks) > self.batch_size)
                except Exception as e:  # noqa: BLE001
                    for k in chunk:
                        results[where[k]] = e
                    continue
                finally:
                    done += len(chunk)
                notes = domain_notes(m.meta.get("domain"), [items[k][0] for k in chunk], items[chunk[0]][1])
                for k, pred, note in zip(chunk, preds, notes):
                    results[where[k]] = amortized_result(pred, items[k][0], observations[where[k]], note)
                if progress is not None:
                    progress(done)
        return results


def to_rest_frame(pred: dict, redshift: float | None) -> dict:
    """The network's summaries (observed frame: the frame of its training simulations) moved to the rest
    frame of a galaxy at ``redshift`` (None: unchanged). Its curve puts at observed λ(1 + z) what the
    rest frame puts at λ: ``aref`` (and its σ) becomes the attenuation at observed λ₀(1 + z), ``av``,
    ``av_lw`` (and theirs) at observed 0.551(1 + z) µm, each under the network's own tilted curve; δ stays.
    The answer of a network reading the redshift (``rest_frame`` True) is in the rest frame already: unchanged."""
    if not redshift or pred.get("rest_frame"):
        return pred
    from ..physics.attenuation import LAMBDA_REF, LAMBDA_V, attenuation_ratio

    d = float(np.clip(pred["delta"], -1.0, 0.5))
    f_ref = float(attenuation_ratio(LAMBDA_REF * (1.0 + redshift), d))
    f_v = float(attenuation_ratio(LAMBDA_V * (1.0 + redshift), d)) / float(attenuation_ratio(LAMBDA_V, d))
    out = dict(pred)
    for k, f in (("aref", f_ref), ("aref_sig", f_ref), ("av", f_v), ("av_sig", f_v), ("av_lw", f_v),
                 ("av_lw_sig", f_v)):
        if k in out:
            out[k] = out[k] * f
    return out


@functools.lru_cache(maxsize=16)
def _attenuation(bands: tuple[str, ...], wave_eff: tuple[float, ...]):
    from ..physics.attenuation import BandAttenuation

    return BandAttenuation(bands, wave_eff=wave_eff)


def amortized_result(pred: dict, prep, obs, note: str = ""):
    """A :class:`~galdust.dust.job.DustResult` from the network's summaries on the fit grid; ``note``
    (:func:`domain_notes`): why the galaxy is outside the network's training domain (scalars ``FLAG``
    1 and ``NOTE``), '' inside it.

    The maps are effective (after the PSF). The host is the data dereddened by the network's dust,
    read as one SED times one morphology (the reddest band's): ``MODEL = F_b S D^K_b``, so ``CHI2``
    says how well a single-SED host under this dust describes the data; ``CHI2ND`` is the same with
    no dust."""
    from .job import AV_COVER, _on_input, frame_scalars

    g = prep.grid
    Y = np.where(prep.mask[None], 0.0, prep.Y).astype(np.float64)
    ivar = np.where(prep.mask[None], 0.0, prep.ivar)
    aref = np.clip(pred["aref"], 0.0, 7.5)  # the network's frame: the model and χ² are its own
    z_net = float(obs.redshift or 0.0) if pred.get("rest_frame") else 0.0
    pred = to_rest_frame(pred, obs.redshift)  # the outputs: in the galaxy's rest frame when z is known
    av = np.clip(pred["av"], 0.0, None).astype(np.float32)
    delta = float(np.clip(pred["delta"], -1.0, 0.5))
    K = np.asarray(_attenuation(tuple(obs.bands), tuple(obs.wave_eff))(jnp.float32(delta), jnp.float32(z_net)),
                   np.float64)
    D = 10.0 ** (-0.4 * aref)
    red = int(np.argmax(obs.wave_eff))
    trans = D[None] ** K[:, None, None]
    host = Y / trans

    def single(cube):
        S = np.clip(cube[red], 0.0, None)
        S = S / max(float(S.max()), 1e-30)
        F = cube.sum(axis=(1, 2)) / max(float(S.sum()), 1e-30)
        return F, S

    F, S = single(host)
    F_nd, S_nd = single(Y)
    model = F[:, None, None] * S[None] * trans
    model_nd = F_nd[:, None, None] * S_nd[None]
    n = max(int((ivar > 0).sum()), 1)
    chi2 = float(np.sum((Y - model) ** 2 * ivar) / n)
    chi2_nd = float(np.sum((Y - model_nd) ** 2 * ivar) / n)
    cov = float(np.sum(S * (av > AV_COVER)) / max(np.sum(S), 1e-30))
    scale = float(g.k * g.k)
    scalars = dict(DELTA=delta, DELTAERR=float(pred["delta_sig"]), AV_LW=max(float(pred["av_lw"]), 0.0),
                   AVLW_ERR=float(pred["av_lw_sig"]), COVFRAC=cov, CHI2=chi2, CHI2ND=chi2_nd, NITER=0,
                   CONVERGE=True, START="none", PRIORS="none", HOSTMOD="single", METHOD="amortized",
                   FLAG=int(bool(note)), NOTE=note)
    scalars.update(frame_scalars(obs))
    D_out = 10.0 ** (-0.4 * np.clip(pred["aref"], 0.0, 7.5))
    return _on_input(
        prep, model, model_nd, AV=g.map_to_input(av), D=g.map_to_input(D_out.astype(np.float32)),
        HOST=g.map_to_input(S.astype(np.float32), outside=0.0),
        HOST_CUBE=g.map_to_input((F[:, None, None] * S[None]).astype(np.float32), outside=0.0, per_pixel_flux=True),
        F=F / scale, F_ND=F_nd / scale, scalars=scalars, AV_ERR=g.map_to_input(np.asarray(pred["av_sig"], np.float32)))
