"""MDSM step factories: pure functions of (state, batch, key) built from a config and a model."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ebmjax import losses
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


def make_energy_probe(cfg: ml_collections.ConfigDict, apply_fn: Callable) -> Callable:
    """Returns ``probe(params, batch, key) -> {energy_data, energy_noise}``: mean energies of the data
    and of the sampler's starting noise (init_mean + init_std * N(0, I)); their gap shows learning."""
    s = cfg.sample

    def probe(params, batch, key):
        noise = s.init_mean + s.init_std * jax.random.normal(key, batch.shape, batch.dtype)
        return {"energy_data": jnp.mean(apply_fn(params, batch)), "energy_noise": jnp.mean(apply_fn(params, noise))}

    return probe
