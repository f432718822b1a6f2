import json

import equinox as eqx
import jax
import numpy as np
import pytest

from galdust.nn import MLP
from galdust.weights import WeightsError, load, load_folder, save, save_folder


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


def _write_parts(tmp):
    (tmp / "a.json").write_text('{"trees": [1, 2]}')
    (tmp / "b.bin").write_bytes(b"\x00\x01")


def test_folder_model_round_trip_records_and_checks_every_file(tmp_path):
    d = save_folder(tmp_path / "m", _write_parts, "model.json", {"seed": 3})
    meta = load_folder(d, "model.json")
    assert meta["seed"] == 3 and set(meta["files"]) == {"a.json", "b.bin"} and "commit" in meta
    assert all(len(h) == 64 for h in meta["files"].values())
    with pytest.raises(Exception, match="exists"):
        save_folder(d, _write_parts, "model.json", {})
    # only the files write_files names (others, e.g. a sub-model with its own sidecar, are not recorded)
    d2 = save_folder(tmp_path / "m2", lambda tmp: _write_parts(tmp) or ["a.json"], "model.json", {})
    assert set(load_folder(d2, "model.json")["files"]) == {"a.json"}


def test_corrupt_folder_file_names_it_and_old_sidecars_still_load(tmp_path):
    d = save_folder(tmp_path / "m", _write_parts, "model.json", {})
    (d / "b.bin").write_bytes(b"\x00\x02")
    with pytest.raises(WeightsError, match=r"b\.bin: SHA-256") as e:
        load_folder(d, "model.json")
    assert len(str(e.value).splitlines()) == 1
    (d / "b.bin").unlink()
    with pytest.raises(WeightsError, match=r"b\.bin: file missing"):
        load_folder(d, "model.json")
    with pytest.raises(WeightsError, match="sidecar missing"):
        load_folder(tmp_path / "none", "model.json")
    (d / "model.json").write_text(json.dumps({"seed": 1}))  # written before hashes were recorded
    assert load_folder(d, "model.json") == {"seed": 1}
