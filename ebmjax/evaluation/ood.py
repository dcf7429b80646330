"""Out-of-distribution detection with energies: AUROC, ROC curves, and the OOD sets of the papers.

Convention: the score is the energy, and *higher energy means more out-of-distribution*, so the
OOD set is the positive class. AUROC = P(E_out > E_in) + P(E_out = E_in) / 2, the Mann-Whitney
statistic: 1 is perfect separation, 0.5 chance, below 0.5 the model prefers the OOD data (the
phenomenon of Nalisnick et al. 2019 that the MDSM paper reproduces on SVHN).

The MDSM paper measures energies after adding noise of std sigma0 to the inputs, because its
energy is trained on noisy points only: :func:`noisy_energies`.

OOD sets built from arrays (numpy): :func:`uniform_noise`, :func:`constant_images`,
:func:`interpolations`; the report adds scikit-image faces and tfds sets (SVHN, CIFAR-100).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ebmjax.errors import ConfigError
from ebmjax.samplers.kernels import apply, as_partial

__all__ = [
    "ood_auroc",
    "roc_curve",
    "energies",
    "noisy_energies",
    "uniform_noise",
    "constant_images",
    "interpolations",
]

EnergyFn = Callable[[jax.Array], jax.Array]


def _scores(x: np.ndarray, name: str) -> np.ndarray:
    s = np.asarray(x, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ConfigError(f"{name} is empty: need at least one energy per set.")
    if not np.all(np.isfinite(s)):
        raise ConfigError(f"{name} holds non-finite energies; the model diverged on some inputs.")
    return s


def ood_auroc(energy_in: np.ndarray, energy_out: np.ndarray) -> float:
    """Area under the ROC curve for telling ``energy_out`` (positive, OOD) from ``energy_in``
    by thresholding the energy; ties count one half. Exact, via average ranks (no binning)."""
    a, b = _scores(energy_in, "energy_in"), _scores(energy_out, "energy_out")
    allv = np.concatenate([a, b])
    _, inverse, counts = np.unique(allv, return_inverse=True, return_counts=True)
    # 1-based rank of each distinct value, averaged over its ties.
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_out = avg_rank[inverse[len(a):]].sum()
    u = rank_out - len(b) * (len(b) + 1) / 2.0
    return float(u / (len(a) * len(b)))


def roc_curve(energy_in: np.ndarray, energy_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate), both (m + 1,) from (0, 0) to (1, 1), over the m
    distinct energies as thresholds (flag as OOD when E >= threshold), thresholds descending."""
    a, b = _scores(energy_in, "energy_in"), _scores(energy_out, "energy_out")
    thresholds = np.unique(np.concatenate([a, b]))[::-1]
    a_sorted, b_sorted = np.sort(a), np.sort(b)
    fpr = (len(a) - np.searchsorted(a_sorted, thresholds, side="left")) / len(a)
    tpr = (len(b) - np.searchsorted(b_sorted, thresholds, side="left")) / len(b)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def energies(energy_fn: EnergyFn, x: np.ndarray, *, batch_size: int = 500) -> np.ndarray:
    """E(x) (n,) float64 for inputs (n, ...), evaluated ``batch_size`` rows at a time (jitted).
    The last batch is padded so all calls share one compiled shape."""
    x = np.asarray(x, np.float32)
    fn = as_partial(energy_fn)
    bs = max(1, min(int(batch_size), len(x)))
    out = []
    for i in range(0, len(x), bs):
        chunk = x[i:i + bs]
        n = len(chunk)
        if n < bs:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - n, axis=0)])
        out.append(np.asarray(apply(fn, jnp.asarray(chunk)), np.float64)[:n])
    return np.concatenate(out) if out else np.zeros((0,))


def noisy_energies(energy_fn: EnergyFn, x: np.ndarray, key: jax.Array, sigma: float, *,
                   batch_size: int = 500) -> np.ndarray:
    """E(x + sigma z), z ~ N(0, I): the MDSM paper's OOD score (sigma = sigma0). (n,) float64."""
    x = np.asarray(x, np.float32)
    z = np.asarray(jax.random.normal(key, x.shape, jnp.float32))
    return energies(energy_fn, x + np.float32(sigma) * z, batch_size=batch_size)


def uniform_noise(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """(n, *shape) float32, every pixel i.i.d. U[0, 1]."""
    return rng.random((n, *shape), dtype=np.float32)


def constant_images(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """(n, *shape) float32 images of one random colour each: every channel one U[0, 1] value."""
    colours = rng.random((n, *([1] * (len(shape) - 1)), shape[-1]), dtype=np.float32)
    return np.broadcast_to(colours, (n, *shape)).copy()


def interpolations(images: np.ndarray, n: int, rng: np.random.Generator, *, weight: float = 0.5) -> np.ndarray:
    """(n, ...) float32 mixtures weight * x_i + (1 - weight) * x_j of random pairs i != j of ``images``."""
    images = np.asarray(images, np.float32)
    if len(images) < 2:
        raise ConfigError("interpolations need at least two images.")
    i = rng.integers(0, len(images), n)
    j = (i + rng.integers(1, len(images), n)) % len(images)  # never equal to i
    return weight * images[i] + (1.0 - weight) * images[j]
