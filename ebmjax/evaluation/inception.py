"""Inception-v3, FID variant, in Flax: pool3 features (2048) and the 1008-way logits for FID/KID/IS.

The architecture is the one of the TensorFlow graph behind the original FID and IS code
("2015-12-05"), as ported to PyTorch by pytorch-fid (weights file ``pt_inception-2015-12-05-
6726825d.pth``). It differs from torchvision's Inception-v3 in three places, all kept here:
the average pools inside blocks 5b-5d, 6b-6e and 7b exclude the padding from the average
(``count_include_pad=False``), the pool branch of block 7c is a 3x3 *max* pool, and the output
layer has 1008 classes. Every convolution has no bias and is followed by batch norm (eps 1e-3,
inference statistics) and ReLU.

Input pipeline (pytorch-fid's "standard resizing"): images NHWC in [0, 1]; grey images are repeated
to 3 channels; bilinear resize to 299x299 with half-pixel centres and no antialiasing (PyTorch's
``interpolate(mode="bilinear", align_corners=False)``); then scaled to [-1, 1]. No per-image
standardisation (one of the defects of the MDSM code's FID).

Weights: no wheel ships them and ebmjax never downloads anything, so the file is given by path
(``eval.inception_weights``): the PyTorch state dict itself (read with ``torch.load(...,
weights_only=True)`` when torch is installed), or an .npz holding the same keys, made once on any
machine with torch::

    python -c "import torch, numpy as np; sd = torch.load('pt_inception-2015-12-05-6726825d.pth', map_location='cpu', weights_only=True); np.savez('pt_inception-2015-12-05.npz', **{k: v.numpy() for k, v in sd.items()})"
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from ebmjax.errors import ConfigError, DataError

__all__ = [
    "InceptionV3FID",
    "InceptionFeatures",
    "preprocess",
    "load_inception_params",
    "params_from_state_dict",
    "params_to_state_dict",
    "load_inception",
    "CONVERT_COMMAND",
    "INPUT_SIZE",
    "N_LOGITS",
    "FEATURE_DIM",
]

INPUT_SIZE = 299
N_LOGITS = 1008
FEATURE_DIM = 2048
BN_EPS = 1e-3
CONVERT_COMMAND = (
    "python -c \"import torch, numpy as np; sd = torch.load('pt_inception-2015-12-05-6726825d.pth', "
    "map_location='cpu', weights_only=True); np.savez('pt_inception-2015-12-05.npz', "
    "**{k: v.numpy() for k, v in sd.items()})\""
)

Pad = Sequence[tuple[int, int]] | str


class BatchNormInference(nn.Module):
    """Batch norm with frozen statistics: (x - mean) / sqrt(var + eps) * scale + bias.

    All four vectors live in the "params" collection: this network is only ever evaluated.
    """

    eps: float = BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.param("mean", nn.initializers.zeros, (c,))
        var = self.param("var", nn.initializers.ones, (c,))
        return (x - mean) * (scale * jax.lax.rsqrt(var + self.eps)) + bias


class BasicConv(nn.Module):
    """conv (no bias) -> batch norm -> ReLU; ``padding`` as ((top, bottom), (left, right))."""

    features: int
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: Pad = ((0, 0), (0, 0))

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(self.features, self.kernel, self.strides, padding=self.padding, use_bias=False, name="conv")(x)
        return nn.relu(BatchNormInference(name="bn")(x))


def _same(kh: int, kw: int) -> Pad:
    return ((kh // 2, kh // 2), (kw // 2, kw // 2))


def _avg3(x: jax.Array) -> jax.Array:
    # TF's average pool divides by the number of real (unpadded) pixels in the window.
    return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max3s2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=_same(5, 5), name="branch5x5_2")(b5)
        b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=_same(3, 3), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=_same(3, 3), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = BasicConv(384, (3, 3), (2, 2), name="branch3x3")(x)
        bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=_same(3, 3), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), (2, 2), name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max3s2(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.channels_7x7
        b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv(c, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv(c, (1, 7), padding=_same(1, 7), name="branch7x7_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=_same(7, 1), name="branch7x7_3")(b7)
        bd = BasicConv(c, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv(c, (7, 1), padding=_same(7, 1), name="branch7x7dbl_2")(bd)
        bd = BasicConv(c, (1, 7), padding=_same(1, 7), name="branch7x7dbl_3")(bd)
        bd = BasicConv(c, (7, 1), padding=_same(7, 1), name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, (1, 7), padding=_same(1, 7), name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, (1, 1), name="branch_pool")(_avg3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), (2, 2), name="branch3x3_2")(b3)
        b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=_same(1, 7), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=_same(7, 1), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), (2, 2), name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max3s2(x)], axis=-1)


class InceptionE(nn.Module):
    """The last two blocks; ``max_pool`` selects the FID graph's max-pool branch of block 7c."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=_same(1, 3), name="branch3x3_2a")(b3),
                              BasicConv(384, (3, 1), padding=_same(3, 1), name="branch3x3_2b")(b3)], axis=-1)
        bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=_same(3, 3), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv(384, (1, 3), padding=_same(1, 3), name="branch3x3dbl_3a")(bd),
                              BasicConv(384, (3, 1), padding=_same(3, 1), name="branch3x3dbl_3b")(bd)], axis=-1)
        pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1))) if self.max_pool else _avg3(x)
        bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3FID(nn.Module):
    """Preprocessed images (B, H, W, 3) in [-1, 1] (H, W >= 75; 299 for FID) ->
    (pool3 features (B, 2048), logits (B, 1008)). Module names follow the PyTorch state dict."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = BasicConv(32, (3, 3), (2, 2), name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=_same(3, 3), name="Conv2d_2b_3x3")(x)
        x = _max3s2(x)
        x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max3s2(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = InceptionC(128, name="Mixed_6b")(x)
        x = InceptionC(160, name="Mixed_6c")(x)
        x = InceptionC(160, name="Mixed_6d")(x)
        x = InceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        return pool3, nn.Dense(N_LOGITS, name="fc")(pool3)


def preprocess(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
    """NHWC images in [0, 1] with 1 or 3 channels -> (B, size, size, 3) in [-1, 1] (see module doc)."""
    x = jnp.asarray(images, jnp.float32)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ConfigError(f"Inception takes NHWC images with 1 or 3 channels, got shape {x.shape}.")
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    if x.shape[1:3] != (size, size):
        # Half-pixel centres, no antialias: PyTorch's bilinear interpolate with align_corners=False.
        x = jax.image.resize(x, (x.shape[0], size, size, 3), method="bilinear", antialias=False)
    return 2.0 * x - 1.0


# ---------------------------------------------------------------------------------------------
# Weights: PyTorch state dict <-> Flax params
# ---------------------------------------------------------------------------------------------

_BN_NAMES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _torch_key(path: tuple[str, ...]) -> str:
    *mods, leaf = path
    if mods and mods[-1] == "conv" and leaf == "kernel":
        return ".".join(mods + ["weight"])
    if mods and mods[-1] == "bn":
        return ".".join(mods + [_BN_NAMES[leaf]])
    if mods == ["fc"]:
        return "fc." + ("weight" if leaf == "kernel" else "bias")
    raise AssertionError(f"unmapped parameter {path}")  # a bug in this file, not a user error


def _to_torch_layout(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    if path[-1] == "kernel" and value.ndim == 4:
        return np.transpose(value, (3, 2, 0, 1))  # HWIO -> OIHW
    if path[-1] == "kernel" and value.ndim == 2:
        return value.T  # (in, out) -> (out, in)
    return value


def _from_torch_layout(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    if path[-1] == "kernel" and value.ndim == 4:
        return np.transpose(value, (2, 3, 1, 0))  # OIHW -> HWIO
    if path[-1] == "kernel" and value.ndim == 2:
        return value.T
    return value


@functools.cache
def _param_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
    # Cached: tracing the 94-layer init takes a second or two; callers only read the result.
    shapes = jax.eval_shape(InceptionV3FID().init, jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes["params"]).items()}


def params_to_state_dict(params: Any) -> dict[str, np.ndarray]:
    """Flax params of :class:`InceptionV3FID` -> PyTorch-layout state dict (numpy arrays)."""
    p = params["params"] if "params" in params else params
    return {_torch_key(k): _to_torch_layout(k, np.asarray(v)) for k, v in traverse_util.flatten_dict(p).items()}


def params_from_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """PyTorch-layout state dict (the pt_inception keys) -> Flax params ``{"params": ...}``.

    Every expected key must be present with the right shape; ``num_batches_tracked`` counters are
    ignored; any other extra key means a different network, so it is an error too.
    """
    expected = _param_shapes()
    sd = {k: np.asarray(v) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    flat, missing, bad = {}, [], []
    for path, shape in expected.items():
        key = _torch_key(path)
        if key not in sd:
            missing.append(key)
            continue
        value = _from_torch_layout(path, sd.pop(key)).astype(np.float32)
        if value.shape != shape:
            bad.append(f"{key}: {value.shape} vs expected {shape}")
        flat[path] = jnp.asarray(value)
    if missing or bad or sd:
        raise DataError(
            "This is not the pt_inception-2015-12-05 FID weights file: "
            + (f"{len(missing)} missing keys (e.g. {missing[:3]}); " if missing else "")
            + (f"wrong shapes ({bad[:3]}); " if bad else "")
            + (f"{len(sd)} unexpected keys (e.g. {sorted(sd)[:3]}); " if sd else "")
            + "pass the pytorch-fid file pt_inception-2015-12-05-6726825d.pth (or its .npz conversion).")
    return {"params": traverse_util.unflatten_dict(flat)}


def load_inception_params(path: str | os.PathLike) -> dict[str, Any]:
    """Reads the FID Inception weights from a .pth (needs torch) or an .npz of the same keys."""
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"Inception weights file {str(p)!r} does not exist. Set eval.inception_weights to the "
                        "path of pt_inception-2015-12-05-6726825d.pth (or its .npz conversion), or to None "
                        "to skip the Inception metrics.")
    if p.suffix == ".npz":
        with np.load(p) as f:
            sd = {k: f[k] for k in f.files}
    else:
        try:
            import torch
        except ImportError:
            raise DataError(f"Reading {p.name} needs PyTorch, which is not installed. Convert it once on a machine "
                            f"with torch and pass the .npz instead:\n  {CONVERT_COMMAND}") from None
        sd = {k: v.detach().cpu().numpy() for k, v in
              torch.load(str(p), map_location="cpu", weights_only=True).items()}
    return params_from_state_dict(sd)


class InceptionFeatures:
    """Batched, jitted (pool3 features, class probabilities) of NHWC images in [0, 1]."""

    def __init__(self, params: Any, *, batch_size: int = 100, size: int = INPUT_SIZE):
        self.params = params
        self.batch_size = int(batch_size)
        self.size = int(size)
        model = InceptionV3FID()

        @jax.jit
        def run(p, x):
            feats, logits = model.apply(p, preprocess(x, self.size))
            return feats, jax.nn.softmax(logits, axis=-1)

        self._run = run

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (n, H, W, C) in [0, 1] (clipped) -> (features (n, 2048), probabilities (n, 1008)), float64."""
        x = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
        feats, probs = [], []
        for i in range(0, len(x), self.batch_size):
            chunk = x[i:i + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:  # pad the last batch so every call reuses the same compiled shape
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n, *chunk.shape[1:]), np.float32)])
            f, p = self._run(self.params, jnp.asarray(chunk))
            feats.append(np.asarray(f)[:n])
            probs.append(np.asarray(p)[:n])
        return (np.concatenate(feats).astype(np.float64), np.concatenate(probs).astype(np.float64))


def load_inception(path: str | os.PathLike, *, batch_size: int = 100) -> InceptionFeatures:
    """The FID Inception network with weights from ``path`` (see :func:`load_inception_params`)."""
    return InceptionFeatures(load_inception_params(path), batch_size=batch_size)
