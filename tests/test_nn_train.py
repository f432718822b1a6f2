"""The one training loop (galdust.nn.train.fit): a known answer, early stopping, and resumption after
an interruption or a kill on the uninterrupted trajectory, bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from galdust.nn.train import CheckpointMismatch, adam, fit

X = np.linspace(-1.0, 1.0, 512, dtype=np.float32)
Y = (3.0 * X - 1.0 + 0.1 * np.random.default_rng(0).normal(size=512)).astype(np.float32)


class Line(eqx.Module):
    w: jax.Array
    b: jax.Array

    def __call__(self, x):
        return self.w * x + self.b


def mse(m, batch, key):
    x, y = batch
    return jnp.mean((m(x) - y) ** 2)


def sample(data, key):
    i = jr.randint(key, (32,), 0, data[0].shape[0])
    return data[0][i], data[1][i]


def val(m):
    return float(mse(m, (X, Y), None))


def leaves(m):
    return [np.asarray(a) for a in jax.tree.leaves(m)]


def test_least_squares_line_is_recovered_and_the_best_weights_kept():
    res = fit(Line(jnp.zeros(()), jnp.zeros(())), mse, adam(0.1, 600), steps=600, seed=0, sample=sample,
              data=(X, Y), validate=val, eval_every=50, keep_best=True, patience=3)
    w, b = np.polyfit(X, Y, 1)  # the least-squares answer
    assert float(res.model.w) == pytest.approx(w, abs=0.02) and float(res.model.b) == pytest.approx(b, abs=0.02)
    assert res.done and [h["step"] for h in res.history][:3] == [50, 100, 150]
    assert val(res.model) == pytest.approx(res.best_val) and res.best_val == pytest.approx(0.01, rel=0.15)
    scores = [h["val"] for h in res.history]
    assert res.step < 600  # stopped early: the last 3 (patience) validations gained < 1e-4 (min_delta) each
    assert all(scores[i] > min(scores[:i]) - 1e-4 for i in range(len(scores) - 3, len(scores)))


@pytest.mark.parametrize("mode", ["device", "host"])
def test_interrupted_run_resumes_on_the_same_trajectory(tmp_path, mode):
    kw = dict(steps=40, seed=3, validate=val, eval_every=10, ckpt_every=10, block=7, ema=0.9)
    if mode == "device":
        kw.update(sample=sample, data=(X, Y))
    else:
        rows = lambda k: np.random.default_rng([5, k]).integers(0, 512, 32)  # noqa: E731
        kw.update(host_sample=lambda k: (X[rows(k)], Y[rows(k)]))
    m0 = Line(jnp.zeros(()), jnp.zeros(()))
    full = fit(m0, mse, adam(0.05, 40), **kw)
    part = fit(m0, mse, adam(0.05, 40), checkpoint=tmp_path / "c", stop_at=23, **kw)
    assert not part.done and part.step == 23 and (tmp_path / "c.eqx").exists()
    assert json.loads((tmp_path / "c.json").read_text())["step"] == 23
    rest = fit(m0, mse, adam(0.05, 40), checkpoint=tmp_path / "c", **kw)
    assert rest.done and rest.step == 40
    for a, b in zip(leaves(full.model), leaves(rest.model)):
        np.testing.assert_array_equal(a, b)  # the EMA of the uninterrupted run, bit for bit
    assert [h["step"] for h in rest.history] == [h["step"] for h in full.history] == [10, 20, 30, 40]
    # a finished checkpoint is the result: a rerun returns it at once; other settings are refused
    again = fit(m0, mse, adam(0.05, 40), checkpoint=tmp_path / "c", **kw)
    assert again.step == 40 and all(np.array_equal(a, b) for a, b in zip(leaves(again.model), leaves(rest.model)))
    with pytest.raises(CheckpointMismatch, match="c.eqx"):
        fit(m0, mse, adam(0.05, 40), checkpoint=tmp_path / "c", match={"lr": 0.05}, **kw)


KILLED = """
import sys, time
import jax.numpy as jnp, numpy as np
sys.path.insert(0, {here!r})
from test_nn_train import Line, X, Y, mse, val
from galdust.nn.train import adam, fit

def host(k):
    time.sleep({pause})  # a slow reader: the test kills the process between checkpoints
    r = np.random.default_rng([5, k]).integers(0, 512, 32)
    return X[r], Y[r]

res = fit(Line(jnp.zeros(()), jnp.zeros(())), mse, adam(0.05, 60), steps=60, seed=1, host_sample=host,
          validate=val, eval_every=10, checkpoint={ckpt!r})
np.save({out!r}, np.array([float(res.model.w), float(res.model.b)]))
"""


def test_a_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    here = str(Path(__file__).parent)

    def script(pause, ckpt, out):
        p = tmp_path / f"run_{pause}_{Path(out).stem}.py"
        p.write_text(KILLED.format(here=here, pause=pause, ckpt=str(ckpt), out=str(out)))
        return [sys.executable, str(p)]

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    rows = lambda k: np.random.default_rng([5, k]).integers(0, 512, 32)  # noqa: E731 - the script's batches
    ref = fit(Line(jnp.zeros(()), jnp.zeros(())), mse, adam(0.05, 60), steps=60, seed=1,
              host_sample=lambda k: (X[rows(k)], Y[rows(k)]), validate=val, eval_every=10).model
    proc = subprocess.Popen(script(0.05, tmp_path / "k", tmp_path / "k.npy"), env=env)
    meta = tmp_path / "k.json"
    t0 = time.time()
    while time.time() - t0 < 120 and not (meta.exists() and json.loads(meta.read_text())["step"] >= 20):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "k.npy").exists()
    killed_at = json.loads(meta.read_text())["step"]
    assert 20 <= killed_at < 60
    subprocess.run(script(0.0, tmp_path / "k", tmp_path / "k.npy"), check=True, env=env, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "k.npy"), np.array([float(ref.w), float(ref.b)]))


def test_a_one_step_schedule_has_no_warm_up_and_trains():
    """``--steps 1`` with the trainings' warm-up of one step: optax refused a decay of 0 steps."""
    import optax

    from galdust.nn.train import adam

    opt = adam(1e-2, 1, warmup=1)
    params = jnp.ones(3)
    updates, _ = opt.update(jnp.ones(3), opt.init(params), params)
    new = optax.apply_updates(params, updates)
    assert np.all(np.asarray(new) < 1.0) and np.all(np.isfinite(np.asarray(new)))
