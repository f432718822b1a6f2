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
    assert all(n in out for n in SHIPPED) and "CV sigma_NMAD 0.01303" in out
