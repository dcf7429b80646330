"""A class-conditional EBM (as IGEBM's conditional models) on the bundled 8x8 digits: one conv net
whose ten outputs f(x) define E(x, y) = -f(x)[y], trained by maximum likelihood on each digit's own
class with persistent chains.

Every step lowers E(x_i, y_i) of the data (plus N(0, 0.015^2)) against E(x_j, y_j) of 64 chains drawn
from a buffer of 2,000 (each row keeps the class its chain runs on; a restarted row, 5%, takes its
batch example's class), after 20 Langevin steps x <- clamp(x - 5 dE(x, y_j)/dx + 0.005 z): the
chains, network and optimiser of configs/pcd_digits.py with ten outputs, plus IGEBM's penalty on
the energies' size (ml.energy_l2 = 1; without it the energies ran away within 400 steps). --mode sample
continues buffer rows for 600 steps on E(x, k) for --config.sample.label=k; the config's -1 draws
every class in turn, one grid row of ten each. Restoration and evaluation use
E(x) = -logsumexp_y f(x)[y]. Figures: docs/conditional.md.

    python -m ebmjax.main --config configs/ml_conditional_digits.py --workdir runs/ml_conditional_digits
    python -m ebmjax.main --config configs/ml_conditional_digits.py --workdir runs/ml_conditional_digits \\
        --mode sample --config.sample.label=3 --config.sample.seed=3
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    c = load_config(str(pathlib.Path(__file__).with_name("pcd_digits.py")))
    c.model.classes = 10
    c.ml.energy_l2 = 1.0
    c.sample.label = -1  # every class in turn, one grid row of ten each
    c.eval.metrics = ("classifier", "ood", "fid", "neighbours", "coverage")
    return c
