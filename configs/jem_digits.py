"""JEM, the joint energy-based model (Grathwohl et al.): one conv net that is a classifier of the
bundled 8x8 digits and, through E(x) = -logsumexp_y f(x)[y], a generative model of them.

Every training step adds the cross-entropy of p(y|x) on the labelled batch to maximum likelihood on
E(x) with persistent chains: the chains, network and optimiser of configs/pcd_digits.py (a buffer of
2,000 chain ends, 5% restarted from uniform noise, 20 Langevin steps x <- clamp(x - 5 dE/dx +
0.005 z); the conv net 16, 32 with ten outputs instead of one), with IGEBM's penalty on the size of the
energies (ml.energy_l2 = 1). --mode sample continues buffer
rows for 600 steps on E(x), or on E(x, k) with --config.sample.label=k (-1: one grid row per class).
Figures (accuracy, calibration, OOD, sample quality, against the same network trained as a plain
classifier with --config.jem.generative_weight=0): docs/conditional.md and docs/results.md.

    python -m ebmjax.main --config configs/jem_digits.py --workdir runs/jem_digits
    python -m ebmjax.main --config configs/jem_digits.py --workdir runs/jem_digits --mode eval
    python -m ebmjax.main --config configs/jem_digits.py --workdir runs/jem_digits --mode sample --config.sample.label=-1 --config.sample.n=100
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    c = load_config(str(pathlib.Path(__file__).with_name("pcd_digits.py")))
    c.method.name = "jem"
    c.model.classes = 10
    c.jem.classifier_weight = 1.0
    c.jem.generative_weight = 1.0
    # IGEBM's penalty on the energies' size: without it E(x) ran away within 200 steps (energies of the
    # data +1,400 by step 300, the accuracy falling back to 0.15); it moves only logsumexp f, which
    # the classifier's softmax does not see.
    c.ml.energy_l2 = 1.0
    c.eval.metrics = ("classifier", "ood", "fid", "neighbours")
    return c
