"""Posteriors of a catalogue as a library call: the one place where options become models and work.

``galdust posterior sample`` and ``galdust run posterior`` both call :func:`resolve_model` and
:func:`summarise_rows`, so the same object gets the same numbers from both (each object's random
key comes from the seed and its name, :func:`object_keys`, whatever its row or batch).

Default model (``model=None``): on an SDSS table (``MODELFLUX``/``EXTINCTION`` columns) the SDSS
redshift model ``z-sdss`` (trained on real SDSS spectroscopic redshifts) gives z and the one-step
distilled CFM it reads gives the other properties (the fast sampler: one network pass per sample);
on other tables (galdust simulator tables) the photometric CFM ``cfm-phot``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import InputError

__all__ = ["SHIPPED_DIR", "NAMED_POSTERIORS", "PosteriorPlan", "resolve_model", "object_keys", "summarise_rows",
           "is_sdss_table"]

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "posterior"
#: shipped posterior models by name (``--model NAME``)
NAMED_POSTERIORS = {"cfm-phot": SHIPPED_DIR / "cfm_phot_sdss.eqx",
                    "cfm-onestep": SHIPPED_DIR / "cfm_phot_sdss_onestep.eqx",
                    "cfm-image": SHIPPED_DIR / "cfm_image.eqx",
                    "vae-nf": SHIPPED_DIR / "vaenf.eqx",
                    "z-sdss": SHIPPED_DIR / "z_sdss"}
DEFAULT_SDSS = "z-sdss"
DEFAULT_OTHER = "cfm-phot"


@dataclass(frozen=True)
class PosteriorPlan:
    """Which files answer: ``cfm`` samples the properties; ``zmodel`` (a redshift model folder) gives z."""

    label: str  # what the user asked for, or the default's name
    cfm: Path
    zmodel: Path | None = None


def is_sdss_table(path: str | Path) -> bool:
    """Whether a catalogue has the SDSS columns the redshift model reads."""
    from .redshift import sdss_table_features

    try:
        sdss_table_features(path)
    except (InputError, KeyError, ValueError, OSError):
        return False
    return True


def resolve_model(model: str | Path | None, catalog: str | Path | None = None) -> PosteriorPlan:
    """The plan for ``--model`` (a shipped name, a weights file or a redshift model folder; None: the
    default for ``catalog``, see the module docstring)."""
    from .redshift import is_redshift_model, redshift_cfm_path

    if model is None:
        label = DEFAULT_SDSS if catalog is not None and is_sdss_table(catalog) else DEFAULT_OTHER
        path = NAMED_POSTERIORS[label]
    else:
        label = str(model)
        path = NAMED_POSTERIORS.get(label, Path(model))
        if not Path(path).exists():
            raise InputError(f"{model}: no such model (or one of: {', '.join(NAMED_POSTERIORS)})")
    path = Path(path)
    if is_redshift_model(path):
        return PosteriorPlan(label, redshift_cfm_path(path, SHIPPED_DIR), path)
    return PosteriorPlan(label, path, None)


def _name_seed(name: str) -> int:
    return zlib.crc32(str(name).encode()) & 0x7FFFFFFF


def object_keys(seed: int, names: Sequence[str]) -> list:
    """One PRNG key per object, from ``seed`` and its name (not its row): re-ordered, re-batched or
    resumed runs draw the same samples for the same object."""
    import jax.random as jr

    base = jr.PRNGKey(seed)
    return [jr.fold_in(base, _name_seed(n)) for n in names]


def summarise_rows(model, flux: np.ndarray, names: Sequence[str], *, seed: int = 0, samples: int = 1000,
                   steps: int = 100, zmodel=None, zfeat: np.ndarray | None = None, images=None,
                   keep_samples: bool = False, batch: int = 64):
    """(p16/p50/p84 (n, n_prop, 3), samples or None) of each row of ``flux`` (n, n_band) [nmgy].

    ``model``: a loaded photometric or image posterior; ``zmodel``: a loaded
    :class:`galdust.posterior.redshift.RedshiftModel` with its photometric features ``zfeat`` (n, k):
    its z percentiles replace the model's."""
    from .model import percentiles

    keys = object_keys(seed, names)
    pct, smp = percentiles(model, np.asarray(flux, float), keys, samples, steps, keep_samples=keep_samples,
                           images=images, batch=batch)
    if zmodel is not None:
        from .redshift import cfm_features

        zq = zmodel.predict(np.c_[np.asarray(zfeat, float), cfm_features(model, np.asarray(flux, float))])
        pct[:, list(model.props).index("z"), :] = zq
    return pct, smp
