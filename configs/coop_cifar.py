"""Cooperative learning (CoopNets, Xie et al.) on CIFAR-10 at the paper's scale: the original's
settings (REFERENCE §4) on ebmjax's data range [0, 1]. Not run here: it needs the tfds CIFAR-10 files
and an accelerator. What it measures: --mode eval's FID/KID/IS (with eval.inception_weights), AIS
bounds and OOD AUROC of the energy; the training log reports energy_data, energy_model, energy_gap,
gen_error (RMS of the energy's revision of the generator's proposals) and gen_loss.

The recipe: z ~ N(0, I_100); the generator 256@4 -> 128@8 -> 64@16 -> 3@32 (transposed convs,
LeakyReLU 0.2, tanh; without the original's BatchNorm); 15 Langevin steps with CoopNets' Gaussian
reference; data batch 100; generator Adam lr 1e-4, beta1 0.5, sigma_g 0.3; energy Adam lr 0.003
(the PyTorch CIFAR port; TF: 0.007), beta1 0.5; constant learning rates as the original. CoopNets
works on [-1, 1] with delta 0.002 and sigma 0.016; on [0, 1] (x = (y + 1) / 2) the same chain is
step delta^2 / 8 = 5e-7, noise delta / 2 = 0.001 and reference width sigma / 2 = 0.008 (T = 1). The
energy is ebmjax's ConvEnergy with CoopNets' widths (64, 128, 256) and LeakyReLU 0.2 (two 3x3 convs
and a mean pool per stage, a linear read-out) rather than the original's strided 5x5/3x3 convs and
its 100-output full-spatial read-out.

    python -m ebmjax.main --config configs/coop_cifar.py --workdir runs/coop_cifar
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "coop"
    c.data.name = "cifar10"
    c.model.name = "convnet"
    c.model.widths = (64, 128, 256)
    c.model.activation = "lrelu"
    c.coop.latent_dim = 100
    c.coop.gen_widths = (256, 128, 64)
    c.coop.gen_output = "tanh"
    c.coop.gen_sigma = 0.3
    c.coop.gen_lr = 1e-4
    c.coop.gen_b1, c.coop.gen_b2 = 0.5, 0.999
    c.coop.steps = 15
    c.coop.step_size = 5e-7
    c.coop.noise = 0.001
    c.coop.ref_sigma = 0.008
    c.coop.sample_steps = 15
    c.train.steps = 100_000
    c.train.batch_size = 100
    c.train.lr = 3e-3
    c.train.lr_end = 3e-3  # constant, as the original
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 2000
    c.sample.n = 1000
    c.sample.batch_size = 500
    c.eval.n_samples = 10_000
    return c
