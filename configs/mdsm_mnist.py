"""MDSM (multiscale denoising score matching) on the 5,000 bundled MNIST digits (data.name =
"mnist5k"), padded to 32x32 as the original pads MNIST: sigma geometric 0.1..3.0, annealed Langevin
from T = 1000 to 1 then cooled, ending with the denoising jump. The energy is a small U-Net's residual,
E(x) = |x - U(x)|^2 / (2 sigma0^2) (model.name = "unet", five levels of 16, 32, 64, 128, 256 channels
down to 2x2; ebmjax.models.UNetEnergy), which learns at the recipe's length where the original's Res12
ResNet (--config.model.name=mdsm_resnet, width 16 below) needs several times the steps. Gradients are
clipped to norm 100 before Adam: unclipped, one training seed of this network spiked (loss 1,873 at
step 350, 1,329 at 850) and stalled at a loss of 42 where the clipped run reached 27.

Sized for 2 CPU cores: the convolutions run as XLA convolutions (model.conv = "xla"; the 2x2 level by
ebmjax.models.conv.conv_small_map, products over its kernel taps) on 4 virtual CPU devices, and the sampler runs its chains as straight-line pieces
of 10 steps (sample.unroll_steps), which XLA:CPU runs several times faster than a loop. The paper's
settings (Res12 d=64, lr 1e-4, 100k steps on tfds mnist) are configs/mdsm_mnist_tfds.py.

Measured (3,000 steps, 200 samples a draw, judged by scripts/mnist_quality.py; held-out digits:
0.856): training seed 1 (--config.seed=1), clipped, 0.620, 0.615 and 0.640 (three draws, mean
0.625), label entropy 0.958-0.986, nn ratio 1.09-1.14, FD 3.8-4.5, in 43.6 minutes train + sample
alone on a middling day of a 2-core Intel Xeon VM (37.7 of training at 1.3-1.4 steps/s, 5.8 of
sampling); training seed 0 (the results page's run), 0.645, label entropy 0.982, nn ratio 1.09,
FD 3.7, in 47.5 minutes on a 2-core AMD EPYC VM; its weights sampled with the paper's 2,700
annealed steps (--config.mdsm.n_hot=500 --config.mdsm.n_anneal=2000 --config.mdsm.n_cool=200)
0.665 and 0.655 on two draws that score 0.645 and 0.645 with these 1,200, in 14.4 minutes per
200 samples against 6.0-6.2, so the recipe keeps 1,200. With the code before this version's faster
convolutions and swish (the same function to float rounding): training seed 1 0.660, 0.625 and
0.535 (mean 0.607) in 51 minutes; unclipped,
training seed 0, 0.665 and 0.625, label entropy 0.975-0.980, nn ratio 1.10, FD 3.7-4.3.
Four levels (--config.model.widths=16,32,64,128), about 0.7 of the time, drew 0.305-0.62 by
training seed (means 0.42 and 0.58 of three draws unclipped, 0.50 and 0.51 clipped; loss 27-31).
Started at T = 100 (--config.mdsm.t_max=100) the four-level models drew fewer classes (label
entropy 0.88-0.93, almost no 1s), FD 9.3-10.7. The Res12 (--config.model.name=mdsm_resnet,
T = 100): 0.215, and 0.365 after 10,000 steps. Figures and pictures: docs/mnist.md.

    python -m ebmjax.main --config configs/mdsm_mnist.py --workdir runs/mdsm_mnist
    python scripts/mnist_quality.py runs/mdsm_mnist/samples/samples.npz
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.data.name = "mnist5k"
    c.data.pad = 2
    c.model.name = "unet"
    c.model.widths = (16, 32, 64, 128, 256)
    c.model.width = 16  # the Res12's, with --config.model.name=mdsm_resnet
    c.model.blocks_per_stage = 1
    c.model.conv = "xla"
    c.mdsm.sigma_low, c.mdsm.sigma_high, c.mdsm.spacing = 0.1, 3.0, "geometric"
    c.train.steps = 3000
    c.train.batch_size = 128
    c.train.lr = 2e-3
    c.train.warmup_steps = 200
    c.train.lr_end = 1e-5
    c.train.clip_norm = 100.0
    c.train.log_every = 50
    c.train.checkpoint_every = 500
    c.dist.cpu_devices = "4"
    c.sample.n = 200
    c.sample.batch_size = 100
    c.mdsm.n_hot, c.mdsm.n_anneal, c.mdsm.n_cool = 100, 1000, 100
    # T = 1000 heats the chains to per-pixel noise of sqrt(T) * sigma0 = 3.2, the network's largest
    # training level (sigma_high): from T = 100 (noise 1) they drew fewer classes (0-2 1s of 200)
    c.mdsm.t_max = 1000.0
    c.mdsm.t_min = 1.0  # below 1 the chains collapse to blank images or blobs on MNIST
    c.mdsm.step_size = 0.02
    c.sample.chunk_steps = 100
    c.sample.unroll_steps = 10
    c.eval.n_samples = 600
    return c
