"""Catalogue readers for the posterior models: our simulator's tables and the SDSS format as it is.

* galdust simulator tables (Parquet/CSV from ``galdust simulate-sed``): ``flux_<band>`` [nmgy]
  (and ``flux_err_<band>``), truths in the ``TRUTHS`` columns when present;
* SDSS (``../shared/data/sdss``): ``MODELFLUX`` and ``MODELFLUX_IVAR`` (n, 5) ugriz [nmgy] and
  ``EXTINCTION`` [mag]; fluxes are corrected for Galactic extinction (the simulator has none);
  ``Z`` is kept as the spectroscopic redshift.

Rows with a missing (NaN) or unusable flux get a ``note`` and no prediction; negative or zero fluxes
are valid measurements (asinh magnitudes handle them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import InputError, float_column

__all__ = ["Catalog", "read_catalog", "read_simulations", "sims_provenance", "StackedImages", "SDSS_BANDS"]

SDSS_BANDS = ("sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z")


@dataclass
class Catalog:
    names: list[str]
    flux: np.ndarray  # (n, n_band) nmgy, Galactic-extinction corrected
    flux_err: np.ndarray
    bands: tuple[str, ...]
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # per row, "" when fine
    source: str = ""
    ids: dict[str, np.ndarray] = field(default_factory=dict)  # the input's position / id columns (PASSTHROUGH)


#: input columns copied into the posterior's output beside ``name`` (to join it back to the input)
PASSTHROUGH = ("OBJID", "objid", "SPECOBJID", "specobjid", "id", "ID", "RA", "DEC", "ra", "dec")


def read_catalog(path: str | Path, bands=SDSS_BANDS) -> Catalog:
    from astropy.table import Table

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        fmt = "ascii.csv" if path.suffix.lower() == ".csv" else None
        t = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: cannot read the table ({' '.join(str(e).split())[:200]})") from None
    n = len(t)
    if n == 0:
        raise InputError(f"{path}: no rows")
    truth = {}
    if "MODELFLUX" in t.colnames:
        f = float_column(t, "MODELFLUX")
        if f.ndim != 2 or f.shape[1] != 5:
            raise InputError(f"{path}: MODELFLUX must be (n, 5) ugriz, got {f.shape}")
        if tuple(bands) != SDSS_BANDS:
            raise InputError(f"{path}: an SDSS table has ugriz; the model wants {', '.join(bands)}")
        ext = float_column(t, "EXTINCTION") if "EXTINCTION" in t.colnames else np.zeros_like(f)
        corr = 10 ** (0.4 * ext)
        ivar = float_column(t, "MODELFLUX_IVAR") if "MODELFLUX_IVAR" in t.colnames else np.zeros_like(f)
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.where(ivar > 0, 1 / np.sqrt(ivar), np.nan)
        flux, flux_err = f * corr, err * corr
        names = [str(x) for x in (t["OBJID"] if "OBJID" in t.colnames else range(n))]
        if "Z" in t.colnames:
            truth["z"] = float_column(t, "Z")
    else:
        missing = [b for b in bands if f"flux_{b}" not in t.colnames]
        if missing:
            raise InputError(f"{path}: no columns {', '.join('flux_' + b for b in missing)} (galdust table) and "
                             f"no MODELFLUX (SDSS table)")
        flux = np.stack([float_column(t, f"flux_{b}") for b in bands], axis=1)
        flux_err = np.stack([float_column(t, f"flux_err_{b}") if f"flux_err_{b}" in t.colnames
                             else np.full(n, np.nan) for b in bands], axis=1)
        names = [str(x) for x in (t["name"] if "name" in t.colnames else range(n))]
        from ..simulate.sed import TRUTHS

        truth = {k: float_column(t, k) for k in TRUTHS if k in t.colnames}
    notes = []
    for i in range(n):
        bad = [b for b, v in zip(bands, flux[i]) if not np.isfinite(v)]
        notes.append(f"missing flux in {', '.join(bad)}" if bad else "")
    ids = {c: np.asarray(t[c]) for c in PASSTHROUGH if c in t.colnames and np.ndim(t[c]) == 1 and c != "name"}
    return Catalog(names, flux, flux_err, tuple(bands), truth, notes, str(path), ids)


class StackedImages:
    """Several (n_k, C, H, W) image stacks (memory maps are fine) read as one: ``len``, ``shape`` and
    row indexing by an int, a slice or an index array, reading only the rows asked for."""

    def __init__(self, arrays):
        self.arrays = list(arrays)
        self.offsets = np.cumsum([0] + [len(a) for a in self.arrays])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple:
        return (len(self),) + tuple(self.arrays[0].shape[1:])

    def __getitem__(self, i):
        idx = np.arange(len(self))[i] if isinstance(i, slice) else np.asarray(i)
        scalar = idx.ndim == 0
        idx = np.atleast_1d(idx)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} images")
        idx = np.where(idx < 0, idx + len(self), idx)
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        out = np.empty((len(idx),) + tuple(self.arrays[0].shape[1:]), self.arrays[0].dtype)
        for k in np.unique(which):
            sel = which == k
            out[sel] = self.arrays[k][idx[sel] - self.offsets[k]]
        return out[0] if scalar else out


def sims_provenance(paths) -> list[dict | None]:
    """Per simulated table, how ``galdust simulate-sed`` made it (n, seed, bands, images, r_limit,
    rows kept, version, commit: the Parquet metadata it writes), or None (a CSV, an older table)."""
    import json

    out = []
    for p in paths:
        meta = None
        if Path(p).suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            raw = (pq.read_schema(p).metadata or {}).get(b"galdust")
            meta = json.loads(raw) if raw else None
        out.append(meta)
    return out


def read_simulations(paths, images: bool = False, bands=SDSS_BANDS):
    """One or more simulator tables (``galdust simulate-sed``) as one :class:`Catalog`, plus their
    cutouts (``TABLE.images.npy``, memory-mapped; a :class:`StackedImages` for several tables) when
    ``images``; else ``None``. Truth columns present in every table are kept."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("no simulated table given")
    cats = [read_catalog(p, bands) for p in paths]
    keys = set.intersection(*(set(c.truth) for c in cats))
    cat = Catalog(sum((c.names for c in cats), []), np.concatenate([c.flux for c in cats]),
                  np.concatenate([c.flux_err for c in cats]), cats[0].bands,
                  {k: np.concatenate([c.truth[k] for c in cats]) for k in sorted(keys)},
                  sum((c.notes for c in cats), []), ";".join(str(p) for p in paths))
    if not images:
        return cat, None
    stacks = []
    for p, c in zip(paths, cats):
        ip = p.with_suffix(".images.npy")
        if not ip.exists():
            raise InputError(f"{ip}: no images next to {p} (simulate-sed --images writes them)")
        a = np.load(ip, mmap_mode="r")
        if len(a) != len(c.flux):
            raise InputError(f"{ip}: {len(a)} images for {len(c.flux)} table rows")
        if stacks and a.shape[1:] != stacks[0].shape[1:]:
            raise InputError(f"{ip}: images of shape {a.shape[1:]}, the first table's are {stacks[0].shape[1:]}")
        stacks.append(a)
    return cat, (stacks[0] if len(stacks) == 1 else StackedImages(stacks))
