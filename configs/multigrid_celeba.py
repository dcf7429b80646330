"""Multigrid maximum likelihood (Gao et al., CVPR 2018) on CelebA at 64x64, grids 1x1 -> 4x4 ->
16x16 -> 64x64, at the paper's scale. Not run here: it needs a prepared tfds celeb_a
(--config.data.data_dir=DIR) and an accelerator. What it measures: --mode sample's grids.png (how a
chain refines, Malhotra's paper Fig. 1) and --mode eval's FID/KID/IS (with eval.inception_weights), OOD
AUROC of the 64x64 energy; the training log gives every grid's energy_gap and chain_move.

The recipe (REFERENCE §3, ruiqigao/Multigrid_learning): the 1x1 "sample" is the block average of
the data; one energy per grid, conv + LeakyReLU 0.2 + dense read-out, Xavier init, widths 96, 128,
256, 512, the first layer strided on the 4x4 and 16x16 nets, all four strided on the 64x64 net;
Adam beta1 0.5, batch 100; the grids' updates one after the other in each iteration; 90 Langevin
steps per grid with no noise (the code's; the paper's 30 steps add noise), clamped to the data's
range. The code's step, x += (delta^2 / 2) df/dx with delta = 0.3 on [0, 255] pixels, acts on a
network that reads raw pixels; ebmjax's networks read [0, 1], which rescales both the gradient and
the network's weights, so the step does not carry over as a number: 1.0 on dE/dx here, the scale at
which the digits configs' chains move (``chain_move_<side>`` in the log says whether they do).

Differences from the original: no BatchNorm (it runs in training mode even while sampling, which
makes an image's energy depend on its batch; GridEnergy's energy depends on the image alone); one
kernel size per network (3x3; the original's first layers are 5x5, the 64x64 net's all); Gao's
learning rate 0.3 with BatchNorm does not carry over to a network without it: 1e-4 here.

    python -m ebmjax.main --config configs/multigrid_celeba.py --workdir runs/multigrid_celeba \
        --config.data.data_dir=DIR
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "multigrid"
    c.data.name = "celeb_a"
    c.data.image_size = 64
    c.data.random_flip = True
    c.multigrid.grids = (1, 4, 16, 64)
    c.multigrid.widths = (96, 128, 256, 512)
    c.multigrid.kernel = 3
    c.multigrid.strided_layers = (1, 1, 4)
    c.multigrid.order = "sequential"
    c.multigrid.steps = (90,)
    c.multigrid.step_size = (1.0,)
    c.multigrid.noise = (0.0,)
    c.multigrid.coarse_buffer = 10_000
    c.train.steps = 140_000  # about 700 epochs of CelebA's 162,770 training images at batch 100, as the original
    c.train.batch_size = 100
    c.train.lr = 1e-4
    c.train.lr_end = 1e-6
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 200
    c.train.checkpoint_every = 5000
    c.sample.n = 1000
    c.sample.batch_size = 100
    c.eval.select_by = "fid"
    return c
