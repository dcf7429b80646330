"""Cooperative learning (CoopNets: a generator initialises the energy's Langevin chains and learns
from where they end) on the 5,000 bundled MNIST digits (data.name = "mnist5k", 28x28).

Every step draws 64 latents z ~ N(0, I_16), maps them through the generator (dense -> transposed
convs 64, 32 -> tanh image), runs 20 Langevin steps x <- clamp(x - 5 dE/dx + 0.005 z) on the energy
from the generator's images, lowers the energy of the data (plus N(0, 0.015^2)) against the chain
ends, with IGEBM's penalty mean E(data)^2 + mean E(chains)^2 at weight 1, and regresses the generator
onto the chain ends. Energy: the conv net of configs/coop_digits.py
(16, 32 channels, LeakyReLU); both nets Adam (betas 0.5, 0.999), energy 1e-3 -> 1e-5, generator
2e-3. Samples: generator images revised by 40 Langevin steps. Measured (seed 0, 300 samples, judged
by scripts/mnist_quality.py; held-out digits 0.856): recognised 0.417, label entropy 0.988, nn ratio
1.28, FD in the judge's features 4.4, 12.4 minutes train + sample on 2 CPU cores. Longer is worse:
with --config.train.steps=5000 the energy separates data from chains by step 900 (energies at the
penalty's optimum, -0.5 and +0.5) and the generator collapses onto one digit (a single 2: 0.950
recognised, label entropy 0.000, nn ratio 1.97, FD 87.8; 26.7 minutes). The persistent
recipe's network does not help either (--config.data.pad=2 --config.model.widths=16,32,64
--config.coop.grad_l2=0.05): 0.403 at step 1,000, then 0.387 and 0.360 as its energies separated
(0.74 steps/s on a 2-core AMD EPYC; docs/mnist.md). Time and figures of the current commit:
docs/results.md; pictures: docs/mnist.md.

    python -m ebmjax.main --config configs/coop_mnist.py --workdir runs/coop_mnist
    python scripts/mnist_quality.py runs/coop_mnist/samples/samples.npz
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    # configs/coop_digits.py with the MNIST digits: every other setting is that recipe's.
    c = load_config(str(pathlib.Path(__file__).with_name("coop_digits.py")))
    c.data.name = "mnist5k"
    # As for the other 28x28 maximum-likelihood recipes: IGEBM's penalty keeps the energies near zero.
    c.coop.energy_l2 = 1.0
    return c
