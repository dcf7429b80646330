"""Multiscale denoising score matching (Li, Chen & Sommer; the MDSM paper) as a training method.

One network, ``energy`` (``model.*``), trained by :func:`ebmjax.losses.mdsm_loss` with noise levels
fixed per batch position (``mdsm.*``); sampled by annealed Langevin from
``sample.init_mean + sample.init_std * N(0, I)`` along the ``sample.*`` schedule, then the
single-step denoising jump x - sigma0^2 dE/dx (``sample.denoise``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ebmjax import losses, models, optim, samplers, schedules
from ebmjax.methods.base import Method, Sampler, Stage, identity

NETWORK = "energy"


def noise_levels(cfg: ml_collections.ConfigDict) -> jax.Array:
    """The (train.batch_size,) noise levels of ``mdsm.*``, one per batch position."""
    m = cfg.mdsm
    return losses.noise_levels(cfg.train.batch_size, m.sigma_low, m.sigma_high, m.spacing)


def annealing_temperatures(sample_cfg: ml_collections.ConfigDict) -> np.ndarray:
    """The annealing schedule of ``sample.*``: one temperature per Langevin step, (K,) float32."""
    s = sample_cfg
    return np.asarray(schedules.annealing_schedule(s.schedule, t_max=s.t_max, n_hot=s.n_hot,
                                                   n_anneal=s.n_anneal, n_cool=s.n_cool, t_min=s.t_min))


def gaussian_init(shape: tuple[int, ...], mean: float, std: float):
    """``init(key, n) -> mean + std * N(0, I)`` of shape (n, *shape): the chains' start."""

    def init(key: jax.Array, n: int) -> jax.Array:
        return mean + std * jax.random.normal(key, (n, *shape), jnp.float32)

    return init


def annealed_sampler(energy: Any, example_shape: tuple[int, ...], sample_cfg: ml_collections.ConfigDict,
                     sigma0: float) -> Sampler:
    """The paper's sampler: annealed Langevin (ULA, step ``sample.step_size``) along the ``sample.*``
    schedule from init_mean + init_std * N(0, I), then the denoising jump x - sigma0^2 dE/dx if
    ``sample.denoise``. ``energy``: a Partial over parameters."""
    s = sample_cfg
    temps = annealing_temperatures(s)
    steps = np.full(temps.shape, s.step_size, np.float32)
    finish = (jax.tree_util.Partial(samplers.denoise_jump, energy, sigma0=float(sigma0)) if s.denoise
              else jax.tree_util.Partial(identity))
    settings = {"kind": "annealed langevin", "sigma0": float(sigma0),
                **{k: s[k] for k in ("schedule", "t_max", "t_min", "n_hot", "n_anneal", "n_cool", "step_size",
                                     "init_mean", "init_std", "denoise")}}
    return Sampler(gaussian_init(tuple(example_shape), float(s.init_mean), float(s.init_std)),
                   (Stage("anneal", energy, samplers.ula, temps, steps),), finish, settings)


def build(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...],
          value_range: tuple[float, float] = (0.0, 1.0)) -> Method:
    """The MDSM method for examples of ``example_shape`` (e.g. (8, 8, 1)); the data's
    ``value_range`` plays no part (chains start from sample.init_mean + sample.init_std N(0, I))."""
    del value_range
    model = models.build_model(cfg.model)
    tx, lr = optim.adam(cfg.train)
    optimizer = optim.per_network({NETWORK: tx})
    sigmas = noise_levels(cfg)
    sigma0 = float(cfg.mdsm.sigma0)
    s = cfg.sample

    def energy(params, carry=None):
        del carry
        return jax.tree_util.Partial(model.apply, params[NETWORK])

    def init_params(key):
        return {NETWORK: models.init_params(model, key, example_shape)}

    def loss(params, carry, batch, key, step):
        del step
        value = losses.mdsm_loss(energy(params), batch, key, sigmas, sigma0)
        return value, (carry, {})

    def probe(params, carry, batch, key):
        # The energy of the data and of the sampler's starting noise; their gap shows learning.
        del carry
        e = energy(params)
        noise = s.init_mean + s.init_std * jax.random.normal(key, batch.shape, batch.dtype)
        return {"energy_data": jnp.mean(e(batch)), "energy_noise": jnp.mean(e(noise))}

    def sampler(params, carry):
        del carry
        return annealed_sampler(energy(params), example_shape, s, sigma0)

    return Method(
        name="mdsm", networks={NETWORK: model}, init_params=init_params, optimizer=optimizer,
        learning_rates={NETWORK: lr}, init_carry=lambda key: (), carry_specs=(), loss=loss, probe=probe,
        energy=energy, sampler=sampler, denoise_sigma=sigma0, temperature=1.0, bounds={},
        identity=("model.name", "model.width", "model.blocks_per_stage", "model.hidden", "model.widths"))

