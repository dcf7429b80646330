"""Import a published MDSM PyTorch checkpoint and sample it with annealed Langevin and the denoising jump.

``ebmjax.models.load_torch_mdsm`` builds the MDSM ResNet (depth, width, channels and image size read
from the state dict's keys and shapes) and its Flax parameters; ``model.apply(params, x_nhwc)`` then
equals the original's energy of the same images in NCHW. This script samples the imported energy as
the paper does: chains start at 0.5 + N(0, 1), run annealed Langevin x <- x - (eps^2/2) dE/dx +
eps sqrt(T_k) z over the paper's temperature schedule (``ebmjax.schedules.annealing_schedule``:
``n_hot`` steps at T = t_max, ``n_anneal`` cooling to 1, ``n_cool`` to 0), and finish with the
denoising jump x - sigma0^2 dE/dx (``ebmjax.samplers.denoise_jump``). The chain is the ``ula`` kernel
run by ``samplers.run_chain_chunked``, which prints progress; ``samplers.annealed_langevin(energy, x0,
key, temperatures=temps, step_size=eps)`` runs the same chain in one call.

The checkpoint: a ``.pt``/``.pth`` file saved with ``torch.save(model.state_dict(), path)`` (reading it
needs ``pip install torch``), or an ``.npz`` of the same state dict as NumPy arrays, which needs no
torch (``np.savez(path, **{k: v.numpy() for k, v in state_dict.items()})``). The published CIFAR-10
checkpoint is a Res18 of width 128 on 32x32x3 images (62 million parameters): one Langevin step of
16 chains takes about 2.8 s on 2 CPU cores. The defaults are therefore a shortened schedule (50 hot,
200 annealing, 50 cooling steps) for 4 chains, a few minutes on a CPU; the paper's schedule (500 /
2000 / 200) is for an accelerator:

    python examples/import_mdsm_torch.py --checkpoint cifar10_270000.pt --out runs/import_mdsm
    python examples/import_mdsm_torch.py --checkpoint state_dict.npz --n 64 --n-hot 500 --n-anneal 2000 --n-cool 200

It writes ``grid.png`` (the samples) and ``samples.npz`` (``images``: the samples, NHWC; ``energies``:
the imported model's energies of them; ``x_before_jump``: the chains' ends before the jump).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time

import jax
import numpy as np

from ebmjax import samplers, schedules
from ebmjax.models import load_torch_mdsm
from ebmjax.visualize import save_image_grid

DOWNSAMPLE = 8  # the MDSM ResNet halves the image three times


def read_state_dict(path: str):
    """A path load_torch_mdsm reads itself (.pt/.pth, needs torch), or a dict of arrays from a .npz."""
    if path.endswith(".npz"):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    return path


def image_shape(params, image_size: int | None) -> tuple[int, int, int]:
    """(H, W, C) the imported network takes: C from the first convolution, H*W from the head's size."""
    p = params["params"]
    in_channels, width = p["conv1"]["kernel"].shape[2:]
    positions = p["ln1"]["kernel"].shape[0] // (width * DOWNSAMPLE)  # (H/8) * (W/8) positions, 8*width channels
    side = image_size // DOWNSAMPLE if image_size else math.isqrt(positions)
    if side * side != positions:
        raise SystemExit(f"the head has {positions} positions, not (--image-size/8)^2; pass --image-size")
    return side * DOWNSAMPLE, side * DOWNSAMPLE, int(in_channels)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help=".pt/.pth (needs torch) or .npz of the state dict")
    p.add_argument("--n", type=int, default=4, help="chains (samples)")
    p.add_argument("--n-hot", type=int, default=50, help="steps at t_max (paper: 500)")
    p.add_argument("--n-anneal", type=int, default=200, help="steps cooling from t_max to t_min (paper: 2000)")
    p.add_argument("--n-cool", type=int, default=50, help="steps from t_min to 0 (paper: 200)")
    p.add_argument("--t-max", type=float, default=100.0)
    p.add_argument("--t-min", type=float, default=1.0)
    p.add_argument("--step-size", type=float, default=0.02, help="Langevin epsilon (paper: 0.02)")
    p.add_argument("--sigma0", type=float, default=0.1, help="training noise level, for the denoising jump")
    p.add_argument("--chunk", type=int, default=50, help="steps per compiled chunk (progress lines)")
    p.add_argument("--image-size", type=int, help="side of the images, if the head's size is not a square")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/import_mdsm", help="folder for grid.png and samples.npz")
    args = p.parse_args(argv)

    model, params = load_torch_mdsm(read_state_dict(args.checkpoint))
    shape = image_shape(params, args.image_size)
    n_params = sum(a.size for a in jax.tree.leaves(params))
    print(f"imported an MDSM ResNet: width {model.width}, {model.blocks_per_stage} same-width block(s) per "
          f"stage, {n_params:,} parameters, images {shape[0]}x{shape[1]}x{shape[2]} (NHWC)")

    # Energies as a jax.tree_util.Partial, so the parameters are an argument of the compiled chunks.
    energy = jax.tree_util.Partial(model.apply, params)
    temps = schedules.annealing_schedule("exp", t_max=args.t_max, t_min=args.t_min, n_hot=args.n_hot,
                                         n_anneal=args.n_anneal, n_cool=args.n_cool)
    k_init, k_chain = jax.random.split(jax.random.PRNGKey(args.seed))
    x0 = 0.5 + jax.random.normal(k_init, (args.n, *shape))
    start = time.perf_counter()

    def progress(done, state, trace):
        e = float(trace.record.energy[-1].mean())
        print(f"  step {done:5d}/{len(temps)}  T = {float(temps[done - 1]):8.3f}  mean energy {e:+.4g}  "
              f"{time.perf_counter() - start:6.1f} s", flush=True)

    print(f"annealed Langevin: {args.n} chains, {len(temps)} steps (hot {args.n_hot}, anneal {args.n_anneal}, "
          f"cool {args.n_cool}), eps = {args.step_size}")
    state, _ = samplers.run_chain_chunked(samplers.ula, energy, samplers.ula.init(x0), k_chain, temperatures=temps,
                                          step_sizes=args.step_size, chunk_size=args.chunk, on_chunk=progress)
    @jax.jit
    def finish(energy, x, sigma0):  # the denoising jump, and the energies of its results
        images = samplers.denoise_jump(energy, x, sigma0)
        return images, energy(images)

    images, energies = finish(energy, state.position, args.sigma0)
    images, energies, x_end = np.asarray(images), np.asarray(energies), np.asarray(state.position)
    print(f"after the denoising jump (sigma0 = {args.sigma0}): pixel range [{images.min():.3f}, {images.max():.3f}], "
          f"mean {images.mean():.3f}; energies mean {energies.mean():+.4g}, min {energies.min():+.4g}, "
          f"max {energies.max():+.4g}")
    if not np.all(np.isfinite(images)):
        raise SystemExit("the samples are not finite: lower --step-size")

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_image_grid(images, out / "grid.png", title=f"{pathlib.Path(args.checkpoint).name}: {len(temps)} steps")
    np.savez(out / "samples.npz", images=images, energies=energies, x_before_jump=x_end)
    print(f"wrote {out / 'grid.png'} and {out / 'samples.npz'} in {time.perf_counter() - start:.1f} s")
    return {"images": images, "energies": energies}


if __name__ == "__main__":
    main()
