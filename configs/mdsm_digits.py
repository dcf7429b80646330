"""MDSM on scikit-learn's bundled 8x8 digits: the offline demo, about 1.5 minutes on 2 quiet CPU cores.

A Res12-shaped energy (three down-sampling stages, 8x8 -> 1x1) at small width, geometric noise
levels as for MNIST, and an annealing schedule with the paper's shape, shortened.

Figures: docs/mdsm.md. How the recipe was chosen: docs/tuning.md (mdsm_digits).
"""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.data.name = "digits"
    c.model.width = 16
    c.model.blocks_per_stage = 1
    c.mdsm.sigma_low, c.mdsm.sigma_high, c.mdsm.spacing = 0.1, 3.0, "geometric"
    c.train.steps = 3000
    c.train.batch_size = 128
    c.train.lr = 3e-3
    c.train.warmup_steps = 200  # without it, 1 seed in 3 spiked early (grad norm 1200) and ended at 0.39
    c.train.lr_end = 1e-5
    c.train.log_every = 50
    # One XLA device per CPU core: this small network's many small operations run side by side
    # (training 1.3x, Langevin 1.2x as fast on 2 cores; docs/performance.md, "ebmjax against the PyTorch original on a CPU").
    c.dist.cpu_devices = "auto"
    c.train.checkpoint_every = 500
    c.sample.n = 300
    c.sample.batch_size = 300
    c.mdsm.n_hot, c.mdsm.n_anneal, c.mdsm.n_cool = 100, 1000, 100
    c.mdsm.t_min = 0.3  # end the anneal below T = 1: fewer blurred in-between digits
    c.mdsm.step_size = 0.05  # the top of the paper's range mixes faster on the short schedule
    c.sample.chunk_steps = 100
    # Evaluation sized for a laptop CPU (the defaults follow the paper: 50k samples, 10k betas).
    c.eval.n_samples = 600  # two batches of chains; the FID reference is the 355 test digits anyway
    c.eval.ais.n_betas = 1000
    c.eval.ais.n_chains = 64
    c.eval.ais.n_data = 64
    # HMC with 5 leapfrog steps of 0.03 costs half the model evaluations of the paper's 10 steps of
    # 0.02; on a trained digits model both kept acceptance ~0.9 and gave bounds 2.4-0.7 nats apart.
    c.eval.ais.n_leapfrog = 5
    c.eval.ais.step_size = 0.03
    c.eval.ais.chunk = 250
    return c
