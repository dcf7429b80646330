"""MDSM on a 2-D toy density (eight Gaussians by default; try --config.data.name=toy:rings,
toy:checkerboard, toy:two_moons). Writes a picture of the learned density beside data and samples."""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.data.name = "toy:eight_gaussians"
    c.model.name = "mlp"
    c.model.hidden = (128, 128, 128)
    c.mdsm.sigma0 = 0.1
    c.mdsm.sigma_low, c.mdsm.sigma_high, c.mdsm.spacing = 0.05, 2.0, "geometric"
    c.train.steps = 4000
    c.train.batch_size = 256
    c.train.lr = 1e-2  # the MLP's energy must grow to |x|^2 / (2 sigma0^2) scales quickly
    c.train.lr_end = 1e-5
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.sample.n = 2000
    c.sample.batch_size = 2000
    c.mdsm.init_mean = 0.0
    c.mdsm.init_std = 2.0
    c.mdsm.n_hot, c.mdsm.n_anneal, c.mdsm.n_cool = 100, 400, 100
    c.mdsm.step_size = 0.05
    return c
