"""The per-grid energy network of the multigrid method (Gao et al., CVPR 2018; Malhotra §IV).

Gao et al. learn one small ConvNet per grid (4x4, 16x16, 64x64): convolutions with LeakyReLU 0.2,
the first one with stride 2, then a dense read-out to one number. :class:`GridEnergy` is that
network for any grid size (1x1 included: 'same' convolutions, and the stride only where the side is
at least ``stride_from``), with the channel counts a config field. Layout, for ``widths`` (c1, ...)::

    layer i: conv k x k (c_i channels; layers i < strided strided 2 while min(H, W) >= stride_from) -> LeakyReLU 0.2
    head:    flatten -> dense -> 1                                                       E(x)
             flatten -> dense -> K    (``classes`` = K > 0)                              logits f(x)

plus, when ``ref_sigma`` is set, the Gaussian reference term |x|^2 / (2 ref_sigma^2) of Malhotra's
eq. 1 (p(x) ∝ exp(f(x)) q(x), q = N(0, ref_sigma^2 I), so E = -f + |x|^2 / (2 ref_sigma^2)). With
``classes`` = K the read-out gives K numbers g(x) and the network returns logits f(x) = -g(x) -
|x|^2 / (2 ref_sigma^2) (the reference in every class), so that E(x, y) = -f(x)[y] (a
class-conditional multigrid, ``ebmjax.samplers.class_energy``).
Weights are Xavier-uniform, biases zero, as the original's.

What differs from the original (ruiqigao/Multigrid_learning): it puts BatchNorm after every
convolution and runs it in training mode even while sampling, so an image's energy depends on the
rest of its batch (real and synthetic batches normalised separately). Here there is no
normalisation at all: an image's energy depends on that image alone, which the Langevin kernels
need (``ebmjax.samplers.kernels``) and which makes sampling, restoration and evaluation independent
of the batch size. A strided layer is a 'same' convolution read (and computed) at every other
pixel. Gao's 4x4 and 16x16 nets stride their first layer only (``strided = 1``), the 64x64 net all
four (``strided = 4``); its first-layer kernels are 5x5 (``kernel`` is one size for every layer
here).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError
from ebmjax.models.conv import Conv


class GridEnergy(nn.Module):
    """One grid's energy: (B, H, W, C) -> (B,) float32, p(x) ∝ exp(-E(x)); any H, W >= 1. With
    ``classes`` = K > 0: logits f(x) (B, K), E(x, y) = -f(x)[y]."""

    widths: tuple[int, ...] = (64, 128)
    kernel: int = 3
    stride_from: int = 4
    strided: int = 1
    ref_sigma: float | None = None
    dtype: Any = jnp.float32
    conv: str = "auto"
    classes: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ConfigError(f"GridEnergy takes NHWC images (B, H, W, C); got shape {x.shape}.")
        init = nn.initializers.xavier_uniform()
        h = x.astype(self.dtype)
        for i, c in enumerate(self.widths):
            stride = 2 if i < self.strided and min(h.shape[1], h.shape[2]) >= self.stride_from else 1
            h = Conv(c, (self.kernel, self.kernel), dtype=self.dtype, kernel_init=init, impl=self.conv,
                     strides=stride, name=f"conv{i}")(h)
            h = nn.leaky_relu(h, 0.2)
        h = h.reshape(h.shape[0], -1).astype(jnp.promote_types(self.dtype, jnp.float32))
        e = nn.Dense(max(self.classes, 1), dtype=h.dtype, kernel_init=init, name="out")(h)
        if self.ref_sigma is not None:
            xf = x.astype(jnp.float32).reshape(x.shape[0], -1)
            e = e + jnp.sum(xf**2, axis=1, keepdims=True) / (2.0 * self.ref_sigma**2)
        return -e if self.classes else e[:, 0]
