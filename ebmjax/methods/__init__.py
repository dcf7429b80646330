"""Training methods (layer 3): each module builds a :class:`Method` record of pure factories.

``build(cfg, example_shape)`` returns the method named by ``cfg.method.name``. The training loop,
sampling, restoration and evaluation only use the record's fields, so a new method plugs in by
adding a module and a line to :data:`METHODS`.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import ml_collections

from ebmjax.errors import ConfigError
from ebmjax.methods import cfebm, coop, mdsm, ml, multigrid
from ebmjax.methods.base import Method, Params, Sampler, Stage


def _no_carried_rows(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
    return ()


class Entry(NamedTuple):
    """A method's line in :data:`METHODS`.

    Attributes:
        build: ``build(cfg, example_shape, value_range) -> Method``.
        carried_rows: ``carried_rows(cfg)``: the sizes of the leading axes of the method's carried
            state that are split over the ``data`` axis (a replay buffer's rows). It reads the config
            alone because it is needed before JAX starts its devices (the device count must divide
            these rows, :func:`split_rows`), before the record that ``build`` returns can exist.
    """

    build: Callable[..., Method]
    carried_rows: Callable[[ml_collections.ConfigDict], tuple[int, ...]] = _no_carried_rows


METHODS: dict[str, Entry] = {
    "cfebm": Entry(cfebm.build),
    "coop": Entry(coop.build),
    "mdsm": Entry(mdsm.build),
    "ml": Entry(ml.build, ml.carried_rows),
    "multigrid": Entry(multigrid.build, multigrid.carried_rows),
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
    return _entry(cfg).build(cfg, tuple(int(d) for d in example_shape), tuple(float(v) for v in value_range))


def split_rows(cfg: ml_collections.ConfigDict) -> int:
    """The largest row count that every array a run of ``cfg`` splits over the devices is a multiple
    of: the gcd of the training batch and the method's carried rows (:attr:`Entry.carried_rows`). A
    device count must divide it (``ebmjax.parallel.use_cpu_cores`` picks one that does)."""
    return math.gcd(int(cfg.train.batch_size), *_entry(cfg).carried_rows(cfg))
