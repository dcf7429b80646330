"""MDSM (multiscale denoising score matching) on the 5,000 bundled MNIST digits (data.name =
"mnist5k"), padded to 32x32 as the original pads MNIST: sigma geometric 0.1..3.0, annealed Langevin
from T = 1000 to 1 then cooled, ending with the denoising jump. The energy is a small U-Net's residual,
E(x) = |x - U(x)|^2 / (2 sigma0^2) (model.name = "unet", four levels of 16, 32, 64, 128 channels down
to 4x4; ebmjax.models.UNetEnergy), which learns at the recipe's length where the original's Res12
ResNet (--config.model.name=mdsm_resnet, width 16 below) needs several times the steps.

Sized for 2 CPU cores: the convolutions run as XLA convolutions (model.conv = "xla") on 4 virtual
CPU devices, and the sampler runs its chains as straight-line pieces of 10 steps
(sample.unroll_steps), which XLA:CPU runs several times faster than a loop. The paper's settings
(Res12 d=64, lr 1e-4, 100k steps on tfds mnist) are configs/mdsm_mnist_tfds.py.

Measured (3,000 steps, 200 samples a draw, three draws, judged by scripts/mnist_quality.py;
held-out digits: 0.856): training seed 0, 0.475, 0.415 and 0.375 (mean 0.422), label entropy
0.96-0.97, nn ratio 1.18-1.20, FD in the judge's features 4.6-5.1; training seed 1 (--config.seed=1),
0.590, 0.620 and 0.520 (mean 0.577), label entropy 0.965-0.980, nn ratio 1.09-1.14, FD 4.1-4.3.
Started at T = 100 (--config.mdsm.t_max=100) the same models drew as many recognised digits (means
0.378 and 0.615) of fewer classes (label entropy 0.88-0.93, almost no 1s), FD 9.3-10.7. The Res12
(--config.model.name=mdsm_resnet, T = 100): 0.215, label entropy 0.968, nn ratio 1.32, FD 7.1, and
0.365 after 10,000 steps. Twice the U-Net's steps (--config.train.steps=6000, about 55 minutes) drew
no more (mean 0.367 over three draws, training seed 0): its loss levels off by 3,000. Gradients
clipped to norm 100 (--config.train.clip_norm=100) bring the two seeds together (means 0.495 and
0.508) without raising their mean, so the recipe does not clip. A fifth level down to 2x2
(--config.model.widths=16,32,64,128,256) drew 0.665 and 0.625 (seed 0, two draws) at about twice
the time; a narrow one (16,32,64,64,64), at almost the recipe's cost, 0.350 (seed 0, one draw). Train +
sample: 27.3 minutes alone on a quiet day of a 2-core Intel Xeon VM, 42.4 on a slow day of it, where
the Res12's took 26.9 (python -m ebmjax.bench times a step of each). Figures and pictures:
docs/mnist.md.

    python -m ebmjax.main --config configs/mdsm_mnist.py --workdir runs/mdsm_mnist
    python scripts/mnist_quality.py runs/mdsm_mnist/samples/samples.npz
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.data.name = "mnist5k"
    c.data.pad = 2
    c.model.name = "unet"
    c.model.widths = (16, 32, 64, 128)
    c.model.width = 16  # the Res12's, with --config.model.name=mdsm_resnet
    c.model.blocks_per_stage = 1
    c.model.conv = "xla"
    c.mdsm.sigma_low, c.mdsm.sigma_high, c.mdsm.spacing = 0.1, 3.0, "geometric"
    c.train.steps = 3000
    c.train.batch_size = 128
    c.train.lr = 2e-3
    c.train.warmup_steps = 200
    c.train.lr_end = 1e-5
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
