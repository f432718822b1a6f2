"""The one training loop of galdust: every network (score priors, amortised dust maps, posteriors,
the distilled FIR MLP) is trained by :func:`fit`; what differs between models is a loss and a batch
sampler.

- **Batches.** ``sample(data, key) -> batch`` draws one step's batch from arrays kept on the device
  (``data``, any pytree): the steps up to the next validation or checkpoint then run as one compiled
  ``lax.scan`` (one dispatch per block: most of a small model's training time on a CPU is dispatch).
  ``host_sample(step) -> batch`` draws on the host instead (memory-mapped images, stores larger
  than the device), one compiled step per batch.
- **Determinism.** Step k's keys come from ``fold_in(seed, k)`` (the sampler's and the loss's), and
  a host sampler is given k, so a run resumed from a checkpoint follows the uninterrupted trajectory.
- **Validation.** ``validate(model)`` every ``eval_every`` steps and at the end: a float, or a dict
  whose ``"loss"`` (or ``"mean"``) is the score. ``keep_best`` returns the best validated weights;
  ``patience`` stops after that many validations without an improvement of ``min_delta``.
- **EMA.** ``ema`` (a decay, warmed up as min(ema, (1 + k)/(10 + k))): validated and returned.
- **Checkpoints.** ``checkpoint`` (a path prefix ``P``): ``P.eqx`` (weights, optimiser state, EMA,
  best) and ``P.json`` (step, history, ``match``) every ``ckpt_every`` steps and whenever the run
  ends. A later call with the same ``match`` (the caller's settings, data digest; the seed and step
  count are added) resumes there; a finished one returns its result at once, so a chain of trainings
  resumes stage by stage. Another ``match`` is an error naming the file.
- **Stopping early.** ``stop_at`` (a step) or ``max_minutes`` end the run as an interruption would
  (checkpoint written; ``Trained.done`` False).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from ..weights import digest

__all__ = ["fit", "adam", "Trained", "digest", "remove_checkpoint", "CheckpointMismatch"]


class CheckpointMismatch(ValueError):
    """A checkpoint written by a training with other settings or data."""


@dataclass
class Trained:
    """``model``: the best validated weights (``keep_best``), else the EMA, else the last; ``step``:
    steps taken; ``done``: False when stopped early by ``stop_at``/``max_minutes`` (resume to go on);
    ``history``: one dict per validation (step, mean train loss since the last, val, elapsed_s)."""

    model: Any
    history: list[dict] = field(default_factory=list)
    step: int = 0
    done: bool = True

    @property
    def seconds(self) -> float:
        return float(self.history[-1]["elapsed_s"]) if self.history else 0.0

    @property
    def best_val(self) -> float:
        return min(_score(h["val"]) for h in self.history if h["val"] is not None)


def adam(lr: float, steps: int, *, final: float = 0.05, warmup: int = 0, clip: float | None = None,
         weight_decay: float = 0.0):
    """Adam(W) with a cosine decay of the learning rate to ``final`` × ``lr`` over ``steps`` (after a
    linear ``warmup``; shortened to leave at least one decay step), optionally gradient clipping by global norm."""
    warmup = min(warmup, max(steps - 1, 0))  # one step: no warm-up (optax refuses a decay of 0 steps)
    if warmup:
        sched = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(steps, 1), lr * final)
    else:
        sched = optax.cosine_decay_schedule(lr, max(steps, 1), final)
    opt = optax.adamw(sched, weight_decay=weight_decay) if weight_decay else optax.adam(sched)
    return optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt


def _score(v) -> float:
    return float(v.get("loss", v.get("mean"))) if isinstance(v, dict) else float(v)


def _seed_json(seed):
    if isinstance(seed, int):
        return seed
    key = jr.key_data(seed) if jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key) else seed
    return [int(x) for x in np.asarray(key).ravel()]


def fit(model, loss: Callable, optimizer, *, steps: int, seed=0, sample: Callable | None = None, data=None,
        host_sample: Callable[[int], Any] | None = None, validate: Callable | None = None,
        eval_every: int | None = None, keep_best: bool = False, patience: int | None = None,
        min_delta: float = 1e-4, ema: float | None = None, trainable=eqx.is_inexact_array,
        is_leaf: Callable | None = None, block: int = 1000, checkpoint: str | Path | None = None,
        ckpt_every: int | None = None, match: dict | None = None, max_minutes: float | None = None,
        stop_at: int | None = None, log: Callable[[str], None] | None = None, log_every: int = 50,
        name: str = "training") -> Trained:
    """Train ``model`` for ``steps`` steps of ``optimizer`` on ``loss(model, batch, key) -> scalar``.

    ``seed``: an int or a PRNG key. Batches from ``sample(data, key)`` (compiled blocks of up to
    ``block`` steps) or ``host_sample(step)``; see the module docstring for validation, EMA,
    checkpoints and early ends. ``trainable``/``is_leaf``: the partition of ``model`` into trained
    arrays and the rest (``eqx.partition``). ``log``: progress lines (None: silent)."""
    if (sample is None) == (host_sample is None):
        raise ValueError("give one of sample (with data) and host_sample")
    log = log or (lambda s: None)
    base = jr.PRNGKey(seed) if isinstance(seed, int) else seed
    params, static = eqx.partition(model, trainable, is_leaf=is_leaf)
    opt_state = optimizer.init(params)
    ema_p = params if ema is not None else None
    best = params if keep_best else None
    eval_every = eval_every or steps
    ckpt_every = ckpt_every or eval_every
    state = dict(step=0, history=[], best_score=math.inf, bad=0, elapsed_s=0.0, done=False)
    ckpt = meta_path = None
    want = dict(match or {}, steps=steps, seed=_seed_json(seed))
    if checkpoint is not None:
        ckpt, meta_path = Path(f"{checkpoint}.eqx"), Path(f"{checkpoint}.json")
        if ckpt.exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("match") != json.loads(json.dumps(want)):
                raise CheckpointMismatch(f"{ckpt}: checkpoint written with other settings or data; remove it to restart")
            params, opt_state, ema_p, best = eqx.tree_deserialise_leaves(ckpt, (params, opt_state, ema_p, best))
            state.update({k: meta[k] for k in state})
            if not state["done"]:
                log(f"{name}: resuming from {ckpt} at step {state['step']}")

    def update(p, s, e, batch, k, key):
        lval, g = jax.value_and_grad(lambda q: loss(eqx.combine(q, static), batch, key))(p)
        upd, s = optimizer.update(g, s, p)
        p = optax.apply_updates(p, upd)
        if e is not None:
            d = jnp.minimum(ema, (1.0 + k) / (10.0 + k))
            e = jax.tree.map(lambda a, b: d * a + (1 - d) * b, e, p)
        return p, s, e, lval

    @eqx.filter_jit
    def run_block(p, s, e, data, start, n: int):
        def body(carry, i):
            kb, kl = jr.split(jr.fold_in(base, start + i))
            p, s, e, lval = update(*carry, sample(data, kb), (start + i).astype(jnp.float32), kl)
            return (p, s, e), lval

        (p, s, e), losses = jax.lax.scan(body, (p, s, e), jnp.arange(n))
        return p, s, e, losses

    @eqx.filter_jit
    def one_step(p, s, e, batch, k):
        return update(p, s, e, batch, k.astype(jnp.float32), jr.split(jr.fold_in(base, k))[1])

    t0 = time.perf_counter()
    elapsed0, start, losses = state["elapsed_s"], state["step"], []

    def elapsed():
        return elapsed0 + time.perf_counter() - t0

    def current():
        return eqx.combine(ema_p if ema is not None else params, static)

    def save_ckpt():
        if ckpt is None:
            return
        from ..io import atomic_path

        state["elapsed_s"] = elapsed()
        with atomic_path(ckpt, overwrite=True) as tmp:
            eqx.tree_serialise_leaves(tmp, (params, opt_state, ema_p, best))
        with atomic_path(meta_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(dict(state, match=want), indent=1, default=float) + "\n")

    def evaluate():
        """Validate (and log); the best weights so far are kept in ``best``."""
        nonlocal best
        v = validate(current()) if validate is not None else None
        tl = float(np.mean(losses)) if losses else None
        state["history"].append({"step": state["step"], "train": tl, "val": v, "elapsed_s": round(elapsed(), 2)})
        losses.clear()
        vs = "" if v is None else f" validation {_score(v):.4f}"
        log(f"{name} step {state['step']}/{steps}:" + ("" if tl is None else f" train {tl:.4f}") + vs)
        if v is None or not (keep_best or patience):
            return
        sc = _score(v)  # patience counts validations that gain less than min_delta; the best is the best
        state["bad"] = 0 if sc < state["best_score"] - min_delta else state["bad"] + 1
        if sc < state["best_score"]:
            state["best_score"] = sc
            if keep_best:
                best = ema_p if ema is not None else params

    while not state["done"]:
        k = state["step"]
        if k >= steps or (patience and state["bad"] >= patience):
            if not state["history"] or state["history"][-1]["step"] != k:
                evaluate()
            state["done"] = True
            save_ckpt()
            break
        if (stop_at is not None and k >= stop_at) or (max_minutes is not None and elapsed() - elapsed0 > 60 * max_minutes):
            log(f"{name}: stopping at step {k} (run again to resume)")
            save_ckpt()
            return Trained(current(), state["history"], k, done=False)
        nxt = min(steps, (k // eval_every + 1) * eval_every, (k // ckpt_every + 1) * ckpt_every,
                  *([stop_at] if stop_at is not None and stop_at > k else []))
        if sample is not None:
            n = min(nxt - k, block)
            params, opt_state, ema_p, ls = run_block(params, opt_state, ema_p, data, jnp.asarray(k), n)
            losses.extend(np.asarray(ls).tolist())
            state["step"] = k + n
        else:
            params, opt_state, ema_p, lval = one_step(params, opt_state, ema_p, host_sample(k), jnp.asarray(k))
            losses.append(float(lval))
            state["step"] = k + 1
            if state["step"] % log_every == 0 and state["step"] % eval_every:
                rate = (state["step"] - start) / (time.perf_counter() - t0)
                log(f"{name} step {state['step']}/{steps}: loss {np.mean(losses[-log_every:]):.4f} "
                    f"({rate:.2f} steps/s)")
        k = state["step"]
        if k % eval_every == 0 and k < steps:
            evaluate()
        if k % ckpt_every == 0 and k < steps:
            save_ckpt()
    chosen = best if keep_best and best is not None else (ema_p if ema is not None else params)
    return Trained(eqx.combine(chosen, static), state["history"], state["step"], done=True)


def remove_checkpoint(prefix: str | Path) -> None:
    """Delete ``prefix.eqx`` and ``prefix.json`` (a training whose result has been written)."""
    for suffix in (".eqx", ".json"):
        Path(f"{prefix}{suffix}").unlink(missing_ok=True)


def stderr_log(s: str) -> None:
    print(s, file=sys.stderr, flush=True)
