"""Real image data that ships inside installed wheels, so it works with no network and no tfds dir.

- ``digits``: scikit-learn's ``load_digits()``: 1797 handwritten digits, 8x8, grey levels 0..16,
  labels 0..9 (178, 182, 177, 183, 181, 182, 181, 179, 174, 180 per class).
- ``digits_bold``: the same digits with thickened strokes (``bold_digits_source``): resized as
  ``digits`` is, then a 2x2 grey dilation; the target domain of the translation demo
  (configs/translate_digits.py), whose source domain is the plain digits at the same size.
- ``lfw_faces``: the 100 face crops of scikit-image's ``data.lfw_subset()`` (25x25 grey), e.g. as
  out-of-distribution inputs for a digits model.
"""

from __future__ import annotations

import numpy as np

from ebmjax.data.registry import Dataset
from ebmjax.data.source import SPLITS, ArraySource, prepare_images, resize_image, stratified_split
from ebmjax.errors import ConfigError

DIGITS_SPLITS: tuple[str, ...] = SPLITS
DIGITS_TEST_EVERY = 5  # every 5th example of each class is test: a stratified 80/20 split


def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) float64 grey levels 0..16 and (1797,) labels, in scikit-learn's order: the file
    ``load_digits()`` reads (``sklearn/datasets/data/digits.csv.gz``: a row of 64 grey levels and the
    label per digit), read without importing scikit-learn, which takes about two seconds of every
    command's start; ``load_digits()`` itself where the installed version keeps the file elsewhere."""
    import importlib.util
    import pathlib

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    path = (pathlib.Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
            if spec is not None and spec.submodule_search_locations else None)
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    rows = np.loadtxt(path, delimiter=",")
    return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(int)


def digits_split_indices(split: str, labels: np.ndarray) -> np.ndarray:
    """Indices (ascending) of ``split`` in scikit-learn's digit order.

    Within each class, in dataset order, examples number 5, 10, 15, ... (1-based) form "test" and
    the rest "train": a stratified split of 1442 / 355 (``ebmjax.data.source.stratified_split``).
    "all" is every index.
    """
    return stratified_split(split, labels, DIGITS_TEST_EVERY, "digits")


def digits_source(split: str, pad: int = 0, image_size: int | None = None) -> ArraySource:
    """The digits of ``split`` as NHWC float32 in [0, 1] (grey level / 16), labels 0..9.

    Shape (8, 8, 1) by default; ``image_size`` resizes (bilinear) and ``pad`` adds zeros on each side.
    """
    images, labels = _digits_raw()
    idx = digits_split_indices(split, labels)
    x = (images[idx] / 16.0).astype(np.float32)[..., None]
    if image_size is not None or pad:
        x = prepare_images(x, image_size=image_size, pad=pad)
    return ArraySource("digits", x, labels[idx], split=split)


def dilate_2x2(images: np.ndarray) -> np.ndarray:
    """Grey dilation with a 2x2 window: out[i, j] = max(x[i, j], x[i-1, j], x[i, j-1], x[i-1, j-1]).

    images: (N, H, W, C), values >= 0; pixels outside the image count as 0, so the first row and
    column see only what lies inside. Each channel separately. Every stroke grows by one pixel down
    and to the right (its centre moves by half a pixel); the image size is kept.
    """
    x = np.asarray(images)
    if x.ndim != 4:
        raise ConfigError(f"dilate_2x2 takes images (N, H, W, C), got shape {x.shape}.")
    p = np.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)))  # a row of zeros above, a column on the left
    return np.maximum.reduce([p[:, 1:, 1:], p[:, :-1, 1:], p[:, 1:, :-1], p[:, :-1, :-1]])


def bold_digits_source(split: str, pad: int = 0, image_size: int | None = None) -> ArraySource:
    """The digits of ``split`` with thickened strokes ("bold"), NHWC float32 in [0, 1], labels 0..9.

    The plain digits of ``digits_source(split, image_size=image_size)`` (8x8, or resized to
    ``image_size`` with PIL bilinear interpolation: each output pixel interpolates the four nearest
    input pixels, image corners aligned to pixel edges, so 8 -> 16 doubles every stroke's width in
    pixels and keeps its grey ramps), then :func:`dilate_2x2`, then ``pad`` zeros on each side.
    At 16x16 (test split) the mean grey level rises from 0.31 to 0.39 and the share of pixels above
    0.5 from 0.31 to 0.42.
    """
    plain = digits_source(split, image_size=image_size)
    x = dilate_2x2(plain.get(np.arange(len(plain))))
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return ArraySource("digits_bold", x, plain.labels(np.arange(len(plain))), split=split)


def lfw_faces(size: int) -> np.ndarray:
    """The 100 faces of ``skimage.data.lfw_subset()`` resized to size x size (PIL bilinear):
    (100, size, size, 1) float32 grey in [0, 1]."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"lfw_faces size must be a positive integer, got {size!r}")
    from skimage.data import lfw_subset  # lazily: skimage is slow to import

    # lfw_subset holds 100 faces followed by 100 non-faces.
    faces = np.asarray(lfw_subset()[:100], dtype=np.float32)
    return np.stack([resize_image(f[:, :, None], int(size)) for f in faces])


def _digits_judge(seed: int):
    from ebmjax.data.digits_classifier import load_digits_classifier

    return load_digits_classifier(seed)


DATASETS = (
    Dataset("digits", lambda split, o: digits_source(split, pad=o.pad, image_size=o.image_size),
            "scikit-learn's 1,797 handwritten digits, 8x8 grey, bundled (train 1,442 / test 355)",
            splits=DIGITS_SPLITS, judge=_digits_judge, ood_sets=("uniform", "constant", "interpolation", "faces")),
    Dataset("digits_bold", lambda split, o: bold_digits_source(split, pad=o.pad, image_size=o.image_size),
            "the digits with 2x2-dilated strokes (translation target)", splits=DIGITS_SPLITS),
)
