"""Device mesh and shardings: the batch is split over a ``data`` axis, parameters are replicated.

This keeps the role of ``pmap`` (every accelerator works on its slice of the batch, gradients are
averaged) with ``jit`` over a ``Mesh``: XLA inserts the all-reduce, and layer-1 code stays free of
collectives.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ebmjax.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over all (or the given) devices, axis name ``data``."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``; other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_divisible(batch: int, mesh: Mesh, what: str) -> None:
    """Raises a ConfigError when a global batch cannot be split evenly over the mesh."""
    n = mesh.devices.size
    if batch % n:
        raise ConfigError(
            f"{what} = {batch} is not divisible by the {n} devices in use; "
            f"choose a multiple of {n} (e.g. {max(n, batch // n * n)})."
        )


def put_batch(x: np.ndarray, mesh: Mesh) -> jax.Array:
    """Places a host batch on the mesh, split along its first axis."""
    return jax.device_put(x, batch_sharding(mesh))


def put_replicated(tree, mesh: Mesh):
    return jax.device_put(tree, replicated(mesh))
