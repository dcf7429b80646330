"""Energy networks: ``energy_fn = lambda x: model.apply(params, x)`` maps a batch to energies (B,).

- :class:`MDSMResNet` (``res18``, ``res12``): the MDSM paper's image energy ResNet, NHWC input.
- :func:`load_torch_mdsm` / :func:`to_torch_state_dict`: PyTorch MDSM checkpoints in and out.
- :class:`ConvEnergy`: a plain conv net with a linear read-out, for maximum-likelihood EBMs.
- :class:`GridEnergy`: the per-grid energy of the multigrid method (Gao et al.), any grid size; as
  ``model.name = "gridnet"`` the energy of any other method (strided convs: no side constraint).
- :class:`DilatedGenerator` (Malhotra's paper, image -> image) and :class:`LatentGenerator` (CoopNets, z ->
  image): generators that start Langevin chains.
- :class:`UNetEnergy`: a U-Net's residual as an energy, |x - U(x)|^2 / (2 s^2) (``model.name = "unet"``).
- :class:`MLPEnergy`: small smooth MLP for toy data; :class:`GaussianEnergy`: a learned Gaussian.
- :func:`build_model`, :func:`init_params`, :func:`count_params`: config-driven construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError
from ebmjax.models.resnet import MDSMResNet, res12, res18
from ebmjax.models.torch_import import load_torch_mdsm, to_torch_state_dict
from ebmjax.models.cfebm import ExpandingEnergy
from ebmjax.models.convnet import ConvEnergy
from ebmjax.models.generator import DilatedGenerator, LatentGenerator
from ebmjax.models.multigrid import GridEnergy
from ebmjax.models.toy import GaussianEnergy, MLPEnergy
from ebmjax.models.unet import UNetEnergy

__all__ = [
    "ConvEnergy",
    "DilatedGenerator",
    "ExpandingEnergy",
    "GaussianEnergy",
    "GridEnergy",
    "LatentGenerator",
    "MDSMResNet",
    "MLPEnergy",
    "UNetEnergy",
    "build_model",
    "count_params",
    "init_params",
    "load_torch_mdsm",
    "res12",
    "res18",
    "to_torch_state_dict",
]

MODEL_NAMES = ("mdsm_resnet", "convnet", "gridnet", "unet", "mlp", "gaussian")
# The model.* fields that fix a network's parameters: a checkpoint resumes only under the same
# values (``Method.identity`` of the methods whose network is model.*).
IDENTITY_FIELDS = ("model.name", "model.width", "model.blocks_per_stage", "model.hidden", "model.widths",
                   "model.kernel", "model.strided_layers", "model.classes", "model.scale")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _field(config: Any, name: str) -> Any:
    try:
        return config[name]
    except (KeyError, AttributeError, TypeError):
        raise ConfigError(f"model config needs the field model.{name}.") from None


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"model.{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def _widths(model_config: Any) -> tuple[int, ...]:
    """``model.widths``, checked: a non-empty tuple of channel counts (convnet, gridnet)."""
    widths = _field(model_config, "widths")
    if isinstance(widths, int) or not isinstance(widths, Sequence) or not widths:
        raise ConfigError(f"model.widths must be a tuple of channel counts such as (32, 64, 128), got {widths!r}.")
    return tuple(_positive_int(w, "widths[i]") for w in widths)


def build_model(model_config: Any) -> nn.Module:
    """Module from a config (ConfigDict or mapping) with fields ``name``, ``dtype`` ('float32' or
    'bfloat16'), ``conv`` (how convolutions are computed), ``classes`` (0: an energy (B,); K > 0: a
    classifier's logits (B, K), convnet, gridnet, mlp and mdsm_resnet) and the chosen network's own:
    ``width`` and ``blocks_per_stage`` (mdsm_resnet), ``widths`` and ``activation`` (convnet),
    ``widths``, ``kernel`` and ``strided_layers`` (gridnet), ``widths`` and ``scale`` (unet), ``hidden`` (mlp)."""
    name = _field(model_config, "name")
    if name not in MODEL_NAMES:
        raise ConfigError(f"unknown model.name {name!r}; valid names: {', '.join(MODEL_NAMES)}.")
    dtype_name = _field(model_config, "dtype")
    if dtype_name not in _DTYPES:
        raise ConfigError(f"model.dtype must be one of {', '.join(_DTYPES)}, got {dtype_name!r}.")
    dtype = _DTYPES[dtype_name]
    conv = _field(model_config, "conv")
    classes = _classes(model_config, name)
    if name == "mdsm_resnet":
        width = _positive_int(_field(model_config, "width"), "width")
        blocks = _positive_int(_field(model_config, "blocks_per_stage"), "blocks_per_stage", minimum=0)
        return MDSMResNet(blocks_per_stage=blocks, width=width, dtype=dtype, conv=conv, classes=classes)
    if name == "convnet":
        return ConvEnergy(widths=_widths(model_config), activation=_field(model_config, "activation"), dtype=dtype,
                          conv=conv, classes=classes)
    if name == "gridnet":
        return GridEnergy(widths=_widths(model_config), kernel=_positive_int(_field(model_config, "kernel"), "kernel"),
                          strided=_positive_int(_field(model_config, "strided_layers"), "strided_layers", minimum=0),
                          dtype=dtype, conv=conv, classes=classes)
    if name == "unet":
        scale = _field(model_config, "scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ConfigError(f"model.scale must be a number > 0 (the unet's residual width; MDSM: mdsm.sigma0), "
                              f"got {scale!r}.")
        return UNetEnergy(widths=_widths(model_config), scale=float(scale), dtype=dtype, conv=conv)
    if name == "gaussian":
        return GaussianEnergy()
    hidden = _field(model_config, "hidden")
    if isinstance(hidden, int) or not isinstance(hidden, Sequence):
        raise ConfigError(f"model.hidden must be a tuple of layer widths such as (128, 128), got {hidden!r}.")
    hidden = tuple(_positive_int(h, "hidden[i]") for h in hidden)
    return MLPEnergy(hidden=hidden, dtype=dtype, classes=classes)


CLASSIFIER_MODELS = ("convnet", "gridnet", "mlp", "mdsm_resnet")  # networks that give logits with model.classes > 0


def class_count(model_config: Any) -> int:
    """``model.classes``, checked: 0 (an energy network, also when the config has no such field) or a
    number of classes K >= 2 (logits f(x) (B, K) with E(x, y) = -f(x)[y])."""
    try:
        classes = model_config["classes"]
    except (KeyError, AttributeError, TypeError):
        return 0
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 0 or classes == 1:
        raise ConfigError(f"model.classes must be 0 (an energy network) or a number of classes >= 2 (a "
                          f"classifier whose logits define the energies), got {classes!r}.")
    return classes


def _classes(model_config: Any, name: str) -> int:
    """``model.classes`` (0 when the config has no such field), checked against the network."""
    classes = class_count(model_config)
    if classes and name not in CLASSIFIER_MODELS:
        raise ConfigError(f"model.classes = {classes} needs a network with a classifier read-out "
                          f"({', '.join(CLASSIFIER_MODELS)}); model.name is {name!r}.")
    return classes


def init_params(model: nn.Module, key: jax.Array, example_shape: Sequence[int]) -> dict[str, Any]:
    """Variables ``{'params': ...}`` (plain dicts) for inputs of per-example shape ``example_shape``,
    e.g. (32, 32, 3) for images (NHWC without the batch axis) or (2,) for 2-D points."""
    x = jnp.zeros((1, *example_shape), jnp.float32)
    # jit: one compiled init instead of hundreds of dispatched ops for a deep net.
    variables = jax.jit(model.init)(key, x)
    return flax.core.unfreeze(variables) if isinstance(variables, Mapping) else variables


def count_params(params: Any) -> int:
    """Number of scalars in a params PyTree (arrays or jax.ShapeDtypeStruct leaves)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
