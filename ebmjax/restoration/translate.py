"""Unpaired image-to-image translation with an energy of the target domain (CF-EBM, Zhao et al. 2021).

One EBM learns the target domain (the training data); translating a source-domain image is running
that EBM's Langevin chain from the image itself (plus a little noise) rather than from noise. A short
chain keeps what the source and the target share (the layout: a digit's identity, a horse's pose)
and moves what the energy dislikes (stroke weight, texture) towards the target domain.

Two levels, each usable on its own (the CLI mode that writes a workdir is
:mod:`ebmjax.apps.translate`):

- Pure functions of ``(energy_fn, arrays, key)`` (layer 1 style, jittable, no I/O):
  ``translation_start`` (x_source + noise * N(0, I)), ``translate`` (the chains from there) and
  ``translation_schedule`` (a chain's temperatures and step sizes cut or extended to a length).
  Figures of stroke weight: ``ink`` and ``ink_area``.
- ``translate_batches``: ``translate`` over many images in batches sharded over a device mesh, through
  the chain engine (:func:`ebmjax.chains.over_batches`).

Randomness: ``translate`` draws the start noise from fold_in(key, 0) and drives the chain with
fold_in(key, 1).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebmjax import chains, parallel, samplers
from ebmjax.errors import ConfigError
from ebmjax.samplers.kernels import ArrayLike, EnergyFn


__all__ = [
    "TranslateResult",
    "ink",
    "ink_area",
    "mean_energy",
    "translate",
    "translate_batches",
    "translation_schedule",
    "translation_start",
]


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------


class TranslateResult(NamedTuple):
    """translated: (B, ...) the chains' ends. start: (B, ...) their first state, x_source + noise * z.
    energy: (K, B) the energy each chain had at the start of every step (row 0: at ``start``)."""

    translated: Any
    start: Any
    energy: Any


def translation_start(x_source: ArrayLike, key: jax.Array, noise: ArrayLike = 0.0) -> jax.Array:
    """The chains' first state: x_source + noise * N(0, I) (exactly x_source when noise is 0).

    Not clipped: a kernel that clamps to the data's range does so at its first step."""
    x = jnp.asarray(x_source)
    if isinstance(noise, (int, float)) and not noise >= 0:
        raise ConfigError(f"translation noise must be >= 0, got {noise!r}.")
    # x + 0 * z is x bit for bit (z is finite), so noise 0 starts exactly at the source.
    return (x + jnp.asarray(noise, x.dtype) * jax.random.normal(key, x.shape, x.dtype)).astype(x.dtype)


def translate(energy_fn: EnergyFn, kernel: samplers.Kernel, x_source: ArrayLike, key: jax.Array, *,
              temperatures: Any, step_sizes: Any, noise: ArrayLike = 0.0, chunk_size: int | None = None,
              on_chunk: Callable | None = None, unroll_steps: int = 0) -> TranslateResult:
    """Translate x_source (B, H, W, C) with the energy of the target domain.

    The chains start at ``translation_start(x_source, fold_in(key, 0), noise)`` and run one step of
    ``kernel`` (e.g. a method's ``Stage.kernel``: ULA, or the maximum-likelihood Langevin with
    clipping and clamping) per entry of ``temperatures`` (K,) with ``step_sizes`` (scalar or (K,)),
    in the kernels' convention (``ebmjax.samplers.kernels``: x' = x - (eps^2 / 2) dE/dx + eps sqrt(T) z),
    driven by fold_in(key, 1). With K = 0 and noise 0 the result is x_source exactly.

    Without ``chunk_size`` the function is pure: call it inside your own jit, with your own energy.
    With it, the chain runs as jitted chunks calling ``on_chunk(steps_done, state, trace)``
    (progress); pass a ``jax.tree_util.Partial`` energy so the chunks compile once.
    """
    x0 = translation_start(x_source, jax.random.fold_in(key, 0), noise)
    state = kernel.init(x0, energy_fn)
    chain_key = jax.random.fold_in(key, 1)
    if chunk_size is None:
        state, trace = samplers.run_chain(kernel, energy_fn, state, chain_key, temperatures=temperatures,
                                          step_sizes=step_sizes)
    else:
        state, trace = samplers.run_chain_chunked(kernel, energy_fn, state, chain_key, temperatures=temperatures,
                                                  step_sizes=step_sizes, chunk_size=chunk_size, on_chunk=on_chunk,
                                                  unroll_steps=unroll_steps)
    return TranslateResult(state.position, x0, trace.record.energy)


def translation_schedule(temperatures: ArrayLike, step_sizes: ArrayLike,
                         steps: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A chain's schedule ((K,) temperatures, scalar or (K,) step sizes) at length ``steps``: both (steps,)
    float32. 0 keeps the chain's own length K; k <= K takes its LAST k steps (for an annealed schedule
    the coldest end, which keeps the source's layout); k > K puts k - K copies of its first step in
    front (a constant schedule simply gets longer)."""
    t = np.asarray(temperatures, np.float32).reshape(-1)
    h = np.broadcast_to(np.asarray(step_sizes, np.float32), t.shape).copy()
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ConfigError(f"translation steps must be an integer >= 0 (0: the chain's own {len(t)}), got {steps!r}.")
    steps = int(steps)
    if steps == 0:
        return t, h
    if len(t) == 0:
        raise ConfigError("The method's last chain has no steps, so it cannot be lengthened; set translate.steps=0.")
    if steps <= len(t):
        return t[len(t) - steps:], h[len(h) - steps:]
    extra = steps - len(t)
    return np.concatenate([np.full(extra, t[0]), t]), np.concatenate([np.full(extra, h[0]), h])


def ink(images: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Stroke weight as the mean grey level, rescaled to [0, 1] from ``value_range`` (images clipped to it)."""
    lo, hi = value_range
    x = np.clip(np.asarray(images, np.float64), lo, hi)
    return float(((x - lo) / (hi - lo)).mean())


def ink_area(images: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Stroke weight as the share of pixel values above the middle of ``value_range``."""
    lo, hi = value_range
    return float((np.asarray(images) > 0.5 * (lo + hi)).mean())


# ---------------------------------------------------------------------------------------------
# Many images
# ---------------------------------------------------------------------------------------------


def translate_batches(energy_fn: EnergyFn, kernel: samplers.Kernel, x_source: np.ndarray, key: jax.Array, *,
                      temperatures: Any, step_sizes: Any, noise: float = 0.0, finish: Callable | None = None,
                      batch_size: int = 256, chunk_size: int = 100, unroll_steps: int = 0, mesh: Any = None,
                      progress: bool = True) -> TranslateResult:
    """``translate`` over n images (n, H, W, C) in batches sharded over ``mesh`` (default: every
    device), then ``finish`` (jittable; e.g. a method's ``Sampler.finish``) on the chains' ends.
    Batch b uses fold_in(key, b). Returns numpy arrays: translated and start (n, ...), energy (K, n)."""

    x_source = np.asarray(x_source, np.float32)
    temperatures, step_sizes = jnp.asarray(temperatures), jnp.asarray(step_sizes)
    mesh = mesh or parallel.make_mesh()
    energy = samplers.as_partial(energy_fn)
    fin = None if finish is None else samplers.as_partial(finish)

    def run_one(x, k, tick):
        res = translate(energy, kernel, x, k, temperatures=temperatures, step_sizes=step_sizes, noise=noise,
                        chunk_size=chunk_size, on_chunk=tick, unroll_steps=unroll_steps)
        return res if fin is None else res._replace(translated=samplers.apply(fin, res.translated))

    return chains.over_batches(run_one, (x_source,), key, batch_size=batch_size, mesh=mesh,
                               n_steps=len(temperatures), progress=progress, desc="translate", batch_axes=(0, 0, 1))


def mean_energy(energy_fn: EnergyFn, images: np.ndarray, batch_size: int = 256) -> float:
    """The mean energy of ``images`` (n, ...), computed ``batch_size`` at a time (nan for n = 0)."""
    if len(images) == 0:
        return float("nan")
    energy = samplers.as_partial(energy_fn)
    values = [np.asarray(samplers.apply(energy, jnp.asarray(images[i:i + batch_size])))
              for i in range(0, len(images), batch_size)]
    return float(np.concatenate(values).mean())
