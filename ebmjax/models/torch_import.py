"""Load PyTorch MDSM checkpoints into :class:`MDSMResNet`, and write parameters back in that layout.

Key mapping (torch -> Flax; conv weights OIHW -> HWIO, linear weights (out, in) -> (in, out))::

    conv1.conv.{weight,bias}                    -> conv1/{kernel,bias}
    rbS.conv_shortcut.conv.conv.{weight,bias}   -> rbS/conv_shortcut/{kernel,bias}     (down blocks)
    rbS.conv_1.conv.weight                      -> rbS/conv_1/kernel
    rbS.conv_2.conv.conv.{weight,bias}          -> rbS/conv_2/{kernel,bias}
    rbcX.conv_shortcut.conv.{weight,bias}       -> rbcX/conv_shortcut/{kernel,bias}    (same-width)
    rbcX.conv_1.conv.weight                     -> rbcX/conv_1/kernel
    rbcX.conv_2.conv.{weight,bias}              -> rbcX/conv_2/{kernel,bias}
    ln1|ln2|lq.{weight,bias}                    -> ln1|ln2|lq/{kernel,bias}

Down blocks carry one more ``.conv`` level because the original wraps their convs in a
pooling module. The ``*.bn1.*`` / ``*.bn2.*`` LayerNorm tensors are unused (normalize=False) and dropped.
A ``module.`` prefix (checkpoints saved from ``nn.DataParallel``) is stripped.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebmjax.errors import ConfigError
from ebmjax.models.resnet import DOWNSAMPLE, NUM_STAGES, MDSMResNet

# Keys under which training scripts commonly nest the state dict inside a checkpoint dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "energy", "net")
_PREFIX = "module."
_UNUSED_NORM = re.compile(r"^[^.]+\.bn[12]\.")
_SHOW = 5  # how many offending keys an error message names


def _entries(flax_params: Mapping[str, Any]) -> Iterator[tuple[tuple[str, str], str, str, Any]]:
    """Yield (flax path, torch key, kind, leaf) for every parameter; kind is 'conv', 'linear' or 'bias'."""
    for module, leaves in flax_params.items():
        if module == "conv1":
            groups = {"": ("conv1.conv", leaves)}
        elif module in ("ln1", "ln2", "lq"):
            groups = {"": (module, leaves)}
        elif re.fullmatch(r"rbc\d+", module):
            groups = {
                sub: (f"{module}.{sub}.conv", leaves[sub]) for sub in ("conv_shortcut", "conv_1", "conv_2") if sub in leaves
            }
        elif re.fullmatch(r"rb\d+", module):
            # conv_1 of a down block is not wrapped by the pooling module, the other two are.
            groups = {
                sub: (f"{module}.{sub}.conv" + ("" if sub == "conv_1" else ".conv"), leaves[sub])
                for sub in ("conv_shortcut", "conv_1", "conv_2")
                if sub in leaves
            }
        else:
            raise ConfigError(
                f"parameter group {module!r} is not part of an MDSMResNet; to_torch_state_dict only "
                "converts MDSMResNet parameters."
            )
        for sub, (torch_prefix, group) in groups.items():
            path = (module, sub) if sub else (module,)
            for leaf_name, leaf in group.items():
                if leaf_name == "kernel":
                    kind = "linear" if module in ("ln1", "ln2", "lq") else "conv"
                    yield path + ("kernel",), f"{torch_prefix}.weight", kind, leaf
                elif leaf_name == "bias":
                    yield path + ("bias",), f"{torch_prefix}.bias", "bias", leaf
                else:
                    raise ConfigError(f"unexpected parameter {'/'.join(path + (leaf_name,))} in MDSMResNet params.")


def _flax_to_torch_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if kind == "conv":  # HWIO -> OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    if kind == "linear":  # (in, out) -> (out, in)
        return (shape[1], shape[0])
    return tuple(shape)


def _flax_to_torch_array(kind: str, a: np.ndarray) -> np.ndarray:
    if kind == "conv":
        return np.ascontiguousarray(a.transpose(3, 2, 0, 1))
    if kind == "linear":
        return np.ascontiguousarray(a.T)
    return a


def _torch_to_flax_array(kind: str, a: np.ndarray) -> np.ndarray:
    if kind == "conv":  # OIHW -> HWIO
        return a.transpose(2, 3, 1, 0)
    if kind == "linear":
        return a.T
    return a


def _unwrap_variables(params: Mapping[str, Any]) -> Mapping[str, Any]:
    return params["params"] if "params" in params and len(params) == 1 else params


def to_torch_state_dict(params: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """MDSMResNet parameters -> PyTorch MDSM state dict of float32 NumPy arrays (conv weights OIHW).

    ``params`` is the variables dict ``{'params': ...}`` (as used with ``model.apply``) or its inner
    tree. ``prefix='module.'`` reproduces checkpoints saved from ``nn.DataParallel``. The unused
    LayerNorm tensors of the original are not written (the original can load this with strict=False).
    """
    out: dict[str, np.ndarray] = {}
    for _, key, kind, leaf in _entries(_unwrap_variables(params)):
        out[prefix + key] = _flax_to_torch_array(kind, np.asarray(leaf, dtype=np.float32))
    return out


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _read_file(path: str | os.PathLike) -> Mapping[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError(f"no checkpoint file at {os.fspath(path)!r}; pass the path of a .pt/.pth file.")
    try:
        import torch
    except ImportError:
        raise ConfigError(
            f"reading {os.fspath(path)!r} needs PyTorch: `pip install torch`, or load the file elsewhere "
            "and pass load_torch_mdsm a dict mapping key -> NumPy array."
        ) from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or non-weights files
        raise ConfigError(
            f"torch.load({os.fspath(path)!r}, weights_only=True) failed ({type(e).__name__}: {e}); "
            "pass a file saved with torch.save(model.state_dict(), path)."
        ) from e
    if not isinstance(loaded, Mapping):
        raise ConfigError(
            f"{os.fspath(path)!r} holds a {type(loaded).__name__}, not a state dict; save it with "
            "torch.save(model.state_dict(), path)."
        )
    return loaded


def _normalise_state_dict(raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Unwrap, strip the DataParallel prefix, drop unused norm tensors, convert values to float32 NumPy."""
    def has_stem(d: Mapping[str, Any]) -> bool:
        return any(str(k).removeprefix(_PREFIX) == "conv1.conv.weight" for k in d)

    if not has_stem(raw):
        for wrapper in _WRAPPER_KEYS:
            if isinstance(raw.get(wrapper), Mapping) and has_stem(raw[wrapper]):
                raw = raw[wrapper]
                break

    out: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        key = str(key).removeprefix(_PREFIX)
        if _UNUSED_NORM.match(key):
            continue
        if key in out:
            raise ConfigError(
                f"key {key!r} appears both with and without the {_PREFIX!r} prefix; pass one state dict."
            )
        arr = _to_numpy(value)
        if arr.dtype.kind not in "fiu":
            raise ConfigError(f"state dict entry {key!r} is not a numeric array (got {type(value).__name__}).")
        out[key] = arr.astype(np.float32)
    return out


def _describe(keys: list[str]) -> str:
    keys = sorted(keys)
    more = f" (and {len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def load_torch_mdsm(
    state_dict_or_path: Mapping[str, Any] | str | os.PathLike, dtype: Any = jnp.float32
) -> tuple[MDSMResNet, dict[str, Any]]:
    """Build an :class:`MDSMResNet` and its variables from a PyTorch MDSM checkpoint.

    Args:
      state_dict_or_path: a mapping key -> array (NumPy arrays or torch tensors, with or without the
        ``module.`` prefix, optionally nested under 'state_dict'/'model'/...) or a ``.pt``/``.pth``
        path (needs torch).
      dtype: compute dtype of the returned model; parameters stay float32.

    Returns:
      ``(model, variables)`` with ``model.apply(variables, x_nhwc)`` equal to the original's energy
      on ``x_nchw`` (shape (B,)). Width, blocks per stage and input channels are read from the keys;
      the head size fixes the image area: (H/8)*(W/8) = ln1.weight.shape[1] / (8*width), i.e. 32x32
      for the published checkpoints.
    """
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        raw = _read_file(state_dict_or_path)
    elif isinstance(state_dict_or_path, Mapping):
        raw = state_dict_or_path
    else:
        raise ConfigError(
            f"load_torch_mdsm takes a state dict or a file path, got {type(state_dict_or_path).__name__}."
        )
    sd = _normalise_state_dict(raw)

    for key, ndim in (("conv1.conv.weight", 4), ("ln1.weight", 2)):
        if key not in sd or sd[key].ndim != ndim:
            raise ConfigError(
                f"not an MDSM ResNet state dict: needs {key!r} with {ndim} dims; keys seen: "
                f"{_describe(list(sd)) or 'none'}."
            )
    width, in_channels = sd["conv1.conv.weight"].shape[:2]
    blocks_per_stage = 0
    while any(k.startswith("rbc" + "1" * (blocks_per_stage + 1) + ".") for k in sd):
        blocks_per_stage += 1

    head_features = sd["ln1.weight"].shape[1]
    final_channels = width * 2**NUM_STAGES
    if head_features % final_channels:
        raise ConfigError(
            f"ln1.weight has {head_features} inputs, not a multiple of 8*width = {final_channels}; "
            "the checkpoint is not an MDSM ResNet or is damaged."
        )
    # Any image shape with the right area gives the same parameter shapes; prefer a square one.
    positions = head_features // final_channels
    side = math.isqrt(positions)
    hw = (side, side) if side * side == positions else (1, positions)
    example = jax.ShapeDtypeStruct((1, hw[0] * DOWNSAMPLE, hw[1] * DOWNSAMPLE, in_channels), jnp.float32)

    model = MDSMResNet(blocks_per_stage=blocks_per_stage, width=int(width), dtype=dtype)
    shapes = jax.eval_shape(model.init, jax.random.key(0), example)["params"]
    expected = {key: (path, kind, _flax_to_torch_shape(kind, leaf.shape)) for path, key, kind, leaf in _entries(shapes)}

    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [
        f"{k} {tuple(sd[k].shape)} (expected {expected[k][2]})"
        for k in expected
        if k in sd and tuple(sd[k].shape) != expected[k][2]
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_describe(wrong)}")
    if problems:
        raise ConfigError(
            f"state dict does not match an MDSM ResNet with width {width}, {blocks_per_stage} same-width "
            f"block(s) per stage and {in_channels} input channel(s): " + "; ".join(problems)
            + ". Pass the complete state dict of an MDSM Res12/Res18 energy network."
        )

    tree: dict[str, Any] = {}
    for key, (path, kind, _) in expected.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = jnp.asarray(_torch_to_flax_array(kind, sd[key]), dtype=jnp.float32)
    return model, {"params": tree}
