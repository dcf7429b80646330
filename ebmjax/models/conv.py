""""Same" convolutions computed as matrix products, for CPUs.

XLA's CPU backend runs ``lax.conv_general_dilated`` (and the transposed convolutions of its
gradients) far below the speed of its matrix multiply: on the digits demo's network a Langevin step
ran 5x slower than the PyTorch original. The same mathematics written as matrix products runs
near the machine's peak, so on a CPU :class:`Conv` computes

- a 1x1 kernel as one product over channels;
- anything larger by im2col: the k x k shifted copies of the zero-padded input side by side on the
  channel axis, times the kernel reshaped to (k k C_in, C_out).

A strided convolution here is the 'same' convolution read at every s-th pixel, and only those
outputs are computed (the copies are taken at every s-th pixel; XLA's convolution gets the
stride-1 padding and the stride): the multigrid energies' strided layers once computed every
pixel and dropped three in four. Likewise a convolution followed by a 2x2 mean pool (the down
blocks of the CF-EBM network) can be one convolution at the pooled pixels with the kernel averaged
over the pool's shifts (:func:`conv_same_pooled`, ``Conv(pool=True)``): 16 taps per pooled pixel
for a 3x3 kernel where convolving every pixel costs 36. The MDSM ResNet keeps its convolution and
pool apart: under MDSM's loss, which differentiates the input gradient again, the pooled form
trained Res12 at 32x32 at 145 img/s against 245 and 257 on 2 cores (`python -m ebmjax.bench
--config configs/mdsm_mnist.py --config.model.name=mdsm_resnet --what train`).

Elsewhere (GPU, TPU) it calls ``lax.conv_general_dilated``, which cuDNN and the TPU compiler run
well. On every path, a map of at most ``SMALL_MAP_MAX_AREA`` pixels (the 2x2 and 1x1 maps at the
bottom of the MDSM nets and of a five-level U-Net) goes through :func:`conv_small_map`: each pixel
times every kernel tap that reaches an output from it, in one product, summed per output pixel by
a constant 0/1 tensor; only taps that fall inside the map are computed (on a 1x1 map a 3x3 kernel
has one useful tap of nine). XLA:CPU's convolution runs such maps several times slower: a
five-level U-Net (widths 16 ... 256 on 32x32 MNIST) trained at 51 images/s on 2 cores with its 2x2
level as XLA convolutions, 141 with it as one product with the convolution's dense matrix, and 165
with :func:`conv_small_map`, which builds no matrix from the kernel (``python -m ebmjax.bench
--config configs/mdsm_mnist.py --what train``).

Every path computes the same sums in a different order (results agree to float rounding), and
the parameters are ``nn.Conv``'s: ``kernel`` (kh, kw, C_in, C_out) and ``bias`` (C_out,), so
checkpoints and the PyTorch import do not depend on the path.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ebmjax import ops
from ebmjax.errors import ConfigError

Dtype = Any

IMPLS = ("auto", "matmul", "xla")
SMALL_MAP_MAX_AREA = 4


@functools.lru_cache(maxsize=64)
def _tap_selection(h: int, w: int, kh: int, kw: int, up: int) -> tuple[tuple[int, ...], np.ndarray]:
    """For a stride-1 'same' kh x kw convolution of an h x w map up-sampled ``up`` times (nearest):
    the kernel taps (row-major) that reach some output pixel, and the 0/1 matrix S (h w taps,
    up h up w) with S[(p, t), q] = 1 where tap t reads, for output pixel q, a pixel copied from input
    pixel p. Pixels row-major. Cached per shape; the matrix is read-only."""
    s = np.zeros((h * w, kh * kw, up * h * up * w), np.float32)
    top, left = (kh - 1) // 2, (kw - 1) // 2
    for oi, oj, di, dj in itertools.product(range(up * h), range(up * w), range(kh), range(kw)):
        ii, ij = oi + di - top, oj + dj - left
        if 0 <= ii < up * h and 0 <= ij < up * w:
            s[(ii // up) * w + ij // up, di * kw + dj, oi * up * w + oj] = 1.0
    taps = tuple(int(t) for t in np.flatnonzero(s.any(axis=(0, 2))))  # a 1x1 map: the centre tap only
    sel = np.ascontiguousarray(s[:, list(taps)].reshape(h * w * len(taps), -1))
    sel.setflags(write=False)
    return taps, sel


def conv_small_map(x: jax.Array, kernel: jax.Array, up: int = 1) -> jax.Array:
    """Stride-1 'same' convolution of the ``up``-times up-sampled (nearest; 1: not at all) NHWC map
    ``x`` with an HWIO ``kernel``, for maps of a few pixels: (B, h, w, C_in) -> (B, up h, up w, C_out).

    Every input pixel is multiplied by every kernel tap that reaches an output pixel from it (one
    product, (B h w, C_in) x (C_in, taps C_out)), and each output pixel sums its products through the
    constant 0/1 matrix of :func:`_tap_selection`: no convolution primitive, no padding, no
    up-sampled copy, and no matrix built from the kernel."""
    b, h, w, cin = x.shape
    kh, kw, _, cout = kernel.shape
    taps, sel = _tap_selection(h, w, kh, kw, up)
    k = kernel.reshape(kh * kw, cin, cout)
    if len(taps) < kh * kw:
        k = jnp.stack([k[t] for t in taps])  # static slices: no gather, nor a scatter in the gradient
    k = k.transpose(1, 0, 2).reshape(cin, len(taps) * cout)
    z = (x.reshape(b * h * w, cin) @ k).reshape(b, h * w * len(taps), cout)
    y = jnp.einsum("bmo,mq->bqo", z, jnp.asarray(sel, x.dtype))
    return y.reshape(b, up * h, up * w, cout)


def _im2col(x: jax.Array, kh: int, kw: int, stride: int = 1) -> jax.Array:
    """(B, ceil(H / stride), ceil(W / stride), kh kw C): the kernel's shifted windows of the
    zero-padded x at every ``stride``-th pixel, tap-major."""
    _, h, w, _ = x.shape
    top, left = (kh - 1) // 2, (kw - 1) // 2
    xp = jnp.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    return jnp.concatenate([xp[:, i:i + h:stride, j:j + w:stride, :] for i in range(kh) for j in range(kw)],
                           axis=-1)


def conv_same_matmul(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """'Same' convolution of NHWC ``x`` with an HWIO ``kernel`` by matrix products, read at every
    ``stride``-th pixel (only those outputs are computed)."""
    kh, kw, cin, cout = kernel.shape
    if kh == kw == 1:
        x = x[:, ::stride, ::stride]
        return (x.reshape(-1, cin) @ kernel.reshape(cin, cout)).reshape(*x.shape[:3], cout)
    cols = _im2col(x, kh, kw, stride)
    return (cols.reshape(-1, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)).reshape(*cols.shape[:3], cout)


def conv_same_xla(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """'Same' convolution by ``lax.conv_general_dilated`` (stride 1: what ``nn.Conv`` runs), read at
    every ``stride``-th pixel: the stride-1 padding, so output (i, j) is the stride-1 output
    (stride i, stride j) (XLA's own "SAME" pads a strided convolution differently)."""
    kh, kw = kernel.shape[:2]
    pad = (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2))
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))


# For a 2x nearest up-sampling, row 2i + a of the up-sampled map is row i of the low-resolution one.
# A 3x3 kernel's three rows (offsets -1, 0, +1) at an even output row (a = 0) read low-resolution rows
# i - 1, i, i and at an odd one (a = 1) rows i, i, i + 1: _FOLD[a] sums the kernel rows that read the
# same low-resolution row, giving each output parity a 2-tap kernel (rows i - 1 + a and i + a).
_FOLD = np.array([[[1, 0, 0], [0, 1, 1]],
                  [[1, 1, 0], [0, 0, 1]]], np.float32)  # (parity a, tap t, kernel row k)


def upsampled_conv_kernel(kernel: jax.Array) -> jax.Array:
    """A 3x3 HWIO kernel (3, 3, C_in, C_out) -> the (2, 2, C_in, 4 C_out) kernel of its four 2x2
    "parity" kernels side by side on the output axis (row parity, column parity, channel): parity
    (a, b) of the 3x3 'same' convolution of a 2x nearest up-sampled map reads the low-resolution
    rows i - 1 + a, i + a and columns j - 1 + b, j + b (see :func:`conv_same_upsampled`). One
    contraction with the constant :data:`_FOLD` on each axis."""
    if kernel.shape[:2] != (3, 3):
        raise ConfigError(f"upsampled_conv_kernel takes a 3x3 kernel, got shape {kernel.shape}.")
    fold = jnp.asarray(_FOLD, kernel.dtype)
    taps = jnp.einsum("atk,bsl,klio->tsiabo", fold, fold, kernel)
    return taps.reshape(2, 2, kernel.shape[2], 4 * kernel.shape[3])


def conv_same_upsampled(x: jax.Array, kernel: jax.Array, impl: str = "auto") -> jax.Array:
    """``conv_same(ops.upsample(x, 2), kernel, impl)`` for a 3x3 kernel, computed on the low-resolution
    x: (B, H, W, C_in) -> (B, 2H, 2W, C_out).

    Each output parity (a, b) of the up-sampled map is a 2x2 convolution of the low-resolution map
    (:func:`upsampled_conv_kernel`): one 2x2 convolution with 4 C_out channels of x padded by a row
    and a column on each side gives all four at (H + 1) x (W + 1) positions, and parity (a, b) is
    the window of them shifted by (a, b). That is 4 taps per output pixel where the up-sampled
    map's convolution has 9 (of which 5 read copies of the same pixels), on a map a quarter the size,
    and no up-sampled copy of x (the U-Net's up path). A map of at most ``SMALL_MAP_MAX_AREA``
    pixels goes through :func:`conv_small_map`, whatever ``impl`` says."""
    if kernel.shape[:2] != (3, 3):
        raise ConfigError(f"conv_same_upsampled takes a 3x3 kernel, got shape {kernel.shape}.")
    b, h, w, _ = x.shape
    cout = kernel.shape[-1]
    if h * w <= SMALL_MAP_MAX_AREA:
        return conv_small_map(x, kernel, up=2)
    # a 2x2 'same' convolution pads one row and column after the map: with one more before, output
    # (i, j) reads low-resolution rows i - 1, i and columns j - 1, j
    xp = jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)))
    y = conv_same(xp, upsampled_conv_kernel(kernel), impl).reshape(b, h + 1, w + 1, 2, 2, cout)
    parity = jnp.stack([jnp.stack([y[:, a:a + h, c:c + w, a, c] for c in range(2)], axis=3) for a in range(2)],
                       axis=2)  # (B, H, 2, W, 2, C_out)
    return parity.reshape(b, 2 * h, 2 * w, cout)


def pooled_conv_kernel(kernel: jax.Array) -> jax.Array:
    """An odd k x k HWIO kernel -> the (k + 1) x (k + 1) kernel of its 'same' convolution followed by
    a 2x2 mean pool, read at stride 2 (:func:`conv_same_pooled`): K'[d, e] = (1/4) sum over a, b in
    {0, 1} of K[d - a, e - b], the kernel averaged over the pool's four shifts."""
    kh, kw = kernel.shape[:2]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ConfigError(f"pooled_conv_kernel takes an odd-sided kernel, got shape {kernel.shape}.")
    return sum(jnp.pad(kernel, ((a, 1 - a), (b, 1 - b), (0, 0), (0, 0))) for a in (0, 1) for b in (0, 1)) / 4


def conv_same_pooled(x: jax.Array, kernel: jax.Array, impl: str = "auto") -> jax.Array:
    """``mean_pool_2x2(conv_same(x, kernel, impl))`` for an odd-sided kernel, computed as one
    convolution at the pooled map's pixels: (B, H, W, C_in) -> (B, H / 2, W / 2, C_out), H and W
    even.

    The pool of a linear map is linear, so each pooled pixel is a (k + 1) x (k + 1) kernel
    (:func:`pooled_conv_kernel`) on the input, read at stride 2: a 3x3 kernel costs 16 taps per
    pooled pixel where the convolution at every pixel costs 4 x 9 = 36 (a 1x1 kernel: the pool
    first, then the product, a quarter of the work). The 'same' padding of the (k + 1)-sided kernel
    starts where the k-sided one's does, so the sums are the same ones in another order."""
    h, w = x.shape[1:3]
    if h % 2 or w % 2:
        raise ConfigError(f"a convolution followed by a 2x2 mean pool needs even sides, got {h}x{w}.")
    if kernel.shape[0] == kernel.shape[1] == 1:
        return conv_same(ops.downsample(x, 2), kernel.astype(x.dtype), impl)
    # folded in the kernel's own precision (float32 parameters), then cast to the compute dtype
    return conv_same(x, pooled_conv_kernel(kernel).astype(x.dtype), impl, stride=2)


def resolve_impl(impl: str) -> str:
    """'matmul' or 'xla' for ``impl``; 'auto' picks 'matmul' on a CPU backend, 'xla' elsewhere."""
    if impl not in IMPLS:
        raise ConfigError(f"conv implementation must be one of {', '.join(IMPLS)}, got {impl!r}.")
    if impl == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    return impl


def conv_same(x: jax.Array, kernel: jax.Array, impl: str = "auto", stride: int = 1) -> jax.Array:
    """'Same' convolution, NHWC input, HWIO kernel, by the path ``impl`` names, read at every
    ``stride``-th pixel: (B, H, W, C_in) -> (B, ceil(H / stride), ceil(W / stride), C_out), output
    (i, j) the stride-1 output (stride i, stride j), and only those outputs computed. A map of at
    most ``SMALL_MAP_MAX_AREA`` pixels under a kernel wider than 1x1 goes through
    :func:`conv_small_map` on every path."""
    if not (isinstance(stride, int) and stride >= 1):
        raise ConfigError(f"a convolution's stride must be an integer >= 1, got {stride!r}.")
    fn: Callable = conv_same_matmul if resolve_impl(impl) == "matmul" else conv_same_xla
    b, h, w, _ = x.shape
    if h * w <= SMALL_MAP_MAX_AREA and kernel.shape[0] * kernel.shape[1] > 1:
        return conv_small_map(x, kernel)[:, ::stride, ::stride]
    return fn(x, kernel, stride)


class Conv(nn.Module):
    """A 'same' convolution with ``nn.Conv``'s parameters (``kernel`` HWIO, ``bias``).

    ``kernel_init``/``bias_init`` as in ``nn.Conv``; parameters are float32, the computation runs in
    ``dtype``. ``impl``: "auto" (matrix products on a CPU, XLA's convolution elsewhere), "matmul" or
    "xla". ``strides`` s: the stride-1 convolution read at every s-th pixel, computed only there
    (:func:`conv_same`). (B, H, W, C_in) -> (B, ceil(H / s), ceil(W / s), features). ``pool``: the
    convolution (bias included) followed by a 2x2 mean pool, computed as one
    (:func:`conv_same_pooled`; odd kernels, even sides): (B, H / 2, W / 2, features).
    """

    features: int
    kernel_size: tuple[int, int]
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()
    impl: str = "auto"
    strides: int = 1
    pool: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), jnp.float32)
        if self.pool and self.strides != 1:
            raise ConfigError("Conv: pool=True reads the pooled map; it takes no stride.")
        if self.pool:
            y = conv_same_pooled(x.astype(self.dtype), kernel, self.impl)
        else:
            y = conv_same(x.astype(self.dtype), kernel.astype(self.dtype), self.impl, self.strides)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
            y = y + bias.astype(self.dtype)
        return y
