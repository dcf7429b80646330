"""Temperature schedules for annealed Langevin sampling, as arrays.

The MDSM paper's default (Fig. A7B) has three parts: ``n_hot`` steps at ``t_max``; ``n_anneal``
steps cooling from ``t_max`` to 1, exponentially ("exp") or linearly ("lin"); ``n_cool`` steps
going linearly from 1 to 0, the last of which is plain gradient descent. With sigma0 = 0.1, T = 100
injects noise of size sqrt(T) * sigma0 = 1, enough to move between modes. ``t_min`` < 1 continues
the annealing below T = 1 (sampling exp(-E / T) for T < 1 favours the model's most likely images),
and the cooling then starts from t_min.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ebmjax.errors import ConfigError

KINDS = ("exp", "lin")


def annealing_schedule(
    kind: str = "exp",
    *,
    t_max: float = 100.0,
    n_hot: int = 500,
    n_anneal: int = 2000,
    n_cool: int = 200,
    t_min: float = 1.0,
) -> jax.Array:
    """Temperatures of each step, shape (n_hot + n_anneal + n_cool,), float32.

    "exp": T_k = t_max * exp(-k ln(t_max / t_min) / n_anneal) for k = 0..n_anneal-1.
    "lin": T_k = linspace(t_max, t_min, n_anneal). The cooling part is linspace(t_min, 0, n_cool).
    """
    if kind not in KINDS:
        raise ConfigError(f"annealing_schedule: kind must be one of {KINDS}, got {kind!r}.")
    if min(n_hot, n_anneal, n_cool) < 0 or n_hot + n_anneal + n_cool == 0:
        raise ConfigError(
            "annealing_schedule: step counts must be >= 0 and not all zero, got "
            f"n_hot={n_hot}, n_anneal={n_anneal}, n_cool={n_cool}."
        )
    if not 0.0 < t_min <= t_max:
        raise ConfigError(f"annealing_schedule: need 0 < t_min <= t_max, got t_min={t_min}, t_max={t_max}.")
    hot = np.full(n_hot, t_max)
    if kind == "exp":
        anneal = t_max * np.exp(-np.arange(n_anneal) * np.log(t_max / t_min) / max(n_anneal, 1))
    else:
        anneal = np.linspace(t_max, t_min, n_anneal)
    cool = np.linspace(t_min, 0.0, n_cool)
    return jnp.asarray(np.concatenate([hot, anneal, cool]), dtype=jnp.float32)


def stage_starts(n_stages: int, phase_steps: int) -> tuple[int, ...]:
    """First step of every stage of coarse-to-fine training (CF-EBM): stage 0 trains one phase of
    ``phase_steps`` steps, every later stage two (fading in, then stable), so stage s >= 1 starts at
    (2 s - 1) * phase_steps."""
    if n_stages < 1 or phase_steps < 1:
        raise ConfigError(f"stage_starts: need n_stages >= 1 and phase_steps >= 1, got {n_stages}, {phase_steps}.")
    return (0, *((2 * s - 1) * phase_steps for s in range(1, n_stages)))


def fade_alpha(step: jax.Array, start: int, images_per_step: int, phase_images: int) -> jax.Array:
    """The Expand block's alpha at training step ``step`` of a stage that began at ``start``: the
    images seen in the stage before this step over the images of one phase, capped at 1
    (linear in images seen; 0 at the stage's first step)."""
    seen = (jnp.asarray(step, jnp.float32) - float(start)) * float(images_per_step)
    return jnp.clip(seen / float(phase_images), 0.0, 1.0)


def linear_decay(start: float, n: int) -> np.ndarray:
    """``n`` values decaying linearly from ``start`` to 0 (the last is 0): CF-EBM's cyclic noise."""
    return np.linspace(float(start), 0.0, int(n), dtype=np.float32) if n > 1 else np.zeros(int(n), np.float32)
