"""Figures for people (matplotlib, Agg backend; nothing here is imported by the numerical core)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def rgb(cube: np.ndarray, stretch: float | None = None, Q: float = 8.0) -> np.ndarray:
    """Lupton et al. (2004) asinh RGB of a (band, y, x) cube: reddest band → red.

    ``stretch`` defaults to the 99.5th percentile of the summed image, so galaxies of any flux
    scale look alike. Channels: the last, middle and first bands.
    """
    nb = cube.shape[0]
    channels = (nb - 1, nb // 2, 0) if nb >= 3 else (nb - 1, 0, 0)
    img = np.stack([cube[c] for c in channels]).astype(float)
    tot = img.mean(axis=0)
    if stretch is None:
        stretch = max(np.percentile(tot, 99.5), 1e-12)
    scale = np.arcsinh(Q * np.clip(tot, 0, None) / stretch) / Q / np.where(tot > 0, tot / stretch, 1.0)
    out = np.clip(img / stretch * scale, 0, None)
    out = out / max(out.max(), 1e-12)
    return np.moveaxis(out, 0, -1)


def plot_simulations(sim: dict, path: str | Path, n: int = 8, title: str = "") -> Path:
    """Grid: observed RGB, truth A_V map, intrinsic host RGB (one row per galaxy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(sim["cube"]))
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for i in range(n):
        host = sim["host_cube"][i]
        st = max(np.percentile(host.mean(axis=0), 99.5), 1e-12)
        axes[i, 0].imshow(rgb(sim["cube"][i], stretch=st), origin="lower")
        im = axes[i, 1].imshow(sim["AV"][i], origin="lower", cmap="magma", vmin=0, vmax=max(0.05, float(sim["AV"][i].max())))
        fig.colorbar(im, ax=axes[i, 1], fraction=0.046, pad=0.02, label="A_V [mag]")
        axes[i, 2].imshow(rgb(host, stretch=st), origin="lower")
        p = sim["params"]
        axes[i, 0].set_ylabel(
            f"i={np.rad2deg(p.inc[i]):.0f}° δ={p.delta[i]:+.2f}\nA_V,LW={sim['av_lw'][i]:.2f} f={sim['covfrac'][i]:.2f}",
            fontsize=8,
        )
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("observed (RGB)")
    axes[0, 1].set_title("truth A_V map")
    axes[0, 2].set_title("intrinsic host (RGB)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
