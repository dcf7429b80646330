"""MDSM on CIFAR-10 with the original's settings: Res18 d=128, sigma linear 0.05..1.2, lr 5e-5
cosine to 1e-6 over 300k steps, batch 128, checkpoint every 5k. Needs a prepared tfds cifar10."""

from ebmjax.config import defaults


def get_config():
    return defaults()  # the defaults are the CIFAR-10 settings
