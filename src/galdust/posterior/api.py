"""Posteriors of a catalogue as a library call: the one place where options become models and work.

``galdust posterior sample`` and ``galdust run posterior`` both call :func:`resolve_model` and
:func:`summarise_rows`, so the same object gets the same numbers from both (each object's random
key comes from the seed and its name, :func:`object_keys`, whatever its row or batch).

Default model (``model=None``):

* an SDSS table (``MODELFLUX``/``EXTINCTION`` columns) whose every row has a spectroscopic redshift in
  ``Z`` (:func:`default_redshift_column`): the properties at that redshift (``cfm-onestep-z``), as
  with ``--redshift-column Z``. A photometric redshift at z ≈ 0.03 is a 40 % distance error, 0.3 dex
  in mass; the spectra's redshift removes it (``docs/sim_to_real.md``). ``photo_z=True``
  (``--photo-z``) infers z from the photometry instead;
* other SDSS tables: the SDSS redshift model ``z-sdss`` (trained on real SDSS spectroscopic redshifts)
  gives z, and ``cfm-onestep-z`` the other properties at redshifts drawn from its posterior;
* other tables (galdust simulator tables): the photometric CFM ``cfm-phot``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import InputError, float_column
from ..models import shipped_path

__all__ = ["SHIPPED_DIR", "NAMED_POSTERIORS", "PosteriorPlan", "resolve_model", "object_keys", "summarise_rows",
           "is_sdss_table", "summarise_catalog", "CatalogPosterior", "read_redshift_column",
           "default_redshift_column", "check_photo_z", "SDSS_SPEC_Z"]

#: shipped posterior models by name (``--model NAME``), from the one registry :data:`galdust.models.SHIPPED`
NAMED_POSTERIORS = {n: shipped_path(n) for n in ("cfm-phot", "cfm-onestep", "cfm-image", "vae-nf", "z-sdss",
                                                  "cfm-phot-z", "cfm-onestep-z")}
SHIPPED_DIR = NAMED_POSTERIORS["cfm-phot"].parent
DEFAULT_SDSS = "z-sdss"
DEFAULT_OTHER = "cfm-phot"
DEFAULT_KNOWN_Z = "cfm-onestep-z"  # with --redshift-column: properties at the known redshift


@dataclass(frozen=True)
class PosteriorPlan:
    """Which files answer: ``cfm`` samples the properties; ``zmodel`` (a redshift model folder) gives z."""

    label: str  # what the user asked for, or the default's name
    cfm: Path
    zmodel: Path | None = None
    at_z: Path | None = None  # with zmodel: a model conditioned on z, sampled at the zmodel's redshifts


def is_sdss_table(path: str | Path) -> bool:
    """Whether a catalogue has the SDSS columns the redshift model reads."""
    from .redshift import sdss_table_features

    try:
        sdss_table_features(path)
    except (InputError, KeyError, ValueError, OSError):
        return False
    return True


def resolve_model(model: str | Path | None, catalog: str | Path | None = None, known_z: bool = False) -> PosteriorPlan:
    """The plan for ``--model`` (a shipped name, a weights file or a redshift model folder; None: the
    default for ``catalog``, see the module docstring; with ``known_z`` the model conditioned on z)."""
    from .redshift import is_redshift_model, redshift_cfm_path

    if model is None:
        sdss = not known_z and catalog is not None and is_sdss_table(catalog)
        label = DEFAULT_KNOWN_Z if known_z else DEFAULT_SDSS if sdss else DEFAULT_OTHER
        path = NAMED_POSTERIORS[label]
    else:
        label = str(model)
        path = NAMED_POSTERIORS.get(label, Path(model))
        if not Path(path).exists():
            raise InputError(f"{model}: no such model (or one of: {', '.join(NAMED_POSTERIORS)})")
    path = Path(path)
    if is_redshift_model(path):
        at_z = NAMED_POSTERIORS[DEFAULT_KNOWN_Z]
        return PosteriorPlan(label, redshift_cfm_path(path, SHIPPED_DIR), path, at_z if at_z.exists() else None)
    return PosteriorPlan(label, path, None)


def _name_seed(name: str) -> int:
    return zlib.crc32(str(name).encode()) & 0x7FFFFFFF


def object_keys(seed: int, names: Sequence[str]):
    """One PRNG key per object, ``fold_in(PRNGKey(seed), crc32(name))``, as an (n, 2) array: from its
    name, not its row, so re-ordered, re-batched or resumed runs draw the same samples for it."""
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    base = jr.PRNGKey(seed)
    seeds = jnp.asarray(np.array([_name_seed(n) for n in names], np.uint32))
    return jax.vmap(lambda s: jr.fold_in(base, s))(seeds)


def z_draws(zq: np.ndarray, keys, n: int) -> np.ndarray:
    """(rows, n, 1) redshift draws from each row's (p16, p50, p84): a split normal, z ≥ 0.001."""
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    e = np.asarray(jax.vmap(lambda k: jr.normal(jr.fold_in(k, 7919), (n,)))(jnp.asarray(keys)))
    lo, mid, hi = (np.asarray(zq[:, i : i + 1], float) for i in range(3))
    return np.maximum(mid + e * np.where(e > 0, hi - mid, mid - lo), 1e-3)[..., None]


def summarise_rows(model, flux: np.ndarray, names: Sequence[str], *, seed: int = 0, samples: int = 1000,
                   steps: int = 100, zmodel=None, zfeat: np.ndarray | None = None, images=None,
                   keep_samples: bool = False, batch: int = 64, given: np.ndarray | None = None, at_z=None,
                   columns: bool = False):
    """(p16/p50/p84 (n, n_prop, 3), samples or None) of each row of ``flux`` (n, n_band) [nmgy]; with
    ``columns``, also the extra columns of the model's kind (a dict, e.g. the VAE-NF's lines).

    ``model``: a loaded photometric or image posterior; ``zmodel``: a loaded
    :class:`galdust.posterior.redshift.RedshiftModel` with its photometric features ``zfeat`` (n, k):
    its z percentiles replace the model's. ``given``: the known properties (n, k) of a model
    conditioned on them (``model.given``, e.g. spectroscopic z). ``at_z`` (with ``zmodel``): a model
    conditioned on z; the properties are then its samples at redshifts drawn from the ``zmodel``'s
    posterior (one per sample), and the returned properties are ``at_z.props`` + z."""
    from .model import sample_given

    keys = object_keys(seed, names)
    flux = np.asarray(flux, float)
    if zmodel is not None:
        from .redshift import cfm_features

        zq = zmodel.predict(np.c_[np.asarray(zfeat, float), cfm_features(model, flux)])
    if at_z is not None and zmodel is not None:
        zs = z_draws(zq, keys, samples)
        s = sample_given(at_z, flux, zs, keys, steps, batch)
        pct = np.percentile(s, [16.0, 50.0, 84.0], axis=1).transpose(1, 2, 0)
        pct = np.concatenate([pct, zq[:, None, :]], axis=1)
        if keep_samples:
            s = np.concatenate([s, zs.astype(np.float32)], axis=2)
        return (pct, (s if keep_samples else None)) + (({},) if columns else ())
    pct, smp, extra = model.summarise(flux, keys, n_samples=samples, n_steps=steps, images=images,
                                      given=given, keep_samples=keep_samples, batch=batch)
    if zmodel is not None:
        pct[:, list(model.props).index("z"), :] = zq
    return (pct, smp, extra) if columns else (pct, smp)


@dataclass
class CatalogPosterior:
    """What :func:`summarise_catalog` returns: one value per catalogue row in every column."""

    plan: PosteriorPlan
    redshift_column: str | None  # the known-redshift column the properties are conditioned on (None: inferred z)
    props: list[str]
    columns: dict  # name, <prop>_p16/_p50/_p84, extra model outputs, note
    samples: np.ndarray | None  # (n_rows, n_samples, n_prop), NaN rows where a row could not be used
    n_used: int
    seconds: float


def _read_images(images, n_rows: int, ok: np.ndarray) -> np.ndarray:
    from astropy.io import fits

    images = Path(images)
    try:
        imgs = np.load(images, mmap_mode="r") if images.suffix == ".npy" else fits.getdata(images)
    except (OSError, ValueError) as e:
        raise InputError(f"{images}: cannot read the cutouts ({' '.join(str(e).split())})") from None
    if imgs.ndim != 4 or len(imgs) != n_rows:
        raise InputError(f"{images}: expected ({n_rows}, bands, H, W) cutouts, got {imgs.shape}")
    imgs = np.asarray(imgs[ok], np.float32)
    bad = ~np.all(np.isfinite(imgs), axis=(1, 2, 3))
    if bad.any():
        raise InputError(f"{images}: {int(bad.sum())} cutouts contain NaN")
    return imgs


#: the column of SDSS tables that holds the spectroscopic redshift (SpecObj ``Z``)
SDSS_SPEC_Z = "Z"


def check_photo_z(photo_z: bool, model=None, redshift_column: str | None = None) -> None:
    """One-line InputError when ``photo_z`` (``--photo-z``, which picks the default's redshift) comes
    with a model or a known-redshift column."""
    if photo_z and (redshift_column is not None or model is not None):
        raise InputError("--photo-z chooses the default model's redshift; it goes with neither --redshift-column "
                         "nor --model")


def default_redshift_column(tables: Sequence[str | Path]) -> str | None:
    """The known-redshift column the default reads: ``Z`` when every table is an SDSS table
    (:func:`is_sdss_table`) whose every row has a usable (finite, ≥ 0) ``Z``; else None (the redshift
    is then inferred from the photometry). One whole-table decision, so a row's answer does not depend
    on its neighbours and ``galdust posterior sample`` and ``galdust run posterior`` agree."""
    from .redshift import sdss_table_features

    if not tables:
        return None
    for t in tables:
        try:
            z = sdss_table_features(t)[1]  # the table's Z (None without one); raises unless an SDSS table
        except (InputError, KeyError, ValueError, TypeError, OSError):
            return None
        if z is None or not np.all(np.isfinite(z) & (z >= 0)):
            return None
    return SDSS_SPEC_Z


def read_redshift_column(catalog, column: str) -> np.ndarray:
    """The values of a catalogue's known-redshift column (one-line InputError if missing or not numeric)."""
    from astropy.table import Table

    try:
        t = Table.read(catalog, format="ascii.csv") if str(catalog).lower().endswith(".csv") else Table.read(catalog)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{catalog}: cannot read the table ({' '.join(str(e).split())[:200]})") from None
    if column not in t.colnames:
        near = [c for c in t.colnames if c.lower() == column.lower()]
        raise InputError(f"{catalog}: no column {column!r} (--redshift-column)"
                         + (f"; did you mean {near[0]!r}?" if near else ""))
    try:
        return float_column(t, column)
    except (TypeError, ValueError):
        raise InputError(f"{catalog}: column {column!r} is not numeric") from None


def domain_notes(domain: dict | None, flux, soft, bands, zgiven=None, column: str | None = None,
                 flux_err=None) -> list[str]:
    """Per row, why it lies outside the model's training domain ("" when inside): its fluxes
    and their S/N (:func:`galdust.posterior.domain.outside`) and, for a model given z, a known
    redshift beyond its training redshifts (the domain's ``z_max``; a model without one: the
    simulator's default range). ``galdust posterior sample`` and ``galdust run posterior`` flag such
    rows (answered, ``flag`` = 1, ``note`` = why)."""
    from ..simulate.sed import SEDConfig
    from .domain import outside

    notes = list(outside(domain, flux, soft, bands, flux_err))
    if zgiven is not None:
        z_hi = float((domain or {}).get("z_max", SEDConfig().z_range[1]))
        for i, v in enumerate(np.asarray(zgiven, float).reshape(-1)):
            if np.isfinite(v) and v > z_hi:
                why = f"{column or 'z'} = {v:.3g} is beyond the training redshifts (z <= {z_hi:g})"
                notes[i] = f"{notes[i]}; {why}" if notes[i] else why
    return notes


def summarise_catalog(catalog: str | Path, model: str | Path | None = None, images: str | Path | None = None, *,
                      seed: int = 0, samples: int = 1000, steps: int = 100,
                      keep_samples: bool = False, redshift_column: str | None = None,
                      photo_z: bool = False) -> CatalogPosterior:
    """Posterior percentiles of every row of a catalogue (what ``galdust posterior sample`` writes).

    ``model``: see :func:`resolve_model` (None: the best default for the table); ``images``: cutouts
    (.npy or FITS, (n_rows, bands, H, W), nmgy/pixel) for the image models. Rows without usable
    fluxes get NaN and a ``note``. ``redshift_column``: a column of known (spectroscopic) redshifts;
    the properties are then those at that z (a model conditioned on z, default ``cfm-onestep-z``),
    and the z columns repeat it. With neither ``model`` nor ``redshift_column``, an SDSS table with a
    spectroscopic redshift for every row is read at it (:func:`default_redshift_column`), unless
    ``photo_z``."""
    import time

    check_photo_z(photo_z, model, redshift_column)
    if model is None and redshift_column is None and not photo_z:
        redshift_column = default_redshift_column([catalog])

    from .data import read_catalog
    from .kinds import load_model
    from .redshift import RedshiftModel, sdss_table_features

    plan = resolve_model(model, catalog, known_z=redshift_column is not None)
    zmodel = RedshiftModel.load(plan.zmodel) if plan.zmodel is not None else None
    m, meta = load_model(plan.cfm)
    at_z = load_model(plan.at_z)[0] if plan.at_z is not None else None
    given_names = tuple(m.given)
    if redshift_column is not None and given_names != ("z",):
        raise InputError(f"{plan.label}: not a model conditioned on z (--redshift-column needs cfm-onestep-z, "
                         f"cfm-phot-z or a model trained with --given z)")
    if redshift_column is None and given_names:
        raise InputError(f"{plan.label}: conditioned on {', '.join(given_names)}; give --redshift-column")
    cat = read_catalog(catalog, m.bands)
    zgiven = None
    if redshift_column is not None:
        zgiven = read_redshift_column(catalog, redshift_column)
        for i, v in enumerate(zgiven):
            if not (np.isfinite(v) and v >= 0) and not cat.notes[i]:
                cat.notes[i] = f"no usable redshift in {redshift_column}"
    ok = np.array([not n for n in cat.notes])
    t0 = time.perf_counter()
    zfeat = sdss_table_features(catalog)[0][ok] if zmodel is not None else None  # SDSS tables only
    imgs = None
    if m.needs_images:
        if images is None:
            raise InputError(f"{plan.label}: an image model; give the cutouts with --images")
        imgs = _read_images(images, len(cat.names), ok)
    pct, smp, extra = summarise_rows(m, cat.flux[ok], [n for n, g in zip(cat.names, ok) if g], seed=seed,
                                     samples=samples, steps=steps, zmodel=zmodel, zfeat=zfeat, images=imgs,
                                     keep_samples=keep_samples, given=None if zgiven is None else zgiven[ok, None],
                                     at_z=at_z, columns=True)
    dt = time.perf_counter() - t0
    n = len(cat.names)
    cols = {"name": cat.names, **cat.ids}  # + the input's id / RA / DEC columns
    props = list(at_z.props) + ["z"] if at_z is not None and zmodel is not None else list(m.props)
    for j, p in enumerate(props):
        for k, q in enumerate(("p16", "p50", "p84")):
            v = np.full(n, np.nan)
            v[ok] = pct[:, j, k]
            cols[f"{p}_{q}"] = v
    if zgiven is not None:
        for q in ("p16", "p50", "p84"):
            cols[f"z_{q}"] = np.where(ok, zgiven, np.nan)
    for c, vals in extra.items():
        v = np.full(n, np.nan)
        v[ok] = vals
        cols[c] = v
    flag = np.zeros(n, np.int16)
    notes = list(cat.notes)
    if ok.any():
        whys = domain_notes(meta.get("domain"), cat.flux[ok], m.soft, m.bands,
                            None if zgiven is None else zgiven[ok], redshift_column, cat.flux_err[ok])
        for i, why in zip(np.nonzero(ok)[0], whys):
            if why:
                flag[i], notes[i] = 1, why
    cols["flag"] = flag  # 1: answered, but the row is outside the model's training domain (see note)
    cols["note"] = notes
    full = None
    if keep_samples:
        full = np.full((n, samples, len(props)), np.nan, np.float32)
        full[ok] = smp
    return CatalogPosterior(plan, redshift_column, props, cols, full, int(ok.sum()), dt)
