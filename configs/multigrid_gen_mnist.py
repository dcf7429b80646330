"""The generator-initialised multigrid of Malhotra's paper on the 5,000 bundled MNIST digits (data.name =
"mnist5k", 28x28): one energy per grid 7x7, 14x14 and 28x28, each grid's chains started at the
previous grid's samples passed through a learned up-sampling generator (taught by the chains'
ends, multigrid.generator = "teach"), the 1x1 grid sampled from the data's mean intensities.

Every step runs 30 Langevin steps (step 2, noise 0.005) on each grid in turn and lowers each grid's
energy of the down-sampled data (plus N(0, 0.015^2)) against its chain ends, with IGEBM's penalty
mean E(data)^2 + mean E(chains)^2 at weight 1 on each grid (without it the 28x28 grid's energies run
away after about 400 steps), and the input-gradient penalty multigrid.grad_l2 = 0.05 x (mean
|dE/dx|^2 at the data + at the chains' ends) on each grid. Energies: three strided 3x3
conv layers (32, 64, 128 channels; multigrid_mnist has a fourth). Adam 1e-3 (betas 0.5, 0.999) decaying to 1e-5 over 3,000
steps. --mode sample runs training's 30 steps per grid (the digits recipe's 40 over-ink the strokes).

Measured (seed 0, 300 samples, scripts/mnist_quality.py; held-out digits 0.856): recognised 0.653,
label entropy 0.996, nn ratio 1.09, FD in the judge's features 3.2, 33.6 minutes train + sample on a
slow 2-core Intel Xeon VM; two more draws from the same model (--mode sample --config.sample.seed=1,
2): 0.600 and 0.603. Since the strided layers compute only the pixels they keep (commit 2e9ef40), the
recipe run again: 0.630, 0.560 and 0.660 (mean 0.617, FD 3.0-3.1) in 22.6 minutes on a 2-core AMD
EPYC VM that ran it at the Xeon's rate, tests beside it for part of that time. With multigrid_mnist's four strided layers and 1,500 steps
(--config.multigrid.widths=32,64,128,256 --config.multigrid.strided_layers=4 --config.train.steps=1500):
0.573, 0.610 and 0.553 on three draws (mean 0.579), FD 2.9-3.1, 34.2 minutes on the same VM. With
two conv layers (32, 64; the first strided), sampled with 40 steps per
grid: recognised 0.427, label entropy 0.979, nn ratio 1.34, FD in the judge's features 11.7, 21.4
minutes train + sample on a slow 2-core Intel Xeon VM; the same model sampled with 30 steps: 0.467
and 0.460 (two draws), 0.996, 1.17, FD 3.7 and 3.5. With two layers and without the input-gradient
penalty (--config.multigrid.grad_l2=0): 0.303, 0.899, 1.48, FD 21.4, 14.7 minutes on a faster AMD
EPYC VM; with the digits recipe's 1,500 steps and no input-gradient penalty the same share, 0.293, with a larger FD, 34.5. Figures:
docs/mnist.md, docs/results.md.

    python -m ebmjax.main --config configs/multigrid_gen_mnist.py --workdir runs/multigrid_gen_mnist
    python scripts/mnist_quality.py runs/multigrid_gen_mnist/samples/samples.npz
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    # configs/multigrid_mnist.py (data, grids, penalties, sampler) with Malhotra's generator in
    # front of every grid, as configs/multigrid_gen_digits.py adds it to configs/multigrid_digits.py.
    c = load_config(str(pathlib.Path(__file__).with_name("multigrid_mnist.py")))
    c.multigrid.generator = "teach"
    # Three strided layers (32, 64, 128): multigrid_mnist's fourth, with 1,500 steps, scored 0.579 (docs/mnist.md).
    c.multigrid.widths = (32, 64, 128)
    c.multigrid.strided_layers = (3,)
    # Twice multigrid_mnist's 1,500 steps: a lower FD and no copies at 28x28 (see above).
    c.train.steps = 3000
    return c
