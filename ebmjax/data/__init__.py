"""Data: random-access sources of training examples (numpy only; tfds imported only when needed).

``load_source(cfg.data, split)`` returns an ``ImageSource``: ``len(src)``, ``src.shape``,
``src.get(indices)`` -> (n, *shape) float32 in ``src.value_range`` ((0, 1) for images),
``src.labels(indices)`` -> (n,) int64 or None, ``src.name``.

Names: "digits" (scikit-learn, bundled) and "digits_bold" (the same with 2x2-dilated strokes), tfds
"mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped", "celeb_a" (prepared array_record
dirs), the tfds two-domain sets "cycle_gan/<pair>" (e.g. "cycle_gan/horse2zebra"; ``data.domain``
"A" or "B" picks the domain), and 2-D toys "toy:eight_gaussians",
"toy:rings", "toy:checkerboard", "toy:two_moons", "toy:swiss_roll" (see ``ebmjax.data.toy2d``).
"""

from ebmjax.data import toy2d
from ebmjax.data.bundled import bold_digits_source, digits_source, digits_split_indices, dilate_2x2, lfw_faces
from ebmjax.data.registry import (
    BUNDLED_NAMES,
    CYCLE_GAN_PAIRS,
    CYCLE_GAN_PREFIX,
    DOMAINS,
    TFDS_NAMES,
    TOY_PREFIX,
    data_names,
    is_two_domain,
    load_source,
    source_domain_config,
)
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
from ebmjax.data.tfds_source import TfdsSource, domain_split, load_tfds_source, resolve_data_dir
from ebmjax.data.toy2d import ToySource

__all__ = [
    "BUNDLED_NAMES",
    "CYCLE_GAN_PAIRS",
    "CYCLE_GAN_PREFIX",
    "DOMAINS",
    "TFDS_NAMES",
    "TOY_PREFIX",
    "IMAGE_RANGE",
    "ArraySource",
    "ImageSource",
    "TfdsSource",
    "ToySource",
    "as_indices",
    "bold_digits_source",
    "center_crop",
    "data_names",
    "digits_source",
    "digits_split_indices",
    "dilate_2x2",
    "domain_split",
    "is_two_domain",
    "lfw_faces",
    "load_source",
    "source_domain_config",
    "load_tfds_source",
    "prepare_image",
    "prepare_images",
    "resize_image",
    "resolve_data_dir",
    "toy2d",
]
