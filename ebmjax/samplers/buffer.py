"""A replay buffer of chain states (persistent contrastive divergence, IGEBM, JEM) as pure functions.

The buffer is an array (capacity, *shape) of past chain ends. A training step draws ``n`` of them
uniformly, replaces each by a fresh start with probability ``reinit_prob``, runs its chains from
there and writes the ends back where they came from. Everything is jax and jittable; the buffer may
be sharded over devices like any array (``jit`` inserts the communication a gather needs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError
from ebmjax.samplers.conditioning import asked_labels

__all__ = ["buffer_init", "buffer_draw", "buffer_update", "buffer_rows", "buffer_class_rows"]


def buffer_init(x: jax.Array) -> jax.Array:
    """A buffer holding the rows of ``x`` (capacity = len(x)), e.g. uniform noise."""
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ConfigError(f"buffer_init needs at least one row, got shape {x.shape}.")
    return x


def buffer_draw(key: jax.Array, buffer: jax.Array, n: int, *, reinit_prob: float,
                fresh: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(x0 (n, ...), indices (n,), reinitialised (n,) bool): ``n`` rows drawn uniformly (with
    replacement) from the whole buffer, each replaced by the matching row of ``fresh`` (n, ...)
    with probability ``reinit_prob``."""
    if fresh.shape[0] != n or fresh.shape[1:] != buffer.shape[1:]:
        raise ConfigError(f"buffer_draw: fresh must have shape ({n}, *{buffer.shape[1:]}), got {fresh.shape}.")
    k_idx, k_new = jax.random.split(key)
    indices = jax.random.randint(k_idx, (n,), 0, buffer.shape[0])
    reinit = jax.random.uniform(k_new, (n,)) < reinit_prob
    x0 = jnp.where(reinit.reshape((n,) + (1,) * (buffer.ndim - 1)), fresh.astype(buffer.dtype), buffer[indices])
    return x0, indices, reinit


def buffer_update(buffer: jax.Array, indices: jax.Array, x: jax.Array) -> jax.Array:
    """The buffer with rows ``indices`` set to ``x`` (n, ...); when an index repeats, one of its rows
    is kept."""
    return buffer.at[indices].set(x.astype(buffer.dtype))


def buffer_rows(buffer: jax.Array, key: jax.Array, n: int) -> jax.Array:
    """``n`` rows drawn uniformly (with replacement): chain starts for sampling from a buffer
    (``jax.tree_util.Partial(buffer_rows, buffer)`` is an ``init(key, n)``)."""
    return buffer[jax.random.randint(key, (n,), 0, buffer.shape[0])]


def buffer_class_rows(buffer: jax.Array, labels: jax.Array, label: jax.Array, classes: jax.Array, key: jax.Array,
                      n: int) -> jax.Array:
    """``n`` rows drawn among those whose ``labels`` (one per row) are the class each chain is to
    sample: ``label``, or with -1 every one of ``classes`` in turn (``samplers.row_labels``, a grid
    row each); where a class has no row, any row."""
    wanted = asked_labels(label, n, classes)
    match = labels[None, :] == wanted[:, None]  # (n, rows)
    logits = jnp.where(match | ~jnp.any(match, axis=1, keepdims=True), 0.0, -jnp.inf)
    return buffer[jax.random.categorical(key, logits, axis=1)]
