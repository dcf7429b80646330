"""Data: random-access sources of training examples (numpy only; tfds imported only when needed).

``load_source(cfg.data, split)`` returns an ``ImageSource``: ``len(src)``, ``src.shape``,
``src.get(indices)`` -> (n, *shape) float32 in ``src.value_range`` ((0, 1) for images),
``src.labels(indices)`` -> (n,) int64 or None, ``src.name``.

Names: "digits" (scikit-learn, bundled), tfds "mnist", "fashion_mnist", "cifar10", "cifar100",
"svhn_cropped", "celeb_a" (prepared array_record dirs), and 2-D toys "toy:eight_gaussians",
"toy:rings", "toy:checkerboard", "toy:two_moons", "toy:swiss_roll" (see ``ebmjax.data.toy2d``).
"""

from ebmjax.data import toy2d
from ebmjax.data.bundled import digits_source, digits_split_indices, lfw_faces
from ebmjax.data.registry import BUNDLED_NAMES, TFDS_NAMES, TOY_PREFIX, data_names, load_source
from ebmjax.data.source import (
    IMAGE_RANGE,
    ArraySource,
    ImageSource,
    as_indices,
    center_crop,
    prepare_image,
    prepare_images,
    resize_image,
)
from ebmjax.data.tfds_source import TfdsSource, load_tfds_source, resolve_data_dir
from ebmjax.data.toy2d import ToySource

__all__ = [
    "BUNDLED_NAMES",
    "TFDS_NAMES",
    "TOY_PREFIX",
    "IMAGE_RANGE",
    "ArraySource",
    "ImageSource",
    "TfdsSource",
    "ToySource",
    "as_indices",
    "center_crop",
    "data_names",
    "digits_source",
    "digits_split_indices",
    "lfw_faces",
    "load_source",
    "load_tfds_source",
    "prepare_image",
    "prepare_images",
    "resize_image",
    "resolve_data_dir",
    "toy2d",
]
