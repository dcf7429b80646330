"""MDSM on scikit-learn's bundled 8x8 digits: the offline demo, about 3 minutes on 2 CPU cores.

A Res12-shaped energy (three down-sampling stages, 8x8 -> 1x1) at small width, geometric noise
levels as for MNIST, and an annealing schedule with the paper's shape, shortened.

The recipe was chosen by an independent judge (scripts/digits_quality.py: a logistic regression on
the training digits' pixels; "recognised" = share of 300 samples it classifies with p >= 0.9, mean of
two sampling seeds; label entropy as a fraction of its maximum). From the first demo recipe (lr 1e-3,
1500 steps, anneal 50/200/50 to T = 1): recognised 0.19, entropy 0.96.
- A longer anneal (100/600/100) alone: 0.24 (entropy 0.89).
- lr 2e-3, 3000 steps, anneal 100/1000/100: 0.50; ending the anneal at t_min = 0.3 instead of 1: 0.59
  (entropy 0.90); t_min = 0.5: 0.55 (0.91).
- lr 3e-3 instead of 2e-3 (same 3000 steps, t_min = 0.3): 0.61 (entropy 0.90); with anneal
  200/2000/200: 0.70 but entropy 0.86 (a third of the samples are 1s), and twice the sampling time.
- A 200-step linear warm-up of the learning rate: at lr 3e-3 without it, training seed 1 had a
  gradient spike in its first 100 steps and its samples scored 0.39 (seed 0: 0.64); with it, 0.69.
- Not worth it here: an exponential moving average of the parameters (0.995 at this width: 0.46),
  sigma_high 1.0 or 1.5, sigma0 0.05, Adam b2 0.999, step size 0.02 (first recipe: 0.11 against
  0.19). Width 32 with 8000 steps and EMA 0.999 reaches 0.85 but takes about 11 minutes.
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
    c.sample.n_hot, c.sample.n_anneal, c.sample.n_cool = 100, 1000, 100
    c.sample.t_min = 0.3  # end the anneal below T = 1: fewer blurred in-between digits
    c.sample.step_size = 0.05  # the top of the paper's range mixes faster on the short schedule
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
