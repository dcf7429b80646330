"""Unpaired image-to-image translation on the bundled digits: plain 16x16 digits -> bold digits.

Target domain (what the model learns): digits_bold, the bundled digits up-sampled to 16x16 (PIL
bilinear) with their strokes thickened by a 2x2 grey dilation. Source domain: the plain 16x16 digits
(translate.data_name = "digits"). After training, --mode train translates the 355 test digits
(translate.after_train): every chain starts at a test digit plus N(0, 0.01^2) noise and runs the
model's own Langevin, ml.sample_steps = 20 steps of x <- x - 5 dE/dx + 0.005 z (the length of the
training chains). --mode translate redoes it from the checkpoint (14 s; bit-identical translations).

Training: maximum likelihood with short-run chains from uniform noise (ml.init = "noise": 32 chains
of 20 steps of the same Langevin per training step, 1500 steps), the conv net of configs/ml_digits.py
with a third stage for 16x16 (8, 16, 32 channels, LeakyReLU), on data smoothed by N(0, 0.2^2) noise
with unclamped chains (ml.clamp = False, so that they can follow the smoothed data outside [0, 1]).
Translations are stored clipped to [0, 1].

What it measures, judged by scripts/translate_quality.py (a logistic regression fit on the plain
16x16 train digits; it gives the right label to 0.966 of the plain test digits and 0.893 of their
dilated, truly bold versions): label kept, the share of translations given the source's label; ink,
the mean grey level, and ink area, the share of pixels above 0.5, of source / translated / target.
Measured here (355 test digits, 2 CPU cores shared with another job, the commands below): training
seed 0: label kept 0.893, ink 0.306 / 0.333 / 0.391, ink area 0.307 / 0.339 / 0.409, RMS distance to
the true bold versions 0.149 (sources) -> 0.184; train + sample + translate 2.7 minutes. Seed 1: 0.854,
ink 0.306 / 0.328 / 0.391. So the digit is kept, and the strokes grow darker and sharper, but only a
third of the way to the target's weight: the picture shows bolder, high-contrast digits, a few (8s)
losing a loop.

Why not further (each row: 1500 steps, 20-step chains, batch 32 unless said; label kept, ink):
- the same with clamped chains and data noise 0.015 (the short-run paper's): 0.82, 0.295: the
  energy prefers thin strokes (it sharpens), and longer chains thin them more (40 steps: 0.63,
  0.291); data noise 0.03 / 0.05: 0.82 / 0.83, ink 0.305 / 0.312; 0.1 with clamping diverged,
  without it 0.85, 0.339; 0.15: 0.88, 0.336; 0.2 (shipped): 0.89, 0.333. 40 chain steps at 0.2:
  0.69, 0.350 (ink up, digits lost).
- a replay buffer (ml.init = "buffer", 2000 steps): 0.975, 0.307: the translations hardly move
  (the energy prefers bold strokes, but by little); CD (ml.init = "data"): diverged, or with
  IGEBM's clipping and energy penalty 0.966, 0.307; two stages (16, 32) or swish: worse.
- MDSM on the same data (1500 steps, 300 annealing steps from noise 0.2): 0.54, 0.273, 8 minutes.
What reaches the target is CF-EBM's own recipe: chains started at SOURCE images while training, so
that the energy learns where a plain digit should go. ebmjax's ml method starts its training chains
at noise, the data or a buffer, not another domain; scripts/translate_source_chains.py writes that
training step with ebmjax's functions (translate() inside a jitted step; same network, chains and
optimiser): label kept 0.949, ink 0.306 / 0.395 / 0.391, ink area 0.307 / 0.415 / 0.409, RMS to the
true bold versions 0.069, in 2.7 minutes.

    python -m ebmjax.main --config configs/translate_digits.py --workdir runs/translate_digits
    python scripts/translate_quality.py runs/translate_digits/translate/translated.npz
    python -m ebmjax.main --config configs/translate_digits.py --workdir runs/translate_digits --mode translate
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "ml"
    c.data.name = "digits_bold"
    c.data.image_size = 16
    c.model.name = "convnet"
    c.model.widths = (8, 16, 32)
    c.model.activation = "lrelu"
    c.ml.init = "noise"
    c.ml.noise_init = "uniform"
    c.ml.steps = 20
    c.ml.step_size = 5.0
    c.ml.noise = 0.005
    c.ml.data_noise = 0.2
    c.ml.clamp = False
    c.ml.sample_steps = 20
    c.ml.sample_from = "noise"
    c.train.steps = 1500
    c.train.batch_size = 32
    c.train.lr = 1e-3
    c.train.lr_end = 1e-5
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 500
    c.sample.n = 100
    c.sample.batch_size = 100
    c.sample.chunk_steps = 20
    c.translate.after_train = True
    c.translate.data_name = "digits"  # the source domain: the plain digits at the same size
    c.translate.split = "test"
    c.translate.n = 355  # every test digit
    c.translate.batch_size = 355
    c.translate.noise = 0.01
    c.translate.target_n = 300
    return c
