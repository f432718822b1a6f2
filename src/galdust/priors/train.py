"""Training of score priors by denoising score matching: resumable, deterministic, with checkpoints.

``train(kind, data, steps, out, ...)`` trains the conditional dust prior (``kind="dust"``: x = D,
condition S) or the fallback host prior (``kind="host"``: x = S) on a bulk store written by
``galdust simulate --bulk``. The last ``n_val`` rows of the store are held out for validation.

Determinism: the batch indices, augmentations (the 8 rotations/flips, applied jointly to x and S)
and noise of step k are drawn from ``fold_in(PRNGKey(seed), k)``, so an interrupted run resumed from
its checkpoint follows the same trajectory as an uninterrupted one.

Checkpoints (``OUT.ckpt.eqx`` + ``OUT.ckpt.json``) hold the model, its EMA, the optimiser state and
the step; the final file ``OUT`` holds the EMA weights with a JSON sidecar (config, data seed,
commit, losses).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..io import atomic_path
from ..nn import CondUNet
from ..weights import git_commit, save
from .score import dsm_loss

__all__ = ["train", "unet_from_config", "make_train_step", "eps_function", "augment", "DEFAULT_CONFIG"]

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


def make_train_step(eps_fn: Callable, optimizer, sigma_min: float, sigma_max: float, ema_decay: float = 0.999):
    """A jitted step ``(model, ema, opt_state, x, cond, key, step) -> (model, ema, opt_state, loss)``."""

    @eqx.filter_jit
    def step_fn(model, ema, opt_state, x, cond, key, step):
        def loss_fn(m):
            return dsm_loss(lambda a, c, s: eps_fn(m, a, c, s), x, cond, key, sigma_min, sigma_max)

        loss, grads = eqx.filter_value_and_grad(loss_fn)(model)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        model = eqx.apply_updates(model, updates)
        d = jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))
        ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p if eqx.is_array(p) else p, ema, model,
                           is_leaf=lambda v: v is None)
        return model, ema, opt_state, loss

    return step_fn


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
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a prior; resumes from ``OUT.ckpt.eqx`` when present. Returns the sidecar dict.

    ``steps`` fixes the learning-rate schedule; ``max_minutes`` or ``stop_at`` (a step number) end
    this run early with a checkpoint, as an interruption would, and a later call with the same
    arguments continues along the same trajectory.
    """
    if kind not in ("dust", "host"):
        raise ValueError(f"kind must be 'dust' or 'host', not {kind!r}")
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(out)
    cfg = dict(DEFAULT_CONFIG, **(config or {}), kind=kind)
    x_tr, c_tr, x_va, c_va, data_seed, data_cfg = _load_store(data, kind, n_val)
    n_tr = len(x_tr)
    eps_fn = eps_function(kind, cfg["sigma_data"])
    sched = optax.warmup_cosine_decay_schedule(0.0, lr, min(200, max(steps // 10, 1)), max(steps, 1), lr * 0.05)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched))
    model = unet_from_config(cfg, key=jax.random.PRNGKey(seed))
    ema = model
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    start, history, elapsed0 = 0, [], 0.0
    ckpt = out.with_name(out.name + ".ckpt.eqx")
    ckpt_meta = ckpt.with_suffix(".json")
    if ckpt.exists() and ckpt_meta.exists():
        meta = json.loads(ckpt_meta.read_text())
        if meta["config"] != cfg or meta["seed"] != seed or meta["batch"] != batch:
            raise ValueError(f"{ckpt}: checkpoint was written with another config/seed/batch; remove it to restart")
        model, ema, opt_state = eqx.tree_deserialise_leaves(ckpt, (model, ema, opt_state))
        start, history, elapsed0 = meta["step"], meta["history"], meta["elapsed_s"]
        log(f"resuming from {ckpt} at step {start}")
    step_fn = make_train_step(eps_fn, optimizer, cfg["sigma_min"], cfg["sigma_max"])
    base = jax.random.PRNGKey(seed)

    @jax.jit
    def batch_keys(step):
        k = jax.random.fold_in(base, step)
        k_idx, k_aug, k_noise = jax.random.split(k, 3)
        return jax.random.randint(k_idx, (batch,), 0, n_tr), jax.random.split(k_aug, batch), k_noise

    aug = jax.jit(jax.vmap(augment))
    t0 = time.perf_counter()
    losses: list[float] = []
    bar = _bar(steps, start) if progress and sys.stderr.isatty() else None
    step = start

    def checkpoint(step):
        val = _val_loss(eps_fn, ema, x_va, c_va, cfg["sigma_min"], cfg["sigma_max"])
        history.append({"step": step, "train": float(np.mean(losses[-log_every:])) if losses else None,
                        "val": val, "elapsed_s": elapsed0 + time.perf_counter() - t0})
        with atomic_path(ckpt, overwrite=True) as tmp:
            eqx.tree_serialise_leaves(tmp, (model, ema, opt_state))
        meta = {"config": cfg, "seed": seed, "batch": batch, "step": step, "history": history,
                "elapsed_s": elapsed0 + time.perf_counter() - t0, "steps_target": steps}
        with atomic_path(ckpt_meta, overwrite=True) as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
        log(f"step {step}: val {val['mean']:.4f} " + " ".join(f"σ={k}:{v:.4f}" for k, v in val.items() if k != "mean"))

    try:
        while step < steps:
            if max_minutes is not None and (time.perf_counter() - t0) / 60 > max_minutes:
                log(f"stopping at step {step}: --max-minutes {max_minutes} reached")
                break
            if stop_at is not None and step >= stop_at:
                break
            idx, kaug, knoise = batch_keys(step)
            idx = np.asarray(idx)
            if c_tr is None:
                xb = aug(kaug, jnp.asarray(x_tr[idx]))
                cb = None
            else:
                both = aug(kaug, jnp.asarray(np.stack([x_tr[idx], c_tr[idx]], axis=1)))
                xb, cb = both[:, 0], both[:, 1]
            model, ema, opt_state, loss = step_fn(model, ema, opt_state, xb, cb, knoise, jnp.float32(step))
            step += 1
            losses.append(float(loss))
            if bar is not None:
                bar[0].update(bar[1], completed=step, description=f"loss {np.mean(losses[-50:]):.4f}")
            elif step % log_every == 0:
                rate = (step - start) / (time.perf_counter() - t0)
                log(f"step {step}/{steps} loss {np.mean(losses[-log_every:]):.4f} ({rate:.2f} steps/s)")
            if step % ckpt_every == 0 and step < steps:
                checkpoint(step)
    finally:
        if bar is not None:
            bar[0].stop()
    checkpoint(step)
    final = history[-1]
    sidecar = {
        "kind": kind,
        "config": cfg,
        "seed": seed,
        "data": {"file": Path(data).name, "data_seed": data_seed, "n_train": n_tr, "n_val": len(x_va),
                 "simulator_config": data_cfg},
        "training": {"steps": step, "batch": batch, "lr": lr, "optimizer": "adam+cosine, clip 1.0, EMA 0.999",
                     "wall_s": final["elapsed_s"], "device": jax.devices()[0].platform},
        "metrics": {"val_loss": final["val"], "train_loss_last": final["train"]},
        "history": history,
        "commit": git_commit(),
    }
    save(out, ema, sidecar)
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(eqx.filter(ema, eqx.is_array)))
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {n_params} parameters) after {step} steps")
    return sidecar


def _bar(total: int, done: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    p = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                 TimeElapsedColumn(), TimeRemainingColumn())
    p.start()
    return p, p.add_task("training", total=total, completed=done)

