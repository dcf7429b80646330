"""The train state: one PyTree updated by optax and saved by Orbax, whatever the method.

``params`` is a dict by network name (``{"energy": variables}`` for MDSM), ``opt_state`` one
optimiser state over that dict (each network with its own transformation, see
:func:`ebmjax.optim.per_network`),
``carry`` the method's carried state (a replay buffer; ``()`` when none), and ``ema`` an exponential
moving average of ``params`` (``()`` when ``train.ema_decay`` is 0).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ebmjax.errors import ConfigError


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar: number of updates applied
    params: Any  # {network name: variables}
    opt_state: Any
    carry: Any  # the method's carried state; () when none
    ema: Any  # moving average of params; () when off
    skipped: jax.Array  # int32 scalar: updates skipped because the loss or a gradient was not finite


def create(params: Any, optimizer: optax.GradientTransformation, carry: Any = (), ema: bool = False) -> TrainState:
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params), carry,
                      jax.tree.map(jnp.copy, params) if ema else (), jnp.zeros((), jnp.int32))


WEIGHTS = ("raw", "ema")  # the values of sample.weights


def inference_params(state: TrainState, weights: str = "raw") -> Any:
    """The parameters sampling, restoration and evaluation use (``sample.weights``): ``"raw"``, the
    trained parameters, or ``"ema"``, their moving average (kept when ``train.ema_decay`` > 0)."""
    if weights == "raw":
        return state.params
    if weights != "ema":
        raise ConfigError(f"sample.weights must be one of {', '.join(WEIGHTS)}, got {weights!r}.")
    if not jax.tree.leaves(state.ema):
        raise ConfigError("sample.weights='ema' samples from the moving average of the weights, but this run kept "
                          "none: train with --config.train.ema_decay=0.999 (any value in (0, 1)), or sample with "
                          "--config.sample.weights=raw.")
    return state.ema


def ema_rate(decay: float, step: jax.Array) -> jax.Array:
    """The averaging weight of the old average after ``step`` updates: min(decay, (1 + t) / (10 + t)),
    so the first updates are not dominated by the initial parameters."""
    t = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


def all_finite(*trees: Any) -> jax.Array:
    leaves = [leaf for tree in trees for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])) if leaves else jnp.asarray(True)


def apply_if_finite(state: TrainState, loss: jax.Array, grads: Any, carry: Any,
                    optimizer: optax.GradientTransformation, ema_decay: float = 0.0,
                    frozen: frozenset[str] = frozenset()) -> TrainState:
    """Applies the update (and takes the new carry) unless the loss, a gradient or the carry is
    non-finite; then only ``skipped`` grows. Networks named in ``frozen`` keep their parameters and
    their optimiser state (a zero gradient alone would still move them through Adam's momentum).

    Skipping keeps one bad batch (or an overflow in low precision) from poisoning the parameters,
    Adam's moments and a replay buffer; the loop stops the run if skips persist.
    """
    finite = jnp.isfinite(loss) & all_finite(grads, carry)
    updates, new_opt = optimizer.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    if frozen:
        new_params = {k: (state.params[k] if k in frozen else v) for k, v in new_params.items()}
        inner = {k: (state.opt_state.inner_states[k] if k in frozen else v)
                 for k, v in new_opt.inner_states.items()}
        new_opt = new_opt._replace(inner_states=inner)
    keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
    params = jax.tree.map(keep, new_params, state.params)
    ema = state.ema
    if jax.tree.leaves(ema):
        rate = ema_rate(ema_decay, state.step)
        ema = jax.tree.map(lambda e, p: jnp.where(finite, rate * e + (1.0 - rate) * p, e), ema, params)
    return TrainState(
        step=state.step + 1,
        params=params,
        opt_state=jax.tree.map(keep, new_opt, state.opt_state),
        carry=jax.tree.map(keep, carry, state.carry),
        ema=ema,
        skipped=state.skipped + (1 - finite.astype(jnp.int32)),
    )
