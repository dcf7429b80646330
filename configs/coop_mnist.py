"""Cooperative learning (CoopNets: a generator initialises the energy's Langevin chains and learns
from where they end) on the 5,000 bundled MNIST digits (data.name = "mnist5k", 28x28).

Every step draws 64 latents z ~ N(0, I_16), maps them through the generator (dense -> transposed
convs 64, 32 -> tanh image), runs 20 Langevin steps x <- clamp(x - 5 dE/dx + 0.005 z) on the energy
from the generator's images, lowers the energy of the data (plus N(0, 0.015^2)) against the chain
ends and regresses the generator onto the chain ends. Energy: the conv net of configs/coop_digits.py
(16, 32 channels, LeakyReLU); both nets Adam (betas 0.5, 0.999), energy 1e-3 -> 1e-5, generator
2e-3. Samples: generator images revised by 40 Langevin steps. Figures: docs/mnist.md.

    python -m ebmjax.main --config configs/coop_mnist.py --workdir runs/coop_mnist
    python scripts/mnist_quality.py runs/coop_mnist/samples/samples.npz
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "coop"
    c.data.name = "mnist5k"
    c.model.name = "convnet"
    c.model.widths = (16, 32)
    c.model.activation = "lrelu"
    c.coop.latent_dim = 16
    c.coop.gen_widths = (64, 32)
    c.coop.gen_output = "tanh"
    c.coop.gen_lr = 2e-3
    c.coop.gen_b1, c.coop.gen_b2 = 0.5, 0.999
    c.coop.steps = 20
    c.coop.step_size = 5.0
    c.coop.noise = 0.005
    c.coop.data_noise = 0.015
    c.coop.sample_steps = 40
    c.train.steps = 2500
    c.train.batch_size = 64
    c.train.lr = 1e-3
    c.train.lr_end = 1e-5
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 500
    c.sample.n = 300
    c.sample.batch_size = 300
    c.sample.chunk_steps = 40
    c.eval.n_samples = 1000
    c.eval.select_by = "confident_share"
    return c
