"""galdust's flow-training loop against flowjax's ``fit_to_data``: the same trained flow, and the wall
time of each; prints a table.

    python bench/bench_flow_loop.py [--n 20000] [--epochs 30]

``posterior.vaenf.train_flow`` reimplements flowjax's loop (same split, shuffles, batches, keys,
patience, best epoch) with each epoch one compiled program. The problem is the linear-Gaussian
conditional of ``tests/test_posterior_vaenf.py``. Not a test: it never gates CI.
"""

from __future__ import annotations

import argparse
import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax


def main():
    from flowjax.train import fit_to_data

    from galdust.posterior.vaenf import make_flow, train_flow, typed_key

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=30)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    c = rng.uniform(-1, 1, (a.n, 1))
    x = np.c_[2.0 * c[:, 0] + 0.3 * rng.normal(size=a.n), -c[:, 0] + 0.5 * rng.normal(size=a.n)]
    flow = make_flow(2, 1, key=jr.PRNGKey(0), layers=4, width=32)
    lr, batch = 3e-3, 512
    t0 = time.perf_counter()
    ours, h = train_flow(flow, x, c, key=jr.PRNGKey(1), max_epochs=a.epochs, lr=lr, batch=batch)
    t_ours = time.perf_counter() - t0
    steps = a.epochs * math.ceil((a.n - int(0.1 * a.n)) / batch)
    t0 = time.perf_counter()
    theirs, losses = fit_to_data(typed_key(jr.PRNGKey(1)), flow, (jnp.asarray(x, jnp.float32), jnp.asarray(c, jnp.float32)),
                                 optimizer=optax.adam(optax.cosine_decay_schedule(lr, steps, 0.02)), max_epochs=a.epochs,
                                 max_patience=6, batch_size=batch, show_progress=False)
    t_theirs = time.perf_counter() - t0
    la = jax.tree.leaves(eqx.filter(ours, eqx.is_array))
    lb = jax.tree.leaves(eqx.filter(theirs, eqx.is_array))
    dp = max(float(jnp.max(jnp.abs(p - q))) for p, q in zip(la, lb))
    dv = max(abs(p - q) for p, q in zip(h["val"], losses["val"]))
    print(f"{a.n} rows, up to {a.epochs} epochs, batch {batch}, 4 coupling layers of width 32\n")
    print("| loop | epochs run | best validation loss | wall (with compilation) |")
    print("|---|---|---|---|")
    print(f"| galdust train_flow | {len(h['val'])} | {min(h['val']):.5f} | {t_ours:.1f} s |")
    print(f"| flowjax fit_to_data | {len(losses['val'])} | {min(losses['val']):.5f} | {t_theirs:.1f} s |")
    print(f"\nlargest parameter difference {dp:.3g}; largest validation-loss difference {dv:.3g}")


if __name__ == "__main__":
    main()
