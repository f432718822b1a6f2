"""How well dust mimics a stellar colour gradient in the bands of a fit; prints a table.

    python bench/bench_dust_degeneracy.py

The joint model has one host SED F for every pixel: Y_b(x) = F_b S(x) 10^(−0.4 K_b(δ) A(x)). A host
whose SED changes across the galaxy (a red bulge in a blue disk; in the simulator
f_ν ∝ λ^β with β 1–2.5 in the bulge and −0.2–1 in the disk) changes each pixel's colours by
−2.5 Δβ log10 λ_b mag (plus a grey term, which S(x) absorbs). This finds, per band set, the δ and A_ref
that reproduce a unit Δβ best (least squares over bands, with a free grey term) and the rms of what
is left: the part of the gradient that the fit could tell from dust by colour alone. A uniform A
is never identifiable (F absorbs it exactly); this measures whether variations are.
Not a test: it never gates CI.
"""

from __future__ import annotations

import numpy as np

from galdust.physics.attenuation import attenuation_ratio
from galdust.physics.filters import get_filter

BAND_SETS = {"red start: griz + 2MASS J": ("sdss_g", "sdss_r", "sdss_i", "sdss_z", "2mass_j"),
             "blue start: griz": ("sdss_g", "sdss_r", "sdss_i", "sdss_z"),
             "HSC grizy": ("hsc_g", "hsc_r", "hsc_i", "hsc_z", "hsc_y")}


def mimic(lam_um: np.ndarray, deltas=np.linspace(-1.0, 0.5, 61)) -> tuple[float, float, float]:
    """(best δ, A_ref per unit Δβ, rms residual in mag) of dust fitted to a unit power-law gradient."""
    x = -2.5 * np.log10(lam_um)  # magnitude change of a redder host (Δβ = +1), up to a grey term
    best = (np.inf, np.nan, np.nan)
    for d in deltas:
        M = np.c_[np.asarray(attenuation_ratio(lam_um, d)), np.ones_like(lam_um)]
        coef, *_ = np.linalg.lstsq(M, x, rcond=None)
        rms = float(np.sqrt(np.mean((x - M @ coef) ** 2)))
        if rms < best[0]:
            best = (rms, float(d), float(coef[0]))
    return best[1], best[2], best[0]


def main():
    print("| bands | λ_eff [µm] | colour spread of Δβ = 1 [mag rms] | best δ | A_ref per unit Δβ [mag] | "
          "left after dust [mag rms] | fraction left |")
    print("|---|---|---|---|---|---|---|")
    for label, bands in BAND_SETS.items():
        try:
            lam = np.array([get_filter(b).effective for b in bands])
        except KeyError:
            continue
        lam = lam / 1e4 if lam[0] > 100 else lam  # Å → µm
        x = -2.5 * np.log10(lam)
        spread = float(np.sqrt(np.mean((x - x.mean()) ** 2)))
        d, a, rms = mimic(lam)
        print(f"| {label} | {', '.join(f'{v:.3f}' for v in lam)} | {spread:.3f} | {d:+.2f} | {a:.2f} | {rms:.4f} | "
              f"{rms / spread:.3f} |")


if __name__ == "__main__":
    main()
