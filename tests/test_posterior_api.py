"""galdust.posterior.api: which known-redshift column the default reads."""

import numpy as np
import pytest
from astropy.table import Table
from conftest import sdss_table

from galdust.io import InputError
from galdust.posterior.api import default_redshift_column, resolve_model, summarise_catalog


def test_the_default_reads_z_only_when_every_row_of_every_sdss_table_has_a_spectroscopic_redshift(tmp_path):
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    sdss_table(a)
    sdss_table(b, seed=1)
    assert default_redshift_column([a]) == "Z" and default_redshift_column([a, b]) == "Z"
    assert resolve_model(None, a, known_z=True).label == "cfm-onestep-z"
    t = Table.read(b)
    for bad in (np.nan, -9999.0):  # a missing redshift, or SDSS's sentinel: the whole table keeps photo-z
        t["Z"][2] = bad
        t.write(b, overwrite=True)
        assert default_redshift_column([b]) is None and default_redshift_column([a, b]) is None
    t.remove_column("Z")
    t.write(b, overwrite=True)
    assert default_redshift_column([b]) is None
    # not an SDSS table (no MODELFLUX): a column named Z there could be anything (e.g. a metallicity)
    Table(dict(name=["x", "y"], Z=[0.1, 0.2], flux_sdss_r=[10.0, 20.0])).write(tmp_path / "c.fits")
    assert default_redshift_column([tmp_path / "c.fits"]) is None
    assert default_redshift_column([]) is None and default_redshift_column([tmp_path / "missing.fits"]) is None
    # --photo-z picks the default's redshift: with a model or a known-redshift column it is refused
    for kw in (dict(redshift_column="Z"), dict(model="cfm-phot")):
        with pytest.raises(InputError, match="--photo-z"):
            summarise_catalog(a, photo_z=True, **kw)
