"""Image data model and FITS I/O: one :class:`Observation` type, its readers and writers.

Input formats
-------------
(a) **cube FITS**: a 3-D image (band, y, x) in the primary HDU or in an HDU named ``SCI``; header
    ``BANDS`` = comma-separated registry band names; optional ``WAVEEFF`` = comma-separated effective
    wavelengths in micron (needed only for bands the registry does not know); optional HDUs ``IVAR``
    (or ``VAR``, ``ERR``) of the same shape and ``PSF`` (band, py, px).
(b) **one FITS file per band** (2-D images with the same shape; the WCS is taken from the first).
(c) the **.npz scenes** of the scarlet test data (``images``, optional ``variance``/``mask`` (HSC bit
    mask: BAD, SAT, CR and NO_DATA pixels get zero weight),
    ``psfs``, ``filters`` as single letters, taken as HSC bands unless ``survey`` is given).

Without noise information the per-band noise is estimated from the sigma-clipped background and a
warning is issued. NaN/inf pixels are masked (zero inverse variance, data set to 0) and counted in a
warning. Every user error raises :class:`InputError`, whose message is one line naming the file.

Writers are atomic (temporary file, then rename), never overwrite unless asked, keep the WCS and
record provenance (galdust version, command line, inputs) in the primary header.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning

from . import __version__
from .physics.filters import UnknownBandError, get_filter, is_known
from .resample import background_sigma

__all__ = [
    "float_column",
    "InputError",
    "OutputExistsError",
    "Observation",
    "read_observation",
    "read_cube",
    "read_band_files",
    "read_npz",
    "write_cube",
    "fits_card",
    "write_image_fits",
    "atomic_path",
    "cache_dir",
    "input_name",
    "provenance_cards",
    "open_fits",
    "celestial_wcs",
]


class InputError(ValueError):
    """A problem with a user's input file; the message is one line that names the file."""


class OutputExistsError(FileExistsError):
    """An output exists and ``overwrite`` was not given."""


@dataclass(frozen=True)
class Observation:
    """A multi-band image of one field.

    Attributes
    ----------
    cube : float32 array (n_band, ny, nx), in ``unit``
    ivar : float32 array (n_band, ny, nx); zero marks pixels without information
    bands : band names (registry names, or free names with ``wave_eff`` given)
    wave_eff : effective wavelength of each band in micron
    psf : float32 array (n_band, py, px), each normalised to unit sum, or None
    wcs : celestial astropy WCS of the pixel grid, or None
    unit : flux unit string (from ``BUNIT``), '' when unknown
    source : where it came from (file names), for messages and provenance
    redshift : the galaxy's redshift (header ``REDSHIFT``, or ``galdust fit --redshift``), or None; the
        dust fit then maps A_V in the galaxy's rest frame (without it: at observed wavelengths)
    """

    cube: np.ndarray
    ivar: np.ndarray
    bands: tuple[str, ...]
    wave_eff: tuple[float, ...]
    psf: np.ndarray | None = None
    wcs: WCS | None = None
    unit: str = ""
    source: str = ""
    notes: tuple[str, ...] = field(default=())
    redshift: float | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.cube.shape)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- validation


def _band_wavelengths(bands: Sequence[str], wave_hdr: Sequence[float | None] | None, src: str):
    waves = []
    out_bands = []
    for i, b in enumerate(bands):
        given = None if wave_hdr is None or i >= len(wave_hdr) else wave_hdr[i]
        if is_known(b):
            out_bands.append(b.strip().lower().replace("-", "_"))
            waves.append(float(given) if given is not None else get_filter(b).effective)
        elif given is not None:
            out_bands.append(b.strip())
            waves.append(float(given))
        else:
            try:
                get_filter(b)
            except UnknownBandError as e:
                raise InputError(f"{src}: {e} (or give its wavelength in header WAVEEFF)") from None
    return tuple(out_bands), tuple(waves)


def _validate(
    cube,
    ivar,
    psf,
    bands,
    wave_hdr,
    src: str,
    *,
    warn_masked: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[str, ...], tuple[float, ...], list[str]]:
    notes: list[str] = []
    cube = np.asarray(cube)
    if cube.ndim != 3:
        raise InputError(f"{src}: image must be 3-D (band, y, x), got {cube.ndim}-D shape {cube.shape}")
    if not np.issubdtype(cube.dtype, np.number):
        raise InputError(f"{src}: image data are not numeric ({cube.dtype})")
    nb = cube.shape[0]
    if bands is None or len(bands) == 0:
        raise InputError(f"{src}: no band names (header BANDS, comma-separated registry names)")
    if len(bands) != nb:
        raise InputError(f"{src}: {len(bands)} band names ({','.join(bands)}) for {nb} image planes")
    if wave_hdr is not None and len(wave_hdr) != nb:
        raise InputError(f"{src}: WAVEEFF has {len(wave_hdr)} values for {nb} bands")
    bands, waves = _band_wavelengths(bands, wave_hdr, src)
    cube = cube.astype(np.float32)
    bad = ~np.isfinite(cube)
    if ivar is not None:  # the readers checked that noise and PSF arrays are numeric
        ivar = np.asarray(ivar, dtype=np.float64)
        if ivar.shape != cube.shape:
            raise InputError(f"{src}: inverse variance shape {ivar.shape} does not match image {cube.shape}")
        if np.any(ivar[np.isfinite(ivar)] < 0):
            raise InputError(f"{src}: inverse variance has negative values")
        bad |= ~np.isfinite(ivar)
        ivar = np.where(np.isfinite(ivar), ivar, 0.0)
        for b in range(nb):
            if not np.any(ivar[b] > 0):
                raise InputError(f"{src}: inverse variance of band {bands[b]} is zero everywhere")
    for b in range(nb):
        if bad[b].all():
            raise InputError(f"{src}: band {bands[b]} is NaN/inf everywhere")
        if ivar is not None and not np.any(np.where(bad[b], 0.0, ivar[b]) > 0):
            raise InputError(f"{src}: band {bands[b]} has no pixel with both finite data and positive weight")
    n_bad = int(bad.sum())
    if n_bad:
        notes.append(f"{src}: {n_bad} NaN/inf pixel values masked (zero weight)")
        if warn_masked:  # False where the caller made the NaNs itself (masks, resampling)
            warnings.warn(notes[-1], stacklevel=3)
    cube = np.where(bad, 0.0, cube).astype(np.float32)
    if ivar is None:
        sig = np.array([background_sigma(cube[b], ~bad[b]) for b in range(nb)])
        if np.any(~(sig > 0)):
            raise InputError(f"{src}: cannot estimate the noise (constant image); give an IVAR HDU")
        ivar = np.broadcast_to((1.0 / sig**2)[:, None, None], cube.shape).copy()
        msg = f"{src}: no noise given; per-band noise estimated from the sigma-clipped background"
        warnings.warn(msg, stacklevel=3)
        notes.append(msg)
    ivar = np.where(bad, 0.0, ivar).astype(np.float32)
    if psf is not None:
        psf = np.asarray(psf, dtype=np.float64)
        if psf.ndim == 2:
            psf = np.broadcast_to(psf, (nb,) + psf.shape).copy()
        if psf.ndim != 3 or psf.shape[0] != nb:
            raise InputError(f"{src}: PSF must be (band, py, px) with {nb} bands, got shape {psf.shape}")
        if not np.all(np.isfinite(psf)):
            raise InputError(f"{src}: PSF has NaN/inf values")
        s = psf.sum(axis=(1, 2))
        if np.any(s <= 0):
            raise InputError(f"{src}: PSF of some band sums to zero or less")
        psf = (psf / s[:, None, None]).astype(np.float32)
    return cube, ivar, psf, bands, waves, notes


def _split_list(value) -> list[str] | None:
    if value is None:
        return None
    return [s.strip() for s in str(value).split(",") if s.strip()]


# ----------------------------------------------------------------------------- readers


@contextlib.contextmanager
def open_fits(path: str | os.PathLike) -> Iterator[fits.HDUList]:
    """galdust's one FITS opener: open a FITS file and read every data unit now, turning read failures
    (corrupt or truncated files) into :class:`InputError`; errors of the caller's block pass untouched."""
    src = str(path)
    if not os.path.exists(src):
        raise InputError(f"{src}: no such file")
    if os.path.isdir(src):
        raise InputError(f"{src}: a folder, not a FITS file (give its files, e.g. {os.path.join(src, '*.fits')})")
    try:
        with warnings.catch_warnings():
            # astropy's own complaints about a damaged header would print extra lines; the one-line
            # InputError below (or a clean read) says what matters
            warnings.simplefilter("ignore", AstropyUserWarning)
            warnings.filterwarnings("error", message="(?s).*(truncated|corrupted|Error validating header)")
            hdul = fits.open(src, memmap=False, lazy_load_hdus=False)
            try:
                for h in hdul:  # force reading every data unit now (catches truncation)
                    _ = h.data
            except BaseException:
                hdul.close()
                raise
    except (OSError, ValueError, TypeError, IndexError, fits.verify.VerifyError, Warning) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "SIMPLE card" in first:  # astropy's advice (ignore_missing_simple=True) is not for a command line
            raise InputError(f"{src}: not a FITS file (no valid FITS header at its start)") from None
        raise InputError(f"{src}: cannot read FITS (corrupt or truncated file: {first})") from None
    with hdul:
        yield hdul


def _first_image(hdul: fits.HDUList, src: str) -> np.ndarray:
    hdu = next((h for h in hdul if h.data is not None), None)
    if hdu is None:
        raise InputError(f"{src}: no image data")
    return np.asarray(hdu.data)


def celestial_wcs(header: fits.Header) -> WCS | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            w = WCS(header)
        if w.has_celestial:
            return w.celestial
    except Exception:  # a broken WCS is not fatal: outputs then have pixel coordinates only
        return None
    return None


NOISE_KINDS = ("ivar", "var", "sigma")


def _hdu_index(hdul: fits.HDUList, index: int, src: str, what: str):
    if not 0 <= index < len(hdul):
        raise InputError(f"{src}: no HDU {index} for the {what} (the file has HDUs 0..{len(hdul) - 1})")
    return hdul[index]


def _noise_ivar(hdul: fits.HDUList, data, src: str, noise_hdu: int | None, noise_kind: str) -> np.ndarray | None:
    """Inverse variance from a named IVAR / VAR / ERR HDU, or HDU ``noise_hdu`` of ``noise_kind``."""
    names = [h.name.upper() for h in hdul]
    if noise_kind not in NOISE_KINDS:
        raise InputError(f"{src}: unknown noise kind {noise_kind!r} ({', '.join(NOISE_KINDS)})")
    if noise_hdu is not None:
        arr, kind, what = _hdu_index(hdul, noise_hdu, src, "noise").data, noise_kind, f"noise HDU {noise_hdu}"
    else:  # the first of the named HDUs
        what = next((n for n in ("IVAR", "VAR", "ERR") if n in names), None)
        if what is None:
            return None
        arr, kind = hdul[what].data, {"IVAR": "ivar", "VAR": "var", "ERR": "sigma"}[what]
    arr = _numeric(arr, src, what)
    if kind == "ivar":
        return arr  # its shape and sign are checked with the image's
    _check_shape(arr, data, src, what)
    if np.any(arr[np.isfinite(arr)] < 0):
        raise InputError(f"{src}: {what} has negative values" if kind == "sigma" else f"{src}: variance has negative values")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(arr > 0, 1.0 / (arr if kind == "var" else arr**2), 0.0)


def _mask_array(hdul: fits.HDUList, data, src: str, mask_hdu: int | None) -> np.ndarray | None:
    """Bad-pixel mask (nonzero = bad) from a MASK HDU or HDU ``mask_hdu``, broadcast to the image."""
    names = [h.name.upper() for h in hdul]
    if mask_hdu is not None:
        arr, what = _hdu_index(hdul, mask_hdu, src, "mask").data, f"mask HDU {mask_hdu}"
    elif "MASK" in names:
        arr, what = hdul["MASK"].data, "MASK"
    else:
        return None
    arr = _numeric(arr, src, what)
    d = np.shape(data)
    if arr.shape != d and arr.shape != d[-2:]:
        raise InputError(f"{src}: {what} shape {arr.shape} does not match image {d}")
    return np.broadcast_to(np.nan_to_num(arr, nan=1.0) != 0, d)


def _apply_mask(data, ivar, mask):
    """Masked pixels: NaN data (zero weight, kept out of any background estimate)."""
    if mask is None:
        return data, ivar
    data = np.where(mask, np.nan, np.asarray(data, np.float64))
    return data, (None if ivar is None else np.where(mask, 0.0, ivar))


#: the header keyword of a galaxy's redshift (``galdust simulate --dust-frame rest`` writes it)
REDSHIFT_KEY = "REDSHIFT"


def check_redshift(z, src: str, what: str = f"header {REDSHIFT_KEY}") -> float | None:
    """A redshift as a float (None stays None), or an InputError naming ``src`` and ``what``."""
    if z is None or (isinstance(z, str) and not z.strip()):
        return None
    try:
        v = float(z)
    except (TypeError, ValueError):
        raise InputError(f"{src}: {what} {z!r} is not a number") from None
    if not (np.isfinite(v) and 0.0 <= v < 20.0):
        raise InputError(f"{src}: {what} {v:g} is not a redshift (0 <= z < 20)")
    return v


def _header_redshift(src: str, *headers) -> float | None:
    for h in headers:
        if h is not None and REDSHIFT_KEY in h:
            return check_redshift(h[REDSHIFT_KEY], src)
    return None


def read_cube(path: str | os.PathLike, *, noise_hdu: int | None = None, noise_kind: str = "ivar",
              mask_hdu: int | None = None, bands: Sequence[str] | None = None) -> Observation:
    """Read a cube FITS (format (a) in the module docstring); ``noise_hdu`` / ``mask_hdu``: HDU
    indices of the noise (of ``noise_kind`` 'ivar', 'var' or 'sigma') and of a mask (nonzero = bad)
    when they are not named IVAR/VAR/ERR/MASK. ``bands``: the planes' band names for a cube whose
    header has no ``BANDS`` (``galdust fit CUBE.fits --bands ...``; a header that has them must agree)."""
    src = str(path)
    with open_fits(src) as hdul:
        names = [h.name.upper() for h in hdul]
        sci = hdul["SCI"] if "SCI" in names else hdul[0]
        if sci.data is None:
            raise InputError(f"{src}: no image data in the primary HDU and no SCI extension")
        hdr = sci.header
        phdr = hdul[0].header
        given, bands = bands, _split_list(hdr.get("BANDS", phdr.get("BANDS")))
        if given:
            if bands and [b.lower() for b in bands] != [b.lower() for b in given]:
                raise InputError(f"{src}: header BANDS {','.join(bands)} differ from --bands {','.join(given)}")
            bands = list(given)
        waves = _split_list(hdr.get("WAVEEFF", phdr.get("WAVEEFF")))
        try:
            wave_vals = None if waves is None else [float(w) for w in waves]
        except ValueError:
            raise InputError(f"{src}: WAVEEFF must be comma-separated numbers in micron") from None
        ivar = _noise_ivar(hdul, sci.data, src, noise_hdu, noise_kind)
        mask = _mask_array(hdul, sci.data, src, mask_hdu)
        psf = _numeric(hdul["PSF"].data, src, "PSF") if "PSF" in names else None
        data = np.asarray(sci.data)
        unit = str(hdr.get("BUNIT", phdr.get("BUNIT", "")))
        wcs = celestial_wcs(hdr)
        z = _header_redshift(src, hdr, phdr)
    if mask is not None and np.issubdtype(data.dtype, np.number):
        data, ivar = _apply_mask(data, ivar, mask)
    cube, ivar, psf, bands_t, waves_t, notes = _validate(data, ivar, psf, bands, wave_vals, src,
                                                         warn_masked=mask is None)
    return Observation(cube, ivar, bands_t, waves_t, psf, wcs, unit, src, tuple(notes), z)


def _numeric(data, src: str, what: str) -> np.ndarray:
    """An HDU's data as float64, or an InputError if it is missing or not a numeric image."""
    arr = None if data is None else np.asarray(data)
    if arr is None or arr.dtype.names is not None or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{src}: {what} HDU is not a numeric image")
    return arr.astype(np.float64)


def _check_shape(arr, data, src, what):
    if data is not None and np.shape(arr) != np.shape(data):
        raise InputError(f"{src}: {what} shape {np.shape(arr)} does not match image {np.shape(data)}")


def _read_psf_file(path, src_band: str) -> np.ndarray:
    with open_fits(path) as hdul:
        arr = _first_image(hdul, str(path))
    arr = _numeric(arr, str(path), "PSF")
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise InputError(f"{path}: the PSF of {src_band} must be a 2-D image, got shape {arr.shape}")
    return arr


def read_band_files(
    paths: Sequence[str | os.PathLike],
    bands: Sequence[str],
    *,
    psf_paths: Sequence[str | os.PathLike] | None = None,
    noise_hdu: int | None = None,
    noise_kind: str = "ivar",
    mask_hdu: int | None = None,
) -> Observation:
    """Read one 2-D FITS image per band (format (b)); optional per-band PSF files.

    Each file may carry its own noise (IVAR/VAR/ERR HDU, or HDU ``noise_hdu`` of ``noise_kind``),
    mask (MASK HDU or ``mask_hdu``) and PSF (a PSF HDU, or ``psf_paths``, one per band, sampled at that
    band's pixels). Bands on different pixel grids (other pixel scales, sizes or pointings) are brought
    onto the grid of the band with the finest pixels, using their WCS (:mod:`galdust.resample`: flux
    conserving, the effective inverse variance, each PSF resampled to the common pixels).
    """
    if not paths:
        raise InputError("(no files): no input images given")
    if len(paths) != len(bands):
        raise InputError(f"{paths[0]}: {len(paths)} files for {len(bands)} bands")
    if psf_paths is not None and len(psf_paths) not in (0, len(paths)):
        raise InputError(f"{psf_paths[0]}: {len(psf_paths)} PSF files for {len(paths)} bands")
    planes, ivars, psfs, wcss, units, zs = [], [], [], [], [], []
    for p in paths:
        with open_fits(p) as hdul:
            names = [h.name.upper() for h in hdul]
            hdu = hdul["SCI"] if "SCI" in names else next((h for h in hdul if h.data is not None), None)
            if hdu is None or hdu.data is None:
                raise InputError(f"{p}: no image data")
            d = np.asarray(hdu.data)
            if d.ndim != 2:
                raise InputError(f"{p}: per-band image must be 2-D, got shape {d.shape}")
            if not np.issubdtype(d.dtype, np.number):
                raise InputError(f"{p}: image data are not numeric ({d.dtype})")
            iv = _noise_ivar(hdul, d, str(p), noise_hdu, noise_kind)
            if iv is not None:
                _check_shape(iv, d, str(p), "noise")
            mask = _mask_array(hdul, d, str(p), mask_hdu)
            d, iv = _apply_mask(d, iv, mask)
            psf = _numeric(hdul["PSF"].data, str(p), "PSF") if "PSF" in names else None
            wcss.append(celestial_wcs(hdu.header))
            units.append(str(hdu.header.get("BUNIT", "")))
            zs.append(_header_redshift(str(p), hdu.header, hdul[0].header))
        planes.append(np.asarray(d, np.float64))
        ivars.append(iv)
        psfs.append(psf)
    if psf_paths:
        psfs = [_read_psf_file(q, b) for q, b in zip(psf_paths, bands)]
    notes: list[str] = []
    same = all(q.shape == planes[0].shape for q in planes) and (
        any(w is None for w in wcss) or all(_same_grid(w, wcss[0]) for w in wcss))
    if not same:
        planes, ivars, psfs, wcs, notes = _to_common_grid(paths, bands, planes, ivars, psfs, wcss)
    else:
        wcs = wcss[0]
    if all(v is None for v in ivars):  # no noise at all: _validate estimates it
        ivar = None
    else:  # a band without noise: estimated from its background
        ivar = np.stack([_background_ivar(p, d) if v is None else v for p, d, v in zip(paths, planes, ivars)])
    psf = None
    if any(q is not None for q in psfs):
        if any(q is None for q in psfs):
            missing = [str(p) for p, q in zip(paths, psfs) if q is None]
            raise InputError(f"{missing[0]}: no PSF for this band while other bands have one (give --psf for every band)")
        psf = _pad_psfs(psfs)
    src = ",".join(str(p) for p in paths)
    cube, ivar, psf, bands_t, waves_t, vnotes = _validate(np.stack(planes), ivar, psf, list(bands), None,
                                                          str(paths[0]), warn_masked=not notes)
    given = sorted({z for z in zs if z is not None})
    if len(given) > 1:
        raise InputError(f"{paths[0]}: the band files give different {REDSHIFT_KEY} ({', '.join(f'{z:g}' for z in given)})")
    return Observation(cube, ivar, bands_t, waves_t, psf, wcs, units[0], src, tuple(notes + vnotes),
                       given[0] if given else None)


def _same_grid(a: WCS, b: WCS) -> bool:
    from .resample import pixel_scale

    if a is None or b is None:
        return a is b
    return (abs(pixel_scale(a) / pixel_scale(b) - 1) < 1e-4 and np.allclose(a.wcs.crval, b.wcs.crval, atol=1e-7)
            and np.allclose(a.wcs.crpix, b.wcs.crpix, atol=1e-3))


def _background_ivar(path, d) -> np.ndarray:
    """The inverse variance of a band without noise information, from its sigma-clipped background."""
    good = np.isfinite(d)
    sig = background_sigma(d, good)
    if not sig > 0:
        raise InputError(f"{path}: cannot estimate the noise (constant image); give its inverse variance")
    return np.where(good, 1.0 / sig**2, 0.0)


def _pad_psfs(psfs: list[np.ndarray]) -> np.ndarray:
    """Stack PSF stamps of different (odd) sizes, centred, zero-padded to the largest."""
    n = max(max(q.shape) for q in psfs)
    n += 1 - n % 2
    out = np.zeros((len(psfs), n, n))
    for i, q in enumerate(psfs):
        py, px = q.shape
        oy, ox = n // 2 - py // 2, n // 2 - px // 2
        out[i, oy : oy + py, ox : ox + px] = q
    return out


def _to_common_grid(paths, bands, planes, ivars, psfs, wcss):
    """Every band on the grid of the band with the finest pixels (flux-conserving reprojection)."""
    from .resample import pixel_scale, reproject_flux, reproject_ivar, resample_psf

    for p, d, w in zip(paths, planes, wcss):
        if w is None:
            raise InputError(f"{p}: shape {d.shape} differs from {paths[0]} {planes[0].shape} or its grid does, and "
                             "it has no celestial WCS to align the bands with")
    scales = [pixel_scale(w) for w in wcss]
    ref = int(np.argmin(scales))
    shape, wcs_t, s_t = planes[ref].shape, wcss[ref], scales[ref]
    notes = []
    out_p, out_i, out_psf = [], [], []
    for i, (p, d, v, q, w, s) in enumerate(zip(paths, planes, ivars, psfs, wcss, scales)):
        if i == ref or (d.shape == shape and _same_grid(w, wcs_t)):
            out_p.append(d), out_i.append(v), out_psf.append(q)
            continue
        good = np.isfinite(d)
        out_p.append(reproject_flux(np.where(good, d, np.nan), w, wcs_t, shape))
        if v is None:
            v = _background_ivar(p, d)
        out_i.append(reproject_ivar(np.where(good, v, 0.0), w, wcs_t, shape))
        try:
            out_psf.append(None if q is None else resample_psf(q, s, s_t))
        except ValueError as e:
            raise InputError(f"{p}: {e}") from None
        notes.append(f"{p}: band {bands[i]} resampled from {s:.4g} to {s_t:.4g} arcsec pixels (flux conserving; "
                     f"ivar is the effective one, pixels correlated over {max(s / s_t, 1.0):.2g} px)")
    return out_p, out_i, out_psf, wcs_t, notes


#: LSST/HSC pipeline mask bits that mean "no usable data": BAD, SAT, CR, NO_DATA. Other bits
#: (INTRP, EDGE, DETECTED, CROSSTALK, ...) are informational and keep their weight.
_NPZ_BAD_BITS = 1 | 2 | 8 | 256


def read_npz(path: str | os.PathLike, survey: str = "hsc") -> Observation:
    """Read a scarlet-style ``.npz`` scene (format (c))."""
    src = str(path)
    if not os.path.exists(src):
        raise InputError(f"{src}: no such file")
    try:
        with np.load(src, allow_pickle=False) as d:
            files = set(d.files)
            if "images" not in files:
                raise InputError(f"{src}: npz scene has no 'images' array")
            images = np.asarray(d["images"])
            variance = np.asarray(d["variance"]) if "variance" in files else None
            mask = np.asarray(d["mask"]) if "mask" in files else None
            psfs = np.asarray(d["psfs"]) if "psfs" in files else None
            filters = None
            if "filters" in files:
                filters = [f.decode() if isinstance(f, bytes) else str(f) for f in d["filters"].tolist()]
    except InputError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError ...
        raise InputError(f"{src}: cannot read npz ({type(e).__name__}: {e})") from None
    bands = None
    if filters is not None:
        bands = [f if is_known(f) else f"{survey}_{f.lower()}" for f in filters]
    for name, arr in (("images", images), ("variance", variance), ("psfs", psfs), ("mask", mask)):
        if arr is not None and not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"{src}: npz array '{name}' is not numeric ({arr.dtype})")
    ivar = None
    if variance is not None:
        _check_shape(variance, images, src, "variance")
        with np.errstate(divide="ignore", invalid="ignore"):
            ivar = np.where(variance > 0, 1.0 / variance, 0.0)
    if mask is not None:
        _check_shape(mask, images, src, "mask")
        bad_px = (mask.astype(np.int64) & _NPZ_BAD_BITS) != 0
        # flagged pixels carry no information: NaN makes _validate give them zero weight and keeps
        # them out of a background-noise estimate
        images = np.where(bad_px, np.nan, images.astype(np.float64))
    cube, ivar, psf, bands_t, waves_t, notes = _validate(images, ivar, psfs, bands, None, src, warn_masked=False)
    return Observation(cube, ivar, bands_t, waves_t, psf, None, "", src, tuple(notes))


def read_observation(inputs: Sequence[str | os.PathLike] | str, bands: Sequence[str] | None = None, *,
                     noise_hdu: int | None = None, noise_kind: str = "ivar", mask_hdu: int | None = None,
                     psf: Sequence[str | os.PathLike] | None = None, redshift: float | None = None) -> Observation:
    """Read any supported input: one cube FITS, one ``.npz`` scene, per-band files with ``bands``
    (on one grid or several: see :func:`read_band_files`), or one cube FITS with ``bands`` naming its
    planes (its header has no ``BANDS``). ``noise_hdu``/``noise_kind``/``mask_hdu``:
    unnamed noise and mask extensions; ``psf``: PSF files (one per band, or one (band, py, px) cube);
    ``redshift``: the galaxy's redshift, in place of a header ``REDSHIFT``."""
    obs = _read_observation(inputs, bands, noise_hdu=noise_hdu, noise_kind=noise_kind, mask_hdu=mask_hdu, psf=psf)
    if redshift is not None:
        obs = replace(obs, redshift=check_redshift(redshift, obs.source, "--redshift"))
    return obs


def _read_observation(inputs, bands, *, noise_hdu, noise_kind, mask_hdu, psf) -> Observation:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [str(p) for p in inputs]
    psf = [str(p) for p in psf] if psf else None
    if bands and len(inputs) == 1 and len(bands) > 1 and not str(inputs[0]).lower().endswith(".npz"):
        try:
            obs = read_cube(inputs[0], noise_hdu=noise_hdu, noise_kind=noise_kind, mask_hdu=mask_hdu, bands=bands)
        except InputError as e:
            if "must be 3-D" not in str(e):
                raise
            raise InputError(f"{inputs[0]}: one image with {len(bands)} bands: give one galaxy's per-band files as "
                             f"one comma-separated input (g.fits,r.fits,...), or a (band, y, x) cube") from None
        return _with_psf_files(obs, psf) if psf else obs  # one cube, its planes named by --bands
    if bands:
        return read_band_files(inputs, bands, psf_paths=psf, noise_hdu=noise_hdu, noise_kind=noise_kind,
                               mask_hdu=mask_hdu)
    if len(inputs) != 1:
        raise InputError(f"{inputs[0]}: several files given without --bands (one cube FITS, or one file per band)")
    p = inputs[0]
    if p.lower().endswith(".npz"):
        return read_npz(p)
    obs = read_cube(p, noise_hdu=noise_hdu, noise_kind=noise_kind, mask_hdu=mask_hdu)
    if psf:
        obs = _with_psf_files(obs, psf)
    return obs


def _with_psf_files(obs: Observation, files: Sequence[str]) -> Observation:
    """The observation with its PSF from files: one (band, py, px) cube, or one 2-D stamp per band."""
    if len(files) == 1:
        with open_fits(files[0]) as hdul:
            arr = _numeric(_first_image(hdul, files[0]), files[0], "PSF")
        stamps = list(arr) if arr.ndim == 3 else [arr]
    else:
        stamps = [_read_psf_file(f, b) for f, b in zip(files, obs.bands)]
    if len(stamps) != len(obs.bands):
        raise InputError(f"{files[0]}: {len(stamps)} PSF stamps for {len(obs.bands)} bands")
    psf = _pad_psfs(stamps)
    if not np.all(np.isfinite(psf)) or np.any(psf.sum(axis=(1, 2)) <= 0):
        raise InputError(f"{files[0]}: PSF has NaN/inf values or sums to zero")
    return replace(obs, psf=(psf / psf.sum(axis=(1, 2), keepdims=True)).astype(np.float32))


def float_column(table, name: str) -> np.ndarray:
    """A table column as float64 with its empty (masked) cells as NaN: astropy reads an empty CSV cell
    as a masked 0, which ``np.asarray(column, float)`` would turn into a measured 0. ValueError if the
    column is not numeric."""
    col = table[name]
    data = np.asarray(np.ma.getdata(col)).astype(float)
    return np.where(np.ma.getmaskarray(col), np.nan, data)


def input_name(path: str | os.PathLike) -> str:
    """The output stem of an input file: its name without the FITS/npz suffix."""
    name = Path(path).name
    for suf in (".fits.gz", ".fits.fz", ".fits", ".fit", ".fts", ".npz"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(name).stem


# ----------------------------------------------------------------------------- writers


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; rename it onto ``path`` only if the block succeeds
    (a model folder is never left half-written)."""
    import shutil

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists (use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def cache_dir(environ=None) -> Path:
    """galdust's cache folder (SPS grids, compiled XLA programs): ``$XDG_CACHE_HOME/galdust``, default
    ``~/.cache/galdust`` (an empty ``XDG_CACHE_HOME`` counts as unset, as the XDG spec says)."""
    env = os.environ if environ is None else environ
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "galdust"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists (use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp_path, path)
        else:  # link fails if a file appeared meanwhile: never clobber without overwrite
            try:
                os.link(tmp_path, path)
            except FileExistsError:
                raise OutputExistsError(f"{path}: exists (use --overwrite to replace it)") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def card(key: str, value, comment: str = "") -> tuple:
    """``(value, comment)`` for ``header[key]``, the comment cut to what fits beside ``key = value`` on
    one 80-character card. astropy would cut it itself, with a warning ("Card is too long, comment
    will be truncated") that every ``galdust fit`` and ``simulate`` printed, and that
    :func:`open_fits`' filter (warnings about truncation become errors; ``warnings`` filters are
    process-wide) turns into a failed write in any thread writing while another reads."""
    if not comment:
        return value, comment
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        used = 30  # numbers and booleans: right-justified in columns 11-30
    else:  # a string: quoted from column 11, padded to column 30 at least (more cards if long)
        used = max(len(fits_card(key, value).rstrip()), 30)
    room = 80 - used - 3  # " / "
    return (value, comment[:room]) if room > 0 and used <= 80 else (value, "")


def fits_card(key: str, value, comment: str = "") -> str:
    """The 80-character header card(s) of ``key = value / comment`` (a bool, int or string value; a
    long or non-ASCII string, or any other value, is rendered by astropy, CONTINUE cards included)."""
    if isinstance(value, bool):
        v = f"{'T' if value else 'F':>20}"
    elif isinstance(value, (int, np.integer)):
        v = f"{int(value):>20}"
    elif isinstance(value, str) and value.isascii() and value.isprintable() and len(value) <= 60:
        v = "'" + f"{value.replace(chr(39), chr(39) * 2):<8}" + "'"
    else:
        return fits.Card(key, value, comment).image
    card = f"{key:<8}= {v}" + (f" / {comment}" if comment else "")
    return card.ljust(80) if len(card) <= 80 else fits.Card(key, value, comment).image  # astropy shortens


_BITPIX = {np.dtype(">f4"): -32, np.dtype(">f8"): -64, np.dtype("uint8"): 8, np.dtype(">i2"): 16,
           np.dtype(">i4"): 32}


def _padded(b: bytes, fill: bytes) -> bytes:
    return b + fill * (-len(b) % 2880)


def write_image_fits(path: str | os.PathLike, primary: fits.Header,
                     images: Sequence[tuple[str, np.ndarray, str]], *, overwrite: bool = False) -> Path:
    """Write a FITS file atomically: a data-less primary HDU with ``primary``'s cards, then one image
    extension per (EXTNAME, array, extra cards as rendered 80-character cards, e.g. a WCS header's
    ``tostring(endcard=False, padding=False)`` and :func:`fits_card` strings). The extensions' headers
    are assembled as text, not card by card through astropy, which cost 20 ms per 9-HDU file and
    halved the amortised fit's throughput (``docs/amortized_dust.md``); the file is standard FITS."""
    blocks = [_padded(fits.PrimaryHDU(header=primary).header.tostring().encode("ascii"), b" ")]
    for name, arr, extra in images:
        a = np.asarray(arr)
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder(">") if a.dtype.itemsize > 1 else a.dtype)
        if a.dtype not in _BITPIX:
            raise ValueError(f"{path}: cannot write {name} of dtype {a.dtype}")
        cards = [fits_card("XTENSION", "IMAGE"), fits_card("BITPIX", _BITPIX[a.dtype]), fits_card("NAXIS", a.ndim)]
        cards += [fits_card(f"NAXIS{i + 1}", n) for i, n in enumerate(a.shape[::-1])]
        cards += [fits_card("PCOUNT", 0), fits_card("GCOUNT", 1), fits_card("EXTNAME", name), extra, "END".ljust(80)]
        blocks += [_padded("".join(cards).encode("ascii"), b" "), _padded(a.tobytes(), b"\0")]
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.writelines(blocks)
    return Path(path)


def command_line(argv: Sequence[str], keep: int = 2) -> str:
    """The command line as recorded in outputs, every run of more than ``keep`` + 1 arguments that are
    not options shortened to its first ``keep`` and a count: ``galdust fit a.fits b.fits ... (+2046 more)
    --out fits/`` (a file's own inputs are its ``GDIN`` cards). Without this, each output of ``galdust
    fit *.fits`` over 2,048 files carried a 70 kB header card, and writing them halved the speed."""
    out, run = [Path(argv[0]).name if argv else "galdust"], []

    def flush():
        out.extend(run if len(run) <= keep + 1 else run[:keep] + [f"... (+{len(run) - keep} more)"])
        run.clear()

    for tok in argv[1:]:
        if tok.startswith("-"):
            flush()
            out.append(tok)
        else:
            run.append(tok)
    flush()
    return " ".join(out)


def provenance_cards(command: str | None = None, inputs: Sequence[str] = ()) -> list[tuple[str, str, str]]:
    """Header cards recording who wrote a file: galdust version, command line, inputs."""
    cmd = command if command is not None else command_line(sys.argv)
    cards = [("GDVERS", __version__, "galdust version"), ("GDCMD", cmd, "command that wrote this file")]
    for i, p in enumerate(inputs[:99]):
        cards.append((f"GDIN{i + 1}", str(p), "input file"))
    return cards


def write_cube(
    path: str | os.PathLike,
    cube: np.ndarray,
    bands: Sequence[str],
    *,
    ivar: np.ndarray | None = None,
    psf: np.ndarray | None = None,
    wcs: WCS | None = None,
    wave_eff: Sequence[float] | None = None,
    unit: str = "",
    extra: dict[str, np.ndarray] | None = None,
    header: dict[str, object] | None = None,
    provenance: list[tuple[str, str, str]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a cube FITS in the input format (a), plus optional extra image HDUs, atomically."""
    cube = np.asarray(cube, np.float32)
    if cube.ndim != 3 or len(bands) != cube.shape[0]:
        raise ValueError(f"{path}: cube of shape {cube.shape} does not match {len(bands)} bands")
    if wave_eff is not None and len(wave_eff) != len(bands):
        raise ValueError(f"{path}: {len(wave_eff)} wavelengths for {len(bands)} bands")
    hdr = wcs.to_header() if wcs is not None else fits.Header()
    hdr["BANDS"] = card("BANDS", ",".join(bands), "band names (galdust registry)")
    if wave_eff is not None:
        hdr["WAVEEFF"] = card("WAVEEFF", ",".join(f"{w:.5f}" for w in wave_eff), "effective wavelengths [micron]")
    if unit:
        hdr["BUNIT"] = unit
    for k, v in (header or {}).items():
        hdr[k] = card(k, *v) if isinstance(v, tuple) else v
    for k, v, c in provenance if provenance is not None else provenance_cards():
        hdr[k] = card(k, v, c)  # long values continue, without comment
    hdus = [fits.PrimaryHDU(cube, header=hdr)]
    if ivar is not None:
        hdus.append(fits.ImageHDU(np.asarray(ivar, np.float32), name="IVAR"))
    if psf is not None:
        hdus.append(fits.ImageHDU(np.asarray(psf, np.float32), name="PSF"))
    for name, arr in (extra or {}).items():
        h = wcs.to_header() if (wcs is not None and np.ndim(arr) >= 2) else None
        hdus.append(fits.ImageHDU(np.asarray(arr, np.float32), header=h, name=name))
    with atomic_path(path, overwrite) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
    return Path(path)
