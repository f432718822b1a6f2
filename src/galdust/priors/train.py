"""Training of score priors by denoising score matching: resumable, deterministic, with checkpoints.

``train(kind, data, steps, out, ...)`` trains the conditional dust prior (``kind="dust"``: x = D,
condition S) or the fallback host prior (``kind="host"``: x = S) on a bulk store written by
``galdust simulate --bulk``. The last ``n_val`` rows of the store are held out for validation.

Determinism: the batch indices, augmentations (the 8 rotations/flips, applied jointly to x and S)
and noise of step k are drawn from ``fold_in(PRNGKey(seed), k)``, so an interrupted run resumed from
its checkpoint follows the same trajectory as an uninterrupted one.

Checkpoints (``OUT.ckpt.eqx`` + ``OUT.ckpt.json``, :func:`galdust.nn.train.fit`) hold the model, its
EMA, the optimiser state and the step; the final file ``OUT`` holds the EMA weights with a JSON sidecar (config, data seed,
commit, losses).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..nn import CondUNet
from ..weights import git_commit, save
from .score import dsm_loss

__all__ = ["train", "unet_from_config", "eps_function", "augment", "DEFAULT_CONFIG"]

DEFAULT_CONFIG: dict[str, Any] = {
    "widths": [24, 48, 96],
    "stem": 2,
    "emb_dim": 64,
    "sigma_min": 0.005,
    "sigma_max": 1.0,
    "sigma_data": 0.25,
    "size": 64,
    "representation": "D",
}
VAL_SIGMAS = (0.01, 0.03, 0.1, 0.3)


def unet_from_config(config: dict[str, Any], key=None) -> CondUNet:
    """A U-Net with the architecture recorded in a sidecar config (weights drawn from ``key``)."""
    c_in = 2 if config.get("kind", "dust") == "dust" else 1
    return CondUNet(c_in=c_in, c_out=1, widths=tuple(config["widths"]), emb_dim=int(config["emb_dim"]),
                    stem=int(config["stem"]), key=jax.random.PRNGKey(0) if key is None else key)


def eps_function(kind: str, sigma_data: float) -> Callable:
    """The −ε predictor ``f(net, x̃, cond, σ)`` for one example, as the priors evaluate it."""
    if kind == "dust":

        def f(net, xt, cond, s):
            c = 1.0 / jnp.sqrt(sigma_data**2 + s**2)
            return net(jnp.stack([(xt - 1.0) * c, cond]), jnp.log(s))[0]

    else:

        def f(net, xt, cond, s):
            c = 1.0 / jnp.sqrt(sigma_data**2 + s**2)
            return net((xt * c)[None], jnp.log(s))[0]

    return f


def augment(key, x):
    """One of the 8 rotations/flips of the (..., H, W) array ``x`` (same for all leading axes)."""
    k = jax.random.randint(key, (), 0, 8)
    xs = [jnp.rot90(x, r, axes=(-2, -1)) for r in range(4)]
    xs += [jnp.flip(a, axis=-1) for a in xs]
    return jax.lax.switch(k, [lambda i=i: xs[i] for i in range(8)])


def _val_loss(eps_fn, model, x, cond, sigma_min, sigma_max, batch=64):
    """Validation loss per fixed σ (fixed noise), averaged over the held-out rows."""

    @eqx.filter_jit
    def one(m, xb, cb, s, key):
        return dsm_loss(lambda a, c, ss: eps_fn(m, a, c, ss), xb, cb, key, sigma_min, sigma_max,
                        sigmas=jnp.full((xb.shape[0],), s))

    out = {}
    for j, s in enumerate(VAL_SIGMAS):
        tot, n = 0.0, 0
        for i in range(0, len(x), batch):
            xb = jnp.asarray(x[i : i + batch])
            cb = None if cond is None else jnp.asarray(cond[i : i + batch])
            if xb.shape[0] < batch:
                continue
            tot += float(one(model, xb, cb, jnp.float32(s), jax.random.PRNGKey(1000 + j))) * xb.shape[0]
            n += xb.shape[0]
        out[f"{s:g}"] = tot / max(n, 1)
    out["mean"] = float(np.mean([out[f"{s:g}"] for s in VAL_SIGMAS]))
    return out


def _load_store(data: str | Path, kind: str, n_val: int):
    with np.load(data, allow_pickle=False) as d:
        S = np.asarray(d["S"], np.float32)
        D = np.asarray(d["D"], np.float32) if kind == "dust" else None
        seed = int(d["seed"]) if "seed" in d.files else -1
        cfg = str(d["config"]) if "config" in d.files else ""
    n = len(S)
    if n_val >= n:
        raise ValueError(f"{data}: {n} rows, cannot hold out {n_val} for validation")
    x = D if kind == "dust" else S
    cond = S if kind == "dust" else None
    split = n - n_val
    return (x[:split], None if cond is None else cond[:split], x[split:],
            None if cond is None else cond[split:], seed, cfg)


def train(
    kind: str,
    data: str | Path,
    steps: int,
    out: str | Path,
    *,
    seed: int = 0,
    batch: int = 32,
    lr: float = 3e-4,
    ckpt_every: int = 500,
    log_every: int = 50,
    n_val: int = 1000,
    max_minutes: float | None = None,
    stop_at: int | None = None,
    config: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a prior (:func:`galdust.nn.train.fit`); resumes from ``OUT.ckpt.eqx`` when present.
    Returns the sidecar dict, or ``{"stopped_at": step}`` when ``max_minutes`` or ``stop_at`` (a step
    number) ended the run early with a checkpoint, as an interruption would: a later call with the
    same arguments continues along the same trajectory. ``steps`` fixes the learning-rate schedule.
    """
    from ..nn.train import adam, fit, stderr_log

    if kind not in ("dust", "host"):
        raise ValueError(f"kind must be 'dust' or 'host', not {kind!r}")
    log = log or stderr_log
    out = Path(out)
    cfg = dict(DEFAULT_CONFIG, **(config or {}), kind=kind)
    x_tr, c_tr, x_va, c_va, data_seed, data_cfg = _load_store(data, kind, n_val)
    n_tr = len(x_tr)
    eps_fn = eps_function(kind, cfg["sigma_data"])
    base = jax.random.PRNGKey(seed)
    aug = jax.jit(jax.vmap(augment))

    def host_sample(step):
        """Step k's rows, orientations (joint for x and S) and noise key, from fold_in(seed, k)."""
        k_idx, k_aug, k_noise = jax.random.split(jax.random.fold_in(base, step), 3)
        idx = np.asarray(jax.random.randint(k_idx, (batch,), 0, n_tr))
        kaug = jax.random.split(k_aug, batch)
        if c_tr is None:
            return aug(kaug, jnp.asarray(x_tr[idx])), None, k_noise
        both = aug(kaug, jnp.asarray(np.stack([x_tr[idx], c_tr[idx]], axis=1)))
        return both[:, 0], both[:, 1], k_noise

    def loss(m, b, _):
        xb, cb, k_noise = b
        return dsm_loss(lambda a, c, s: eps_fn(m, a, c, s), xb, cb, k_noise, cfg["sigma_min"], cfg["sigma_max"])

    def validate(m):
        return _val_loss(eps_fn, m, x_va, c_va, cfg["sigma_min"], cfg["sigma_max"])

    res = fit(unet_from_config(cfg, key=base), loss, adam(lr, steps, warmup=min(200, max(steps // 10, 1)), clip=1.0),
              steps=steps, seed=seed, host_sample=host_sample, validate=validate, eval_every=ckpt_every, ema=0.999,
              checkpoint=out.with_name(out.name + ".ckpt"), match={"config": cfg, "batch": batch, "lr": lr},
              max_minutes=max_minutes, stop_at=stop_at, log=log, log_every=log_every, name=f"{kind} prior")
    if not res.done:
        return {"stopped_at": res.step}
    final = res.history[-1]
    sidecar = {
        "kind": kind,
        "config": cfg,
        "seed": seed,
        "data": {"file": Path(data).name, "data_seed": data_seed, "n_train": n_tr, "n_val": len(x_va),
                 "simulator_config": data_cfg},
        "training": {"steps": res.step, "batch": batch, "lr": lr, "optimizer": "adam+cosine, clip 1.0, EMA 0.999",
                     "wall_s": final["elapsed_s"], "device": jax.devices()[0].platform},
        "metrics": {"val_loss": final["val"], "train_loss_last": final["train"]},
        "history": res.history,
        "commit": git_commit(),
    }
    save(out, res.model, sidecar)
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(eqx.filter(res.model, eqx.is_array)))
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {n_params} parameters) after {res.step} steps")
    return sidecar
