"""galdust: what dust hides in galaxies, from multi-band images.

The public names below are imported on first use (so ``import galdust`` and the command line start
fast)::

    import galdust
    obs = galdust.read_observation("galaxy.fits")           # one Observation (cube, ivar, bands, PSF, WCS)
    res = galdust.fit(obs)                                  # DustResult: AV, D, HOST, F, δ, χ², on the input grid
    report = galdust.fit_files(["a.fits", "b.fits"], "out/")  # what `galdust fit a.fits b.fits --out out/` does
    post = galdust.summarise_catalog("sdss.fits")           # what `galdust posterior sample` computes
"""

__version__ = "0.1.0"

_LAZY = {
    "read_observation": ("galdust.io", "read_observation"),
    "Observation": ("galdust.io", "Observation"),
    "write_cube": ("galdust.io", "write_cube"),
    "InputError": ("galdust.io", "InputError"),
    "fit": ("galdust.dust.api", "fit"),
    "fit_files": ("galdust.dust.api", "fit_files"),
    "make_fitter": ("galdust.dust.api", "make_fitter"),
    "DustResult": ("galdust.dust.job", "DustResult"),
    "summarise_catalog": ("galdust.posterior.api", "summarise_catalog"),
    "resolve_model": ("galdust.posterior.api", "resolve_model"),
    "SimConfig": ("galdust.simulate", "SimConfig"),
    "simulate": ("galdust.simulate", "simulate"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'galdust' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
