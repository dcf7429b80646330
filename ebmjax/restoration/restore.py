"""Restoration with a trained energy: inpainting and denoising (MDSM paper Sec. 4.3; CF-EBM).

Two levels, each usable on its own (the CLI modes that write a workdir are
:mod:`ebmjax.apps.restore`):

- Pure helpers on arrays: masks (``center_box_mask``, ``random_pixel_mask``, ``half_mask``,
  ``make_mask``), corruption (``mask_out``, ``add_noise``) and ``psnr``.
- Restorers of one batch, ``inpaint`` and ``denoise``: functions of ``(energy_fn, arrays, key)``
  built on ``ebmjax.samplers``; pure (usable inside a user's jit) unless ``chunk_size`` asks for
  the chunked driver with a progress callback.
- ``inpaint_batches`` / ``denoise_batches`` restore many images in batches sharded over a device
  mesh, through the chain engine (:func:`ebmjax.chains.over_batches`).

Mask convention, as in ``ebmjax.samplers.clamped``: 1 = free (to be restored), 0 = known.
Images are NHWC in [0, 1].
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebmjax import chains, parallel, samplers
from ebmjax.errors import ConfigError
from ebmjax.samplers.kernels import ArrayLike, EnergyFn

MASKS: tuple[str, ...] = ("center", "random", "half")
HALF_SIDES: tuple[str, ...] = ("top", "bottom", "left", "right")

__all__ = [
    "DenoiseResult",
    "HALF_SIDES",
    "InpaintResult",
    "MASKS",
    "add_noise",
    "center_box_mask",
    "denoise",
    "denoise_batches",
    "denoise_temperatures",
    "half_mask",
    "inpaint",
    "inpaint_batches",
    "make_mask",
    "mask_out",
    "psnr",
    "random_pixel_mask",
]


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def check_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name} must be a number strictly between 0 and 1, got {value!r}.")
    return float(value)


def image_dims(shape: Sequence[int]) -> tuple[tuple[int, ...], int, int]:
    """(leading dims, H, W) of an image shape (..., H, W, C)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 3:
        raise ConfigError(
            f"Restoration needs images of shape (..., H, W, C); got shape {shape}. "
            "2-D points (toy data) have no pixels to mask: use an image dataset."
        )
    return shape[:-3], shape[-3], shape[-2]


def _round_half_up(v: float) -> int:
    # Python's round() goes to even on .5; a mask size should not depend on that.
    return int(math.floor(v + 0.5))


def center_box_mask(shape: Sequence[int], fraction: float = 0.5) -> jax.Array:
    """Free central box: mask (..., H, W, 1) float32 for images of shape (..., H, W, C).

    The box is h x w = round(fraction * H) x round(fraction * W) pixels (at least 1), with its
    top-left corner at ((H - h) // 2, (W - w) // 2); ``fraction`` is per side, in (0, 1), so
    0.5 frees a quarter of the pixels.
    """
    f = check_fraction(fraction, "box fraction")
    lead, h_img, w_img = image_dims(shape)
    h = min(h_img, max(1, _round_half_up(f * h_img)))
    w = min(w_img, max(1, _round_half_up(f * w_img)))
    top, left = (h_img - h) // 2, (w_img - w) // 2
    m = np.zeros((h_img, w_img, 1), np.float32)
    m[top:top + h, left:left + w] = 1.0
    return jnp.broadcast_to(jnp.asarray(m), lead + m.shape)


def random_pixel_mask(key_or_rng: Any, shape: Sequence[int], fraction: float = 0.5) -> jax.Array:
    """Free random pixels: mask (..., H, W, 1) float32, exactly round(fraction * H * W) free
    pixels (at least 1) per image, a different pattern for every image of the leading dims.

    ``key_or_rng``: a JAX PRNG key (the mask is then a traceable function of it) or a
    ``numpy.random.Generator``. All channels of a pixel share its mask entry.
    """
    f = check_fraction(fraction, "mask fraction")
    lead, h, w = image_dims(shape)
    k = max(1, _round_half_up(f * h * w))
    if isinstance(key_or_rng, np.random.Generator):
        u = jnp.asarray(key_or_rng.random(lead + (h * w,)), jnp.float32)
    else:
        u = jax.random.uniform(key_or_rng, lead + (h * w,))
    # The k pixels with the smallest uniforms: exactly k free, uniformly over the k-subsets.
    rank = jnp.argsort(jnp.argsort(u, axis=-1), axis=-1)
    return (rank < k).astype(jnp.float32).reshape(lead + (h, w, 1))


def half_mask(shape: Sequence[int], side: str = "bottom") -> jax.Array:
    """Free half image: mask (..., H, W, 1) float32 with ``side`` ("top" | "bottom" | "left" |
    "right") free. Top is rows [0, H // 2), bottom rows [H // 2, H) (left/right likewise in
    columns), so opposite sides are complementary for any H, W."""
    if side not in HALF_SIDES:
        raise ConfigError(f"Unknown half-mask side {side!r}; choose one of {', '.join(HALF_SIDES)}.")
    lead, h, w = image_dims(shape)
    m = np.zeros((h, w, 1), np.float32)
    if side == "top":
        m[: h // 2] = 1.0
    elif side == "bottom":
        m[h // 2:] = 1.0
    elif side == "left":
        m[:, : w // 2] = 1.0
    else:
        m[:, w // 2:] = 1.0
    return jnp.broadcast_to(jnp.asarray(m), lead + m.shape)


def make_mask(name: str, shape: Sequence[int], key_or_rng: Any = None, *, box_fraction: float = 0.5,
              mask_fraction: float = 0.5, half_side: str = "bottom") -> jax.Array:
    """The mask called ``name`` ("center" | "random" | "half") for images (..., H, W, C):
    (..., H, W, 1) float32, 1 = free. ``key_or_rng`` is needed by "random" only."""
    if name == "center":
        return center_box_mask(shape, box_fraction)
    if name == "random":
        if key_or_rng is None:
            raise ConfigError("A random mask needs a JAX key or a numpy Generator.")
        return random_pixel_mask(key_or_rng, shape, mask_fraction)
    if name == "half":
        return half_mask(shape, half_side)
    raise ConfigError(f"Unknown mask {name!r}; choose one of {', '.join(MASKS)} (--config.restore.mask).")


# ---------------------------------------------------------------------------------------------
# Corruption and the metric
# ---------------------------------------------------------------------------------------------


def mask_out(x: ArrayLike, mask: ArrayLike, fill: float = 0.5) -> jax.Array:
    """The corrupted input of inpainting: x with free entries (mask >= 0.5) set to ``fill``."""
    x = jnp.asarray(x)
    return jnp.where(jnp.asarray(mask) >= 0.5, jnp.asarray(fill, x.dtype), x)


def add_noise(key: jax.Array, x: ArrayLike, sigma: ArrayLike) -> jax.Array:
    """x + sigma * N(0, I), not clipped (the noise model the denoising jump assumes)."""
    x = jnp.asarray(x)
    if isinstance(sigma, (int, float)) and not sigma >= 0:
        raise ConfigError(f"noise sigma must be >= 0, got {sigma!r}.")
    return (x + sigma * jax.random.normal(key, x.shape, x.dtype)).astype(x.dtype)


def psnr(x: ArrayLike, y: ArrayLike, data_range: float = 1.0, mask: ArrayLike | None = None) -> jax.Array:
    """Peak signal-to-noise ratio per image, (B,) in dB: 10 log10(data_range^2 / MSE).

    x: (B, ...) estimate; y: (B, ...) reference, both in [0, data_range]. x is clipped to
    [0, data_range] first: images are shown and stored in that range, so values outside it are
    an artefact of the sampler, not a restoration (the noisy input of denoising gets the same
    treatment, so comparisons stay fair). mask: optional, broadcastable to x; the MSE then averages
    only entries with mask >= 0.5 (e.g. the inpainted region). An MSE of 0 gives +inf.
    """
    x = jnp.clip(jnp.asarray(x, jnp.float32), 0.0, data_range)
    y = jnp.asarray(y, jnp.float32)
    if x.shape != y.shape or x.ndim < 1:
        raise ConfigError(f"psnr needs two batches of the same shape (B, ...); got {x.shape} and {y.shape}.")
    axes = tuple(range(1, x.ndim))
    sq = (x - y) ** 2
    if mask is None:
        mse = jnp.mean(sq, axis=axes)
    else:
        w = jnp.broadcast_to(jnp.asarray(mask) >= 0.5, x.shape).astype(jnp.float32)
        mse = jnp.sum(sq * w, axis=axes) / jnp.sum(w, axis=axes)
    return 10.0 * jnp.log10(data_range**2 / mse)


# ---------------------------------------------------------------------------------------------
# Restorers of one batch
# ---------------------------------------------------------------------------------------------


class InpaintResult(NamedTuple):
    """restored: (B, ...) chain end after the denoising jump on free entries; known entries equal
    x_true exactly. chain: (B, ...) chain end before the jump. energy: (K, B) energy each chain
    saw at the start of every step (clamped entries noised as that step's temperature asks)."""

    restored: Any
    chain: Any
    energy: Any


class DenoiseResult(NamedTuple):
    """jump: (B, ...) x_noisy - sigma0^2 dE/dx (single-step denoising), or None. langevin: (B, ...)
    the end of Langevin started from x_noisy (then the jump, if asked). energy: (K, B) the chain's
    energy (the posterior energy when the chain runs on it)."""

    jump: Any
    langevin: Any
    energy: Any


@jax.jit
def _jump_where(energy_fn: jax.tree_util.Partial, x: jax.Array, keep: jax.Array, free: jax.Array,
                sigma0: jax.Array) -> jax.Array:
    """The denoising jump of x on free entries, ``keep`` elsewhere."""
    return jnp.where(free, samplers.denoise_jump(energy_fn, x, sigma0), keep)


def _run(kernel: samplers.Kernel, energy_fn: EnergyFn, state: Any, key: jax.Array, temperatures: Any,
         step_size: ArrayLike, chunk_size: int | None, on_chunk: Callable | None,
         unroll_steps: int = 0) -> tuple[Any, Any]:
    if chunk_size is None:
        return samplers.run_chain(kernel, energy_fn, state, key, temperatures=temperatures, step_sizes=step_size)
    return samplers.run_chain_chunked(kernel, energy_fn, state, key, temperatures=temperatures,
                                      step_sizes=step_size, chunk_size=chunk_size, on_chunk=on_chunk,
                                      unroll_steps=unroll_steps)


def inpaint(energy_fn: EnergyFn, x_true: ArrayLike, mask: ArrayLike, key: jax.Array, *, temperatures: Any,
            step_size: ArrayLike, clamp_noise: ArrayLike = 0.1, sigma0: ArrayLike = 0.1,
            init_mean: float = 0.5, init_std: float = 1.0, final_jump: bool = True,
            kernel: samplers.Kernel = samplers.ula, start: Callable | None = None,
            chunk_size: int | None = None, on_chunk: Callable | None = None,
            unroll_steps: int = 0) -> InpaintResult:
    """Fill the free entries (mask >= 0.5) of x_true (B, H, W, C) by annealed Langevin.

    Free entries start from the unconditional sampler's start distribution: ``start(key, B)``
    (a method's ``Sampler.init``) or, by default, init_mean + init_std * N(0, 1) (the paper's
    0.5 + N(0, 1)): the chain then treats the hole exactly as unconditional sampling treats a whole
    image, and the start carries no trace of the fill value used for display. Known entries are
    clamped with the paper's convention (``samplers.clamped(kernel)``: evaluated with noise of std
    clamp_noise * T^(1/4), never moved). The chain runs one step of ``kernel`` (ULA by default; a
    method's own, e.g. with clipping and clamping) per entry of ``temperatures`` (K,) with step
    ``step_size`` (eps), then, if ``final_jump``, the denoising jump x - sigma0^2 dE/dx is applied to
    the free entries only, so known entries come back exactly equal to x_true.

    mask broadcasts against x_true ((H, W, 1), (B, H, W, 1), ...). Randomness: fold_in(key, 0)
    draws the start, fold_in(key, 1) drives the chain. With ``chunk_size`` the chain runs as
    jitted chunks calling ``on_chunk(steps_done, state, trace)`` (progress); without it the whole
    function is pure and jittable.
    """
    x_true = jnp.asarray(x_true)
    m = jnp.asarray(mask)
    try:
        free = jnp.broadcast_to(m >= 0.5, x_true.shape)
    except ValueError:
        raise ConfigError(f"inpaint: mask of shape {m.shape} does not broadcast against images of shape "
                          f"{x_true.shape}.") from None
    if start is None:
        fill = init_mean + init_std * jax.random.normal(jax.random.fold_in(key, 0), x_true.shape, x_true.dtype)
    else:
        fill = jnp.asarray(start(jax.random.fold_in(key, 0), x_true.shape[0])).reshape(x_true.shape)
    x0 = jnp.where(free, fill, x_true).astype(x_true.dtype)
    kernel = samplers.clamped(kernel)
    state = kernel.init(x0, energy_fn, free, clamp_noise)
    state, trace = _run(kernel, energy_fn, state, jax.random.fold_in(key, 1), temperatures, step_size,
                        chunk_size, on_chunk, unroll_steps)
    chain = state.position
    restored = _jump_where(samplers.as_partial(energy_fn), chain, x_true, free, jnp.asarray(sigma0)) if final_jump \
        else chain
    return InpaintResult(restored, chain, trace.record.energy)


def _posterior_energy(energy_fn: EnergyFn, y: jax.Array, noise_sigma: jax.Array, model_temperature: jax.Array,
                      x: jax.Array) -> jax.Array:
    """E(x) + T_m |x - y|^2 / (2 s^2): T_m times the energy of p(x | y) for y = x + N(0, s^2 I)."""
    d2 = jnp.sum(((x - y) / noise_sigma).reshape(x.shape[0], -1) ** 2, axis=1)
    return energy_fn(x) + 0.5 * model_temperature * d2


def posterior_energy(energy_fn: EnergyFn, y: ArrayLike, noise_sigma: ArrayLike,
                     model_temperature: ArrayLike = 1.0) -> jax.tree_util.Partial:
    """The energy of the posterior of clean images given noisy ones y (B, ...) with Gaussian noise of
    std ``noise_sigma``, for a model density exp(-E / T_m): E(x) + T_m |x - y|^2 / (2 noise_sigma^2)
    (the posterior is exp(-that / T_m)), as a Partial (parameters stay arguments)."""
    return jax.tree_util.Partial(_posterior_energy, samplers.as_partial(energy_fn), jnp.asarray(y), jnp.asarray(noise_sigma),
                                 jnp.asarray(model_temperature))


def denoise(energy_fn: EnergyFn, x_noisy: ArrayLike, key: jax.Array, *, sigma0: ArrayLike | None,
            temperatures: Any, step_size: ArrayLike, noise_sigma: ArrayLike | None = None,
            model_temperature: ArrayLike = 1.0, final_jump: bool = False,
            chunk_size: int | None = None, on_chunk: Callable | None = None,
            unroll_steps: int = 0) -> DenoiseResult:
    """Denoise x_noisy (B, ...) two ways.

    jump: the single-step denoising x - sigma0^2 dE/dx (Tweedie's posterior mean for a model of
    data smoothed by N(0, sigma0^2)); None when ``sigma0`` is None (a method without a smoothed
    density). langevin: ULA started from x_noisy itself, one step per entry of ``temperatures``
    (K,), on the posterior energy E(x) + |x - y|^2 / (2 noise_sigma^2) when ``noise_sigma`` is
    given, T_m = ``model_temperature`` the temperature of the model's density exp(-E / T_m) (the
    chain then keeps what the noisy image says; with temperatures falling to 0 it ends near the
    posterior mode), on E alone otherwise (as CF-EBM does: use few, cold steps, or the
    chain forgets the input); then the jump if ``final_jump``. ``chunk_size``/``on_chunk`` as in
    ``inpaint``; the key drives the chain.
    """
    x_noisy = jnp.asarray(x_noisy)
    energy = samplers.as_partial(energy_fn)
    every = jnp.ones((), bool)
    jump = None if sigma0 is None else _jump_where(energy, x_noisy, x_noisy, every, jnp.asarray(sigma0))
    chain_energy = energy if noise_sigma is None else posterior_energy(energy, x_noisy, noise_sigma,
                                                                        model_temperature)
    state, trace = _run(samplers.ula, chain_energy, samplers.ula.init(x_noisy, chain_energy), key, temperatures,
                        step_size, chunk_size, on_chunk, unroll_steps)
    x = state.position
    if final_jump and sigma0 is not None:
        x = _jump_where(energy, x, x, every, jnp.asarray(sigma0))
    return DenoiseResult(jump, x, trace.record.energy)


def denoise_temperatures(t_start: float, steps: int) -> jax.Array:
    """The denoising chain's schedule, (steps,) float32: linear from t_start down to 0 (the last
    step is plain gradient descent, as at the end of the sampling schedule)."""
    return jnp.linspace(t_start, 0.0, steps, dtype=jnp.float32)


# ---------------------------------------------------------------------------------------------
# Many images, sharded over a mesh
# ---------------------------------------------------------------------------------------------


def inpaint_batches(energy_fn: EnergyFn, x_true: np.ndarray, mask: np.ndarray, key: jax.Array, *,
                    temperatures: Any, step_size: float, clamp_noise: float = 0.1, sigma0: float = 0.1,
                    init_mean: float = 0.5, init_std: float = 1.0, final_jump: bool = True,
                    kernel: samplers.Kernel = samplers.ula, start: Callable | None = None,
                    batch_size: int = 256, chunk_size: int = 100, unroll_steps: int = 0, mesh: Any = None,
                    progress: bool = True) -> InpaintResult:
    """``inpaint`` over n images (n, H, W, C) in batches sharded over ``mesh`` (default: all
    devices); mask (n, H, W, 1) or broadcastable to it. Returns numpy arrays: restored and chain
    (n, H, W, C), energy (K, n). Pass ``jax.tree_util.Partial(apply, params)`` as ``energy_fn``
    so the chunks compile once."""
    x_true = np.asarray(x_true, np.float32)
    mask = np.asarray(mask, np.float32)
    mask = np.broadcast_to(mask, x_true.shape[:-1] + mask.shape[-1:])
    temperatures = jnp.asarray(temperatures)
    mesh = mesh or parallel.make_mesh()

    def run_one(x, m, k, tick):
        return inpaint(energy_fn, x, m, k, temperatures=temperatures, step_size=step_size,
                       clamp_noise=clamp_noise, sigma0=sigma0, init_mean=init_mean, init_std=init_std,
                       final_jump=final_jump, kernel=kernel, start=start, chunk_size=chunk_size, on_chunk=tick,
                       unroll_steps=unroll_steps)

    return chains.over_batches(run_one, (x_true, mask), key, batch_size=batch_size, mesh=mesh,
                               n_steps=len(temperatures), progress=progress, desc="inpaint", batch_axes=(0, 0, 1))


def denoise_batches(energy_fn: EnergyFn, x_noisy: np.ndarray, key: jax.Array, *, sigma0: float | None,
                    temperatures: Any, step_size: float, noise_sigma: float | None = None,
                    model_temperature: float = 1.0, final_jump: bool = False,
                    batch_size: int = 256, chunk_size: int = 100, unroll_steps: int = 0, mesh: Any = None,
                    progress: bool = True) -> DenoiseResult:
    """``denoise`` over n images (n, H, W, C) in batches sharded over ``mesh``; numpy results (the
    jump is a zero array when ``sigma0`` is None)."""
    x_noisy = np.asarray(x_noisy, np.float32)
    temperatures = jnp.asarray(temperatures)
    mesh = mesh or parallel.make_mesh()

    def run_one(x, k, tick):
        res = denoise(energy_fn, x, k, sigma0=sigma0, temperatures=temperatures, step_size=step_size,
                      noise_sigma=noise_sigma, model_temperature=model_temperature, final_jump=final_jump,
                      chunk_size=chunk_size, on_chunk=tick, unroll_steps=unroll_steps)
        return res if res.jump is not None else res._replace(jump=jnp.zeros_like(res.langevin))

    return chains.over_batches(run_one, (x_noisy,), key, batch_size=batch_size, mesh=mesh,
                               n_steps=len(temperatures), progress=progress, desc="denoise", batch_axes=(0, 0, 1))
