"""A PyTorch peer on the bundled MNIST digits: the public maximum-likelihood recipe, for a time budget.

    python scripts/torch_baseline_mnist.py --seconds 1500 --out runs/torch_baseline_mnist
    python scripts/mnist_quality.py runs/torch_baseline_mnist/samples.npz

What it trains (the recipe the EBM papers publish, written here from their descriptions):

- data: the 4,500 training digits of ``mnist5k`` padded by 2 to 32x32x1 and mapped to [-1, 1], plus
  N(0, 0.03^2) noise on every batch (short-run, JEM);
- network: Nijkamp et al.'s short-run energy at 32x32: conv3x3 stride 1 (nf), then three conv4x4
  stride 2 (2 nf, 4 nf, 8 nf), then conv4x4 valid to one number f(x), LeakyReLU 0.2 between them,
  nf = 64 (``--nf``); the energy is E(x) = -f(x);
- sampler: JEM's persistent chains: a replay buffer of 10,000 images started uniform in [-1, 1];
  each step draws a batch from it, restarts 5% from fresh uniform noise, runs 20 SGLD steps
  x <- x + 1.0 df/dx + 0.01 N(0, I), and writes the ends back;
- loss and optimiser: maximum likelihood, mean f(chains) - mean f(data), Adam lr 1e-4, batch 64.

It trains until ``--seconds`` of wall-clock have passed (or ``--steps``), on ``--threads`` CPU threads
(default 2), then draws ``--n`` samples: buffer rows continued for 40 more SGLD steps (JEM's evaluation
chains), mapped back to [0, 1] and written to ``<out>/samples.npz`` (key ``images``, 32x32x1) with
``<out>/grid.png`` and ``<out>/log.json``. Needs torch (``pip install torch``); it is not a dependency
of ebmjax and nothing here is imported by it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np


def build_net(nf: int):
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, nf, 3, 1, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(nf, 2 * nf, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * nf, 4 * nf, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(4 * nf, 8 * nf, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(8 * nf, 1, 4, 1, 0))


def sgld(f, x, steps: int, step_size: float, noise: float):
    """``steps`` steps of x <- x + step_size df/dx + noise z (f: images -> (n,) scores)."""
    import torch

    x = x.detach()
    for _ in range(steps):
        x.requires_grad_(True)
        grad = torch.autograd.grad(f(x).sum(), x)[0]
        x = (x + step_size * grad + noise * torch.randn_like(x)).detach()
    return x


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1500.0, help="wall-clock budget for training")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps instead (if sooner)")
    parser.add_argument("--out", default="runs/torch_baseline_mnist")
    parser.add_argument("--nf", type=int, default=64, help="channels of the first layer (public recipe: 64)")
    parser.add_argument("--n", type=int, default=300, help="samples drawn at the end")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("torch_baseline_mnist needs PyTorch: pip install torch", file=sys.stderr)
        return 2
    from ebmjax import data, visualize

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    src = data.load_source({"name": "mnist5k", "pad": 2}, "train")
    x_data = torch.from_numpy(src.get(np.arange(len(src))).transpose(0, 3, 1, 2) * 2 - 1)
    net = build_net(args.nf)
    f = lambda x: net(x).flatten()  # noqa: E731
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    buffer = torch.rand(10_000, 1, 32, 32) * 2 - 1
    batch, t0, step, log = 64, time.perf_counter(), 0, []
    while time.perf_counter() - t0 < args.seconds and (args.steps is None or step < args.steps):
        idx = torch.from_numpy(rng.integers(0, len(buffer), batch))
        start = buffer[idx]
        fresh = torch.from_numpy(rng.random(batch) < 0.05)
        start[fresh] = torch.rand(int(fresh.sum()), 1, 32, 32) * 2 - 1
        chains = sgld(f, start, 20, 1.0, 0.01)
        buffer[idx] = chains
        x = x_data[torch.from_numpy(rng.integers(0, len(x_data), batch))]
        x = x + 0.03 * torch.randn_like(x)
        loss = f(chains).mean() - f(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 25 == 0:
            log.append({"step": step, "seconds": time.perf_counter() - t0, "loss": float(loss.detach())})
            print(f"step {step}, {log[-1]['seconds']:.0f} s, loss {float(loss.detach()):.4f}", flush=True)
    train_s = time.perf_counter() - t0
    idx = torch.from_numpy(rng.choice(len(buffer), args.n, replace=False))
    samples = sgld(f, buffer[idx], 40, 1.0, 0.01)
    images = ((samples.clamp(-1, 1) + 1) / 2).numpy().transpose(0, 2, 3, 1).astype(np.float32)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "samples.npz", images=images)
    visualize.save_image_grid(images, out / "grid.png", title=f"PyTorch short-run net + JEM buffer, {step} steps")
    (out / "log.json").write_text(json.dumps({"steps": step, "train_seconds": train_s, "nf": args.nf,
                                               "threads": args.threads, "log": log}, indent=1))
    print(f"{step} steps in {train_s:.0f} s; wrote {out / 'samples.npz'} and {out / 'grid.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
