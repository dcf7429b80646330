"""Training methods (layer 3): each module builds a :class:`Method` record of pure factories.

``build(cfg, example_shape)`` returns the method named by ``cfg.method.name``. The training loop,
sampling, restoration and evaluation only use the record's fields, so a new method plugs in by
adding a module and a line to :data:`BUILDERS`.
"""

from __future__ import annotations

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

__all__ = ["BUILDERS", "Method", "Params", "Sampler", "Stage", "build", "names"]


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
