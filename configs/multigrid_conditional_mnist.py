"""A class-conditional multigrid on the 5,000 bundled MNIST digits (data.name = "mnist5k", 28x28):
configs/multigrid_mnist.py (grids 1 -> 7 -> 14 -> 28, IGEBM's energy penalty) as it was when measured
(two conv layers, 1,500 steps, 40 sampling steps per grid) with ten read-outs per grid network,
E_k(x, y) = -f_k(x)[y], as configs/multigrid_conditional_digits.py does on the 8x8 digits.
--mode sample draws every class in turn (sample.label = -1), one grid row of ten each.
Figures: docs/conditional.md.

    python -m ebmjax.main --config configs/multigrid_conditional_mnist.py --workdir runs/multigrid_conditional_mnist
    python scripts/mnist_quality.py runs/multigrid_conditional_mnist/samples/samples.npz
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    c = load_config(str(pathlib.Path(__file__).with_name("multigrid_mnist.py")))
    c.model.classes = 10
    c.multigrid.grad_l2 = 0.0  # measured without multigrid_mnist's input-gradient penalty (docs/conditional.md)
    # ... and with its earlier network, length and sampler: two conv layers (the first strided),
    # 1,500 steps, 40 sampling steps per grid.
    c.multigrid.widths = (32, 64)
    c.multigrid.strided_layers = (1,)
    c.train.steps = 1500
    c.multigrid.sample_steps = (40,)
    c.sample.chunk_steps = 40
    c.sample.label = -1  # every class in turn, one grid row of ten each
    c.sample.n = 200
    c.sample.batch_size = 200  # a multiple of 100: rows of ten per class in turn
    c.eval.metrics = ("classifier", "ood", "fid", "neighbours", "coverage")
    c.eval.n_samples = 500
    return c
