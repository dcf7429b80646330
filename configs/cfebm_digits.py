"""CF-EBM (coarse-to-fine expanding training and sampling, seed 004) on scikit-learn's bundled 8x8
digits, stages 2x2 -> 4x4 -> 8x8: the offline demo of the cfebm method (its time on 2 CPU cores below).

The per_stage variant (the original's train_v1): a residual energy per stage, each started from the
previous stage's weights, the coarser ones frozen. Stage 2x2 trains one phase (150 steps of 64
images), 4x4 fades in over one phase and trains stable for one, then 8x8 does the same and keeps
training to the end. Every training step draws its negative samples from the beginning: uniform
noise at 2x2, 20 Langevin steps x <- clamp(x - 5 dE/dx + sigma z) per stage, sigma decaying from
0.03 to 0 over the chain (the original's cyclic noise), pixel-repeated up-sampling between stages,
the smooth hand-over while a stage fades in. --mode sample runs the same chain; stages.png shows a
few chains at the end of every stage.

What it measures: scripts/digits_quality.py (a classifier ebmjax does not train against: share of
samples recognised with p >= 0.9, label entropy, nearest-training-digit distance over test digits').
Measured here (training seed 0, 300 samples, sample.seed 0 / 1 / 2): recognised 0.500 / 0.493 /
0.453, label entropy 0.98 / 0.99 / 0.99, nearest-training distance 1.26x / 1.25x / 1.27x; train +
sample 17.5 minutes with two other training jobs on the 2 cores (about a third of the CPU each).
Tried on the way (same judge, sample.seed 0): the grow variant scores 0.12-0.31 (its 2x2 and 4x4
energies drift as the shared layers keep learning, and sampling from the beginning collapses to one
pattern at 4x4); per_stage with 1500 steps and phases of 250 steps 0.34 (longer chains at sampling
time do not help: 60 steps 0.35, 120 steps 0.33); 30 Langevin steps per stage diverged at step 2450.

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
    c.cfebm.lr_by_stage = (1e-3, 1e-3, 1e-3)
    c.cfebm.steps = 20
    c.cfebm.sample_steps = 20
    c.cfebm.step_size = 5.0
    c.cfebm.cyclic_noise = True
    c.cfebm.noise_max = 0.03
    c.cfebm.data_noise = 0.015
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
