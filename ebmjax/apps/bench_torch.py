"""The PyTorch side of ``python -m ebmjax.bench --compare-torch``: the config's MDSM network written in
PyTorch (``ebmjax.models.torch_twin``: the original code's ResNet, or the U-Net energy) with ebmjax's
own weights, timed on the same inputs in the same process, interleaved with ebmjax so that both see
the same machine load.

``torch_train_call`` is the original's training step (noisy copies, energy, input gradient with
``create_graph=True``, the MDSM loss, backward, Adam); ``torch_langevin_call`` runs ``chunk`` Langevin
steps (energy, input gradient, update) on a batch of chains. Both block until the device is done.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np

from ebmjax.models.torch_twin import _torch
from ebmjax.parallel import usable_cores


def torch_device(platform: str) -> str:
    """'cuda' when JAX runs on a GPU and torch sees one, else 'cpu'."""
    torch = _torch()
    return "cuda" if platform == "gpu" and torch.cuda.is_available() else "cpu"


def setup_threads() -> int:
    """Gives torch as many CPU threads as this process may use (XLA's default), and returns it."""
    torch = _torch()
    n = usable_cores()
    torch.set_num_threads(n)
    return n


def _sync(device: str) -> None:
    if device == "cuda":
        _torch().cuda.synchronize()


def torch_train_call(net: Any, x: np.ndarray, sigmas: np.ndarray, sigma0: float, lr: float,
                     betas: tuple[float, float], eps: float, device: str) -> Callable[[], None]:
    """One MDSM training step of the original per call on the torch module ``net`` (its parameters are
    trained in place), on the batch ``x`` (NHWC, converted to NCHW)."""
    torch = _torch()
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=betas, eps=eps)
    xt = torch.from_numpy(np.array(np.transpose(x, (0, 3, 1, 2)))).to(device)  # a writable copy
    sig = torch.from_numpy(np.array(sigmas, np.float32)).to(device).view(-1, 1, 1, 1)  # a writable copy

    def call() -> None:
        noisy = (xt + sig * torch.randn_like(xt)).requires_grad_(True)
        e = net(noisy)
        (g,) = torch.autograd.grad(e.sum(), noisy, create_graph=True)
        loss = (((xt - noisy + sigma0**2 * g) ** 2).sum(dim=(1, 2, 3)) / sig.view(-1) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)

    return call


def torch_langevin_call(net: Any, x0: np.ndarray, step_size: float, chunk: int, device: str) -> Callable[[], None]:
    """``chunk`` Langevin steps x <- x - (eps^2/2) dE/dx + eps z per call (temperature 1) on the energy
    of the torch module ``net``."""
    torch = _torch()
    for p in net.parameters():
        p.requires_grad_(False)
    box = [torch.from_numpy(np.array(np.transpose(x0, (0, 3, 1, 2)))).to(device)]

    def call() -> None:
        x = box[0]
        for _ in range(chunk):
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(net(x).sum(), x)
            x = x.detach() - 0.5 * step_size**2 * g + step_size * torch.randn_like(x)
        box[0] = x.detach()
        _sync(device)

    return call


def interleaved(calls: Mapping[str, Callable[[], Any]], *, rounds: int, min_seconds: float,
                min_calls: int) -> dict[str, np.ndarray]:
    """Seconds per call of each function, measured in ``rounds`` alternating rounds (each function
    warmed up twice first). Each round times a function for about min_seconds / rounds, at least
    ``min_calls`` calls; alternating keeps a change in the machine's load from favouring one side."""
    for call in calls.values():
        call()
        call()
    per_round = max(min_seconds / rounds, 1e-3)
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            n, t0 = 0, time.perf_counter()
            while n < min_calls or time.perf_counter() - t0 < per_round:
                call()
                n += 1
            out[name].append((time.perf_counter() - t0) / n)
    return {k: np.asarray(v) for k, v in out.items()}
