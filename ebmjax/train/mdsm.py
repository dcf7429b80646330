"""MDSM step factories: pure functions of (state, batch, key) built from a config and a model."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ebmjax import losses
from ebmjax.errors import ConfigError
from ebmjax.train.state import TrainState, apply_if_finite


def noise_levels(cfg: ml_collections.ConfigDict) -> jax.Array:
    return losses.noise_levels(cfg.train.batch_size, cfg.loss.sigma_low, cfg.loss.sigma_high, cfg.loss.spacing)


def make_train_step(cfg: ml_collections.ConfigDict, apply_fn: Callable,
                    optimizer: optax.GradientTransformation) -> Callable:
    """Returns ``step(state, batch, key) -> (state, metrics)``; the noise key is ``fold_in(key, step)``.

    ``apply_fn(params, x) -> (B,)`` is the energy (e.g. a Flax ``model.apply``).
    """
    sigmas = noise_levels(cfg)
    sigma0 = cfg.loss.sigma0

    def loss_fn(params, batch, key):
        return losses.mdsm_loss(lambda x: apply_fn(params, x), batch, key, sigmas, sigma0)

    def step(state: TrainState, batch: jax.Array, key: jax.Array):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, jax.random.fold_in(key, state.step))
        new_state = apply_if_finite(state, loss, grads, optimizer)
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return step


def make_multi_step(cfg: ml_collections.ConfigDict, apply_fn: Callable,
                    optimizer: optax.GradientTransformation) -> Callable:
    """Returns ``multi(state, batches, key) -> (state, metrics)``: ``k`` training steps in one call.

    ``batches`` has shape (k, B, ...), the batches of steps state.step .. state.step + k - 1 in
    order. Every metric of the step gets a leading axis of length k, and ``skipped_update`` (k,) is
    1 where that step's update was skipped (non-finite loss or gradient). k is normally
    ``train.steps_per_call`` (validated here); a shorter stack (the end of a run) works too, at the
    cost of one more compile. Each step is exactly :func:`make_train_step`'s (noise from
    ``fold_in(key, step)``), so k steps per call give the same trajectory as k calls. Why: one
    dispatch and one host round trip per k steps instead of per step, which matters when a step
    takes milliseconds (small models, fast accelerators). Jit it with ``donate_argnums=0``; shard
    the stacked batch on its second axis (the batch axis).

    The k steps are unrolled into straight-line code rather than run by ``lax.scan``: XLA's CPU
    backend runs the double back-propagation about 10x slower inside a while loop (measured on the
    digits net, even for k = 1), and on a GPU a while loop reads its condition back to the host
    every iteration. The price is compile time proportional to k, so keep k small (2-8).
    """
    k = cfg.train.steps_per_call
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"train.steps_per_call must be an integer >= 1, got {k!r}.")
    step = make_train_step(cfg, apply_fn, optimizer)

    def multi(state: TrainState, batches: jax.Array, key: jax.Array):
        if batches.ndim < 2:
            raise ConfigError(f"make_multi_step: batches must have shape (k, B, ...), got {batches.shape}.")
        metrics = []
        for i in range(batches.shape[0]):
            new, m = step(state, batches[i], key)
            metrics.append(dict(m, skipped_update=new.skipped - state.skipped))
            state = new
        return state, jax.tree.map(lambda *a: jnp.stack(a), *metrics)

    return multi


def make_energy_probe(cfg: ml_collections.ConfigDict, apply_fn: Callable) -> Callable:
    """Returns ``probe(params, batch, key) -> {energy_data, energy_noise}``: mean energies of the data
    and of the sampler's starting noise (init_mean + init_std * N(0, I)); their gap shows learning."""
    s = cfg.sample

    def probe(params, batch, key):
        noise = s.init_mean + s.init_std * jax.random.normal(key, batch.shape, batch.dtype)
        return {"energy_data": jnp.mean(apply_fn(params, batch)), "energy_noise": jnp.mean(apply_fn(params, noise))}

    return probe
