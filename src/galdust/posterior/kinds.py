"""The posterior kinds by name: :data:`KINDS` maps a sidecar's ``kind`` to its final class and loader,
and :func:`load_model` loads any posterior weights file through it (the one loader of posteriors)."""

from __future__ import annotations

from pathlib import Path

from ..weights import WeightsError, read_sidecar
from .base import Posterior
from .image import ImagePosteriorModel, load_image_model
from .model import PosteriorModel, load_cfm
from .onestep import OneStepPosterior, load_onestep
from .vaenf import VAENFModel, load_vaenf

__all__ = ["KINDS", "load_model"]

#: ``kind`` -> (final class, loader returning (model, sidecar))
KINDS = {cls.KIND: (cls, loader) for cls, loader in ((PosteriorModel, load_cfm), (OneStepPosterior, load_onestep),
                                                      (ImagePosteriorModel, load_image_model),
                                                      (VAENFModel, load_vaenf))}


def load_model(path: str | Path) -> tuple[Posterior, dict]:
    """(model, sidecar) of any posterior weights file, by its sidecar's ``kind`` (older photometric
    CFM sidecars without a kind load as ``cfm-photometry``)."""
    kind = read_sidecar(path).get("kind") or PosteriorModel.KIND
    if kind not in KINDS:
        raise WeightsError(f"{path}: not a posterior model (kind {kind!r}; one of {', '.join(KINDS)})")
    return KINDS[kind][1](path)
