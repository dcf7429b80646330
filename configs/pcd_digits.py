"""Maximum likelihood with persistent chains in a replay buffer (persistent contrastive divergence,
as in IGEBM and JEM) on scikit-learn's bundled 8x8 digits: about 3 minutes on 2 CPU cores.

Every training step draws 64 chains from a buffer of 2,000 past chain ends (each restarted from
uniform noise with probability 5%), runs 20 Langevin steps x <- clamp(x - 5 dE/dx + 0.005 z) on the
current energy, writes the ends back, and lowers the energy of the data (plus N(0, 0.015^2) noise)
against that of the chains. Each row is drawn about 80 times over the run; with 5% restarts a chain
lives about 20 draws (400 Langevin steps) on average. The energy is the same small conv net as configs/ml_digits.py. --mode sample continues
rows of the buffer for 600 more steps (ml.sample_from = "buffer").

What it measures: the samples' quality judged by scripts/digits_quality.py (see
configs/ml_digits.py). Measured here (300 samples, seed 0, 2 CPU cores shared with another job):
confident share 0.74, label entropy 0.983, nn_ratio 1.07, train + sample 3.75 minutes (2.6 with the
cores less busy); with --config.seed=1: 0.697, 0.987, 1.07. On the same checkpoint, 40 more steps
from the buffer score 0.59, 200 steps 0.66; fresh chains from noise only 0.49 after 200. The public
short-run network with JEM's persistent sampler on the same data and cores reaches 0.60 (issue 12).

    python -m ebmjax.main --config configs/pcd_digits.py --workdir runs/pcd_digits
    python scripts/digits_quality.py runs/pcd_digits/samples/samples.npz
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "ml"
    c.data.name = "digits"
    c.model.name = "convnet"
    c.model.widths = (16, 32)
    c.model.activation = "lrelu"
    c.ml.init = "buffer"
    c.ml.buffer_size = 2000
    c.ml.reinit_prob = 0.05
    c.ml.noise_init = "uniform"
    c.ml.steps = 20
    c.ml.step_size = 5.0
    c.ml.noise = 0.005
    c.ml.data_noise = 0.015
    c.ml.sample_steps = 600
    c.ml.sample_from = "buffer"
    c.train.steps = 2500
    c.train.batch_size = 64
    c.train.lr = 1e-3
    c.train.lr_end = 1e-5
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 50
    c.train.checkpoint_every = 500
    c.sample.n = 300
    c.sample.batch_size = 300
    c.sample.chunk_steps = 100
    c.eval.n_samples = 1000
    c.eval.select_by = "confident_share"
    return c
