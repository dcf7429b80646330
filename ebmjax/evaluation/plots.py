"""Pictures of the evaluation report (matplotlib, Agg backend; nothing is shown on screen)."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Mapping

import numpy as np

from ebmjax import visualize

if TYPE_CHECKING:
    from ebmjax.evaluation.calibration import Calibration


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def energy_histograms(panels: Mapping[str, Mapping[str, np.ndarray]], path: str | pathlib.Path) -> None:
    """One panel per entry of ``panels`` (e.g. "clean", "sigma0 noise"), each overlaying the energy
    histograms {set name: energies (n,)} on shared bins (the MDSM paper's Fig. A7A)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, sets) in zip(axes[0], panels.items()):
        allv = np.concatenate([np.asarray(v, np.float64) for v in sets.values()])
        lo, hi = np.percentile(allv, [0.5, 99.5])
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 60)
        for name, e in sets.items():
            ax.hist(np.clip(e, bins[0], bins[-1]), bins=bins, histtype="step", density=True, lw=1.3, label=name)
        ax.set_xlabel("energy E(x) (higher: judged less likely)")
        ax.set_ylabel("density")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def roc_curves(curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray, float]]],
               path: str | pathlib.Path) -> None:
    """ROC curves per panel: {panel: {set name: (fpr, tpr, auroc)}}; OOD is the positive class."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 5), squeeze=False)
    for ax, (title, sets) in zip(axes[0], curves.items()):
        for name, (fpr, tpr, auc) in sets.items():
            ax.plot(fpr, tpr, lw=1.3, label=f"{name} (AUROC {auc:.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("false-positive rate (in-distribution flagged)")
        ax.set_ylabel("true-positive rate (OOD flagged)")
        ax.set_title(title)
        ax.set_aspect("equal")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def ais_diagnostics(runs: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: str | pathlib.Path) -> None:
    """Left: histograms of final log-weights per run; right: acceptance rate against the beta of
    each move (log axis). runs: {name: (log_weights (n,), acceptance (K,), betas of the moves (K,))}."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, (lw, acc, betas) in runs.items():
        a1.hist(lw - np.max(lw), bins=30, histtype="step", lw=1.3, label=name)
        keep = betas > 0  # beta = 0 has no place on a log axis
        a2.plot(betas[keep], acc[keep], lw=1.0, label=name)
    a1.set_xlabel("log-weight minus its maximum (nats)")
    a1.set_ylabel("chains")
    a1.legend(fontsize=8)
    a2.set_xscale("log")
    a2.set_xlabel("beta of the move")
    a2.set_ylabel("mean acceptance rate")
    a2.set_ylim(0, 1.02)
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def mode_histogram(counts: np.ndarray, path: str | pathlib.Path, title: str) -> None:
    """Samples per mode, sorted, with the uniform level as a dashed line."""
    plt = _plt()
    counts = np.sort(np.asarray(counts))[::-1]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(np.arange(len(counts)), counts, width=1.0)
    ax.axhline(counts.sum() / len(counts), color="k", ls="--", lw=1.0)
    ax.set_xlabel("mode (sorted by count)")
    ax.set_ylabel("samples")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def neighbours_picture(queries: np.ndarray, neighbour_images: np.ndarray, path: str | pathlib.Path) -> None:
    """One row per query: the sample, then its k nearest training images, nearest first.
    queries (n, H, W, C), neighbour_images (n, k, H, W, C), all in [0, 1]."""
    k = neighbour_images.shape[1]
    columns = [("sample", queries)] + [(f"train #{j + 1}", neighbour_images[:, j]) for j in range(k)]
    visualize.save_panels(columns, path, groups=1, title="samples and their nearest training images (L2)")


_SCORE_TITLES = {"fid": "FID (lower is better)", "confident_share": "share recognised with p >= 0.9",
                 "label_entropy": "label entropy (fraction of log 10)"}


def runs_quality_vs_step(runs: dict[str, list[dict]], path: str | pathlib.Path, *, title: str = "") -> None:
    """One panel per score shared by all runs, one line per run ({label: scores of its checkpoint
    scan}) against the training step: runs compared as their training goes on."""
    plt = _plt()
    first = next(iter(runs.values()))
    names = [k for k in first[0] if k != "step" and all(k in s[0] for s in runs.values())]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for label, scores in runs.items():
            ax.plot([s["step"] for s in scores], [s[name] for s in scores], "o-", lw=1.2, ms=4, label=label)
        ax.set_xlabel("training step")
        ax.set_title(_SCORE_TITLES.get(name, name.replace("_", " ")))
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def quality_vs_step(scores: list[dict], path: str | pathlib.Path, *, best_step: int | None = None,
                    title: str = "") -> None:
    """One panel per score (FID, confident share, label entropy, ...) against the checkpoint's step,
    the chosen checkpoint marked."""
    plt = _plt()
    names = [k for k in scores[0] if k != "step"]
    steps = np.array([s["step"] for s in scores])
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.plot(steps, [s[name] for s in scores], "o-", lw=1.2, ms=4)
        if best_step is not None:
            ax.axvline(best_step, color="k", ls=":", lw=1.0, label=f"chosen: step {best_step}")
            ax.legend(fontsize=8)
        ax.set_xlabel("training step")
        ax.set_title(_SCORE_TITLES.get(name, name.replace("_", " ")))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def reliability_diagram(bins: "Calibration", path: str | pathlib.Path, title: str) -> None:
    """Accuracy against confidence per bin (bars) beside the diagonal of perfect calibration, with
    the share of predictions in each bin underneath."""
    plt = _plt()
    centres = 0.5 * (bins.edges[:-1] + bins.edges[1:])
    width = bins.edges[1] - bins.edges[0]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(5, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    filled = bins.counts > 0
    acc, conf = bins.accuracy[filled], bins.confidence[filled]
    a1.bar(centres[filled], acc, width=width * 0.95, color="tab:blue", label="accuracy")
    a1.plot(centres[filled], conf, "o", color="tab:red", ms=4, label="mean confidence")
    a1.vlines(centres[filled], np.minimum(acc, conf), np.maximum(acc, conf), color="tab:red", lw=1.5)
    a1.plot([0, 1], [0, 1], "k:", lw=0.8)
    a1.set_ylabel("accuracy")
    a1.set_ylim(0, 1)
    a1.set_title(f"{title}\nECE {bins.ece:.3f}")
    a1.legend(fontsize=8, loc="upper left")
    a2.bar(centres, bins.counts / max(bins.counts.sum(), 1), width=width * 0.95, color="tab:gray")
    a2.set_xlabel("confidence (top class probability)")
    a2.set_ylabel("share")
    a2.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
