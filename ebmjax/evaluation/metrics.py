"""Sample-quality metrics on features: Fréchet distance (FID), kernel inception distance (KID), and
the Inception score (IS). numpy only; every function takes arrays of features or class probabilities.

Which network produced the features decides what a number means: Inception-v3 pool3 features give
the FID/KID/IS of the literature; the digits classifier of :mod:`ebmjax.evaluation.classifier`
gives "digits FID / IS", useful to compare ebmjax runs with each other and never comparable with
Inception numbers.

Two defects of the original MDSM code are avoided on purpose: its Inception score always returned 1
(it averaged a KL that was identically zero), and its FID standardised each image before the
network. Here IS = exp(E_x KL(p(y|x) || p(y))) with p(y) the marginal over the split, and the
feature networks see images exactly as the data pipeline gives them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ebmjax.errors import ConfigError

__all__ = [
    "FeatureStats",
    "KIDResult",
    "ISResult",
    "feature_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "kernel_inception_distance",
    "inception_score",
]


class FeatureStats(NamedTuple):
    """Mean (d,) and covariance (d, d) of a set of features, float64."""

    mean: np.ndarray
    cov: np.ndarray
    n: int


class KIDResult(NamedTuple):
    """KID: mean and standard deviation over subsets of the unbiased squared MMD."""

    kid: float
    kid_std: float
    n_subsets: int
    subset_size: int


class ISResult(NamedTuple):
    """Inception score: mean and standard deviation over splits of exp(mean KL)."""

    score: float
    score_std: float
    n_splits: int


def _features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(f"{name} must be features of shape (n, d); got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"{name} holds non-finite values; check the samples fed to the feature network.")
    return x


def feature_stats(feats: np.ndarray) -> FeatureStats:
    """Mean and unbiased covariance (divisor n - 1, as in the reference FID code) of (n, d) features."""
    f = _features(feats, "feats")
    if len(f) < 2:
        raise ConfigError(f"need at least 2 feature vectors for a covariance, got {len(f)}.")
    return FeatureStats(f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1]), len(f))


def _sym_sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix via its eigendecomposition."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two Gaussians.

    tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric
    PSD matrix S_a^(1/2) S_b S_a^(1/2), which has the same spectrum as S_a S_b. Unlike scipy's
    sqrtm on the non-symmetric product this never produces complex parts or NaNs on singular
    covariances (fewer samples than feature dimensions).
    """
    if a.mean.shape != b.mean.shape:
        raise ConfigError(f"feature dimensions differ: {a.mean.shape[0]} vs {b.mean.shape[0]}.")
    diff = a.mean - b.mean
    root_a = _sym_sqrt_psd(a.cov)
    middle = root_a @ b.cov @ root_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_sqrt = float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))
    value = float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * tr_sqrt)
    # Rounding can take an exact zero slightly negative; a distance is never below zero.
    return max(value, 0.0)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (n_a, d) and (n_b, d).

    With Inception-v3 pool3 features (d = 2048) of samples and real images this is the FID.
    Units: squared feature units. Biased upwards for small n; compare numbers at equal n.
    """
    return frechet_distance_from_stats(feature_stats(feats_a), feature_stats(feats_b))


def _poly_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    # The unbiased estimator drops the diagonal k(a, a) terms of the within-set sums.
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_inception_distance(feats_a: np.ndarray, feats_b: np.ndarray, *, n_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> KIDResult:
    """KID (Bińkowski et al. 2018): unbiased MMD^2 with kernel (a.b/d + 1)^3, averaged over
    ``n_subsets`` random subsets of ``subset_size`` rows drawn without replacement from each set
    (capped at the smaller set). Unbiased, so it can be slightly negative for equal distributions.
    """
    a = _features(feats_a, "feats_a")
    b = _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ConfigError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}.")
    if n_subsets < 1:
        raise ConfigError(f"n_subsets must be >= 1, got {n_subsets}.")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ConfigError(f"KID needs at least 2 rows per set, got {len(a)} and {len(b)}.")
    rng = np.random.default_rng(seed)
    vals = np.array([
        _poly_mmd2_unbiased(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
        for _ in range(n_subsets)
    ])
    return KIDResult(float(vals.mean()), float(vals.std()), int(n_subsets), int(m))


def inception_score(probs: np.ndarray, *, n_splits: int = 10, eps: float = 1e-12) -> ISResult:
    """IS = exp(mean_x KL(p(y|x) || p(y))), p(y) = mean_x p(y|x) within each split.

    probs: (n, classes) rows of class probabilities (softmax outputs), each summing to 1.
    The score lies in [1, classes]: 1 when every row is the same, ``classes`` when the rows are
    one-hot and the classes are used equally. Returns the mean and std over ``n_splits`` equal
    consecutive splits (the convention of the original IS code; the remainder rows are dropped).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ConfigError(f"probs must have shape (n, classes); got {p.shape}.")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ConfigError("probs must be rows of probabilities (>= 0, summing to 1): pass softmax outputs, not logits.")
    if n_splits < 1 or n_splits > len(p):
        raise ConfigError(f"n_splits must be in [1, {len(p)}] for {len(p)} rows, got {n_splits}.")
    size = len(p) // n_splits
    scores = []
    for i in range(n_splits):
        part = p[i * size:(i + 1) * size]
        marginal = part.mean(axis=0, keepdims=True)
        # 0 log 0 = 0: the eps only guards the log, the factor `part` zeroes those terms.
        kl = np.sum(part * (np.log(part + eps) - np.log(marginal + eps)), axis=1)
        scores.append(np.exp(kl.mean()))
    scores = np.asarray(scores)
    return ISResult(float(scores.mean()), float(scores.std()), int(n_splits))
