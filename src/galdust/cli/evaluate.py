"""``galdust evaluate dust``: dust fits against simulated truth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ._app import UserError, _csv_list, app


evaluate_app = typer.Typer(help="Evaluate galdust's jobs against simulated truth.", no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.command("dust")
def evaluate_dust(
    out: Annotated[Path, typer.Option("--out", help="Output folder (per-galaxy CSV + summary tables).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Held-out simulated galaxies per configuration.")] = 150,
    seed: Annotated[int, typer.Option(help="Simulation seed (the shipped prior was trained on seed 1).")] = 1001,
    snr: Annotated[str, typer.Option(help="Comma-separated S/N values.")] = "20,50,100",
    snr_kind: Annotated[str, typer.Option(help="'peak' (brightest pixel) or 'matched' (whole galaxy).")] = "peak",
    hosts: Annotated[str, typer.Option(help="Host sets: realistic (stellar-population bulge, disk, clumps), "
                                            "isochromatic, dust-free (realistic hosts without dust), "
                                            "stress (extreme power-law colour gradients), nucleus (realistic "
                                            "hosts with an AGN), nucleus-dust-free.")] = "realistic,dust-free",
    starts: Annotated[str, typer.Option(help="red, blue and/or amortized (the network's map) start.")] = "red,blue",
    band_set: Annotated[str, typer.Option("--band-set", help="Bands simulated and fitted: auto (griz + 2MASS J "
                                                             "for the red start, griz for the blue), grizJ or "
                                                             "griz.")] = "auto",
    priors: Annotated[str, typer.Option(help="on, off (likelihood + exponential A prior only) and/or gauge "
                                             "(galdust fit --dust-level gauge).")] = "on,off",
    host_model: Annotated[str, typer.Option("--host-model", help="The fit's host model(s) (galdust fit --host): "
                                                                 "comma-separated, of auto (galdust fit's default: "
                                                                 "clumps, or single with --priors gauge), single, "
                                                                 "bulge-disk, nucleus, bulge-disk-nucleus, clumps, "
                                                                 "bulge-disk-clumps.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Galaxies fitted at once.")] = 16,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
):
    """Fit held-out simulated galaxies and tabulate ΔA_V and A_V-map correlation per covering fraction
    (the seed's Figure 4), for each start, host type, S/N and with/without the learned priors."""
    import csv

    import numpy as np

    from ..dust.api import make_fitter
    from ..dust.evaluate import BAND_SETS, HOST_SETS, evaluate_config, format_table, summarise
    from ..io import atomic_path

    csv_path, md_path = out / "eval_dust.csv", out / "eval_dust.md"
    for p in (csv_path, md_path):
        if p.exists() and not overwrite:
            raise UserError(f"{p}: exists (use --overwrite to replace it)")
    from ..dust.fit import HOST_CHOICES, resolve_host

    for values, allowed, what in ((_csv_list(hosts), HOST_SETS, "host set"),
                                  ([band_set], ("auto", *BAND_SETS), "--band-set"),
                                  (_csv_list(starts), ("red", "blue", "amortized"), "start"),
                                  (_csv_list(priors), ("on", "off", "gauge"), "priors setting"),
                                  (_csv_list(host_model), HOST_CHOICES, "--host-model")):
        for v in values:
            if v not in allowed:
                raise UserError(f"unknown {what} {v!r} ({', '.join(allowed)})")
    rows, blocks = [], []
    for hm, pr in ((hm, pr) for hm in _csv_list(host_model) for pr in _csv_list(priors)):
        level = "gauge" if pr == "gauge" else "shrink"
        hm = resolve_host(hm, level)  # 'auto': the model it is at this level
        fitter = make_fitter(level=level, host=hm, priors=pr == "on")  # the gauge level never uses the priors
        for st in _csv_list(starts):
            for h in _csv_list(hosts):
                for sn in _csv_list(snr, float):
                    t0 = time.perf_counter()
                    r = evaluate_config(n=n, snr=sn, snr_kind=snr_kind, hosts=h, start=st,
                                        priors=pr == "on", seed=seed, batch_size=batch_size,
                                        fitter=fitter, band_set=band_set)
                    dt = time.perf_counter() - t0
                    r = [dict(x, setting=pr, host_model=hm) for x in r]  # on, off or gauge (``priors`` is a bool)
                    rows += r
                    ok = [x for x in r if not x["error"]]
                    cov = np.array([x["covfrac"] for x in ok])
                    bs = band_set if band_set != "auto" else ("grizJ" if st == "red" else "griz")
                    title = (f"{st} start ({bs}), {h} hosts, S/N {sn:g} ({snr_kind}), priors {pr}, fit host {hm}: "
                             f"{len(ok)} galaxies, {dt:.0f} s")
                    dusty = [x for x in ok if x["av_lw_true"] > 0.1]
                    better = sum(x["chi2"] < x["chi2_nd"] for x in dusty)
                    lw = [(lo, [x for x in ok if x["covfrac"] < 0.9 and x["av_lw_true"] > lo]) for lo in (0.1, 0.3)]
                    table = format_table(summarise(ok, cov), title)
                    fit_lw = np.array([x["av_lw_fit"] for x in ok])
                    if h.endswith("dust-free"):  # no dust to find: how much does the fit invent?
                        table += (f"\n\ndust-free hosts: fitted A_V,LW ≤ 0.03 mag on {(fit_lw <= 0.03).sum()} of "
                                  f"{len(ok)} ({100 * (fit_lw <= 0.03).mean():.0f} %); median {np.median(fit_lw):.3f}, "
                                  f"84 % {np.percentile(fit_lw, 84):.3f} mag")
                    table += (f"\n\nχ²(dust) < χ²(dust-free) on {better} of {len(dusty)} galaxies with A_V,LW > 0.1; "
                              f"converged {sum(x['converged'] for x in ok)} of {len(ok)}; median χ² {np.median([x['chi2'] for x in ok]):.3f} "
                              f"(dust-free fit {np.median([x['chi2_nd'] for x in ok]):.3f}); "
                              f"median |Δδ| {np.median([abs(x['delta'] - x['delta_true']) for x in ok]):.2f}")
                    for lo, sel in lw:  # dusty galaxies (f < 0.9): does the fit shrink real dust?
                        if sel:
                            table += (f"; f < 0.9 and A_V,LW > {lo:g}: {len(sel)} galaxies, median ΔA_V "
                                      f"{np.median([x['dAV'] for x in sel]):+.3f}, fit/truth "
                                      f"{np.median([x['av_lw_fit'] / x['av_lw_true'] for x in sel]):.2f}, corr "
                                      f"{np.nanmedian([x['corr'] for x in sel]):.2f}")
                    blocks.append(table)
                    if not quiet:
                        typer.echo(table + "\n")
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(csv_path, overwrite) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    with atomic_path(md_path, overwrite) as tmp:
        tmp.write_text("\n\n".join(blocks) + "\n")
    if not quiet:
        typer.echo(f"wrote {csv_path} and {md_path}")
