"""Datasets read with ``tfds.data_source`` from a prepared array_record directory (no TensorFlow).

Nothing is downloaded: a dataset that is not prepared in the data dir raises ``DataError`` with the
steps to prepare it on another machine. tensorflow_datasets is imported only when one of these
datasets is requested.

Preprocessing per record: uint8 HWC -> float32 / 255 in [0, 1]; CelebA (218x178) is centre-cropped
to 140x140 (rows 39..178, columns 19..158); then the optional resize to ``image_size`` and ``pad``
of ``ebmjax.data.source.prepare_image``. Nothing is cached: each ``get`` decodes its records.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ebmjax.data.registry import DOMAINS, Dataset
from ebmjax.data.source import IMAGE_RANGE, as_indices, prepare_image
from ebmjax.errors import DataError

CELEBA_CROP = 140  # the usual square face crop of the 218x178 aligned CelebA images
CROPS: dict[str, int] = {"celeb_a": CELEBA_CROP}
# Random-access formats tfds.data_source can read.
RANDOM_ACCESS_FORMATS = ("array_record", "parquet")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str:
    """The tfds root to search: ``data_dir``, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")
    return os.path.abspath(os.path.expanduser(str(data_dir)))


def _import_tfds() -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError("Reading tfds datasets needs the tensorflow-datasets package (TensorFlow is not "
                        "needed): pip install tensorflow-datasets") from e
    return tfds


def _prepare_instructions(name: str, root: str) -> str:
    return (
        "Nothing can be downloaded here, so prepare it on a machine with internet access:\n"
        "  1. pip install tensorflow tensorflow-datasets\n"
        f"  2. tfds build {name} --data_dir <dir> --file_format array_record\n"
        f"     (or in Python: tfds.builder('{name}', data_dir='<dir>', file_format='array_record')"
        ".download_and_prepare())\n"
        f"  3. copy <dir> (it holds {name}/<version>/...) to this machine, e.g. to {root}\n"
        "  4. pass --config.data.data_dir=<dir> or set TFDS_DATA_DIR=<dir>."
    )


def _split_names(split: str) -> list[str]:
    """Plain split names in a tfds split string: 'train[:90%]+test' -> ['train', 'test']."""
    return [re.sub(r"\[.*\]$", "", part.strip()) for part in split.split("+")]


def domain_split(split: str, domain: str) -> str:
    """The tfds split of a two-domain set (cycle_gan: trainA, trainB, testA, testB) that ``split``
    means for ``domain`` ("A" or "B"): every part of a split string named train or test gets the
    domain's letter, slices kept ("train[:90%]+test" -> "trainB[:90%]+testB" for B); parts that
    name a split of their own ("trainA") are left as they are."""
    parts = []
    for part in split.split("+"):
        part = part.strip()
        m = re.fullmatch(r"(train|test)(\[.*\])?", part)
        parts.append(f"{m.group(1)}{domain}{m.group(2) or ''}" if m else part)
    return "+".join(parts)


def _explain_open_failure(tfds: Any, name: str, split: str, root: str, error: Exception) -> DataError:
    """Turns a failure of ``tfds.data_source`` into a DataError that says what to do."""
    try:
        builder = tfds.builder(name, data_dir=root)
        version_dir = str(builder.data_dir)
        prepared = builder.is_prepared()
    except Exception:  # the explanation must not fail in turn; fall back to the generic message
        version_dir, prepared, builder = os.path.join(root, name, "<version>"), False, None

    if not prepared:
        found = ""
        name_dir = os.path.join(root, name)
        if os.path.isdir(name_dir):
            found = f" (found only {sorted(os.listdir(name_dir))} in {name_dir})"
        return DataError(f"Dataset {name!r} is not prepared in data_dir {root!r}: there is no "
                         f"{os.path.join(version_dir, 'dataset_info.json')}{found}.\n"
                         + _prepare_instructions(name, root))

    file_format = str(getattr(builder.info.file_format, "value", builder.info.file_format))
    if file_format not in RANDOM_ACCESS_FORMATS:
        return DataError(
            f"Dataset {name!r} in {version_dir} is stored as {file_format}, which tfds cannot read by "
            "random access. Rebuild it with --file_format array_record (on a machine with TensorFlow: "
            f"tfds build {name} --data_dir <dir> --file_format array_record, or convert it with "
            f"tfds convert_format --dataset_version_dir={version_dir} --out_file_format=array_record "
            "--out_dir=<new dir>) and point --config.data.data_dir at the result.")

    available = list(builder.info.splits.keys())
    unknown = [s for s in _split_names(split) if s not in available and s != "all"]
    if unknown:
        return DataError(f"Dataset {name!r} has no split {unknown[0]!r}; available splits: "
                         f"{', '.join(available)}. Use one of them (tfds slices like 'train[:90%]' work too).")
    return DataError(f"Could not open split {split!r} of dataset {name!r} in {version_dir}: "
                     f"{type(error).__name__}: {error}")


class TfdsSource:
    """``ImageSource`` over one split of a prepared tfds image dataset.

    Args:
      name: tfds name, e.g. "mnist".
      split: tfds split string, e.g. "train", "test", "train[:1000]".
      data_dir: tfds root (None: $TFDS_DATA_DIR or ~/tensorflow_datasets).
      pad: zeros added on each side after resizing.
      image_size: square output size (None: native size).
      crop: centre crop applied first (None: none).

    ``get`` returns (n, H, W, C) float32 in [0, 1]; ``labels`` the "label" feature, or None when the
    dataset has none (CelebA).
    """

    def __init__(self, name: str, split: str, data_dir: str | os.PathLike | None = None, pad: int = 0,
                 image_size: int | None = None, crop: int | None = None):
        tfds = _import_tfds()
        root = resolve_data_dir(data_dir)
        try:
            # download=False: otherwise tfds starts a download (and a build that needs TensorFlow).
            ds = tfds.data_source(name, split=split, data_dir=root, download=False)
        except Exception as e:  # tfds raises NotImplementedError, ValueError, ...: translate them all
            raise _explain_open_failure(tfds, name, split, root, e) from e
        if len(ds) == 0:
            raise DataError(f"Split {split!r} of dataset {name!r} in {root} is empty; choose another split.")

        self.name = name
        self.split = split
        self.data_dir = root
        self.value_range = IMAGE_RANGE
        self._ds = ds
        self._pad, self._image_size, self._crop = pad, image_size, crop
        self._batched = hasattr(ds, "__getitems__")
        first = ds[0]
        if "image" not in first:
            raise DataError(f"Dataset {name!r} has no 'image' feature (features: {sorted(first)}); "
                            "it cannot be used as image data.")
        self._has_labels = "label" in first
        self.shape: tuple[int, ...] = tuple(int(s) for s in self._prepare(first["image"]).shape)

    def __len__(self) -> int:
        return len(self._ds)

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        return prepare_image(np.asarray(image), crop=self._crop, image_size=self._image_size, pad=self._pad)

    def _records(self, idx: np.ndarray) -> Sequence[dict[str, Any]]:
        keys = [int(i) for i in idx]
        if self._batched:
            try:
                return self._ds.__getitems__(keys)
            except TypeError:
                # The mocked sources of tfds.testing.mock_data (tfds 4.9.x) have a broken batched read.
                self._batched = False
        return [self._ds[k] for k in keys]

    def get(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """(n, *shape) float32 in [0, 1] for ``indices``."""
        idx = as_indices(indices, len(self))
        if len(idx) == 0:
            return np.zeros((0, *self.shape), dtype=np.float32)
        images = [self._prepare(r["image"]) for r in self._records(idx)]
        for i, image in zip(idx, images):
            if image.shape != self.shape:
                fix = ("set --config.data.image_size to resize every image to one size" if image.shape[:2] != self.shape[:2]
                       else "convert every image to the same number of channels when preparing the dataset")
                raise DataError(f"Dataset {self.name!r} (split {self.split!r}) gives images of several shapes: example "
                                f"{int(i)} is {image.shape} after preparation, example 0 {self.shape}. To train on it, "
                                f"{fix}.")
        return np.stack(images).astype(np.float32, copy=False)

    def labels(self, indices: Sequence[int] | np.ndarray) -> np.ndarray | None:
        """(n,) int64 labels for ``indices``, or None (CelebA)."""
        if not self._has_labels:
            return None
        idx = as_indices(indices, len(self))
        return np.array([int(r["label"]) for r in self._records(idx)], dtype=np.int64)

    def __repr__(self) -> str:
        return f"TfdsSource(name={self.name!r}, split={self.split!r}, n={len(self)}, shape={self.shape})"


def load_tfds_source(name: str, split: str, data_dir: str | os.PathLike | None = None, pad: int = 0,
                     image_size: int | None = None) -> TfdsSource:
    """``TfdsSource`` with the dataset's standard crop (CelebA: centre 140x140)."""
    return TfdsSource(name, split, data_dir=data_dir, pad=pad, image_size=image_size, crop=CROPS.get(name))


# Each tfds dataset with its example shape (CelebA after its centre crop), known without the data.
TFDS_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3), "cifar100": (32, 32, 3),
    "svhn_cropped": (32, 32, 3), "celeb_a": (CELEBA_CROP, CELEBA_CROP, 3)}
TFDS_NAMES: tuple[str, ...] = tuple(TFDS_SHAPES)
# The OOD sets of the papers: CIFAR-10 against SVHN, CIFAR-100, interpolations and constant images
# (MDSM, CF-EBM).
OOD_SETS: dict[str, tuple[str, ...]] = {"cifar10": ("svhn_cropped", "cifar100", "interpolation", "constant")}
# Unpaired two-domain sets (tfds "cycle_gan/<pair>"): ``data.domain`` says which domain (A or B) the
# splits "train" and "test" read (tfds' trainA/trainB/testA/testB).
CYCLE_GAN_PAIRS: tuple[str, ...] = ("apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo",
                                    "cezanne2photo", "ukiyoe2photo", "vangogh2photo", "maps", "facades",
                                    "iphone2dslr_flower")


def _tfds_dataset(name: str) -> Dataset:
    def load(split, o):
        return load_tfds_source(name, split, data_dir=o.data_dir, pad=o.pad, image_size=o.image_size)

    return Dataset(name, load, f"tfds {name} (a prepared array_record directory; see docs/getting-started.md, 'Real datasets, offline')",
                   ood_sets=OOD_SETS.get(name, ("uniform", "constant", "interpolation")), shape=TFDS_SHAPES[name])


def _cycle_gan_dataset(pair: str) -> Dataset:
    name = "cycle_gan/" + pair

    def load(split, o):
        return load_tfds_source(name, domain_split(split, o.domain), data_dir=o.data_dir, pad=o.pad,
                                image_size=o.image_size)

    # RGB photographs whose size differs between pairs (256x256 for most, 600x600 for maps).
    return Dataset(name, load, f"tfds {name}: two unpaired domains ({' and '.join(DOMAINS)}; data.domain picks one)",
                   two_domain=True, shape=(None, None, 3))


DATASETS = tuple(_tfds_dataset(n) for n in TFDS_NAMES) + tuple(_cycle_gan_dataset(p) for p in CYCLE_GAN_PAIRS)
