"""The jobs ``galdust run`` can spread over a Dask cluster.

A task is a small frozen dataclass (shipped to the workers by pickling its options, never its
models) with

* ``fields``: the summary columns it adds to the catalogue (name, arrow type);
* ``discover(patterns, catalog)``: the work items ``(name, input)`` or ``(name, input, params)`` from
  ``--inputs`` globs and/or a ``--catalog`` table (``input`` is what the catalogue's ``input`` column
  records; ``params`` a small dict of per-object options such as a distance or the fluxes of a row);
* ``run_batch(items, out)``: process a list of items on a worker and return one row dict per item
  (``status`` ``ok`` or ``error``), after writing each object's outputs atomically.

Heavy state (priors, compiled functions) is built once per worker process by a cached constructor.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

__all__ = ["FitTask", "FirMapTask", "PosteriorTask", "TASKS"]


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


@functools.lru_cache(maxsize=4)
def _dust_fitter(max_iter: int | None, priors: bool, start: str, use_psf: bool, detect: bool, batch_size: int,
                 dust_level: str = "shrink", host: str = "auto", method: str = "map"):
    """One fitter per worker process and option set (loads the priors once): :func:`galdust.dust.api.make_fitter`."""
    from ..dust.api import make_fitter

    return make_fitter(level=dust_level, max_iter=max_iter, priors=priors, start=start, use_psf=use_psf,
                       detect=detect, batch_size=batch_size, host=host, method=method)


class _FitFields:
    """``FitTask.fields``: the MAP fit's columns, plus the network's σ (the FITS keys AVLW_ERR,
    DELTAERR) and its domain flag (FLAG, NOTE: 1 and why, where the galaxy's colours are outside the
    network's training domain) on a task with ``method='amortized'``."""

    base = [("av_lw", pa.float64()), ("delta", pa.float64()), ("covfrac", pa.float64()), ("chi2", pa.float64()),
            ("chi2nd", pa.float64()), ("niter", pa.int64()), ("converged", pa.bool_()), ("start", pa.string()),
            ("redshift", pa.float64())]  # the input's REDSHIFT: A_V in its rest frame (null: observed frame)
    amortized = [("av_lw_err", pa.float64()), ("delta_err", pa.float64()), ("flag", pa.int64()), ("note", pa.string())]

    def __get__(self, task, owner=None):
        return self.base + (self.amortized if getattr(task, "method", None) == "amortized" else [])


@dataclass(frozen=True)
class FitTask:
    """``galdust fit`` per object: NAME.dust.fits + NAME.json (+ NAME.png with ``plot``)."""

    max_iter: int | None = None  # None: the dust level's default (300 shrink, 1000 gauge)
    priors: bool = True
    start: str = "auto"
    dust_level: str = "shrink"
    use_psf: bool = True
    detect: bool = True
    plot: bool = False
    batch_size: int = 8
    host: str = "auto"  # galdust fit --host (galdust.dust.fit.DEFAULT_HOST)
    method: str = "map"  # galdust fit --method

    name = "fit"
    fields = _FitFields()

    def options(self) -> dict:
        from ..dust.fit import level_config, resolve_host

        gauge = self.dust_level == "gauge"
        host = resolve_host(self.host, self.dust_level)  # the model, not 'auto': a run resumes with the same one
        o = dict(max_iter=self.max_iter or level_config(self.dust_level).max_iter,
                 priors=self.priors, start=self.start, use_psf=self.use_psf, detect=self.detect, plot=self.plot)
        o = dict(o, dust_level=self.dust_level) if gauge else o  # as before the option: old runs resume
        # recorded unless 'single' (the default before session 25): a run begun then resumes with --host single
        o = dict(o, host=host) if host != "single" else o
        if self.method != "map":  # the MAP-only options do not apply
            o = dict(method=self.method, use_psf=self.use_psf, detect=self.detect, plot=self.plot)
        return o

    def discover(self, patterns=(), catalog=None) -> list[tuple]:
        """(name, path) per input; (name, path, z) for the rows of a catalogue with a ``redshift`` (or ``z``)
        column (an empty cell: the file's header REDSHIFT, or none)."""
        from .runner import discover

        return discover(patterns, catalog, redshift=True)

    def run_batch(self, items: list[tuple], out: Path) -> list[dict]:
        from ..dust.products import output_paths, plot_fit, write_dust_fits, write_json
        from ..io import read_observation

        t0 = time.perf_counter()
        rows: dict[int, dict] = {}
        obs, where = [], []
        for k, (name, inp, *z) in enumerate(items):
            try:
                obs.append(read_observation([inp], redshift=z[0] if z else None))
                where.append(k)
            except Exception as e:  # noqa: BLE001 - an error row, the batch goes on
                rows[k] = dict(status="error", error=_one_line(e))
        if obs:
            fitter = _dust_fitter(self.max_iter, self.priors, self.start, self.use_psf, self.detect,
                                  self.batch_size, self.dust_level, self.host, self.method)
            results = fitter.fit(obs)
            for k, o, res in zip(where, obs, results):
                if isinstance(res, Exception):
                    rows[k] = dict(status="error", error=_one_line(res))
                    continue
                paths = output_paths(out, items[k][0])
                try:  # the run owns its folder: an object without a row is redone and replaced
                    write_dust_fits(paths["fits"], res, o, overwrite=True)
                    write_json(paths["json"], res, o, overwrite=True)
                    if self.plot:
                        plot_fit(paths["png"], res, o, overwrite=True)
                except Exception as e:  # noqa: BLE001
                    rows[k] = dict(status="error", error=_one_line(e))
                    continue
                s = res.scalars
                rows[k] = dict(status="ok", error=None, av_lw=s["AV_LW"], delta=s["DELTA"], covfrac=s["COVFRAC"],
                               chi2=s["CHI2"], chi2nd=s["CHI2ND"], niter=s["NITER"], converged=s["CONVERGE"],
                               start=s["START"], redshift=s.get("REDSHIFT"))
                if self.method == "amortized":
                    rows[k].update(av_lw_err=s["AVLW_ERR"], delta_err=s["DELTAERR"], flag=s.get("FLAG", 0),
                                   note=s.get("NOTE", ""))
        dt = (time.perf_counter() - t0) / len(items)
        return [dict(rows[k], name=it[0], input=it[1], runtime_s=dt) for k, it in enumerate(items)]


# ----------------------------------------------------------------------------- fir-map

IMAGE_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fts")


@functools.lru_cache(maxsize=2)
def _fir_model(path: str | None):
    from ..fir.model import DEFAULT_MODEL, FIRModel

    return FIRModel.load(path or DEFAULT_MODEL)


def _band_files(inp: str) -> list[Path]:
    """The band images of one galaxy: a folder (its FITS files) or a ';'-separated list of files."""
    from ..io import InputError

    p = Path(inp)
    if ";" not in inp and p.is_dir():
        files = sorted(f for f in p.iterdir() if f.name.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise InputError(f"{p}: no FITS images in the folder")
        return files
    files = [Path(x) for x in inp.split(";") if x]
    if len(files) == 1 and not files[0].is_dir() and ";" not in inp:
        raise InputError(f"{p}: a fir-map input is a folder of band images (or a catalogue row listing them)")
    return files


@dataclass(frozen=True)
class FirMapTask:
    """``galdust fir map`` per galaxy: NAME.fir.fits (+ NAME.fir.png with ``plot``).

    Inputs: ``--inputs 'GLOB'`` of folders, one per galaxy, holding its band images (FITS with WCS and
    header ``BAND``); or ``--catalog TABLE`` with one row per galaxy: ``name``, ``images`` (paths separated
    by ``;`` or ``,``, relative to the table's folder) or ``path`` (a folder), and optionally ``distance``
    [Mpc] (needed by models that use the pixel scale in pc).
    """

    model: str | None = None
    detect: bool = True
    plot: bool = False
    exact: bool = False
    batch_size: int = 1

    name = "fir-map"
    fields = [("n_bands", pa.int64()), ("bands", pa.string()), ("n_pix", pa.int64()), ("fwhm_arcsec", pa.float64()),
              ("pixscale_arcsec", pa.float64()), ("distance_mpc", pa.float64()), ("log_sld_median", pa.float64()),
              ("log_smd_median", pa.float64()), ("td_median", pa.float64())]

    def options(self) -> dict:
        return dict(model=self.model, detect=self.detect, plot=self.plot, exact=self.exact)

    def discover(self, patterns=(), catalog=None) -> list[tuple]:
        import math

        from ..io import InputError, _split_list

        items: list[tuple] = []
        if catalog is not None:
            from .runner import read_table

            catalog = Path(catalog)
            t = read_table(catalog)
            col = next((c for c in ("images", "path", "input") if c in t.colnames), None)
            if col is None:
                raise InputError(f"{catalog}: no 'images' (band files) or 'path' (folder) column "
                                 f"(columns: {', '.join(t.colnames)})")
            for i, r in enumerate(t):
                files = [Path(x) if Path(x).is_absolute() else catalog.parent / x
                         for x in _split_list(str(r[col]).replace(";", ","))]
                inp = ";".join(str(f) for f in files) if col == "images" else str(files[0]) if files else ""
                if col == "images" and len(files) == 1:
                    inp += ";"  # a one-file list, not a folder
                name = str(r["name"]) if "name" in t.colnames else (files[0].name if files else f"row{i}")
                params = {}
                if "distance" in t.colnames:
                    try:
                        d = float(r["distance"])
                        if math.isfinite(d) and d > 0:
                            params["distance"] = d
                    except (TypeError, ValueError):
                        pass
                items.append((name, inp, params))
        from .runner import glob_inputs, unique_items

        for pat in patterns:
            items += [(Path(p.rstrip("/")).name, p.rstrip("/"), {}) for p in glob_inputs(pat)]

        return unique_items(items)

    def run_batch(self, items: list[tuple], out: Path) -> list[dict]:
        import numpy as np

        from ..fir.maps import make_maps, read_band_image
        from ..fir.products import plot_fir_maps, write_fir_fits

        rows = []
        for name, inp, *rest in items:
            t0 = time.perf_counter()
            params = rest[0] if rest else {}
            try:
                imgs = [read_band_image(f) for f in _band_files(inp)]
                dist = params.get("distance")
                fm = make_maps(imgs, _fir_model(self.model), detect=self.detect, distance_mpc=dist, exact=self.exact)
                write_fir_fits(out / f"{name}.fir.fits", fm, overwrite=True)
                if self.plot:
                    plot_fir_maps(out / f"{name}.fir.png", fm, overwrite=True)
                g = fm.mask == 1
                med = {k: float(np.median(fm.maps[k][g])) if g.any() else None for k in ("LOG_SLD", "LOG_SMD", "TD")}
                row = dict(status="ok", error=None, n_bands=len(fm.bands), bands=",".join(fm.bands),
                           n_pix=int(g.sum()), fwhm_arcsec=float(fm.fwhm), pixscale_arcsec=float(fm.pixscale),
                           distance_mpc=dist, log_sld_median=med["LOG_SLD"], log_smd_median=med["LOG_SMD"],
                           td_median=med["TD"])
            except Exception as e:  # noqa: BLE001 - an error row, the batch goes on
                row = dict(status="error", error=_one_line(e))
            rows.append(dict(row, name=name, input=inp, runtime_s=time.perf_counter() - t0))
        return rows


# ----------------------------------------------------------------------------- posterior


@functools.lru_cache(maxsize=2)
def _posterior_model(path: str):
    from ..posterior.kinds import load_model

    return load_model(path)[0]


@functools.lru_cache(maxsize=2)
def _redshift_model(path: str):
    from ..posterior.redshift import RedshiftModel

    return RedshiftModel.load(path)


@functools.lru_cache(maxsize=8)
def _cfm_for(model_path: str) -> str:
    """The CFM of a posterior model path (itself, or the one a redshift model folder reads): looked up
    once per process, not per batch and per written samples file."""
    from ..posterior.redshift import is_redshift_model, redshift_cfm_path

    if not is_redshift_model(model_path):
        return model_path
    return str(redshift_cfm_path(model_path, Path(_default_posterior()).parent))


def _default_posterior() -> str:
    from ..models import shipped_path

    return str(shipped_path("cfm-phot"))


@dataclass(frozen=True)
class PosteriorTask:
    """``galdust posterior sample`` per object: p16/p50/p84 of each property as catalogue columns
    (+ NAME.samples.fits with ``save_samples``).

    Inputs: ``--catalog TABLE`` (or ``--inputs 'GLOB'`` of tables) in the formats ``galdust posterior
    sample`` reads (SDSS ``MODELFLUX``/``MODELFLUX_IVAR``/``EXTINCTION``, or galdust simulator tables); one
    object per row, named by ``OBJID``/``name`` (else the row number). The driver reads the tables and
    ships each row's fluxes with its batch, so workers need not see the table. A row without usable
    fluxes becomes an ``error`` row.

    With the SDSS redshift model (a ``z_model.json`` folder such as ``z-sdss``) the z percentiles are
    that model's and the other properties those of the CFM it reads, as in ``galdust posterior sample
    --model z-sdss``; the driver also ships each row's redshift features (SDSS tables only).
    """

    model: str | None = None
    samples: int = 1000
    steps: int = 100
    seed: int = 0
    save_samples: bool = False
    batch_size: int = 256
    redshift_column: str | None = None  # known redshifts: the properties at them (a model given z)

    name = "posterior"

    @property
    def model_path(self) -> str:
        return str(self.model or _default_posterior())

    @property
    def zmodel(self) -> str | None:
        """The redshift model folder, when the model is one."""
        from ..posterior.redshift import is_redshift_model

        return self.model_path if is_redshift_model(self.model_path) else None

    @property
    def cfm_path(self) -> str:
        """The CFM that samples the properties: the model itself, or the one the redshift model reads."""
        return _cfm_for(self.model_path)

    @property
    def at_z_path(self) -> str | None:
        """With a redshift model: the model conditioned on z sampled at its redshifts (as ``galdust
        posterior sample``), when shipped."""
        if self.zmodel is None:
            return None
        from ..posterior.api import resolve_model

        at_z = resolve_model(self.model_path).at_z
        return None if at_z is None else str(at_z)

    @property
    def props(self) -> list[str]:
        from ..weights import read_sidecar

        if self.at_z_path is not None:
            return list(read_sidecar(self.at_z_path)["config"]["props"]) + ["z"]
        props = list(read_sidecar(self.cfm_path)["config"]["props"])
        return props + ["z"] if self.redshift_column is not None else props

    @property
    def fields(self):
        # flag / note: as galdust posterior sample (1: answered, but outside the model's training domain)
        return ([(f"{p}_{q}", pa.float64()) for p in self.props for q in ("p16", "p50", "p84")]
                + [("flag", pa.int16()), ("note", pa.string())])

    def options(self) -> dict:
        return dict(model=self.model_path, samples=self.samples, steps=self.steps, seed=self.seed,
                    save_samples=self.save_samples, redshift_column=self.redshift_column)

    def discover(self, patterns=(), catalog=None) -> list[tuple]:
        import numpy as np

        from ..io import InputError
        from ..posterior.data import read_catalog
        from .runner import glob_inputs, unique_items

        tables = [Path(catalog)] if catalog is not None else []
        for pat in patterns:
            tables += [Path(p) for p in glob_inputs(pat)]
        from ..weights import read_sidecar

        side = read_sidecar(self.cfm_path)
        if side.get("kind") in ("cfm-image", "vae-nf"):
            raise InputError(f"{self.model_path}: an image model; galdust run posterior takes photometric models "
                             f"(use galdust posterior sample --images)")
        bands = tuple(side["config"]["bands"])
        given = tuple(side["config"].get("given", ()))
        if (self.redshift_column is not None) != (given == ("z",)):
            raise InputError(f"{self.model_path}: " + ("not a model conditioned on z (--redshift-column needs "
                                                       "cfm-onestep-z or cfm-phot-z)" if self.redshift_column
                                                       else "conditioned on z; give --redshift-column"))
        items: list[tuple] = []
        for t in tables:
            c = read_catalog(t, bands)
            if self.redshift_column is not None:
                from ..posterior.api import read_redshift_column

                zg = read_redshift_column(t, self.redshift_column)
                c.notes = [n or ("" if np.isfinite(v) and v >= 0 else f"no usable redshift in {self.redshift_column}")
                           for n, v in zip(c.notes, zg)]
            zfeat = None
            if self.zmodel is not None:
                from ..posterior.redshift import sdss_table_features

                zfeat = sdss_table_features(t)[0]  # an InputError unless an SDSS table
            prefix = f"{t.stem}:" if len(tables) > 1 and c.names == [str(i) for i in range(len(c.names))] else ""
            for i, (n, f, fe, note) in enumerate(zip(c.names, c.flux, c.flux_err, c.notes)):
                params = dict(flux=[float(x) for x in f], flux_err=[float(x) for x in fe], note=note)
                if self.redshift_column is not None:
                    params["zgiven"] = float(zg[i])
                if zfeat is not None:
                    params["zfeat"] = [float(x) for x in zfeat[i]]
                items.append((prefix + n, f"{t}#{i}", params))
        return unique_items(items)

    def run_batch(self, items: list[tuple], out: Path) -> list[dict]:
        import numpy as np

        from ..posterior.api import summarise_rows

        t0 = time.perf_counter()
        m = _posterior_model(self.cfm_path)
        rows: dict[int, dict] = {}
        good = []
        for k, (name, inp, params) in enumerate(items):
            if params.get("note"):
                rows[k] = dict(status="error", error=params["note"])
            else:
                good.append(k)
        if good:
            flux = np.array([items[k][2]["flux"] for k in good], float)
            # one key per object, from its name (as galdust posterior sample): a resumed or re-batched
            # run draws the same samples
            zm = _redshift_model(self.zmodel) if self.zmodel is not None else None
            zfeat = np.array([items[k][2]["zfeat"] for k in good], float) if zm is not None else None
            at_z = _posterior_model(self.at_z_path) if self.at_z_path is not None and zm is not None else None
            zg = (np.array([[items[k][2]["zgiven"]] for k in good], float) if self.redshift_column is not None
                  else None)
            pct, smp = summarise_rows(m, flux, [items[k][0] for k in good], seed=self.seed, samples=self.samples,
                                      steps=self.steps, zmodel=zm, zfeat=zfeat, keep_samples=self.save_samples,
                                      at_z=at_z, given=zg)
            if zg is not None:  # z columns repeat the known redshift (as galdust posterior sample)
                pct = np.concatenate([pct, np.repeat(zg[:, None, :], 3, axis=2)], axis=1)
                if smp is not None:
                    smp = np.concatenate([smp, np.broadcast_to(zg[:, None, :], smp.shape[:2] + (1,))], axis=2)
            props = self.props
            from ..posterior.api import domain_notes
            from ..weights import read_sidecar

            err = np.array([items[k][2].get("flux_err", [np.nan] * flux.shape[1]) for k in good], float)
            whys = domain_notes(read_sidecar(self.cfm_path).get("domain"), flux, m.soft, m.bands, zg,
                                self.redshift_column, err)
            for j, k in enumerate(good):
                row = dict(status="ok", error=None, flag=int(bool(whys[j])), note=whys[j] or None)
                for a, p in enumerate(props):
                    for b, q in enumerate(("p16", "p50", "p84")):
                        row[f"{p}_{q}"] = float(pct[j, a, b])
                if self.save_samples:
                    try:
                        _write_samples(out / f"{items[k][0]}.samples.fits", smp[j], props, self)
                    except Exception as e:  # noqa: BLE001
                        row = dict(status="error", error=_one_line(e))
                rows[k] = row
        dt = (time.perf_counter() - t0) / len(items)
        return [dict(rows[k], name=it[0], input=it[1], runtime_s=dt) for k, it in enumerate(items)]


def _write_samples(path: Path, samples, props, task: PosteriorTask) -> None:
    from astropy.io import fits

    from ..io import atomic_path

    h = fits.PrimaryHDU(samples.astype("float32"))
    h.header["PROPS"] = ",".join(props)
    h.header["MODEL"] = Path(task.model_path).name
    h.header["RK4STEP"] = task.steps
    if task.zmodel is not None and task.at_z_path is not None:
        h.header["CFMMODEL"] = (Path(task.at_z_path).name, "samples at the z model's z draws")
    elif task.zmodel is not None:
        h.header["CFMMODEL"] = (Path(task.cfm_path).name, "the samples")
        h.header["ZSAMPLES"] = ("cfm", "z samples are the CFM's, z_pNN the z model's")
    with atomic_path(path, overwrite=True) as tmp:
        h.writeto(tmp)


TASKS = {"fit": FitTask, "fir-map": FirMapTask, "posterior": PosteriorTask}
