"""The one training step every method shares: pure functions of (state, batch, key).

``step`` evaluates the method's loss and its gradient with respect to all networks at once
(``value_and_grad(method.loss, has_aux=True)``), skips the update if anything is non-finite, and
applies the optimiser; the method's new carried state (e.g. its replay buffer) is taken with it.
Randomness comes from ``fold_in(key, state.step)``, so a resumed run draws exactly what an unbroken
one would.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from ebmjax.errors import ConfigError
from ebmjax.methods.base import Method, with_phase
from ebmjax.train.state import TrainState, apply_if_finite


def make_train_step(method: Method, ema_decay: float = 0.0, phase: Any = None) -> Callable:
    """Returns ``step(state, batch, key) -> (state, metrics)`` (for steps of ``phase``, when the
    method has phases; see ``Method.phase``).

    ``metrics``: ``loss``, ``grad_norm`` (over all networks; ``grad_norm/<name>`` per network when
    there are several), and whatever the method's loss reports. An update whose loss, gradient or
    new carry is non-finite, or whose metric exceeds ``method.bounds``, is skipped.
    """
    grad_fn = jax.value_and_grad(with_phase(method.loss, method, phase), has_aux=True)
    frozen = frozenset() if method.frozen is None else frozenset(method.frozen(phase))

    def step(state: TrainState, batch: jax.Array, key: jax.Array):
        (loss, (carry, metrics)), grads = grad_fn(state.params, state.carry, batch,
                                                  jax.random.fold_in(key, state.step), state.step)
        # A metric beyond the method's bound (e.g. runaway energies) counts as a diverged update.
        within = jnp.asarray(True)
        for name, (low, high, _) in method.bounds.items():
            within = within & (metrics[name] >= low) & (metrics[name] <= high)
        new_state = apply_if_finite(state, jnp.where(within, loss, jnp.nan), grads, carry, method.optimizer,
                                    ema_decay, frozen)
        out = {"loss": loss, "grad_norm": optax.tree.norm(grads), **metrics}
        if len(grads) > 1:
            out.update({f"grad_norm/{name}": optax.tree.norm(g) for name, g in grads.items()})
        return new_state, out

    return step


def make_multi_step(method: Method, steps_per_call: int, ema_decay: float = 0.0, phase: Any = None) -> Callable:
    """Returns ``multi(state, batches, key) -> (state, metrics)``: ``k`` training steps in one call.

    ``batches`` has shape (k, B, ...), the batches of steps state.step .. state.step + k - 1 in
    order (or is a tuple of such arrays, for a method with ``Method.source_data``). Every metric gets a leading axis of length k, and ``skipped_update`` (k,) is 1 where that
    step's update was skipped. A shorter stack (the end of a run) works too, at the cost of one more
    compile. Each step is exactly :func:`make_train_step`'s, so k steps per call give the same
    trajectory as k calls. Why: one dispatch and one host round trip per k steps instead of per
    step, which matters when a step takes milliseconds. Jit it with ``donate_argnums=0``; shard the
    stacked batch on its second axis (the batch axis).

    The k steps are unrolled into straight-line code rather than run by ``lax.scan``: XLA's CPU
    backend runs the double back-propagation of MDSM about 10x slower inside a while loop, and on a
    GPU a while loop reads its condition back to the host every iteration. The price is compile
    time proportional to k, so keep k small (2-8).
    """
    if isinstance(steps_per_call, bool) or not isinstance(steps_per_call, int) or steps_per_call < 1:
        raise ConfigError(f"train.steps_per_call must be an integer >= 1, got {steps_per_call!r}.")
    step = make_train_step(method, ema_decay, phase)

    def multi(state: TrainState, batches: Any, key: jax.Array):
        shapes = [b.shape for b in jax.tree.leaves(batches)]
        if not shapes or any(len(s) < 2 or s[0] != shapes[0][0] for s in shapes):
            raise ConfigError(f"make_multi_step: batches must have shape (k, B, ...) (every array of a tuple the "
                              f"same k), got {shapes}.")
        metrics = []
        for i in range(shapes[0][0]):
            new, m = step(state, jax.tree.map(lambda b: b[i], batches), key)
            metrics.append(dict(m, skipped_update=new.skipped - state.skipped))
            state = new
        return state, jax.tree.map(lambda *a: jnp.stack(a), *metrics)

    return multi
