"""Sample quality of a digits run, judged by a classifier ebmjax does not train against.

    python scripts/digits_quality.py runs/digits/samples/samples.npz [more.npz ...] [--json out.json]

The judge is a scikit-learn logistic regression on the pixels of the bundled digits' train split
(C = 1, fixed solver: deterministic). For each file of samples (key ``images``, NHWC 8x8x1 in [0, 1])
it prints the share of samples the judge recognises with probability >= 0.9, the entropy of the
predicted labels over the ten classes (as a fraction of its maximum), and the mean distance to the
nearest training digit divided by that of held-out test digits (1: as far as new digits are; well
below 1: copies of training digits; well above: not on the digits' manifold). The test digits'
own figures are printed first as the reference. Samples holding NaN or infinite values (chains that
diverged) are left out and counted (``non_finite``): the figures are then of the finite samples.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ebmjax.apps.sample import finite_rows
from ebmjax.data import digits_source
from ebmjax.evaluation import quality


def judge():
    """(the fitted logistic regression, train pixels (n, 64), test pixels (m, 64))."""
    from sklearn.linear_model import LogisticRegression

    train, test = digits_source("train"), digits_source("test")
    x_train = train.get(np.arange(len(train))).reshape(len(train), -1)
    x_test = test.get(np.arange(len(test))).reshape(len(test), -1)
    clf = LogisticRegression(C=1.0, max_iter=5000).fit(x_train, train.labels(np.arange(len(train))))
    return clf, x_train, x_test


def nearest_distance(x: np.ndarray, train: np.ndarray) -> float:
    """Mean L2 distance from each row of x to its nearest training row."""
    d2 = (x**2).sum(1)[:, None] - 2 * x @ train.T + (train**2).sum(1)[None]
    return float(np.sqrt(np.maximum(d2.min(axis=1), 0.0)).mean())


def figures(images: np.ndarray, clf, x_train: np.ndarray, test_distance: float) -> dict:
    """The judge's figures for the finite ``images`` (``n``), and how many were not (``non_finite``);
    None for the figures when no image is finite."""
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    finite = finite_rows(x)
    x, non_finite = np.clip(x[finite], 0.0, 1.0), int(np.sum(~finite))
    if not len(x):
        return {"confident_share": None, "label_entropy": None, "nn_distance": None, "nn_ratio": None,
                "class_counts": None, "n": 0, "non_finite": non_finite}
    q = quality.summary(clf.predict_proba(x), classifier="logistic regression on pixels (scikit-learn)")
    d = nearest_distance(x, x_train)
    return {"confident_share": q["confident_share"], "label_entropy": q["label_entropy"],
            "nn_distance": d, "nn_ratio": d / test_distance, "class_counts": q["class_counts"], "n": q["n"],
            "non_finite": non_finite}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help=".npz files with key 'images'")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    clf, x_train, x_test = judge()
    d_test = nearest_distance(x_test, x_train)
    out = {"test_digits": figures(x_test, clf, x_train, d_test)}
    for path in args.files:
        with np.load(path) as f:
            out[path] = figures(f["images"], clf, x_train, d_test)
    quality.report_judged(out, lambda r: f"nearest-training-digit distance {r['nn_distance']:.3f} "
                                         f"({r['nn_ratio']:.2f}x test digits')", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
