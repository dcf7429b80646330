"""Class-conditional cooperative learning on the bundled 8x8 digits: configs/coop_digits.py with ten
read-outs on the energy, E(x, y) = -f(x)[y], and a generator that reads the class, g(z, y) =
g([z, one_hot(y)]).

Every training example's proposal g(z, y_i) is revised by Langevin on E(x, y_i); the energy lowers
E(x_i, y_i) of the data against E(x^_i, y_i) of the revisions and the generator moves g(z, y_i)
towards them. --mode sample proposes g(z, k) and revises it on E(x, k) for --config.sample.label=k;
the config's -1 draws every class in turn, one grid row of ten each. Restoration and evaluation use
E(x) = -logsumexp_y f(x)[y]. Figures: docs/conditional.md.

    python -m ebmjax.main --config configs/coop_conditional_digits.py --workdir runs/coop_conditional_digits
    python scripts/digits_quality.py runs/coop_conditional_digits/samples/samples.npz
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    c = load_config(str(pathlib.Path(__file__).with_name("coop_digits.py")))
    c.model.classes = 10
    c.sample.label = -1  # every class in turn, one grid row of ten each
    c.eval.metrics = ("classifier", "ood", "fid", "neighbours", "coverage")
    return c
