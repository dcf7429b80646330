"""Class-conditional cooperative learning on the 5,000 bundled MNIST digits (data.name = "mnist5k",
28x28): configs/coop_mnist.py (IGEBM's energy penalty) with ten read-outs on the energy, E(x, y) =
-f(x)[y], and the generator reading the class, g(z, y) = g([z, one_hot(y)]), as
configs/coop_conditional_digits.py does on the 8x8 digits. --mode sample draws every class in turn
(sample.label = -1), one grid row of ten each. Figures: docs/conditional.md.

    python -m ebmjax.main --config configs/coop_conditional_mnist.py --workdir runs/coop_conditional_mnist
    python scripts/mnist_quality.py runs/coop_conditional_mnist/samples/samples.npz
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    c = load_config(str(pathlib.Path(__file__).with_name("coop_mnist.py")))
    c.model.classes = 10
    c.sample.label = -1  # every class in turn, one grid row of ten each
    c.sample.n = 200
    c.sample.batch_size = 200  # a multiple of 100: rows of ten per class in turn
    c.eval.metrics = ("classifier", "ood", "fid", "neighbours", "coverage")
    c.eval.n_samples = 500
    return c
