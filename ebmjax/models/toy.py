"""Small energy networks for 2-D toy data and fast tests."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ebmjax.models.resnet import torch_uniform_init


class MLPEnergy(nn.Module):
    """Fully connected energy: inputs (B, ...) flattened to (B, D) -> energies (B,) float32.

    Softplus activations keep the energy infinitely differentiable, so scores (first derivatives)
    and the MDSM loss (which differentiates the score again) are smooth. ``hidden=()`` gives a
    linear energy w.x + b. Initialisation matches PyTorch's Linear default (uniform +-1/sqrt(fan_in)).
    With ``classes`` = K > 0 the read-out gives logits (B, K) instead (see :class:`ConvEnergy`).
    """

    hidden: tuple[int, ...] = (128, 128)
    dtype: Any = jnp.float32
    classes: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], -1).astype(self.dtype)
        for i, features in enumerate(self.hidden):
            init = torch_uniform_init(h.shape[-1])
            h = nn.Dense(features, dtype=self.dtype, kernel_init=init, bias_init=init, name=f"dense{i}")(h)
            h = nn.softplus(h)
        init = torch_uniform_init(h.shape[-1])
        out = nn.Dense(max(self.classes, 1), dtype=jnp.float32, kernel_init=init, bias_init=init,
                       name="out")(h.astype(jnp.float32))
        return out if self.classes else out[:, 0]


class GaussianEnergy(nn.Module):
    """E(x) = |x - mu|^2 / (2 sigma^2) with a learned mean ``mu`` (the example's shape) and a learned
    ``log_sigma`` (a scalar): a model whose maximum-likelihood optimum is known (the data's mean and
    per-coordinate standard deviation), for tests and teaching. Inputs (B, ...) -> (B,)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        mu = self.param("mu", nn.initializers.zeros_init(), x.shape[1:], jnp.float32)
        log_sigma = self.param("log_sigma", nn.initializers.zeros_init(), (), jnp.float32)
        d = (x.astype(jnp.float32) - mu).reshape(x.shape[0], -1)
        return 0.5 * jnp.sum(d**2, axis=1) * jnp.exp(-2.0 * log_sigma)
