"""Dust-free scarlet2 fit of one cube FITS (for bench_fit.py); run in a venv that has scarlet2.

    python bench/scarlet2_fit.py CUBE.fits [--iters 1000]

One source: a 64×64 array morphology under the HSC score prior (galaxygrad's network, loaded by
galdust's own deserialiser since galaxygrad's import crashes on Linux) and a positive spectrum,
fitted by scarlet2's Adam for exactly ``--iters`` iterations. Prints one JSON line with the wall
time of the first call (including compilation) and of a second call.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro.distributions.constraints as constraints  # noqa: E402
import scarlet2 as s2  # noqa: E402
from scarlet2.nn import ScorePrior  # noqa: E402

from galdust.io import read_cube  # noqa: E402
from galdust.priors.host import host_prior  # noqa: E402


def run(o, prior, iters):
    obs = s2.Observation(o.cube, o.ivar, psf=s2.ArrayPSF(jnp.asarray(o.psf)), channels=list(o.bands))
    frame = s2.Frame.from_observations([obs])
    ny, nx = o.cube.shape[1:]
    morph = np.clip(np.sum(o.cube, axis=0), 0, None)
    spectrum = morph.sum() and np.sum(o.cube, axis=(1, 2)) / morph.max()
    morph = morph / morph.max()
    with s2.Scene(frame) as scene:
        s2.Source(jnp.array([ny // 2, nx // 2]), jnp.asarray(spectrum), jnp.asarray(morph))
    with s2.Parameters(scene):
        s2.Parameter(scene.sources[0].spectrum, name="spectrum", constraint=constraints.positive,
                     stepsize=s2.relative_step)
        s2.Parameter(scene.sources[0].morphology, name="morphology", prior=prior, stepsize=1e-2)
    t0 = time.perf_counter()
    scene_ = scene.fit(obs, max_iter=iters, e_rel=0.0, progress_bar=False)
    jnp.asarray(scene_()).block_until_ready()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cube")
    ap.add_argument("--iters", type=int, default=1000)
    a = ap.parse_args()
    s2.set_validation(False)
    o = read_cube(a.cube)
    hp = host_prior()
    prior = ScorePrior(lambda x: hp(x), (64, 64))
    first = run(o, prior, a.iters)
    second = run(o, prior, a.iters)
    print(json.dumps(dict(first_s=first, second_s=second, iters=a.iters)))


if __name__ == "__main__":
    main()
