"""Unpaired image-to-image translation on the bundled digits: plain 16x16 digits -> bold digits.

(draft)
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "ml"
    c.data.name = "digits_bold"
    c.data.image_size = 16
    c.model.name = "convnet"
    c.model.widths = (16, 32)
    c.model.activation = "lrelu"
    c.ml.init = "noise"
    c.ml.noise_init = "uniform"
    c.ml.steps = 40
    c.ml.step_size = 5.0
    c.ml.noise = 0.005
    c.ml.data_noise = 0.015
    c.ml.sample_steps = 40
    c.train.steps = 1500
    c.train.batch_size = 64
    c.train.lr = 1e-3
    c.train.lr_end = 1e-5
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 50
    c.train.checkpoint_every = 500
    c.sample.n = 0
    c.sample.chunk_steps = 40
    c.translate.after_train = True
    c.translate.data_name = "digits"
    c.translate.split = "test"
    c.translate.n = 355
    c.translate.batch_size = 355
    c.translate.noise = 0.01
    return c
