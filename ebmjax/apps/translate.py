"""``--mode translate``: the source domain's test images translated by a trained model, written to the
workdir.

Layer 4 over the pure functions of :mod:`ebmjax.restoration.translate`. :func:`translation_sources`
reads and checks the ``translate`` config group and the images (before any checkpoint is read);
:func:`translate_to_workdir` translates the first ``translate.n`` images of ``translate.split`` of
the source domain with the LAST chain of the method's sampler (its kernel, energy, temperatures and
step sizes; ``translate.steps`` sets the length), applies the sampler's finishing map (MDSM: the
denoising jump when ``mdsm.denoise``; the identity for maximum likelihood) and writes
``<workdir>/translate/``:

- ``translated.npz``: ``source`` (n, H, W, C), the source images; ``translated`` (n, H, W, C);
  ``target`` (m, H, W, C), the first ``translate.target_n`` target-domain training images, for
  comparison; ``source_labels`` (n,) when the source has labels. NHWC float32 in the data's range
  (translations clipped to it: a chain that does not clamp, e.g. ``ml.clamp = False``, can end
  partly outside; the report gives the share of such pixels, ``outside_range_share``);
- ``panels.png``: the first ``PANEL_IMAGES`` images as source | translated, in side-by-side groups;
- ``energy_trace.png``: the chains' energy along the steps;
- ``report.json``: the stroke weight (``ink``: mean grey level, ``ink_area``: share of pixels above
  the middle of the range) of source, translated and target images, the mean energy of each, the
  RMS change per pixel (``change_rms``), and the settings (``step_size`` and ``temperature``: the
  chain's mean eps and T in the kernels' convention).

The key derives from ``translate.seed`` (or ``seed``), so the same checkpoint and settings give the
same translations.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ebmjax import data, io, keys, visualize
from ebmjax.data.registry import check_domains_match, holds_points, source_domain_config
from ebmjax.errors import ConfigError
from ebmjax.methods.base import Sampler
from ebmjax.restoration.translate import ink, ink_area, mean_energy, translate_batches, translation_schedule

log = logging.getLogger(__name__)

PANEL_IMAGES = 32  # images shown in panels.png; every image is in translated.npz




def check_config(cfg: ml_collections.ConfigDict) -> None:
    """Rejects translate settings that cannot work, before any data or checkpoint is read."""
    t = cfg.translate
    if holds_points(cfg.data.name):
        raise ConfigError(f"Translation needs images; data.name={cfg.data.name!r} is 2-D points. "
                          "Use an image dataset (e.g. configs/translate_digits.py).")
    for name in ("n", "batch_size", "steps", "target_n"):
        value, low = t[name], (0 if name in ("steps", "target_n") else 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"translate.{name} must be an integer >= {low}, got {value!r}; "
                              f"set --config.translate.{name}=<int>.")
    if not np.isfinite(t.noise) or t.noise < 0:
        raise ConfigError(f"translate.noise must be a finite number >= 0, got {t.noise!r}.")
    if t.seed is not None and not 0 <= t.seed < 2**32:
        raise ConfigError(f"translate.seed must be None (a key from `seed`) or an integer in [0, 2**32), got {t.seed}.")
    source_domain_config(cfg)  # the source domain exists and is not the one learned


def translation_sources(cfg: ml_collections.ConfigDict) -> tuple[Any, Any]:
    """(source images, target training data) as ImageSources, checked: the settings
    (:func:`check_config`), that the source split holds translate.n images, and that source and
    target images have the same shape. Runs before any checkpoint is read."""
    check_config(cfg)
    t = cfg.translate
    source = data.load_source(source_domain_config(cfg), t.split)
    target = data.load_source(cfg.data, "train")
    check_domains_match(cfg, source, target, t.split)
    if t.n > len(source):
        raise ConfigError(f"translate.n = {t.n} is larger than the {len(source)} images of split {t.split!r} of "
                          f"the source domain {source.name!r}; lower it.")
    return source, target


def translation_key(cfg: ml_collections.ConfigDict) -> jax.Array:
    """The translation's key: from ``translate.seed`` when set, else from ``seed``."""
    seed = cfg.translate.seed if cfg.translate.seed is not None else cfg.seed
    return keys.stream(seed, keys.TRANSLATE)


def translate_to_workdir(cfg: ml_collections.ConfigDict, sampler: Sampler, workdir: str | pathlib.Path, *,
                         sources: tuple[Any, Any] | None = None, progress: bool = True,
                         step: int | None = None) -> dict:
    """``--mode translate``: translates the first ``translate.n`` images of the source domain with
    the last chain of ``sampler`` (see the module docstring) and writes ``<workdir>/translate/``.
    Returns the report. ``sources``: (source, target) as from ``translation_sources(cfg)`` (read
    when None); ``step``: the checkpoint's step, for the report."""
    t = cfg.translate
    source, target = translation_sources(cfg) if sources is None else sources
    x_source = np.asarray(source.get(np.arange(t.n)), np.float32)
    labels = source.labels(np.arange(t.n))
    x_target = np.asarray(target.get(np.arange(min(int(t.target_n), len(target)))), np.float32)
    chain = sampler.stages[-1]
    shape = jax.eval_shape(chain.energy, jax.ShapeDtypeStruct((1, *x_source.shape[1:]), jnp.float32)).shape
    if shape != (1,):
        raise ConfigError(f"The method's last chain ({chain.name!r}) does not take images of shape "
                          f"{x_source.shape[1:]}; translation needs a chain at the data's resolution.")
    temps, steps = translation_schedule(chain.temperatures, chain.step_sizes, int(t.steps))
    res = translate_batches(chain.energy, chain.kernel, x_source, translation_key(cfg), temperatures=temps,
                            step_sizes=steps, noise=float(t.noise), finish=sampler.finish, batch_size=t.batch_size,
                            chunk_size=cfg.sample.chunk_steps, unroll_steps=cfg.sample.unroll_steps, progress=progress)
    vr = tuple(target.value_range)
    # Stored and scored in the data's range, as pictures show them (a chain that does not clamp,
    # e.g. ml.clamp = False, ends partly outside it).
    translated = np.clip(np.asarray(res.translated, np.float32), vr[0], vr[1])
    images = {"source": x_source, "translated": translated, "target": x_target}
    report = {
        "mode": "translate", "method": cfg.method.name, "target_data": cfg.data.name, "target_domain": cfg.data.domain,
        "source_data": source_domain_config(cfg)["name"], "source_domain": source_domain_config(cfg)["domain"],
        "source_split": getattr(source, "split", t.split), "n": int(t.n), "target_n": int(len(x_target)),
        "chain": chain.name, "steps": int(len(temps)), "noise": float(t.noise),
        "step_size": float(np.mean(steps)) if len(steps) else None,
        "temperature": float(np.mean(temps)) if len(temps) else None,
        "seed": int(t.seed if t.seed is not None else cfg.seed),
        "ink": {k: ink(v, vr) for k, v in images.items()},
        "ink_area": {k: ink_area(v, vr) for k, v in images.items()},
        "mean_energy": {k: mean_energy(chain.energy, v, t.batch_size) for k, v in images.items()},
        "outside_range_share": float(np.mean(np.asarray(res.translated) != translated)),
        "change_rms": float(np.sqrt(np.mean((translated - x_source) ** 2))),
    }
    if step is not None:
        report["checkpoint_step"] = int(step)
    if jax.process_index() == 0:
        out_dir = pathlib.Path(workdir) / "translate"
        out_dir.mkdir(parents=True, exist_ok=True)
        shown = min(PANEL_IMAGES, len(x_source))
        ink_ = report["ink"]
        visualize.save_panels([("source", x_source[:shown]), ("translated", translated[:shown])],
                              out_dir / "panels.png",
                              title=f"{report['source_data']} -> {cfg.data.name}: ink {ink_['source']:.2f} -> "
                                    f"{ink_['translated']:.2f} (target {ink_['target']:.2f})")
        energy = np.asarray(res.energy)
        if len(energy):
            shown_e = [energy.mean(axis=1)] + [energy[:, j] for j in range(min(2, energy.shape[1]))]
            labels_e = ["mean over images"] + [f"image {j}" for j in range(len(shown_e) - 1)]
            visualize.save_energy_trace(temps, np.stack(shown_e, axis=1), out_dir / "energy_trace.png", labels=labels_e)
        arrays = {k: np.asarray(v, np.float32) for k, v in images.items()}
        if labels is not None:
            arrays["source_labels"] = np.asarray(labels, np.int64)
        io.savez_atomic(out_dir / "translated.npz", **arrays)
        report["files"] = ["translated.npz", "panels.png"] + (["energy_trace.png"] if len(energy) else []) + \
            ["report.json"]
        io.write_json_atomic(out_dir / "report.json", report)
        log.info("Translated %d images of %s into %s in %d steps: ink %.3f -> %.3f (target %.3f), mean energy "
                 "%.3g -> %.3g (target %.3g); wrote %s", t.n, report["source_data"], cfg.data.name, len(temps),
                 ink_["source"], ink_["translated"], ink_["target"], report["mean_energy"]["source"],
                 report["mean_energy"]["translated"], report["mean_energy"]["target"], out_dir)
    return report
