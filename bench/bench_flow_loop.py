"""galdust's flow training (``posterior.vaenf.train_flow``: the package's one loop,
:func:`galdust.nn.train.fit`, random batches in compiled blocks of one epoch's worth of steps)
against flowjax's ``fit_to_data`` (shuffled epochs, one dispatch per batch): the log-likelihood of
fresh rows under each trained flow, and the wall time of each; prints a table.

    python bench/bench_flow_loop.py [--n 20000] [--epochs 30]

The problem is the linear-Gaussian conditional of ``tests/test_posterior_vaenf.py``. Not a test: it
never gates CI.
"""

from __future__ import annotations

import argparse
import math
import time

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
    rt = np.random.default_rng(1)  # fresh rows; the exact NLL is the conditional entropy (printed)
    ct = rt.uniform(-1, 1, (20000, 1))
    xt = np.c_[2.0 * ct[:, 0] + 0.3 * rt.normal(size=20000), -ct[:, 0] + 0.5 * rt.normal(size=20000)]
    nll = lambda f: -float(jnp.mean(f.log_prob(jnp.asarray(xt, jnp.float32), jnp.asarray(ct, jnp.float32))))  # noqa: E731
    exact = 0.5 * math.log(2 * math.pi * 0.09) + 0.5 * math.log(2 * math.pi * 0.25) + 1.0
    print(f"{a.n} rows, up to {a.epochs} epochs, batch {batch}, 4 coupling layers of width 32\n")
    print("| loop | validations run | best validation loss | NLL of 20,000 fresh rows (exact " + f"{exact:.4f}) | wall (with compilation) |")
    print("|---|---|---|---|---|")
    print(f"| galdust train_flow | {len(h.history)} | {h.best_val:.5f} | {nll(ours):.4f} | {t_ours:.1f} s |")
    print(f"| flowjax fit_to_data | {len(losses['val'])} | {min(losses['val']):.5f} | {nll(theirs):.4f} | {t_theirs:.1f} s |")


if __name__ == "__main__":
    main()
