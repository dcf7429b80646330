"""Stride-1 "same" convolutions computed as matrix products, for CPUs.

XLA's CPU backend runs ``lax.conv_general_dilated`` (and the transposed convolutions of its
gradients) far below the speed of its matrix multiply: on the digits demo's network a Langevin step
ran 5x slower than the PyTorch original. The same mathematics written as matrix products runs
near the machine's peak, so on a CPU :class:`Conv` computes

- a 1x1 kernel as one product over channels;
- anything larger by im2col: the k x k shifted copies of the zero-padded input side by side on the
  channel axis, times the kernel reshaped to (k k C_in, C_out).

Elsewhere (GPU, TPU) it calls ``lax.conv_general_dilated``, which cuDNN and the TPU compiler run
well. On every path, a map of at most ``TOEPLITZ_MAX_AREA`` pixels (the 2x2 and 1x1 maps at the
bottom of the MDSM nets and of a five-level U-Net) is one product with the convolution's full
(H W C_in, H W C_out) matrix, built from the kernel block by block: only taps that fall inside the
map are computed (on a 1x1 map a 3x3 kernel has one useful tap of nine). XLA:CPU's convolution
runs such maps several times slower than that product: a five-level U-Net (widths 16 ... 256 on
32x32 MNIST) trained at 51 images/s on 2 cores with its 2x2 level as XLA convolutions, 141 as
products (``python -m ebmjax.bench --config configs/mdsm_mnist.py --what train
--config.model.widths=16,32,64,128,256``).

Every path computes the same sums in a different order (results agree to float rounding), and
the parameters are ``nn.Conv``'s: ``kernel`` (kh, kw, C_in, C_out) and ``bias`` (C_out,), so
checkpoints and the PyTorch import do not depend on the path.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError

Dtype = Any

IMPLS = ("auto", "matmul", "xla")
TOEPLITZ_MAX_AREA = 4


def conv_matrix(kernel: jax.Array, h: int, w: int) -> jax.Array:
    """The (h w C_in, h w C_out) matrix of a stride-1 'same' convolution on an h x w map, rows and
    columns in NHWC order: ``x.reshape(B, -1) @ M`` equals the convolution of x flattened.

    Block (input pixel, output pixel) is the kernel tap that links them, or zero; the blocks are
    picked by static indexing, so the matrix and its gradient cost copies, not products."""
    kh, kw, cin, cout = kernel.shape
    if h == w == 1:
        return kernel[(kh - 1) // 2, (kw - 1) // 2]
    zero = jnp.zeros((cin, cout), kernel.dtype)
    rows = []
    for ii, ij in itertools.product(range(h), range(w)):
        blocks = []
        for oi, oj in itertools.product(range(h), range(w)):
            di, dj = ii - oi + (kh - 1) // 2, ij - oj + (kw - 1) // 2
            blocks.append(kernel[di, dj] if 0 <= di < kh and 0 <= dj < kw else zero)
        rows.append(jnp.stack(blocks, axis=1))  # (C_in, h w, C_out)
    return jnp.stack(rows).reshape(h * w * cin, h * w * cout)


def _im2col(x: jax.Array, kh: int, kw: int) -> jax.Array:
    """(B, H, W, kh kw C): the kernel's shifted windows of the zero-padded x, tap-major."""
    _, h, w, _ = x.shape
    top, left = (kh - 1) // 2, (kw - 1) // 2
    xp = jnp.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    return jnp.concatenate([xp[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)], axis=-1)


def conv_same_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'same' convolution of NHWC ``x`` with an HWIO ``kernel`` by matrix products."""
    b, h, w, cin = x.shape
    kh, kw, _, cout = kernel.shape
    if kh == kw == 1:
        return (x.reshape(-1, cin) @ kernel.reshape(cin, cout)).reshape(b, h, w, cout)
    cols = _im2col(x, kh, kw)
    return (cols.reshape(b * h * w, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)).reshape(b, h, w, cout)


def conv_same_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'same' convolution by ``lax.conv_general_dilated`` (what ``nn.Conv`` runs)."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


# For a 2x nearest up-sampling, row 2i + a of the up-sampled map is row i of the low-resolution one.
# A 3x3 kernel's three rows (offsets -1, 0, +1) at an even output row (a = 0) read low-resolution rows
# i - 1, i, i and at an odd one (a = 1) rows i, i, i + 1: _FOLD[a] sums the kernel rows that read the
# same low-resolution row, giving each output parity a 2-tap kernel (rows i - 1 + a and i + a).
_FOLD = ((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def upsampled_conv_kernel(kernel: jax.Array) -> jax.Array:
    """A 3x3 HWIO kernel (3, 3, C_in, C_out) -> the (3, 3, C_in, 4 C_out) kernel that, run as a 'same'
    convolution on a low-resolution map, gives the 3x3 'same' convolution of its 2x nearest
    up-sampling with the output pixels of each 2x2 block side by side on the channel axis (row
    parity, column parity, channel): see :func:`conv_same_upsampled`."""
    if kernel.shape[:2] != (3, 3):
        raise ConfigError(f"upsampled_conv_kernel takes a 3x3 kernel, got shape {kernel.shape}.")
    fold = jnp.asarray(_FOLD, kernel.dtype)  # (parity, 2 taps, 3 kernel rows)
    taps = jnp.einsum("atk,klio,bsl->abtsio", fold, kernel, fold)  # (2, 2, 2, 2, C_in, C_out)
    # Parity (a, b) reads low-resolution offsets (a - 1, a) x (b - 1, b): rows a..a+1 of a 3x3 window.
    big = jnp.zeros((2, 2, 3, 3) + kernel.shape[2:], kernel.dtype)
    for a, b in itertools.product(range(2), range(2)):
        big = big.at[a, b, a:a + 2, b:b + 2].set(taps[a, b])
    return big.transpose(2, 3, 4, 0, 1, 5).reshape(3, 3, kernel.shape[2], 4 * kernel.shape[3])


def conv_same_upsampled(x: jax.Array, kernel: jax.Array, impl: str = "auto") -> jax.Array:
    """``conv_same(ops.upsample(x, 2), kernel, impl)`` for a 3x3 kernel, computed on the low-resolution
    x: (B, H, W, C_in) -> (B, 2H, 2W, C_out).

    One convolution of the H x W map with 4 C_out channels (:func:`upsampled_conv_kernel`) replaces one
    of the 2H x 2W map with C_out: the same multiply-adds, on a map a quarter the size, and no
    up-sampled copy of x; XLA:CPU runs it, and its gradients, faster (the U-Net's up path)."""
    b, h, w, _ = x.shape
    cout = kernel.shape[-1]
    y = conv_same(x, upsampled_conv_kernel(kernel), impl).reshape(b, h, w, 2, 2, cout)
    return y.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, cout)


def resolve_impl(impl: str) -> str:
    """'matmul' or 'xla' for ``impl``; 'auto' picks 'matmul' on a CPU backend, 'xla' elsewhere."""
    if impl not in IMPLS:
        raise ConfigError(f"conv implementation must be one of {', '.join(IMPLS)}, got {impl!r}.")
    if impl == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    return impl


def conv_same(x: jax.Array, kernel: jax.Array, impl: str = "auto") -> jax.Array:
    """Stride-1 'same' convolution, NHWC input, HWIO kernel, by the path ``impl`` names; a map of
    at most ``TOEPLITZ_MAX_AREA`` pixels under a kernel wider than 1x1 by :func:`conv_matrix` on
    every path."""
    fn: Callable = conv_same_matmul if resolve_impl(impl) == "matmul" else conv_same_xla
    b, h, w, _ = x.shape
    if h * w <= TOEPLITZ_MAX_AREA and kernel.shape[0] * kernel.shape[1] > 1:
        return (x.reshape(b, -1) @ conv_matrix(kernel, h, w)).reshape(b, h, w, kernel.shape[-1])
    return fn(x, kernel)


class Conv(nn.Module):
    """A stride-1 'same' convolution with ``nn.Conv``'s parameters (``kernel`` HWIO, ``bias``).

    ``kernel_init``/``bias_init`` as in ``nn.Conv``; parameters are float32, the computation runs in
    ``dtype``. ``impl``: "auto" (matrix products on a CPU, XLA's convolution elsewhere), "matmul" or
    "xla". (B, H, W, C_in) -> (B, H, W, features).
    """

    features: int
    kernel_size: tuple[int, int]
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), jnp.float32)
        y = conv_same(x.astype(self.dtype), kernel.astype(self.dtype), self.impl)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
            y = y + bias.astype(self.dtype)
        return y
