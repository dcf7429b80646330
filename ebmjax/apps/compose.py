"""``--mode compose``: samples of a product of trained models ("a bold 3").

Layer 4 (an application over :func:`ebmjax.samplers.sum_energies`). The run's own model (``--config``
and ``--workdir``) keeps its sampler (its chains, start and finishing map, ``sample.n``, ``sample.label``
for a class-conditional model, ``sample.seed``), and every stage of it runs on

    E(x) + sum_i w_i (T / T_i) E_i(x),

where E_i is the energy of the model trained in ``compose.workdirs[i]`` (rebuilt from that workdir's
``config.json``; its latest checkpoint, ``sample.weights`` applied), T_i the temperature its own
chains sample at (``Method.temperature``), T this model's and w_i = ``compose.weights[i]`` (default
1). The chains so sample p(x) prod_i p_i(x)^(w_i). Samples, ``grid.png`` and ``summary.json`` go to
``<workdir>/compose/`` (``compose_seed<N>/`` with ``sample.seed = N``), resumable like ``--mode sample``;
shards of another composition are never reused.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, NamedTuple

import ml_collections

from ebmjax import config as config_lib
from ebmjax import data, samplers
from ebmjax.errors import ConfigError
from ebmjax.methods.base import Sampler

log = logging.getLogger(__name__)

__all__ = ["FOLDER", "Part", "composed", "load_parts", "compose_to_workdir"]

FOLDER = "compose"  # <workdir>/compose/ (compose_seed<N>/ with sample.seed = N)


class Part(NamedTuple):
    """One trained model of a composition: its workdir, method record, energy and weight."""

    workdir: str
    method: Any
    energy: Any
    weight: float


def composed(sampler: Sampler, temperature: float, parts: list[Part]) -> Sampler:
    """``sampler`` with every stage's energy E replaced by E + sum_i w_i (T / T_i) E_i (see the module
    docstring); ``temperature`` is T, the temperature of the model that ``sampler`` belongs to."""
    scales = [p.weight * temperature / p.method.temperature for p in parts]
    stages = tuple(s._replace(energy=samplers.sum_energies(s.energy, *(p.energy for p in parts),
                                                           weights=(1.0, *scales)))
                   for s in sampler.stages)
    settings = dict(sampler.settings, composed_with=[[str(p.workdir), float(w)] for p, w in zip(parts, scales)])
    return sampler._replace(stages=stages, settings=settings)


def _weights(cfg: ml_collections.ConfigDict) -> list[float]:
    c = cfg.compose
    if not c.workdirs:
        raise ConfigError("--mode compose needs the trained models to multiply this one by: "
                          "--config.compose.workdirs=runs/a[,runs/b] (each a trained --workdir).")
    weights = list(c.weights) or [1.0] * len(c.workdirs)
    if len(weights) != len(c.workdirs):
        raise ConfigError(f"compose.weights has {len(weights)} values for {len(c.workdirs)} compose.workdirs; give one "
                          "per workdir, or none (all 1).")
    if any(not isinstance(w, (int, float)) or isinstance(w, bool) or not w >= 0 or w == float("inf") for w in weights):
        raise ConfigError(f"compose.weights must be finite numbers >= 0, got {tuple(c.weights)}.")
    return [float(w) for w in weights]


def load_parts(cfg: ml_collections.ConfigDict, shape: tuple[int, ...]) -> list[Part]:
    """The trained models of ``compose.workdirs`` (each as its own ``config.json`` describes it), checked
    to take examples of ``shape``."""
    from ebmjax.train import loop
    from ebmjax.train.state import inference_params

    parts = []
    for wd, w in zip(cfg.compose.workdirs, _weights(cfg)):
        path = pathlib.Path(wd) / "config.json"
        if not path.is_file():
            raise ConfigError(f"compose.workdirs names {wd}, which holds no trained run (no {path}). Train it first, or "
                              "fix the path.")
        part_cfg = config_lib.load_config(str(path))  # the workdir's record, as --config takes it
        part_cfg.sample.weights = cfg.sample.weights if part_cfg.train.ema_decay > 0 else "raw"
        part_cfg.sample.label = None  # a part's energy is its E(x); the run's own model takes sample.label
        part_shape = tuple(data.load_source(part_cfg.data, "train").shape)
        if part_shape != tuple(shape):  # before its checkpoint is read
            raise ConfigError(f"{wd} models examples of shape {part_shape} ({part_cfg.data.name}), this run "
                              f"{tuple(shape)}: a composition multiplies densities of the same images. Train both at "
                              "one size (e.g. --config.data.image_size=16).")
        state, method, _ = loop.load_trained(part_cfg, wd)
        energy = method.energy(inference_params(state, part_cfg.sample.weights), state.carry)
        parts.append(Part(str(wd), method, energy, w))
        log.info("compose: %s (%s on %s, step %d, temperature %.3g) with weight %g", wd, method.name,
                 part_cfg.data.name, int(state.step), method.temperature, w)
    return parts


def compose_to_workdir(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       progress: bool = True) -> dict[str, Any]:
    """Samples this run's model times the models of ``compose.workdirs`` into ``<workdir>/compose/``;
    returns the summary (``--mode sample``'s, with the composition)."""
    from ebmjax.apps import sample
    from ebmjax.train import loop
    from ebmjax.train.state import inference_params

    _weights(cfg)  # bad settings fail before any checkpoint is read
    state, method, source = loop.load_trained(cfg, workdir, step=loop.checkpoint_step(cfg, workdir))
    parts = load_parts(cfg, tuple(source.shape))
    base = method.sampler(inference_params(state, cfg.sample.weights), state.carry)
    return sample.sample_to_workdir(cfg, composed(base, method.temperature, parts), source, workdir,
                                    progress=progress, folder=FOLDER)
