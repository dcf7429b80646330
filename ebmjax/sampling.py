"""Sampling a trained energy to disk: annealed Langevin chains, denoising jump, pictures.

Layer 3: builds the schedule from the config, runs ``ebmjax.samplers`` in jitted chunks with a
progress bar, and writes ``<workdir>/samples/``: ``samples.npz`` (key ``images``, float32, NHWC,
in the data's range; (n, 2) points for 2-D toys), ``grid.png`` (or ``density.png`` for toys) and
``energy_trace.png`` (energy and temperature along the chain, the paper's Fig. A7B).
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from ebmjax import parallel, samplers, schedules, visualize

log = logging.getLogger(__name__)


def temperatures(sample_cfg: ml_collections.ConfigDict) -> jax.Array:
    s = sample_cfg
    return schedules.annealing_schedule(s.schedule, t_max=s.t_max, n_hot=s.n_hot, n_anneal=s.n_anneal, n_cool=s.n_cool)


def _mean_energy(state: Any, info: Any) -> jax.Array:
    del state
    return jnp.mean(info.energy)


def annealed_samples(cfg: ml_collections.ConfigDict, apply_fn: Callable, params: Any, shape: tuple[int, ...],
                     n: int, key: jax.Array, *, mesh=None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of shape ``shape`` by annealed Langevin from init_mean + init_std * N(0, I),
    then the denoising jump if ``sample.denoise``. Chains run ``sample.batch_size`` at a time, split
    over the mesh. Returns (samples (n, *shape) float32, mean energy per step of the first batch)."""
    s = cfg.sample
    mesh = mesh or parallel.make_mesh()
    temps = temperatures(s)
    batch = min(s.batch_size, n)
    batch = -(-batch // mesh.devices.size) * mesh.devices.size  # whole chains on every device
    n_batches = -(-n // batch)
    energy = jax.tree_util.Partial(apply_fn, params)
    jump = jax.jit(lambda p, x: samplers.denoise_jump(jax.tree_util.Partial(apply_fn, p), x, cfg.loss.sigma0))
    bar = tqdm(total=n_batches * len(temps), desc="sample", unit="step", disable=not progress,
               dynamic_ncols=True)
    out, trace = [], None
    for b in range(n_batches):
        bkey = jax.random.fold_in(key, b)
        x0 = s.init_mean + s.init_std * jax.random.normal(jax.random.fold_in(bkey, 0), (batch, *shape), jnp.float32)
        x0 = parallel.put_batch(x0, mesh)
        done = [0]

        def tick(steps_done, state, chunk_trace, done=done):
            bar.update(steps_done - done[0])
            done[0] = steps_done

        state, tr = samplers.run_chain_chunked(
            samplers.ula, energy, samplers.ula.init(x0, energy), jax.random.fold_in(bkey, 1),
            temperatures=temps, step_sizes=s.step_size, chunk_size=s.chunk_steps, on_chunk=tick,
            record=_mean_energy)
        x = state.position
        if s.denoise:
            x = jump(params, x)
        out.append(np.asarray(jax.device_get(x)))
        if trace is None:
            trace = np.asarray(tr.record)
    bar.close()
    return np.concatenate(out)[:n], trace


def sample_to_workdir(cfg: ml_collections.ConfigDict, apply_fn: Callable, params: Any, source: Any,
                      workdir: str | pathlib.Path, *, progress: bool = True) -> np.ndarray:
    """Writes ``sample.n`` samples and their pictures to ``<workdir>/samples/``; returns them."""
    out_dir = pathlib.Path(workdir) / "samples"
    out_dir.mkdir(parents=True, exist_ok=True)
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 3)
    shape = tuple(source.shape)
    x, trace = annealed_samples(cfg, apply_fn, params, shape, cfg.sample.n, key, progress=progress)
    if jax.process_index() != 0:
        return x
    np.savez_compressed(out_dir / "samples.npz", images=x.astype(np.float32))
    visualize.save_energy_trace(np.asarray(temperatures(cfg.sample)), trace, out_dir / "energy_trace.png",
                                labels=("mean energy of the chains",))
    if len(shape) == 1 and shape[0] == 2:
        data = source.get(np.arange(min(len(source), 5000)))
        energy = jax.jit(lambda p, pts: apply_fn(p, pts))
        visualize.save_density_2d(lambda pts: energy(params, jnp.asarray(pts)), out_dir / "density.png",
                                  samples=x, data=data, title=f"{cfg.data.name}: MDSM")
        pictures = ["density.png"]
    else:
        visualize.save_image_grid(x[:256], out_dir / "grid.png")
        pictures = ["grid.png"]
    summary = {"n": int(len(x)), "shape": list(shape), "min": float(x.min()), "max": float(x.max()),
               "files": ["samples.npz", "energy_trace.png", *pictures]}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("Wrote %d samples to %s", len(x), out_dir)
    return x
