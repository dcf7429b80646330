"""MDSM on Fashion-MNIST: the MNIST settings of configs/mdsm_mnist_tfds.py (padded to 32x32, Res12
d=64, sigma geometric 0.1..3.0, lr 1e-4 cosine over 100k steps). Needs a prepared tfds fashion_mnist."""

import pathlib

from ebmjax.config import load_config


def get_config():
    # configs/mdsm_mnist_tfds.py with Fashion-MNIST: every other setting is that recipe's.
    c = load_config(str(pathlib.Path(__file__).with_name("mdsm_mnist_tfds.py")))
    c.data.name = "fashion_mnist"
    return c
