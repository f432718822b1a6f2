"""The dust-fit job on observations: masking, batching (vmap), and the result products as arrays.

``DustFitter`` holds the priors and the fit settings; ``fitter.fit([obs, ...])`` groups the
observations by (shape, bands, PSF shape), fits each group in fixed-size vmapped batches (one
compilation per group shape) and returns one :class:`DustResult` per observation. I/O is elsewhere
(:mod:`galdust.dust.products`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..io import InputError, Observation
from .fit import FitConfig, fit_galaxy
from .grid import FitGrid, plan_grid
from .init import choose_start
from ..sources import detect_neighbours
from .model import DustModel, host_morphology, make_model

__all__ = ["DustFitter", "DustResult", "Prepared", "prepare", "AV_COVER"]

AV_COVER = 0.02  # A_V threshold of the covering fraction (as the simulator's truth)


@dataclass
class DustResult:
    """Products of one fit, as numpy arrays on the input pixel grid (pre-PSF maps)."""

    AV: np.ndarray  # (ny, nx) A_V [mag at 0.551 µm]
    D: np.ndarray  # (ny, nx) transmission at λ₀
    HOST: np.ndarray  # (ny, nx) S, peak 1
    HOST_CUBE: np.ndarray  # (nb, ny, nx) F_b S, input flux units
    MODEL: np.ndarray  # (nb, ny, nx) model cube (with PSF, when used)
    MODEL_ND: np.ndarray  # (nb, ny, nx) dust-free model
    RESID: np.ndarray  # (nb, ny, nx) (data − model) √ivar, NaN where ivar = 0
    RESID_ND: np.ndarray
    MASK: np.ndarray  # (ny, nx) 1 where zero-weighted (neighbours, user mask, no data)
    F: np.ndarray  # (nb,)
    F_ND: np.ndarray
    scalars: dict = field(default_factory=dict)  # DELTA, AV_LW, COVFRAC, CHI2, CHI2ND, NITER, CONVERGE, START, HOSTMOD
    BULGE: np.ndarray | None = None  # (ny, nx) bulge morphology B, peak 1 (bulge-disk host), else None
    F_BULGE: np.ndarray | None = None  # (nb,) the bulge's SED (its F_b^bulge B is in HOST_CUBE)
    F_NUCLEUS: np.ndarray | None = None  # (nb,) the nucleus's total flux per band (in HOST_CUBE, before the PSF)
    grid: FitGrid | None = None  # how the input grid was mapped onto the fit grid (None: as given)
    AV_ERR: np.ndarray | None = None  # (ny, nx) per-pixel σ of A_V (amortised method), else None


@dataclass
class Prepared:
    """One observation ready to fit: the data on the fit grid and what maps it back."""

    Y: np.ndarray  # (nb, sy, sx) on the fit grid
    ivar: np.ndarray
    mask: np.ndarray  # (sy, sx) bool, zero-weighted
    grid: FitGrid
    Y_in: np.ndarray  # (nb, ny, nx) on the input grid
    ivar_in: np.ndarray
    mask_in: np.ndarray  # (ny, nx) bool


def prepare(obs: Observation, *, mask: np.ndarray | None = None, detect: bool = True,
            nsig: float = 4.0) -> Prepared:
    """One observation on the fit grid, with masked pixels at zero weight.

    ``mask``: user mask, (ny, nx) or (nb, ny, nx), nonzero = bad. ``detect``: also zero-weight
    neighbouring sources (:func:`galdust.sources.detect_neighbours`, on the input grid). Inputs
    larger than the priors' grid are cropped and/or block-summed (:func:`galdust.dust.grid.plan_grid`).
    """
    nb, ny, nx = obs.shape
    ivar = np.array(obs.ivar, np.float32)
    Y = np.where(ivar > 0, obs.cube, 0.0).astype(np.float32)
    m2 = np.zeros((ny, nx), bool)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape == (ny, nx):
            m2 |= mask != 0
            ivar[:, mask != 0] = 0.0
        elif mask.shape == (nb, ny, nx):
            ivar[mask != 0] = 0.0
            m2 |= np.all(mask != 0, axis=0)
        else:
            raise InputError(f"{obs.source}: mask of shape {mask.shape} does not match the image {obs.shape}")
    if detect:
        nb_mask = detect_neighbours(Y, ivar, nsig=nsig, red=int(np.argmax(obs.wave_eff)) if nb > 1 else None)
        ivar[:, nb_mask] = 0.0
        m2 |= nb_mask
    m2 |= np.all(ivar <= 0, axis=0)
    if not np.any(ivar > 0):
        raise InputError(f"{obs.source}: no pixel with information left after masking")
    grid = plan_grid(Y, ivar)
    Yf, ivf = grid.data_to_fit(Y, ivar)
    mf = grid.mask_to_fit(m2) | np.all(ivf <= 0, axis=0)
    return Prepared(Yf, ivf, mf, grid, Y, ivar, m2)


def redshift_of(obs: Observation) -> float:
    """The redshift the fit puts the dust at: the observation's, or 0 (observed frame) without one."""
    return 0.0 if obs.redshift is None else float(obs.redshift)


def frame_scalars(obs: Observation) -> dict:
    """``AVFRAME`` ('rest' with the galaxy's ``REDSHIFT``, else 'observed': A_V at observed 0.551 µm),
    the outputs' record of where the dust's wavelengths are."""
    if obs.redshift is None:
        return dict(AVFRAME="observed")
    return dict(AVFRAME="rest", REDSHIFT=float(obs.redshift))


@eqx.filter_jit
def _fit_batch(att, start, cfg, with_psf, Y, ivar, psf, host_score, dust_score, A0, d0, z):
    def one(y, iv, k, a0, dd0, zz):
        model = DustModel(att, k if with_psf else None, zz)
        out = fit_galaxy(model, y, iv, start=start, cfg=cfg, host_score=host_score, dust_score=dust_score,
                         init=(a0, dd0) if start == "amortized" else None)
        p, pn = out["params"], out["params_nd"]
        return dict(out, model=model(p), model_nd=model(pn, dust=False), av=model.av_map(p),
                    K=model.K(p.delta), host=host_morphology(p), host_cube=model.host(p))

    return jax.vmap(one)(Y, ivar, psf, A0, d0, z)


@dataclass
class DustFitter:
    """Fits observations; ``host_score``/``dust_score`` are the prior callables (None: no prior)."""

    cfg: FitConfig = FitConfig()
    start: str = "auto"
    host_score: object | None = None
    dust_score: object | None = None
    use_psf: bool = True
    batch_size: int = 8
    detect: bool = True
    init_net: object | None = None  # AmortizedFitter for start 'amortized'

    @classmethod
    def with_priors(cls, **kw) -> "DustFitter":
        from ..priors.dust import dust_prior
        from ..priors.host import host_prior

        return cls(host_score=host_prior(), dust_score=dust_prior(), **kw)

    def fit(self, observations: Sequence[Observation], masks: Sequence[np.ndarray | None] | None = None,
            progress=None) -> list[DustResult | Exception]:
        """One result per observation, in order; a failing observation gives its exception."""
        masks = list(masks) if masks is not None else [None] * len(observations)
        results: list = [None] * len(observations)
        groups: dict = defaultdict(list)
        prepared = {}
        for i, obs in enumerate(observations):
            try:
                prep = prepare(obs, mask=masks[i], detect=self.detect)
                psf = prep.grid.psf_to_fit(obs.psf) if (self.use_psf and obs.psf is not None) else None
                net_ok = self.init_net is not None and self.init_net.supports(obs.bands)
                start = choose_start(obs.wave_eff, self.start, network=net_ok)
                note = ""
                if start == "amortized":
                    if self.init_net is None:
                        raise ValueError("start 'amortized' needs the amortised network (make_fitter loads it)")
                    self.init_net.check_bands(obs.bands, obs.source, advice="use --start auto, red or blue")
                    note = self.init_net.domain_note(prep, obs.bands, obs.redshift)
                    if note:  # the network's map would be a guess: the red start instead, and say so
                        start, note = "red", "red start instead of the network's: " + note
                key = (prep.Y.shape, tuple(obs.bands), tuple(obs.wave_eff), None if psf is None else psf.shape, start)
                lpsf = self.init_net.psf_input(obs, prep) if start == "amortized" else None
                prepared[i] = (prep, psf, start, lpsf, note)
                groups[key].append(i)
            except Exception as e:  # noqa: BLE001 - reported per input
                results[i] = e
        done = 0
        for key, idx in groups.items():
            shape, bands, waves, psf_shape, start = key
            model = make_model(bands, wave_eff=waves)
            for j in range(0, len(idx), self.batch_size):
                chunk = idx[j : j + self.batch_size]
                pad = chunk + [chunk[-1]] * (self.batch_size - len(chunk))
                Y = np.stack([prepared[i][0].Y for i in pad])
                iv = np.stack([prepared[i][0].ivar for i in pad])
                if psf_shape is None:
                    psf = np.zeros((len(pad), 1, 1, 1), np.float32)
                else:
                    psf = np.stack([prepared[i][1] for i in pad]).astype(np.float32)
                try:
                    A0 = np.zeros((len(pad),) + Y.shape[-2:], np.float32)
                    d0 = np.zeros(len(pad), np.float32)
                    if start == "amortized":
                        from .amortized import to_rest_frame

                        preds = self.init_net.predict_prepared([(prepared[i][0], bands, prepared[i][3],
                                                                 observations[i].redshift) for i in pad])
                        preds = [to_rest_frame(p, observations[i].redshift) for p, i in zip(preds, pad)]
                        A0 = np.stack([p["aref"] for p in preds]).astype(np.float32)
                        d0 = np.array([p["delta"] for p in preds], np.float32)
                    out = _fit_batch(model.att, start, self.cfg, psf_shape is not None,
                                     jnp.asarray(Y), jnp.asarray(iv), jnp.asarray(psf),
                                     self.host_score if self.cfg.use_priors else None,
                                     self.dust_score if self.cfg.use_priors else None, jnp.asarray(A0), jnp.asarray(d0),
                                     jnp.asarray([redshift_of(observations[i]) for i in pad], jnp.float32))
                    out = jax.tree.map(np.asarray, out)
                except Exception as e:  # noqa: BLE001
                    for i in chunk:
                        results[i] = e
                    continue
                for k, i in enumerate(chunk):
                    results[i] = _result(jax.tree.map(lambda a, k=k: a[k], out), prepared[i][0], start,
                                         _prior_names(self.host_score, self.dust_score, self.cfg.use_priors))
                    results[i].scalars.update(frame_scalars(observations[i]))
                    if prepared[i][4]:
                        results[i].scalars["NOTE"] = prepared[i][4]
                done += len(chunk)
                if progress is not None:
                    progress(done)
        return results


def _resid(Y, ivar, M):
    r = (Y - M) * np.sqrt(ivar)
    return np.where(ivar > 0, r, np.nan).astype(np.float32)


def _on_input(prep: Prepared, model, model_nd, **fields) -> DustResult:
    """A :class:`DustResult` with the fit-grid model cubes (with and without dust) mapped to the input
    grid, their residuals and the mask there; ``fields``: the other products, on the input grid."""
    g = prep.grid
    model, model_nd = (g.map_to_input(np.asarray(m, np.float32), outside=0.0, per_pixel_flux=True)
                       for m in (model, model_nd))
    mask_in = prep.mask_in | g.mask_to_input(prep.mask)
    ivar_in = np.where(mask_in[None], 0.0, prep.ivar_in)
    return DustResult(MODEL=model, MODEL_ND=model_nd, RESID=_resid(prep.Y_in, ivar_in, model),
                      RESID_ND=_resid(prep.Y_in, ivar_in, model_nd), MASK=mask_in.astype(np.uint8), grid=g, **fields)


def _prior_names(host_score, dust_score, use_priors: bool) -> str:
    """Which learned priors a fit used, for the output header (``PRIORS``)."""
    if not use_priors or (host_score is None and dust_score is None):
        return "none"
    names = {"HostPrior": "hsc", "HostPriorFallback": "host-sim", "DustPrior": "dust"}
    return "+".join(names.get(type(x).__name__, type(x).__name__) for x in (host_score, dust_score) if x is not None)


def _result(out: dict, prep: Prepared, start: str, priors: str = "none") -> DustResult:
    """The products on the input grid (mapped back from the fit grid when it differs)."""
    g = prep.grid
    p, pn = out["params"], out["params_nd"]
    S = np.asarray(out["host"], np.float32)  # the whole host's morphology (S for a single-SED host)
    F = np.exp(np.asarray(p.log_F, np.float64))
    av = np.asarray(out["av"], np.float32)
    w = np.clip(S, 0, None)
    av_lw = float(np.sum(w * av) / max(np.sum(w), 1e-30))
    cov = float(np.sum(w * (av > AV_COVER)) / max(np.sum(w), 1e-30))
    hostmod = ("bulge-disk" if p.B is not None else "") + ("-nucleus" if p.N is not None else "") + (
        "-clumps" if p.C is not None else "")
    hostmod = hostmod.lstrip("-") or "single"
    scalars = dict(DELTA=float(p.delta), AV_LW=av_lw, COVFRAC=cov, CHI2=float(out["chi2"]),
                   CHI2ND=float(out["chi2_nd"]), NITER=int(out["n_iter"]), NITERD=int(out["n_iter_dust"]),
                   CONVERGE=bool(out["converged"]),
                   START=start, PRIORS=priors, HOSTMOD=hostmod)
    scale = float(g.k * g.k)  # F is per fit pixel: per input pixel it is F / k²
    host_cube = g.map_to_input(np.asarray(out["host_cube"], np.float32), outside=0.0, per_pixel_flux=True)
    bulge, f_bulge = None, None
    if p.B is not None:
        bulge = g.map_to_input(np.asarray(p.B, np.float32), outside=0.0)
        f_bulge = np.exp(np.asarray(p.log_Fb, np.float64)) / scale
        Fb = np.exp(np.asarray(p.log_Fb, np.float64)) * float(np.sum(p.B))
        Fd = F * float(np.sum(p.S))
        scalars["BT"] = float(Fb[-1] / max(Fb[-1] + Fd[-1], 1e-30))  # bulge share of the reddest band's host flux
        b = np.asarray(p.bulge_shape, float)
        e = min(float(np.hypot(b[4], b[5])), 0.999)
        scalars.update(BRE=float(np.exp(b[2]) * g.k), BN=float(b[3]), BQ=float(np.sqrt((1 - e) / (1 + e))))
    f_nuc = None
    if p.N is not None:
        f_nuc = np.exp(np.asarray(p.log_Fn, np.float64)) * float(np.sum(p.N))  # total flux per band
        red_tot = float(np.sum(np.asarray(out["host_cube"], np.float64)[-1]))
        scalars["NUCF"] = float(f_nuc[-1] / max(red_tot, 1e-30))  # nucleus share of the reddest band's host flux
        x0, y0 = (float(v) for v in np.asarray(p.nucleus_pos, float))
        cy, cx = (np.asarray(p.S.shape) - 1) / 2.0
        # its centre in input pixels (0-based): fit pixel f is input pixel origin + (k − 1)/2 + k f
        scalars.update(NUCX=float(g.x0 + (g.k - 1) / 2.0 + g.k * (cx + x0)),
                       NUCY=float(g.y0 + (g.k - 1) / 2.0 + g.k * (cy + y0)))
    if p.C is not None:
        f_cl = np.exp(np.asarray(p.log_Fc, np.float64)) * float(np.sum(p.C))  # clumps' total flux per band
        red_tot = float(np.sum(np.asarray(out["host_cube"], np.float64)[-1]))
        scalars["CLUMPF"] = float(f_cl[-1] / max(red_tot, 1e-30))  # clumps' share of the reddest band's host flux
    return _on_input(
        prep, out["model"], out["model_nd"], AV=g.map_to_input(av), D=g.map_to_input(np.asarray(p.D, np.float32)),
        HOST=g.map_to_input(S, outside=0.0), HOST_CUBE=host_cube.astype(np.float32), F=F / scale,
        F_ND=np.exp(np.asarray(pn.log_F, np.float64)) / scale, scalars=scalars, BULGE=bulge, F_BULGE=f_bulge,
        F_NUCLEUS=f_nuc)
