"""CF-EBM (coarse-to-fine expanding training and sampling, the CF-EBM paper) on scikit-learn's bundled 8x8
digits, stages 2x2 -> 4x4 -> 8x8: the offline demo of the cfebm method (its time on 2 CPU cores below).

The per_stage variant (the original's train_v1): a residual energy per stage, each started from the
previous stage's weights, the coarser ones frozen. Stage 2x2 trains one phase (150 steps of 64
images), 4x4 fades in over one phase and trains stable for one, then 8x8 does the same and keeps
training to the end. Every training step draws its negative samples from the beginning: uniform
noise at 2x2, 20 Langevin steps x <- clamp(x - 5 dE/dx + sigma z) per stage, sigma decaying from
0.03 to 0 over the chain (the original's cyclic noise), pixel-repeated up-sampling between stages,
the smooth hand-over while a stage fades in. Adam at 1e-3 for every stage (constant per stage, as
the original), with the energy penalty mean E(data)^2 + mean E(samples)^2 at weight 1 (IGEBM's),
which keeps the energies near 0.
--mode sample runs the same chain; stages.png shows a few chains at the end of every stage.

What it measures: scripts/digits_quality.py (a classifier ebmjax does not train against: share of
samples recognised with p >= 0.9, label entropy, nearest-training-digit distance over test digits').
Measured (training seed 0, 300 samples, 3.6 minutes of training and sampling alone on 2 CPU cores):
recognised 0.470, label entropy 0.984, nearest-training distance 1.30x the test digits'. With the 8x8
stage at 2e-3: 0.170 (1.62x); at 5e-4: 0.310. The 0.58 measured before came from a bug fixed since:
each per_stage network started at stage 0's rate, so the 8x8 stage learned at 1e-3 for its first 450
steps and at 2e-3 after (docs/cfebm.md).

How the recipe was chosen: docs/tuning.md (cfebm_digits).

    python -m ebmjax.main --config configs/cfebm_digits.py --workdir runs/cfebm_digits
    python scripts/digits_quality.py runs/cfebm_digits/samples/samples.npz
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "cfebm"
    c.data.name = "digits"
    c.cfebm.resolutions = (2, 4, 8)
    c.cfebm.widths = (32, 32, 32)
    c.cfebm.head_width = 32
    c.cfebm.variant = "per_stage"
    c.cfebm.phase_images = 9_600  # 150 steps of 64 images: stage 4x4 from step 150, 8x8 from step 450
    c.cfebm.lr_by_stage = (1e-3, 1e-3, 1e-3)  # 8x8 at 2e-3: 0.170 recognised, at 5e-4: 0.310 (docs/cfebm.md)
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
    c.sample.chunk_steps = 60
    c.eval.n_samples = 1000
    c.eval.select_by = "confident_share"
    return c
