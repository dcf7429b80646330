"""Convenience samplers of the MDSM paper: Langevin, annealed Langevin (eq. 8), denoising jump (eq. 9).

All three are pure functions (no jit, no side effects), usable inside a user's own jit or vmap.
For long chains driven from Python with progress and resumption, use ``run_chain_chunked``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError
from ebmjax.samplers.conditioning import clamped
from ebmjax.samplers.driver import run_chain
from ebmjax.samplers.kernels import ArrayLike, EnergyFn, energy_and_grad, per_chain, ula

__all__ = ["langevin", "annealed_langevin", "denoise_jump"]


def langevin(
    energy_fn: EnergyFn,
    x0: jax.Array,
    key: jax.Array,
    *,
    n_steps: int,
    step_size: ArrayLike,
    temperature: ArrayLike = 1.0,
) -> jax.Array:
    """``n_steps`` of unadjusted Langevin at a fixed temperature; returns the final x, shape of x0.

    step_size (eps) and temperature: scalars or one value per chain, shape (B,).
    Update: x <- x - (eps^2/2) dE/dx + eps sqrt(T) z.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ConfigError(f"langevin: n_steps must be an int >= 0, got {n_steps!r}.")
    x0 = jnp.asarray(x0)
    t = jnp.asarray(temperature, jnp.promote_types(x0.dtype, jnp.float32))
    h = jnp.asarray(step_size, t.dtype)
    # Per-chain values get a leading step axis so the driver reads them as (K, B).
    temps = jnp.broadcast_to(t, (n_steps,) + t.shape)
    steps = jnp.broadcast_to(h, (n_steps,) + h.shape)
    state, _ = run_chain(ula, energy_fn, ula.init(x0, energy_fn), key, temperatures=temps, step_sizes=steps)
    return state.position


def annealed_langevin(
    energy_fn: EnergyFn,
    x0: jax.Array,
    key: jax.Array,
    *,
    temperatures: Any,
    step_size: ArrayLike,
    mask: ArrayLike | None = None,
    clamp_noise: ArrayLike = 0.1,
) -> jax.Array:
    """Annealed Langevin (the paper's eq. 8): one ULA step per entry of ``temperatures`` (K,).

    Update at step k: x <- x - (eps^2/2) dE/dx + eps sqrt(T_k) z; eps = ``step_size`` (scalar
    or (K,)); the paper uses eps = 0.02 and ``ebmjax.schedules.annealing_schedule()``.
    Returns the final x (no denoising jump: apply ``denoise_jump`` after, as the paper does).

    Inpainting: ``mask`` broadcasts against x0, 1 = free, 0 = clamped. Clamped entries stay
    exactly at x0. Following the paper, the energy and its gradient are evaluated with the
    clamped entries replaced by x0 + clamp_noise * T_k^(1/4) * z (z fresh each step): the free
    pixels carry temperature-dependent noise, and the clamped ones get noise matched to the
    temperature so the net sees a uniformly noisy image (std sigma0 = clamp_noise at T = 1, none
    at T = 0). See ``conditioning.clamped``.
    """
    x0 = jnp.asarray(x0)
    if mask is None:
        kernel, state = ula, ula.init(x0, energy_fn)
    else:
        kernel = clamped(ula)
        state = kernel.init(x0, energy_fn, mask, clamp_noise)
    state, _ = run_chain(kernel, energy_fn, state, key, temperatures=temperatures, step_sizes=step_size)
    return state.position


def denoise_jump(energy_fn: EnergyFn, x: jax.Array, sigma0: ArrayLike) -> jax.Array:
    """Single-step denoising (the paper's eq. 9): x - sigma0^2 dE/dx, same shape as x.

    sigma0: the training noise level (0.1 for MDSM), a scalar or one value per example (B,).
    For a model of data smoothed with N(0, sigma0^2) noise this is the posterior mean of the
    clean image (Tweedie's formula).
    """
    x = jnp.asarray(x)
    _, g = energy_and_grad(energy_fn, x)
    s = per_chain(sigma0, x, "sigma0")
    return (x - s**2 * g).astype(x.dtype)
