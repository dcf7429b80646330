"""CF-EBM (the CF-EBM paper) on CelebA at 64x64: stages 8x8 -> 16x16 -> 32x32 -> 64x64. Not run here: it needs
a prepared tfds celeb_a (--config.data.data_dir=DIR) and an accelerator. What it measures: --mode
eval's FID/KID/IS (with eval.inception_weights), stages.png (a chain's image at the end of every
stage), restoration (--mode inpaint, --mode denoise) on test faces.

The original's recipe (REFERENCE §2): one phase = 1.5M images; Adam lr 1e-3 up to 32x32 and 1.2e-3 at
64x64, betas (0.5, 0.999); data noise 0.01 on [-1, 1] (0.005 on [0, 1]); 15 Langevin steps per stage
with the cyclic noise and the smooth hand-over; horizontal flips; the usual 140x140 centre crop.
Difference: one batch of 64 for the whole run (the original's shrinks with the resolution), so a
phase is 23,438 steps.

    python -m ebmjax.main --config configs/cfebm_celeba.py --workdir runs/cfebm_celeba --config.data.data_dir=DIR
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "cfebm"
    c.data.name = "celeb_a"
    c.data.image_size = 64
    c.data.random_flip = True
    c.cfebm.resolutions = (8, 16, 32, 64)
    c.cfebm.widths = (128, 128, 128, 64)
    c.cfebm.head_width = 128
    c.cfebm.variant = "grow"
    c.cfebm.phase_images = 1_500_000
    c.cfebm.lr_by_stage = (1e-3, 1e-3, 1e-3, 1.2e-3)
    c.cfebm.steps = 15
    c.cfebm.sample_steps = 15
    c.cfebm.step_size = 0.25
    c.cfebm.cyclic_noise = True
    c.cfebm.noise_max = 0.0075
    c.cfebm.smooth_handover = True
    c.cfebm.data_noise = 0.005
    c.train.steps = 187_500  # eight phases of 23,438 steps: 8x8 one, then 16, 32 two each, 64x64 three
    c.train.batch_size = 64
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 500
    c.train.checkpoint_every = 5000
    c.sample.n = 1000
    c.sample.batch_size = 250
    c.eval.select_by = "fid"
    return c
