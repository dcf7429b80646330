"""Maximum likelihood with persistent chains on CIFAR-10: the IGEBM recipe (Du & Mordatch 2019,
openai/ebm_code_release) on ebmjax's MDSM ResNet (no spectral norm). Not run here: it needs the
tfds CIFAR-10 files and an accelerator (60 Langevin steps per training step). What it measures:
--mode eval's FID/KID/IS (with eval.inception_weights), AIS bounds and OOD AUROC of the energy; the
training log reports energy_data, energy_model, energy_gap, grad_step_rms and fresh_share.

The recipe (REFERENCE §4b, IGEBM column): data in [0, 1] plus a little noise, a replay buffer of
10,000 chain ends with 5% restarted from uniform noise every step, 60 steps of size 10 on the
energy's gradient clipped to +-0.01 with noise 0.005, the energy penalty E+^2 + E-^2 with weight 1,
Adam 3e-4 with betas (0, 0.999). The buffer is split over the devices (10,000 must divide by their
number: 1, 2, 4, 5, 8, 10, 16 work).

    python -m ebmjax.main --config configs/pcd_cifar.py --workdir runs/pcd_cifar
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "ml"
    c.data.name = "cifar10"
    c.data.random_flip = True
    c.model.name = "mdsm_resnet"
    c.model.width = 128
    c.model.blocks_per_stage = 1  # Res12
    c.ml.init = "buffer"
    c.ml.buffer_size = 10_000
    c.ml.reinit_prob = 0.05
    c.ml.noise_init = "uniform"
    c.ml.steps = 60
    c.ml.step_size = 10.0
    c.ml.grad_clip = 0.01
    c.ml.noise = 0.005
    c.ml.clamp = True
    c.ml.data_noise = 0.002  # IGEBM dequantises with U(0, 1/256), std ~0.001
    c.ml.energy_l2 = 1.0
    c.ml.sample_steps = 200
    c.ml.sample_from = "buffer"
    c.train.steps = 100_000
    c.train.batch_size = 128
    c.train.lr = 3e-4
    c.train.lr_end = 1e-5
    c.train.b1, c.train.b2 = 0.0, 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 2000
    c.sample.n = 1000
    c.sample.batch_size = 500
    c.eval.n_samples = 10_000
    return c
