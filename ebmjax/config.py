"""Experiment configs: every field with its default, loading a config file, and command-line overrides.

A config file is a Python file with ``get_config() -> ml_collections.ConfigDict`` (see
``configs/``). Config files start from :func:`defaults` and override a few fields, so every field
that exists is documented here. ``method.name`` picks the training method; each method reads its
own group (``mdsm``, ...) and the shared ones (``data``, ``model``, ``train``, ``sample``, ...).
Overrides come as ``--config.a.b=value``: numbers (``1e-3``, ``nan`` and ``inf`` are read as
numbers and then refused where they cannot work), ``true``/``false``, ``none``, text as is, and
tuples either as a Python literal (``--config.eval.metrics='("fid", "ood")'``) or as a comma list
(``--config.eval.metrics=fid,ood``; a single word ``fid`` is the 1-tuple ``("fid",)``). A key that
does not exist, in a config file or on the command line, a value of the wrong type, or a number out
of its range (:func:`validate`) is a :class:`~ebmjax.errors.ConfigError` that says what to use.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import math
import pathlib
from typing import Any, Iterable

import ml_collections

from ebmjax.errors import ConfigError


def defaults() -> ml_collections.ConfigDict:
    """Every field of every experiment; the defaults are MDSM with the original's CIFAR-10 settings."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # all randomness (init, data order, noise, sampling) derives from it and the step

    c.method = ml_collections.ConfigDict()
    c.method.name = "mdsm"  # the training method (ebmjax.methods): mdsm | ml | multigrid | coop | cfebm

    c.data = ml_collections.ConfigDict()
    c.data.name = "cifar10"  # digits | digits_bold | mnist | fashion_mnist | cifar10 | celeb_a | cycle_gan/<pair> | toy:<name>
    c.data.domain = ml_collections.config_dict.placeholder(str)  # cycle_gan/<pair> only: the domain learned, A | B (splits train/test read trainA/testA or trainB/testB)
    c.data.data_dir = ml_collections.config_dict.placeholder(str)  # tfds dir; None: $TFDS_DATA_DIR or tfds default
    c.data.pad = 0  # zero padding on each side (MNIST: 2 -> 32x32)
    c.data.image_size = ml_collections.config_dict.placeholder(int)  # square resize (CelebA: 32)
    c.data.random_flip = False  # horizontal flips in training (CelebA)
    c.data.toy_size = 20000  # points drawn once for 2-D toy densities

    c.model = ml_collections.ConfigDict()
    c.model.name = "mdsm_resnet"  # the energy network (ebmjax.models): mdsm_resnet | convnet | mlp | gaussian
    c.model.width = 128  # mdsm_resnet: d, channels of the stem; stages have d, 2d, 4d, 8d
    c.model.blocks_per_stage = 2  # mdsm_resnet: same-width blocks per stage: 2 = Res18, 1 = Res12
    c.model.widths = (32, 64, 128)  # convnet: channels of each stage (two 3x3 convs, then a 2x2 mean pool)
    c.model.activation = "swish"  # convnet: swish | lrelu
    c.model.hidden = (128, 128)  # mlp only
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (parameters stay float32)
    c.model.conv = "auto"  # how convolutions are computed: auto (matrix products on CPU, XLA's convolution on GPU/TPU) | matmul | xla

    # Multiscale denoising score matching (ebmjax.methods.mdsm).
    c.mdsm = ml_collections.ConfigDict()
    c.mdsm.sigma0 = 0.1  # width of the kernel whose smoothed density is learned (also the denoising jump's)
    c.mdsm.sigma_low = 0.05  # noise levels, fixed per batch position
    c.mdsm.sigma_high = 1.2
    c.mdsm.spacing = "linear"  # linear | geometric

    # Maximum-likelihood training with Langevin chains in every step (ebmjax.methods.ml): short-run
    # chains from noise (Nijkamp et al.), from the data (contrastive divergence) or persistent chains
    # in a replay buffer (IGEBM, JEM). Langevin as the ML literature writes it:
    # x <- clamp(x - step_size * clip(dE/dx, grad_clip) + noise * z) (ebmjax.samplers.decoupled).
    c.ml = ml_collections.ConfigDict()
    c.ml.init = "noise"  # noise | data | buffer | source (training images of the translation's source domain, translate.data_name, plus translate.noise): where every training step's chains start
    c.ml.noise_init = "uniform"  # uniform (over the data's range) | gaussian: fresh chain starts
    c.ml.steps = 40  # Langevin steps per training step
    c.ml.step_size = 1.0  # step on the energy's gradient
    c.ml.noise = 0.005  # std of the noise added every step
    c.ml.grad_clip = ml_collections.config_dict.placeholder(float)  # clip each gradient entry to +-grad_clip (IGEBM: 0.01); None: no clipping
    c.ml.clamp = True  # clamp the chains to the data's range after every step
    c.ml.data_noise = 0.0  # std of Gaussian noise added to the data (short-run, JEM: 0.03 on [-1, 1])
    c.ml.energy_l2 = 0.0  # weight of mean E(data)^2 + mean E(samples)^2 in the loss (IGEBM: 1.0)
    c.ml.buffer_size = 10_000  # buffer: chain ends kept (IGEBM, JEM: 10,000); split over the devices
    c.ml.reinit_prob = 0.05  # buffer: share of chains restarted from fresh noise each step (IGEBM, JEM: 5%)
    c.ml.sample_steps = 200  # --mode sample: Langevin steps of the same kind per chain
    c.ml.sample_from = "noise"  # --mode sample starts at: noise | buffer (ml.init = buffer only)
    c.ml.energy_bound = 1e4  # stop the run when |mean energy| of data or samples exceeds this (divergence)

    # Multigrid maximum likelihood (ebmjax.methods.multigrid; Gao et al. CVPR 2018, Malhotra §IV): one
    # energy per grid (GridEnergy, networks "energy_<side>"), the coarsest grid the block average of
    # the data, every finer grid's chain started from the up-sampled sample of the grid before. Langevin
    # as in ml: x <- clamp(x - step_size * clip(dE/dx) + noise * z). Per-grid settings are tuples with
    # one entry (shared by every learned grid) or one per learned grid (grids[1:]). Gao's code: 90 steps
    # (paper 30) of x += (d^2/2) df/dx with d = 0.3 on [0, 255] pixels, no noise (the paper adds it).
    c.multigrid = ml_collections.ConfigDict()
    c.multigrid.grids = (1, 4, 16, 64)  # grid sides, coarse to fine; the last is the image side (Gao: 1, 4, 16, 64)
    c.multigrid.widths = (96, 128, 256)  # channels of every grid's conv layers (Gao's 4x4 net: 96, 128, 256)
    c.multigrid.kernel = 3  # conv kernel side (Gao: 5 for the strided first layer, 3 after)
    c.multigrid.strided_layers = (1,)  # leading conv layers with stride 2 (on grids of side >= 4), per learned grid or shared (Gao: 1, 1, 4)
    c.multigrid.order = "sequential"  # sequential (as the original: grid k starts from grid k-1's sample) | joint (every grid starts from the up-sampled data of the grid before; chains independent)
    c.multigrid.steps = (30,)  # Langevin steps per training step, per learned grid or shared
    c.multigrid.step_size = (1.0,)  # step on the energy's gradient, per learned grid or shared
    c.multigrid.noise = (0.0,)  # std of the Langevin noise, per learned grid or shared (0: off, as Gao's code)
    c.multigrid.sample_steps = ()  # --mode sample: steps per learned grid or shared; (): as multigrid.steps
    c.multigrid.grad_clip = ml_collections.config_dict.placeholder(float)  # clip each gradient entry of the chains; None: no clipping
    c.multigrid.clamp = True  # clamp the chains to the data's range after every step (Gao: [0, 255])
    c.multigrid.ref_sigma = ml_collections.config_dict.placeholder(float)  # None: no reference; else add |x|^2 / (2 ref_sigma^2) to every grid's energy (Malhotra's paper eq. 1)
    c.multigrid.data_noise = 0.0  # std of Gaussian noise added to each grid's data
    c.multigrid.energy_l2 = 0.0  # weight of mean E(data)^2 + mean E(samples)^2 in each grid's loss
    c.multigrid.coarse_buffer = 1024  # coarsest-grid block averages of past training batches kept (in the carry) as --mode sample's starts
    c.multigrid.energy_bound = 1e4  # stop the run when |mean energy| of data or samples on any grid exceeds this
    # Malhotra's modified multigrid: a generator G (network "generator", DilatedGenerator, one for every
    # grid) in front of every grid's chain, which then starts from the up-sampled G(previous grid's sample).
    # The seed is loose about what G learns; two readings: "teach" (MCMC teaching, as CoopNets: G's
    # up-sampled output is pulled towards the grid's revised samples) and "autoencode" (§III.I: G
    # regenerates the training images of every grid it is applied to). Loss |.|^2 / (2 gen_sigma^2)
    # summed over pixels; G's Adam has the train.* schedule shape with gen_lr, gen_b1, gen_b2.
    c.multigrid.generator = "none"  # none (Gao et al.) | teach | autoencode (Malhotra's two readings)
    c.multigrid.gen_rates = (1, 2, 4, 6, 12, 18)  # dilation rates of G's six parallel branches (not in the seed; see DilatedGenerator)
    c.multigrid.gen_width = 32  # channels of G's first two conv layers (not in the seed: small, as it asks)
    c.multigrid.gen_branch_width = 16  # channels of each of G's dilated branches
    c.multigrid.gen_sigma = 0.3  # sigma_g of G's loss (CoopNets' 0.3)
    c.multigrid.gen_lr = 1e-4  # G's Adam learning rate (CoopNets' generator: 1e-4; the seed gives none)
    c.multigrid.gen_b1 = 0.5  # G's Adam betas (CoopNets: 0.5, 0.999)
    c.multigrid.gen_b2 = 0.999

    # CF-EBM (ebmjax.methods.cfebm; the CF-EBM paper, REFERENCE §2): coarse-to-fine expanding training. One
    # expanding energy (ExpandingEnergy: per-resolution from_rgb, residual blocks added at the bottom,
    # the Expand block alpha * new + (1 - alpha) * old) learns at resolutions[0] for one phase, then
    # each finer stage fades in over one phase (alpha linear in images seen) and trains stable for
    # one phase; the last stage trains until train.steps. Negative samples are drawn from the
    # beginning every step: uniform noise at the coarsest side, `steps` Langevin steps per stage
    # x <- clamp(x - step_size * clip(dE/dx) + sigma z), up-sampled (pixel replication) between stages.
    c.cfebm = ml_collections.ConfigDict()
    c.cfebm.resolutions = (8, 16, 32)  # stage sides, coarse to fine, each twice the one before; the last is the image side (CIFAR: 8, 16, 32)
    c.cfebm.widths = (128, 128, 64)  # feature channels at each stage's side (from_rgb's output)
    c.cfebm.head_width = 128  # channels of the head and of block 0's output
    c.cfebm.variant = "grow"  # grow (one network, every layer keeps learning; train_v0) | per_stage (a network per stage started from the previous stage's weights, coarser ones frozen; train_v1)
    c.cfebm.phase_images = 1_200_000  # images seen per fade phase and per stable phase (CIFAR: 1.2M, CelebA: 1.5M)
    c.cfebm.lr_by_stage = ()  # constant learning rate per stage (the original: 1e-3 up to 32x32, 1.2e-3 at 64); (): train.lr's schedule
    c.cfebm.steps = 15  # Langevin steps per stage in every training step (the original: 15)
    c.cfebm.sample_steps = 15  # --mode sample: Langevin steps per stage
    c.cfebm.step_size = 0.25  # step on dE/dx (the original: 1.0 on [-1, 1] images, i.e. 0.25 on [0, 1])
    c.cfebm.noise = 0.0025  # sigma of fixed-noise chains (the original: 0.005 on [-1, 1])
    c.cfebm.cyclic_noise = True  # sigma decays linearly from noise_max to 0 over all of a chain's steps (the original's "cyclic"); False: fixed noise
    c.cfebm.noise_max = 0.0075  # start of the cyclic decay (the original: 0.015 on [-1, 1])
    c.cfebm.smooth_handover = True  # while a stage fades in: int(steps (1 - alpha)) steps at the old side, then x <- c + sqrt(1 - alpha^2) (up(x) - c) + alpha (range / 2) z
    c.cfebm.grad_clip = ml_collections.config_dict.placeholder(float)  # clip each gradient entry of the chains; None: no clipping
    c.cfebm.clamp = True  # clamp the chains to the data's range after every step and up-sampling
    c.cfebm.data_noise = 0.0  # std of Gaussian noise added to the data (the original: 0.01 on CelebA)
    c.cfebm.energy_l2 = 0.0  # weight of mean E(data)^2 + mean E(samples)^2 (the original's "l2" has the wrong sign and weight 0)
    c.cfebm.energy_bound = 1e4  # stop the run when |mean energy| of data or samples exceeds this (the original stops at |loss| > 1000)

    # Cooperative learning (ebmjax.methods.coop; CoopNets, Xie et al.): a generator g (network
    # "generator", LatentGenerator) proposes g(z), z ~ N(0, I); the energy ("energy", model.*) revises
    # the proposals with Langevin as in ml, x <- clamp(x - step_size * clip(dE/dx) + noise * z), learns
    # from (data, revised) by ml_loss, and g learns to reproduce the revised samples (|g(z) - x|^2 /
    # (2 gen_sigma^2)). The energy's Adam is train.*; the generator's is coop.gen_* (the same schedule
    # shape: warm-up, cosine decay to gen_lr * train.lr_end / train.lr). Defaults: CoopNets' TF code on
    # images in [-1, 1] (delta 0.002 -> step 2e-6, noise 0.002; sigma 0.016; 15 steps; sigma_g 0.3;
    # generator lr 1e-4, beta1 0.5; z of 100; CIFAR generator 256@4 -> 128@8 -> 64@16 -> 3@32).
    c.coop = ml_collections.ConfigDict()
    c.coop.latent_dim = 100  # size of z (CoopNets: 100)
    c.coop.gen_widths = (256, 128, 64)  # generator channels per map, one stride-2 transposed conv each (CoopNets CIFAR); (): linear z -> x
    c.coop.gen_kernel = 4  # side of the generator's transposed-conv kernels
    c.coop.gen_output = "tanh"  # tanh (CoopNets; scaled to the data's range) | linear
    c.coop.gen_norm = "none"  # none | layer (batch-independent; CoopNets has BatchNorm, which this drops)
    c.coop.gen_sigma = 0.3  # sigma_g of the generator's loss |g(z) - revised|^2 / (2 sigma_g^2)
    c.coop.gen_lr = 1e-4  # the generator's Adam learning rate (CoopNets: 1e-4)
    c.coop.gen_b1 = 0.5  # the generator's Adam betas (CoopNets: 0.5, 0.999)
    c.coop.gen_b2 = 0.999
    c.coop.steps = 15  # Langevin steps revising the proposals in every training step (CoopNets: 15)
    c.coop.step_size = 2e-6  # step on the energy's gradient (CoopNets: delta^2 / 2 = 2e-6)
    c.coop.noise = 0.002  # std of the Langevin noise (CoopNets: delta = 0.002)
    c.coop.grad_clip = ml_collections.config_dict.placeholder(float)  # clip each gradient entry of the chains; None: no clipping
    c.coop.clamp = True  # clamp the chains to the data's range after every step
    c.coop.ref_sigma = ml_collections.config_dict.placeholder(float)  # None: none; else add |x - c|^2 / (2 ref_sigma^2) to the energy, c the middle of the data's range (CoopNets: 0.016 on [-1, 1])
    c.coop.data_noise = 0.0  # std of Gaussian noise added to the data
    c.coop.energy_l2 = 0.0  # weight of mean E(data)^2 + mean E(revised)^2 in the energy's loss
    c.coop.infer_steps = 0  # latent Langevin steps inferring z from the revised samples before g learns (0: off, CoopNets' default)
    c.coop.infer_step_size = 0.045  # latent Langevin: step on the gradient of |z|^2 / 2 + |x - g(z)|^2 / (2 sigma_g^2) (CoopNets: 0.3^2 / 2)
    c.coop.infer_noise = 0.3  # latent Langevin: noise std (CoopNets: 0.3)
    c.coop.sample_steps = 15  # --mode sample: Langevin steps after the generator's proposal
    c.coop.energy_bound = 1e4  # stop the run when |mean energy| of data or revised samples exceeds this

    c.train = ml_collections.ConfigDict()
    c.train.steps = 300_000
    c.train.batch_size = 128  # global batch, split over all devices
    c.train.lr = 5e-5
    c.train.lr_end = 1e-6  # cosine decay from lr to lr_end over train.steps
    c.train.warmup_steps = 0  # linear warm-up from 0 to lr over the first warmup_steps, then the cosine decay (0: none, as the paper; a run shorter than the warm-up only ramps up)
    c.train.b1 = 0.9
    c.train.b2 = 0.95
    c.train.eps = 1e-8
    c.train.log_every = 100  # steps between metric lines
    c.train.checkpoint_every = 5000
    c.train.keep_checkpoints = 3
    c.train.keep_best = 0  # also keep the k best checkpoints by eval.select_by, each scored on eval.scan_samples samples when saved (0: only the newest keep_checkpoints)
    c.train.steps_per_call = 1  # training steps per compiled call (train.step.make_multi_step); compile time grows with it
    c.train.ema_decay = 0.0  # 0: off; e.g. 0.999: keep an exponential moving average of the parameters, which sampling, restoration and evaluation then use

    c.sample = ml_collections.ConfigDict()
    c.sample.n = 64  # samples written after training and by --mode sample
    c.sample.batch_size = 1024  # chains run at once
    c.sample.schedule = "exp"  # exp | lin (ebmjax.schedules.annealing_schedule)
    c.sample.t_max = 100.0
    c.sample.t_min = 1.0  # the annealing ends here before cooling to 0 (paper: 1; < 1 favours the most likely images)
    c.sample.n_hot = 500
    c.sample.n_anneal = 2000
    c.sample.n_cool = 200
    c.sample.step_size = 0.02  # Langevin epsilon
    c.sample.init_mean = 0.5  # chains start at init_mean + init_std * N(0, I)
    c.sample.init_std = 1.0
    c.sample.denoise = True  # finish with the single-step denoising jump x - mdsm.sigma0^2 dE/dx
    c.sample.chunk_steps = 100  # Langevin steps per compiled call (progress and resume granularity)
    c.sample.unroll_steps = 0  # > 0: every chain (sampling, restoration, translation) runs as programs of this many unrolled steps (no loop), which XLA:CPU runs faster with model.conv = "xla"; must divide chunk_steps
    c.sample.resume = True  # keep finished shards (and the in-flight chains) of an interrupted run
    # Samples are reproducible: the same checkpoint, sample.* settings and seed give the same images.
    # None: the key derives from `seed`, and samples go to <workdir>/samples/. An integer N >= 0: another
    # key (each N its own), and samples go to <workdir>/samples_seed<N>/, so fresh samples never
    # overwrite earlier ones.
    c.sample.seed = ml_collections.config_dict.placeholder(int)
    c.sample.checkpoint = "latest"  # latest | best (eval/best_checkpoint.json, from --mode eval with eval.checkpoints=all) | a step number: the checkpoint sample, inpaint, denoise and eval use
    c.sample.merge_max_gb = 8.0  # also write one samples.npz when all samples fit in this many GB

    # --mode inpaint / denoise (ebmjax.restore). Inpainting anneals with the sample.* schedule, step
    # size, start distribution and chunking, and ends with the jump (on free pixels) if sample.denoise.
    c.restore = ml_collections.ConfigDict()
    c.restore.n = 64  # images restored: the first n of restore.split
    c.restore.split = "test"  # falls back to "train" (with a logged notice) if the dataset has no test split
    c.restore.batch_size = 256  # images restored at once, rounded up to a multiple of the device count
    c.restore.mask = "center"  # inpainting mask: center (box) | random (pixels) | half
    c.restore.box_fraction = 0.5  # center: box side / image side, in (0, 1) (0.5 frees a quarter)
    c.restore.mask_fraction = 0.5  # random: fraction of pixels to restore, in (0, 1)
    c.restore.half_side = "bottom"  # half: the half to restore: top | bottom | left | right
    c.restore.fill = 0.5  # value the corrupted image shows (and is scored with) in the missing pixels
    c.restore.n_chains = 8  # inpaint: chains per image; the restored image is their mean (the posterior-mean estimate, best in squared error)
    c.restore.clamp_noise = 0.1  # std of the noise on known pixels at T = 1 (the paper's sigma0; keep = mdsm.sigma0)
    c.restore.noise_sigma = 0.2  # denoise: std of the Gaussian noise added to images in [0, 1]
    # Denoising Langevin starts at the noisy image y and runs on the posterior energy
    # E(x) + |x - y|^2 / (2 noise_sigma^2), so it keeps what y says; T falls linearly from
    # denoise_t_start to 0, so the chain ends near the posterior's mode.
    c.restore.denoise_steps = 100  # denoise: Langevin steps started from the noisy image
    c.restore.denoise_t_start = 0.01  # denoise: first temperature of the chain (linear down to 0)

    # --mode translate (ebmjax.translate): unpaired image-to-image translation with the energy of the
    # target domain (the training data). Chains start at source-domain images plus noise * N(0, I) and
    # run the method's own last chain (kernel, temperatures, step sizes); <workdir>/translate/.
    c.translate = ml_collections.ConfigDict()
    c.translate.after_train = False  # --mode train: also translate once training (and sampling) is done
    c.translate.data_name = ml_collections.config_dict.placeholder(str)  # the source domain's data.name (e.g. digits for a digits_bold model); None: data.name (a cycle_gan pair's other domain)
    c.translate.source_domain = "A"  # cycle_gan/<pair> sources only: the domain translated from, A | B (not data.domain, the one learned)
    c.translate.split = "test"  # the source images: the first translate.n of this split
    c.translate.image_size = ml_collections.config_dict.placeholder(int)  # square resize of the source images; None: data.image_size (data.pad and data.data_dir are shared)
    c.translate.n = 256  # source images translated
    c.translate.batch_size = 256  # chains run at once, rounded up to a multiple of the device count
    c.translate.noise = 0.01  # std of the Gaussian noise added to the source images at the start (CF-EBM: 0.01)
    c.translate.steps = 0  # Langevin steps; 0: the length of the method's last chain (ml: ml.sample_steps); k: that chain's last k steps (the first step repeated in front when k is longer)
    c.translate.target_n = 300  # target-domain training images saved beside the translations, for comparison
    c.translate.seed = ml_collections.config_dict.placeholder(int)  # None: the key derives from `seed`; an integer N >= 0: another key (other noise and chains)

    # Multi-host runs (ebmjax.parallel.initialize_distributed; launch/ has ready-made scripts).
    c.dist = ml_collections.ConfigDict()
    c.dist.initialize = "auto"  # auto | yes | no: start jax.distributed; auto: when SLURM, mpirun, a TPU VM or $JAX_COORDINATOR_ADDRESS says there are several processes
    c.dist.coordinator_address = ml_collections.config_dict.placeholder(str)  # host:port of process 0; None: $JAX_COORDINATOR_ADDRESS or cluster detection
    c.dist.num_processes = ml_collections.config_dict.placeholder(int)  # None: $JAX_NUM_PROCESSES or cluster detection
    c.dist.process_id = ml_collections.config_dict.placeholder(int)  # None: $JAX_PROCESS_ID or cluster detection
    c.dist.cpu_devices = "1"  # XLA devices on a CPU (ebmjax.parallel.use_cpu_cores): "1" = one device using every core; "auto" = one per core (fewer if train.batch_size or a carried buffer would not split evenly), faster for small MDSM networks (mdsm_digits sets it), slower for large ones and for maximum-likelihood training; "N" = N devices. Ignored on GPU/TPU, with several processes, and when $XLA_FLAGS sets xla_force_host_platform_device_count

    # --mode eval (ebmjax.evaluation.report): <workdir>/eval/report.json and pictures. Defaults follow
    # the paper (50k samples, AIS with 10,000 betas and 10 leapfrog steps); shrink them for CPU runs.
    c.eval = ml_collections.ConfigDict()
    c.eval.checkpoints = "latest"  # latest | all: first score every saved checkpoint (eval/quality_vs_step.png, eval/best_checkpoint.json), then evaluate the best
    c.eval.scan_samples = 500  # samples drawn from each checkpoint when checkpoints are scored (the original: 1000)
    c.eval.select_by = "fid"  # fid (lowest) | confident_share (highest, digits): what "best" means
    c.eval.metrics = ("fid", "ais", "ood", "neighbours", "coverage")  # any subset; fid = FID, KID and IS with every feature net that applies
    c.eval.n_samples = 50_000  # model samples for fid / neighbours / coverage (paper: 50k for CIFAR-10 IS/FID, 8000 for stacked-MNIST modes)
    c.eval.samples_file = ml_collections.config_dict.placeholder(str)  # .npz with key "images" to evaluate instead; None: draw n_samples with sample.* (cached in eval/samples.npz)
    c.eval.n_data = 10_000  # test images (first n) as FID/KID reference, OOD in-distribution set and AIS energies; as many train images for the train-vs-test rows
    c.eval.batch_size = 500  # images per energy / feature-network call
    c.eval.inception_weights = ml_collections.config_dict.placeholder(str)  # pt_inception-2015-12-05-6726825d.pth (needs torch) or its .npz; None: Inception metrics skipped, said so in the report
    c.eval.classifier_seed = 0  # seed of the digits classifier (digits FID/KID/IS, coverage), trained once and cached in $EBMJAX_CACHE_DIR or ~/.cache/ebmjax
    c.eval.kid_subsets = 100  # KID: random subsets averaged
    c.eval.kid_subset_size = 1000  # KID: rows per subset (capped at the smaller set)
    c.eval.is_splits = 10  # IS: mean and std over this many splits of the samples
    c.eval.neighbours_k = 10  # nearest training images shown beside each sample (paper Fig. A2: 10)
    c.eval.neighbours_n = 16  # samples shown, one row each, in neighbours.png
    c.eval.neighbours_summary = 500  # samples (and test images) whose distance to the nearest training image is averaged
    c.eval.neighbours_train = 60_000  # training images searched (the first ones)
    c.eval.ais = ml_collections.ConfigDict()
    c.eval.ais.n_chains = 100  # forward AIS chains, started from the reference
    c.eval.ais.n_data = 100  # reverse AIS chains, started at the first test images (Burda et al. 2015)
    c.eval.ais.n_betas = 10_000  # intermediate distributions (paper: 10,000)
    c.eval.ais.schedule = "geometric"  # geometric | sigmoid | linear (ebmjax.evaluation.ais.ais_betas)
    c.eval.ais.beta_min = 1e-4  # first nonzero beta of the geometric schedule
    c.eval.ais.kernel = "hmc"  # hmc | mala: one move per beta
    c.eval.ais.n_leapfrog = 10  # HMC leapfrog steps per move (paper: 10)
    c.eval.ais.step_size = 0.01  # leapfrog step at beta = 1 (the model; its width is ~sigma0); see the acceptance in the report
    c.eval.ais.ref_step_size = 0.5  # leapfrog step at beta = 0 (the reference); precisions are interpolated in between; None: step_size
    c.eval.ais.ref_std = 1.0  # reference N(ref_mean, ref_std^2 I)
    c.eval.ais.ref_mean = 0.0  # paper: 0
    c.eval.ais.temperature = 1.0  # T of the target density exp(-E/T)
    c.eval.ais.pixel_scale = 255.0  # bits/dim of pixels in [0, pixel_scale] (paper: 255); the report adds [0, 1]
    c.eval.ais.chunk = 500  # betas per compiled call (progress granularity)
    c.eval.ood = ml_collections.ConfigDict()
    c.eval.ood.sets = ("auto",)  # auto (per dataset) and/or uniform, constant, interpolation, faces, or tfds names (svhn_cropped, cifar100, ...)
    c.eval.ood.n = 1000  # images per OOD set (and in-distribution test images)
    c.eval.ood.noise = True  # also the paper's variant: energies after adding mdsm.sigma0 noise
    return c


def _load_file(path: str) -> ml_collections.ConfigDict:
    p = pathlib.Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file {path!r} does not exist. Pass one of the files in configs/, e.g. --config configs/mdsm_digits.py")
    spec = importlib.util.spec_from_file_location(f"ebmjax_config_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise ConfigError(f"Config file {path!r} has no get_config() function returning an ml_collections.ConfigDict.")
        cfg = module.get_config()
    except ConfigError:
        raise
    except SyntaxError as e:
        raise ConfigError(f"Config file {path!r} is not valid Python: {e.msg} (line {e.lineno}). Fix it and rerun.") from None
    except Exception as e:  # any error raised by the user's own code
        line = _config_line(e, p)
        raise ConfigError(f"Config file {path!r} failed{line}: {type(e).__name__}: {e}. Fix it and rerun.") from None
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() in {path!r} must return an ml_collections.ConfigDict, got {type(cfg).__name__}.")
    check_schema(cfg, where=f"config file {path!r}")
    return cfg


def _config_line(e: BaseException, path: pathlib.Path) -> str:
    """' at line N' for the deepest frame of ``e``'s traceback inside the config file, or ''."""
    tb, line = e.__traceback__, None
    while tb is not None:
        if pathlib.Path(tb.tb_frame.f_code.co_filename).resolve() == path.resolve():
            line = tb.tb_lineno
        tb = tb.tb_next
    return "" if line is None else f" at line {line}"


def _did_you_mean(name: str, options: Iterable[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f' Did you mean "{prefix}{close[0]}"?' if close else ""


def check_schema(cfg: ml_collections.ConfigDict, *, where: str = "the config",
                 schema: ml_collections.ConfigDict | None = None, _path: str = "") -> None:
    """ConfigError for any field of ``cfg`` that :func:`defaults` does not have (a typo such as
    ``c.trian = 3`` or ``c.model.widht = 4``), with the closest existing name, and for groups
    replaced by values or values replaced by groups."""
    schema = defaults() if schema is None else schema
    for key in cfg.keys():
        dotted = f"{_path}{key}"
        if key not in schema:
            where_group = _path[:-1] or "the top level"
            raise ConfigError(
                f"{where} sets {dotted!r}, which is not a config field: {where_group} has no field {key!r}."
                + _did_you_mean(key, schema.keys(), _path) + f" Fields there: {', '.join(sorted(schema.keys()))}.")
        value, default = cfg[key], schema[key]
        if isinstance(default, ml_collections.ConfigDict):
            if not isinstance(value, ml_collections.ConfigDict):
                raise ConfigError(f"{where} sets {dotted!r} to {value!r}, but it is a group of fields; set one of: "
                                  f"{', '.join(sorted(default.keys()))}.")
            check_schema(value, where=where, schema=default, _path=dotted + ".")
        elif isinstance(value, ml_collections.ConfigDict):
            raise ConfigError(f"{where} makes {dotted!r} a group, but it is a single value (default {default!r}).")


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text", tuple: "a tuple"}


def _literal(text: str) -> Any:
    """``text`` as a Python literal, or the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _tuple_examples(key: str, example: tuple) -> str:
    plain = ",".join(str(x) for x in example)
    literal = "(" + ", ".join(json.dumps(x) if isinstance(x, str) else repr(x) for x in example) + \
        ("," if len(example) == 1 else "") + ")"
    return f"--config.{key}={plain} or --config.{key}='{literal}'"


def _parse_tuple(text: str, current: tuple | None, key: str) -> tuple:
    """A tuple from ``a,b``, a single ``a`` (the 1-tuple), or a literal such as ``("a", "b")``; its
    items must have the type of the current value's items."""
    value = _literal(text)
    if isinstance(value, (tuple, list)):
        items = list(value)
    elif value is not text and not isinstance(value, (dict, set)):
        items = [value]  # 128 or "fid" (quoted): a 1-tuple
    else:  # words: fid / fid,ood / (fid, ood)
        inner = text.strip()
        if inner[:1] + inner[-1:] in ("()", "[]"):
            inner = inner[1:-1]
        items = [_literal(p.strip()) for p in inner.split(",") if p.strip()]
    kinds = {type(x) for x in (current or ())}
    if len(kinds) == 1:
        kind = kinds.pop()
        if kind is float:
            items = [float(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in items]
        bad = [x for x in items if not isinstance(x, kind) or (kind is int and isinstance(x, bool))]
        if bad:
            raise ConfigError(f"--config.{key}={text}: expected a tuple of {kind.__name__}, e.g. "
                              f"{_tuple_examples(key, tuple(current))}.")
    return tuple(items)


def _parse_value(text: str, current: Any, key: str, kind: type | None = None) -> Any:
    """The value of ``--config.<key>=<text>`` for a field whose value is ``current`` (of type ``kind``,
    which a placeholder such as ``sample.seed = None`` declares)."""
    kind = type(current) if current is not None else kind
    if text.lower() in ("none", "null"):
        return None
    if kind is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key}={text}: expected true or false.")
    if kind is str:
        return text
    if kind is tuple:
        return _parse_tuple(text, current, key)
    value = _literal(text)
    if kind is float:
        if isinstance(value, str):
            try:
                value = float(text)  # nan, inf: numbers, refused (or not) by validate with a reason
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # 1e5 steps
    if kind is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        example = f" e.g. --config.{key}={current}" if current is not None else ""
        raise ConfigError(f"--config.{key}={text}: expected a value of type {kind.__name__} "
                          f"({_TYPE_NAMES.get(kind, kind.__name__)}),{example}.".replace(",.", "."))
    return value


def apply_override(cfg: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets ``cfg.<key>`` (dotted) from its command-line text, checking the key and the type."""
    node = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        keys = list(node.keys())
        if part not in keys:
            where = ".".join(parts[:i]) or "the top level"
            hint = _did_you_mean(part, keys, "".join(p + "." for p in parts[:i]))
            raise ConfigError(
                f"Unknown config key --config.{key}: {where} has no field {part!r}.{hint} "
                f"Fields there: {', '.join(sorted(keys))}."
            )
        if i < len(parts) - 1:
            node = node[part]
            if not isinstance(node, ml_collections.ConfigDict):
                raise ConfigError(f"--config.{key}: {'.'.join(parts[: i + 1])} is a value, not a group.")
    last = parts[-1]
    current = node[last]
    if isinstance(current, ml_collections.ConfigDict):
        raise ConfigError(f"--config.{key} is a group of fields; set one of: {', '.join(sorted(current.keys()))}.")
    kind = None
    if current is None:  # a placeholder (e.g. sample.seed) declares its type; get_ref does not change it
        try:
            kind = node.get_ref(last).get_type()
        except (ValueError, AttributeError):  # a plain None: any type
            kind = None
    value = _parse_value(text, current, key, kind)
    try:
        node[last] = value
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--config.{key}={text}: {e}") from None


def load_config(path: str, overrides: Iterable[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
    """Loads a config file and applies ``(dotted_key, text)`` overrides in order."""
    cfg = _load_file(path)
    for key, text in overrides:
        apply_override(cfg, key, text)
    validate(cfg)
    return cfg


# Number fields and the values that work for them: (dotted name, what it is, rule). Rules: "> 0" and
# ">= 0" (finite), "[0, 1)", "(0, 1)", "finite", ">= 0 or inf". Fields of a method's own group join here.
NUMBER_RULES = (
    ("train.lr", "the learning rate", "> 0"),
    ("train.lr_end", "the learning rate at the end of the decay", ">= 0"),
    ("train.b1", "Adam's first-moment decay", "[0, 1)"),
    ("train.b2", "Adam's second-moment decay", "[0, 1)"),
    ("train.eps", "Adam's epsilon", "> 0"),
    ("train.ema_decay", "the decay of the parameters' moving average (0 = off)", "[0, 1)"),
    ("ml.step_size", "the Langevin step on the energy's gradient", "> 0"),
    ("ml.noise", "the Langevin noise", ">= 0"),
    ("ml.grad_clip", "the clip of the chains' gradients", "> 0"),
    ("ml.data_noise", "the noise added to the data", ">= 0"),
    ("ml.energy_l2", "the weight of the energy penalty", ">= 0"),
    ("ml.reinit_prob", "the share of chains restarted from noise", "[0, 1)"),
    ("ml.energy_bound", "the energy magnitude at which the run stops", "> 0"),
    ("multigrid.grad_clip", "the clip of the chains' gradients", "> 0"),
    ("multigrid.ref_sigma", "the width of the Gaussian reference", "> 0"),
    ("multigrid.data_noise", "the noise added to the data", ">= 0"),
    ("multigrid.energy_l2", "the weight of the energy penalty", ">= 0"),
    ("multigrid.energy_bound", "the energy magnitude at which the run stops", "> 0"),
    ("multigrid.gen_sigma", "the generator's sigma_g", "> 0"),
    ("multigrid.gen_lr", "the generator's learning rate", "> 0"),
    ("multigrid.gen_b1", "the generator's Adam first-moment decay", "[0, 1)"),
    ("multigrid.gen_b2", "the generator's Adam second-moment decay", "[0, 1)"),
    ("cfebm.step_size", "the Langevin step on the energy's gradient", "> 0"),
    ("cfebm.noise", "the Langevin noise", ">= 0"),
    ("cfebm.noise_max", "the start of the cyclic noise decay", ">= 0"),
    ("cfebm.grad_clip", "the clip of the chains' gradients", "> 0"),
    ("cfebm.data_noise", "the noise added to the data", ">= 0"),
    ("cfebm.energy_l2", "the weight of the energy penalty", ">= 0"),
    ("cfebm.energy_bound", "the energy magnitude at which the run stops", "> 0"),
    ("coop.gen_sigma", "the generator's sigma_g", "> 0"),
    ("coop.gen_lr", "the generator's learning rate", "> 0"),
    ("coop.gen_b1", "the generator's Adam first-moment decay", "[0, 1)"),
    ("coop.gen_b2", "the generator's Adam second-moment decay", "[0, 1)"),
    ("coop.step_size", "the Langevin step on the energy's gradient", "> 0"),
    ("coop.noise", "the Langevin noise", ">= 0"),
    ("coop.grad_clip", "the clip of the chains' gradients", "> 0"),
    ("coop.ref_sigma", "the width of the Gaussian reference", "> 0"),
    ("coop.data_noise", "the noise added to the data", ">= 0"),
    ("coop.energy_l2", "the weight of the energy penalty", ">= 0"),
    ("coop.infer_step_size", "the latent Langevin step", "> 0"),
    ("coop.infer_noise", "the latent Langevin noise", ">= 0"),
    ("coop.energy_bound", "the energy magnitude at which the run stops", "> 0"),
    ("mdsm.sigma0", "the width of the smoothing kernel", "> 0"),
    ("mdsm.sigma_low", "the smallest noise level", "> 0"),
    ("mdsm.sigma_high", "the largest noise level", "> 0"),
    ("sample.t_max", "the temperature the chains start at", "> 0"),
    ("sample.t_min", "the temperature the annealing ends at", "> 0"),
    ("sample.step_size", "the Langevin step size", "> 0"),
    ("sample.init_mean", "the mean of the chains' start", "finite"),
    ("sample.init_std", "the spread of the chains' start", ">= 0"),
    ("sample.merge_max_gb", "the size up to which samples.npz is written", ">= 0 or inf"),
    ("restore.box_fraction", "the side of the inpainting box over the image side", "(0, 1)"),
    ("restore.mask_fraction", "the share of pixels to restore", "(0, 1)"),
    ("restore.fill", "the value shown in the missing pixels", "finite"),
    ("restore.clamp_noise", "the noise on known pixels", ">= 0"),
    ("restore.noise_sigma", "the noise added for --mode denoise", ">= 0"),
    ("restore.denoise_t_start", "the first temperature of denoising Langevin", ">= 0"),
    ("translate.n", "the number of source images translated", "> 0"),
    ("translate.batch_size", "the number of chains run at once", "> 0"),
    ("translate.noise", "the noise added to the source images", ">= 0"),
    ("translate.steps", "the translation's Langevin steps (0: the method's own)", ">= 0"),
    ("translate.target_n", "the number of target images saved for comparison", ">= 0"),
    ("eval.ais.beta_min", "the first nonzero AIS beta", "(0, 1)"),
    ("eval.ais.step_size", "the AIS leapfrog step at beta 1", "> 0"),
    ("eval.ais.ref_step_size", "the AIS leapfrog step at beta 0", "> 0"),
    ("eval.ais.ref_std", "the spread of the AIS reference", "> 0"),
    ("eval.ais.ref_mean", "the mean of the AIS reference", "finite"),
    ("eval.ais.temperature", "the temperature of the AIS target", "> 0"),
    ("eval.ais.pixel_scale", "the pixel range of the bits/dim", "> 0"),
)
_RULE_TEXT = {"> 0": "a finite number > 0", ">= 0": "a finite number >= 0", "[0, 1)": "a number in [0, 1)",
              "(0, 1)": "a number strictly between 0 and 1", "finite": "a finite number", ">= 0 or inf": "a number >= 0"}


def _obeys(value: float, rule: str) -> bool:
    if math.isnan(value):
        return False
    return {"> 0": lambda v: math.isfinite(v) and v > 0, ">= 0": lambda v: math.isfinite(v) and v >= 0,
            "[0, 1)": lambda v: 0 <= v < 1, "(0, 1)": lambda v: 0 < v < 1, "finite": math.isfinite,
            ">= 0 or inf": lambda v: v >= 0}[rule](value)


def _lookup(cfg: ml_collections.ConfigDict, dotted: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _numbers(cfg: ml_collections.ConfigDict, prefix: str = "") -> Iterable[tuple[str, float]]:
    """(dotted name, value) of every float field, tuples' items included."""
    for key in cfg.keys():
        value = cfg[key]
        if isinstance(value, ml_collections.ConfigDict):
            yield from _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, float):
            yield f"{prefix}{key}", value
        elif isinstance(value, tuple):
            yield from ((f"{prefix}{key}[{i}]", v) for i, v in enumerate(value) if isinstance(v, float))


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Checks values that would otherwise fail deep inside a run, or quietly produce nonsense (a NaN
    learning rate trains nothing): counts, the numbers of ``NUMBER_RULES``, and no NaN anywhere."""
    t, s = cfg.train, cfg.sample
    for name, value in (("train.steps", t.steps), ("train.batch_size", t.batch_size),
                        ("train.log_every", t.log_every), ("train.checkpoint_every", t.checkpoint_every),
                        ("train.keep_checkpoints", t.keep_checkpoints), ("sample.batch_size", s.batch_size),
                        ("sample.chunk_steps", s.chunk_steps)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}.")
    if s.unroll_steps < 0 or (s.unroll_steps and s.chunk_steps % s.unroll_steps):
        raise ConfigError(f"sample.unroll_steps must be 0 (chains run as loops) or divide sample.chunk_steps="
                          f"{s.chunk_steps}, got {s.unroll_steps}; e.g. --config.sample.unroll_steps=10 with "
                          "--config.sample.chunk_steps=100.")
    if s.n < 0:
        raise ConfigError(f"sample.n must be >= 0, got {s.n}.")
    if t.get("warmup_steps", 0) < 0:
        raise ConfigError(f"train.warmup_steps must be >= 0 (0: no warm-up), got {t.warmup_steps}.")
    for name in ("sample.n_hot", "sample.n_anneal", "sample.n_cool"):
        found, value = _lookup(cfg, name)
        if found and value is not None and value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value}.")
    seed = s.get("seed")
    if seed is not None and not 0 <= seed < 2**32:
        raise ConfigError(f"sample.seed must be None (samples from the run's seed, in <workdir>/samples/) or an "
                          f"integer in [0, 2**32), got {seed}.")
    if "dist" in cfg and "cpu_devices" in cfg.dist:
        from ebmjax.parallel import cpu_device_count

        cpu_device_count(cfg.dist.cpu_devices, None, 1)  # refuses anything but auto or a count >= 1
    defaults_ = defaults()
    for name, what, rule in NUMBER_RULES:
        found, value = _lookup(cfg, name)
        if not found or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not _obeys(float(value), rule):
            known, default = _lookup(defaults_, name)
            hint = f" (the default is {default})" if known and default is not None else ""
            raise ConfigError(f"{name} must be {_RULE_TEXT[rule]} (it is {what}); got {value}. Set another value "
                              f"with --config.{name}=VALUE or in the config file{hint}.")
    for name, value in _numbers(cfg):
        if math.isnan(value):
            raise ConfigError(f"{name} is nan; it must be a number. Set it with --config.{name.split('[')[0]}=VALUE "
                              "or in the config file.")
    for low, high, what in (("mdsm.sigma_low", "mdsm.sigma_high", "noise levels"),
                            ("sample.t_min", "sample.t_max", "annealing temperatures")):
        (f_low, v_low), (f_high, v_high) = _lookup(cfg, low), _lookup(cfg, high)
        if f_low and f_high and v_low is not None and v_high is not None and v_low > v_high:
            raise ConfigError(f"{low} = {v_low} is above {high} = {v_high}; the {what} need {low} <= {high}.")
