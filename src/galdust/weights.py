"""Weights on disk: equinox leaf serialisation + a JSON sidecar (config, data seed, commit, metrics).

``save(path, model, sidecar)`` writes ``path`` (``.eqx``) and ``path.with_suffix('.json')``
atomically; the sidecar records the SHA-256 of the weights, checked by :func:`load`. No pickle.
Models of several files (the xgboost forests, boosters and classifiers) live in a folder:
``save_folder(directory, write_files, sidecar_name, sidecar)`` writes it atomically with a sidecar
recording the SHA-256 of every file, checked by :func:`load_folder`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import equinox as eqx

from . import __version__
from .io import atomic_dir, atomic_path

__all__ = ["save", "load", "save_folder", "load_folder", "read_sidecar", "git_commit", "sha256", "digest",
           "WeightsError"]


class WeightsError(RuntimeError):
    """Weights missing, corrupt, or not matching their sidecar."""


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest(*values) -> str:
    """A short SHA-256 of arrays (shape, dtype, bytes) and JSON-able settings: the key of a training's
    checkpoint (the same data and settings, or start again) and of a tree fit kept to resume."""
    import numpy as np

    h = hashlib.sha256()
    for v in values:
        if hasattr(v, "shape") and hasattr(v, "dtype"):
            a = np.ascontiguousarray(np.asarray(v))
            h.update(str((a.shape, a.dtype.str)).encode() + a.tobytes())
        else:
            h.update(json.dumps(v, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def git_commit() -> str:
    """Commit of the galdust source tree, or 'unknown' outside a git checkout."""
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                           timeout=5)
        return r.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def save(path: str | os.PathLike, model: Any, sidecar: dict[str, Any], *, overwrite: bool = True) -> Path:
    """Serialise ``model``'s leaves to ``path`` and write the JSON sidecar next to it."""
    path = Path(path)
    with atomic_path(path, overwrite) as tmp:
        eqx.tree_serialise_leaves(tmp, model)
        digest = sha256(tmp)
    meta = dict(sidecar)
    meta.setdefault("galdust_version", __version__)
    meta.setdefault("commit", git_commit())
    meta["weights_file"] = path.name
    meta["sha256"] = digest
    meta["bytes"] = path.stat().st_size
    with atomic_path(path.with_suffix(".json"), overwrite) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + "\n")
    return path


def _json_default(o):
    try:
        return o.item()
    except AttributeError:
        return str(o)


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    side = Path(path).with_suffix(".json")
    if not side.exists():
        raise WeightsError(f"{side}: sidecar missing (weights need their JSON sidecar)")
    return json.loads(side.read_text())


def load(path: str | os.PathLike, skeleton: Callable[[dict[str, Any]], Any], *, check_hash: bool = True,
         by_shape: bool = True):
    """Load weights: ``skeleton(sidecar)`` builds a model of the right shape, filled from ``path``.
    ``by_shape=False`` builds the skeleton concretely (models that keep closures over their arrays,
    such as flowjax's couplings, cannot be built under ``eval_shape``).

    Returns ``(model, sidecar)``.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found")
    meta = read_sidecar(path)
    if check_hash and meta.get("sha256") and sha256(path) != meta["sha256"]:
        raise WeightsError(f"{path}: SHA-256 does not match its sidecar (corrupt or replaced file)")
    # the skeleton by shape only: initialising a network op by op costs seconds (docs/implementation.md),
    # and every value is replaced by the file anyway. The sidecar is closed over, not an argument that
    # eval_shape would walk leaf by leaf (large sidecars: docs/implementation.md)
    like = eqx.filter_eval_shape(lambda: skeleton(meta)) if by_shape else skeleton(meta)
    model = eqx.tree_deserialise_leaves(path, like)
    return model, meta


def save_folder(directory: str | os.PathLike, write_files: Callable[[Path], Iterable[str] | None], sidecar_name: str,
                sidecar: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write a model of several files: ``write_files(tmp)`` fills a temporary folder, renamed onto
    ``directory`` once the sidecar ``sidecar_name`` is written. The sidecar records the SHA-256 of the
    files ``write_files`` returns the names of (None: every file it wrote), checked by :func:`load_folder`."""
    directory = Path(directory)
    with atomic_dir(directory, overwrite) as tmp:
        names = write_files(tmp)
        if names is None:
            names = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file())
        meta = dict(sidecar)
        meta.setdefault("galdust_version", __version__)
        meta.setdefault("commit", git_commit())
        meta["files"] = {n: sha256(tmp / n) for n in names if n != sidecar_name}
        (tmp / sidecar_name).write_text(json.dumps(meta, indent=1, default=_json_default) + "\n")
    return directory


def load_folder(directory: str | os.PathLike, sidecar_name: str, *, check_hash: bool = True) -> dict[str, Any]:
    """The sidecar of a model folder, after checking the SHA-256 of every file it records (a sidecar
    without hashes, written before they were recorded, is returned unchecked)."""
    directory = Path(directory)
    side = directory / sidecar_name
    if not side.is_file():
        raise WeightsError(f"{side}: sidecar missing ({directory} is not a model folder)")
    try:
        meta = json.loads(side.read_text())
    except ValueError as e:
        raise WeightsError(f"{side}: not a JSON sidecar ({' '.join(str(e).split())[:200]})") from None
    for name, digest in (meta.get("files") or {}).items():
        f = directory / name
        if not f.is_file():
            raise WeightsError(f"{f}: file missing from the model folder (its sidecar {sidecar_name} records it)")
        if check_hash and sha256(f) != digest:
            raise WeightsError(f"{f}: SHA-256 does not match {sidecar_name} (corrupt or replaced file)")
    return meta
