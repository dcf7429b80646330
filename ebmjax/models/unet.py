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

from ebmjax import ops
from ebmjax.errors import ConfigError
from ebmjax.models.conv import Conv
from ebmjax.models.convnet import conv_pair
from ebmjax.models.resnet import mean_pool_2x2


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
            h = conv_pair(h, c, nn.swish, dtype=self.dtype, impl=self.conv, name=f"down{i}")
            skips.append(h)
        for i in range(len(self.widths) - 2, -1, -1):
            h = jnp.concatenate([ops.upsample(h, 2), skips[i]], axis=-1)
            h = conv_pair(h, self.widths[i], nn.swish, dtype=self.dtype, impl=self.conv, name=f"up{i}")
        u = Conv(x.shape[-1], (1, 1), dtype=self.dtype, kernel_init=nn.initializers.zeros,
                 bias_init=nn.initializers.zeros, impl=self.conv, name="out")(h)
        r = (x.astype(jnp.float32) - u.astype(jnp.float32)).reshape(x.shape[0], -1)
        return jnp.sum(r**2, axis=1) / (2.0 * self.scale**2)
