"""The data interface: random-access sources of examples and the shared image transforms.

The training loop draws its own permutations from (seed, epoch) and asks a source for the examples
at given indices, so every source here is deterministic and random-access: ``src.get(idx)`` returns
the same values for the same indices in every process and every run.

Images come out NHWC float32 in [0, 1] (no centring). Transforms, in this order: optional centre
crop, optional square resize to ``image_size`` (PIL bilinear, which low-pass filters when shrinking),
then ``pad`` zeros on each side. So MNIST with pad=2 is (32, 32, 1), and image_size=32 with pad=2
gives 36x36.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


IMAGE_RANGE: tuple[float, float] = (0.0, 1.0)
SPLITS: tuple[str, ...] = ("train", "test", "all")  # the splits of the bundled datasets


@runtime_checkable
class ImageSource(Protocol):
    """What the training loop needs from a dataset.

    Attributes:
      name: dataset name as given in the config, e.g. "mnist" or "toy:rings".
      shape: per-example shape, e.g. (32, 32, 1), (32, 32, 3) or (2,) for 2-D toy points.
      value_range: (low, high) of the values; (0.0, 1.0) for images.
    """

    name: str
    shape: tuple[int, ...]
    value_range: tuple[float, float]

    def __len__(self) -> int:
        """Number of examples."""
        ...

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Examples at ``indices`` (ints in [0, len)), float32 of shape (n, *shape), in value_range."""
        ...

    def labels(self, indices: np.ndarray) -> np.ndarray | None:
        """Integer class labels (n,) at ``indices``, or None when the dataset has no labels."""
        ...


def stratified_split(split: str, labels: np.ndarray, every: int, name: str) -> np.ndarray:
    """Indices (ascending) of ``split`` ("train", "test" or "all") of a labelled dataset: within each
    class, in dataset order, examples number every, 2 every, ... (1-based) are "test", the rest
    "train". Needs no random generator, so it is the same under every numpy version."""
    from ebmjax.errors import ConfigError

    if split not in SPLITS:
        raise ConfigError(f"Unknown split {split!r} for data {name!r}. Valid splits: {', '.join(SPLITS)}.")
    n = len(labels)
    if split == "all":
        return np.arange(n)
    is_test = np.zeros(n, dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        is_test[members[every - 1::every]] = True
    return np.flatnonzero(is_test if split == "test" else ~is_test)


def as_indices(indices: Sequence[int] | np.ndarray, size: int) -> np.ndarray:
    """Checks ``indices`` (1-D ints, each in [0, size)) and returns them as an int64 array (n,)."""
    idx = np.asarray(indices)
    if idx.size == 0:
        return np.zeros((0,), dtype=np.int64)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"indices must be a 1-D array of integers, got dtype {idx.dtype} and shape {idx.shape}")
    # Negative indices are refused rather than wrapped: a negative index here is always a bug upstream.
    if idx.min() < 0 or idx.max() >= size:
        raise IndexError(f"indices must lie in [0, {size}); got min {idx.min()} and max {idx.max()}")
    return idx.astype(np.int64, copy=False)


class ArraySource:
    """An in-memory ``ImageSource`` over a float32 array (small data sets: digits, toy points).

    Args:
      name: dataset name.
      data: (N, *shape) values, stored as float32.
      labels: (N,) integer labels or None.
      value_range: documented (low, high) of ``data``.
      split: split name, for messages.
    """

    def __init__(self, name: str, data: np.ndarray, labels: np.ndarray | None = None,
                 value_range: tuple[float, float] = IMAGE_RANGE, split: str | None = None):
        data = np.asarray(data, dtype=np.float32)
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64)
            if labels.shape != (len(data),):
                raise ValueError(f"labels must have shape ({len(data)},), got {labels.shape}")
        self.name = name
        self.split = split
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.shape: tuple[int, ...] = tuple(int(s) for s in data.shape[1:])
        self._data = data
        self._labels = labels

    def __len__(self) -> int:
        return len(self._data)

    def get(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """(n, *shape) float32 copy of the examples at ``indices``."""
        return self._data[as_indices(indices, len(self))]

    def labels(self, indices: Sequence[int] | np.ndarray) -> np.ndarray | None:
        """(n,) int64 labels at ``indices``, or None."""
        if self._labels is None:
            return None
        return self._labels[as_indices(indices, len(self))]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, shape={self.shape})"


# ----------------------------------------------------------------------------------------------
# Checking a source before anything trains on it.

CHANNELS: tuple[int, ...] = (1, 3)  # grey or RGB: what the models and the pictures take
SCAN: int = 1024  # examples read by check_source (all of them for a smaller dataset)


def _examples(idx: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in idx[:limit])
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return f"example{'s' if len(idx) > 1 else ''} {shown}{more}"


def check_source(source: ImageSource, split: str, *, points: bool = False, scan: int = SCAN) -> None:
    """DataError unless ``source`` gives what training needs: images (H, W, C) with 1 or 3 channels
    (points: a flat vector), finite values inside ``source.value_range``, every example of one shape.

    It reads ``scan`` examples evenly spread over the dataset (all of them when it is smaller), so
    a broken dataset is refused before anything trains on it; the training loop still refuses a
    non-finite batch among the examples not read here.
    """
    from ebmjax.errors import DataError

    name = f"Dataset {source.name!r} (split {split!r})"
    shape = tuple(source.shape)
    if points:
        if len(shape) != 1 or shape[0] < 1:
            raise DataError(f"{name} gives points of shape {shape}; points must be flat vectors (D,).")
    elif len(shape) != 3 or min(shape) < 1:
        raise DataError(f"{name} gives examples of shape {shape}; images must be (height, width, channels). "
                        "Give grey images a channel axis of size 1 (x[..., None]).")
    elif shape[-1] not in CHANNELS:
        hint = (" Drop the alpha channel (x[..., :3]) when preparing it." if shape[-1] == 4
                else " Convert it to grey (one channel) or RGB (three) when preparing it.")
        raise DataError(f"{name} gives images with {shape[-1]} channels (shape {shape}); ebmjax trains on grey "
                        f"(1 channel) or RGB (3 channels) images.{hint}")
    n = len(source)
    if n == 0:
        raise DataError(f"{name} holds no examples; choose another split or fill the dataset.")
    idx = np.arange(n) if n <= scan else np.unique(np.linspace(0, n - 1, scan).round().astype(np.int64))
    low, high = source.value_range
    tol = 1e-6 * max(1.0, abs(low), abs(high))
    for start in range(0, len(idx), 256):
        part = idx[start:start + 256]
        try:
            x = source.get(part)
        except (ValueError, TypeError) as e:  # e.g. images of several sizes that cannot be stacked
            raise DataError(f"{name} cannot give {_examples(part)} as one batch of shape {shape}: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Give every example "
                            "the same shape (image data: set --config.data.image_size to resize them all).") from None
        x = np.asarray(x)
        if x.shape != (len(part), *shape):
            raise DataError(f"{name} gave an array of shape {x.shape} for {len(part)} examples of shape {shape}: "
                            "its get() must return (n, *shape).")
        flat = x.reshape(len(part), -1)
        if not np.issubdtype(flat.dtype, np.number):
            raise DataError(f"{name} gives values of dtype {flat.dtype}; it must give numbers (float32).")
        finite = np.isfinite(flat).all(axis=1)
        if not finite.all():
            raise DataError(f"{name} holds non-finite values (NaN or infinity) in {_examples(part[~finite])}. "
                            "Clean the data (or fix its preparation) and rerun.")
        outside = (flat.min(axis=1) < low - tol) | (flat.max(axis=1) > high + tol)
        if outside.any() and not points:  # a toy's range is a box around its density, not a bound
            raise DataError(
                f"{name} holds values outside its range [{low:g}, {high:g}] in {_examples(part[outside])} "
                f"(they span [{float(flat.min()):g}, {float(flat.max()):g}]). Images must be floats in [0, 1] "
                "(or uint8 0..255, which ebmjax divides by 255): rescale the data when preparing it.")


# ----------------------------------------------------------------------------------------------
# Image transforms (numpy + PIL), shared by the bundled and tfds sources.


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Central size x size window of an HWC image; when H - size is odd the extra row is dropped
    at the bottom (top offset = (H - size) // 2), likewise for columns."""
    h, w = image.shape[:2]
    if size > h or size > w:
        raise ValueError(f"cannot crop {size}x{size} from an image of {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes an HWC float image to (size, size, C) with PIL bilinear, channel by channel in 32-bit
    float, so no rounding to 8 bits happens. PIL widens the filter when shrinking (antialiasing)."""
    from PIL import Image  # lazily: only resizing needs it

    h, w, c = image.shape
    if (h, w) == (size, size):
        return image.astype(np.float32, copy=False)
    out = np.empty((size, size, c), dtype=np.float32)
    for ch in range(c):
        plane = Image.fromarray(np.ascontiguousarray(image[:, :, ch], dtype=np.float32))
        out[:, :, ch] = np.asarray(plane.resize((size, size), Image.Resampling.BILINEAR))
    # The bilinear weights are non-negative, so only float rounding can step outside [0, 1].
    return np.clip(out, 0.0, 1.0)


def prepare_image(image: np.ndarray, crop: int | None = None, image_size: int | None = None,
                  pad: int = 0) -> np.ndarray:
    """One HWC image (uint8 0..255, or float already in [0, 1]) -> float32 HWC in [0, 1].

    Steps: /255 for uint8; centre crop to ``crop`` (if given); if ``image_size`` is given and differs,
    centre-crop a non-square image to its short side and resize to image_size x image_size; then
    ``pad`` zeros on each side. Output (S + 2 pad, S + 2 pad, C).
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype == np.uint8:
        x = image.astype(np.float32) / 255.0
    else:
        x = image.astype(np.float32, copy=False)
    if crop is not None:
        x = center_crop(x, crop)
    if image_size is not None and x.shape[:2] != (image_size, image_size):
        if x.shape[0] != x.shape[1]:
            x = center_crop(x, min(x.shape[:2]))
        x = resize_image(x, image_size)
    if pad:
        x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    return x


def prepare_images(images: np.ndarray, crop: int | None = None, image_size: int | None = None,
                   pad: int = 0) -> np.ndarray:
    """``prepare_image`` over a batch: (N, H, W, C) -> (N, S + 2 pad, S + 2 pad, C) float32 in [0, 1]."""
    return np.stack([prepare_image(im, crop, image_size, pad) for im in images]).astype(np.float32, copy=False)


def check_labels(source: ImageSource, classes: int, setting: str, *, scan: int = SCAN) -> None:
    """DataError unless ``source`` has integer labels in [0, ``classes``) (read as ``check_source``
    reads examples: all of a set of at most ``scan``, else ``scan`` spread evenly); ``setting`` names
    the config field that set ``classes``."""
    from ebmjax.errors import DataError

    n = len(source)
    idx = np.arange(n) if n <= scan else np.unique(np.linspace(0, n - 1, scan).round().astype(np.int64))
    labels = source.labels(idx) if hasattr(source, "labels") else None
    if labels is None:
        raise DataError(f"Dataset {source.name!r} has no labels, and {setting} = {classes} asks for a model that learns "
                        f"from them. Train on a labelled dataset, or set {setting} = 0.")
    labels = np.asarray(labels)
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        raise DataError(f"Dataset {source.name!r} has labels {sorted(set(labels[bad].tolist()))[:5]} outside 0..{classes - 1} "
                        f"({_examples(idx[bad])}); set {setting} to the number of classes (labels must be "
                        f"0..{setting} - 1, e.g. {int(labels.max()) + 1}).")
