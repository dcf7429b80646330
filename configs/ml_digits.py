"""Maximum likelihood with short-run Langevin chains from noise (Nijkamp et al. 2019) on scikit-learn's
bundled 8x8 digits: the offline demo of the ml method, about 3 minutes on 2 CPU cores.

Every training step starts 64 chains from uniform noise, runs 40 Langevin steps
x <- clamp(x - 5 dE/dx + 0.005 z) on the current energy and lowers the energy of the data (plus
N(0, 0.015^2) noise) against that of the chains' ends. The energy is a small conv net (two stages of
16 and 32 channels, LeakyReLU, as in the short-run paper's net). --mode sample runs the same chains
from noise, for 120 steps rather than training's 40: the longer chains end on cleaner digits.

What it measures: the samples' quality judged by scripts/digits_quality.py, a classifier ebmjax does
not train against (share of samples it recognises with p >= 0.9; real test digits 0.73, noise 0.05),
the entropy of its labels (1 = all ten classes equally often) and the distance to the nearest
training digit over that of test digits (nn_ratio; 1 = as new as held-out digits). Measured here
(300 samples, seed 0, 2 CPU cores shared with another job): confident share 0.737, label entropy
0.944, nn_ratio 1.04, train + sample 3.5 minutes; with --config.seed=1: 0.763, 0.926, 1.03. On the
same checkpoint, sampling for training's 40 steps scores 0.44, 200 steps 0.80 but entropy 0.90.
Nijkamp et al.'s public recipe on the same data and cores reaches 0.46 (issue 12).

    python -m ebmjax.main --config configs/ml_digits.py --workdir runs/ml_digits
    python scripts/digits_quality.py runs/ml_digits/samples/samples.npz
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "ml"
    c.data.name = "digits"
    c.model.name = "convnet"
    c.model.widths = (16, 32)
    c.model.activation = "lrelu"
    c.ml.init = "noise"
    c.ml.noise_init = "uniform"
    c.ml.steps = 40
    c.ml.step_size = 5.0
    c.ml.noise = 0.005
    c.ml.data_noise = 0.015  # the short-run paper's 0.03 on [-1, 1]
    c.ml.sample_steps = 120
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
    c.sample.chunk_steps = 60
    c.eval.n_samples = 1000
    c.eval.select_by = "confident_share"
    return c
