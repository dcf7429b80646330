"""MDSM on MNIST with the original's settings: padded to 32x32, Res12 d=64, sigma geometric
0.1..3.0, lr 1e-4 cosine over 100k steps, batch 128. Needs a prepared tfds mnist."""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.data.name = "mnist"
    c.data.pad = 2
    c.model.width = 64
    c.model.blocks_per_stage = 1
    c.mdsm.sigma_low, c.mdsm.sigma_high, c.mdsm.spacing = 0.1, 3.0, "geometric"
    c.train.steps = 100_000
    c.train.lr = 1e-4
    return c
