"""A classifier's figures: accuracy, negative log-likelihood and expected calibration error (numpy).

Expected calibration error (Guo et al., 2017; JEM's Table 3): predictions are binned by their
confidence (the top class probability) into ``n_bins`` equal-width bins of [0, 1]; ECE is the mean
over predictions of |accuracy of the bin - mean confidence of the bin|, i.e.
sum_b (n_b / n) |acc_b - conf_b|. 0 is perfectly calibrated.

Temperature scaling (Guo et al., 2017): one scalar T, the probabilities ``softmax(logits / T)``, T
chosen to minimise the negative log-likelihood of labelled images (:func:`fit_temperature`). It
leaves every prediction's top class, hence the accuracy, as it is. Fitted on held-out images it is a
post-hoc correction; fitted on the training images it corrects only a miscalibration that is already
there, which is what a classifier that does not over-fit (JEM's: its training and test figures agree)
carries to its test images, and what a plain classifier that fits its training set does not have.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

__all__ = ["Calibration", "softmax", "calibration_bins", "expected_calibration_error", "negative_log_likelihood",
           "accuracy", "bootstrap_std", "fit_temperature"]


class Calibration(NamedTuple):
    """Per bin (``n_bins``,): ``counts``, ``accuracy`` and ``confidence`` (NaN for empty bins), the
    bins' ``edges`` (n_bins + 1,), and ``ece``."""

    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    edges: np.ndarray
    ece: float


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (n, K) in float64, stable for large logits."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def calibration_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> Calibration:
    """The reliability diagram's bins and the ECE of class probabilities ``probs`` (n, K) against
    integer ``labels`` (n,). A confidence of exactly 1 falls in the last bin."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    if probs.ndim != 2 or labels.shape != probs.shape[:1] or len(labels) == 0:
        raise ValueError(f"calibration needs probs (n, K) and labels (n,) with n > 0; got {probs.shape} and "
                         f"{labels.shape}.")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(which, correct, n_bins) / counts
        mean_conf = np.bincount(which, conf, n_bins) / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] / len(labels) * np.abs(acc[filled] - mean_conf[filled])))
    return Calibration(counts, acc, mean_conf, edges, ece)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE of ``probs`` (n, K) against ``labels`` (n,) over ``n_bins`` confidence bins."""
    return calibration_bins(probs, labels, n_bins).ece


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(label | x) of ``probs`` (n, K) against ``labels`` (n,)."""
    probs = np.asarray(probs, np.float64)
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300))))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows of ``probs`` (n, K) whose top class is the label."""
    return float(np.mean(np.asarray(probs).argmax(axis=1) == np.asarray(labels)))


def bootstrap_std(statistic: Callable[[np.ndarray, np.ndarray], float], probs: np.ndarray, labels: np.ndarray,
                  n_resamples: int = 1000, seed: int = 0) -> float:
    """The standard deviation of ``statistic(probs, labels)`` over ``n_resamples`` resamples of the rows
    with replacement: the error bar of a figure measured on a finite test set (for the accuracy it is
    about sqrt(p (1 - p) / n))."""
    if n_resamples < 2:
        raise ValueError(f"bootstrap_std needs n_resamples >= 2; got {n_resamples}.")
    probs, labels = np.asarray(probs), np.asarray(labels)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):  # one resample at a time: a large test set needs no (n_resamples, n) table
        i = rng.integers(0, len(labels), size=len(labels))
        values.append(statistic(probs[i], labels[i]))
    return float(np.std(values, ddof=1))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (1e-3, 1e3)) -> float:
    """The temperature T in ``bounds`` whose ``softmax(logits / T)`` has the lowest negative
    log-likelihood of integer ``labels`` (n,) given ``logits`` (n, K). The log-likelihood is concave
    in 1 / T, so the minimum is unique; it is found by a bounded search over log T (to about 1e-6
    relative). T < 1 sharpens under-confident probabilities, T > 1 softens over-confident ones. A T
    at a bound means the labels pull it further (logits that carry no information about the labels:
    T -> infinity). When the logits rank every label first, the likelihood rises all the way to T -> 0
    and no temperature is fitted: a ValueError says so (a network that fits its training images
    perfectly must be scaled on images it was not trained on)."""
    from scipy.optimize import minimize_scalar

    z, labels = np.asarray(logits, np.float64), np.asarray(labels)
    if z.ndim != 2 or labels.shape != z.shape[:1] or len(labels) == 0:
        raise ValueError(f"fit_temperature needs logits (n, K) and labels (n,) with n > 0; got {z.shape} and "
                         f"{labels.shape}.")
    if not np.isfinite(z).all():
        raise ValueError("fit_temperature: the logits hold NaN or infinite values; a temperature cannot be fitted.")
    lo, hi = bounds
    if not 0 < lo < hi:
        raise ValueError(f"fit_temperature needs bounds 0 < low < high; got {bounds}.")
    picked = z[np.arange(len(labels)), labels]
    if (picked > np.where(np.arange(z.shape[1]) == labels[:, None], -np.inf, z).max(axis=1)).all():
        raise ValueError(f"fit_temperature: the logits rank the label first for all {len(labels):,} images, so the "
                         "likelihood keeps rising as T -> 0 and there is no finite temperature to fit. Fit it on "
                         "images the network was not trained on (a held-out split).")

    def nll(log_t: float) -> float:  # mean of logsumexp(z / T) - z_label / T, in log space
        inv_t = np.exp(-log_t)
        top = z.max(axis=1) * inv_t
        return float(np.mean(top + np.log(np.exp(z * inv_t - top[:, None]).sum(axis=1)) - picked * inv_t))

    found = minimize_scalar(nll, bounds=(np.log(lo), np.log(hi)), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(found.x))
