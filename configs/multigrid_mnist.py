"""The multigrid method (Gao et al. 2018) on the 5,000 bundled MNIST digits (data.name =
"mnist5k", 28x28): one energy per grid 7x7, 14x14 and 28x28, each grid's chains started at the
previous grid's samples up-sampled, the 1x1 grid sampled from the data's mean intensities.

Every step runs 30 Langevin steps (step 2, noise 0.005) on each grid in turn and lowers each grid's
energy of the down-sampled data (plus N(0, 0.015^2)) against its chain ends, with IGEBM's penalty
mean E(data)^2 + mean E(chains)^2 at weight 1 on each grid (without it the 28x28 grid's energies run
away after about 400 steps), and the input-gradient penalty multigrid.grad_l2 = 0.05 x (mean |dE/dx|^2
at the data + at the chains' ends) on each grid. Energies: four 3x3 conv layers (32, 64, 128, 256
channels), each strided while the map's side is at least 4 (28 -> 14 -> 7 -> 4 -> 2 on the finest
grid), then a dense read-out. Adam 1e-3
(betas 0.5, 0.999) decaying to 1e-5 over 1,500 steps. --mode sample runs training's 30 steps per
grid: the digits recipe's 40 thicken the strokes at 28x28 (mean ink 0.17-0.19 against the data's
0.13) and double the Frechet distance.

What each change bought (seed 0, 300 samples, scripts/mnist_quality.py; docs/mnist.md measures each):
the digits recipe's two layers (32, 64; the first strided) over 1,500 steps, sampled with 40 steps
per grid, 0.437-0.477 recognised, FD 8.4-8.7; the same model sampled with 30 steps, 0.470 and 0.447
(two draws), FD 3.7 and 3.3; three strided layers, 1,500 steps, 30 steps: 0.563, 0.523, 0.503 (three
draws), FD 3.2-3.5, 17.0 minutes train + sample on a 2-core Intel Xeon VM; the same over 3,000
steps, 0.553, 0.510, 0.547, FD 3.6-4.0, in twice the time (34.6 minutes); four strided layers (this
recipe), 0.587, 0.550, 0.617 (three draws, mean 0.585), FD 3.3-3.5, 25.4 and 31.9 minutes train +
sample on the same VM (two runs, identical samples; the VM's speed varied). Since the strided layers
compute only the pixels they keep (commit 2e9ef40) the recipe trains 2.2 times as fast: run again,
0.597, 0.570, 0.557 (mean 0.575), FD 2.9-3.3, in 17.5 minutes train + sample on a 2-core AMD EPYC
VM that ran it at the Xeon's rate (0.580 over the six draws of the two runs). A fifth layer on the 2x2
map (--config.multigrid.widths=32,64,128,256,256): 0.547, 0.617, 0.623 (mean 0.596), FD 3.8-4.3, in
28.9 minutes; not adopted. Twice the input-gradient
penalty (--config.multigrid.grad_l2=0.1): 0.580, 0.570, 0.583 (mean 0.578), FD 2.9-3.5, not adopted.
This recipe's own run:
docs/results.md.

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
    # Smoother energies, cleaner strokes: 0.437 recognised against 0.353 without, with the digits' two
    # layers (docs/mnist.md).
    c.multigrid.grad_l2 = 0.05
    # A larger receptive field: four strided layers, 31x31 pixels per feature (the digits' two, one
    # strided, 7x7: 0.46 recognised; three strided, 15x15: 0.53; four: 0.585; means of the draws, all
    # after 1,500 steps and sampled with 30 steps per grid).
    c.multigrid.widths = (32, 64, 128, 256)
    c.multigrid.strided_layers = (4,)
    # Training's 30 steps per grid; the digits recipe's 40 over-ink the strokes at 28x28.
    c.multigrid.sample_steps = (30,)
    c.sample.chunk_steps = 30
    return c
