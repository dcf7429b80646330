"""Pictures: image grids and titled panels a person reads at a glance, 2-D densities, energy traces.

Small images (8x8 digits) are enlarged by pixel replication to at least ``MIN_PIXELS`` on a side;
grids hold a modest number of images (``GRID_IMAGES``, ten per row) separated by thin grey lines;
panels carry a title over every column.
"""

from __future__ import annotations

import math
import pathlib
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GRID_IMAGES = 100  # images in a sample grid
GRID_COLUMNS = 10
MIN_PIXELS = 48  # small images are enlarged to at least this many pixels on a side
SEPARATOR = 0.6  # grey level of the lines between images (between the digits' black and white)
FONT_SIZE = 14


def _scale_for(h: int, w: int) -> int:
    return max(1, math.ceil(MIN_PIXELS / max(h, w)))


def image_grid(images: np.ndarray, ncol: int | None = None, pad: int = 2, scale: int | None = None) -> np.ndarray:
    """Tiles NHWC images in [0, 1] (clipped; values outside are shown at the limits, NaN pixels in the
    separator's grey, so a diverged chain's sample shows as a grey tile) into one uint8
    HxWxC picture, ``ncol`` per row (default: a square), with ``pad``-pixel grey lines between them.
    Small images are enlarged by pixel replication to at least ``MIN_PIXELS`` pixels (``scale``)."""
    images = np.clip(np.nan_to_num(np.asarray(images, dtype=np.float32), nan=SEPARATOR), 0.0, 1.0)
    if images.ndim != 4:
        raise ValueError(f"image_grid expects NHWC images, got shape {images.shape}")
    n, h, w, c = images.shape
    scale = _scale_for(h, w) if scale is None else scale
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
    ncol = ncol or max(1, int(math.ceil(math.sqrt(n))))
    nrow = max(1, int(math.ceil(n / ncol)))
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), SEPARATOR, np.float32)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = images[i]
    return (grid * 255.0 + 0.5).astype(np.uint8)


def _font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _to_pil(picture: np.ndarray) -> Image.Image:
    return Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).convert("RGB")


def with_title(picture: Image.Image, title: str) -> Image.Image:
    """``picture`` under a white strip holding ``title`` (centred)."""
    font = _font()
    strip = FONT_SIZE + 10
    out = Image.new("RGB", (max(picture.width, int(font.getlength(title)) + 10), picture.height + strip), "white")
    out.paste(picture, (0, strip))
    ImageDraw.Draw(out).text((out.width / 2, strip / 2), title, fill="black", font=font, anchor="mm")
    return out


def save_image_grid(images: np.ndarray, path: str | pathlib.Path, ncol: int | None = GRID_COLUMNS,
                    title: str | None = None) -> None:
    """Saves up to ``GRID_IMAGES`` images as a grid (``ncol`` per row), with an optional title."""
    images = np.asarray(images)[:GRID_IMAGES]
    picture = _to_pil(image_grid(images, ncol=min(ncol or GRID_COLUMNS, len(images))))
    (with_title(picture, title) if title else picture).save(path)


def save_panels(columns: Sequence[tuple[str, np.ndarray]], path: str | pathlib.Path, *, groups: int | None = None,
                title: str | None = None) -> None:
    """One row per image, one titled column per entry of ``columns`` [(title, images (n, H, W, C))].

    Rows are split into ``groups`` side-by-side blocks (default: about square), each with the column
    titles on top, separated by a white gap."""
    n = len(columns[0][1])
    h, w = np.asarray(columns[0][1]).shape[1:3]
    groups = groups or max(1, round(math.sqrt(n * h / (len(columns) * w * 2))))
    per = -(-n // groups)
    font = _font()
    head = FONT_SIZE + 10
    blocks = []
    for g in range(groups):
        rows = slice(g * per, min(n, (g + 1) * per))
        if rows.start >= n:
            break
        # Each column of tiles (a strip of the grid, grey lines included) goes in a slot as wide as its
        # title needs, centred: the images keep their pixels square however long the titles are.
        strips = [_to_pil(image_grid(np.asarray(imgs)[rows], ncol=1)) for _, imgs in columns]
        slot = int(max(max(s.width for s in strips), max(font.getlength(t) for t, _ in columns) + 8))
        canvas = Image.new("RGB", (slot * len(columns), max(s.height for s in strips) + head), "white")
        draw = ImageDraw.Draw(canvas)
        for j, ((t, _), strip) in enumerate(zip(columns, strips)):
            canvas.paste(strip, (j * slot + (slot - strip.width) // 2, head))
            draw.text(((j + 0.5) * slot, head / 2), t, fill="black", font=font, anchor="mm")
        blocks.append(canvas)
    gap = 16
    out = Image.new("RGB", (sum(b.width for b in blocks) + gap * (len(blocks) - 1), max(b.height for b in blocks)),
                    "white")
    x = 0
    for b in blocks:
        out.paste(b, (x, 0))
        x += b.width + gap
    (with_title(out, title) if title else out).save(path)


def save_labelled_rows(rows: Sequence[tuple[str, np.ndarray]], path: str | pathlib.Path, title: str | None = None) -> None:
    """One row of images per entry of ``rows`` [(label, images (n, H, W, C) in [0, 1])], the label
    to the left of its row; rows may hold different numbers of images, and images smaller than the
    largest are centred on black at that size (e.g. 28x28 digits beside ones padded to 32x32), so
    every row shows its pixels at the same scale."""
    font = _font()
    arrays = [np.asarray(images) for _, images in rows]
    h, w = max(a.shape[1] for a in arrays), max(a.shape[2] for a in arrays)

    def centred(a: np.ndarray) -> np.ndarray:
        dh, dw = h - a.shape[1], w - a.shape[2]
        return np.pad(a, ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)))

    strips = [(label, _to_pil(image_grid(centred(a), ncol=len(a)))) for (label, _), a in zip(rows, arrays)]
    label_w = int(max(font.getlength(t) for t, _ in strips)) + 16
    out = Image.new("RGB", (label_w + max(s.width for _, s in strips), sum(s.height for _, s in strips)), "white")
    draw = ImageDraw.Draw(out)
    y = 0
    for label, strip in strips:
        draw.text((8, y + strip.height / 2), label, fill="black", font=font, anchor="lm")
        out.paste(strip, (label_w, y))
        y += strip.height
    (with_title(out, title) if title else out).save(path)


def save_density_2d(energy_fn: Callable[[np.ndarray], np.ndarray], path: str | pathlib.Path, *,
                    panels: Sequence[tuple[str, np.ndarray | None]], lim: float = 4.0, resolution: int = 200,
                    title: str = "", footnote: str = "") -> None:
    """The learned log-density -E of a 2-D energy on a grid (normalised on the grid, so every mode
    shows however unequal their masses), beside point panels [(title, points (n, 2))]."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = np.linspace(-lim, lim, resolution, dtype=np.float32)
    xx, yy = np.meshgrid(g, g)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    e = np.asarray(energy_fn(pts), dtype=np.float64).reshape(resolution, resolution)
    logp = -(e - e.min())
    logp -= np.log(np.exp(logp).sum() * (g[1] - g[0]) ** 2)
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(4 * (1 + len(panels)), 4.3), squeeze=False)
    ax = axes[0][0]
    im = ax.imshow(np.maximum(logp, logp.max() - 12.0), extent=(-lim, lim, -lim, lim), origin="lower", cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title("learned log-density -E (+ const)")
    for ax, (name, pts_) in zip(axes[0][1:], panels):
        ax.scatter(pts_[:, 0], pts_[:, 1], s=1, alpha=0.4)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    if footnote:
        fig.text(0.5, 0.01, footnote, ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04 if footnote else 0, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_energy_trace(temperatures: np.ndarray, energies: np.ndarray, path: str | pathlib.Path,
                      labels: Sequence[str] = (), stages: Sequence[tuple[str, int]] = ()) -> None:
    """Energy of chains and temperature against the step of a chain (MDSM Fig. A7B).

    energies: (steps,) or (steps, chains). stages: [(name, steps)] of a chain run in stages
    (a different energy each), marked by vertical lines when there are several."""
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
    if len(stages) > 1:
        edge = 0
        for name, n in stages:
            ax.axvline(edge, color="grey", lw=0.6, ls=":")
            ax.text(edge, 1.0, f" {name}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
            edge += n
    ax2 = ax.twinx()
    ax2.plot(steps, temperatures, color="k", ls="--", lw=1.0)
    ax2.set_ylabel("temperature (dashed)")
    if labels:
        ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _magnitudes(values: Sequence[float]) -> np.ndarray:
    """The finite, nonzero |values| of a curve, float64."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    return v[np.isfinite(v) & (v > 0)]


def curve_scale(values: Sequence[float], decades: float = 1.0) -> str:
    """The y-axis scale for one training curve: "linear", unless its largest finite value is more
    than ``decades`` powers of ten above its typical one (the median nonzero magnitude), as when
    one early spike would flatten the rest of a linear plot into a line; then "log" where all
    values are positive, "symlog" where some are zero or negative."""
    mags = _magnitudes(values)
    if mags.size < 2 or mags.max() <= 10.0 ** decades * np.median(mags):
        return "linear"
    v = np.asarray(values, dtype=np.float64)
    return "log" if (v[np.isfinite(v)] > 0).all() else "symlog"


def save_curves(records: Sequence[dict], path: str | pathlib.Path, title: str = "") -> None:
    """Training curves from the lines of ``metrics.jsonl``: one panel per metric the method
    reported (loss, gradient norm, energies, ...) against the step, on a log axis where the
    largest value is over ten times the typical one (:func:`curve_scale`). Bookkeeping fields (window sizes,
    skip counts, speed) are left out; learning rates share one panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skip = {"step", "window_steps", "skipped", "skipped_in_window", "steps_per_s"}
    names = [k for k in records[0] if k not in skip and not k.startswith("lr")
             and isinstance(records[0][k], (int, float))]
    lrs = [k for k in records[0] if k.startswith("lr")]
    panels = names + (["lr"] if lrs else [])
    ncol = min(4, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow), squeeze=False)
    steps = np.array([r["step"] for r in records])
    for ax, name in zip(axes.ravel(), panels):
        keys = lrs if name == "lr" else [name]
        series = [np.array([r.get(key, np.nan) for r in records], dtype=np.float64) for key in keys]
        for key, ys in zip(keys, series):
            ax.plot(steps, ys, lw=1.2, label=key if name == "lr" else None)
        values = np.concatenate(series)
        scale = curve_scale(values)
        if scale == "symlog":  # linear within the typical values curve_scale measured against
            ax.set_yscale("symlog", linthresh=float(np.median(_magnitudes(values))))
        elif scale == "log":
            ax.set_yscale("log")
        ax.set_title(name + (f" ({scale} axis)" if scale != "linear" else ""))
        ax.set_xlabel("step")
        if name == "lr" and len(lrs) > 1:
            ax.legend(fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
