"""CF-EBM (coarse-to-fine expanding training and sampling, seed 004) on scikit-learn's bundled 8x8
digits, stages 2x2 -> 4x4 -> 8x8: the offline demo of the cfebm method, a few minutes on 2 CPU cores.

MEASURED

    python -m ebmjax.main --config configs/cfebm_digits.py --workdir runs/cfebm_digits
    python scripts/digits_quality.py runs/cfebm_digits/samples/samples.npz
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.method.name = "cfebm"
    c.data.name = "digits"
    c.cfebm.resolutions = (2, 4, 8)
    c.cfebm.widths = (32, 32, 16)
    c.cfebm.head_width = 32
    c.cfebm.variant = "grow"
    c.cfebm.phase_images = 19_200  # 300 steps of 64 images: stage 4x4 from step 300, 8x8 from step 900
    c.cfebm.steps = 15
    c.cfebm.sample_steps = 15
    c.cfebm.step_size = 2.0
    c.cfebm.cyclic_noise = True
    c.cfebm.noise_max = 0.01
    c.cfebm.data_noise = 0.015
    c.train.steps = 2000
    c.train.batch_size = 64
    c.train.lr = 1e-3
    c.train.lr_end = 1e-5
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.log_every = 50
    c.train.checkpoint_every = 500
    c.sample.n = 300
    c.sample.batch_size = 300
    c.sample.chunk_steps = 60
    c.eval.n_samples = 1000
    c.eval.select_by = "confident_share"
    return c
