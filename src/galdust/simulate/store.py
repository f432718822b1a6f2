"""Writing simulations to disk: one cube FITS per galaxy plus a truth table, or one bulk array store.

This is the I/O edge of the simulator (the simulator itself only returns arrays).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import OutputExistsError, atomic_path, provenance_cards, write_cube
from ..physics.filters import get_filter
from .dusty_images import SimConfig, params_table

__all__ = ["write_galaxies", "write_bulk", "truth_table"]


def truth_table(sim: dict, cfg: SimConfig, names: list[str]) -> dict[str, np.ndarray]:
    """Per-galaxy truth scalars as columns (name, A_V LW, covering fraction, F and σ per band, params)."""
    cols: dict[str, np.ndarray] = {"name": np.array(names)}
    cols["av_lw"] = np.asarray(sim["av_lw"], float)
    cols["covfrac"] = np.asarray(sim["covfrac"], float)
    for j, b in enumerate(cfg.bands):
        cols[f"F_{b}"] = np.asarray(sim["F"][:, j], float)
    for j, b in enumerate(cfg.bands):
        cols[f"sigma_{b}"] = np.asarray(sim["sigma"][:, j], float)
    for k, v in params_table(sim["params"]).items():
        cols[k] = np.asarray(v, float)
    return cols


def _write_table(cols: dict[str, np.ndarray], out: Path, overwrite: bool) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pa.table(cols)
    with atomic_path(out / "truth.parquet", overwrite) as tmp:
        pq.write_table(table, tmp)
    with atomic_path(out / "truth.csv", overwrite) as tmp:
        pacsv.write_csv(table, tmp)


def write_galaxies(sim: dict, cfg: SimConfig, out: str | Path, *, overwrite: bool = False, prefix: str = "gal",
                   psf: np.ndarray | None = None) -> list[Path]:
    """One cube FITS per galaxy (input format (a) of :mod:`galdust.io`) with truth HDUs, and truth tables.

    HDUs: primary = observed cube (header BANDS, WAVEEFF, truth scalars ``T_*``), ``IVAR``, ``PSF``
    (the one given to :func:`simulate`, or the config's Gaussian), ``TRUE_HOST`` (intrinsic host cube), ``TRUE_S``, ``TRUE_D``,
    ``TRUE_AV``.
    """
    out = Path(out)
    n = len(sim["cube"])
    names = [f"{prefix}_{i:06d}" for i in range(n)]
    paths = [out / f"{nm}.fits" for nm in names]
    if not overwrite:
        for p in paths + [out / "truth.parquet", out / "truth.csv"]:
            if p.exists():
                raise OutputExistsError(f"{p}: exists (use --overwrite to replace it)")
    waves = [get_filter(b).effective for b in cfg.bands]
    psf = _psf_cube(cfg) if psf is None else np.asarray(psf)
    prov = provenance_cards()
    for i, (nm, path) in enumerate(zip(names, paths)):
        sig = np.asarray(sim["sigma"][i], float)
        ivar = np.broadcast_to(
            np.where(sig > 0, 1.0 / np.maximum(sig, 1e-30) ** 2, 1e10)[:, None, None], sim["cube"][i].shape
        )
        p = sim["params"]
        hdr = {
            "OBJECT": nm,
            "T_AVLW": (float(sim["av_lw"][i]), "truth: host-light-weighted A_V [mag]"),
            "T_COVF": (float(sim["covfrac"][i]), "truth: covering fraction (A_V>0.02)"),
            "T_DELTA": (float(p.delta[i]), "truth: attenuation-curve slope delta"),
            "T_INC": (float(np.rad2deg(p.inc[i])), "truth: inclination [deg]"),
            "T_PA": (float(np.rad2deg(p.pa[i])), "truth: position angle [deg]"),
            "T_TAUD": (float(p.tau_disk[i]), "truth: face-on central dust-disk tau_ref"),
            "LAMREF": (cfg.lam_ref, "reference wavelength of D [micron]"),
            "ISOCHROM": (bool(cfg.isochromatic), "one SED for all stellar components"),
            "HOSTS": (cfg.hosts, "component SEDs: realistic (SPS) or stress (power laws)"),
            "T_DGI": (float(p.dgi[i]), "truth: bulge - disk colour, bands 1 - 3 [mag]"),
            "SNR": (-1.0 if cfg.snr is None else float(cfg.snr), "per-band S/N (see SNRKIND)"),
            "SNRKIND": (cfg.snr_kind, "matched-filter or brightest-pixel S/N"),
            "DUSTFRM": (cfg.dust_frame, "dust curve at observed or rest wavelengths"),
        }
        if cfg.dust_frame == "rest":  # the fit reads it and maps the dust in the same frame as the truth
            hdr["REDSHIFT"] = (float(p.z_sed[i]), "the host's redshift (dust in its rest frame)")
        for j, b in enumerate(cfg.bands):
            hdr[f"T_F{j + 1}"] = (float(sim["F"][i, j]), f"truth: host SED F of {b}")
        write_cube(
            path,
            sim["cube"][i],
            cfg.bands,
            ivar=ivar,
            psf=psf,
            wave_eff=waves,
            header=hdr,
            provenance=prov,
            extra={
                "TRUE_HOST": sim["host_cube"][i],
                "TRUE_S": sim["S"][i],
                "TRUE_D": sim["D"][i],
                "TRUE_AV": sim["AV"][i],
            },
            overwrite=overwrite,
        )
    _write_table(truth_table(sim, cfg, names), out, overwrite)
    return paths


def _psf_cube(cfg: SimConfig) -> np.ndarray | None:
    from .dusty_images import _psf_kernels

    k = _psf_kernels(cfg, len(cfg.bands))
    return None if k is None else np.asarray(k)


def write_bulk(sim: dict, cfg: SimConfig, path: str | Path, *, seed: int, overwrite: bool = False,
               with_cubes: bool = False) -> Path:
    """One ``.npz`` array store for prior training: S, D, AV (float32), F, σ, truth scalars, config.

    ``with_cubes`` also stores the observed and intrinsic host cubes (4× larger).
    """
    path = Path(path)
    arrays = {
        "S": np.asarray(sim["S"], np.float32),
        "D": np.asarray(sim["D"], np.float32),
        "AV": np.asarray(sim["AV"], np.float32),
        "F": np.asarray(sim["F"], np.float32),
        "sigma": np.asarray(sim["sigma"], np.float32),
        "av_lw": np.asarray(sim["av_lw"], np.float32),
        "covfrac": np.asarray(sim["covfrac"], np.float32),
        "bands": np.array(cfg.bands),
        "seed": np.array(seed),
        "config": np.array(repr(cfg)),
        "provenance": np.array(" | ".join(f"{k}={v}" for k, v, _ in provenance_cards())),
    }
    for k, v in params_table(sim["params"]).items():
        arrays[f"p_{k}"] = np.asarray(v, np.float32)
    if with_cubes:
        arrays["cube"] = np.asarray(sim["cube"], np.float32)
        arrays["host_cube"] = np.asarray(sim["host_cube"], np.float32)
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return path


