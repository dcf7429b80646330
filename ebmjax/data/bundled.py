"""Real image data that ships inside installed wheels, so it works with no network and no tfds dir.

- ``digits``: scikit-learn's ``load_digits()``: 1797 handwritten digits, 8x8, grey levels 0..16,
  labels 0..9 (178, 182, 177, 183, 181, 182, 181, 179, 174, 180 per class).
- ``lfw_faces``: the 100 face crops of scikit-image's ``data.lfw_subset()`` (25x25 grey), e.g. as
  out-of-distribution inputs for a digits model.
"""

from __future__ import annotations

import numpy as np

from ebmjax.data.source import ArraySource, prepare_images, resize_image
from ebmjax.errors import ConfigError

DIGITS_SPLITS: tuple[str, ...] = ("train", "test", "all")
DIGITS_TEST_EVERY = 5  # every 5th example of each class is test: a stratified 80/20 split


def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) float64 grey levels 0..16 and (1797,) labels, in scikit-learn's order."""
    from sklearn.datasets import load_digits  # lazily: importing sklearn takes about a second

    bunch = load_digits()
    return bunch.images, bunch.target


def digits_split_indices(split: str, labels: np.ndarray) -> np.ndarray:
    """Indices (ascending) of ``split`` in scikit-learn's digit order.

    Within each class, in dataset order, examples number 5, 10, 15, ... (1-based) form "test" and
    the rest "train": a stratified split of 1442 / 355 that needs no random generator, so it is the
    same under every numpy version. "all" is every index.
    """
    if split not in DIGITS_SPLITS:
        raise ConfigError(f"Unknown split {split!r} for data 'digits'. Valid splits: {', '.join(DIGITS_SPLITS)}.")
    n = len(labels)
    if split == "all":
        return np.arange(n)
    is_test = np.zeros(n, dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        is_test[members[DIGITS_TEST_EVERY - 1::DIGITS_TEST_EVERY]] = True
    return np.flatnonzero(is_test if split == "test" else ~is_test)


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


def lfw_faces(size: int) -> np.ndarray:
    """The 100 faces of ``skimage.data.lfw_subset()`` resized to size x size (PIL bilinear):
    (100, size, size, 1) float32 grey in [0, 1]."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"lfw_faces size must be a positive integer, got {size!r}")
    from skimage.data import lfw_subset  # lazily: skimage is slow to import

    # lfw_subset holds 100 faces followed by 100 non-faces.
    faces = np.asarray(lfw_subset()[:100], dtype=np.float32)
    return np.stack([resize_image(f[:, :, None], int(size)) for f in faces])
