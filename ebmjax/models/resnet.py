"""The MDSM energy ResNet (Li et al. 2019), ported faithfully from the public PyTorch code.

Layout (``d`` = ``width``, ``n`` = ``blocks_per_stage``; Res18: n=2, Res12: n=1)::

    conv3x3 C->d (bias)
    stage 1: down block d->2d,   n same-width blocks 2d->2d
    stage 2: down block 2d->4d,  n same-width blocks 4d->4d
    stage 3: down block 4d->8d,  n same-width blocks 8d->8d
    head:    h = flatten(NCHW);  E = (w1.h + b1) * (w2.h + b2) + (wq.(h*h) + bq)

Every residual block is pre-activation without normalisation::

    r = conv_2(elu(conv_1(elu(x))))   [then 2x2 mean pool in a down block]
    s = conv_shortcut(x)              [mean pool first in a down block]; 1x1 conv with bias
    out = s + r                        (no activation after the add)

The learned 1x1 shortcut on same-width blocks is a quirk of the original (its identity branch is
never taken) and is kept so that published checkpoints load. Initialisation follows PyTorch's
defaults: weights and biases uniform in +-1/sqrt(fan_in).

Submodule names follow the PyTorch state-dict keys (``conv1``, ``rb1``, ``rbc1``, ``rbc11``, ...,
``ln1``, ``ln2``, ``lq``), see :mod:`ebmjax.models.torch_import` for the exact mapping.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError
from ebmjax.models.conv import Conv

Dtype = Any

NUM_STAGES = 3
DOWNSAMPLE = 2**NUM_STAGES  # total spatial reduction factor of the network


def torch_uniform_init(fan_in: int) -> nn.initializers.Initializer:
    """PyTorch's default Conv/Linear init: U(-1/sqrt(fan_in), +1/sqrt(fan_in)), for weights and biases.

    (kaiming_uniform with a=sqrt(5) reduces to exactly this bound for the weights.)
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def block_names(blocks_per_stage: int) -> list[tuple[str, bool]]:
    """Names of the residual blocks in order, with ``True`` for down blocks.

    Generalises the PyTorch naming: stage s has down block ``rb{s}`` followed by same-width blocks
    ``rbc{s}``, ``rbc{s}{s}``, ``rbc{s}{s}{s}``, ... (Res18: rb1, rbc1, rbc11, rb2, rbc2, rbc22, ...).
    """
    names: list[tuple[str, bool]] = []
    for s in range(1, NUM_STAGES + 1):
        names.append((f"rb{s}", True))
        for k in range(1, blocks_per_stage + 1):
            names.append(("rbc" + str(s) * k, False))
    return names


def mean_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 mean pool with stride 2 on NHWC: (B, H, W, C) -> (B, H/2, W/2, C)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _conv(features: int, kernel: int, in_features: int, use_bias: bool, dtype: Dtype, impl: str, name: str) -> Conv:
    init = torch_uniform_init(in_features * kernel * kernel)
    return Conv(features, (kernel, kernel), use_bias=use_bias, dtype=dtype, kernel_init=init, bias_init=init,
                impl=impl, name=name)


class ResBlock(nn.Module):
    """Pre-activation residual block of the MDSM ResNet. NHWC in, NHWC out.

    (B, H, W, Cin) -> (B, H, W, features), or (B, H/2, W/2, features) when ``down``.
    """

    features: int
    down: bool
    dtype: Dtype = jnp.float32
    conv: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        shortcut_in = mean_pool_2x2(x) if self.down else x
        shortcut = _conv(self.features, 1, cin, True, self.dtype, self.conv, "conv_shortcut")(shortcut_in)

        r = _conv(cin, 3, cin, False, self.dtype, self.conv, "conv_1")(nn.elu(x))
        r = _conv(self.features, 3, cin, True, self.dtype, self.conv, "conv_2")(nn.elu(r))
        if self.down:
            r = mean_pool_2x2(r)
        return shortcut + r


class MDSMResNet(nn.Module):
    """MDSM energy network: images (B, H, W, C) NHWC -> energies (B,) float32, p(x) ~ exp(-E(x)).

    H and W must be multiples of 8 (32x32 in the paper). ``dtype`` is the compute dtype of the
    convolutions; parameters are always float32, and energies are float32 for float32/bfloat16
    compute (float64 if ``dtype`` is float64 under jax_enable_x64, which tests use).
    ``conv`` chooses how convolutions are computed (``ebmjax.models.conv``): "auto" (matrix products
    on a CPU, XLA's convolution on GPU/TPU), "matmul" or "xla"; the parameters and the mathematics
    are the same. Use as ``energy_fn = lambda x: model.apply(params, x)``. With ``classes`` = K > 0
    the head gives logits (B, K) instead, one quadratic form per class (a class-conditional energy).
    """

    blocks_per_stage: int = 2
    width: int = 128
    dtype: Dtype = jnp.float32
    conv: str = "auto"
    classes: int = 0  # K > 0: the head gives K values per image, logits f(x) (B, K) with E(x, y) = -f(x)[y]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.blocks_per_stage < 0 or self.width < 1:
            raise ConfigError(
                f"MDSMResNet needs width >= 1 and blocks_per_stage >= 0, got width={self.width}, "
                f"blocks_per_stage={self.blocks_per_stage} (the paper uses res18: width 128, 2 blocks; "
                "res12: width 64, 1 block)."
            )
        if x.ndim != 4:
            raise ConfigError(
                f"MDSMResNet takes a batch of NHWC images (B, H, W, C); got an array of shape {x.shape}. "
                "Add a batch axis, and a channel axis of size 1 for grey images."
            )
        _, h, w, c = x.shape
        if h % DOWNSAMPLE or w % DOWNSAMPLE or h == 0 or w == 0:
            raise ConfigError(
                f"MDSMResNet halves the image size {NUM_STAGES} times, so height and width must be "
                f"positive multiples of {DOWNSAMPLE} (e.g. 8, 16, 32, 64); got {h}x{w}. "
                "Pad or resize the images (MNIST is padded by 2 to 32x32 in the paper)."
            )

        x = x.astype(self.dtype)
        x = _conv(self.width, 3, c, True, self.dtype, self.conv, "conv1")(x)
        features = self.width
        for name, down in block_names(self.blocks_per_stage):
            if down:
                features *= 2
            x = ResBlock(features, down, self.dtype, self.conv, name=name)(x)

        # The head is three dot products per image; running it in (at least) float32 costs nothing and
        # keeps the product of two linear forms (which can cancel) accurate when the trunk runs in bfloat16.
        head_dtype = jnp.promote_types(self.dtype, jnp.float32)
        b = x.shape[0]
        # Channel-major flatten, as torch's view(B, -1) on NCHW, so imported head weights line up.
        hvec = jnp.transpose(x, (0, 3, 1, 2)).reshape(b, -1).astype(head_dtype)
        fan_in = hvec.shape[-1]

        def linear(name: str) -> nn.Dense:
            init = torch_uniform_init(fan_in)
            return nn.Dense(max(self.classes, 1), dtype=head_dtype, param_dtype=jnp.float32, kernel_init=init,
                            bias_init=init, name=name)

        # With classes = K each class has its own quadratic form of the same features.
        e = linear("ln1")(hvec) * linear("ln2")(hvec) + linear("lq")(hvec * hvec)
        return e if self.classes else e[:, 0]


def res18(width: int = 128, dtype: Dtype = jnp.float32) -> MDSMResNet:
    """The paper's 18-layer energy net (CIFAR-10, CelebA): two same-width blocks per stage."""
    return MDSMResNet(blocks_per_stage=2, width=width, dtype=dtype)


def res12(width: int = 64, dtype: Dtype = jnp.float32) -> MDSMResNet:
    """The paper's 12-layer energy net (MNIST, Fashion-MNIST): one same-width block per stage."""
    return MDSMResNet(blocks_per_stage=1, width=width, dtype=dtype)
