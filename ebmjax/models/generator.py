"""Generators that propose images for an energy's Langevin chains.

- :class:`DilatedGenerator`: Malhotra's generator (§III.F, after Yu and Koltun's dilated-convolution
  context module), image in, image of the same shape out. Layout::

      conv3x3 (width) -> act -> conv3x3 dilation 2 (width) -> act
      -> six parallel conv3x3 branches, dilation rates ``rates`` (branch_width each) -> act
      -> concatenate -> 1x1 conv (C_in channels) -> ReLU

  "same" padding throughout, so every feature map keeps the input's height and width and the output
  is non-negative (the seed's output is a density map). The seed states neither the dilation rates
  nor the widths; the defaults ``rates = (1, 2, 4, 6, 12, 18)`` take the rates 1, 6, 12, 18 of the
  design the seed borrows (the DeepLab-style pyramid of REFERENCE §4, which adds 24 and a global-pool
  branch) and fill the six branches with 2 and 4 (rates useful on small images; on an 8x8 image a
  rate >= 8 only sees the centre tap). ``width = 32``, ``branch_width = 16``: small, as the seed asks
  ("low number of parameters"); not from the seed. Any size and channel count works.

- :class:`LatentGenerator`: CoopNets' generator (Xie et al.; REFERENCE §4), z -> image, sized by the
  output shape: a dense layer to a (H / 2^n) x (W / 2^n) x widths[0] map, then n stride-2
  transposed convolutions (widths[1:], then the image's channels), LeakyReLU 0.2 between, and an
  output map onto the data's range (``tanh`` as CoopNets, scaled to ``value_range``; or ``linear``).
  CIFAR-10 with ``widths = (256, 128, 64)``: 256@4 -> 128@8 -> 64@16 -> 3@32, as the original.
  Difference: the original has BatchNorm after every transposed convolution; here there is none by
  default (``norm = "layer"`` offers a batch-independent LayerNorm), so an image does not depend on
  the rest of its batch and no batch statistics have to be carried. ``widths = ()`` gives a linear
  map z -> x (any example shape), a generator whose optimum is known, for tests.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError

DILATION_RATES = (1, 2, 4, 6, 12, 18)
OUTPUTS = ("tanh", "linear")
NORMS = ("none", "layer")


class DilatedGenerator(nn.Module):
    """Malhotra's dilated-convolution generator: (B, H, W, C) -> (B, H, W, C), values >= 0."""

    rates: tuple[int, ...] = DILATION_RATES
    width: int = 32
    branch_width: int = 16
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ConfigError(f"DilatedGenerator takes NHWC images (B, H, W, C); got shape {x.shape}.")
        if not self.rates or any(int(r) < 1 for r in self.rates):
            raise ConfigError(f"DilatedGenerator: rates must be dilation rates >= 1, got {self.rates!r}.")
        act = nn.relu
        h = x.astype(self.dtype)
        h = act(nn.Conv(self.width, (3, 3), padding="SAME", dtype=self.dtype, name="conv0")(h))
        h = act(nn.Conv(self.width, (3, 3), kernel_dilation=(2, 2), padding="SAME", dtype=self.dtype,
                        name="conv1_dilated2")(h))
        branches = [act(nn.Conv(self.branch_width, (3, 3), kernel_dilation=(int(r), int(r)), padding="SAME",
                                dtype=self.dtype, name=f"branch{i}_rate{int(r)}")(h))
                    for i, r in enumerate(self.rates)]
        h = jnp.concatenate(branches, axis=-1)
        out = nn.Conv(x.shape[-1], (1, 1), dtype=self.dtype, name="out_1x1")(h)
        return nn.relu(out).astype(x.dtype)


class LatentGenerator(nn.Module):
    """CoopNets' latent generator: z (B, latent_dim) -> x (B, *out_shape) in ``value_range``."""

    out_shape: tuple[int, ...]
    widths: tuple[int, ...] = (256, 128, 64)
    kernel: int = 4
    output: str = "tanh"
    value_range: tuple[float, float] = (-1.0, 1.0)
    norm: str = "none"
    dtype: Any = jnp.float32

    def _to_range(self, h: jax.Array) -> jax.Array:
        if self.output not in OUTPUTS:
            raise ConfigError(f"LatentGenerator: output must be one of {', '.join(OUTPUTS)}, got {self.output!r}.")
        if self.output == "linear":
            return h
        lo, hi = self.value_range
        return 0.5 * (lo + hi) + 0.5 * (hi - lo) * jnp.tanh(h)

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        if z.ndim != 2:
            raise ConfigError(f"LatentGenerator takes latent vectors (B, latent_dim); got shape {z.shape}.")
        if self.norm not in NORMS:
            raise ConfigError(f"LatentGenerator: norm must be one of {', '.join(NORMS)}, got {self.norm!r}.")
        shape = tuple(int(d) for d in self.out_shape)
        b = z.shape[0]
        h = z.astype(self.dtype)
        if not self.widths:  # linear: x = A z + c
            out = nn.Dense(math.prod(shape), dtype=jnp.float32, name="out")(h.astype(jnp.float32))
            return self._to_range(out).reshape((b, *shape))
        if len(shape) != 3:
            raise ConfigError(f"LatentGenerator with widths {self.widths} makes NHWC images; the data's example "
                              f"shape is {shape}. Use widths=() (linear) for vectors.")
        n_up = len(self.widths)
        side_h, side_w = shape[0] // 2**n_up, shape[1] // 2**n_up
        if side_h * 2**n_up != shape[0] or side_w * 2**n_up != shape[1] or side_h < 1:
            raise ConfigError(f"LatentGenerator doubles its map {n_up} times (one per entry of widths), so the image "
                              f"sides must be multiples of {2**n_up}; got {shape[0]}x{shape[1]}.")
        act = lambda v: nn.leaky_relu(v, 0.2)  # noqa: E731
        h = nn.Dense(side_h * side_w * self.widths[0], dtype=self.dtype, name="dense")(h)
        h = h.reshape(b, side_h, side_w, self.widths[0])
        if self.norm == "layer":
            h = nn.LayerNorm(dtype=self.dtype, name="norm0")(h)
        h = act(h)
        k = (int(self.kernel), int(self.kernel))
        for i, c in enumerate((*self.widths[1:], shape[-1])):
            last = i == n_up - 1
            h = nn.ConvTranspose(c, k, strides=(2, 2), padding="SAME", dtype=jnp.float32 if last else self.dtype,
                                 name=f"deconv{i}")(h.astype(jnp.float32) if last else h)
            if not last:
                if self.norm == "layer":
                    h = nn.LayerNorm(dtype=self.dtype, name=f"norm{i + 1}")(h)
                h = act(h)
        return self._to_range(h.astype(jnp.float32))
