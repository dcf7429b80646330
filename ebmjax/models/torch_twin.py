"""MDSM's energy networks in PyTorch, for side-by-side checks and benchmarks
(``python -m ebmjax.bench --compare-torch``). Needs torch (an optional extra).

- :func:`torch_mdsm` builds the original's network of REFERENCE.md §1 (pre-activation residual blocks,
  ELU, mean pooling as the average of the four strided sub-grids, learned 1x1 shortcuts, the generalised
  quadratic head on the channel-major flattened map), laid out as the original code's state dict, and
  loads the weights of :func:`ebmjax.models.to_torch_state_dict`, so its energies equal
  :class:`ebmjax.models.MDSMResNet`'s on the same images (NCHW there, NHWC here).
- :func:`torch_unet` builds :class:`ebmjax.models.UNetEnergy` the way one would write it in PyTorch
  (``nn.Conv2d``, ``F.silu``, ``F.avg_pool2d``, nearest up-sampling), with the weights of
  :func:`unet_state_dict`.
- :func:`torch_twin` picks the one a model config names and hands it an initialised ebmjax network's
  weights.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from ebmjax.errors import ConfigError
from ebmjax.models.torch_import import _flax_to_torch_array, to_torch_state_dict


def _torch():
    try:
        import torch
    except ImportError:
        raise ConfigError("The PyTorch twin needs torch: `pip install torch` (a CPU build is enough), "
                          "or leave out --compare-torch.") from None
    return torch


def torch_mdsm(state_dict: Mapping[str, np.ndarray], device: str = "cpu") -> Any:
    """A ``torch.nn.Module`` mapping NCHW images (B, C, H, W) to energies (B,), with the weights of
    ``state_dict`` (keys as :func:`ebmjax.models.to_torch_state_dict` writes them)."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    def pool(x):
        return (x[:, :, ::2, ::2] + x[:, :, 1::2, ::2] + x[:, :, ::2, 1::2] + x[:, :, 1::2, 1::2]) / 4

    class Conv(nn.Module):  # keys <name>.conv.{weight,bias}
        def __init__(self, cin, cout, k, bias=True):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)

        def forward(self, x):
            return self.conv(x)

    class PoolConv(nn.Module):  # mean pool, then conv; keys <name>.conv.conv.*
        def __init__(self, cin, cout, k):
            super().__init__()
            self.conv = Conv(cin, cout, k)

        def forward(self, x):
            return self.conv(pool(x))

    class ConvPool(nn.Module):  # conv, then mean pool; keys <name>.conv.conv.*
        def __init__(self, cin, cout, k):
            super().__init__()
            self.conv = Conv(cin, cout, k)

        def forward(self, x):
            return pool(self.conv(x))

    class Block(nn.Module):
        def __init__(self, cin, cout, down):
            super().__init__()
            self.conv_shortcut = PoolConv(cin, cout, 1) if down else Conv(cin, cout, 1)
            self.conv_1 = Conv(cin, cin, 3, bias=False)
            self.conv_2 = ConvPool(cin, cout, 3) if down else Conv(cin, cout, 3)

        def forward(self, x):
            return self.conv_shortcut(x) + self.conv_2(F.elu(self.conv_1(F.elu(x))))

    class Net(nn.Module):
        def __init__(self, c, d, n, features):
            super().__init__()
            self.conv1 = Conv(c, d, 3)
            self.names = []
            f = d
            for s in range(1, 4):
                setattr(self, f"rb{s}", Block(f, 2 * f, True))
                self.names.append(f"rb{s}")
                f *= 2
                for k in range(1, n + 1):
                    name = "rbc" + str(s) * k
                    setattr(self, name, Block(f, f, False))
                    self.names.append(name)
            self.ln1, self.ln2, self.lq = (nn.Linear(features, 1) for _ in range(3))

        def forward(self, x):
            x = self.conv1(x)
            for name in self.names:
                x = getattr(self, name)(x)
            h = x.reshape(x.shape[0], -1)
            return (self.ln1(h) * self.ln2(h) + self.lq(h * h))[:, 0]

    if "conv1.conv.weight" not in state_dict or "ln1.weight" not in state_dict:
        raise ConfigError("torch_mdsm needs an MDSM ResNet state dict (see ebmjax.models.to_torch_state_dict).")
    d, c = state_dict["conv1.conv.weight"].shape[:2]
    n = 0
    while f"rbc{'1' * (n + 1)}.conv_1.conv.weight" in state_dict:
        n += 1
    net = Net(int(c), int(d), n, int(state_dict["ln1.weight"].shape[1]))
    net.load_state_dict({k: torch.from_numpy(np.array(v, np.float32)) for k, v in state_dict.items()})
    return net.to(device)


def unet_state_dict(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """:class:`ebmjax.models.UNetEnergy` parameters (the variables dict or its inner tree) -> a PyTorch
    state dict of float32 NumPy arrays: ``<conv>.weight`` (O, I, kh, kw) and ``<conv>.bias``, one
    entry per convolution, named as in the Flax tree (``down0_0``, ..., ``up0_1``, ``out``)."""
    tree = params.get("params", params)
    out: dict[str, np.ndarray] = {}
    for name, leaves in tree.items():
        if set(leaves) != {"kernel", "bias"} or np.ndim(leaves["kernel"]) != 4:
            raise ConfigError(f"parameter group {name!r} is not a convolution of a UNetEnergy; unet_state_dict "
                              "takes the parameters of ebmjax.models.UNetEnergy.")
        out[f"{name}.weight"] = _flax_to_torch_array("conv", np.asarray(leaves["kernel"], np.float32))
        out[f"{name}.bias"] = np.asarray(leaves["bias"], np.float32)
    return out


def torch_unet(state_dict: Mapping[str, np.ndarray], scale: float, device: str = "cpu") -> Any:
    """A ``torch.nn.Module`` mapping NCHW images (B, C, H, W) to the energies |x - U(x)|^2 / (2 scale^2)
    (B,) of :class:`ebmjax.models.UNetEnergy`, with the weights of ``state_dict`` (keys as
    :func:`unet_state_dict` writes them; the levels and widths are read from it)."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional
    levels = 0
    while f"down{levels}_0.weight" in state_dict:
        levels += 1
    if not levels or "out.weight" not in state_dict:
        raise ConfigError("torch_unet needs a UNetEnergy state dict (see ebmjax.models.torch_twin.unet_state_dict).")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            for key, w in state_dict.items():
                name = key.rsplit(".", 1)[0]
                if key.endswith(".weight"):
                    o, i, kh, _ = w.shape
                    self.add_module(name, nn.Conv2d(i, o, kh, padding=kh // 2))

        def pair(self, h, name):
            for j in range(2):
                h = F.silu(getattr(self, f"{name}_{j}")(h))
            return h

        def forward(self, x):
            h, skips = x, []
            for i in range(levels):
                h = self.pair(F.avg_pool2d(h, 2) if i else h, f"down{i}")
                skips.append(h)
            for i in range(levels - 2, -1, -1):
                h = self.pair(torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), skips[i]], dim=1), f"up{i}")
            return ((x - self.out(h)) ** 2).flatten(1).sum(1) / (2.0 * scale**2)

    net = Net()
    net.load_state_dict({k: torch.from_numpy(np.array(v, np.float32)) for k, v in state_dict.items()})
    return net.to(device)


# model.name -> (its model config, its ebmjax variables, device) -> the torch module with those weights
TORCH_TWINS = {
    "mdsm_resnet": lambda cfg, params, device: torch_mdsm(to_torch_state_dict(params), device),
    "unet": lambda cfg, params, device: torch_unet(unet_state_dict(params), float(cfg.scale), device),
}


def torch_twin(model_cfg: Any, params: Mapping[str, Any], device: str = "cpu") -> Any:
    """The PyTorch twin of the energy network ``model_cfg`` builds (a ``model.name`` of
    :data:`TORCH_TWINS`), with the weights ``params`` of that ebmjax network (its variables dict)."""
    if model_cfg.name not in TORCH_TWINS:
        raise ConfigError(f"there is a PyTorch twin of the networks {' and '.join(TORCH_TWINS)}, not of model "
                          f"{model_cfg.name!r}; time it alone (leave out --compare-torch).")
    return TORCH_TWINS[model_cfg.name](model_cfg, jax.device_get(params), device)
