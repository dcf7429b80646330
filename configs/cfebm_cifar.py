"""CF-EBM (the CF-EBM paper) on CIFAR-10 at the paper's scale: stages 8x8 -> 16x16 -> 32x32. Not run here: it
needs the tfds CIFAR-10 files and an accelerator. What it measures: --mode eval's FID/KID/IS (with
eval.inception_weights), the OOD AUROC of the energy against SVHN, CIFAR-100, CelebA, uniform noise,
constant images and interpolations (the paper's anomaly-detection table), AIS bounds; stages.png
shows a chain's image at the end of every stage; the log gives stage, side and fade (alpha) per step.

The original's recipe (REFERENCE §2, YangNaruto/ProEBM): from_rgb 64 channels at 32x32, 128 at 16x16
and 8x8, a 128-channel head; one phase = 1.2M images (stage 8x8 trains one phase, each later stage
fades in over one phase, then one stable phase); Adam lr 1e-3 at every resolution up to 32x32, betas
(0.5, 0.999), constant; 15 Langevin steps per stage, step 1.0 on [-1, 1] images (0.25 on ebmjax's
[0, 1]) with the cyclic noise decaying from 0.015 (0.0075 here) to 0 over the chain, the smooth
hand-over while a stage fades in; horizontal flips. Difference: one batch of 64 for the whole run
(the original: 256 at 8x8, 128 at 16x16, 64 at 32x32), so a phase is 18,750 steps.

    python -m ebmjax.main --config configs/cfebm_cifar.py --workdir runs/cfebm_cifar --config.data.data_dir=DIR
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "cfebm"
    c.data.name = "cifar10"
    c.data.random_flip = True
    c.cfebm.resolutions = (8, 16, 32)
    c.cfebm.widths = (128, 128, 64)
    c.cfebm.head_width = 128
    c.cfebm.variant = "grow"
    c.cfebm.phase_images = 1_200_000
    c.cfebm.lr_by_stage = (1e-3, 1e-3, 1e-3)
    c.cfebm.steps = 15
    c.cfebm.sample_steps = 15
    c.cfebm.step_size = 0.25
    c.cfebm.cyclic_noise = True
    c.cfebm.noise_max = 0.0075
    c.cfebm.smooth_handover = True
    c.train.steps = 112_500  # six phases of 18,750 steps: 8x8 one, 16x16 two, 32x32 three (fade + two stable)
    c.train.batch_size = 64
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 500
    c.train.checkpoint_every = 5000
    c.sample.n = 1000
    c.sample.batch_size = 250
    c.eval.select_by = "fid"
    return c
