"""Sampling a trained energy to disk: annealed Langevin chains streamed in shards, resumable.

Layer 3. :func:`sample_to_workdir` runs ``sample.n`` chains ``sample.batch_size`` at a time (split
over every device of the mesh), ``sample.chunk_steps`` Langevin steps per compiled call, and writes
under ``<workdir>/samples/``:

- ``shards/shard_00000.npz``, ...: one file per batch of chains, written as soon as the batch
  finishes, so host and device memory hold one batch whatever ``sample.n`` is. Keys ``images``
  (float32, NHWC, the data's range, after the denoising jump; all chains of the batch, the last
  batch included) and ``energy`` (mean energy of the batch's chains at every step).
- ``shards/chains_00003.npz``: the in-flight batch's positions after its last finished chunk, with
  the step count and its energy trace so far (deleted when the batch's shard is written).
- ``shards/manifest.json``: what the shards depend on (sampling settings, chains per batch, data
  shape, model and a fingerprint of the parameters).
- ``samples.npz``: the first ``sample.n`` samples, key ``images``, when they fit in
  ``sample.merge_max_gb``; ``grid.png`` (``density.png`` for 2-D toys), ``energy_trace.png`` (the
  paper's Fig. A7B, from batch 0) and ``summary.json`` (counts, range, throughput, peak memory).

Resuming: rerunning the same command keeps finished shards and continues the in-flight batch from
its saved chains. The result equals an uninterrupted run exactly: batch b's chains start from keys
``fold_in(key, b)`` and step i of a chain uses ``fold_in(chain_key, i)`` however it is chunked.
Shards drawn with other settings or other parameters are discarded, with a warning. With several
processes the workdir must be on a filesystem they share (as for checkpoints); only process 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import pathlib
import signal
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from ebmjax import parallel, samplers, schedules, visualize
from ebmjax.errors import ConfigError

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1


def temperatures(sample_cfg: ml_collections.ConfigDict) -> jax.Array:
    """The annealing schedule of ``sample_cfg``: one temperature per Langevin step, (K,) float32."""
    s = sample_cfg
    return schedules.annealing_schedule(s.schedule, t_max=s.t_max, n_hot=s.n_hot, n_anneal=s.n_anneal, n_cool=s.n_cool)


def mean_energy(state: Any, info: Any) -> jax.Array:
    """What the chains record at every step: the mean energy over the batch (a scalar).

    Module level (not a lambda) so that jitted chunks, keyed on it, compile once per process.
    """
    del state
    return jnp.mean(info.energy)


def peak_device_memory(devices: list | None = None) -> tuple[int | None, str]:
    """Largest ``peak_bytes_in_use`` over ``devices`` (default: this process's) since the process
    started, or None with a note where the backend keeps no statistics (CPU)."""
    devices = jax.local_devices() if devices is None else devices
    peaks = []
    for d in devices:
        try:
            stats = d.memory_stats()
        except Exception:  # some backends raise instead of returning None
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    if not peaks:
        return None, f"{devices[0].platform} devices report no memory statistics"
    return max(peaks), "peak_bytes_in_use of the busiest device since the process started"


@dataclasses.dataclass(frozen=True)
class SamplePlan:
    """How ``n`` samples are drawn: ``n_batches`` batches of ``batch`` chains, ``steps`` steps each."""

    n: int
    batch: int
    n_batches: int
    steps: int

    def count(self, b: int) -> int:
        """Samples of batch ``b`` that belong to the first n (the last batch may keep fewer)."""
        return max(0, min(self.batch, self.n - b * self.batch))


def make_plan(sample_cfg: ml_collections.ConfigDict, n: int, n_devices: int) -> SamplePlan:
    """Batches of ``sample.batch_size`` chains (at most n), rounded up to whole chains per device."""
    if n < 1:
        raise ConfigError(f"sample.n must be >= 1 to sample, got {n}.")
    batch = min(sample_cfg.batch_size, n)
    batch = -(-batch // n_devices) * n_devices
    return SamplePlan(n, batch, -(-n // batch), int(temperatures(sample_cfg).shape[0]))


def params_fingerprint(params: Any) -> str:
    """A hash of the parameters' bytes, so shards from other parameters are never mixed in."""
    h = hashlib.blake2b(digest_size=16)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        # Parameters are replicated, so this process's first shard holds the whole array.
        arr = np.asarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
        h.update(jax.tree_util.keystr(path).encode())
        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Shards on disk
# ---------------------------------------------------------------------------------------------


def _atomic_savez(path: pathlib.Path, **arrays: np.ndarray) -> None:
    """np.savez to ``path`` through a temporary file and a rename, so an interrupted write never
    leaves a truncated file that a resumed run would trust."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ShardStore:
    """The ``shards/`` directory of a sampling run: finished batches and the in-flight one.

    ``manifest`` says what the shards depend on; a directory written with another manifest is
    emptied (or always, when ``resume`` is False). Only ``writer`` processes write.
    """

    def __init__(self, directory: str | pathlib.Path, manifest: dict[str, Any], *, resume: bool = True,
                 writer: bool = True):
        self.directory = pathlib.Path(directory)
        self.writer = writer
        path = self.directory / "manifest.json"
        old = json.loads(path.read_text()) if path.exists() else None
        stale = sorted(self.directory.glob("shard_*.npz")) + sorted(self.directory.glob("chains_*.npz"))
        if stale and (not resume or old != manifest):
            why = "sample.resume is false" if not resume else "they were drawn with other settings or parameters"
            log.warning("Discarding %d sample shards in %s: %s.", len(stale), self.directory, why)
            if writer:
                for p in stale:
                    p.unlink()
        if writer:
            self.directory.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if jax.process_count() > 1:
            # Every process must see the same finished shards, or they would run different batches
            # and wait for each other forever: nobody looks before the writer has cleaned up.
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("ebmjax sample shards")

    def shard_path(self, b: int) -> pathlib.Path:
        return self.directory / f"shard_{b:05d}.npz"

    def chains_path(self, b: int) -> pathlib.Path:
        return self.directory / f"chains_{b:05d}.npz"

    def has_shard(self, b: int) -> bool:
        return self.shard_path(b).exists()

    def load_shard(self, b: int) -> dict[str, np.ndarray]:
        with np.load(self.shard_path(b)) as f:
            return {k: f[k] for k in f.files}

    def save_shard(self, b: int, images: np.ndarray, energy: np.ndarray) -> None:
        if self.writer:
            _atomic_savez(self.shard_path(b), images=images.astype(np.float32), energy=energy.astype(np.float32))
            self.chains_path(b).unlink(missing_ok=True)

    def load_chains(self, b: int) -> tuple[int, np.ndarray, np.ndarray] | None:
        """(steps done, positions, energy trace so far) of an interrupted batch, or None."""
        if not self.chains_path(b).exists():
            return None
        with np.load(self.chains_path(b)) as f:
            return int(f["step"]), f["position"], f["energy"]

    def save_chains(self, b: int, step: int, position: np.ndarray, energy: np.ndarray) -> None:
        if self.writer:
            _atomic_savez(self.chains_path(b), step=np.asarray(step), position=position,
                          energy=energy.astype(np.float32))


def _manifest(cfg: ml_collections.ConfigDict, plan: SamplePlan, shape: tuple[int, ...], params: Any) -> dict[str, Any]:
    s = cfg.sample
    return {
        "version": MANIFEST_VERSION, "seed": cfg.seed, "shape": list(shape), "batch": plan.batch,
        "steps": plan.steps,
        "sample": {k: s[k] for k in ("schedule", "t_max", "n_hot", "n_anneal", "n_cool", "step_size",
                                     "init_mean", "init_std", "denoise")},
        "sigma0": cfg.loss.sigma0,
        "model": json.loads(cfg.model.to_json_best_effort()),
        "params": params_fingerprint(params),
    }


# ---------------------------------------------------------------------------------------------
# Chains
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Progress:
    """A progress bar over every step of every batch, with an ETA from this session's rate."""

    total: int
    initial: int
    enabled: bool

    def __post_init__(self):
        self.bar = tqdm(total=self.total, initial=self.initial, desc="sample", unit="step",
                        disable=not self.enabled, dynamic_ncols=True)
        self.done = self.initial
        self.t0 = time.perf_counter()

    def advance(self, steps: int) -> None:
        self.bar.update(steps)
        self.done += steps

    def eta_s(self) -> float | None:
        ran, elapsed = self.done - self.initial, time.perf_counter() - self.t0
        return None if ran <= 0 else (self.total - self.done) * elapsed / ran

    def close(self) -> None:
        self.bar.close()


@functools.lru_cache(maxsize=16)
def _initial_chains(batch: int, shape: tuple[int, ...], mean: float, std: float, sharding) -> Callable:
    """key -> mean + std * N(0, I) of shape (batch, *shape), created sharded over the mesh (so
    several processes never hold a global array on one device). Cached: compiled once per run."""
    return jax.jit(lambda k: mean + std * jax.random.normal(k, (batch, *shape), jnp.float32),
                   out_shardings=sharding)


# The energy is a Partial (a pytree of the parameters), so this compiles once per model and shapes.
_denoise = jax.jit(samplers.denoise_jump)


def _batches(cfg: ml_collections.ConfigDict, apply_fn: Callable, params: Any, shape: tuple[int, ...],
             plan: SamplePlan, key: jax.Array, mesh, store: ShardStore | None, progress: bool,
             stats: dict[str, int] | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Runs the batches that ``store`` does not already hold; yields (b, images (batch, *shape),
    mean-energy trace (steps,)) as each finishes. Only the batch in flight is in memory.
    ``stats["chain_steps_run"]`` counts the Langevin steps (of a whole batch) this call ran."""
    s = cfg.sample
    temps = temperatures(s)
    # Replicated on the mesh, so chains sharded over it meet their parameters on every device.
    params = parallel.put_replicated(params, mesh)
    energy = jax.tree_util.Partial(apply_fn, params)
    init = _initial_chains(plan.batch, shape, float(s.init_mean), float(s.init_std), parallel.batch_sharding(mesh))

    todo = [b for b in range(plan.n_batches) if store is None or not store.has_shard(b)]
    resumed = {b: store.load_chains(b) for b in todo} if store is not None else {}
    resumed = {b: r for b, r in resumed.items() if r is not None}
    initial = (plan.n_batches - len(todo)) * plan.steps + sum(r[0] for r in resumed.values())
    bar = _Progress(plan.n_batches * plan.steps, initial, progress)
    stats = {} if stats is None else stats
    stats["chain_steps_run"] = 0
    try:
        for b in todo:
            bkey = jax.random.fold_in(key, b)
            if b in resumed:
                start, position, trace_so_far = resumed[b]
                x = parallel.put_batch(position, mesh)
                log.info("Batch %d/%d resumes its chains at step %d.", b + 1, plan.n_batches, start)
            else:
                start, trace_so_far, x = 0, np.zeros((0,), np.float32), init(jax.random.fold_in(bkey, 0))
            traces, last = [trace_so_far], [start]

            def on_chunk(steps_done, state, chunk_trace, b=b, traces=traces, last=last):
                bar.advance(steps_done - last[0])
                stats["chain_steps_run"] += steps_done - last[0]
                last[0] = steps_done
                traces.append(np.asarray(chunk_trace.record))
                if store is not None and steps_done < plan.steps:
                    store.save_chains(b, steps_done, parallel.to_host(state.position), np.concatenate(traces))

            state, _ = samplers.run_chain_chunked(
                samplers.ula, energy, samplers.ula.init(x, energy), jax.random.fold_in(bkey, 1),
                temperatures=temps, step_sizes=s.step_size, chunk_size=s.chunk_steps, start_step=start,
                on_chunk=on_chunk, record=mean_energy)
            x = _denoise(energy, state.position, cfg.loss.sigma0) if s.denoise else state.position
            eta = bar.eta_s()
            # Without a progress bar (batch jobs, --no-progress) the log carries the ETA instead.
            log.log(logging.DEBUG if progress else logging.INFO, "Batch %d/%d of %d chains done%s.", b + 1,
                    plan.n_batches, plan.batch, "" if eta is None else f"; ETA {eta / 60:.1f} min")
            yield b, parallel.to_host(x), np.concatenate(traces)
    finally:
        bar.close()


def annealed_samples(cfg: ml_collections.ConfigDict, apply_fn: Callable, params: Any, shape: tuple[int, ...],
                     n: int, key: jax.Array, *, mesh=None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of ``shape`` in memory, nothing written: annealed Langevin from
    init_mean + init_std * N(0, I), then the denoising jump if ``sample.denoise``.

    Chains run ``sample.batch_size`` at a time, split over the mesh. Returns (samples (n, *shape)
    float32, mean energy at every step of the first batch (K,)). The same ``key`` gives the same
    samples as :func:`sample_to_workdir` with that key.
    """
    mesh = mesh or parallel.make_mesh()
    plan = make_plan(cfg.sample, n, mesh.devices.size)
    out, trace = [], None
    for b, images, tr in _batches(cfg, apply_fn, params, tuple(shape), plan, key, mesh, None, progress):
        out.append(images[: plan.count(b)])
        trace = tr if trace is None else trace
    return np.concatenate(out), trace


@contextlib.contextmanager
def _term_as_interrupt():
    """SIGTERM (a preempted or cancelled job) raises KeyboardInterrupt like Ctrl-C, so both stop the
    run with a message saying how to resume; the chains were saved after the last finished chunk."""
    try:
        old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def sampling_key(cfg: ml_collections.ConfigDict) -> jax.Array:
    """The key of ``--mode sample``: derived from the seed, distinct from training's keys."""
    return jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 3)


def sample_to_workdir(cfg: ml_collections.ConfigDict, apply_fn: Callable, params: Any, source: Any,
                      workdir: str | pathlib.Path, *, progress: bool = True, mesh=None) -> dict[str, Any]:
    """Draws ``sample.n`` samples into ``<workdir>/samples/`` (see the module docstring), resuming an
    interrupted run; returns the summary that is also written to ``summary.json``."""
    s = cfg.sample
    out_dir = pathlib.Path(workdir) / "samples"
    writer = jax.process_index() == 0
    mesh = mesh or parallel.make_mesh()
    shape = tuple(source.shape)
    plan = make_plan(s, s.n, mesh.devices.size)
    if s.merge_max_gb < 0:
        raise ConfigError(f"sample.merge_max_gb must be >= 0, got {s.merge_max_gb}.")
    store = ShardStore(out_dir / "shards", _manifest(cfg, plan, shape, params), resume=s.resume, writer=writer)
    reused = sum(store.has_shard(b) for b in range(plan.n_batches))

    t0, ran, stats = time.perf_counter(), 0, {}
    try:
        with _term_as_interrupt():
            for b, images, trace in _batches(cfg, apply_fn, params, shape, plan, sampling_key(cfg), mesh, store,
                                             progress, stats):
                store.save_shard(b, images, trace)
                ran += 1
    except KeyboardInterrupt:
        from ebmjax.train.loop import Interrupted

        raise Interrupted(
            f"Sampling stopped after {reused + ran} of {plan.n_batches} batches; finished batches and the "
            f"chains in flight are saved in {store.directory}. Rerun the same command to resume.") from None
    seconds = time.perf_counter() - t0
    if not writer:
        return {}

    merge = plan.n * math.prod(shape) * 4 <= s.merge_max_gb * 1e9
    merged, grid, lo, hi, energy_trace = [], [], math.inf, -math.inf, None
    for b in range(plan.n_batches):
        shard = store.load_shard(b)
        images = shard["images"][: plan.count(b)]
        lo, hi = min(lo, float(images.min())), max(hi, float(images.max()))
        if energy_trace is None:
            energy_trace = shard["energy"]
        if len(grid) < 256:
            grid.extend(images[: 256 - len(grid)])
        if merge:
            merged.append(images)
    files = []
    if merge:
        x = np.concatenate(merged)
        with (out_dir / "samples.npz").open("wb") as f:
            np.savez(f, images=x)
        files.append("samples.npz")
    else:
        (out_dir / "samples.npz").unlink(missing_ok=True)  # a stale file from a smaller run would mislead
    visualize.save_energy_trace(np.asarray(temperatures(s)), energy_trace, out_dir / "energy_trace.png",
                                labels=("mean energy of the chains (batch 0)",))
    files.append("energy_trace.png")
    grid = np.stack(grid)
    if len(shape) == 1 and shape[0] == 2:
        data = source.get(np.arange(min(len(source), 5000)))
        energy = jax.jit(lambda p, pts: apply_fn(p, pts))
        visualize.save_density_2d(lambda pts: energy(params, jnp.asarray(pts)), out_dir / "density.png",
                                  samples=x if merge else grid, data=data, title=f"{cfg.data.name}: MDSM")
        files.append("density.png")
    else:
        visualize.save_image_grid(grid, out_dir / "grid.png")
        files.append("grid.png")

    mem, mem_note = peak_device_memory()
    img_steps = stats["chain_steps_run"] * plan.batch
    summary = {
        "n": plan.n, "shape": list(shape), "min": lo, "max": hi, "files": files,
        "shards": [store.shard_path(b).relative_to(out_dir).as_posix() for b in range(plan.n_batches)],
        "merged": merge, "batch_size": plan.batch, "n_batches": plan.n_batches, "chain_steps": plan.steps,
        "batches_reused": reused, "batches_run": ran, "seconds": seconds,
        "img_steps_per_s": img_steps / seconds if img_steps and seconds > 0 else None,
        "device": jax.devices()[0].device_kind, "n_devices": mesh.devices.size,
        "peak_memory_bytes": mem, "peak_memory_note": mem_note,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("Wrote %d samples to %s (%d batches run, %d reused)", plan.n, out_dir, ran, reused)
    return summary
