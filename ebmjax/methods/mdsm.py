"""Multiscale denoising score matching (Li, Chen & Sommer; the MDSM paper) as a training method.

One network, ``energy`` (``model.*``), trained by :func:`ebmjax.losses.mdsm_loss` with noise levels
fixed per batch position (``mdsm.*``); sampled by annealed Langevin from
``mdsm.init_mean + mdsm.init_std * N(0, I)`` along the schedule of ``mdsm.schedule``, ``mdsm.t_max``, ..., then the
single-step denoising jump x - sigma0^2 dE/dx (``mdsm.denoise``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ebmjax import losses, models, optim, samplers, schedules
from ebmjax.errors import ConfigError
from ebmjax.methods import settings
from ebmjax.methods.base import Method, Sampler, Stage, identity, network_energy, split_labels

NETWORK = "energy"


def defaults() -> ml_collections.ConfigDict:
    """The ``mdsm`` config group, every field with its default (``ebmjax.methods.settings``)."""
    # Multiscale denoising score matching (ebmjax.methods.mdsm).
    g = ml_collections.ConfigDict()
    g.sigma0 = 0.1  # width of the kernel whose smoothed density is learned (also the denoising jump's)
    g.sigma_low = 0.05  # noise levels, fixed per batch position
    g.sigma_high = 1.2
    g.spacing = "linear"  # linear | geometric
    # --mode sample (and inpainting's chains): annealed Langevin along this schedule, from init_mean +
    # init_std * N(0, I), then the denoising jump
    g.schedule = "exp"  # exp | lin (ebmjax.schedules.annealing_schedule)
    g.t_max = 100.0
    g.t_min = 1.0  # the annealing ends here before cooling to 0 (paper: 1; < 1 favours the most likely images)
    g.n_hot = 500
    g.n_anneal = 2000
    g.n_cool = 200
    g.step_size = 0.02  # Langevin epsilon
    g.init_mean = 0.5  # chains start at init_mean + init_std * N(0, I)
    g.init_std = 1.0
    g.denoise = True  # finish with the single-step denoising jump x - mdsm.sigma0^2 dE/dx
    return g


# Number fields of the group and the values that work for them (ebmjax.methods.settings).
RULES = (
    ("sigma0", "the width of the smoothing kernel", "> 0"),
    ("sigma_low", "the smallest noise level", "> 0"),
    ("sigma_high", "the largest noise level", "> 0"),
    ("t_max", "the temperature the chains start at", "> 0"),
    ("t_min", "the temperature the annealing ends at", "> 0"),
    ("step_size", "the Langevin step size", "> 0"),
    ("init_mean", "the mean of the chains' start", "finite"),
    ("init_std", "the spread of the chains' start", ">= 0"),
)


def check_config(m: ml_collections.ConfigDict) -> None:
    """ConfigError for settings of the ``mdsm`` group that cannot work."""
    settings.check_numbers(m, "mdsm", RULES)
    settings.check_counts(m, "mdsm", (("n_hot", 0), ("n_anneal", 0), ("n_cool", 0)))
    for low, high, what in (("sigma_low", "sigma_high", "noise levels"), ("t_min", "t_max", "annealing temperatures")):
        if m[low] > m[high]:
            raise ConfigError(f"mdsm.{low} = {m[low]} is above mdsm.{high} = {m[high]}; the {what} need "
                              f"mdsm.{low} <= mdsm.{high}.")


def noise_levels(cfg: ml_collections.ConfigDict) -> jax.Array:
    """The (train.batch_size,) noise levels of ``mdsm.*``, one per batch position."""
    m = cfg.mdsm
    return losses.noise_levels(cfg.train.batch_size, m.sigma_low, m.sigma_high, m.spacing)


def annealing_temperatures(mdsm_cfg: ml_collections.ConfigDict) -> np.ndarray:
    """The annealing schedule of the ``mdsm`` group: one temperature per Langevin step, (K,) float32."""
    s = mdsm_cfg
    return np.asarray(schedules.annealing_schedule(s.schedule, t_max=s.t_max, n_hot=s.n_hot,
                                                   n_anneal=s.n_anneal, n_cool=s.n_cool, t_min=s.t_min))


def gaussian_init(shape: tuple[int, ...], mean: float, std: float):
    """``init(key, n) -> mean + std * N(0, I)`` of shape (n, *shape): the chains' start."""

    def init(key: jax.Array, n: int) -> jax.Array:
        return mean + std * jax.random.normal(key, (n, *shape), jnp.float32)

    return init


def annealed_sampler(energy: Any, example_shape: tuple[int, ...], mdsm_cfg: ml_collections.ConfigDict,
                     sigma0: float) -> Sampler:
    """The paper's sampler: annealed Langevin (ULA, step ``mdsm.step_size``) along the ``mdsm``
    group's schedule from init_mean + init_std * N(0, I), then the denoising jump x - sigma0^2 dE/dx
    if ``mdsm.denoise``. ``energy``: a Partial over parameters."""
    s = mdsm_cfg
    temps = annealing_temperatures(s)
    steps = np.full(temps.shape, s.step_size, np.float32)
    finish = (jax.tree_util.Partial(samplers.denoise_jump, energy, sigma0=float(sigma0)) if s.denoise
              else jax.tree_util.Partial(identity))
    described = {"kind": "annealed langevin", "sigma0": float(sigma0),
                 **{k: s[k] for k in ("schedule", "t_max", "t_min", "n_hot", "n_anneal", "n_cool", "step_size",
                                      "init_mean", "init_std", "denoise")}}
    return Sampler(gaussian_init(tuple(example_shape), float(s.init_mean), float(s.init_std)),
                   (Stage("anneal", energy, samplers.ula, temps, steps),), finish, described)


def build(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...],
          value_range: tuple[float, float] = (0.0, 1.0)) -> Method:
    """The MDSM method for examples of ``example_shape`` (e.g. (8, 8, 1)); the data's
    ``value_range`` plays no part (chains start from mdsm.init_mean + mdsm.init_std N(0, I))."""
    del value_range
    model = models.build_model(cfg.model)
    classes = int(getattr(model, "classes", 0))
    label = settings.sample_label(cfg, classes)
    tx, lr = optim.adam(cfg.train)
    optimizer = optim.per_network({NETWORK: tx})
    sigmas = noise_levels(cfg)
    check_config(cfg.mdsm)
    sigma0 = float(cfg.mdsm.sigma0)
    s = cfg.mdsm

    def network(params):
        return jax.tree_util.Partial(model.apply, params[NETWORK])

    def energy(params, carry=None):
        """E(x): the network's output; for a class-conditional one, -logsumexp_y f(x)[y]."""
        del carry
        return network_energy(network(params), classes)

    def init_params(key):
        return {NETWORK: models.init_params(model, key, example_shape)}

    def loss(params, carry, batch, key, step):
        del step
        x, y = split_labels(batch, classes)
        e = network_energy(network(params), classes, y)
        value = losses.mdsm_loss(e, x, key, sigmas, sigma0)
        return value, (carry, {})

    def probe(params, carry, batch, key):
        # The energy of the data and of the sampler's starting noise; their gap shows learning.
        del carry
        x, _ = split_labels(batch, classes)
        e = energy(params)
        noise = s.init_mean + s.init_std * jax.random.normal(key, x.shape, x.dtype)
        return {"energy_data": jnp.mean(e(x)), "energy_noise": jnp.mean(e(noise))}

    def sampler(params, carry):
        del carry
        # E(x), or one class (-1: every class in turn, samplers.row_labels), along the same annealing.
        return annealed_sampler(network_energy(network(params), classes, label), example_shape, s, sigma0)

    return Method(
        name="mdsm", networks={NETWORK: model}, init_params=init_params, optimizer=optimizer,
        learning_rates={NETWORK: lr}, init_carry=lambda key: (), carry_specs=(), loss=loss, probe=probe,
        energy=energy, sampler=sampler, denoise_sigma=sigma0, temperature=1.0, bounds={},
        identity=models.IDENTITY_FIELDS,
        # Score matching learns each class's score, not its normaliser: f(x) is no classifier, so
        # Method.classifier stays None (eval's classifier section says so) while labels = K.
        labels=classes)

