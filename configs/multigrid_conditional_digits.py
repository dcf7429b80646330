"""A class-conditional multigrid (Gao et al. 2018 with IGEBM's conditional energies) on the bundled 8x8
digits: configs/multigrid_digits.py with ten read-outs per grid network, E_k(x, y) = -f_k(x)[y].

Every training example's chains run on its own label's energy on every grid, from its own 1x1 mean,
and the data's E_k(x_i, y_i) is lowered against the chains' E_k(x_i^-, y_i). --mode sample runs the
cascade on E_k(x, k') for --config.sample.label=k' from 1x1 means of training digits of that class;
the config's -1 draws every class in turn, one grid row of ten each. Restoration and evaluation use
the finest grid's E(x) = -logsumexp_y f(x)[y]. Figures: docs/conditional.md.

    python -m ebmjax.main --config configs/multigrid_conditional_digits.py --workdir runs/multigrid_conditional_digits
    python scripts/digits_quality.py runs/multigrid_conditional_digits/samples/samples.npz
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    c = load_config(str(pathlib.Path(__file__).with_name("multigrid_digits.py")))
    c.model.classes = 10
    c.sample.label = -1  # every class in turn, one grid row of ten each
    c.eval.metrics = ("classifier", "ood", "fid", "neighbours", "coverage")
    return c
