"""The multigrid method (Gao et al. 2018) on the 5,000 bundled MNIST digits (data.name =
"mnist5k", 28x28): one energy per grid 7x7, 14x14 and 28x28, each grid's chains started at the
previous grid's samples up-sampled, the 1x1 grid sampled from the data's mean intensities.

Every step runs 30 Langevin steps (step 2, noise 0.005) on each grid in turn and lowers each grid's
energy of the down-sampled data (plus N(0, 0.015^2)) against its chain ends, with IGEBM's penalty
mean E(data)^2 + mean E(chains)^2 at weight 1 on each grid (without it the 28x28 grid's energies run
away after about 400 steps), and the input-gradient penalty multigrid.grad_l2 = 0.05 x (mean |dE/dx|^2
at the data + at the chains' ends) on each grid (without it: 0.353 of 300 samples recognised, label
entropy 0.926, FD 14.5, thick speckled strokes; with it 0.437, 0.971, FD 8.4, cleaner strokes, in
the results page's run, and 0.477 in another; seed 0). Energies: two conv layers (32, 64 channels,
kernel 3). Adam 1e-3 (betas 0.5, 0.999) decaying to 1e-5 over 1,500 steps. Neither training
longer, a network twice as wide nor chains twice as long does better (docs/mnist.md measures each).
Figures: docs/mnist.md, docs/results.md.

    python -m ebmjax.main --config configs/multigrid_mnist.py --workdir runs/multigrid_mnist
    python scripts/mnist_quality.py runs/multigrid_mnist/samples/samples.npz
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    # configs/multigrid_digits.py with the MNIST digits: every other setting is that recipe's.
    c = load_config(str(pathlib.Path(__file__).with_name("multigrid_digits.py")))
    c.data.name = "mnist5k"
    c.multigrid.grids = (1, 7, 14, 28)
    # Without a penalty on the energies' size the 28x28 grid's energies run away after ~400 steps
    # (docs/mnist.md); IGEBM's penalty keeps them near zero.
    c.multigrid.energy_l2 = 1.0
    # Smoother energies, cleaner strokes: 0.437 recognised against 0.353 without (docs/mnist.md).
    c.multigrid.grad_l2 = 0.05
    c.sample.chunk_steps = 40
    return c
