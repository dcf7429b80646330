"""A plain convolutional energy for maximum-likelihood EBMs (short-run, persistent chains).

The maximum-likelihood recipes that work in practice (Nijkamp et al.'s short-run EBM, IGEBM, JEM)
use small conv nets with smooth or leaky activations and a linear read-out, not MDSM's quadratic
head. Layout, for ``widths`` (c1, c2, ...)::

    per stage s: conv3x3 -> act -> conv3x3 -> act -> 2x2 mean pool     (c_s channels)
    head:        flatten -> dense -> 1                                    E(x)
                 flatten -> dense -> K    (``classes`` = K > 0)          logits f(x)

With ``classes`` = K the net is a classifier whose logits define energies (JEM, conditional EBMs):
E(x, y) = -f(x)[y] and E(x) = -logsumexp_y f(x)[y] (:func:`ebmjax.samplers.class_energy`,
:func:`ebmjax.samplers.marginal_energy`).

Activations: "swish" (x sigmoid(x), smooth, as IGEBM/JEM-style nets) or "lrelu" (LeakyReLU 0.2, as
the short-run code). Convolutions are :class:`ebmjax.models.conv.Conv` (fast on CPUs), initialised
as PyTorch does. Images NHWC whose sides are divisible by 2^len(widths) -> energies (B,), or logits (B, K).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError
from ebmjax.models.conv import Conv
from ebmjax.models.resnet import mean_pool_2x2, torch_uniform_init


def swish(x: jax.Array) -> jax.Array:
    """swish(x) = x sigmoid(x) (SiLU), written as x (1 + tanh(x / 2)) / 2, the same function: XLA:CPU
    computes it, and the first and second derivatives MDSM's loss takes of it, with a tanh where
    ``nn.swish``'s 1 / (1 + exp(-x)) costs an exp and a division: the five-level MNIST U-Net trains
    6% faster (``python -m ebmjax.bench --config configs/mdsm_mnist.py --what train``: 183 against
    172 img/s, three alternating runs each). Agrees with x sigmoid(x) to float32 rounding."""
    return x * (0.5 + 0.5 * jnp.tanh(0.5 * x))


ACTIVATIONS = {"swish": swish, "lrelu": lambda x: nn.leaky_relu(x, 0.2)}


def conv_act(h: jax.Array, features: int, act: Any, *, dtype: Any, impl: str, name: str) -> jax.Array:
    """A 3x3 'same' convolution of ``features`` channels followed by ``act``, initialised as PyTorch
    does; parameters ``name``. Call it inside a compact module."""
    init = torch_uniform_init(h.shape[-1] * 9)
    return act(Conv(features, (3, 3), dtype=dtype, kernel_init=init, bias_init=init, impl=impl, name=name)(h))


def conv_pair(h: jax.Array, features: int, act: Any, *, dtype: Any, impl: str, name: str) -> jax.Array:
    """Two :func:`conv_act` of ``features`` channels; parameters ``{name}_0`` and ``{name}_1``."""
    for j in range(2):
        h = conv_act(h, features, act, dtype=dtype, impl=impl, name=f"{name}_{j}")
    return h


class ConvEnergy(nn.Module):
    """Conv net energy: (B, H, W, C) -> (B,) float32, p(x) ∝ exp(-E(x)); with ``classes`` = K > 0,
    logits (B, K) float32."""

    widths: tuple[int, ...] = (32, 64, 128)
    activation: str = "swish"
    dtype: Any = jnp.float32
    conv: str = "auto"
    classes: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"model.activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}.")
        if x.ndim != 4:
            raise ConfigError(f"ConvEnergy takes NHWC images (B, H, W, C); got shape {x.shape}.")
        factor = 2 ** len(self.widths)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ConfigError(f"ConvEnergy halves the image size {len(self.widths)} times, so height and width must "
                              f"be multiples of {factor}; got {x.shape[1]}x{x.shape[2]}.")
        act = ACTIVATIONS[self.activation]
        h = x.astype(self.dtype)
        for i, c in enumerate(self.widths):
            h = mean_pool_2x2(conv_pair(h, c, act, dtype=self.dtype, impl=self.conv, name=f"conv{i}"))
        h = h.reshape(h.shape[0], -1).astype(jnp.promote_types(self.dtype, jnp.float32))
        init = torch_uniform_init(h.shape[-1])
        out = nn.Dense(max(self.classes, 1), dtype=h.dtype, kernel_init=init, bias_init=init, name="out")(h)
        return out if self.classes else out[:, 0]
