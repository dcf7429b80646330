"""Maximum likelihood with persistent chains on a 2-D toy density (eight Gaussians by default; try
--config.data.name=toy:rings, toy:checkerboard, toy:two_moons). Writes the same picture of the
learned density beside data and samples as the MDSM toy (<workdir>/samples/density.png) and the
share of points and of learned mass in each mode (in the log and samples/summary.json).

The Langevin step and noise are set so that T = noise^2 / (2 step) = 1: the chains sample exp(-E)
itself, so the picture's density, the "chains at T = 1" panel and the training chains are one and
the same distribution.

What it measures: the learned density's mass on each of the eight modes (equal in the data) and the
share of samples in each. Measured here (seed 0, 2 CPU cores, 72 s): the samples resolve the eight
modes with shares 0.09-0.15; the learned masses are 0.11-0.14 (largest/smallest 1.34). Some chains
sit in the corners of the box [-4, 4]^2, where the energy is only ~8 above the modes': the energy
penalty caps how far it rises where chains are.

    python -m ebmjax.main --config configs/ml_toy2d.py --workdir runs/ml_toy2d
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "ml"
    c.data.name = "toy:eight_gaussians"
    c.model.name = "mlp"
    c.model.hidden = (128, 128, 128)
    c.ml.init = "buffer"
    c.ml.buffer_size = 8192
    c.ml.reinit_prob = 0.01
    c.ml.steps = 20
    c.ml.step_size = 0.005  # eps = 0.1, a step of the modes' width
    c.ml.noise = 0.1  # T = 0.1^2 / (2 * 0.005) = 1
    # The penalty mean E^2 pulls every mode's energy level towards 0. Without it nothing sets the
    # modes' relative masses (chains do not cross between modes, so the data and the chains agree
    # on every mode's share whatever its mass): with 0.01 the learned masses differed by 240x.
    c.ml.energy_l2 = 0.1
    c.ml.sample_steps = 500
    c.ml.sample_from = "buffer"
    c.train.steps = 3000
    c.train.batch_size = 256
    c.train.lr = 3e-3  # 1e-2 diverges (stopped by ml.energy_bound at step ~1350); 1e-3 learns a ring
    c.train.lr_end = 1e-5
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.sample.n = 2000
    c.sample.batch_size = 2000
    return c
