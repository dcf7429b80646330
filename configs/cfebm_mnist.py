"""CF-EBM's coarse-to-fine expanding energy on the 5,000 bundled MNIST digits (data.name =
"mnist5k"), padded to 32x32 (every stage's blocks halve the side, so the sides must stay even): stages
8x8 -> 16x16 -> 32x32, each stage adding a block in front of the last.

Every step runs 20 Langevin steps (step 5, cyclic noise up to 0.03) from uniform noise at the current
stage's resolution and lowers the energy of the data (down-sampled to that stage, plus
N(0, 0.015^2)) against the chain ends, with an L2 penalty on both energies. Stages change every
9,600 images (150 steps of 64), fading the new block in: 32x32 fades in from step 450 and trains alone
from step 600. Adam (betas 0.5, 0.999), 1e-3 at every stage (cfebm_digits'), constant within a stage.

1,000 steps (the digits recipe's 2,500 would take about an hour on 2 CPU cores: the 32x32 stage
runs at about 0.6 steps/s). Measured (seed 0, 300 samples, judged by scripts/mnist_quality.py;
held-out digits 0.856): recognised 0.217, label entropy 0.976, nn ratio 1.33, FD in the judge's
features 7.1, 17.8 minutes train + sample on 2 CPU cores (0.160 before the per_stage learning-rate
fix, docs/cfebm.md). With phases half as long (--config.cfebm.phase_images=4800: 775 of the 1,000
steps at 32x32 against 550): 0.207, FD 6.2, in 48.6 minutes on a slower 2-core VM; not adopted.
Time and figures of the current commit: docs/results.md.
Figures: docs/mnist.md.

    python -m ebmjax.main --config configs/cfebm_mnist.py --workdir runs/cfebm_mnist
    python scripts/mnist_quality.py runs/cfebm_mnist/samples/samples.npz
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    # configs/cfebm_digits.py with the MNIST digits: every other setting is that recipe's.
    c = load_config(str(pathlib.Path(__file__).with_name("cfebm_digits.py")))
    c.data.name = "mnist5k"
    c.data.pad = 2
    c.cfebm.resolutions = (8, 16, 32)
    c.sample.chunk_steps = 20
    c.train.steps = 1000
    return c
