"""Unpaired image-to-image translation on the bundled digits: plain 16x16 digits -> bold digits.

Target domain (what the model learns): digits_bold, the bundled digits up-sampled to 16x16 (PIL
bilinear) with their strokes thickened by a 2x2 grey dilation. Source domain: the plain 16x16 digits
(translate.data_name = "digits"). After training, --mode train translates the 355 test digits
(translate.after_train): every chain starts at a test digit plus N(0, 0.01^2) noise and runs the
model's own Langevin, ml.sample_steps = 20 steps of x <- clamp(x - 5 dE/dx + 0.005 z) (the length of
the training chains). --mode translate redoes it from the checkpoint (bit-identical translations).

Training: maximum likelihood with CF-EBM's translation chains (ml.init = "source"): every training
step draws 32 plain training digits beside the 32 bold ones, starts the chains at them (plus
N(0, 0.01^2), translate.noise) and runs the same 20 steps; the loss raises the energy where those
chains end and lowers it on the bold digits (plus N(0, 0.015^2)), so the energy learns where a plain
digit should go. The conv net of configs/ml_digits.py with a third stage for 16x16 (8, 16, 32
channels, LeakyReLU), Adam 1e-3 (betas 0.5, 0.999) decaying to 1e-5, 1500 steps. Such a model only
translates: its chains from noise are not bold digits, hence sample.n = 0.

What it measures, judged by scripts/translate_quality.py (a logistic regression fit on the plain
16x16 train digits; it gives the right label to 0.966 of the plain test digits and 0.896 of their
dilated, truly bold versions): label kept, the share of translations given the source's label; ink,
the mean grey level, and ink area, the share of pixels above 0.5, of source / translated / target.
Measured here (355 test digits, the commands below, 2 CPU cores): training seed 0: label kept 0.952,
ink 0.306 / 0.395 / 0.391, ink area 0.307 / 0.414 / 0.409, RMS distance to the true bold versions
0.149 (sources) -> 0.068; train + translate 0.7 minutes on quiet cores (2.2 beside another run). Seed 1 (--config.seed=1): 0.946, ink 0.394,
ink area 0.412, RMS 0.071. The digits keep their label and take on the target's stroke weight.

How the recipe was chosen: docs/tuning.md (translate_digits).

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
    c.ml.init = "source"
    c.ml.noise_init = "uniform"
    c.ml.steps = 20
    c.ml.step_size = 5.0
    c.ml.noise = 0.005
    c.ml.data_noise = 0.015
    c.ml.clamp = True
    c.ml.sample_steps = 20
    c.ml.sample_from = "noise"
    c.train.steps = 1500
    c.train.batch_size = 32
    c.train.lr = 1e-3
    c.train.lr_end = 1e-5
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 500
    c.sample.n = 0  # the model translates (above); its chains from noise are not bold digits
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
