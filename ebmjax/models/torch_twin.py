"""The MDSM energy ResNet in PyTorch, laid out as the original code's state dict, for side-by-side
checks and benchmarks (``python -m ebmjax.bench --compare-torch``). Needs torch (an optional extra).

:func:`torch_mdsm` builds the network of REFERENCE.md §1 (pre-activation residual blocks, ELU, mean
pooling as the average of the four strided sub-grids, learned 1x1 shortcuts, the generalised quadratic
head on the channel-major flattened map) and loads the weights of :func:`ebmjax.models.to_torch_state_dict`,
so its energies equal :class:`ebmjax.models.MDSMResNet`'s on the same images (NCHW there, NHWC here).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ebmjax.errors import ConfigError


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
