"""The models galdust ships, in one registry: names, files, sidecars and headline metrics.

``SHIPPED[name]`` says where a shipped model lives (inside ``galdust/data``, or galaxygrad's wheel for
the HSC host prior) and what its sidecar holds; :func:`shipped_path` is the one place code finds a
shipped file by name; :func:`describe` reads a sidecar's headline metrics for ``galdust models``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATA_DIR", "ShippedModel", "SHIPPED", "shipped_path", "galaxygrad_file", "describe"]

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class ShippedModel:
    """``path``: relative to ``DATA_DIR`` ('' for galaxygrad's file); ``sidecar``: relative too;
    ``metrics``: (label, dotted key in the sidecar) of the headline numbers."""

    kind: str
    path: str
    sidecar: str
    what: str
    metrics: tuple[tuple[str, str], ...] = ()


#: a posterior's headline numbers: its best validation loss, and on held-out simulations (recorded by
#: bench/record_diagnostics.py) TARP's largest coverage deviation and the mean 16-84 % coverage
_POSTERIOR_METRICS = (("best val loss", "best_val_loss"), ("TARP dev", "diagnostics.tarp_max_dev"),
                      ("68% coverage", "diagnostics.coverage_68_mean"))

SHIPPED: dict[str, ShippedModel] = {
    "hsc-host-prior": ShippedModel("score prior", "", "", "p(S): galaxygrad's HSC 64x64 score network (its wheel)"),
    "dust-prior": ShippedModel("score prior", "weights/dust_prior.eqx", "weights/dust_prior.json",
                               "p(D | S): conditional U-Net, denoising score matching on simulations",
                               (("mean val loss", "metrics.val_loss.mean"),)),
    "amortized-dust": ShippedModel("equinox", "weights/amortized_dust.eqx", "weights/amortized_dust.json",
                                   "dust maps in one pass: U-Net, per-pixel A_V mean and sigma (SDSS griz, griz+J, ugriz, ugriz+JH; HSC grizy, LSST ugrizy, each also + Euclid YJH)",
                                   (("val NLL", "metrics.val_nll"),)),
    "amortized-dust-z": ShippedModel("equinox", "weights/amortized_dust_z.eqx", "weights/amortized_dust_z.json",
                                     "dust maps in one pass at a known redshift: amortized-dust with a redshift input, "
                                     "rest-frame dust at z 0.02-1 (galaxies with a redshift get it)",
                                     (("val NLL", "metrics.val_nll"),)),
    "host-prior-sim": ShippedModel("score prior", "weights/host_prior_sim.eqx", "weights/host_prior_sim.json",
                                   "p(S) trained on simulated hosts (only by name: fallback_host_prior)",
                                   (("mean val loss", "metrics.val_loss.mean"),)),
    "fir": ShippedModel("xgboost", "fir", "fir/fir_model.json",
                        "FIR global model: forests + calibrated sigma (log sL_d, log sM_d, T_d)",
                        (("CV RMSE sL_d", "cv.log_sLd.rmse"), ("sM_d", "cv.log_sMd.rmse"), ("T_d", "cv.Td.rmse"),
                         ("chi2 sL_d", "cv.log_sLd.chi2"))),
    "fir-fast": ShippedModel("equinox", "fir/fast.eqx", "fir/fast.json", "FIR per-pixel MLP distilled from the trees",
                             (("rms vs trees sL_d", "fidelity.log_sLd.rms_dmu"), ("T_d", "fidelity.Td.rms_dmu"))),
    "cfm-phot": ShippedModel("equinox", "posterior/cfm_phot_sdss.eqx", "posterior/cfm_phot_sdss.json",
                             "posterior: photometric conditional flow matching (100-step RK4)",
                             _POSTERIOR_METRICS),
    "cfm-onestep": ShippedModel("equinox", "posterior/cfm_phot_sdss_onestep.eqx",
                                "posterior/cfm_phot_sdss_onestep.json", "posterior: one-step sampler distilled from cfm-phot",
                                _POSTERIOR_METRICS),
    "cfm-phot-z": ShippedModel("equinox", "posterior/cfm_phot_sdss_z.eqx", "posterior/cfm_phot_sdss_z.json",
                               "posterior at a known redshift: photometric CFM conditioned on z",
                               _POSTERIOR_METRICS),
    "cfm-onestep-z": ShippedModel("equinox", "posterior/cfm_phot_sdss_z_onestep.eqx",
                                  "posterior/cfm_phot_sdss_z_onestep.json",
                                  "posterior at a known redshift: one-step sampler distilled from cfm-phot-z",
                                  _POSTERIOR_METRICS),
    "cfm-image": ShippedModel("equinox", "posterior/cfm_image.eqx", "posterior/cfm_image.json",
                              "posterior: image + photometry CFM (gri cutouts)", _POSTERIOR_METRICS),
    "vae-nf": ShippedModel("equinox", "posterior/vaenf.eqx", "posterior/vaenf.json",
                           "posterior: VAE + conditional normalizing flows (properties and lines)",
                           (("VAE val MSE", "vae_val_mse"),) + _POSTERIOR_METRICS[1:]),
    "population-sdss": ShippedModel("xgboost", "population/sdss", "population/sdss/population.json",
                                    "simulator prior calibrated to real SDSS photometry (simulate-sed --prior sdss)",
                                    (("C2ST AUC held-out real", "c2st_heldout"),
                                     ("broad prior", "c2st_heldout_broad"))),
    "population-sdss-images": ShippedModel("xgboost", "population/sdss_images", "population/sdss_images/population.json",
                                           "image simulator's prior calibrated to real SDSS photometry "
                                           "(simulate-sed --images)",
                                           (("C2ST AUC held-out real", "c2st_heldout"),
                                            ("broad prior", "c2st_heldout_broad"))),
    "z-sdss": ShippedModel("xgboost", "posterior/z_sdss", "posterior/z_sdss/z_model.json",
                           "redshift: quantile trees on real SDSS spec-z, reads cfm-onestep",
                           (("CV sigma_NMAD", "cv.nmad"), ("outliers", "cv.outliers"), ("coverage", "cv.coverage"))),
}


def galaxygrad_file(name: str = "eqx_hsc_ScoreNet64.eqx") -> Path | None:
    """Path of a weights file inside the installed galaxygrad wheel, without importing it."""
    spec = importlib.util.find_spec("galaxygrad")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / name
    return p if p.exists() else None


def shipped_path(name: str) -> Path:
    """The file (or folder) of a shipped model by name (KeyError with the names for another)."""
    if name not in SHIPPED:
        raise KeyError(f"no shipped model {name!r} (one of: {', '.join(SHIPPED)})")
    if name == "hsc-host-prior":
        p = galaxygrad_file()
        if p is None:
            from .weights import WeightsError

            raise WeightsError("galaxygrad's weights file is not installed (pip install galaxygrad==0.2.1)")
        return p
    return DATA_DIR / SHIPPED[name].path


def _get(d: dict, dotted: str):
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def describe(name: str) -> dict:
    """Name, kind, what it is, total bytes of its files, and its headline metrics from the sidecar."""
    m = SHIPPED[name]
    try:
        p = shipped_path(name)
    except Exception as e:  # noqa: BLE001 - reported in the listing
        return dict(name=name, kind=m.kind, what=m.what, bytes=None, metrics={}, error=str(e))
    files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p]
    side = {}
    if m.sidecar:
        from .weights import read_sidecar

        side = read_sidecar(DATA_DIR / m.sidecar)
    metrics = {label: _get(side, key) for label, key in m.metrics}
    return dict(name=name, kind=m.kind, what=m.what, bytes=sum(f.stat().st_size for f in files), metrics=metrics,
                commit=side.get("commit"))
