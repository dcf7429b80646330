"""Experiment configs: every field with its default, loading a config file, and command-line overrides.

A config file is a Python file with ``get_config() -> ml_collections.ConfigDict`` (see
``configs/``). Config files start from :func:`defaults` and override a few fields, so every field
that exists is documented here. ``method.name`` picks the training method; each method reads its
own group (``mdsm``, ...; its fields, defaults and checks live in the method's module, see
``ebmjax.methods.settings``) and the shared ones (``data``, ``model``, ``train``, ``sample``, ...).
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
from ebmjax.methods import METHODS
from ebmjax.methods.settings import broken_rule, rule_message


def defaults() -> ml_collections.ConfigDict:
    """Every field of every experiment; the defaults are MDSM with the original's CIFAR-10 settings."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # all randomness (init, data order, noise, sampling) derives from it and the step

    c.method = ml_collections.ConfigDict()
    c.method.name = "mdsm"  # the training method (ebmjax.methods): mdsm | ml | multigrid | coop | cfebm | jem

    c.data = ml_collections.ConfigDict()
    c.data.name = "cifar10"  # digits | digits_bold | mnist | fashion_mnist | cifar10 | celeb_a | cycle_gan/<pair> | toy:<name>
    c.data.domain = ml_collections.config_dict.placeholder(str)  # cycle_gan/<pair> only: the domain learned, A | B (splits train/test read trainA/testA or trainB/testB)
    c.data.data_dir = ml_collections.config_dict.placeholder(str)  # tfds dir; None: $TFDS_DATA_DIR or tfds default
    c.data.pad = 0  # zero padding on each side (MNIST: 2 -> 32x32)
    c.data.image_size = ml_collections.config_dict.placeholder(int)  # square resize (CelebA: 32)
    c.data.random_flip = False  # horizontal flips in training (CelebA)
    c.data.toy_size = 20000  # points drawn once for 2-D toy densities

    c.model = ml_collections.ConfigDict()
    c.model.name = "mdsm_resnet"  # the energy network (ebmjax.models): mdsm_resnet | convnet | gridnet | unet | mlp | gaussian
    c.model.width = 128  # mdsm_resnet: d, channels of the stem; stages have d, 2d, 4d, 8d
    c.model.blocks_per_stage = 2  # mdsm_resnet: same-width blocks per stage: 2 = Res18, 1 = Res12
    c.model.widths = (32, 64, 128)  # convnet: channels of each stage (two 3x3 convs, then a 2x2 mean pool); gridnet: of each conv layer; unet: of each level (two 3x3 convs each way)
    c.model.activation = "swish"  # convnet: swish | lrelu
    c.model.kernel = 3  # gridnet (the multigrid method's conv net, widths above, LeakyReLU 0.2): conv kernel side
    c.model.strided_layers = 3  # gridnet: leading conv layers with stride 2 (any image side; each halves it while >= 4)
    c.model.scale = 0.1  # unet: s of E(x) = |x - U(x)|^2 / (2 s^2); with MDSM keep = mdsm.sigma0, so U learns to denoise
    c.model.hidden = (128, 128)  # mlp only
    c.model.classes = 0  # 0: the network is an energy; K >= 2 (convnet, gridnet, mlp, mdsm_resnet; multigrid's and cfebm's own networks): a classifier whose logits f(x) define E(x, y) = -f(x)[y] and E(x) = -logsumexp_y f(x)[y] (every method; labels from the dataset)
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (parameters stay float32)
    c.model.conv = "auto"  # how convolutions are computed: auto (matrix products on CPU, XLA's convolution on GPU/TPU) | matmul | xla

    # Each method's own group (c.mdsm, c.ml, c.multigrid, c.cfebm, c.coop): its fields, defaults and
    # rules live in its module (ebmjax.methods.<name>.defaults and RULES; ebmjax.methods.settings).
    for name, entry in METHODS.items():
        c[name] = entry.defaults()

    c.train = ml_collections.ConfigDict()
    c.train.steps = 300_000
    c.train.batch_size = 128  # global batch, split over all devices
    c.train.lr = 5e-5
    c.train.lr_end = 1e-6  # cosine decay from lr to lr_end over train.steps
    c.train.warmup_steps = 0  # linear warm-up from 0 to lr over the first warmup_steps, then the cosine decay (0: none, as the paper; a run shorter than the warm-up only ramps up)
    c.train.b1 = 0.9
    c.train.b2 = 0.95
    c.train.eps = 1e-8
    c.train.clip_norm = 0.0  # > 0: each network's gradient is scaled down to this global norm where longer, before Adam (IGEBM and improved CD clip theirs); 0: off. The logged grad_norm is before clipping
    c.train.log_every = 100  # steps between metric lines
    c.train.checkpoint_every = 5000
    c.train.keep_checkpoints = 3
    c.train.keep_best = 0  # also keep the k best checkpoints by eval.select_by, each scored on eval.scan_samples samples when saved (0: only the newest keep_checkpoints)
    c.train.steps_per_call = 1  # training steps per compiled call (train.step.make_multi_step); compile time grows with it
    # On divergence (every update of a logging window skipped: non-finite, or past a method's bound):
    # 0 = stop and name the last good checkpoint; N > 0 = up to N times do what users do by hand:
    # restore that checkpoint, multiply every learning rate by train.recover_lr, and go on with a fresh
    # data order and fresh chain randomness; each recovery is logged and recorded in
    # <workdir>/recoveries.json, so a resumed run knows them.
    c.train.recover = 0
    c.train.recover_lr = 0.5  # the factor every learning rate is multiplied by at each recovery
    c.train.lr_scale = 1.0  # multiplies every learning rate (train.lr and lr_end, the generators' gen_lr, cfebm.lr_by_stage); recoveries set it in their copy of the config
    c.train.ema_decay = 0.0  # 0: off; e.g. 0.999: keep an exponential moving average of the parameters (checkpointed with them), which sampling, restoration and evaluation use with sample.weights = ema

    c.sample = ml_collections.ConfigDict()
    # --mode sample (and --mode train when sample.n > 0): how many chains, in what batches, where they are
    # written. The chains themselves are the method's (MDSM's annealing: the mdsm group).
    c.sample.n = 64  # samples written after training and by --mode sample
    c.sample.batch_size = 1024  # chains run at once
    c.sample.chunk_steps = 100  # Langevin steps per compiled call (progress and resume granularity)
    c.sample.unroll_steps = 0  # > 0: every chain (sampling, restoration, translation) runs as programs of this many unrolled steps (no loop), which XLA:CPU runs faster with model.conv = "xla"; must divide chunk_steps
    c.sample.resume = True  # keep finished shards (and the in-flight chains) of an interrupted run
    # Samples are reproducible: the same checkpoint, sample.* settings and seed give the same images.
    # None: the key derives from `seed`, and samples go to <workdir>/samples/. An integer N >= 0: another
    # key (each N its own), and samples go to <workdir>/samples_seed<N>/, so fresh samples never
    # overwrite earlier ones.
    c.sample.seed = ml_collections.config_dict.placeholder(int)
    c.sample.checkpoint = "latest"  # latest | best (eval/best_checkpoint.json, from --mode eval with eval.checkpoints=all) | a step number: the checkpoint sample, inpaint, denoise and eval use
    # A class-conditional model (model.classes = K): None samples E(x) = -logsumexp f(x); a class k in
    # 0..K-1 samples E(x, k); -1 gives every class in turn, one grid row (ten samples) each.
    c.sample.label = ml_collections.config_dict.placeholder(int)
    c.sample.weights = "raw"  # raw | ema: the parameters sampling, restoration, translation and evaluation use (ema: their moving average, kept when train.ema_decay > 0)
    c.sample.merge_max_gb = 8.0  # also write one samples.npz when all samples fit in this many GB

    # --mode inpaint / denoise (ebmjax.apps.restore). Inpainting runs the method's own last chain (MDSM: its
    # annealing, start distribution and step size) with sample.chunk_steps, and ends with MDSM's jump (on
    # free pixels) if mdsm.denoise.
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

    # --mode translate (ebmjax.apps.translate): unpaired image-to-image translation with the energy of the
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

    # --mode compose (ebmjax.apps.compose): samples of this run's model multiplied by the models of other
    # trained workdirs (a product of experts), written to <workdir>/compose/. The run's own sampler
    # (its chains, sample.n, sample.label, sample.seed) runs on E(x) + sum_i w_i (T / T_i) E_i(x), each
    # E_i at its own method's temperature T_i (T: this method's).
    c.compose = ml_collections.ConfigDict()
    c.compose.workdirs = ()  # trained workdirs whose energies are added (each rebuilt from its config.json)
    c.compose.weights = ()  # one weight w_i per workdir (the exponent of its density); (): all 1

    # Multi-host runs (ebmjax.parallel.initialize_distributed; launch/ has ready-made scripts).
    c.dist = ml_collections.ConfigDict()
    c.dist.initialize = "auto"  # auto | yes | no: start jax.distributed; auto: when SLURM, mpirun, a TPU VM or $JAX_COORDINATOR_ADDRESS says there are several processes
    c.dist.coordinator_address = ml_collections.config_dict.placeholder(str)  # host:port of process 0; None: $JAX_COORDINATOR_ADDRESS or cluster detection
    c.dist.num_processes = ml_collections.config_dict.placeholder(int)  # None: $JAX_NUM_PROCESSES or cluster detection
    c.dist.process_id = ml_collections.config_dict.placeholder(int)  # None: $JAX_PROCESS_ID or cluster detection
    c.dist.cpu_devices = "1"  # XLA devices on a CPU (ebmjax.parallel.use_cpu_cores): "1" = one device using every core; "auto" = one per core (fewer if train.batch_size or a carried buffer would not split evenly), faster for small MDSM networks (mdsm_digits sets it), slower for large ones and for maximum-likelihood training; "N" = N devices. Ignored on GPU/TPU, with several processes, and when $XLA_FLAGS sets xla_force_host_platform_device_count

    # --mode eval (ebmjax.apps.evaluate): <workdir>/eval/report.json and pictures. Defaults follow
    # the paper (50k samples, AIS with 10,000 betas and 10 leapfrog steps); shrink them for CPU runs.
    c.eval = ml_collections.ConfigDict()
    c.eval.checkpoints = "latest"  # latest | all: first score every saved checkpoint (eval/quality_vs_step.png, eval/best_checkpoint.json), then evaluate the best
    c.eval.scan_samples = 500  # samples drawn from each checkpoint when checkpoints are scored (the original: 1000)
    c.eval.select_by = "fid"  # fid (lowest) | confident_share (highest, digits): what "best" means
    c.eval.metrics = ("fid", "ais", "ood", "neighbours", "coverage")  # any subset; fid = FID, KID and IS with every feature net that applies
    c.eval.n_samples = 50_000  # model samples for fid / neighbours / coverage (paper: 50k for CIFAR-10 IS/FID, 8000 for stacked-MNIST modes)
    c.eval.samples_file = ml_collections.config_dict.placeholder(str)  # .npz with key "images" to evaluate instead; None: draw n_samples with the method's sampler (cached in eval/samples.npz)
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
    if p.suffix == ".json":  # a workdir's record of its config (config.json)
        try:
            recorded = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"Config file {path!r} is not valid JSON ({e}). Pass a workdir's config.json as written, "
                              "or a Python config file with get_config().") from None
        if not isinstance(recorded, dict):
            raise ConfigError(f"Config file {path!r} holds a JSON {type(recorded).__name__}, not the object of config "
                              "groups a workdir's config.json records.")
        return from_recorded(recorded)
    spec = importlib.util.spec_from_file_location(f"ebmjax_config_{p.stem}", p)
    if spec is None:  # a suffix Python does not import
        raise ConfigError(f"Config file {path!r} is neither a Python config file (.py, with get_config()) nor a "
                          "workdir's config.json. Pass one of the files in configs/, e.g. --config configs/mdsm_digits.py")
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


# Fields that moved: the old dotted name -> the new one (said in the error for the old name).
MOVED = {f"sample.{k}": f"mdsm.{k}" for k in ("schedule", "t_max", "t_min", "n_hot", "n_anneal", "n_cool",
                                              "step_size", "init_mean", "init_std", "denoise")}


def _did_you_mean(name: str, options: Iterable[str], prefix: str = "") -> str:
    if f"{prefix}{name}" in MOVED:
        return (f' It is now "{MOVED[prefix + name]}": MDSM\'s annealed sampler has its settings in its own group, '
                'mdsm (the sample group holds what every method shares).')
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


def from_recorded(recorded: dict[str, Any]) -> ml_collections.ConfigDict:
    """The config a workdir's ``config.json`` records (``recorded``, its parsed JSON), on top of
    :func:`defaults` (fields it predates keep their defaults; JSON lists become tuples), validated."""
    cfg = defaults()

    def fill(node: ml_collections.ConfigDict, values: dict[str, Any], prefix: str) -> None:
        for key, value in values.items():
            if key not in node:
                continue  # a field this version no longer has
            if isinstance(value, dict) and isinstance(node[key], ml_collections.ConfigDict):
                fill(node[key], value, f"{prefix}{key}.")
            else:
                try:
                    node[key] = tuple(value) if isinstance(value, list) else value
                except (TypeError, ValueError) as e:
                    raise ConfigError(f"The recorded config sets {prefix}{key} = {value!r}, which this version cannot "
                                      f"take: {e}") from None

    fill(cfg, recorded, "")
    validate(cfg)
    return cfg


def load_config(path: str, overrides: Iterable[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
    """Loads a config file and applies ``(dotted_key, text)`` overrides in order."""
    cfg = _load_file(path)
    for key, text in overrides:
        apply_override(cfg, key, text)
    validate(cfg)
    return cfg


# Number fields and the values that work for them: (dotted name, what it is, rule); the rules are
# ebmjax.methods.settings'. The shared groups' are listed here, each method's (Entry.rules) join them.
NUMBER_RULES = (
    ("train.lr", "the learning rate", "> 0"),
    ("train.lr_end", "the learning rate at the end of the decay", ">= 0"),
    ("train.b1", "Adam's first-moment decay", "[0, 1)"),
    ("train.b2", "Adam's second-moment decay", "[0, 1)"),
    ("train.eps", "Adam's epsilon", "> 0"),
    ("train.clip_norm", "the global norm gradients are clipped to (0 = off)", ">= 0"),
    ("train.ema_decay", "the decay of the parameters' moving average (0 = off)", "[0, 1)"),
    ("train.recover", "the number of recoveries from divergence (0 = stop)", ">= 0"),
    ("train.recover_lr", "the factor of the learning rates at each recovery", "(0, 1]"),
    ("train.lr_scale", "the factor of every learning rate", "> 0"),
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
) + tuple((f"{name}.{field}", what, rule) for name, entry in METHODS.items() for field, what, rule in entry.rules)
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
    if s.get("weights", "raw") not in ("raw", "ema"):
        raise ConfigError(f"sample.weights must be raw (the trained parameters) or ema (their moving average), "
                          f"got {s.weights!r}.")
    if s.get("weights") == "ema" and not t.get("ema_decay", 0.0) > 0:
        raise ConfigError("sample.weights = ema samples from the moving average of the parameters, which is kept "
                          "only when train.ema_decay > 0: set --config.train.ema_decay=0.999 for the training run "
                          "(and the same value when sampling from it).")
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
        if found and broken_rule(value, rule):
            raise ConfigError(rule_message(name, what, rule, value, _lookup(defaults_, name)[1]))
    for name, value in _numbers(cfg):
        if math.isnan(value):
            raise ConfigError(f"{name} is nan; it must be a number. Set it with --config.{name.split('[')[0]}=VALUE "
                              "or in the config file.")
    method = cfg.get("method", {}).get("name")
    if method in METHODS and method in cfg:
        METHODS[method].check(cfg[method])  # the chosen method's own checks of its group
