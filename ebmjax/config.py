"""Experiment configs: every field with its default, loading a config file, and command-line overrides.

A config file is a Python file with ``get_config() -> ml_collections.ConfigDict`` (see
``configs/``). Config files start from :func:`defaults` and override a few fields, so every field
that exists is documented here. ``method.name`` picks the training method; each method reads its
own group (``mdsm``, ...) and the shared ones (``data``, ``model``, ``train``, ``sample``, ...).
Overrides come as ``--config.a.b=value``. A key that does not exist, in a config file or on the
command line, or a value of the wrong type, is a :class:`~ebmjax.errors.ConfigError`.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import pathlib
from typing import Any, Iterable

import ml_collections

from ebmjax.errors import ConfigError


def defaults() -> ml_collections.ConfigDict:
    """Every field of every experiment; the defaults are MDSM with the original's CIFAR-10 settings."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # all randomness (init, data order, noise, sampling) derives from it and the step

    c.method = ml_collections.ConfigDict()
    c.method.name = "mdsm"  # the training method (ebmjax.methods): mdsm

    c.data = ml_collections.ConfigDict()
    c.data.name = "cifar10"  # digits | mnist | fashion_mnist | cifar10 | celeb_a | toy:<name>
    c.data.data_dir = ml_collections.config_dict.placeholder(str)  # tfds dir; None: $TFDS_DATA_DIR or tfds default
    c.data.pad = 0  # zero padding on each side (MNIST: 2 -> 32x32)
    c.data.image_size = ml_collections.config_dict.placeholder(int)  # square resize (CelebA: 32)
    c.data.random_flip = False  # horizontal flips in training (CelebA)
    c.data.toy_size = 20000  # points drawn once for 2-D toy densities

    c.model = ml_collections.ConfigDict()
    c.model.name = "mdsm_resnet"  # mdsm_resnet | mlp
    c.model.width = 128  # d: channels of the stem; stages have d, 2d, 4d, 8d
    c.model.blocks_per_stage = 2  # same-width blocks per stage: 2 = Res18, 1 = Res12
    c.model.hidden = (128, 128)  # mlp only
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (parameters stay float32)
    c.model.conv = "auto"  # how convolutions are computed: auto (matrix products on CPU, XLA's convolution on GPU/TPU) | matmul | xla

    # Multiscale denoising score matching (ebmjax.methods.mdsm).
    c.mdsm = ml_collections.ConfigDict()
    c.mdsm.sigma0 = 0.1  # width of the kernel whose smoothed density is learned (also the denoising jump's)
    c.mdsm.sigma_low = 0.05  # noise levels, fixed per batch position
    c.mdsm.sigma_high = 1.2
    c.mdsm.spacing = "linear"  # linear | geometric

    c.train = ml_collections.ConfigDict()
    c.train.steps = 300_000
    c.train.batch_size = 128  # global batch, split over all devices
    c.train.lr = 5e-5
    c.train.lr_end = 1e-6  # cosine decay from lr to lr_end over train.steps
    c.train.b1 = 0.9
    c.train.b2 = 0.95
    c.train.eps = 1e-8
    c.train.log_every = 100  # steps between metric lines
    c.train.checkpoint_every = 5000
    c.train.keep_checkpoints = 3
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
    c.sample.resume = True  # keep finished shards (and the in-flight chains) of an interrupted run
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
    c.restore.clamp_noise = 0.1  # std of the noise on known pixels at T = 1 (the paper's sigma0; keep = mdsm.sigma0)
    c.restore.noise_sigma = 0.2  # denoise: std of the Gaussian noise added to images in [0, 1]
    # Denoising Langevin starts at the noisy image and must not forget it: few steps, cold. Each step
    # removes about eps^2 / (2 sigma0^2) = 2% of the noise (eps 0.02, sigma0 0.1), so 50 steps remove
    # ~60%; T falls linearly from denoise_t_start to 0 so the chain ends in gradient descent.
    c.restore.denoise_steps = 50  # denoise: Langevin steps started from the noisy image
    c.restore.denoise_t_start = 0.05  # denoise: first temperature of the chain (linear down to 0)

    # Multi-host runs (ebmjax.parallel.initialize_distributed; launch/ has ready-made scripts).
    c.dist = ml_collections.ConfigDict()
    c.dist.initialize = "auto"  # auto | yes | no: start jax.distributed; auto: when SLURM, mpirun, a TPU VM or $JAX_COORDINATOR_ADDRESS says there are several processes
    c.dist.coordinator_address = ml_collections.config_dict.placeholder(str)  # host:port of process 0; None: $JAX_COORDINATOR_ADDRESS or cluster detection
    c.dist.num_processes = ml_collections.config_dict.placeholder(int)  # None: $JAX_NUM_PROCESSES or cluster detection
    c.dist.process_id = ml_collections.config_dict.placeholder(int)  # None: $JAX_PROCESS_ID or cluster detection

    # --mode eval (ebmjax.evaluation.report): <workdir>/eval/report.json and pictures. Defaults follow
    # the paper (50k samples, AIS with 10,000 betas and 10 leapfrog steps); shrink them for CPU runs.
    c.eval = ml_collections.ConfigDict()
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


def _parse_value(text: str, current: Any, key: str) -> Any:
    if text.lower() in ("none", "null"):
        return None
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key}={text}: expected true or false.")
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, (list, int)):
        value = tuple(value) if isinstance(value, list) else (value,)
    if current is not None and not isinstance(value, type(current)):
        raise ConfigError(f"--config.{key}={text}: expected a value of type {type(current).__name__}.")
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
    value = _parse_value(text, current, key)
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


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Checks values that would otherwise fail deep inside a run."""
    t, s = cfg.train, cfg.sample
    for name, value in (("train.steps", t.steps), ("train.batch_size", t.batch_size),
                        ("train.log_every", t.log_every), ("train.checkpoint_every", t.checkpoint_every),
                        ("train.keep_checkpoints", t.keep_checkpoints), ("sample.batch_size", s.batch_size),
                        ("sample.chunk_steps", s.chunk_steps)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}.")
    if s.n < 0:
        raise ConfigError(f"sample.n must be >= 0, got {s.n}.")
    if t.lr <= 0 or t.lr_end < 0:
        raise ConfigError(f"train.lr must be > 0 and train.lr_end >= 0, got {t.lr} and {t.lr_end}.")
    if s.step_size <= 0:
        raise ConfigError(f"sample.step_size must be > 0, got {s.step_size}.")
