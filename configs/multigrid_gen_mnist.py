"""The generator-initialised multigrid of seed 000 on the 5,000 bundled MNIST digits (data.name =
"mnist5k", 28x28): one energy per grid 7x7, 14x14 and 28x28, each grid's chains started at the
previous grid's samples passed through a learned up-sampling generator (taught by the chains'
ends, multigrid.generator = "teach"), the 1x1 grid sampled from the data's mean intensities.

Every step runs 30 Langevin steps (step 2, noise 0.005) on each grid in turn and lowers each grid's
energy of the down-sampled data (plus N(0, 0.015^2)) against its chain ends. Energies: two conv
layers (32, 64 channels, kernel 3). Adam 1e-3 (betas 0.5, 0.999) decaying to 1e-5. Figures:
docs/mnist.md.

    python -m ebmjax.main --config configs/multigrid_gen_mnist.py --workdir runs/multigrid_gen_mnist
    python scripts/mnist_quality.py runs/multigrid_gen_mnist/samples/samples.npz
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "multigrid"
    c.data.name = "mnist5k"
    c.multigrid.grids = (1, 7, 14, 28)
    c.multigrid.widths = (32, 64)
    c.multigrid.kernel = 3
    c.multigrid.order = "sequential"
    c.multigrid.steps = (30,)
    c.multigrid.step_size = (2.0,)
    c.multigrid.noise = (0.005,)
    c.multigrid.sample_steps = (40,)
    c.multigrid.data_noise = 0.015
    c.multigrid.coarse_buffer = 1024
    c.multigrid.generator = "teach"  # a learned up-sampler starts every finer grid's chains
    c.multigrid.gen_lr = 1e-4
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
