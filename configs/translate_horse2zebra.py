"""Unpaired image-to-image translation on tfds' cycle_gan/horse2zebra: horses (domain A) -> zebras (B).

Not run here: it needs the tfds files (prepared as array_record, see docs/getting-started.md,
"Real datasets, offline") and an accelerator. One EBM learns the target domain, the zebras of trainB
(data.domain = "B"); --mode translate (and --mode train, which translates when it is done) starts
Langevin chains at the first translate.n horses of testA (translate.source_domain = "A", split
"test") plus N(0, 0.01^2) noise and runs the model's own chain (ml: ml.sample_steps steps of
x <- clamp(x - step dE/dx + noise z)); <workdir>/translate/ gets translated.npz, panels.png
(horse | translation) and report.json.

The energy is the conv net of the digits demo widened for 64x64 colour images (four stages of 32,
64, 128, 256 channels, LeakyReLU), trained by maximum likelihood with the digits demo's recipe:
every training step's chains start at horses of trainA (ml.init = "source", the loop draws them
beside the zebras) and run the same 50 steps as the translation, so the energy learns where a
horse should go; CF-EBM (REFERENCE: one EBM per target domain, 256x256, 50 steps, flips and crops)
is larger. The
other direction is one override each: --config.data.domain=A --config.translate.source_domain=B
(zebras -> horses; a new --workdir, since the model learns the other domain).

Other pairs are one override away, --config.data.name=cycle_gan/<pair> (A -> B as named, e.g.
apple -> orange): apple2orange, summer2winter_yosemite, horse2zebra, monet2photo, cezanne2photo,
ukiyoe2photo, vangogh2photo (the CF-EBM paper's), maps, facades, iphone2dslr_flower. Their sizes
differ (testA of horse2zebra holds 120 images; lower translate.n where a test split is smaller).

    python -m ebmjax.main --config configs/translate_horse2zebra.py --workdir runs/horse2zebra
    python -m ebmjax.main --config configs/translate_horse2zebra.py --workdir runs/horse2zebra --mode translate
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "ml"
    c.data.name = "cycle_gan/horse2zebra"
    c.data.domain = "B"  # the model learns the zebras (trainB)
    c.data.image_size = 64  # cycle_gan images are 256x256
    c.data.random_flip = True
    c.model.name = "convnet"
    c.model.widths = (32, 64, 128, 256)
    c.model.activation = "lrelu"
    c.ml.init = "source"  # training chains start at horses (trainA), as CF-EBM trains its translations
    c.ml.noise_init = "uniform"
    c.ml.steps = 50  # CF-EBM's translation chains: 50 steps
    c.ml.step_size = 5.0
    c.ml.noise = 0.005
    c.ml.data_noise = 0.015
    c.ml.sample_steps = 50
    c.ml.sample_from = "noise"
    c.train.steps = 30_000
    c.train.batch_size = 32
    c.train.lr = 1e-3
    c.train.lr_end = 1e-5
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 2000
    c.sample.n = 0  # the model translates; its chains from noise are not zebras
    c.sample.batch_size = 64
    c.sample.chunk_steps = 50
    c.translate.after_train = True
    c.translate.source_domain = "A"  # translate the horses (testA)
    c.translate.split = "test"
    c.translate.n = 120  # all of testA
    c.translate.batch_size = 120
    c.translate.noise = 0.01
    c.translate.target_n = 300
    return c
