"""Maximum likelihood with short-run chains from noise (Nijkamp et al.'s short-run MCMC) on the
5,000 bundled MNIST digits (data.name = "mnist5k", 28x28).

Every step starts 64 chains at uniform noise and runs 40 Langevin steps x <- clamp(x - 5 dE/dx +
0.005 z) on the current energy; the loss lowers the energy of the data (plus N(0, 0.015^2)) against
that of the chain ends. The conv net of configs/ml_digits.py (16, 32 channels, LeakyReLU) at 28x28,
Adam 1e-3 (betas 0.5, 0.999) decaying to 1e-5. Samples are fresh 40-step chains from noise: the
short-run model is its own sampler. Figures: docs/mnist.md.

    python -m ebmjax.main --config configs/ml_mnist.py --workdir runs/ml_mnist
    python scripts/mnist_quality.py runs/ml_mnist/samples/samples.npz
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    # configs/ml_digits.py with the MNIST digits: every other setting is that recipe's.
    c = load_config(str(pathlib.Path(__file__).with_name("ml_digits.py")))
    c.data.name = "mnist5k"
    c.ml.sample_steps = 40  # the training chains' length: the short-run model is its own sampler
    c.sample.chunk_steps = 40
    return c
