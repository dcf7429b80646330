"""Malhotra's modified multigrid on CelebA at 64x64 (grids 1x1 -> 4x4 -> 16x16 -> 64x64, the paper's
setting): configs/multigrid_celeba.py with the dilated-convolution generator G in front of every
grid's chain, which starts from the up-sampled G(previous grid's sample). Not run here: it needs a
prepared tfds celeb_a (--config.data.data_dir=DIR) and an accelerator. What it measures: grids.png
(G's proposal and the chain's end per grid), --mode eval's FID/KID/IS, and the mode collapse of
Malhotra §V: `--mode eval --config.eval.checkpoints=all --config.eval.inception_weights=W` scores
every saved checkpoint (quality_vs_step.png).

G: conv3x3 (32) -> conv3x3 dilation 2 (32) -> six dilated branches (16 each, rates 1, 2, 4, 6, 12,
18) -> concatenate -> 1x1 conv -> ReLU (the seed gives neither rates nor widths; see
ebmjax.models.DilatedGenerator). G learns by MCMC teaching (multigrid.generator = "teach"; the
seed's other reading, "autoencode", is one override away) with CoopNets' generator settings: Adam
1e-4, beta1 0.5, sigma_g 0.3.

    python -m ebmjax.main --config configs/multigrid_gen_celeba.py --workdir runs/multigrid_gen_celeba \
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
    c.multigrid.generator = "teach"
    c.multigrid.gen_lr = 1e-4
    c.multigrid.gen_b1, c.multigrid.gen_b2 = 0.5, 0.999
    c.multigrid.gen_sigma = 0.3
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
