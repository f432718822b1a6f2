"""Filter registry: transmission curves from the files shipped in speclite and astro-sedpy.

Names are lowercase ``survey_band`` (``sdss_r``, ``hsc_i``, ``wise_w1``...). Curves are read from
the data folders of the installed ``speclite`` and ``sedpy`` packages (located with
``importlib.util.find_spec``, nothing is downloaded and neither package is imported).

Conventions
-----------
All curves are treated as photon-counting responses ``R(λ)`` (the convention of both packages for
optical/NIR filters). Wavelengths are in micron.

* pivot wavelength ``λ_p = sqrt(∫R λ dλ / ∫R/λ dλ)`` (Tokunaga & Vacca 2005), source-independent;
* effective wavelength ``λ_eff = ∫λ · R f_λ λ dλ / ∫R f_λ λ dλ`` for a source flat in f_ν
  (``f_λ ∝ λ⁻²``), i.e. ``λ_eff = ∫R dλ / ∫R/λ dλ``.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Filter", "get_filter", "filter_names", "UnknownBandError", "N_GRID"]

#: number of points each curve is resampled to (uniform in λ over its support), so that all
#: filters stack into one (n_band, N_GRID) array for vectorised, differentiable integrals.
N_GRID = 256


class UnknownBandError(KeyError):
    """A band name that is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


# name -> (package, file name inside the package's filter folder)
_SPEC: dict[str, tuple[str, str]] = {}
for _b in "ugriz":
    _SPEC[f"sdss_{_b}"] = ("speclite", f"sdss2010-{_b}.ecsv")
for _b in "grizy":
    _SPEC[f"hsc_{_b}"] = ("speclite", f"hsc2017-{_b}.ecsv")
for _b in "ugrizy":
    _SPEC[f"lsst_{_b}"] = ("speclite", f"lsst2023-{_b}.ecsv")
for _b in "grizY":
    _SPEC[f"decam_{_b.lower()}"] = ("speclite", f"decam2014-{_b}.ecsv")
for _b, _f in {"vis": "VIS", "y": "Y", "j": "J", "h": "H"}.items():
    _SPEC[f"euclid_{_b}"] = ("speclite", f"Euclid-{_f}.ecsv")
for _b, _f in {"j": "J", "h": "H", "ks": "Ks"}.items():
    _SPEC[f"2mass_{_b}"] = ("speclite", f"twomass-{_f}.ecsv")
for _b in ("fuv", "nuv"):
    _SPEC[f"galex_{_b}"] = ("speclite", f"galex-{_b}.ecsv")
for _i in range(1, 5):
    _SPEC[f"wise_w{_i}"] = ("sedpy", f"wise_w{_i}.par")
    _SPEC[f"irac_{_i}"] = ("sedpy", f"spitzer_irac_ch{_i}.par")
for _w in (24, 70, 160):
    _SPEC[f"mips_{_w}"] = ("sedpy", f"spitzer_mips_{_w}.par")
for _w in (70, 100, 160):
    _SPEC[f"pacs_{_w}"] = ("sedpy", f"herschel_pacs_{_w}.par")
for _w in (250, 350, 500):
    _SPEC[f"spire_{_w}"] = ("sedpy", f"herschel_spire_{_w}.par")
for _b in "grizy":  # Pan-STARRS and BASS/MzLS are common enough to be worth having
    _SPEC[f"panstarrs_{_b}"] = ("speclite", f"panstarrs-{_b}.ecsv")


def filter_names() -> list[str]:
    """All band names the registry knows, sorted."""
    return sorted(_SPEC)


@dataclass(frozen=True)
class Filter:
    """One filter curve.

    Attributes
    ----------
    name : registry name (``survey_band``)
    wave : wavelength grid in micron, shape (N_GRID,), uniform
    response : photon-counting response on ``wave`` (peak 1), shape (N_GRID,)
    """

    name: str
    wave: np.ndarray
    response: np.ndarray

    @property
    def pivot(self) -> float:
        """Pivot wavelength in micron."""
        w, r = self.wave, self.response
        return float(np.sqrt(np.trapezoid(r * w, w) / np.trapezoid(r / w, w)))

    @property
    def effective(self) -> float:
        """Effective wavelength in micron for a source flat in f_ν (see module docstring)."""
        w, r = self.wave, self.response
        return float(np.trapezoid(r, w) / np.trapezoid(r / w, w))

    def weights(self, f_lambda: np.ndarray | None = None) -> np.ndarray:
        """Normalised quadrature weights ``w_i ∝ R f_λ λ Δλ`` (sum 1) for averaging over the band.

        ``f_lambda`` is the source spectrum on ``self.wave``; default flat in f_ν (λ⁻²).
        """
        f = self.wave**-2.0 if f_lambda is None else np.asarray(f_lambda, float)
        dw = np.gradient(self.wave)
        w = self.response * f * self.wave * dw
        return w / w.sum()


def _data_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package {package!r} is needed for filter curves but is not installed")
    base = Path(list(spec.submodule_search_locations)[0])
    return base / "data" / "filters"


def _read_curve(package: str, fname: str) -> tuple[np.ndarray, np.ndarray]:
    path = _data_dir(package) / fname
    rows = []
    to_um = 1e-4  # Angstrom, the default of both packages
    with open(path) as fh:
        for line in fh:
            s = line.strip()
            if s.startswith("#") and "name: wavelength" in s and "unit:" in s:
                unit = s.split("unit:")[1].split(",")[0].strip().strip("}").strip()
                to_um = {"Angstrom": 1e-4, "nm": 1e-3, "um": 1.0, "micron": 1.0}[unit]
            if not s or s.startswith("#"):
                continue
            parts = s.split()
            try:
                rows.append((float(parts[0]), float(parts[1])))
            except (ValueError, IndexError):
                continue  # header line ("wavelength response")
    arr = np.array(rows)
    wave_um = arr[:, 0] * to_um
    resp = np.clip(arr[:, 1], 0.0, None)
    order = np.argsort(wave_um)
    return wave_um[order], resp[order]


@functools.cache
def get_filter(name: str) -> Filter:
    """The filter called ``name`` (case-insensitive; ``-`` and ``_`` are equivalent).

    Raises :class:`UnknownBandError` listing close matches for an unknown name.
    """
    key = name.strip().lower().replace("-", "_")
    if key not in _SPEC:
        close = difflib.get_close_matches(key, list(_SPEC), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(filter_names())}"
        raise UnknownBandError(f"unknown band {name!r}{hint}")
    wave, resp = _read_curve(*_SPEC[key])
    nz = np.nonzero(resp > 1e-3 * resp.max())[0]
    lo, hi = wave[max(nz[0] - 1, 0)], wave[min(nz[-1] + 1, len(wave) - 1)]
    grid = np.linspace(lo, hi, N_GRID)
    r = np.interp(grid, wave, resp, left=0.0, right=0.0)
    r = r / r.max()
    grid.setflags(write=False)
    r.setflags(write=False)
    return Filter(key, grid, r)


def is_known(name: str) -> bool:
    """Whether ``name`` is a registry band."""
    return name.strip().lower().replace("-", "_") in _SPEC
