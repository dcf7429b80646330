"""Training methods (layer 3): each module builds a :class:`Method` record of pure factories.

``build(cfg, example_shape)`` returns the method named by ``cfg.method.name``. The training loop,
sampling, restoration and evaluation only use the record's fields, so a new method plugs in by
adding a module (``build``, ``defaults``, ``RULES``, ``check_config``) and a line to :data:`METHODS`.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import ml_collections

from ebmjax.errors import ConfigError
from ebmjax.methods import cfebm, coop, jem, mdsm, ml, multigrid, settings
from ebmjax.methods.base import Method, Params, Sampler, Stage


def _no_carried_rows(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
    return ()


class Entry(NamedTuple):
    """A method's line in :data:`METHODS`.

    Attributes:
        build: ``build(cfg, example_shape, value_range) -> Method``.
        defaults: ``defaults() -> ConfigDict``: the method's config group (``cfg.<name>``), every
            field with its default; :func:`ebmjax.config.defaults` assembles every method's.
        rules: the group's number fields as ``(field, what it is, rule)`` (``ebmjax.methods.settings``),
            checked for every config.
        check: ``check(group)``: ConfigError for settings of the group that cannot work (its rules
            and the checks that are not about one number); run for the chosen method.
        carried_rows: ``carried_rows(cfg)``: the sizes of the leading axes of the method's carried
            state that are split over the ``data`` axis (a replay buffer's rows). It reads the config
            alone because it is needed before JAX starts its devices (the device count must divide
            these rows, :func:`split_rows`), before the record that ``build`` returns can exist.
    """

    build: Callable[..., Method]
    defaults: Callable[[], ml_collections.ConfigDict]
    rules: tuple[tuple[str, str, str], ...]
    check: Callable[[ml_collections.ConfigDict], None]
    carried_rows: Callable[[ml_collections.ConfigDict], tuple[int, ...]] = _no_carried_rows


METHODS: dict[str, Entry] = {
    name: Entry(m.build, m.defaults, m.RULES, m.check_config, getattr(m, "carried_rows", _no_carried_rows))
    for name, m in (("mdsm", mdsm), ("ml", ml), ("multigrid", multigrid), ("cfebm", cfebm), ("coop", coop), ("jem", jem))
}

__all__ = ["METHODS", "Entry", "Method", "Params", "Sampler", "Stage", "build", "names", "split_rows"]


def names() -> tuple[str, ...]:
    return tuple(METHODS)


def _entry(cfg: ml_collections.ConfigDict) -> Entry:
    name = cfg.method.name
    if name not in METHODS:
        raise ConfigError(f"Unknown method.name {name!r}; choose one of {', '.join(METHODS)} "
                          "(--config.method.name=...).")
    return METHODS[name]


def build(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...],
          value_range: tuple[float, float] = (0.0, 1.0)) -> Method:
    """The method ``cfg.method.name`` for examples of ``example_shape`` whose values lie in
    ``value_range`` (the data source's; (0, 1) for images)."""
    method = _entry(cfg).build(cfg, tuple(int(d) for d in example_shape), tuple(float(v) for v in value_range))
    classes = cfg.model.get("classes") or 0
    if classes and not method.labels:
        raise ConfigError(f"method {method.name!r} does not learn class-conditional energies, so model.classes = "
                          f"{classes} would be ignored or misread. Set --config.model.classes=0, or use a method "
                          "that learns E(x, y) from labels (docs/conditional.md lists them).")
    label = settings.sample_label(cfg, classes)
    if label is None:
        return method
    # The class the samplers draw (sample.label, read by each method's sampler) goes into their settings
    # here, once for every method: the shard manifest and the samples' judge read it from there.
    draw = method.sampler

    def sampler(params: Params, carry) -> Sampler:
        s = draw(params, carry)
        return s._replace(settings={**s.settings, "label": label})

    return method._replace(sampler=sampler)


def split_rows(cfg: ml_collections.ConfigDict) -> int:
    """The largest row count that every array a run of ``cfg`` splits over the devices is a multiple
    of: the gcd of the training batch and the method's carried rows (:attr:`Entry.carried_rows`). A
    device count must divide it (``ebmjax.parallel.use_cpu_cores`` picks one that does)."""
    return math.gcd(int(cfg.train.batch_size), *_entry(cfg).carried_rows(cfg))
