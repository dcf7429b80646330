"""Experiment configs: the MDSM defaults, loading a config file, and command-line overrides.

A config file is a Python file with ``get_config() -> ml_collections.ConfigDict`` (see
``configs/``). Dataset configs start from :func:`mdsm_defaults` and override a few fields, so every
field that exists is documented here. Overrides come as ``--config.a.b=value``; a key that does not
exist, or a value of the wrong type, is a :class:`~ebmjax.errors.ConfigError`.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import pathlib
from typing import Any, Iterable

import ml_collections

from ebmjax.errors import ConfigError


def mdsm_defaults() -> ml_collections.ConfigDict:
    """Every field of an MDSM experiment, with the CIFAR-10 settings of the original as defaults."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # all randomness (init, data order, noise, sampling) derives from it and the step

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

    c.loss = ml_collections.ConfigDict()
    c.loss.sigma0 = 0.1  # width of the kernel whose smoothed density is learned
    c.loss.sigma_low = 0.05  # noise levels, fixed per batch position
    c.loss.sigma_high = 1.2
    c.loss.spacing = "linear"  # linear | geometric

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

    c.sample = ml_collections.ConfigDict()
    c.sample.n = 64  # samples written after training and by --mode sample
    c.sample.batch_size = 1024  # chains run at once
    c.sample.schedule = "exp"  # exp | lin (ebmjax.schedules.annealing_schedule)
    c.sample.t_max = 100.0
    c.sample.n_hot = 500
    c.sample.n_anneal = 2000
    c.sample.n_cool = 200
    c.sample.step_size = 0.02  # Langevin epsilon
    c.sample.init_mean = 0.5  # chains start at init_mean + init_std * N(0, I)
    c.sample.init_std = 1.0
    c.sample.denoise = True  # finish with the single-step denoising jump x - sigma0^2 dE/dx
    c.sample.chunk_steps = 100  # Langevin steps per compiled call (progress and resume granularity)
    return c


def _load_file(path: str) -> ml_collections.ConfigDict:
    p = pathlib.Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file {path!r} does not exist. Pass one of the files in configs/, e.g. --config configs/mdsm_digits.py")
    spec = importlib.util.spec_from_file_location(f"ebmjax_config_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"Config file {path!r} has no get_config() function returning an ml_collections.ConfigDict.")
    cfg = module.get_config()
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() in {path!r} must return an ml_collections.ConfigDict, got {type(cfg).__name__}.")
    return cfg


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
            close = difflib.get_close_matches(part, keys, n=1)
            hint = f' Did you mean "{".".join(parts[:i] + close)}"?' if close else ""
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
