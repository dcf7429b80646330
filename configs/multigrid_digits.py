"""Multigrid maximum likelihood (Gao et al. 2018; Malhotra §IV, without its generator) on
scikit-learn's bundled 8x8 digits, grids 1x1 -> 2x2 -> 4x4 -> 8x8: the offline demo of the
multigrid method, a few minutes on 2 CPU cores.

The 1x1 grid is the mean of each training digit; each finer grid has its own small energy network
(GridEnergy: two 3x3 conv layers of 32 and 64 channels, LeakyReLU 0.2, no BatchNorm) whose chains
start from the up-sampled sample of the grid below and run 30 Langevin steps
x <- clamp(x - 2 dE/dx + 0.005 z) every training step. --mode sample runs the same cascade from
1x1 means of training batches (kept in the run's state) with 40 steps per grid, and draws
grids.png: a few chains at the end of every grid, coarse to fine.

What it measures: scripts/digits_quality.py (a classifier ebmjax does not train against: share of
samples recognised with p >= 0.9, label entropy, nearest-training-digit distance over test digits').
Measured here (seed 0, 300 samples, 2 CPU cores shared with other jobs): train + sample 2.1 minutes;
sampled with 40 steps per grid and sample.seed 40 / 41 / 42: 0.547 / 0.916 / 1.40, 0.507 / 0.872 /
1.38, 0.517 / 0.899 / 1.38 (borderline on entropy). 30 steps per grid score 0.46 / 0.98 / 1.30, 60
steps 0.36 / 0.78 / 1.65: the chains are short-run chains, best near training's length.

    python -m ebmjax.main --config configs/multigrid_digits.py --workdir runs/multigrid_digits
    python scripts/digits_quality.py runs/multigrid_digits/samples/samples.npz
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
