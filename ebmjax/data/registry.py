"""Which dataset a config names: the registry of :class:`Dataset` records and :func:`load_source`.

A dataset is a plug-in. Everything special to it lives in its record: how its splits are loaded,
the judge that scores samples of it (a classifier ebmjax does not train against), the sets that
evaluation holds out of distribution, and the report that sampling writes beside the picture of
the samples (a 2-D toy draws its learned density). Shared code asks the record and names no
dataset, so a dataset of your own is one call::

    from ebmjax import data

    data.register(data.Dataset(name="my_digits", load=lambda split, opts: my_source(split, opts.pad),
                               about="my 16x16 digits"))

after which ``data.name = "my_digits"`` trains, samples, restores and evaluates like a bundled set.

The built-in records live beside their loaders (``bundled``, ``mnist5k``, ``toy2d``,
``tfds_source``); this module imports them the first time a name is looked up, so no source module
imports another and none imports this one at import time.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ebmjax.data.source import ImageSource, check_source
from ebmjax.errors import ConfigError, DataError

# The modules that hold the built-in records (each has a DATASETS tuple).
BUILTIN_MODULES: tuple[str, ...] = ("ebmjax.data.bundled", "ebmjax.data.mnist5k", "ebmjax.data.toy2d",
                                    "ebmjax.data.tfds_source")
DOMAINS: tuple[str, ...] = ("A", "B")
# The synthetic out-of-distribution sets evaluation builds for any image data (ebmjax.evaluation.ood).
SYNTHETIC_OOD_SETS: tuple[str, ...] = ("uniform", "constant", "interpolation", "faces")


class DataOptions(NamedTuple):
    """The checked ``data.*`` fields a loader receives.

    pad: zeros added on each side (int >= 0); image_size: square resize (None: native size);
    data_dir: tfds root (None: $TFDS_DATA_DIR or ~/tensorflow_datasets); toy_size: points drawn for
    a 2-D toy; domain: "A" or "B" for a two-domain set, else None. Loaders of points ignore pad and
    image_size."""

    pad: int = 0
    image_size: int | None = None
    data_dir: str | None = None
    toy_size: int = 20000
    domain: str | None = None


@dataclasses.dataclass(frozen=True)
class SampleReport:
    """What a dataset's ``report`` gets after sampling (see :class:`Dataset`).

    samples: the samples, (n, *shape) in the data's range (at most the ones that fit in memory);
    out_dir: where the sampling run writes; energy_fn: the model's energy on numpy arrays (n, *shape)
    -> (n,); draw_warm(n): n further chains of the same sampler never colder than T = 1 and without
    its finishing map (samples of the density exp(-E) itself); source: the training data; title:
    "<method> on <data>" for pictures; label: the class a class-conditional model sampled
    (``sample.label``; -1: every class in turn), None for the whole density."""

    samples: np.ndarray
    out_dir: Any
    energy_fn: Callable[[np.ndarray], np.ndarray]
    draw_warm: Callable[[int], np.ndarray]
    source: ImageSource
    title: str
    label: int | None = None


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One value of ``data.name`` and everything shared code needs to know about it.

    Attributes:
      name: the ``data.name`` value.
      load: ``(split, options: DataOptions) -> ImageSource``.
      about: one line for listings and messages (what it is, where it comes from).
      splits: the splits it has ("train" and "test" at least, for evaluation and restoration).
      points: True for low-dimensional points (2-D toys): no pad or resize, no restoration or
        image evaluation.
      two_domain: True for unpaired two-domain sets (``data.domain`` A or B picks one).
      judge: ``seed -> Judge`` (``ebmjax.data.judges``) for images at the dataset's native size, or
        None. It scores samples after sampling (share recognised, label entropy), gives evaluation's
        feature space (FID/KID/IS), its mode coverage and checkpoint scans.
      ood_sets: what evaluation holds out of distribution by default (``eval.ood.sets = ("auto",)``):
        names in :data:`SYNTHETIC_OOD_SETS` or other datasets' names (resized to this one's images).
      report: ``SampleReport -> dict`` written after sampling (its "files" are added to the
        summary's), or None: pictures and figures only this dataset has.
      shape: (H, W, C) of one example as loaded before ``data.pad`` and ``data.image_size`` (after
        the dataset's own crop), known without reading the data; None for the height and width
        where they vary. Tools that need no pixels (the benchmark) use it when the data are not
        prepared on this machine. None: unknown (such tools then need the data).
    """

    name: str
    load: Callable[[str, DataOptions], ImageSource]
    about: str
    splits: tuple[str, ...] = ("train", "test")
    points: bool = False
    two_domain: bool = False
    judge: Callable[[int], Any] | None = None
    ood_sets: tuple[str, ...] = ("uniform", "constant", "interpolation")
    report: Callable[[SampleReport], dict] | None = None
    shape: tuple[int | None, int | None, int] | None = None


_REGISTRY: dict[str, Dataset] = {}
_BUILTIN_LOADED = False


def _load_builtin() -> None:
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    for module in BUILTIN_MODULES:
        for d in importlib.import_module(module).DATASETS:
            _REGISTRY.setdefault(d.name, d)


def register(dataset: Dataset, *, replace: bool = False) -> Dataset:
    """Adds ``dataset`` to the registry (``replace=True`` to redefine a name); returns it."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"register takes an ebmjax.data.Dataset, got {type(dataset).__name__}")
    _load_builtin()
    if dataset.name in _REGISTRY and not replace:
        raise ConfigError(f"A dataset named {dataset.name!r} is already registered; pick another name or pass "
                          "replace=True.")
    _REGISTRY[dataset.name] = dataset
    return dataset


def unregister(name: str) -> None:
    """Removes a registered name (a no-op when it is not registered)."""
    _load_builtin()
    _REGISTRY.pop(name, None)


def data_names() -> tuple[str, ...]:
    """Every value ``data.name`` accepts, in registration order."""
    _load_builtin()
    return tuple(_REGISTRY)


def get(name: Any) -> Dataset:
    """The record of ``data.name`` ``name``; ConfigError naming the valid ones when unknown."""
    _load_builtin()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ConfigError(f"Unknown data.name {name!r}. Valid names: {', '.join(_REGISTRY)}. "
                          "Set --config.data.name to one of them (or register your own: ebmjax.data.register).")
    return _REGISTRY[name]


def is_two_domain(name: Any) -> bool:
    """Whether ``data.name`` is a two-domain set (a tfds cycle_gan pair) that needs ``data.domain``."""
    _load_builtin()
    return isinstance(name, str) and name in _REGISTRY and _REGISTRY[name].two_domain


def holds_points(name: Any) -> bool:
    """Whether ``data.name`` is points (a 2-D toy) rather than images."""
    _load_builtin()
    return isinstance(name, str) and name in _REGISTRY and _REGISTRY[name].points


def source_domain_config(cfg: Any) -> dict:
    """The data settings of a translation's source domain: ``data.*`` with the name, image size and
    domain of the ``translate`` group (``translate.data_name``; a cycle_gan pair's other domain).

    Raises ConfigError where that would be the domain the model learns, or names no domain."""
    t, d = cfg.translate, cfg.data
    name = t.data_name if t.data_name is not None else d.name
    if is_two_domain(name):
        if t.source_domain not in DOMAINS:
            raise ConfigError(f"translate.source_domain must be A or B (the domain of {name!r} translated from), "
                              f"got {t.source_domain!r}.")
        if name == d.name and t.source_domain == d.domain:
            other = next(x for x in DOMAINS if x != d.domain)
            raise ConfigError(f"translate.source_domain={t.source_domain!r} is the domain the model learns "
                              f"(data.domain={d.domain!r}); translate from the other one: "
                              f"--config.translate.source_domain={other} (or learn the other domain with "
                              f"--config.data.domain={other} and a new --workdir).")
    elif t.data_name is None:
        raise ConfigError(f"translate.data_name is not set, so the source images would come from data.name="
                          f"{d.name!r}, the domain the model learns. Set --config.translate.data_name to the "
                          "source domain's dataset (e.g. digits for a model of digits_bold; "
                          "configs/translate_digits.py), or use a two-domain set (cycle_gan/<pair>).")
    source = dict(d.to_dict())
    source["name"] = name
    source["image_size"] = t.image_size if t.image_size is not None else d.image_size
    source["domain"] = t.source_domain if is_two_domain(name) else None
    return source


def check_domains_match(cfg: Any, source: ImageSource, target: ImageSource, split: str) -> None:
    """ConfigError unless the source domain's images (split ``split``) are images of the target's
    (the data's) shape and range."""
    source_cfg = source_domain_config(cfg)
    t = cfg.translate
    where = f"{source_cfg['name']!r}" + (f" domain {source_cfg['domain']}" if source_cfg["domain"] else "")
    if len(source.shape) != 3:
        raise ConfigError(f"Translation needs images (H, W, C); the source {where} gives examples of shape "
                          f"{source.shape}.")
    if tuple(source.shape) != tuple(target.shape):
        if source.shape[-1] != target.shape[-1]:
            fix = (f"the channels differ ({source.shape[-1]} against {target.shape[-1]}): translate from a "
                   f"dataset with {target.shape[-1]} channel(s) (--config.translate.data_name)")
        else:
            fix = (f"set --config.translate.image_size={target.shape[0] - 2 * int(cfg.data.pad)} so that the "
                   "source images are resized to the model's size")
        raise ConfigError(f"The model learns images of shape {tuple(target.shape)} (data.name={cfg.data.name!r}, "
                          f"data.image_size={cfg.data.image_size}, data.pad={cfg.data.pad}), but the source images "
                          f"({where}, split {split!r}, translate.image_size={t.image_size}) have shape "
                          f"{tuple(source.shape)}; {fix}.")
    if tuple(source.value_range) != tuple(target.value_range):
        raise ConfigError(f"The source images lie in {source.value_range}, the model's in {target.value_range}; "
                          "translate between datasets of the same range.")


def _field(cfg: Any, key: str, default: Any) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _int_field(value: Any, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"data.{field} must be an integer >= {minimum}, got {value!r}; "
                          f"set --config.data.{field}=<int>.")
    return int(value)


def data_options(data_config: Any) -> tuple[Dataset, DataOptions]:
    """The record ``data_config.name`` names and its checked options (see :func:`load_source`)."""
    dataset = get(_field(data_config, "name", None))
    name = dataset.name
    domain = _field(data_config, "domain", None)
    if dataset.two_domain:
        if domain not in DOMAINS:
            raise ConfigError(f"data.name={name!r} holds two domains; data.domain must say which one the run "
                              f"learns: A or B, got {domain!r}. Set --config.data.domain=B (or A).")
    elif domain is not None:
        raise ConfigError(f"data.domain={domain!r} applies to two-domain sets (cycle_gan/<pair>) only; "
                          f"data.name={name!r} has one. Set --config.data.domain=none.")
    if dataset.points:
        return dataset, DataOptions(toy_size=_int_field(_field(data_config, "toy_size", 20000), "toy_size", 1))
    image_size = _field(data_config, "image_size", None)
    return dataset, DataOptions(
        pad=_int_field(_field(data_config, "pad", 0), "pad", 0),
        image_size=None if image_size is None else _int_field(image_size, "image_size", 1),
        data_dir=_field(data_config, "data_dir", None), domain=domain)


def load_source(data_config: Any, split: str) -> ImageSource:
    """The source named by ``data_config.name`` for ``split``.

    Args:
      data_config: ConfigDict (or mapping) with ``name``; ``data_dir`` (tfds root, None: $TFDS_DATA_DIR
        or ~/tensorflow_datasets); ``pad`` (int >= 0, zeros each side); ``image_size`` (int or None:
        square resize); ``toy_size`` (points of a 2-D toy). pad and image_size apply to image data
        only; toys ignore them.
        ``domain``: "A" or "B" for a two-domain set (cycle_gan pairs: split "train" then reads tfds'
        "trainA" or "trainB"; None or absent for every other dataset).
      split: "train" / "test" ("all" for the bundled sets; any tfds split string such as "validation"
        for tfds).

    Raises:
      ConfigError: unknown name or invalid field. DataError: a dataset that is missing or not prepared,
        or whose examples cannot be trained on (:func:`ebmjax.data.source.check_source`: shapes,
        channels, non-finite or out-of-range values), named with what is wrong.
    """
    dataset, options = data_options(data_config)
    if not isinstance(split, str):
        raise ConfigError(f"split must be a string such as 'train' or 'test', got {split!r}")
    source = dataset.load(split, options)
    check_source(source, split, points=dataset.points)
    return source


def example_shape(data_config: Any) -> tuple[int, ...]:
    """Per-example shape a run on ``data_config`` trains on: the train split's when it loads, otherwise
    the dataset's own (``Dataset.shape``) with ``data.image_size`` and ``data.pad`` applied, so tools
    that need no pixels (the benchmark) work where the data are not prepared. DataError (with what to
    pass) when neither gives it."""
    try:
        return tuple(load_source(data_config, "train").shape)
    except DataError as e:
        dataset, options = data_options(data_config)
        if dataset.shape is None:
            raise
        h, w, c = dataset.shape
        if options.image_size is not None:
            h = w = options.image_size
        if h is None or w is None:
            raise DataError(f"{e}\n{dataset.name}'s images differ in size: to use it without the data, give the "
                            "size the run trains at, --config.data.image_size=N (or bench's --shape H,W,C).") from e
        return (h + 2 * options.pad, w + 2 * options.pad, c)


def native_view(data_config: Any, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """A map from images as ``data_config`` prepares them ((n, *shape)) back to the dataset's native
    size: the ``data.pad`` border cropped, then a ``data.image_size`` resize undone (PIL bilinear) to
    the native side ``native``. Judges see the digits they were fitted on."""
    from ebmjax.data.source import resize_image

    dataset, options = data_options(data_config)
    pad = options.pad
    native = None
    if options.image_size is not None:
        native = dataset.load("test", options._replace(pad=0, image_size=None)).shape[0]

    def view(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if pad:
            x = x[:, pad:x.shape[1] - pad, pad:x.shape[2] - pad]
        if native is not None and x.shape[1] != native:
            x = np.stack([resize_image(im, native) for im in x]) if len(x) else x[:, :native, :native]
        return x

    return view


def judge_for(data_config: Any, seed: int = 0, shape: tuple[int, ...] | None = None) -> Any | None:
    """The dataset's judge (``ebmjax.data.judges``) for images as ``data_config`` prepares them, or
    None when the dataset has none, or when images of ``shape`` (H, W, C), mapped back to the native
    size (:func:`native_view`), are not what it takes. Images are mapped back before it sees them."""
    from ebmjax.data.judges import ViewedJudge

    dataset, _ = data_options(data_config)
    if dataset.judge is None or (shape is not None and len(shape) != 3):
        return None
    judge = dataset.judge(seed)
    view = native_view(data_config, judge.shape)
    if shape is not None:
        seen = view(np.zeros((1, *shape), np.float32)).shape[1:]
        if tuple(seen[:2]) != tuple(judge.shape[:2]) or (seen[2] != judge.shape[2] and judge.shape[2] != 1):
            return None
    return ViewedJudge(judge, view, data_name=dataset.name)
