import json

import equinox as eqx
import jax
import numpy as np
import pytest

from galdust.nn import MLP
from galdust.weights import WeightsError, load, save


def test_round_trip_with_sidecar(tmp_path):
    m = MLP(3, width=8, depth=1, key=jax.random.PRNGKey(0))
    p = save(tmp_path / "m.eqx", m, {"config": {"dim": 3, "width": 8}, "seed": 1, "metrics": {"loss": 0.5}})
    side = json.loads((tmp_path / "m.json").read_text())
    assert side["seed"] == 1 and side["metrics"]["loss"] == 0.5
    assert len(side["sha256"]) == 64 and side["bytes"] == p.stat().st_size and "commit" in side
    m2, meta = load(p, lambda s: MLP(s["config"]["dim"], width=s["config"]["width"], depth=1,
                                     key=jax.random.PRNGKey(9)))
    for a, b in zip(jax.tree.leaves(eqx.filter(m, eqx.is_array)), jax.tree.leaves(eqx.filter(m2, eqx.is_array))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_corrupt_or_missing_weights_fail_clearly(tmp_path):
    m = MLP(3, width=8, depth=1, key=jax.random.PRNGKey(0))
    p = save(tmp_path / "m.eqx", m, {})
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="SHA-256"):
        load(p, lambda s: m)
    with pytest.raises(WeightsError, match="not found"):
        load(tmp_path / "nope.eqx", lambda s: m)
    (tmp_path / "x.eqx").write_bytes(b"")
    with pytest.raises(WeightsError, match="sidecar"):
        load(tmp_path / "x.eqx", lambda s: m)
