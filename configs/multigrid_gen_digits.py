"""Malhotra's modified multigrid on scikit-learn's bundled 8x8 digits: configs/multigrid_digits.py
(grids 1x1 -> 2x2 -> 4x4 -> 8x8, one GridEnergy per grid) with a generator G in front of every
grid's chain, which starts from the up-sampled G(previous grid's sample). G is Malhotra's
dilated-convolution network (DilatedGenerator: conv3x3 -> conv3x3 dilation 2 -> six dilated branches
-> 1x1 conv -> ReLU), learned jointly by MCMC teaching (multigrid.generator = "teach": G's proposal
pulled towards each grid's revised samples; "autoencode" is the seed's other reading).

G works on the coarser grid and its output is up-sampled by pixel replication (the seed's step 4:
"the upscaled version of G(Y^(s-1))"), so a proposal is block-constant at the finer grid: G moves
the coarse picture, the finer grid's chain draws the detail. grids.png shows G's proposal above each
grid's chain end. G's Adam: CoopNets' generator settings (lr 1e-4, beta1 0.5, sigma_g 0.3).

What it measures: scripts/digits_quality.py (recognised with p >= 0.9, label entropy, nearest-
training-digit distance over test digits'). Measured here (training seed 0, 300 samples, sample.seed
0 / 1 / 2; 2 CPU cores, train + sample about 2 minutes):
teach, gen_lr 1e-4 (this config): 0.543 / 0.507 / 0.553, entropy 0.91 / 0.92 / 0.91, 1.42x / 1.45x / 1.39x;
teach, gen_lr 1e-3: 0.497 / 0.453 / 0.457, entropy 0.97 / 0.93 / 0.94;
autoencode, gen_lr 1e-3: 0.607 / 0.537 / 0.577, entropy 0.90 / 0.92 / 0.90;
autoencode, gen_lr 1e-4 (sample.seed 0): 0.557, entropy 0.91.
Without the generator (configs/multigrid_digits.py): 0.547 / 0.507 / 0.517.

    python -m ebmjax.main --config configs/multigrid_gen_digits.py --workdir runs/multigrid_gen_digits
    python scripts/digits_quality.py runs/multigrid_gen_digits/samples/samples.npz
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "multigrid"
    c.data.name = "digits"
    c.multigrid.grids = (1, 2, 4, 8)
    c.multigrid.widths = (32, 64)
    c.multigrid.kernel = 3
    c.multigrid.order = "sequential"
    c.multigrid.steps = (30,)
    c.multigrid.step_size = (2.0,)
    c.multigrid.noise = (0.005,)
    c.multigrid.sample_steps = (40,)
    c.multigrid.data_noise = 0.015
    c.multigrid.coarse_buffer = 1024
    c.multigrid.generator = "teach"
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
    c.sample.chunk_steps = 60
    c.eval.n_samples = 1000
    c.eval.select_by = "confident_share"
    return c
