"""``--mode inpaint`` and ``--mode denoise``: restoration of test images with a trained method, written
to the workdir.

Layer 4 over the pure restorers of :mod:`ebmjax.restoration.restore`. They read the ``restore``
config group, take the first ``restore.n`` images of ``restore.split`` and write
``<workdir>/inpaint/`` or ``<workdir>/denoise/``:

- ``panels.png``: the first ``PANEL_IMAGES`` images, each as corrupted | restored | truth
  (denoise: noisy | jump | langevin | truth), in side-by-side groups read row by row;
- ``report.json``: PSNR (dB) per image and averaged, under ``psnr`` and ``mean_psnr`` with keys
  ``corrupted`` and ``restored`` (denoise: ``corrupted``, ``jump``, ``langevin``); inpainting
  also reports the same over the restored region only (``psnr_free``, ``mean_psnr_free``);
- ``restored.npz``: the arrays (NHWC float32), the mask, the temperatures and the energy of
  every chain at every step;
- ``energy_trace.png``: energy and temperature along the chain (the paper's Fig. A7B).
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ebmjax import data, io, keys, visualize
from ebmjax.data.registry import holds_points
from ebmjax.errors import ConfigError, DataError
from ebmjax.methods.base import Sampler
from ebmjax.restoration.restore import (HALF_SIDES, MASKS, add_noise, check_fraction, denoise_batches,
                                        denoise_temperatures, image_dims, inpaint_batches, make_mask, mask_out,
                                        psnr)

log = logging.getLogger(__name__)

PANEL_IMAGES = 32  # images shown in panels.png; every image is in restored.npz and report.json




def check_config(cfg: ml_collections.ConfigDict) -> None:
    """Rejects restore settings that cannot work, before any checkpoint is read."""
    r = cfg.restore
    if holds_points(cfg.data.name):
        raise ConfigError(f"Restoration needs images; data.name={cfg.data.name!r} is 2-D points. "
                          "Use an image dataset (e.g. configs/mdsm_digits.py).")
    if r.mask not in MASKS:
        raise ConfigError(f"Unknown restore.mask {r.mask!r}; choose one of {', '.join(MASKS)}.")
    if r.half_side not in HALF_SIDES:
        raise ConfigError(f"Unknown restore.half_side {r.half_side!r}; choose one of {', '.join(HALF_SIDES)}.")
    check_fraction(r.box_fraction, "restore.box_fraction")
    check_fraction(r.mask_fraction, "restore.mask_fraction")
    for name, value in (("restore.n", r.n), ("restore.batch_size", r.batch_size),
                        ("restore.denoise_steps", r.denoise_steps)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}.")
    for name, value in (("restore.noise_sigma", r.noise_sigma), ("restore.clamp_noise", r.clamp_noise),
                        ("restore.denoise_t_start", r.denoise_t_start)):
        if not value >= 0:
            raise ConfigError(f"{name} must be >= 0, got {value}.")


def restoration_source(cfg: ml_collections.ConfigDict) -> Any:
    """The source of ``restore.split``; when that is "test" and the dataset has no usable test
    split, the train split with a logged notice. Checks the restore settings (``check_config``)
    and that the data are images with >= restore.n examples, so it can run before a checkpoint
    is read."""
    check_config(cfg)
    split = cfg.restore.split
    try:
        source = data.load_source(cfg.data, split)
    except (ConfigError, DataError) as e:
        if split != "test":
            raise
        # If train fails too, its error (e.g. "not prepared") is the one the user must act on.
        source = data.load_source(cfg.data, "train")
        log.warning("Dataset %r has no usable test split (%s); restoring images of the train split.",
                    cfg.data.name, e)
    image_dims(source.shape)
    if cfg.restore.n > len(source):
        raise ConfigError(f"restore.n = {cfg.restore.n} is larger than the {len(source)} images of the "
                          f"{getattr(source, 'split', split)!r} split of {cfg.data.name!r}; lower it.")
    return source


def _per_image(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values)]


def _psnr_block(pairs: dict[str, tuple[np.ndarray, np.ndarray]], mask: np.ndarray | None = None) -> tuple[dict, dict]:
    per = {k: _per_image(psnr(a, b, mask=mask)) for k, (a, b) in pairs.items()}
    return per, {k: float(np.mean(v)) for k, v in per.items()}


def _write_outputs(out_dir: pathlib.Path, columns: Sequence[tuple[str, np.ndarray]], temps: np.ndarray,
                   energy: np.ndarray, arrays: dict[str, np.ndarray], report: dict, title: str) -> None:
    """panels.png (one row per image, one titled column per entry of ``columns``), energy_trace.png,
    restored.npz, report.json."""
    shown_n = min(PANEL_IMAGES, len(columns[0][1]))
    visualize.save_panels([(t, np.asarray(c)[:shown_n]) for t, c in columns], out_dir / "panels.png", title=title)
    # The mean over images shows the annealing; two single chains show the spread around it.
    shown = [energy.mean(axis=1)] + [energy[:, j] for j in range(min(2, energy.shape[1]))]
    labels = ["mean over images"] + [f"image {j}" for j in range(len(shown) - 1)]
    visualize.save_energy_trace(temps, np.stack(shown, axis=1), out_dir / "energy_trace.png", labels=labels)
    io.savez_atomic(out_dir / "restored.npz", temperatures=temps.astype(np.float32), energy=energy.astype(np.float32),
                    **{k: np.asarray(v, np.float32) for k, v in arrays.items()})
    report["files"] = ["panels.png", "energy_trace.png", "restored.npz", "report.json"]
    io.write_json_atomic(out_dir / "report.json", report)


def _check_chain_fits(chain: Any, shape: tuple[int, ...]) -> None:
    """ConfigError unless the method's last chain works on images of ``shape`` (H, W, C): a coarse-to-
    fine run's checkpoint from before its last stage samples at a smaller side."""
    try:
        jax.eval_shape(chain.energy, jax.ShapeDtypeStruct((1, *shape), jnp.float32))
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"The checkpoint's last chain ({chain.name}) does not work on the {shape} images to "
                          f"restore ({e}). A coarse-to-fine run restores from a checkpoint of its last stage: "
                          "pass --config.sample.checkpoint=STEP with a later step, or train further.") from None


def _header(cfg: ml_collections.ConfigDict, source: Any, mode: str, step: int | None, n_steps: int,
            step_size: float, final_jump: bool, sigma0: float | None) -> dict:
    report = {"mode": mode, "method": cfg.method.name, "data": cfg.data.name,
              "split": getattr(source, "split", cfg.restore.split), "n": int(cfg.restore.n),
              "langevin_steps": int(n_steps), "step_size": float(step_size), "final_jump": bool(final_jump),
              "sigma0": sigma0}
    if step is not None:
        report["checkpoint_step"] = int(step)
    return report


def _improved(per: dict[str, list[float]], baseline: str = "corrupted") -> dict[str, float]:
    """For every restorer, the share of images whose PSNR beats the corrupted input's."""
    base = np.asarray(per[baseline])
    return {k: float(np.mean(np.asarray(v) > base)) for k, v in per.items() if k != baseline}


def inpaint_to_workdir(cfg: ml_collections.ConfigDict, sampler: Sampler, workdir: str | pathlib.Path, *,
                       sigma0: float | None, source: Any = None, progress: bool = True,
                       step: int | None = None) -> dict:
    """``--mode inpaint``: masks the first ``restore.n`` images of ``restore.split`` with
    ``restore.mask``, restores them with ``restore.n_chains`` runs per image of the last chain of the
    method's ``sampler`` (for MDSM the annealed Langevin of the ``mdsm`` group, started from
    mdsm.init_mean + mdsm.init_std N(0, 1), then the denoising jump on free pixels if ``sigma0``
    is given and ``mdsm.denoise``), reports their mean (the posterior-mean estimate) and writes
    ``<workdir>/inpaint/``. Returns the report. The corrupted images show (and are scored with)
    ``restore.fill`` in the missing pixels. ``source``: the images (default
    ``restoration_source(cfg)``); ``step``: the checkpoint's step, for the report."""
    r, s = cfg.restore, cfg.sample
    source = restoration_source(cfg) if source is None else source
    x_true = np.asarray(source.get(np.arange(r.n)), np.float32)
    key = keys.stream(cfg.seed, keys.INPAINT)
    mask = np.asarray(make_mask(r.mask, x_true.shape, jax.random.fold_in(key, 0), box_fraction=r.box_fraction,
                                mask_fraction=r.mask_fraction, half_side=r.half_side))
    corrupted = np.asarray(mask_out(x_true, mask, r.fill))
    chain = sampler.stages[-1]
    _check_chain_fits(chain, tuple(x_true.shape[1:]))
    temps = np.asarray(chain.temperatures)
    # The jump finishes inpainting where the method's sampler ends with it (MDSM with mdsm.denoise).
    jump = bool(sampler.settings.get("denoise", False) and sigma0 is not None)
    k = int(r.n_chains)
    # The free pixels start where the method's chains start; a method whose chains start at another
    # size (multigrid: its coarsest grid) starts them from the default 0.5 + N(0, 1) instead.
    start_shape = jax.eval_shape(lambda k: sampler.init(k, 1), jax.random.key(0)).shape[1:]
    start = sampler.init if tuple(start_shape) == tuple(x_true.shape[1:]) else None
    # k chains per image; their mean estimates the posterior mean, the best guess in squared error.
    res = inpaint_batches(chain.energy, np.tile(x_true, (k, 1, 1, 1)), np.tile(mask, (k, 1, 1, 1)),
                          jax.random.fold_in(key, 1), temperatures=temps, step_size=np.asarray(chain.step_sizes),
                          clamp_noise=r.clamp_noise, sigma0=sigma0 or 0.0, final_jump=jump, kernel=chain.kernel,
                          start=start, batch_size=r.batch_size, chunk_size=s.chunk_steps, unroll_steps=s.unroll_steps,
                          progress=progress)
    chains = res.restored.reshape((k,) + x_true.shape)
    sample, restored = chains[0], chains.mean(axis=0)
    res = res._replace(restored=restored, chain=res.chain.reshape((k,) + x_true.shape)[0],
                       energy=res.energy[:, :len(x_true)])
    pairs = {"corrupted": (corrupted, x_true), "one_chain": (sample, x_true), "restored": (restored, x_true)}
    per, mean = _psnr_block(pairs)
    per_free, mean_free = _psnr_block(pairs, mask)
    report = _header(cfg, source, "inpaint", step, len(temps), float(np.mean(chain.step_sizes)), jump, sigma0)
    report.update({"mask": r.mask, "box_fraction": float(r.box_fraction), "mask_fraction": float(r.mask_fraction),
                   "half_side": r.half_side, "fill": float(r.fill), "clamp_noise": float(r.clamp_noise),
                   "n_chains": k, "restored": f"mean of {k} chains per image (one_chain: the first alone)",
                   "free_pixels_per_image": _per_image(mask.reshape(len(mask), -1).sum(axis=1)),
                   "mean_psnr": mean, "mean_psnr_free": mean_free, "improved_share": _improved(per),
                   "psnr": per, "psnr_free": per_free})
    if jax.process_index() == 0:
        out_dir = pathlib.Path(workdir) / "inpaint"
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_outputs(out_dir, (("corrupted", corrupted), ("one chain", sample), (f"mean of {k}", restored),
                                 ("truth", x_true)), temps,
                       res.energy, {"truth": x_true, "corrupted": corrupted, "restored": restored,
                                    "one_chain": sample, "chain": res.chain, "mask": mask}, report,
                       title=f"inpainting ({r.mask} mask): {mean['corrupted']:.1f} -> {mean['restored']:.1f} dB")
        log.info("Inpainted %d images (%s mask): mean PSNR %.2f dB corrupted, %.2f dB restored (better than the "
                 "corrupted input on %.0f%% of images); wrote %s", r.n, r.mask, mean["corrupted"], mean["restored"],
                 100 * report["improved_share"]["restored"], out_dir)
    return report


def denoise_to_workdir(cfg: ml_collections.ConfigDict, sampler: Sampler, workdir: str | pathlib.Path, *,
                       sigma0: float | None, model_temperature: float = 1.0, source: Any = None,
                       progress: bool = True, step: int | None = None) -> dict:
    """``--mode denoise``: adds N(0, restore.noise_sigma^2) noise to the first ``restore.n`` images
    of ``restore.split``, denoises them by the single jump (when the method learns a smoothed density,
    ``sigma0``) and by ``restore.denoise_steps`` Langevin steps from the noisy image on the posterior
    energy E(x) + |x - y|^2 / (2 restore.noise_sigma^2), E the energy of the method's last chain
    (temperature linear from restore.denoise_t_start to 0, the chain's step size), and writes
    ``<workdir>/denoise/``. Returns the report; ``source`` and ``step`` as in ``inpaint_to_workdir``."""
    r, s = cfg.restore, cfg.sample
    source = restoration_source(cfg) if source is None else source
    x_true = np.asarray(source.get(np.arange(r.n)), np.float32)
    key = keys.stream(cfg.seed, keys.DENOISE)
    noisy = np.asarray(add_noise(jax.random.fold_in(key, 0), x_true, float(r.noise_sigma)))
    # The model's density is exp(-E / T_m): the chain's temperatures are in units of T_m.
    temps = np.asarray(denoise_temperatures(r.denoise_t_start, r.denoise_steps)) * model_temperature
    chain = sampler.stages[-1]
    _check_chain_fits(chain, tuple(x_true.shape[1:]))
    step_size = float(np.mean(chain.step_sizes))
    res = denoise_batches(chain.energy, noisy, jax.random.fold_in(key, 1),
                          sigma0=sigma0, temperatures=temps, step_size=step_size, noise_sigma=float(r.noise_sigma),
                          model_temperature=model_temperature, final_jump=False, batch_size=r.batch_size, chunk_size=s.chunk_steps,
                          unroll_steps=s.unroll_steps,
                          progress=progress)
    results = {"corrupted": (noisy, x_true), "langevin": (res.langevin, x_true)}
    if sigma0 is not None:
        results["jump"] = (res.jump, x_true)
    per, mean = _psnr_block(results)
    report = _header(cfg, source, "denoise", step, len(temps), step_size, False, sigma0)
    report.update({"noise_sigma": float(r.noise_sigma), "denoise_t_start": float(r.denoise_t_start),
                   "mean_psnr": mean, "improved_share": _improved(per), "psnr": per})
    if jax.process_index() == 0:
        out_dir = pathlib.Path(workdir) / "denoise"
        out_dir.mkdir(parents=True, exist_ok=True)
        columns = [("noisy", noisy)] + ([("jump", res.jump)] if sigma0 is not None else []) + \
            [("Langevin", res.langevin), ("truth", x_true)]
        arrays = {"truth": x_true, "noisy": noisy, "langevin": res.langevin}
        if sigma0 is not None:
            arrays["jump"] = res.jump
        _write_outputs(out_dir, columns, temps, res.energy, arrays, report,
                       title=f"denoising (sigma {r.noise_sigma:g}): " + ", ".join(
                           f"{k} {v:.1f} dB" for k, v in mean.items()))
        log.info("Denoised %d images (sigma %.3g): mean PSNR %s; better than the noisy input on %s; wrote %s",
                 r.n, r.noise_sigma, ", ".join(f"{k} {v:.2f} dB" for k, v in mean.items()),
                 ", ".join(f"{100 * v:.0f}% ({k})" for k, v in report["improved_share"].items()), out_dir)
    return report
