"""MAP fit of the joint galaxy–dust model by Adam under the host and dust score priors.

Loss: ``½ Σ ivar (Y − model)²`` (Gaussian likelihood) − log p(S) − log p(D | S) (δ uniform on
[−1, 0.5]) + ``Σ A / a_scale`` over the footprint, an exponential prior on the attenuation of each
pixel (mean ``a_scale`` mag at λ₀): it leaves well-measured dust alone (its pull, σ_A²/a_scale, is
small where the colour noise σ_A is) but stops pure noise from being fitted as positive dust in
faint pixels, which A ≥ 0 would otherwise turn into a positive bias. The default mean, 0.12 mag,
is the maximum-likelihood exponential fit to the training simulations: the mean truth A_λ₀ of the
pixels in the detection footprint of the dust prior's training galaxies (what it gains and costs
against a weaker prior, measured: ``docs/eval_dust.md``). The learned priors enter through their
scores, added to the likelihood gradient (as in scarlet2 and the seed). Free parameters and their Adam step sizes:

* ``log_F`` (per band): step ``lr_F`` in ln-flux;
* ``S`` > 0, peak 1 (F absorbs the scale), as ln S: step ``lr_S`` is a relative change, the same
  for bright and faint pixels and at any S/N; the host prior's score is carried by ∂/∂ln S = S ∂/∂S;
* the dust as ``A`` = −2.5 log10 D at λ₀ in mag (0 ≤ A ≤ 7.5, and A = 0 outside the host's
  detection footprint grown by 2 px, where no host light can be attenuated): step ``lr_A`` mag.
  D is the parameter of the prior; its score is carried to A by ∂D/∂A = −0.4 ln10 D;
* ``δ``: step ``lr_delta``, projected to [−1, 0.5].

All step sizes follow a cosine decay to ``lr_final`` of their value at the iteration limit.

The two score networks cost most of an iteration (timings: ``docs/eval_dust.md``). ``prior_every``
= k evaluates them once per block of k Adam steps and reuses the scores within the block (the
likelihood gradient is recomputed every step). A block, not a ``cond`` on the step counter, because under ``vmap`` a
``cond`` runs both branches. The fit then stops on a block boundary: at most k − 1 steps past
``max_iter`` or past convergence.

The likelihood is exactly invariant under a uniform screen, ``D → c D``, ``F_b → F_b c^{−K_b}``:
the data fix the dust map only up to one constant. The seed leaves this to the priors and to the
dust-free start. Here the exponential prior on A does it: it pulls that flat direction toward the
least dust the colours allow, i.e. toward a map whose least-attenuated pixels are dust-free. This
fails, as the seed documents for its fit, when dust covers nearly all the light (covering fraction
> 0.9, the thin-screen degeneracy). An explicit alternative (``gauge_q`` > 0, off by default): after
each step shift A so that the least-attenuated ``gauge_q`` of the host light is dust-free, with F
compensated. Alone, on noisy data, it was worse, because noise clipped at A = 0 turns into positive
dust. The price of the exponential prior: on galaxies with real dust it shrinks A strongly, and it
pins δ at the steep end (−1), where a colour costs the least A (both measured in ``docs/eval_dust.md``).

:data:`LEVEL_GAUGE` (``galdust fit --dust-level gauge``) is the alternative that works on
noisy data: A may go below 0 during the fit (``a_min``; the product is clipped to A ≥ 0 at the end),
so noise averages out instead of being clipped into dust; a Laplacian penalty smooths the map; the
gauge quantile is taken on the map smoothed by ``gauge_smooth`` px; no exponential prior and no
learned priors (the learned dust prior added dust to dust-free development galaxies with it). It
recovers the dust of isochromatic hosts, but reads the colour gradients of fiducial hosts (red bulge,
blue disk) as dust: numbers in ``docs/eval_dust.md``.

A bulge-disk host (``host='bulge-disk'``, ``galdust fit --host bulge-disk``) adds a Sérsic bulge B with
its own SED (``log_Fb``; shape: centre, ln R_e, n, e1, e2, projected to compact bulges: R_e ≤
``BULGE_RE_R50`` × the host's half-light radius, 1 ≤ n ≤ 6) and a Gaussian prior of
``bulge_colour_sigma`` mag on each bulge − disk colour. A free-form S can hold any part of the bulge
with the disk's colours, so the bulge's SED is not identifiable, only the sum; measured trade-offs in
``docs/eval_dust.md`` (session 20).

A nucleus (``host='nucleus'``: the single-SED host plus a point source; ``'bulge-disk-nucleus'``: the
bulge-disk host plus one) is an unresolved source (:func:`galdust.dust.model.point_image`) with its own
SED (``log_Fn``, no prior on its colours: AGN and nuclear star clusters span any) and a free sub-pixel
centre, bounded like the bulge's, under the same dust. It starts at the light's peak with 5 % of the
peak pixel's flux in every band. It can take a red or blue centre as small as the PSF, which a single
SED reads as dust; the price is that compact dust on the nucleus itself is read as a red nucleus.

Clumps (``host='clumps'``: the single-SED host plus a clump map; ``'bulge-disk-clumps'``) are a free-form
map C ≥ 0 with its own SED (``log_Fc``), under the same dust, for star-forming knots: bluer than the
disk, so a single SED fitted to the disk reads the light around them as reddened (on dust-free
realistic hosts the invented dust follows the clumps' light, ``bench/bench_invented_dust.py``). A
Laplace prior keeps C sparse: −log p = ``clump_l1`` × the clumps' S/N summed over pixels and bands,
so a clump is kept only where it lowers χ² by more than its own significance. C starts at 0 with the
host's colours un-reddened by 1 mag at λ₀. The price (``docs/eval_dust.md``): real dust whose
pattern looks like a bluer map (less dust between lanes) is partly taken by the clumps.

Sequence (seed §3): a dust-free fit (D ≡ 1) of F and S from the red or blue start; then the dust
fit of all parameters, from near-zero dust on the reddest band's morphology (red start) or from the
colour A map of the blue start, or from the amortised network's map ('amortized' start: a warm start,
the dust map's steps ``warm_steps`` of the others over a schedule of ``warm_iter`` ≤ ``max_iter``
iterations). Convergence: every band's F changes by less than ``tol`` (relative)
for ``patience`` consecutive iterations after at least ``min_iter``; else the fit stops at
``max_iter``. Everything is a pure function of arrays, so
``jax.vmap`` fits many galaxies of one shape at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..physics.psf import convolve_fft, gaussian_psf
from .init import blue_start, footprint, net_start, red_start
from .model import D_MIN, DELTA_RANGE, DustModel, DustParams, host_morphology, point_image, sersic_image

__all__ = ["FitConfig", "fit_galaxy", "reduced_chi2", "A_MAX", "LEVEL_GAUGE", "DUST_LEVELS", "level_config",
           "HOST_MODELS", "HOST_CHOICES", "DEFAULT_HOST", "resolve_host", "host_parts"]

#: ``galdust fit --host``: one SED for the whole host, or a Sérsic bulge with its own SED plus a free-form
#: disk; either with a nucleus (a point source with its own SED) or with clumps (a sparse free-form map
#: with its own SED)
HOST_MODELS = ("single", "bulge-disk", "nucleus", "bulge-disk-nucleus", "clumps", "bulge-disk-clumps")
#: the host model of ``galdust fit`` and :func:`galdust.dust.api.make_fitter`: 'auto' is 'clumps' with the
#: default dust level and 'single' with ``--dust-level gauge`` (:func:`resolve_host`).
#: :class:`FitConfig` itself keeps 'single', the model's simplest form.
DEFAULT_HOST = "auto"
#: what ``--host`` accepts: a host model, or 'auto'
HOST_CHOICES = ("auto",) + HOST_MODELS


def resolve_host(host: str, level: str = "shrink") -> str:
    """The host model that ``--host`` means at a dust level; ValueError (one line) for an unknown one.

    'auto' (the default) is measured per level (``docs/eval_dust.md``, seed-1001 evaluation set):
    - 'clumps' with the default level ('shrink'): on dust-free realistic hosts 97 % get ≤ 0.03 mag
      against 67 % for 'single', a lower median |ΔA_V| on realistic and stress hosts and a lower χ² on
      every real HSC galaxy (session 25); a lower map correlation on realistic hosts;
    - 'single' with 'gauge': there the clumps change |ΔA_V|, the map correlation and the invented dust
      by less than 0.01 but leave χ²(dust) above the dust-free fit's on 5 of 37 dusty galaxies (one SED:
      0 of 37)."""
    if host == "auto":
        return "single" if level == "gauge" else "clumps"
    if host not in HOST_MODELS:
        raise ValueError(f"unknown --host {host!r} ({', '.join(HOST_CHOICES)})")
    return host


def host_parts(host: str) -> tuple[bool, bool, bool]:
    """(bulge, nucleus, clumps): which components a ``--host`` model adds to the free-form host."""
    return host.startswith("bulge-disk"), host.endswith("nucleus"), host.endswith("clumps")

_LN10_04 = 0.4 * jnp.log(10.0)
A_MAX = float(-2.5 * jnp.log10(D_MIN))


@dataclass(frozen=True)
class FitConfig:
    """Static settings of a fit (hashable; a jit static argument)."""

    max_iter: int = 300  # dust fit
    nd_iter: int = 100  # dust-free fit
    tol: float = 1e-4  # convergence: max |Δ ln F_b| per iteration ...
    patience: int = 20  # ... for this many consecutive iterations ...
    min_iter: int = 100  # ... and not before this many
    lr_F: float = 0.02  # ln F
    lr_S: float = 0.05  # ln S
    lr_A: float = 0.01  # mag at λ₀
    lr_delta: float = 0.02
    lr_final: float = 0.05  # cosine decay of every step size to this fraction at max_iter
    delta0: float = -0.3
    use_priors: bool = True
    host_weight: float = 1.0
    dust_weight: float = 1.0
    smooth: float = 0.0  # Laplacian smoothness penalty on A (mag⁻²), the no-prior alternative
    gauge_q: float = 0.0  # host-light fraction forced dust-free after each step (0: off)
    a_scale: float = 0.12  # mean (mag) of an exponential prior on A per pixel (0: none)
    prior_every: int = 3  # evaluate the learned priors' scores once per this many Adam steps
    a_min: float = 0.0  # lower bound of A during the fit (< 0: noise is not clipped into positive dust)
    gauge_smooth: float = 0.0  # Gaussian σ (px) of the A map whose light quantile sets the gauge
    polish_iter: int = 0  # after the final clip to A ≥ 0: F, S refitted under the fixed dust map (kept if χ² falls)
    host: str = "single"  # HOST_MODELS: 'bulge-disk' adds a Sérsic bulge with its own SED, '…nucleus' a point source
    lr_bulge: float = 0.02  # bulge shape (centre px, ln R_e, n, ellipticity)
    bulge_colour_sigma: float = 0.2  # Gaussian prior σ (mag) on each bulge − disk colour, relative to the reddest band (0: none)
    clump_l1: float = 1.0  # Laplace prior on the clump map: −log p = clump_l1 × the clumps' S/N summed over pixels and bands
    lr_C: float = 0.005  # clump map (units of the host's peak, before F_c)
    # the dust fit from the amortised network's start ('amortized'): its dust map starts near the
    # answer, so the steps of A and δ are this fraction of the ones above (the host's keep theirs, so
    # that it converges: χ² stays below the dust-free fit's) and its cosine schedule is this many
    # iterations long (docs/amortized_dust.md: fewer iterations and better maps than full steps)
    warm_steps: float = 0.25
    warm_iter: int = 150

    def __post_init__(self):
        if self.host not in HOST_MODELS:
            raise ValueError(f"unknown host model {self.host!r} ({', '.join(HOST_MODELS)})")


#: the "gauge" way to fix the dust level (opt-in, ``galdust fit --dust-level gauge``; see the module
#: docstring): after every step a uniform screen is removed so that the least-attenuated 10 % of the
#: host light (A smoothed by a 2-px Gaussian) is dust-free; after the final clip to A ≥ 0 (the product
#: has D ≤ 1), F and S are refitted for 200 small steps under the clipped map (``polish_iter``; kept
#: where it lowers χ²), so that the clip does not leave the dust fit worse than the dust-free one.
LEVEL_GAUGE = dict(a_scale=0.0, a_min=-3.0, gauge_q=0.1, gauge_smooth=2.0, smooth=30.0, lr_A=0.1,
                   max_iter=1000, min_iter=1000, use_priors=False, polish_iter=200)
#: ``--dust-level`` names: 'shrink' is the default :class:`FitConfig`, 'gauge' is :data:`LEVEL_GAUGE`
DUST_LEVELS = ("shrink", "gauge")


def level_config(level: str) -> "FitConfig":
    """The :class:`FitConfig` of a ``--dust-level`` name (ValueError for an unknown one)."""
    if level not in DUST_LEVELS:
        raise ValueError(f"unknown --dust-level {level!r} ({', '.join(DUST_LEVELS)})")
    return FitConfig(**LEVEL_GAUGE) if level == "gauge" else FitConfig()

LOG_S_MIN = float(jnp.log(1e-6))


class _Free(NamedTuple):
    log_F: jnp.ndarray
    log_S: jnp.ndarray  # ln S, max 0
    A: jnp.ndarray  # mag at λ₀
    delta: jnp.ndarray
    log_Fb: jnp.ndarray  # (n_band,) bulge SED (bulge-disk host; unused for a single host)
    bulge: jnp.ndarray  # (6,) x0, y0 [px from the centre], ln R_e [px], n, e1, e2
    log_Fn: jnp.ndarray  # (n_band,) nucleus SED (host with a nucleus; unused otherwise)
    nuc: jnp.ndarray  # (2,) x0, y0 of the nucleus [px from the centre]
    log_Fc: jnp.ndarray  # (n_band,) clumps' SED (host with clumps; unused otherwise)
    C: jnp.ndarray  # (H, W) clump map ≥ 0


#: bounds of the bulge's shape: centre within ±BULGE_OFFSET of the image size, R_e, Sérsic n, |e|
BULGE_OFFSET, BULGE_RE, BULGE_N, BULGE_E = 0.15, (0.5, 0.2), (1.0, 6.0), 0.85
BULGE_RE_R50 = 0.4  # R_e ≤ this × the host's half-light radius


def _to_params(q: _Free, bulge: bool = False, nucleus: bool = False, clumps: bool = False) -> DustParams:
    p = DustParams(q.log_F, jnp.exp(q.log_S), jnp.exp(-_LN10_04 * q.A), q.delta)
    if bulge:
        p = p._replace(log_Fb=q.log_Fb, B=sersic_image(q.log_S.shape, *q.bulge), bulge_shape=q.bulge)
    if nucleus:
        p = p._replace(log_Fn=q.log_Fn, N=point_image(q.log_S.shape, *q.nuc), nucleus_pos=q.nuc)
    if clumps:
        p = p._replace(log_Fc=q.log_Fc, C=q.C)
    return p


def _from_start(log_F, S, A, delta, log_Fb=None, bulge=None, log_Fn=None, nuc=None, log_Fc=None, C=None) -> _Free:
    log_Fb = jnp.full_like(log_F, -30.0) if log_Fb is None else log_Fb
    bulge = jnp.array([0.0, 0.0, jnp.log(1.5), 2.0, 0.0, 0.0]) if bulge is None else bulge
    log_Fn = jnp.full_like(log_F, -30.0) if log_Fn is None else log_Fn
    nuc = jnp.zeros(2, jnp.float32) if nuc is None else nuc
    log_Fc = jnp.full_like(log_F, -30.0) if log_Fc is None else log_Fc
    C = jnp.zeros_like(S) if C is None else C
    return _Free(log_F, jnp.log(jnp.clip(S, 1e-6, None)), A, delta, log_Fb, bulge, log_Fn, nuc, log_Fc, C)


def _labels(_):
    return _Free("F", "S", "A", "delta", "Fb", "Bp", "Fn", "Np", "Fc", "C")


def _adam(lr, n_iter, final):
    return optax.adam(optax.cosine_decay_schedule(lr, max(n_iter, 1), alpha=final))


def _optimizer(cfg: FitConfig, n_iter: int, fit_dust: bool, lr_scale: float = 1.0):
    f = cfg.lr_final
    bulge, nucleus, clumps = host_parts(cfg.host)
    tx = {"F": _adam(lr_scale * cfg.lr_F, n_iter, f), "S": _adam(lr_scale * cfg.lr_S, n_iter, f),
          "A": _adam(cfg.lr_A, n_iter, f) if fit_dust else optax.set_to_zero(),
          "delta": _adam(cfg.lr_delta, n_iter, f) if fit_dust else optax.set_to_zero(),
          "Fb": _adam(lr_scale * cfg.lr_F, n_iter, f) if bulge else optax.set_to_zero(),
          "Bp": _adam(lr_scale * cfg.lr_bulge, n_iter, f) if bulge else optax.set_to_zero(),
          "Fn": _adam(lr_scale * cfg.lr_F, n_iter, f) if nucleus else optax.set_to_zero(),
          "Np": _adam(lr_scale * cfg.lr_bulge, n_iter, f) if nucleus else optax.set_to_zero(),
          "Fc": _adam(lr_scale * cfg.lr_F, n_iter, f) if clumps else optax.set_to_zero(),
          "C": _adam(lr_scale * cfg.lr_C, n_iter, f) if clumps else optax.set_to_zero()}
    return optax.multi_transform(tx, _labels)


def _weighted_quantile(x, w, q):
    """The ``q`` quantile of ``x`` under weights ``w`` ≥ 0 (flattened)."""
    x, w = x.ravel(), w.ravel()
    order = jnp.argsort(x)
    cw = jnp.cumsum(w[order])
    k = jnp.searchsorted(cw, q * cw[-1])
    return x[order][jnp.clip(k, 0, x.size - 1)]


def _smooth(A, sigma: float):
    """A map convolved with a unit-sum Gaussian of ``sigma`` pixels (zero outside the map)."""
    if sigma <= 0:
        return A
    return convolve_fft(A, jnp.asarray(gaussian_psf(2.0 * np.sqrt(2.0 * np.log(2.0)) * sigma)[0], A.dtype))


def _project(q: _Free, K, fp, seen, gauge_q: float = 0.0, a_min: float = 0.0, gauge_smooth: float = 0.0,
             re_max=None) -> _Free:
    """Constraints after a step; ``seen``: pixels where some band has data (ivar > 0)."""
    # S peaks at 1 among the pixels with data (all pixels where none has), and is capped there
    # elsewhere: the peak of S sets the scale of F, so it must not sit where nothing is measured
    m = jnp.max(jnp.where(seen, q.log_S, -jnp.inf))
    m = jnp.where(jnp.isfinite(m), m, jnp.max(q.log_S))
    log_F = q.log_F + m
    log_S = jnp.clip(q.log_S - m, LOG_S_MIN, 0.0)
    A = q.A
    if gauge_q > 0:
        # remove a uniform screen a0: D → D 10^{0.4 a0}, F_b → F_b 10^{−0.4 K_b a0}
        As = _smooth(jnp.where(fp, A, 0.0), gauge_smooth) / jnp.maximum(_smooth(fp.astype(A.dtype), gauge_smooth), 1e-6)
        # light of pixels with data only: S is free where every band is masked
        w = jnp.where(fp & seen, jnp.exp(log_S), 0.0)
        a0 = _weighted_quantile(jnp.where(fp, As, jnp.inf), w, gauge_q)
        a0 = jnp.where(jnp.isfinite(a0), a0, 0.0)
        A = A - a0
        log_F = log_F - _LN10_04 * K * a0
        log_Fb = q.log_Fb - _LN10_04 * K * a0
        log_Fn = q.log_Fn - _LN10_04 * K * a0
        log_Fc = q.log_Fc - _LN10_04 * K * a0
    else:
        log_Fb, log_Fn, log_Fc = q.log_Fb, q.log_Fn, q.log_Fc
    lo = jnp.where(seen, a_min, 0.0)  # no D > 1 where there are no data
    A = jnp.where(fp, jnp.clip(A, lo, A_MAX), 0.0)
    off = BULGE_OFFSET * min(A.shape)
    return _Free(log_F, log_S, A, jnp.clip(q.delta, *DELTA_RANGE), log_Fb, _bulge_bounds(q.bulge, A.shape, re_max),
                 log_Fn, jnp.clip(q.nuc, -off, off), log_Fc, jnp.where(fp, jnp.clip(q.C, 0.0, 1.0), 0.0))


def _bulge_bounds(b, shape, re_max=None):
    """The bulge's shape parameters inside :data:`BULGE_OFFSET`, :data:`BULGE_N`, :data:`BULGE_E` and
    R_e ≤ ``re_max`` px (default ``BULGE_RE[1]`` of the image size)."""
    off = BULGE_OFFSET * min(shape)
    e = jnp.sqrt(b[4] ** 2 + b[5] ** 2 + 1e-12)
    shrink = jnp.minimum(1.0, BULGE_E / e)
    hi = BULGE_RE[1] * min(shape) if re_max is None else jnp.maximum(re_max, BULGE_RE[0])
    return jnp.stack([jnp.clip(b[0], -off, off), jnp.clip(b[1], -off, off),
                      jnp.clip(b[2], jnp.log(BULGE_RE[0]), jnp.log(hi)),
                      jnp.clip(b[3], *BULGE_N), b[4] * shrink, b[5] * shrink])


def _predict(model: DustModel, q: _Free, dust: bool, bulge: bool = False, nucleus: bool = False, clumps: bool = False):
    """The model cube from the fit's coordinates; a negative A (D > 1) is honoured here, so that
    ``a_min`` < 0 lets noise average out (:meth:`DustModel.transmission_from_A`)."""
    y = model.host(_to_params(q, bulge, nucleus, clumps))
    return model.observe(y * model.transmission_from_A(q.A, q.delta) if dust else y)


def _laplacian_penalty(A):
    d = A - 0.25 * (jnp.roll(A, 1, 0) + jnp.roll(A, -1, 0) + jnp.roll(A, 1, 1) + jnp.roll(A, -1, 1))
    return jnp.sum(d**2)


@eqx.filter_jit
def _run(model: DustModel, Y, ivar, q0: _Free, cfg: FitConfig, fp, dust: bool,
         host_score: Callable | None, dust_score: Callable | None, max_iter: int, fit_dust: bool | None = None,
         lr_scale: float = 1.0, re_max=None):
    """Adam on the free parameters. ``dust``: the model attenuates; ``fit_dust`` (default: ``dust``):
    A and δ are fitted (False with ``dust``: F and S under a fixed dust map); ``lr_scale`` scales the
    step sizes of F and S.

    Jitted with the arrays (model, data, priors' weights) as arguments, so that :func:`fit_galaxy`
    called outside a jit (one galaxy in a notebook, galaxy after galaxy) compiles each loop once per
    shape and setting (``docs/eval_dust.md``); inside ``galdust fit``'s jitted batch it is inlined."""
    fit_dust = dust if fit_dust is None else fit_dust
    bulge, nucleus, clumps = host_parts(cfg.host)
    opt = _optimizer(cfg, max_iter, fit_dust, lr_scale)
    gauge = cfg.gauge_q if fit_dust else 0.0
    seen = jnp.any(ivar > 0, axis=0)
    a_min = cfg.a_min if fit_dust else 0.0
    sig_inv = jnp.sqrt(ivar) if clumps else None  # 1/σ per pixel-band, for the clumps' S/N

    def loss(q):
        r = Y - _predict(model, q, dust, bulge, nucleus, clumps)
        nll = 0.5 * jnp.sum(ivar * r**2)
        if clumps and cfg.clump_l1 > 0:  # Laplace prior: a clump pays for its S/N
            nll = nll + cfg.clump_l1 * jnp.sum(q.C * jnp.sum(jnp.exp(q.log_Fc)[:, None, None] * sig_inv, axis=0))
        if dust and cfg.smooth > 0:
            nll = nll + cfg.smooth * _laplacian_penalty(q.A)
        if bulge and cfg.bulge_colour_sigma > 0:  # bulge − disk colours (mag, relative to the reddest band) ~ N(0, σ)
            c = 1.0857 * ((q.log_Fb - q.log_Fb[-1]) - (q.log_F - q.log_F[-1]))
            nll = nll + 0.5 * jnp.sum(c**2) / cfg.bulge_colour_sigma**2
        if dust and cfg.a_scale > 0:  # exponential prior on A (A ≥ 0): −log p = A / a_scale
            nll = nll + jnp.sum(jnp.where(fp, jnp.maximum(q.A, 0.0), 0.0)) / cfg.a_scale
        return nll

    def prior_grads(q):
        """The learned priors' −score in the optimiser's coordinates (zeros where off)."""
        z = jax.tree.map(jnp.zeros_like, q)
        if cfg.use_priors and host_score is not None:
            S = jnp.exp(q.log_S)  # ∂/∂ln S = S ∂/∂S
            z = z._replace(log_S=-cfg.host_weight * host_score(S) * S)
        if fit_dust and cfg.use_priors and dust_score is not None:
            D = jnp.exp(-_LN10_04 * q.A)
            # conditioned on the whole host's morphology (S itself for a single-SED host)
            sD = dust_score(jnp.minimum(D, 1.0), host_morphology(_to_params(q, bulge, nucleus, clumps)))
            z = z._replace(A=-cfg.dust_weight * sD * (-_LN10_04 * D))
        return z

    # S where no band has data: only the host prior (when on) says anything about it. Without it the
    # likelihood reaches such pixels only through the PSF's faint wings, and Adam (steps normalised
    # by the gradient's size) turns those tiny, steady gradients into full-size steps: S under a
    # masked neighbour grew by e^7 over a dust fit, the peak normalisation then pushed the galaxy's
    # own S to the floor and the fit diverged. So without the prior, S stays at its start there.
    free_S = seen | (cfg.use_priors and host_score is not None)

    def step(state, pg):
        q, s, i, stable, _ = state
        g = jax.tree.map(jnp.add, jax.grad(loss)(q), pg)
        upd, s = opt.update(g, s, q)
        moved = optax.apply_updates(q, upd)
        moved = moved._replace(log_S=jnp.where(free_S, moved.log_S, q.log_S))
        new = _project(moved, model.K(q.delta), fp, seen, gauge, a_min, cfg.gauge_smooth, re_max)
        change = jnp.max(jnp.abs(new.log_F - q.log_F))
        stable = jnp.where(change < cfg.tol, stable + 1, 0)
        return new, s, i + 1, stable, change

    def block(state):  # the priors' scores once per block of ``prior_every`` steps (module docstring)
        pg = prior_grads(state[0])
        return jax.lax.fori_loop(0, cfg.prior_every, lambda _, st: step(st, pg), state)

    def cond(state):
        return (state[2] < max_iter) & ((state[3] < cfg.patience) | (state[2] < min(cfg.min_iter, max_iter)))

    init = (q0, opt.init(q0), jnp.int32(0), jnp.int32(0), jnp.float32(jnp.inf))
    q, _, n, stable, _ = jax.lax.while_loop(cond, block, init)
    return q, n, stable >= cfg.patience


def _dilate(mask, r: int):
    k = jnp.ones((2 * r + 1, 2 * r + 1))
    return jax.scipy.signal.convolve2d(mask.astype(jnp.float32), k, mode="same") > 0.5


def reduced_chi2(model: DustModel, p: DustParams, Y, ivar, dust: bool = True):
    """χ² per pixel-band with information (ivar > 0)."""
    r = Y - model(p, dust=dust)
    return jnp.sum(ivar * r**2) / jnp.maximum(jnp.sum(ivar > 0), 1)


def _half_light_radius(S, fp):
    """√(N/π) of the N brightest footprint pixels of S that hold half its light [px]."""
    w = jnp.where(fp, jnp.clip(S, 0.0, None), 0.0).ravel()
    srt = jnp.sort(w)[::-1]
    n = jnp.searchsorted(jnp.cumsum(srt), 0.5 * jnp.sum(srt)) + 1
    return jnp.sqrt(n / jnp.pi)


def _bulge_start(S, fp):
    """(6,) start of the bulge's shape: at the peak of S inside the footprint, R_e 1.5 px, n = 2, round."""
    h, w = S.shape
    k = jnp.argmax(jnp.where(fp, S, -jnp.inf))
    y, x = k // w, k % w
    return jnp.array([x - (w - 1) / 2.0, y - (h - 1) / 2.0, jnp.log(1.5), 2.0, 0.0, 0.0], jnp.float32)


def fit_galaxy(model: DustModel, Y, ivar, *, start: str, cfg: FitConfig = FitConfig(),
               host_score: Callable | None = None, dust_score: Callable | None = None, init=None) -> dict:
    """Fit one galaxy (``jax.vmap`` over Y, ivar for a batch); ``start`` is 'red', 'blue' or
    'amortized' (static; ``init`` = (A map at λ₀, δ) of the amortised network).

    Pixels with ``ivar == 0`` (masked) carry no information. Returns a dict: ``params``
    (:class:`DustParams`), ``params_nd`` (the dust-free fit), ``chi2`` and ``chi2_nd`` (χ² per
    pixel-band with information), ``n_iter``, ``converged``, ``footprint``.
    """
    Y = jnp.asarray(Y, jnp.float32)
    ivar = jnp.asarray(ivar, jnp.float32)
    Y = jnp.where(ivar > 0, Y, 0.0)
    fp = _dilate(footprint(Y, ivar), 2)  # dust lives where the host is detected (and 2 px around)
    delta0 = jnp.float32(cfg.delta0)
    if start == "amortized":
        delta0 = jnp.clip(jnp.asarray(init[1], jnp.float32), *DELTA_RANGE)
    K0 = model.K(delta0)
    if start == "red":
        logF, S, D = red_start(Y, ivar, K0, fp)
    elif start == "blue":
        logF, S, D = blue_start(Y, ivar, K0, fp)
    elif start == "amortized":
        logF, S, D = net_start(Y, ivar, K0, fp, init[0])
    else:
        raise ValueError(f"start must be 'red', 'blue' or 'amortized' here, not {start!r}")
    A_start = -2.5 * jnp.log10(jnp.clip(D, D_MIN, 1.0))
    bulge, nucleus, clumps = host_parts(cfg.host)
    # 1) dust-free fit of F and S. Blue start: from the observed (attenuated) morphology
    S_obs = S * jnp.mean(D[None] ** K0[:, None, None], axis=0)
    S_nd0 = S if start == "red" else S_obs
    seen = jnp.any(ivar > 0, axis=0)
    b0 = _bulge_start(S_nd0, fp) if (bulge or nucleus) else None
    # bulges are compact: R_e ≈ 0.2–0.3 disk scale lengths (Courteau et al. 1996; MacArthur et al. 2003),
    # so R_e ≤ BULGE_RE_R50 × the whole host's half-light radius (≈ 0.5 scale lengths of a pure disk):
    # a larger, flatter "bulge" would be a second colour map free to mimic a dust disk
    re_max = BULGE_RE_R50 * _half_light_radius(S_nd0, fp) if bulge else None
    # a bulge-disk host starts with a small, round bulge of the disk's colours at the light's peak, a
    # nucleus there with 5 % of the peak pixel's flux
    n0 = None if b0 is None else b0[:2]
    # clumps start absent, with the colours of the host un-reddened by 1 mag at λ₀ (young, blue)
    q_nd0 = _project(_from_start(logF, S_nd0, jnp.zeros_like(S), delta0, logF + jnp.log(0.2), b0,
                                 logF + jnp.log(0.05), n0, logF + _LN10_04 * (K0 - K0[-1])), K0, fp, seen,
                     re_max=re_max)
    q_nd, n_nd, _ = _run(model, Y, ivar, q_nd0, cfg, fp, False, host_score, None, cfg.nd_iter, re_max=re_max)
    p_nd = _to_params(q_nd, bulge, nucleus, clumps)
    chi2_nd = reduced_chi2(model, p_nd, Y, ivar, dust=False)
    # 2) dust fit from the start's own (S, A): red = reddest band's morphology with near-zero dust,
    #    blue = the colour-corrected morphology and its first A map. A bulge-disk host starts with the
    #    dust-free fit's bulge and SEDs (the bulge's colours are measured there) and the start's host
    #    less that bulge as its disk (not the dust-free fit's S, where dust lanes are already holes);
    #    a nucleus likewise
    if bulge or nucleus or clumps:
        # the disk: the start's host in the reddest band less the dust-free fit's bulge and nucleus there
        disk_red = jnp.exp(logF[-1]) * S
        if bulge:
            disk_red = disk_red - jnp.exp(q_nd.log_Fb[-1]) * sersic_image(S.shape, *q_nd.bulge)
        if nucleus:
            disk_red = disk_red - jnp.exp(q_nd.log_Fn[-1]) * point_image(S.shape, *q_nd.nuc)
        if clumps:
            disk_red = disk_red - jnp.exp(q_nd.log_Fc[-1]) * q_nd.C
        S0 = jnp.clip(disk_red / jnp.exp(q_nd.log_F[-1]), 1e-6, None)
        q0 = _project(q_nd._replace(log_S=jnp.log(S0), A=A_start, delta=delta0), K0, fp, seen, re_max=re_max)
    else:
        q0 = _project(_from_start(logF, S, A_start, delta0), K0, fp, seen)
    cfg_d, n_d = cfg, cfg.max_iter
    if start == "amortized":  # a warm start: small dust steps over a short schedule (FitConfig.warm_*)
        cfg_d = replace(cfg, lr_A=cfg.warm_steps * cfg.lr_A, lr_delta=cfg.warm_steps * cfg.lr_delta)
        n_d = min(cfg.warm_iter, cfg.max_iter)
    q, n, conv = _run(model, Y, ivar, q0, cfg_d, fp, True, host_score, dust_score, n_d, re_max=re_max)
    q = q._replace(A=jnp.clip(q.A, 0.0, A_MAX))  # the product: D ≤ 1
    n_dust = n  # the dust fit's own iterations (the ones --max-iter limits)
    if cfg.polish_iter > 0:  # 3) F and S refitted under the clipped dust map, with small steps (a fresh
        # Adam's first steps move every parameter by its full step size, noise-dominated pixels included)
        qp, n_p, _ = _run(model, Y, ivar, q, cfg, fp, True, host_score, None, cfg.polish_iter, fit_dust=False,
                          lr_scale=0.1, re_max=re_max)
        # kept only where it lowers χ² (a fit that went wrong, e.g. δ at its bound, can get worse)
        better = (reduced_chi2(model, _to_params(qp, bulge, nucleus, clumps), Y, ivar)
                  < reduced_chi2(model, _to_params(q, bulge, nucleus, clumps), Y, ivar))
        q = jax.tree.map(lambda a, b: jnp.where(better, a, b), qp, q)
        n = n + n_p
    p = _to_params(q, bulge, nucleus, clumps)
    return dict(params=p, chi2=reduced_chi2(model, p, Y, ivar), chi2_nd=chi2_nd, n_iter=n + n_nd,
                n_iter_dust=n_dust, converged=conv, footprint=fp, params_nd=p_nd)
