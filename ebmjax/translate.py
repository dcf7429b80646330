"""Unpaired image-to-image translation with an energy of the target domain (CF-EBM, Zhao et al. 2021).

One EBM learns the target domain (the training data); translating a source-domain image is running
that EBM's Langevin chain from the image itself (plus a little noise) rather than from noise. A short
chain keeps what the source and the target share (the layout: a digit's identity, a horse's pose)
and moves what the energy dislikes (stroke weight, texture) towards the target domain.

Three levels, each usable on its own:

- Pure functions of ``(energy_fn, arrays, key)`` (layer 1 style, jittable, no I/O):
  ``translation_start`` (x_source + noise * N(0, I)), ``translate`` (the chains from there) and
  ``translation_schedule`` (a chain's temperatures and step sizes cut or extended to a length).
  Figures of stroke weight: ``ink`` and ``ink_area``.
- ``translate_batches``: ``translate`` over many images in batches sharded over a device mesh.
- The CLI mode (layer 3): ``translation_sources`` reads and checks the ``translate`` config group
  and the images (before any checkpoint is read), ``translate_to_workdir`` translates the first
  ``translate.n`` images of ``translate.split`` of the source domain with the LAST chain of the
  method's sampler (its kernel, energy, temperatures and step sizes; ``translate.steps`` sets the
  length), applies the sampler's finishing map (MDSM: the denoising jump when ``sample.denoise``;
  the identity for maximum likelihood) and writes ``<workdir>/translate/``:

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

Randomness: ``translate`` draws the start noise from fold_in(key, 0) and drives the chain with
fold_in(key, 1); the CLI's key derives from ``translate.seed`` (or ``seed``), so the same
checkpoint and settings give the same translations.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ebmjax import data, io, parallel, samplers, visualize
from ebmjax.data.registry import holds_points, source_domain_config
from ebmjax.errors import ConfigError
from ebmjax.methods.base import Sampler
from ebmjax.samplers.kernels import ArrayLike, EnergyFn

log = logging.getLogger(__name__)

PANEL_IMAGES = 32  # images shown in panels.png; every image is in translated.npz
KEY_SALT = 6  # the CLI's key: fold_in(PRNGKey(seed), KEY_SALT), apart from sampling's and restoration's

__all__ = [
    "PANEL_IMAGES",
    "TranslateResult",
    "check_config",
    "ink",
    "ink_area",
    "mean_energy",
    "translate",
    "translate_batches",
    "translate_to_workdir",
    "translation_key",
    "translation_schedule",
    "translation_sources",
    "translation_start",
]


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------


class TranslateResult(NamedTuple):
    """translated: (B, ...) the chains' ends. start: (B, ...) their first state, x_source + noise * z.
    energy: (K, B) the energy each chain had at the start of every step (row 0: at ``start``)."""

    translated: Any
    start: Any
    energy: Any


def translation_start(x_source: ArrayLike, key: jax.Array, noise: ArrayLike = 0.0) -> jax.Array:
    """The chains' first state: x_source + noise * N(0, I) (exactly x_source when noise is 0).

    Not clipped: a kernel that clamps to the data's range does so at its first step."""
    x = jnp.asarray(x_source)
    if isinstance(noise, (int, float)) and not noise >= 0:
        raise ConfigError(f"translation noise must be >= 0, got {noise!r}.")
    # x + 0 * z is x bit for bit (z is finite), so noise 0 starts exactly at the source.
    return (x + jnp.asarray(noise, x.dtype) * jax.random.normal(key, x.shape, x.dtype)).astype(x.dtype)


def translate(energy_fn: EnergyFn, kernel: samplers.Kernel, x_source: ArrayLike, key: jax.Array, *,
              temperatures: Any, step_sizes: Any, noise: ArrayLike = 0.0, chunk_size: int | None = None,
              on_chunk: Callable | None = None, unroll_steps: int = 0) -> TranslateResult:
    """Translate x_source (B, H, W, C) with the energy of the target domain.

    The chains start at ``translation_start(x_source, fold_in(key, 0), noise)`` and run one step of
    ``kernel`` (e.g. a method's ``Stage.kernel``: ULA, or the maximum-likelihood Langevin with
    clipping and clamping) per entry of ``temperatures`` (K,) with ``step_sizes`` (scalar or (K,)),
    in the kernels' convention (``ebmjax.samplers.kernels``: x' = x - (eps^2 / 2) dE/dx + eps sqrt(T) z),
    driven by fold_in(key, 1). With K = 0 and noise 0 the result is x_source exactly.

    Without ``chunk_size`` the function is pure: call it inside your own jit, with your own energy.
    With it, the chain runs as jitted chunks calling ``on_chunk(steps_done, state, trace)``
    (progress); pass a ``jax.tree_util.Partial`` energy so the chunks compile once.
    """
    x0 = translation_start(x_source, jax.random.fold_in(key, 0), noise)
    state = kernel.init(x0, energy_fn)
    chain_key = jax.random.fold_in(key, 1)
    if chunk_size is None:
        state, trace = samplers.run_chain(kernel, energy_fn, state, chain_key, temperatures=temperatures,
                                          step_sizes=step_sizes)
    else:
        state, trace = samplers.run_chain_chunked(kernel, energy_fn, state, chain_key, temperatures=temperatures,
                                                  step_sizes=step_sizes, chunk_size=chunk_size, on_chunk=on_chunk,
                                                  unroll_steps=unroll_steps)
    return TranslateResult(state.position, x0, trace.record.energy)


def translation_schedule(temperatures: ArrayLike, step_sizes: ArrayLike,
                         steps: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A chain's schedule ((K,) temperatures, scalar or (K,) step sizes) at length ``steps``: both (steps,)
    float32. 0 keeps the chain's own length K; k <= K takes its LAST k steps (for an annealed schedule
    the coldest end, which keeps the source's layout); k > K puts k - K copies of its first step in
    front (a constant schedule simply gets longer)."""
    t = np.asarray(temperatures, np.float32).reshape(-1)
    h = np.broadcast_to(np.asarray(step_sizes, np.float32), t.shape).copy()
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ConfigError(f"translation steps must be an integer >= 0 (0: the chain's own {len(t)}), got {steps!r}.")
    steps = int(steps)
    if steps == 0:
        return t, h
    if len(t) == 0:
        raise ConfigError("The method's last chain has no steps, so it cannot be lengthened; set translate.steps=0.")
    if steps <= len(t):
        return t[len(t) - steps:], h[len(h) - steps:]
    extra = steps - len(t)
    return np.concatenate([np.full(extra, t[0]), t]), np.concatenate([np.full(extra, h[0]), h])


def ink(images: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Stroke weight as the mean grey level, rescaled to [0, 1] from ``value_range`` (images clipped to it)."""
    lo, hi = value_range
    x = np.clip(np.asarray(images, np.float64), lo, hi)
    return float(((x - lo) / (hi - lo)).mean())


def ink_area(images: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Stroke weight as the share of pixel values above the middle of ``value_range``."""
    lo, hi = value_range
    return float((np.asarray(images) > 0.5 * (lo + hi)).mean())


# ---------------------------------------------------------------------------------------------
# Many images
# ---------------------------------------------------------------------------------------------


@jax.jit
def _finish(finish: Any, x: jax.Array) -> jax.Array:
    return finish(x)


@jax.jit
def _energy(energy_fn: Any, x: jax.Array) -> jax.Array:
    return energy_fn(x)


def translate_batches(energy_fn: EnergyFn, kernel: samplers.Kernel, x_source: np.ndarray, key: jax.Array, *,
                      temperatures: Any, step_sizes: Any, noise: float = 0.0, finish: Callable | None = None,
                      batch_size: int = 256, chunk_size: int = 100, unroll_steps: int = 0, mesh: Any = None,
                      progress: bool = True) -> TranslateResult:
    """``translate`` over n images (n, H, W, C) in batches sharded over ``mesh`` (default: every
    device), then ``finish`` (jittable; e.g. a method's ``Sampler.finish``) on the chains' ends.
    Batch b uses fold_in(key, b). Returns numpy arrays: translated and start (n, ...), energy (K, n)."""
    from ebmjax.restore import over_batches  # the batching and sharding restoration uses

    x_source = np.asarray(x_source, np.float32)
    temperatures, step_sizes = jnp.asarray(temperatures), jnp.asarray(step_sizes)
    mesh = mesh or parallel.make_mesh()
    energy = samplers.as_partial(energy_fn)
    fin = None if finish is None else samplers.as_partial(finish)

    def run_one(x, k, tick):
        res = translate(energy, kernel, x, k, temperatures=temperatures, step_sizes=step_sizes, noise=noise,
                        chunk_size=chunk_size, on_chunk=tick, unroll_steps=unroll_steps)
        return res if fin is None else res._replace(translated=_finish(fin, res.translated))

    return over_batches(run_one, (x_source,), key, batch_size=batch_size, mesh=mesh,
                         n_steps=len(temperatures), progress=progress, desc="translate", batch_axes=(0, 0, 1))


def mean_energy(energy_fn: EnergyFn, images: np.ndarray, batch_size: int = 256) -> float:
    """The mean energy of ``images`` (n, ...), computed ``batch_size`` at a time (nan for n = 0)."""
    if len(images) == 0:
        return float("nan")
    energy = samplers.as_partial(energy_fn)
    values = [np.asarray(_energy(energy, jnp.asarray(images[i:i + batch_size])))
              for i in range(0, len(images), batch_size)]
    return float(np.concatenate(values).mean())


# ---------------------------------------------------------------------------------------------
# The CLI mode
# ---------------------------------------------------------------------------------------------


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


def check_domains_match(cfg: ml_collections.ConfigDict, source: Any, target: Any, split: str) -> None:
    """ConfigError unless the source domain's images (split ``split``) are images of the target's
    (the data's) shape and range."""
    source_cfg = source_domain_config(cfg)
    t = cfg.translate
    where = f"{source_cfg['name']!r}" + (f" domain {source_cfg['domain']}" if source_cfg["domain"] else "")
    if len(source.shape) != 3:
        raise ConfigError(f"Translation needs images (H, W, C); the source {where} gives examples of shape "
                          f"{source.shape}.")
    if tuple(source.shape) != tuple(target.shape):
        if source.shape[-1] != target.shape[-1]:
            fix = (f"the channels differ ({source.shape[-1]} against {target.shape[-1]}): translate from a "
                   f"dataset with {target.shape[-1]} channel(s) (--config.translate.data_name)")
        else:
            fix = (f"set --config.translate.image_size={target.shape[0] - 2 * int(cfg.data.pad)} so that the "
                   "source images are resized to the model's size")
        raise ConfigError(f"The model learns images of shape {tuple(target.shape)} (data.name={cfg.data.name!r}, "
                          f"data.image_size={cfg.data.image_size}, data.pad={cfg.data.pad}), but the source images "
                          f"({where}, split {split!r}, translate.image_size={t.image_size}) have shape "
                          f"{tuple(source.shape)}; {fix}.")
    if tuple(source.value_range) != tuple(target.value_range):
        raise ConfigError(f"The source images lie in {source.value_range}, the model's in {target.value_range}; "
                          "translate between datasets of the same range.")


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
    return jax.random.fold_in(jax.random.PRNGKey(seed), KEY_SALT)


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
