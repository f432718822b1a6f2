import pytest

from galdust.cli import main
from galdust.models import SHIPPED, describe, shipped_path


@pytest.mark.parametrize("name", list(SHIPPED))
def test_every_shipped_model_is_there_with_its_headline_metrics(name):
    p = shipped_path(name)
    assert p.exists()
    d = describe(name)
    assert d["bytes"] > 10_000 and "error" not in d
    assert all(v is not None for v in d["metrics"].values()), d["metrics"]  # the sidecar holds what we quote


def test_unknown_name_and_the_listing(capsys):
    with pytest.raises(KeyError, match="one of"):
        shipped_path("no-such-model")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    import json

    cv = json.loads((shipped_path("z-sdss") / "z_model.json").read_text())["cv"]  # the listing quotes the sidecar
    assert all(n in out for n in SHIPPED) and f"CV sigma_NMAD {cv['nmad']:.5f}" in out
