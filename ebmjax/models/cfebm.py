"""The expanding energy network of CF-EBM (coarse-to-fine EBM; the CF-EBM paper, REFERENCE §2).

One network serves every resolution ``resolutions = (r_0, r_1, ..., r_S)`` (each side twice the
one before). Stage s reads an r_s x r_s image::

    from_rgb_s (1x1 conv, widths[s]) -> act
    -> block_s (r_s -> r_{s-1}) -> block_{s-1} -> ... -> block_1 -> block_0 (r_0 -> r_0 / 2, head_width)
    -> head: conv3x3 -> act -> flatten -> dense -> 1                                         E(x)

A residual block k maps widths[k] channels at r_k to widths[k-1] (block 0: ``head_width``) at half
the side: main = conv3x3 -> act -> conv3x3 -> 2x2 mean pool -> act, skip = 1x1 conv -> 2x2 mean
pool, output (main + skip) / sqrt(2). ``act`` is the original's swish(x) / 1.1.

The Expand block (the CF-EBM paper's Expand(x) = beta Primal(x) + (1 - beta) Fade(x)) fades stage s in:
the features entering block_{s-1} are

    alpha * block_s(from_rgb_s(x)) + (1 - alpha) * act(from_rgb_{s-1}(meanpool2(x)))

so at alpha = 0 the stage-s network on x is exactly the stage-(s-1) network on the down-sampled x,
and at alpha = 1 the new path alone. Stages are a call argument, not separate modules: the network
holds the parameters of every stage from the start (each stage's from_rgb and block exist, unused
until their stage), so parameter shapes never change during training and a checkpoint of any stage
restores with the same code (see :func:`init_all`).

Differences from the original (YangNaruto/ProEBM): no spectral normalisation on the 3x3 convolutions
and no equalized learning rate (both rescale weights; the first needs a power-iteration state carried
with the parameters); the head's 4x4 'valid' convolution on the 4x4 map is a dense layer on the
flattened map (the same function), for any map size; from_rgb takes the data's channel count (the
original takes 1, so RGB runs fail as shipped).
"""

from __future__ import annotations

import math
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from ebmjax import ops
from ebmjax.errors import ConfigError
from ebmjax.models.conv import Conv
from ebmjax.models.convnet import swish


def swish_11(x: jax.Array) -> jax.Array:
    """The original's activation, swish(x) / 1.1."""
    return swish(x) / 1.1


class ResBlockDown(nn.Module):
    """(B, H, W, C_in) -> (B, H / 2, W / 2, features): residual block with 2x2 mean pooling."""

    features: int
    dtype: Any = jnp.float32
    conv: str = "auto"

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        c_in = h.shape[-1]
        main = swish_11(Conv(c_in, (3, 3), dtype=self.dtype, impl=self.conv, name="conv0")(h))
        # conv1 and the 2x2 mean pool after it as one convolution at the pooled pixels; the skip pools first
        main = swish_11(Conv(self.features, (3, 3), dtype=self.dtype, impl=self.conv, pool=True, name="conv1")(main))
        skip = Conv(self.features, (1, 1), dtype=self.dtype, impl=self.conv, pool=True, name="skip")(h)
        return (main + skip) / math.sqrt(2.0)


class ExpandingEnergy(nn.Module):
    """CF-EBM's energy: ``apply(variables, x, stage, alpha)`` -> (B,) for x of side ``resolutions[stage]``;
    with ``classes`` = K > 0, logits f(x) (B, K) (minus the head's K outputs), E(x, y) = -f(x)[y]."""

    resolutions: tuple[int, ...] = (8, 16, 32)
    widths: tuple[int, ...] = (128, 128, 64)
    head_width: int = 128
    dtype: Any = jnp.float32
    conv: str = "auto"
    classes: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, stage: int, alpha: Any = 1.0) -> jax.Array:
        if len(self.widths) != len(self.resolutions):
            raise ConfigError(f"ExpandingEnergy: one width per resolution, got widths {self.widths} for "
                              f"resolutions {self.resolutions}.")
        if self.resolutions[0] < 2 or any(b != 2 * a for a, b in zip(self.resolutions, self.resolutions[1:])):
            raise ConfigError(f"ExpandingEnergy: resolutions must start at >= 2 and double at every stage, e.g. "
                              f"(8, 16, 32); got {self.resolutions}.")
        if x.ndim != 4:
            raise ConfigError(f"ExpandingEnergy takes NHWC images (B, H, W, C); got shape {x.shape}.")
        if not 0 <= stage < len(self.resolutions):
            raise ConfigError(f"ExpandingEnergy: stage must be in 0..{len(self.resolutions) - 1}, got {stage}.")
        r = self.resolutions[stage]
        if x.shape[1:3] != (r, r):
            raise ConfigError(f"ExpandingEnergy: stage {stage} reads {r}x{r} images, got shape {x.shape}.")
        outs = (self.head_width, *self.widths[:-1])

        def from_rgb(k):
            return Conv(self.widths[k], (1, 1), dtype=self.dtype, impl=self.conv, name=f"from_rgb_{self.resolutions[k]}")

        def block(k):
            return ResBlockDown(outs[k], dtype=self.dtype, conv=self.conv, name=f"block_{self.resolutions[k]}")

        xd = x.astype(self.dtype)
        h = block(stage)(swish_11(from_rgb(stage)(xd)))
        if stage > 0:
            # The Expand block: the new stage's path faded in over the previous stage's entry.
            old = swish_11(from_rgb(stage - 1)(ops.downsample(xd, 2)))
            h = alpha * h + (1.0 - alpha) * old
            for k in range(stage - 1, -1, -1):
                h = block(k)(h)
        h = swish_11(Conv(self.head_width, (3, 3), dtype=self.dtype, impl=self.conv, name="head_conv")(h))
        h = h.reshape(h.shape[0], -1).astype(jnp.float32)
        e = nn.Dense(max(self.classes, 1), dtype=jnp.float32, name="head_out")(h)
        return -e if self.classes else e[:, 0]


def init_all(model: ExpandingEnergy, key: jax.Array, channels: int) -> dict[str, Any]:
    """The variables of every stage of ``model`` (every from_rgb and block): the union of the
    parameters each stage creates, which agree where stages share a layer (Flax derives a layer's
    initial values from ``key`` and the layer's name)."""
    merged: dict[str, Any] = {}
    for stage, r in enumerate(model.resolutions):
        x = jnp.zeros((1, r, r, channels), jnp.float32)
        variables = flax.core.unfreeze(model.init(key, x, stage, 0.5))
        merged = _merge(merged, variables)
    return merged


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if k in out and isinstance(v, dict) else v
    return out
