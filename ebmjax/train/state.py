"""The train state: one PyTree updated by optax and saved by Orbax."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar: number of updates applied
    params: Any
    opt_state: Any
    skipped: jax.Array  # int32 scalar: updates skipped because the loss or a gradient was not finite


def lr_schedule(train_cfg: ml_collections.ConfigDict) -> optax.Schedule:
    """Cosine decay from ``lr`` to ``lr_end`` over ``steps`` (the original's recipe)."""
    return optax.cosine_decay_schedule(train_cfg.lr, train_cfg.steps, alpha=train_cfg.lr_end / train_cfg.lr)


def make_optimizer(train_cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam (betas and eps from the config) on :func:`lr_schedule`."""
    return optax.adam(lr_schedule(train_cfg), b1=train_cfg.b1, b2=train_cfg.b2, eps=train_cfg.eps)


def create(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params), jnp.zeros((), jnp.int32))


def apply_if_finite(state: TrainState, loss: jax.Array, grads: Any,
                    optimizer: optax.GradientTransformation) -> TrainState:
    """Applies the update unless the loss or any gradient is non-finite; then only ``skipped`` grows.

    Skipping keeps one bad batch (or an overflow in low precision) from poisoning the parameters
    and Adam's moments; the loop stops the run if skips persist.
    """
    finite = jnp.isfinite(loss) & jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    updates, new_opt = optimizer.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
    return TrainState(
        step=state.step + 1,
        params=jax.tree.map(keep, new_params, state.params),
        opt_state=jax.tree.map(keep, new_opt, state.opt_state),
        skipped=state.skipped + (1 - finite.astype(jnp.int32)),
    )
