"""Which dataset a config names: the registry of ``data.name`` values and :func:`load_source`.

The sources themselves (``bundled``, ``tfds_source``, ``toy2d``) build on ``ebmjax.data.source``;
this module is the only one that knows them all, so no source imports another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ebmjax.data.source import ImageSource
from ebmjax.errors import ConfigError

BUNDLED_NAMES: tuple[str, ...] = ("digits", "digits_bold")
TFDS_NAMES: tuple[str, ...] = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped", "celeb_a")
# Unpaired two-domain sets (tfds "cycle_gan/<pair>"): ``data.domain`` says which domain (A or B) the
# splits "train" and "test" read (tfds' trainA/trainB/testA/testB).
CYCLE_GAN_PAIRS: tuple[str, ...] = ("apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo",
                                    "cezanne2photo", "ukiyoe2photo", "vangogh2photo", "maps", "facades",
                                    "iphone2dslr_flower")
CYCLE_GAN_PREFIX = "cycle_gan/"
DOMAINS: tuple[str, ...] = ("A", "B")
TOY_PREFIX = "toy:"


def data_names() -> tuple[str, ...]:
    """Every value ``data.name`` accepts."""
    from ebmjax.data import toy2d

    return (BUNDLED_NAMES + TFDS_NAMES + tuple(CYCLE_GAN_PREFIX + p for p in CYCLE_GAN_PAIRS)
            + tuple(TOY_PREFIX + t for t in toy2d.TOY_NAMES))


def is_two_domain(name: Any) -> bool:
    """Whether ``data.name`` is a two-domain set (a tfds cycle_gan pair) that needs ``data.domain``."""
    return isinstance(name, str) and name.startswith(CYCLE_GAN_PREFIX)


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


def _field(cfg: Any, key: str, default: Any) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _int_field(value: Any, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"data.{field} must be an integer >= {minimum}, got {value!r}; "
                          f"set --config.data.{field}=<int>.")
    return int(value)


def load_source(data_config: Any, split: str) -> ImageSource:
    """The source named by ``data_config.name`` for ``split``.

    Args:
      data_config: ConfigDict (or mapping) with ``name``; ``data_dir`` (tfds root, None: $TFDS_DATA_DIR
        or ~/tensorflow_datasets); ``pad`` (int >= 0, zeros each side); ``image_size`` (int or None:
        square resize); ``toy_size`` (points of a 2-D toy). pad and image_size apply to image data
        only; toys ignore them.
        ``domain``: "A" or "B" for a two-domain set (cycle_gan pairs: split "train" then reads tfds'
        "trainA" or "trainB"; None or absent for every other dataset).
      split: "train" / "test" ("all" for digits; any tfds split string such as "validation" for tfds).

    Raises:
      ConfigError: unknown name or invalid field. DataError: a tfds dataset that is not prepared.
    """
    name = _field(data_config, "name", None)
    if not isinstance(name, str) or name not in data_names():
        raise ConfigError(f"Unknown data.name {name!r}. Valid names: {', '.join(data_names())}. "
                          "Set --config.data.name to one of them.")
    if not isinstance(split, str):
        raise ConfigError(f"split must be a string such as 'train' or 'test', got {split!r}")

    if name.startswith(TOY_PREFIX):
        from ebmjax.data import toy2d

        size = _int_field(_field(data_config, "toy_size", 20000), "toy_size", 1)
        return toy2d.ToySource(name[len(TOY_PREFIX):], size, split)

    domain = _field(data_config, "domain", None)
    if is_two_domain(name):
        if domain not in DOMAINS:
            raise ConfigError(f"data.name={name!r} holds two domains; data.domain must say which one the run "
                              f"learns: A or B, got {domain!r}. Set --config.data.domain=B (or A).")
    elif domain is not None:
        raise ConfigError(f"data.domain={domain!r} applies to two-domain sets (cycle_gan/<pair>) only; "
                          f"data.name={name!r} has one. Set --config.data.domain=none.")

    pad = _int_field(_field(data_config, "pad", 0), "pad", 0)
    image_size = _field(data_config, "image_size", None)
    if image_size is not None:
        image_size = _int_field(image_size, "image_size", 1)

    if name in BUNDLED_NAMES:
        from ebmjax.data import bundled

        make = bundled.bold_digits_source if name == "digits_bold" else bundled.digits_source
        return make(split, pad=pad, image_size=image_size)

    from ebmjax.data import tfds_source

    if is_two_domain(name):
        split = tfds_source.domain_split(split, domain)
    return tfds_source.load_tfds_source(name, split, data_dir=_field(data_config, "data_dir", None),
                                        pad=pad, image_size=image_size)
