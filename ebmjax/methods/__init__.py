"""Training methods (layer 3): each module builds a :class:`Method` record of pure factories.

``build(cfg, example_shape)`` returns the method named by ``cfg.method.name``. The training loop,
sampling, restoration and evaluation only use the record's fields, so a new method plugs in by
adding a module and a line to :data:`BUILDERS`.
"""

from __future__ import annotations

import math
from typing import Callable

import ml_collections

from ebmjax.errors import ConfigError
from ebmjax.methods import cfebm, coop, mdsm, ml, multigrid
from ebmjax.methods.base import Method, Params, Sampler, Stage

# builder(cfg, example_shape, value_range) -> Method
BUILDERS: dict[str, Callable[..., Method]] = {
    "cfebm": cfebm.build,
    "coop": coop.build,
    "mdsm": mdsm.build,
    "ml": ml.build,
    "multigrid": multigrid.build,
}

# carried_rows(cfg) -> sizes of the carried state's leading axes that carry_specs split over ``data``
CARRIED_ROWS: dict[str, Callable[[ml_collections.ConfigDict], tuple[int, ...]]] = {
    "ml": ml.carried_rows,
    "multigrid": multigrid.carried_rows,
}

__all__ = ["BUILDERS", "CARRIED_ROWS", "Method", "Params", "Sampler", "Stage", "build", "names", "split_rows"]


def names() -> tuple[str, ...]:
    return tuple(BUILDERS)


def build(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...],
          value_range: tuple[float, float] = (0.0, 1.0)) -> Method:
    """The method ``cfg.method.name`` for examples of ``example_shape`` whose values lie in
    ``value_range`` (the data source's; (0, 1) for images)."""
    name = cfg.method.name
    if name not in BUILDERS:
        raise ConfigError(f"Unknown method.name {name!r}; choose one of {', '.join(BUILDERS)} "
                          "(--config.method.name=...).")
    return BUILDERS[name](cfg, tuple(int(d) for d in example_shape), tuple(float(v) for v in value_range))


def split_rows(cfg: ml_collections.ConfigDict) -> int:
    """The largest row count that every array a run of ``cfg`` splits over the devices is a multiple
    of: the gcd of the training batch and the method's carried rows (``CARRIED_ROWS``). A device
    count must divide it (``ebmjax.parallel.use_cpu_cores`` picks one that does)."""
    rows = CARRIED_ROWS.get(cfg.method.name, lambda c: ())(cfg)
    return math.gcd(int(cfg.train.batch_size), *rows)
