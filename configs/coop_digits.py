"""Cooperative learning (CoopNets: a generator proposes, the energy revises with Langevin, the generator
learns from the revision) on scikit-learn's bundled 8x8 digits: the offline demo of the coop method,
about 3 minutes on 2 CPU cores.

Every training step draws 64 z ~ N(0, I_16); the generator (z -> dense 2x2x64 -> transposed convs
4x4x32 -> 8x8x1, tanh onto [0, 1]) proposes g(z); 20 Langevin steps x <- clamp(x - 5 dE/dx + 0.005 z)
on the current energy revise them; the energy (the ml demo's small conv net: 16 and 32 channels,
LeakyReLU) lowers the energy of the data (plus N(0, 0.015^2) noise) against the revised samples'; the
generator moves g(z) towards them. --mode sample draws fresh proposals and revises them with the same
Langevin for coop.sample_steps steps.

    python -m ebmjax.main --config configs/coop_digits.py --workdir runs/coop_digits
    python scripts/digits_quality.py runs/coop_digits/samples/samples.npz
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "coop"
    c.data.name = "digits"
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
