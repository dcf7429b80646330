"""A denoiser's residual as an energy: E(x) = |x - U(x)|^2 / (2 s^2), U a small U-Net.

Salimans and Ho ("Should EBMs model the energy or the score?", 2021) found that an energy written
as the squared residual of an image-to-image network learns as well as a score network of the same
size, where a scalar read-out at the end of an encoder (the MDSM ResNet's head) has to carry every
pixel's gradient through one number. With ``s`` the width of MDSM's fixed kernel (``mdsm.sigma0``,
0.1), the loss's optimum -sigma0^2 dE/dx(x~) = E[x | x~] - x~ is met, where U's Jacobian is small,
by U(x~) = E[x | x~]: U is a denoiser, and the energy is how far an image is from its denoised self.
Far from the data U stays bounded while |x|^2 grows, so the energy confines the chains.

Layout, for ``widths`` (c1, ..., cL)::

    down, level l = 1..L:  [2x2 mean pool if l > 1] conv3x3 -> swish -> conv3x3 -> swish   (c_l)
    up,   level l = L-1..1: 2x upsample (nearest), concat the down path's level l,
                            conv3x3 -> swish -> conv3x3 -> swish                            (c_l)
                            (the first conv computed without the up-sampled copy: UpConcatConv)
    out:  conv1x1 -> C channels, initialised to zero (U = 0 at the start: E = |x|^2 / 2 s^2)

Smooth activations throughout (the MDSM loss differentiates the energy's input gradient) and no
normalisation, so an image's energy depends on that image alone. Images NHWC whose sides are
divisible by 2^(L-1) -> energies (B,).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError
from ebmjax.models.conv import Conv, conv_same, conv_same_upsampled
from ebmjax.models.convnet import conv_act, conv_pair, swish
from ebmjax.models.resnet import mean_pool_2x2, torch_uniform_init


class UpConcatConv(nn.Module):
    """The first convolution of a U-Net's up level: 3x3 'same' of concat([upsample(low, 2), skip]),
    with the parameters ``nn.Conv`` would have over that concatenation (``kernel`` (3, 3, C_low +
    C_skip, features), ``bias``; PyTorch's initialisation), computed without building it: the
    up-sampled part as :func:`ebmjax.models.conv.conv_same_upsampled` on the low-resolution map, the
    skip part as a plain convolution. (B, H, W, C_low), (B, 2H, 2W, C_skip) -> (B, 2H, 2W, features).
    """

    features: int
    dtype: Any = jnp.float32
    impl: str = "auto"

    @nn.compact
    def __call__(self, low: jax.Array, skip: jax.Array) -> jax.Array:
        c_low, c_in = low.shape[-1], low.shape[-1] + skip.shape[-1]
        init = torch_uniform_init(c_in * 9)
        kernel = self.param("kernel", init, (3, 3, c_in, self.features), jnp.float32).astype(self.dtype)
        bias = self.param("bias", init, (self.features,), jnp.float32).astype(self.dtype)
        return (conv_same_upsampled(low.astype(self.dtype), kernel[:, :, :c_low], self.impl)
                + conv_same(skip.astype(self.dtype), kernel[:, :, c_low:], self.impl) + bias)


class UNetEnergy(nn.Module):
    """E(x) = |x - U(x)|^2 / (2 scale^2): (B, H, W, C) -> (B,) float32."""

    widths: tuple[int, ...] = (16, 32, 64)
    scale: float = 0.1
    dtype: Any = jnp.float32
    conv: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ConfigError(f"UNetEnergy takes NHWC images (B, H, W, C); got shape {x.shape}.")
        factor = 2 ** (len(self.widths) - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ConfigError(f"the unet halves the image size {len(self.widths) - 1} times, so height and width "
                              f"must be multiples of {factor}; got {x.shape[1]}x{x.shape[2]} (set data.pad, or "
                              f"fewer model.widths).")
        if not self.scale > 0:
            raise ConfigError(f"model.scale must be > 0 (the residual's width), got {self.scale!r}.")
        h = x.astype(self.dtype)
        skips = []
        for i, c in enumerate(self.widths):
            if i:
                h = mean_pool_2x2(h)
            h = conv_pair(h, c, swish, dtype=self.dtype, impl=self.conv, name=f"down{i}")
            skips.append(h)
        for i in range(len(self.widths) - 2, -1, -1):
            h = swish(UpConcatConv(self.widths[i], dtype=self.dtype, impl=self.conv, name=f"up{i}_0")(h, skips[i]))
            h = conv_act(h, self.widths[i], swish, dtype=self.dtype, impl=self.conv, name=f"up{i}_1")
        u = Conv(x.shape[-1], (1, 1), dtype=self.dtype, kernel_init=nn.initializers.zeros,
                 bias_init=nn.initializers.zeros, impl=self.conv, name="out")(h)
        r = (x.astype(jnp.float32) - u.astype(jnp.float32)).reshape(x.shape[0], -1)
        return jnp.sum(r**2, axis=1) / (2.0 * self.scale**2)
