"""The README is the spec: every ``galdust …`` command in its code blocks runs, as written.

Each code block runs in its own folder, its commands in order (a later command may use what an
earlier one wrote, as a user's would). Files a command names that the README does not make are
placeholders: they are built here, tiny, under the same names. The command's options are never
changed; the one substitution besides files is the example scheduler address (a cluster started
here instead: no traffic leaves this machine). Commands run in this process through
``galdust.cli.main`` (the same parser and error handling as the console script; unquoted globs are
expanded as the shell would).
"""

from __future__ import annotations

import glob
import re
import shutil
import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import FIR_SED, FIR_TRUTH, sdss_table
from astropy.io import fits

from galdust.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED = ROOT.parent / "shared" / "data"


def readme_blocks() -> list[tuple[int, list[tuple[int, str]]]]:
    """(first line, [(line, command), ...]) of every code block with a ``galdust`` command."""
    blocks, cur, inb, buf, start = [], [], False, "", 0
    for n, line in enumerate(README.read_text().splitlines(), 1):
        if line.startswith("```"):
            if inb and cur:
                blocks.append((start, cur))
            inb, cur, start = not inb, [], n
            continue
        if not inb:
            continue
        s = line.strip()
        buf = f"{buf} {s}" if buf else s
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        cmd, buf = buf, ""
        if cmd.startswith("galdust ") or cmd == "galdust":
            cur.append((n, re.split(r"\s+#", cmd)[0].strip()))
    return blocks


def _argv(cmd: str) -> list[str]:
    """The argument vector bash would give (unquoted globs expanded in the current folder)."""
    out = []
    lex = shlex.shlex(cmd, posix=True, punctuation_chars=False)
    lex.whitespace_split = True
    for tok in lex:
        quoted = f"'{tok}'" in cmd or f'"{tok}"' in cmd
        if not quoted and any(c in tok for c in "*?["):
            out += sorted(glob.glob(tok)) or [tok]
        else:
            out.append(tok)
    return out[1:]


# ----------------------------------------------------------------------------- placeholder inputs


def _sim_cube(path: Path, seed: int, size: int = 24):
    import jax

    from galdust.dust.evaluate import sim_observations
    from galdust.io import write_cube
    from galdust.simulate import SimConfig, simulate

    cfg = SimConfig(size=size, psf_fwhm=2.0, snr=50.0, snr_kind="peak")
    sim = simulate(jax.random.PRNGKey(seed), 1, cfg, batch=1)
    o = sim_observations(sim, cfg)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_cube(path, o.cube, o.bands, ivar=o.ivar, psf=o.psf, overwrite=True)
    return o


def _band_files(d: Path, names: dict[str, str], seed: int = 3):
    o = _sim_cube(d / ".tmp_cube.fits", seed)
    for i, (_, f) in enumerate(names.items()):
        fits.PrimaryHDU(o.cube[i % len(o.bands)]).writeto(d / f, overwrite=True)
    (d / ".tmp_cube.fits").unlink()


def _fir_images(d: Path, names: dict[str, str] | None = None):
    """Per-band FIR-map images (Jy/pix, BAND, PSF_FWHM, WCS) around the README's ellipse centre."""
    from galdust.fir.maps import write_band_image
    from galdust.fir.mock import make_mock

    sed, truth = FIR_SED, FIR_TRUTH
    m = make_mock(sed, sed, truth, truth, w1_total=0.1, rng=np.random.default_rng(0), peak_snr=300.0,
                  ra=160.99, dec=11.70)
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    for im in m.images:
        if names is None:
            files[im.band] = write_band_image(d / f"ngc3351_{im.band}.fits", im, overwrite=True)
        elif im.band in names:
            files[im.band] = write_band_image(d / names[im.band], im, overwrite=True)
    return files, m


def _dustpedia_subset(d: Path, n: int = 160):
    """PHOT.csv / CIGALE.csv / the DustPedia table: the first rows of the development split."""
    import csv

    def rows(path):
        with open(path, newline="") as fh:
            r = list(csv.reader(fh))
        return r[0], r[1:]

    def write(path, head, body):
        with open(path, "w", newline="") as fh:
            csv.writer(fh).writerows([head] + body)

    ph, phot = rows(SHARED / "dustpedia" / "DustPedia_Aperture_Photometry_2.2.csv")
    pp, props = rows(SHARED / "dustpedia" / "dustpedia_cigale_results_final_version.csv")
    fitted = [r for r in props if r[1].strip().lower() not in ("", "nan")][:n]
    keep = {r[0] for r in fitted}
    write(d / "PHOT.csv", ph, [r for r in phot if r[0] in keep])
    write(d / "CIGALE.csv", pp, fitted)
    write(d / "DustPedia_Aperture_Photometry_2.2.csv", ph, phot[:40])


def build_placeholders(d: Path, cmds: list[str]) -> None:
    """Make, in ``d``, every input file the commands name that the block itself does not write."""
    from astropy.table import Table

    text = " ".join(cmds)
    if "galaxy1.fits" in text:
        _sim_cube(d / "galaxy1.fits", 1)
        _sim_cube(d / "galaxy2.fits", 2)
    if "g.fits,r.fits" in text:
        _band_files(d, {"g": "g.fits", "r": "r.fits", "i": "i.fits", "z": "z.fits"})
    if "cutouts" in text:
        _sim_cube(d / "cutouts" / "a.fits", 4)
        _sim_cube(d / "cutouts" / "b.fits", 5)
        _sim_cube(d / "cutouts" / "deeper" / "c.fits", 6)  # found by 'cutouts/**/*.fits' only
        Table(dict(path=["cutouts/a.fits", "cutouts/b.fits"], name=["a", "b"])).write(d / "cutouts.csv")
    if "--model my_net.eqx" in text:  # a network the user trained: the shipped one under that name
        from galdust.models import shipped_path

        src = shipped_path("amortized-dust")
        shutil.copy(src, d / "my_net.eqx")
        shutil.copy(src.with_suffix(".json"), d / "my_net.json")
    if "mymask.fits" in text:
        m = np.zeros((24, 24), np.uint8)
        m[:2] = 1
        fits.PrimaryHDU(m).writeto(d / "mymask.fits")
    if "galaxies/" in text or "galaxies.csv" in text:
        rows = []
        for i in range(2):
            files, _ = _fir_images(d / "galaxies" / f"ngc{i}")
            rows.append((f"ngc{i}", ";".join(str(Path(f).relative_to(d)) for f in files.values()), 10.0 + i))
        Table(rows=rows, names=["name", "images", "distance"]).write(d / "galaxies.csv")
    if "sdss_galaxies.fits" in text:
        sdss_table(d / "sdss_galaxies.fits")
    if "PHOT.csv" in text or "DustPedia_Aperture" in text:
        if not SHARED.exists():
            pytest.skip("../shared/data is not present (the DustPedia tables)")
        _dustpedia_subset(d)
    if "ngc3351_*.fits" in text:
        _fir_images(d)
    if "fuv.fits" in text:
        _, m = _fir_images(d, {"galex_fuv": "fuv.fits", "sdss_r": "r.fits", "wise_w1": "w1.fits",
                               "wise_w4": "w4.fits"})
        Table(dict(ra=[160.99 + 0.004], dec=[11.70 + 0.004])).write(d / "stars.csv")
        k = np.exp(-0.5 * (np.arange(-7, 8)[:, None] ** 2 + np.arange(-7, 8)[None] ** 2) / 2.0**2)
        fits.PrimaryHDU(k / k.sum()).writeto(d / "k_w1_to_w4.fits")
        from galdust.fir.maps import write_band_image

        td = next(im for im in m.images if im.band == "wise_w4")
        write_band_image(d / "herschel_td.fits", td.__class__(**{**td.__dict__, "data": np.full_like(td.data, 22.0),
                                                                    "band": "TD"}))
    if "--sims sed_train.parquet" in text and "--out sed_train.parquet" not in text:  # made in another block
        made = _MADE.get("sed_train.parquet")  # by that block's own command, earlier in this process
        if made is not None and made.exists():
            shutil.copy(made, d / "sed_train.parquet")
        else:
            assert main(["simulate-sed", "--n", "2000", "--seed", "0", "--out", str(d / "sed_train.parquet")]) == 0
    if "../shared/data" in text and not SHARED.exists():
        pytest.skip("../shared/data is not present")


BLOCKS = readme_blocks()
#: files a block's commands wrote that a later block reads as an input (the README's own command made
#: them, so a later block copies them instead of making them again)
_MADE: dict[str, Path] = {}


def test_the_readme_has_the_commands_users_copy():
    cmds = [c for _, b in BLOCKS for _, c in b]
    assert len(cmds) >= 20
    # the main job, as a user types it first: no option beyond --out
    assert any(re.fullmatch(r"galdust fit \S+\.fits( \S+\.fits)* --out \S+( --plot)?", c) for c in cmds)
    # and the survey-scale run with its defaults (the block's test checks it writes no error row)
    assert any(re.fullmatch(r"galdust run fit --inputs \S+ --out \S+", c) for c in cmds)


def python_blocks() -> list[tuple[int, str]]:
    """(first line, code) of every ```python block of the README."""
    blocks, cur, start = [], None, 0
    for n, line in enumerate(README.read_text().splitlines(), 1):
        if cur is None and line.strip() == "```python":
            cur, start = [], n
        elif cur is not None and line.startswith("```"):
            blocks.append((start, "\n".join(cur)))
            cur = None
        elif cur is not None:
            cur.append(line)
    return blocks


@pytest.mark.parametrize("first_line,code", python_blocks(), ids=[f"README.md:{n}" for n, _ in python_blocks()])
def test_readme_python_block_runs_as_written(first_line, code, tmp_path, monkeypatch):
    """The README's Python examples run as written (the SLURM one needs a SLURM cluster: its code is
    compiled only, and its dask-jobqueue import is the user's to install)."""
    monkeypatch.chdir(tmp_path)
    compiled = compile(code, f"README.md:{first_line}", "exec")
    if "SLURMCluster" in code:
        return
    ns: dict = {}
    exec(compiled, ns)  # noqa: S102 - the README's own example
    if "D_clean" in ns:  # the score-prior example: denoising brings the map back toward the truth
        assert np.abs(ns["D_clean"] - ns["D"]).mean() < 0.25 * np.abs(ns["D_noisy"] - ns["D"]).mean()


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c.scheduler_address


@pytest.mark.slow
@pytest.mark.parametrize("first_line,block", BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_block_runs_as_written(first_line, block, tmp_path, monkeypatch, capsys, request):
    root = tmp_path / "blocks"
    d = root / "work"
    d.mkdir(parents=True)
    if SHARED.exists():
        (root / "shared").symlink_to(SHARED.parent, target_is_directory=True)
    monkeypatch.chdir(d)
    cmds = [c for _, c in block]
    build_placeholders(d, cmds)
    for line, cmd in block:
        if cmd == "galdust <command> --help":
            for sub in ("fit", "run", "fir", "posterior", "simulate", "evaluate", "demo"):
                assert main([sub, "--help"]) == 0, f"README.md:{line}: galdust {sub} --help"
            continue
        argv = _argv(cmd)
        if "--scheduler" in argv:  # the example address is a placeholder: never contact it
            argv[argv.index("--scheduler") + 1] = request.getfixturevalue("scheduler")
        capsys.readouterr()
        rc = main(argv)
        out = capsys.readouterr()
        assert rc == 0, f"README.md:{line}: `{cmd}` exited {rc}:\n{out.err[-2000:]}"
        assert "Traceback" not in out.err
        if argv[0] == "run":  # every input of the README's runs succeeds (or was done by an earlier one)
            assert re.search(r"\b0 errors\b", out.out), f"README.md:{line}: `{cmd}`:\n{out.out[-2000:]}"
        if "--out sed_train.parquet" in cmd:
            keep = tmp_path.parent / "readme_sed_train.parquet"
            shutil.copy(d / "sed_train.parquet", keep)
            _MADE["sed_train.parquet"] = keep
