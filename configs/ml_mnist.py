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

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "ml"
    c.data.name = "mnist5k"
    c.model.name = "convnet"
    c.model.widths = (16, 32)
    c.model.activation = "lrelu"
    c.ml.init = "noise"
    c.ml.noise_init = "uniform"
    c.ml.steps = 40
    c.ml.step_size = 5.0
    c.ml.noise = 0.005
    c.ml.data_noise = 0.015
    c.ml.sample_steps = 40
    c.ml.sample_from = "noise"
    c.train.steps = 1500
    c.train.batch_size = 64
    c.train.lr = 1e-3
    c.train.lr_end = 1e-5
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 50
    c.train.checkpoint_every = 500
    c.sample.n = 300
    c.sample.batch_size = 300
    c.sample.chunk_steps = 40
    c.eval.n_samples = 1000
    c.eval.select_by = "confident_share"
    return c
