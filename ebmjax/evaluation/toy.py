"""What a model learned of a 2-D toy density, shown truthfully: ``density.png`` and mode shares.

The picture puts the learned log-density (every mode visible, however unequal the masses) beside the
data, the method's samples (for MDSM annealed down to T = 0 and then denoised by the jump, so they
sit near the modes' centres) and chains at T = 1 without the finishing jump (the same chains, never
colder than T = 1: the density exp(-E) the model defines, for MDSM the data smoothed by sigma0). For toys
with modes (eight_gaussians, rings, checkerboard, two_moons) it reports the share of points in each
mode for the data, both kinds of samples and the learned density itself (its mass over each mode's
region on a grid): unequal learned masses are measured, not guessed from a picture.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ebmjax import visualize
from ebmjax.data import toy2d
from ebmjax.methods.base import Sampler

log = logging.getLogger(__name__)

GRID_LIM = 4.0
GRID_RESOLUTION = 200
MAX_POINTS = 2000  # points per scatter panel and per T = 1 draw
UNEVEN = 1.5  # a largest/smallest learned mode mass above this is reported as uneven


def mode_shares(toy_name: str, points: np.ndarray) -> dict[str, Any] | None:
    """{"shares": share of points in each mode, "off_support": share in none} or None (no modes)."""
    assigned = toy2d.assign_modes(toy_name, points)
    if assigned is None:
        return None
    labels, n_modes = assigned
    counts = np.bincount(labels[labels >= 0], minlength=n_modes)
    return {"shares": (counts / max(len(labels), 1)).round(4).tolist(),
            "off_support": round(float(np.mean(labels < 0)), 4)}


def learned_mode_masses(energy_fn, toy_name: str, lim: float = GRID_LIM, resolution: int = 400) -> list[float] | None:
    """The learned density's mass over each mode's region (grid points assigned as data points are),
    normalised to sum to 1 over the modes; None for toys without modes."""
    g = np.linspace(-lim, lim, resolution)
    pts = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    assigned = toy2d.assign_modes(toy_name, pts)
    if assigned is None:
        return None
    labels, n_modes = assigned
    e = np.asarray(energy_fn(pts.astype(np.float32)), np.float64)
    w = np.exp(-(e - e.min()))
    mass = np.array([w[labels == k].sum() for k in range(n_modes)])
    return (mass / mass.sum()).round(4).tolist()


def at_least_temperature(sampler: Sampler, floor: float = 1.0) -> Sampler:
    """The same chains with every temperature raised to at least ``floor`` (no cooling below it) and
    no finishing map (e.g. no denoising jump): samples of the density exp(-E / floor) itself."""
    stages = tuple(s._replace(temperatures=np.maximum(np.asarray(s.temperatures), floor)) for s in sampler.stages)
    return sampler._replace(stages=stages, finish=jax.tree_util.Partial(_identity),
                            settings={**sampler.settings, "temperature_floor": floor, "finish": "none"})


def _identity(x):
    return x


def density_report(cfg: ml_collections.ConfigDict, sampler: Sampler, source: Any, samples: np.ndarray,
                   out_dir: pathlib.Path) -> dict[str, Any]:
    """Writes ``density.png`` and returns the mode shares (and ``files``)."""
    from ebmjax import sampling

    toy_name = source.toy_name
    data = source.get(np.arange(min(len(source), 5000)))
    samples = np.asarray(samples)[:MAX_POINTS]
    warm, _ = sampling.draw(at_least_temperature(sampler), min(len(samples), MAX_POINTS),
                            jax.random.fold_in(sampling.sampling_key(cfg), 99),
                            batch_size=cfg.sample.batch_size, chunk_steps=cfg.sample.chunk_steps, progress=False)
    energy = jax.jit(lambda e, p: e(p))
    final = sampler.stages[-1].energy

    def energy_fn(pts):
        return energy(final, jnp.asarray(pts))

    report: dict[str, Any] = {"toy": toy_name}
    shares = {"data": mode_shares(toy_name, data), "samples": mode_shares(toy_name, samples),
              "samples_T1": mode_shares(toy_name, warm)}
    masses = learned_mode_masses(energy_fn, toy_name)
    footnote = ""
    if shares["data"] is not None:
        report["mode_shares"] = {**shares, "learned_density_mass": masses}
        ratio = max(masses) / max(min(masses), 1e-12)
        report["learned_mass_max_over_min"] = round(ratio, 3)
        report["learned_masses_uneven"] = bool(ratio > UNEVEN)
        footnote = (f"learned mass per mode: {' '.join(f'{m:.2f}' for m in masses)} (max/min {ratio:.2f}); "
                    f"data: {' '.join(f'{m:.2f}' for m in shares['data']['shares'])}")
        if ratio > UNEVEN:
            log.warning("The learned density puts unequal mass on the %d modes of %s (largest/smallest %.2f): %s.",
                        len(masses), toy_name, ratio, masses)
    visualize.save_density_2d(
        energy_fn, out_dir / "density.png",
        panels=[("data", data[:MAX_POINTS]), ("the method's samples", samples),
                ("chains at T = 1, no final map", warm)],
        lim=GRID_LIM, resolution=GRID_RESOLUTION, title=f"{cfg.data.name}: {cfg.method.name}", footnote=footnote)
    report["files"] = ["density.png"]
    return report
