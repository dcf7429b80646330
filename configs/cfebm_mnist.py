"""CF-EBM's coarse-to-fine expanding energy on the 5,000 bundled MNIST digits (data.name =
"mnist5k"), padded to 32x32 (every stage's blocks halve the side, so the sides must stay even): stages
8x8 -> 16x16 -> 32x32, each stage adding a block in front of the last.

Every step runs 20 Langevin steps (step 5, cyclic noise up to 0.03) from uniform noise at the current
stage's resolution and lowers the energy of the data (down-sampled to that stage, plus
N(0, 0.015^2)) against the chain ends, with an L2 penalty on both energies. Stages change every
9,600 images (150 steps of 64), fading the new block in. Adam (betas 0.5, 0.999), per stage 1e-3,
1e-3, 2e-3. Figures: docs/mnist.md.

    python -m ebmjax.main --config configs/cfebm_mnist.py --workdir runs/cfebm_mnist
    python scripts/mnist_quality.py runs/cfebm_mnist/samples/samples.npz
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "cfebm"
    c.data.name = "mnist5k"
    c.data.pad = 2
    c.cfebm.resolutions = (8, 16, 32)
    c.cfebm.widths = (32, 32, 32)
    c.cfebm.head_width = 32
    c.cfebm.variant = "per_stage"
    c.cfebm.phase_images = 9_600
    c.cfebm.lr_by_stage = (1e-3, 1e-3, 2e-3)
    c.cfebm.steps = 20
    c.cfebm.sample_steps = 20
    c.cfebm.step_size = 5.0
    c.cfebm.cyclic_noise = True
    c.cfebm.noise_max = 0.03
    c.cfebm.data_noise = 0.015
    c.cfebm.energy_l2 = 1.0
    c.train.steps = 2500
    c.train.batch_size = 64
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 50
    c.train.checkpoint_every = 500
    c.sample.n = 300
    c.sample.batch_size = 300
    c.sample.chunk_steps = 20
    c.eval.n_samples = 1000
    c.eval.select_by = "confident_share"
    return c
