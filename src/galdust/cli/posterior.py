"""``galdust posterior``: amortized posteriors (training, distillation, sampling through
:mod:`galdust.posterior.api`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import UserError, _csv_list, app


posterior_app = typer.Typer(help="Amortized posteriors of galaxy properties (conditional flow matching).",
                            no_args_is_help=True)
app.add_typer(posterior_app, name="posterior")
from ..posterior.api import NAMED_POSTERIORS  # noqa: E402 - light (no JAX at import)

DEFAULT_POSTERIOR = NAMED_POSTERIORS["cfm-phot"]  # the photometric CFM (training and distillation default)


@posterior_app.command("train")
def posterior_train(
    sims: Annotated[list[Path], typer.Option("--sims", help="Simulated table from galdust simulate-sed (repeat the "
                                                           "option to train on several).")],
    out: Annotated[Path, typer.Option("--out", help="Weights file to write (.eqx, with a .json sidecar).")],
    props: Annotated[str, typer.Option(help="Comma-separated properties to infer.")] =
        "log_mstar,log_sfr,logzsol,dn4000,av,z",
    r_limit: Annotated[Optional[float], typer.Option("--r-limit", help="Keep sims with r (asinh mag) brighter than "
                                                                       "this (17.77: the SDSS main sample).")] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Training steps (early stopping).")] = 20000,
    width: Annotated[int, typer.Option(min=8, help="Velocity MLP width (3 hidden layers).")] = 256,
    seed: Annotated[int, typer.Option(help="Seed (split, initialisation, batches).")] = 0,
    images: Annotated[bool, typer.Option("--images", help="Image + photometry model: the sims' cutouts "
                                                          "(SIMS.images.npy from simulate-sed --images) "
                                                          "through a jointly trained CNN.")] = False,
    batch: Annotated[int, typer.Option("--batch", min=8, help="Batch size.")] = 1024,
    init: Annotated[Optional[Path], typer.Option("--init", help="Image model: continue training these weights (same "
                                                               "configuration; a new learning-rate schedule).")] = None,
    warm_start: Annotated[Optional[Path], typer.Option("--warm-start", help="Image model: start from this trained "
                                                                           "photometry model (same properties and "
                                                                           "bands): its velocity network and "
                                                                           "standardisation, with zero weights on "
                                                                           "the image embedding.")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (cosine decay).")] = 1e-3,
    given: Annotated[Optional[str], typer.Option("--given", help="Properties known at sampling time, given to the "
                                                                 "model as inputs instead of inferred (z: "
                                                                 "spectroscopic redshifts; sample with "
                                                                 "--redshift-column).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing weights.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
):
    """Train a photometry (or image + photometry) -> properties conditional flow-matching posterior on
    simulated galaxies."""
    import jax.random as jr
    import numpy as np

    from ..posterior.cfm import train_cfm
    from ..posterior.data import read_simulations, sims_provenance
    from ..posterior.model import build, luptitudes, save_model
    from ..simulate.sed import SDSS_SKY_NMGY

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    cat, imgs = read_simulations(sims, images)
    glist = _csv_list(given) if given else []
    if glist and images:
        raise UserError("--given is for photometry models (not --images)")
    plist = [p for p in _csv_list(props) if p not in glist]
    missing = [p for p in plist + glist if p not in cat.truth]
    if missing:
        raise UserError(f"{cat.source}: no truth column(s) {', '.join(missing)}")
    theta = np.stack([cat.truth[p] for p in plist], axis=1)
    gval = np.stack([cat.truth[p] for p in glist], axis=1) if glist else np.zeros((len(theta), 0))
    soft = [SDSS_SKY_NMGY[b] for b in cat.bands]
    keep = np.all(np.isfinite(theta), axis=1) & np.all(np.isfinite(cat.flux), axis=1) & np.all(np.isfinite(gval), axis=1)
    if r_limit is not None:
        keep &= luptitudes(cat.flux, soft)[:, cat.bands.index("sdss_r")] < r_limit
    theta, flux = theta[keep], cat.flux[keep]
    key = jr.PRNGKey(seed)
    if images:
        from ..posterior.image import build_image_model, save_image_model, train_image_cfm
        from ..simulate.sed_images import SKY_PIX, ImageConfig

        rows = np.nonzero(keep)[0]
        ib = ImageConfig().image_bands
        if init is not None and warm_start is not None:
            raise UserError("--init and --warm-start exclude each other")
        if init is not None:
            from ..posterior.kinds import load_model

            model, init_meta = load_model(init)
            if init_meta.get("kind") != "cfm-image" or list(model.props) != plist:
                raise UserError(f"{init}: not an image model of the properties {', '.join(plist)}")
        elif warm_start is not None:
            from ..posterior.image import image_model_from_photometric
            from ..posterior.kinds import load_model

            try:
                phot, phot_meta = load_model(warm_start)
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                raise UserError(f"{warm_start}: cannot read a model ({e})") from None
            if (phot_meta.get("kind") != "cfm-photometry" or list(phot.props) != plist
                    or list(phot.bands) != list(cat.bands)):
                raise UserError(f"{warm_start}: not a photometry model of the properties {', '.join(plist)} "
                                f"and bands {', '.join(cat.bands)}")
            model = image_model_from_photometric(phot, ib, [SKY_PIX[b] for b in ib], key=jr.fold_in(key, 1))
        else:
            model = build_image_model(plist, cat.bands, soft, ib, [SKY_PIX[b] for b in ib], theta, flux, width=width,
                                      key=jr.fold_in(key, 1))
        t0 = time.perf_counter()

        class _Rows:  # the kept rows of the memory-mapped images, read batch by batch
            def __getitem__(self, i):
                return imgs[rows[i]]

        model, res = _train(train_image_cfm, out, model, theta, flux, _Rows(),
                            key=jr.fold_in(key, 2 if init is None else 3), max_steps=max_steps, batch=batch, lr=lr,
                            log=None if quiet else typer.echo)
        # the --init model's history, time and runs come first: the sidecar describes the whole chain
        prev = init_meta if init is not None else {}
        hist = [_hist_entry(h) for h in prev.get("history", [])] + [
            dict(h, step=h["step"] + prev.get("steps", 0)) for h in res.history]
        dt = time.perf_counter() - t0 + prev.get("train_seconds", 0.0)
        init_s, warm_s = (None if x is None else str(x) for x in (init, warm_start))
        runs = prev.get("runs", []) + [dict(steps=res.step, lr=lr, batch=batch, init=init_s, warm_start=warm_s)]
        from ..posterior.domain import fit_domain

        save_image_model(out, model, dict(sims=[str(p) for p in sims], sims_provenance=sims_provenance(sims),
                                          domain=fit_domain(flux, soft, cat.bands, flux_err=cat.flux_err[keep]),
                                          n_train=int(keep.sum()), r_limit=r_limit, seed=seed,
                                          steps=hist[-1]["step"], batch=batch, train_seconds=round(dt, 1),
                                          init=init_s, warm_start=warm_s, runs=runs,
                                          best_val_loss=res.best_val, history=hist))
        _done(out)
        typer.echo(f"trained on {int(keep.sum())} simulated galaxies with images in {dt:.0f} s "
                   f"({hist[-1]['step']} steps) -> {out}")
        return
    gval = gval[keep]
    model = build(plist, cat.bands, soft, theta, flux, width=width, key=jr.fold_in(key, 1), given=tuple(glist),
                  given_values=gval if glist else None)
    cond = np.asarray(model.features(flux, gval if glist else None))
    z = (theta - np.asarray(model.theta_mean)) / np.asarray(model.theta_std)
    t0 = time.perf_counter()
    vel, res = _train(train_cfm, out, model.velocity, z, cond, key=jr.fold_in(key, 2), max_steps=max_steps,
                      batch=batch, lr=lr, log=None if quiet else typer.echo)
    model = eqx_replace_velocity(model, vel)
    dt = time.perf_counter() - t0
    from ..posterior.domain import fit_domain

    zgiven = gval[:, glist.index("z")] if "z" in glist else None
    save_model(out, model, dict(kind="cfm-photometry", sims=[str(p) for p in sims],
                                domain=fit_domain(flux, soft, cat.bands, flux_err=cat.flux_err[keep], z=zgiven),
                                sims_provenance=sims_provenance(sims), n_train=int(keep.sum()), r_limit=r_limit,
                                seed=seed, steps=res.step, train_seconds=round(dt, 1),
                                best_val_loss=res.best_val, history=res.history))
    _done(out)
    typer.echo(f"trained on {int(keep.sum())} simulated galaxies in {dt:.0f} s ({res.step} steps) -> {out}")


def _train(trainer, out: Path, *args, stage: str = "", **kw):
    """``trainer(*args, checkpoint=OUT.ckpt[-stage], **kw)``: resumable after an interruption (the
    checkpoints go once the weights are written, :func:`_done`); another run's checkpoint is a
    one-line error."""
    from ..nn.train import CheckpointMismatch

    try:
        return trainer(*args, checkpoint=_ckpt(out, stage), **kw)
    except CheckpointMismatch as e:
        raise UserError(str(e)) from None


def _done(out: Path, stages=("",)) -> None:
    from ..nn.train import remove_checkpoint

    for stage in stages:
        remove_checkpoint(_ckpt(out, stage))


def _ckpt(out: Path, stage: str) -> str:
    """The checkpoint prefix of a training (stage) of the model ``out``: ``OUT.ckpt[-stage]``."""
    return f"{out}.ckpt{'-' + stage if stage else ''}"


def _hist_entry(h):
    """A history entry of an older sidecar ((step, train, val) lists) as the training loop writes it."""
    return h if isinstance(h, dict) else dict(step=h[0], train=h[1], val=h[2])


def eqx_replace_velocity(model, vel):
    import equinox as eqx

    return eqx.tree_at(lambda m: m.velocity, model, vel)


@posterior_app.command("train-vaenf")
def posterior_train_vaenf(
    sims: Annotated[list[Path], typer.Option("--sims", help="Simulated table with images (simulate-sed --images); "
                                                           "repeat the option to train on several.")],
    out: Annotated[Path, typer.Option("--out", help="Weights file to write (.eqx + .json).")],
    latent: Annotated[int, typer.Option(min=2, help="VAE latent dimensions.")] = 16,
    beta: Annotated[float, typer.Option(help="Weight of the VAE's KL term.")] = 1.0,
    vae_steps: Annotated[int, typer.Option("--vae-steps", min=1, help="VAE training steps (batch 256).")] = 3000,
    flow_epochs: Annotated[int, typer.Option("--flow-epochs", min=1, help="Maximum flow epochs (early stopping).")] = 60,
    flow_width: Annotated[int, typer.Option("--flow-width", min=4, help="Width of the flows' conditioner MLPs.")] = 128,
    flow_layers: Annotated[int, typer.Option("--flow-layers", min=1, help="Coupling layers per flow.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    init_vae: Annotated[Optional[Path], typer.Option("--init-vae", help="Keep the VAE of this trained vae-nf model "
                                                                     "(its latent size and image scaling) and train "
                                                                     "the flows only.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing weights.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
):
    """Train the VAE + conditional normalizing flows model (properties, black-hole mass, emission lines)."""
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    from ..posterior.data import read_simulations, sims_provenance
    from ..posterior.vaenf import (LINES, PROPS_NF, VAE, VAENFModel, censor_lines, encode_means, make_flow,
                                  photometric_features, save_vaenf, train_flow, train_vae)
    from ..simulate.sed import SDSS_SKY_NMGY
    from ..simulate.sed_images import SKY_PIX, ImageConfig

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    cat, imgs = read_simulations(sims, images=True)
    missing = [p for p in PROPS_NF + LINES if p not in cat.truth]
    if missing:
        raise UserError(f"{cat.source}: no truth column(s) {', '.join(missing)}")
    key = jr.PRNGKey(seed)
    rng = np.random.default_rng(seed)
    sig = tuple(SKY_PIX[b] for b in ImageConfig().image_bands)
    soft = tuple(SDSS_SKY_NMGY[b] for b in cat.bands)
    t0 = time.perf_counter()
    log = None if quiet else typer.echo
    ch = (16, 32, 64)
    if init_vae is not None:
        from ..posterior.vaenf import load_vaenf

        try:
            prev, pmeta = load_vaenf(init_vae)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{init_vae}: cannot read a vae-nf model ({' '.join(str(e).split())[:200]})") from None
        if tuple(prev.image_sigma) != sig or tuple(prev.bands) != tuple(cat.bands):
            raise UserError(f"{init_vae}: its VAE was trained for other bands or image noise")
        vae, vh, t_vae = prev.vae, pmeta["vae_history"], pmeta["vae_seconds"]
        latent, ch, beta, vae_steps = pmeta["config"]["latent"], tuple(pmeta["config"]["vae_channels"]), \
            pmeta["config"]["beta"], pmeta["vae_steps"]
    else:
        vae, vres = _train(train_vae, out, VAE(3, latent, ch, key=jr.fold_in(key, 1)), imgs, sig, stage="vae",
                           key=jr.fold_in(key, 2), beta=beta, steps=vae_steps, log=log)
        vh = vres.history
        t_vae = vres.seconds
    lat = encode_means(vae, imgs, sig)
    cond = np.concatenate([lat, photometric_features(cat.flux, soft, colours=True)], axis=1)
    theta = np.stack([cat.truth[p] for p in PROPS_NF], 1)
    lines = np.stack([censor_lines(cat.truth[ln], rng) for ln in LINES], 1)
    st = lambda a: (a.mean(0), np.maximum(a.std(0), 1e-6))  # noqa: E731
    (cm, cs), (pm, ps), (lm, ls) = st(cond), st(theta), st(lines)
    flow_cfg = dict(layers=flow_layers, width=flow_width, depth=2, knots=8)
    c = (cond - cm) / cs
    t1 = time.perf_counter()
    fp, hp = _train(train_flow, out, make_flow(len(PROPS_NF), c.shape[1], key=jr.fold_in(key, 3), **flow_cfg),
                    (theta - pm) / ps, c, stage="flow-props", key=jr.fold_in(key, 4), max_epochs=flow_epochs, log=log)
    fl, hl = _train(train_flow, out, make_flow(len(LINES), c.shape[1], key=jr.fold_in(key, 5), **flow_cfg),
                    (lines - lm) / ls, c, stage="flow-lines", key=jr.fold_in(key, 6), max_epochs=flow_epochs, log=log)
    t_flow = time.perf_counter() - t1
    total = time.perf_counter() - t0 + (t_vae if init_vae is not None else 0.0)  # VAE + flows, however trained
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    stats = dict(cond_mean=f32(cm), cond_std=f32(cs), props_mean=f32(pm), props_std=f32(ps), lines_mean=f32(lm),
                 lines_std=f32(ls))
    model = VAENFModel(vae, fp, fl, stats, PROPS_NF, tuple(cat.bands), soft, sig, colours=True)
    cfg = dict(props=list(PROPS_NF), bands=list(cat.bands), soft=list(soft), image_sigma=list(sig), latent=latent,
               vae_channels=list(ch), flow=flow_cfg, beta=beta, colours=True)
    from ..posterior.domain import fit_domain

    save_vaenf(out, model, dict(config=cfg, sims=[str(p) for p in sims], sims_provenance=sims_provenance(sims),
                                domain=fit_domain(cat.flux, soft, cat.bands, flux_err=cat.flux_err),
                                n_train=len(cat.flux), seed=seed, vae_steps=vae_steps,
                                vae_history=vh, vae_val_mse=_vae_mse(vh[-1]), vae_seconds=round(t_vae, 1),
                                vae_from=str(init_vae) if init_vae is not None else None,
                                flow_props=hp.history, flow_lines=hl.history, flow_seconds=round(t_flow, 1),
                                train_seconds=round(total, 1)))
    _done(out, ("vae", "flow-props", "flow-lines"))
    typer.echo(f"trained on {len(cat.flux)} galaxies in {total:.0f} s "
               f"(VAE {t_vae:.0f} s{' in ' + str(init_vae) if init_vae else ''}, "
               f"reconstruction MSE {_vae_mse(vh[-1]):.4f}; flows {t_flow:.0f} s) -> {out}")


def _vae_mse(h) -> float:
    """The validation reconstruction MSE of a VAE history entry (older sidecars: a list)."""
    return float(h["val"]["mse"]) if isinstance(h, dict) else float(h[3])


@posterior_app.command("distill")
def posterior_distill(
    model: Annotated[Path, typer.Option("--model", help="CFM weights (the teacher), or a shipped name (cfm-phot).")],
    sims: Annotated[Path, typer.Option("--sims", help="Simulated table whose fluxes condition the training pairs.")],
    out: Annotated[Path, typer.Option("--out", help="One-step sampler weights to write (.eqx + .json).")],
    r_limit: Annotated[Optional[float], typer.Option("--r-limit", help="Keep sims brighter than this r (asinh mag).")] = None,
    pairs: Annotated[int, typer.Option("--pairs", min=100, help="(noise, teacher sample) training pairs.")] = 200_000,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps.")] = 15000,
    teacher_steps: Annotated[int, typer.Option("--teacher-steps", min=1, help="RK4 steps of the teacher.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing weights.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
):
    """Distil a CFM posterior into a one-step sampler (one network evaluation per sample)."""
    import jax.random as jr
    import numpy as np

    from ..posterior.data import read_catalog, sims_provenance
    from ..posterior.model import luptitudes
    from ..posterior.kinds import load_model
    from ..posterior.onestep import distill_sampler, save_onestep

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    model = NAMED_POSTERIORS.get(str(model), model)
    teacher, tmeta = load_model(model)
    if tmeta.get("kind") == "cfm-onestep":
        raise UserError(f"{model}: already a one-step sampler; give the CFM it came from")
    cat = read_catalog(sims, teacher.bands)
    keep = np.all(np.isfinite(cat.flux), axis=1)
    if r_limit is not None:
        keep &= luptitudes(cat.flux, teacher.soft)[:, teacher.bands.index("sdss_r")] < r_limit
    t0 = time.perf_counter()
    gval = None
    if teacher.given:
        missing = [p for p in teacher.given if p not in cat.truth]
        if missing:
            raise UserError(f"{sims}: the teacher is conditioned on {', '.join(teacher.given)}; no column(s) "
                            f"{', '.join(missing)}")
        gval = np.stack([cat.truth[p] for p in teacher.given], axis=1)
        keep &= np.all(np.isfinite(gval), axis=1)
        gval = gval[keep]
    m, res = _train(distill_sampler, out, teacher, cat.flux[keep], key=jr.PRNGKey(seed), n_pairs=pairs, steps=steps,
                    teacher_steps=teacher_steps, given=gval, log=None if quiet else typer.echo)
    dt = time.perf_counter() - t0
    from ..posterior.domain import fit_domain

    save_onestep(out, m, dict(teacher=model.name, teacher_sha256=tmeta.get("sha256"), sims=str(sims),
                              domain=tmeta.get("domain") or fit_domain(cat.flux[keep], teacher.soft, teacher.bands,
                                                                          flux_err=cat.flux_err[keep]),
                              sims_provenance=sims_provenance([sims])[0],
                              n_conditions=int(keep.sum()), r_limit=r_limit, pairs=pairs, steps=steps,
                              teacher_steps=teacher_steps, seed=seed, train_seconds=round(dt, 1),
                              best_val_loss=res.best_val, history=res.history))
    _done(out)
    typer.echo(f"distilled in {dt:.0f} s -> {out}")


@posterior_app.command("train-z")
def posterior_train_z(
    catalog: Annotated[Path, typer.Option("--catalog", help="SDSS table with spectroscopic Z (MODELFLUX, EXTINCTION; "
                                                            "PETROFLUX and 2MASS J/H/K_M_EXT used when present).")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    cfm: Annotated[Optional[Path], typer.Option("--cfm", help="Photometric CFM whose posterior summary is a feature "
                                                              "(default: the shipped cfm-onestep, the fast sampler the "
                                                              "shipped z-sdss reads).")] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Cross-validation folds (metrics and calibration).")] = 5,
    trees: Annotated[int, typer.Option("--trees", min=1, help="Boosting rounds (fewer: a quicker, coarser model; "
                                                              "the shipped one has 1500).")] = 1500,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing model folder.")] = False,
):
    """Train the SDSS redshift model (xgboost quantiles on photometry + the CFM's posterior summary)."""
    import numpy as np

    from ..posterior.data import read_catalog
    from ..posterior.kinds import load_model
    from ..posterior.redshift import CFM_PROPS, PARAMS, cfm_features, sdss_table_features, train_redshift

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    cfm_path = cfm or NAMED_POSTERIORS["cfm-onestep"]
    c, cmeta = load_model(cfm_path)
    if cmeta.get("kind") not in (None, "cfm-photometry", "cfm-onestep") or tuple(c.props) != CFM_PROPS:
        raise UserError(f"{cfm_path}: not a photometric CFM of {', '.join(CFM_PROPS)}")
    X, z = sdss_table_features(catalog)
    if z is None:
        raise UserError(f"{catalog}: no Z column (spectroscopic redshifts) to train on")
    cat = read_catalog(catalog, c.bands)
    ok = np.array([not n for n in cat.notes]) & np.isfinite(z)
    t0 = time.perf_counter()
    Xf = np.c_[X[ok], cfm_features(c, cat.flux[ok])]
    params = None if trees == PARAMS["n_estimators"] else dict(PARAMS, n_estimators=trees)
    from ..ml.trees import FitCache

    cache = FitCache(f"{out}.ckpt-trees")  # killed and run again, the training reads back what it had fitted
    m = train_redshift(Xf, z[ok], seed=seed, k=folds, source=str(catalog), params=params, cache=cache)
    m.meta.update(cfm=cfm_path.name, cfm_path=str(cfm_path.resolve()), cfm_sha256=cmeta.get("sha256"),
                  rows_skipped=int((~ok).sum()), train_seconds=round(time.perf_counter() - t0, 1))
    m.save(out, overwrite)
    cache.clear()
    cv = m.meta["cv"]
    typer.echo(f"trained on {m.meta['n_train']} galaxies in {m.meta['train_seconds']:.0f} s; {folds}-fold CV: "
               f"sigma_NMAD {cv['nmad']:.4f}, outliers {100 * cv['outliers']:.2f} %, 16-84 % coverage "
               f"{100 * cv['coverage']:.1f} % -> {out}")


@posterior_app.command("sample")
def posterior_sample(
    catalog: Annotated[Path, typer.Option("--catalog", help="galdust simulator table or SDSS FITS table.")],
    out: Annotated[Path, typer.Option("--out", help="Output FITS table POST.fits.")],
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Weights file, or a shipped model: cfm-phot, cfm-onestep, cfm-image, vae-nf (these two need "
                        "--images), cfm-phot-z, cfm-onestep-z (with --redshift-column), z-sdss (SDSS tables: redshift "
                        "from the SDSS-trained model, the other properties from cfm-onestep-z at its redshifts). "
                        "Default: cfm-onestep-z at the spectroscopic redshifts of an SDSS table whose every "
                        "row has one in Z (as --redshift-column Z), z-sdss on other SDSS tables (and with "
                        "--photo-z), cfm-phot on other tables, cfm-onestep-z with --redshift-column.")] = None,
    samples: Annotated[int, typer.Option("--samples", min=10, help="Posterior samples per object.")] = 1000,
    steps: Annotated[int, typer.Option("--steps", min=1, help="RK4 steps.")] = 100,
    save_samples: Annotated[bool, typer.Option("--save-samples", help="Also write the samples (HDU SAMPLES).")] = False,
    images: Annotated[Optional[Path], typer.Option("--images", help="Image cutouts for image models: .npy (n, 3, H, W) "
                                                                    "or FITS cube, nmgy/pixel, row i = table row "
                                                                    "i.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    redshift_column: Annotated[Optional[str], typer.Option("--redshift-column", help="Column of known (e.g. "
                                                                                     "spectroscopic) redshifts, Z in "
                                                                                     "SDSS tables: the properties at "
                                                                                     "that z (model default "
                                                                                     "cfm-onestep-z).")] = None,
    photo_z: Annotated[bool, typer.Option("--photo-z", help="Infer the redshift from the photometry even when the "
                                                            "SDSS table has spectroscopic redshifts (Z).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
):
    """Posterior percentiles (p16, p50, p84) of each property for every row of a catalogue."""
    from astropy.io import fits
    from astropy.table import Table

    from ..io import atomic_path
    from ..posterior.api import summarise_catalog

    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    res = summarise_catalog(catalog, model, images, seed=seed, samples=samples, steps=steps,
                            keep_samples=save_samples, redshift_column=redshift_column, photo_z=photo_z)
    plan = res.plan
    auto_z = res.redshift_column is not None and redshift_column is None
    if auto_z:
        typer.echo(f"{catalog}: every row has a spectroscopic redshift ({res.redshift_column}); the properties are "
                   f"those at it (--photo-z: infer z from the photometry)", err=True)
    redshift_column = res.redshift_column
    hdus = [fits.PrimaryHDU(), fits.table_to_hdu(Table(res.columns))]
    hdus[1].name = "POSTERIOR"
    if save_samples:
        h = fits.ImageHDU(res.samples, name="SAMPLES")
        h.header["PROPS"] = ",".join(res.props)
        if plan.zmodel is not None and plan.at_z is not None:
            h.header["ZSAMPLES"] = ("zmodel", "z samples: split normal of z-sdss's percentiles")
        elif plan.zmodel is not None:
            h.header["ZSAMPLES"] = ("cfm", "z samples: the CFM's; z_p16/50/84: z-sdss's")
        hdus.append(h)
    hdus[0].header["MODEL"] = (plan.label, "default for this table" if model is None else "as asked")
    if plan.zmodel is not None:
        hdus[0].header["ZMODEL"] = (plan.zmodel.name, "z from the SDSS redshift model")
        if plan.at_z is not None:
            hdus[0].header["CFMMODEL"] = (plan.at_z.name, "the other properties, at z-sdss's z")
        else:
            hdus[0].header["CFMMODEL"] = (plan.cfm.name, "the other properties")
    if redshift_column is not None:
        hdus[0].header["ZGIVEN"] = (redshift_column, "properties at the redshift of this column")
        hdus[0].header["ZAUTO"] = (auto_z, "ZGIVEN: the default for this table (its SDSS Z)")
    hdus[0].header["NSAMPLE"] = samples
    hdus[0].header["RK4STEP"] = steps
    with atomic_path(out, overwrite) as tmp:
        fits.HDUList(hdus).writeto(tmp)
    n_rows = len(res.columns["name"])
    typer.echo(f"{plan.label}: sampled {res.n_used} of {n_rows} rows ({samples} samples each) in {res.seconds:.1f} s "
               f"({res.n_used / max(res.seconds, 1e-9):.1f} objects/s) -> {out}")
