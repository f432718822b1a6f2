import json

import equinox as eqx
import jax
import numpy as np
import pytest

from galdust.priors.train import train, unet_from_config
from galdust.simulate import SimConfig, simulate
from galdust.simulate.store import write_bulk

TINY = {"widths": [8, 16], "stem": 2, "emb_dim": 16, "size": 16}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    cfg = SimConfig(size=16, n_los=16)
    sim = simulate(jax.random.PRNGKey(0), 48, cfg, batch=48)
    return write_bulk(sim, cfg, tmp_path_factory.mktemp("d") / "s.npz", seed=0)


def leaves(m):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(m, eqx.is_array))]


def test_resume_is_deterministic_and_writes_sidecar(store, tmp_path):
    kw = dict(seed=3, batch=4, ckpt_every=3, n_val=8, config=TINY, log=lambda s: None)
    full = train("dust", store, 6, tmp_path / "a.eqx", **kw)
    # interrupted after 4 steps (a checkpoint, no weights file), then resumed to 6
    assert train("dust", store, 6, tmp_path / "b.eqx", stop_at=4, **kw) == {"stopped_at": 4}
    assert not (tmp_path / "b.eqx").exists()
    resumed = train("dust", store, 6, tmp_path / "b.eqx", **kw)
    load = lambda p: eqx.tree_deserialise_leaves(p, unet_from_config(dict(TINY, kind="dust")))  # noqa: E731
    for x, y in zip(leaves(load(tmp_path / "a.eqx")), leaves(load(tmp_path / "b.eqx"))):
        np.testing.assert_array_equal(x, y)  # the uninterrupted trajectory, bit for bit
    assert full["training"]["steps"] == resumed["training"]["steps"] == 6
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["data"]["data_seed"] == 0 and side["data"]["n_val"] == 8
    assert set(side["metrics"]["val_loss"]) >= {"0.01", "0.1", "mean"}
    assert side["config"]["representation"] == "D"


def test_checkpoint_with_other_config_refuses(store, tmp_path):
    # interrupted at step 3 (the run of the test above: its compiled step is reused), then restarted
    # with another architecture
    kw = dict(seed=3, batch=4, ckpt_every=3, n_val=8, log=lambda s: None)
    train("dust", store, 6, tmp_path / "c.eqx", config=TINY, stop_at=3, **kw)
    with pytest.raises(ValueError, match="other settings"):
        train("dust", store, 6, tmp_path / "c.eqx", config=dict(TINY, emb_dim=8), **kw)
