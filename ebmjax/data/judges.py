"""Judges: classifiers that score samples of a dataset and that ebmjax never trains against.

A dataset's record (:class:`ebmjax.data.Dataset`) names its judge. After sampling, the judge says
how many samples it recognises (class probability >= 0.9) and how evenly they spread over the
classes (``ebmjax.evaluation.quality``); evaluation takes its features as the feature space of
FID/KID/IS (named in every report: they are comparable between ebmjax runs on the same dataset, never
with Inception-v3 numbers), its predicted classes for mode coverage, and checkpoint scans rank by
it. Every judge takes images at its dataset's native size, NHWC in [0, 1] (values outside are
clipped, as a picture would show them); :class:`ViewedJudge` maps the padded or resized images of
a config back first.

- :class:`SVMJudge`: a support vector machine with a Gaussian (RBF) kernel, fitted by
  scikit-learn on a dataset's train split, with pairwise Platt calibration and pairwise coupling
  (Platt 1999; Wu, Lin & Weng 2004) computed here, evaluated in numpy from its support vectors
  (cached as .npz under ``$EBMJAX_CACHE_DIR``, default ``~/.cache/ebmjax``, so it is fitted once
  per machine); the MNIST judge. Its confidence falls off away from the training digits (the
  kernel does), so noise and scribbles are not "recognised"; a perceptron's or a CNN's is not
  (measured in ``tests/test_mnist.py``). Its features are the training digits' leading principal
  components.
- ``ebmjax.data.digits_classifier.DigitsClassifier``: a small Flax CNN for the 8x8 digits.
"""

from __future__ import annotations

import abc
import logging
import os
import pathlib
from collections.abc import Callable

import numpy as np

from ebmjax import io
from ebmjax.errors import ConfigError

log = logging.getLogger(__name__)

CONFIDENT = 0.9  # the share "recognised" counts samples whose top class probability is at least this


def cache_dir(path: str | os.PathLike | None = None) -> pathlib.Path:
    """Where fitted judges are cached: ``path``, else $EBMJAX_CACHE_DIR, else ~/.cache/ebmjax."""
    if path is not None:
        return pathlib.Path(path)
    env = os.environ.get("EBMJAX_CACHE_DIR")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "ebmjax"


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Judge(abc.ABC):
    """What every judge offers. Subclasses set ``shape`` (H, W, C), ``n_classes``,
    ``feature_dim`` and implement :meth:`logits_and_features` and :meth:`describe`."""

    shape: tuple[int, int, int]
    n_classes: int
    feature_dim: int

    @abc.abstractmethod
    def describe(self) -> str:
        """The judge in words, with its test accuracy: named beside every figure it gives."""
        ...

    @abc.abstractmethod
    def feature_space(self) -> str:
        """What its features are (for FID/KID reports)."""
        ...

    @abc.abstractmethod
    def logits_and_features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits (n, n_classes), features (n, feature_dim)) float64 for images (n, *shape)."""
        ...

    def check_images(self, images: np.ndarray) -> np.ndarray:
        """``images`` as float32 (n, *shape) clipped to [0, 1]; ConfigError for another shape."""
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 3 and self.shape[-1] == 1:
            x = x[..., None]
        if x.shape[1:] != tuple(self.shape):
            raise ConfigError(f"{self.describe()} takes images of shape (n, {', '.join(map(str, self.shape))}); got "
                              f"{x.shape}.")
        return np.clip(x, 0.0, 1.0)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(n, n_classes) class probabilities."""
        return _softmax(self.logits_and_features(images)[0])

    def features(self, images: np.ndarray) -> np.ndarray:
        """(n, feature_dim) features."""
        return self.logits_and_features(images)[1]

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(n,) most probable class."""
        return np.argmax(self.logits_and_features(images)[0], axis=-1)


class ViewedJudge(Judge):
    """``judge`` on images as a config prepares them: ``view`` maps them back to the judge's shape
    first (``ebmjax.data.native_view``)."""

    def __init__(self, judge: Judge, view: Callable[[np.ndarray], np.ndarray], data_name: str = ""):
        self.judge, self.view, self.data_name = judge, view, data_name
        self.shape, self.n_classes, self.feature_dim = judge.shape, judge.n_classes, judge.feature_dim

    def describe(self) -> str:
        return self.judge.describe()

    def feature_space(self) -> str:
        return self.judge.feature_space()

    def logits_and_features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(images, np.float32)
        if x.ndim == 4 and x.shape[-1] != self.shape[-1]:
            raise ConfigError(f"{self.describe()} takes {self.shape[-1]}-channel images; got {x.shape[-1]} channels.")
        return self.judge.logits_and_features(self.view(x))

    def __getattr__(self, name: str):
        return getattr(self.judge, name)


def _sigmoid_fit(dec: np.ndarray, labels: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """Platt's sigmoid P(y = 1 | f) = 1 / (1 + exp(A f + B)) fitted by Newton's method on decision
    values ``dec`` with 0/1 ``labels``, with Platt's smoothed targets (a prior against overfitting)."""
    n_pos, n_neg = float(labels.sum()), float(len(labels) - labels.sum())
    t = np.where(labels == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    a, b = 0.0, np.log((n_neg + 1) / (n_pos + 1))
    for _ in range(iters):
        z = np.clip(dec * a + b, -30, 30)
        p = 1 / (1 + np.exp(z))  # P(y = 1)
        # Gradient and Hessian of the cross-entropy in (a, b); d p / d z = -p (1 - p).
        g = np.array([np.sum((t - p) * dec), np.sum(t - p)])
        w = p * (1 - p)
        hess = np.array([[np.sum(w * dec * dec), np.sum(w * dec)], [np.sum(w * dec), np.sum(w)]]) + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    return float(a), float(b)


def couple_pairwise(r: np.ndarray, iters: int = 100) -> np.ndarray:
    """Class probabilities (n, k) from pairwise ones ``r`` (n, k, k), r[:, i, j] = P(i | i or j),
    by Wu, Lin & Weng's (2004) second method: p minimises sum_i sum_{j != i} (r_ji p_i - r_ij p_j)^2
    on the simplex (the fixed point iteration libsvm uses)."""
    n, k, _ = r.shape
    off = ~np.eye(k, dtype=bool)
    q = -r.transpose(0, 2, 1) * r  # Q_tj = -r_jt r_tj
    diag = np.sum(np.where(off, r.transpose(0, 2, 1) ** 2, 0.0), axis=2)  # Q_tt = sum_j r_jt^2
    q[:, np.arange(k), np.arange(k)] = diag
    p = np.full((n, k), 1.0 / k)
    for _ in range(max(iters, k)):
        for t in range(k):
            qp = np.einsum("nij,nj->ni", q, p)
            pqp = np.einsum("ni,ni->n", p, qp)
            diff = (pqp - qp[:, t]) / q[:, t, t]
            p[:, t] += diff
            p /= (1 + diff)[:, None]
    return p / p.sum(axis=1, keepdims=True)


class SVMJudge(Judge):
    """A one-vs-one RBF support vector machine on pixels, with calibrated pairwise probabilities.

    support_vectors (m, D) in [0, 1]; coef (m, k - 1) and intercept (k (k - 1) / 2,) as scikit-learn's
    ``dual_coef_.T`` and ``intercept_``; n_support (k,) support vectors per class, in class order;
    gamma: the kernel exp(-gamma |x - s|^2); platt (pairs, 2): each pair's sigmoid (A, B);
    pca_mean (D,) and pca_components (F, D): the feature map (x - mean) @ components.T.
    """

    def __init__(self, *, support_vectors, coef, intercept, n_support, gamma, platt, pca_mean, pca_components,
                 shape, name, test_accuracy):
        self.support_vectors = np.asarray(support_vectors, np.float64)
        self.coef = np.asarray(coef, np.float64)
        self.intercept = np.asarray(intercept, np.float64)
        self.n_support = np.asarray(n_support, np.int64)
        self.gamma = float(gamma)
        self.platt = np.asarray(platt, np.float64)
        self.pca_mean = np.asarray(pca_mean, np.float64)
        self.pca_components = np.asarray(pca_components, np.float64)
        self.shape = tuple(int(s) for s in shape)
        self.n_classes = len(self.n_support)
        self.feature_dim = self.pca_components.shape[0]
        self.name = str(name)
        self.test_accuracy = float(test_accuracy)

    def describe(self) -> str:
        return f"{self.name} (test accuracy {self.test_accuracy:.3f})"

    def feature_space(self) -> str:
        return f"the {self.feature_dim} leading principal components of the training images"

    def decision(self, x: np.ndarray) -> np.ndarray:
        """(n, pairs) one-vs-one decision values, pairs (0, 1), (0, 2), ..., (k-2, k-1); positive
        favours the first class of the pair (scikit-learn's ``decision_function`` of shape "ovo")."""
        sv = self.support_vectors
        d2 = (x ** 2).sum(1)[:, None] - 2 * x @ sv.T + (sv ** 2).sum(1)[None]
        kern = np.exp(-self.gamma * np.maximum(d2, 0.0))
        starts = np.concatenate([[0], np.cumsum(self.n_support)])
        out, p = [], 0
        for i in range(self.n_classes):
            for j in range(i + 1, self.n_classes):
                si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
                out.append(kern[:, si] @ self.coef[si, j - 1] + kern[:, sj] @ self.coef[sj, i] + self.intercept[p])
                p += 1
        return np.stack(out, axis=1)

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        dec = self.decision(x)
        r = np.zeros((len(x), self.n_classes, self.n_classes))
        p = 0
        for i in range(self.n_classes):
            for j in range(i + 1, self.n_classes):
                a, b = self.platt[p]
                rij = np.clip(1 / (1 + np.exp(np.clip(dec[:, p] * a + b, -30, 30))), 1e-7, 1 - 1e-7)
                r[:, i, j], r[:, j, i] = rij, 1 - rij
                p += 1
        return couple_pairwise(r)

    def logits_and_features(self, images: np.ndarray, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """(log-probabilities (n, k), principal components (n, F)): the logits' softmax is the
        calibrated class probability."""
        x = self.check_images(images).reshape(len(images), -1).astype(np.float64)
        if len(x) == 0:
            return np.zeros((0, self.n_classes)), np.zeros((0, self.feature_dim))
        probs = np.concatenate([self._probabilities(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        return np.log(np.maximum(probs, 1e-300)), (x - self.pca_mean) @ self.pca_components.T

    def arrays(self) -> dict[str, np.ndarray]:
        return {"support_vectors": self.support_vectors.astype(np.float32), "coef": self.coef,
                "intercept": self.intercept, "n_support": self.n_support, "gamma": np.float64(self.gamma),
                "platt": self.platt, "pca_mean": self.pca_mean, "pca_components": self.pca_components,
                "shape": np.asarray(self.shape), "name": np.asarray(self.name),
                "test_accuracy": np.float64(self.test_accuracy)}

    def save(self, path: pathlib.Path) -> None:
        io.savez_atomic(path, **self.arrays())

    @classmethod
    def load(cls, path: pathlib.Path) -> "SVMJudge":
        with np.load(path) as f:
            kw = {k: f[k] for k in f.files}
        kw["name"], kw["gamma"], kw["test_accuracy"] = str(kw["name"]), float(kw["gamma"]), float(kw["test_accuracy"])
        kw["shape"] = tuple(int(s) for s in kw["shape"])
        return cls(**kw)


def fit_svm_judge(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
                  c: float = 10.0, folds: int = 5, n_features: int = 64, seed: int = 0, name: str) -> SVMJudge:
    """Fits scikit-learn's ``SVC(kernel="rbf", C=c, gamma="scale")`` on images (n, H, W, C) in
    [0, 1] and labels 0..k-1; each pair's Platt sigmoid is fitted on decision values of ``folds``-fold
    cross-validation (as libsvm does), seeded by ``seed``; the features are the ``n_features``
    leading principal components of x_train. The test accuracy is measured on (x_test, y_test)."""
    from sklearn.decomposition import PCA
    from sklearn.svm import SVC

    shape = tuple(x_train.shape[1:])
    x = np.asarray(x_train, np.float64).reshape(len(x_train), -1)
    y = np.asarray(y_train, np.int64)
    classes = np.unique(y)
    if list(classes) != list(range(len(classes))):
        raise ConfigError(f"judge labels must be 0..K-1; the train split has classes {list(classes)}")
    svc = SVC(kernel="rbf", C=c, gamma="scale", decision_function_shape="ovo").fit(x, y)
    gamma = float(svc._gamma)
    # Held-out decision values for every training example, from folds stratified by class.
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), np.int64)
    for cl in classes:
        members = rng.permutation(np.flatnonzero(y == cl))
        fold[members] = np.arange(len(members)) % folds
    held = np.zeros((len(y), len(classes) * (len(classes) - 1) // 2))
    for f in range(folds):
        part = SVC(kernel="rbf", C=c, gamma=gamma, decision_function_shape="ovo").fit(x[fold != f], y[fold != f])
        held[fold == f] = part.decision_function(x[fold == f])
    platt, p = [], 0
    for i in classes:
        for j in classes[classes > i]:
            pair = (y == i) | (y == j)
            platt.append(_sigmoid_fit(held[pair, p], (y[pair] == i).astype(np.float64)))
            p += 1
    pca = PCA(n_features, random_state=seed).fit(x)
    judge = SVMJudge(support_vectors=svc.support_vectors_, coef=svc.dual_coef_.T, intercept=svc.intercept_,
                     n_support=svc.n_support_, gamma=gamma, platt=np.asarray(platt), pca_mean=pca.mean_,
                     pca_components=pca.components_, shape=shape, name=name, test_accuracy=0.0)
    judge.test_accuracy = float(np.mean(judge.predict(x_test) == np.asarray(y_test)))
    return judge


def cached_judge(key: str, fit: Callable[[], Judge], load: Callable[[pathlib.Path], Judge],
                 directory: str | os.PathLike | None = None, retrain: bool = False) -> Judge:
    """The judge cached as ``<cache_dir>/<key>.npz`` (read by ``load``), fitted by ``fit()`` and
    cached when missing or unreadable. ``key`` must change whenever the judge's recipe or
    scikit-learn's version does."""
    path = cache_dir(directory) / f"{key}.npz"
    if path.is_file() and not retrain:
        try:
            return load(path)
        except (OSError, KeyError, ValueError, TypeError) as e:
            log.warning("Ignoring the unreadable judge cache %s (%s); fitting it again.", path, e)
    log.info("Fitting the judge %s (once; cached in %s)", key, path)
    judge = fit()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        judge.save(path)
    except OSError as e:
        log.warning("Could not cache the judge in %s (%s); it will be fitted again next time.", path, e)
    return judge
