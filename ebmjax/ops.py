"""Resolution operators on NHWC images (layer 1): pure, jittable, differentiable.

- :func:`downsample`: block means of ``factor x factor`` pixels (the multigrid method's "down" of
  Gao et al. 2018; CF-EBM's coarse-to-fine stages use the same map).
- :func:`upsample`: pixel replication, each pixel becoming a ``factor x factor`` block (Gao's "up").

They are exact inverses in one direction: ``downsample(upsample(x, f), f) == x`` for every x, bit
for bit (the mean of f*f equal numbers is that number; see :func:`downsample`), while
``upsample(downsample(x, f), f)`` is the projection of x onto images constant on f x f blocks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError

__all__ = ["downsample", "upsample"]


def _check(x: jax.Array, factor: int, name: str) -> None:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ConfigError(f"{name}: factor must be an integer >= 1, got {factor!r}.")
    if jnp.ndim(x) != 4:
        raise ConfigError(f"{name} takes NHWC images (B, H, W, C); got shape {jnp.shape(x)}.")


def downsample(x: jax.Array, factor: int) -> jax.Array:
    """(B, H, W, C) -> (B, H / factor, W / factor, C): the mean of each factor x factor block.

    H and W must be multiples of ``factor`` (a ConfigError says which is not). Computed in at least
    float32 and returned in x's dtype."""
    _check(x, factor, "downsample")
    b, h, w, c = jnp.shape(x)
    if h % factor or w % factor:
        raise ConfigError(f"downsample: the image size {h}x{w} is not divisible by the factor {factor}; "
                          f"height and width must both be multiples of it.")
    if factor == 1:
        return jnp.asarray(x)
    x = jnp.asarray(x)
    acc = jnp.promote_types(x.dtype, jnp.float32)
    blocks = x.astype(acc).reshape(b, h // factor, factor, w // factor, factor, c)
    # The mean as the block's first pixel plus the mean deviation from it: the same number up to
    # rounding, and exactly the pixel's value on a constant block (a plain sum of 9 equal floats,
    # divided by 9, need not give the float back), so downsample(upsample(x, f), f) == x bit for bit.
    first = blocks[:, :, :1, :, :1]
    return (first[:, :, 0, :, 0] + jnp.mean(blocks - first, axis=(2, 4))).astype(x.dtype)


def upsample(x: jax.Array, factor: int) -> jax.Array:
    """(B, H, W, C) -> (B, H * factor, W * factor, C): every pixel repeated over a factor x factor block."""
    _check(x, factor, "upsample")
    x = jnp.asarray(x)
    if factor == 1:
        return x
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)
