"""Pictures: image grids, 2-D densities, and energy traces along a sampling chain."""

from __future__ import annotations

import math
import pathlib
from typing import Callable, Sequence

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, ncol: int | None = None, pad: int = 1, scale: int | None = None) -> np.ndarray:
    """Tiles NHWC images in [0, 1] (clipped; values outside are shown at the limits) into one
    uint8 HxWxC picture. Small images are enlarged by pixel replication to >= 32 pixels."""
    images = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    if images.ndim != 4:
        raise ValueError(f"image_grid expects NHWC images, got shape {images.shape}")
    n, h, w, c = images.shape
    if scale is None:
        scale = max(1, math.ceil(32 / max(h, w)))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
    ncol = ncol or max(1, int(math.ceil(math.sqrt(n))))
    nrow = int(math.ceil(n / ncol))
    grid = np.ones((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = images[i]
    return (grid * 255.0 + 0.5).astype(np.uint8)


def save_image_grid(images: np.ndarray, path: str | pathlib.Path, ncol: int | None = None) -> None:
    grid = image_grid(images, ncol)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)


def save_density_2d(energy_fn: Callable[[np.ndarray], np.ndarray], path: str | pathlib.Path, *,
                    samples: np.ndarray | None = None, data: np.ndarray | None = None,
                    lim: float = 4.0, resolution: int = 200, title: str = "") -> None:
    """Learned density exp(-E) of a 2-D energy on a grid, normalised on the grid, beside the
    data and the samples."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = np.linspace(-lim, lim, resolution, dtype=np.float32)
    xx, yy = np.meshgrid(g, g)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    e = np.asarray(energy_fn(pts), dtype=np.float64).reshape(resolution, resolution)
    p = np.exp(-(e - e.min()))
    p /= p.sum() * (g[1] - g[0]) ** 2
    panels = [("learned density exp(-E)", None)]
    if data is not None:
        panels.append(("data", data))
    if samples is not None:
        panels.append(("samples", samples))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    for ax, (name, pts_) in zip(axes[0], panels):
        if pts_ is None:
            ax.imshow(p, extent=(-lim, lim, -lim, lim), origin="lower", cmap="viridis")
        else:
            ax.scatter(pts_[:, 0], pts_[:, 1], s=1, alpha=0.5)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_energy_trace(temperatures: np.ndarray, energies: np.ndarray, path: str | pathlib.Path,
                      labels: Sequence[str] = ()) -> None:
    """Energy of chains and temperature against the step of an annealed chain (MDSM Fig. A7B).

    energies: (steps,) or (steps, chains)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    energies = np.asarray(energies)
    energies = energies[:, None] if energies.ndim == 1 else energies
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(len(temperatures))
    for j in range(energies.shape[1]):
        ax.plot(steps, energies[:, j], lw=0.8, label=labels[j] if j < len(labels) else None)
    ax.set_xlabel("Langevin step")
    ax.set_ylabel("energy")
    ax2 = ax.twinx()
    ax2.plot(steps, temperatures, color="k", ls="--", lw=1.0)
    ax2.set_ylabel("temperature (dashed)")
    if labels:
        ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
