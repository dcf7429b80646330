"""Sampling a trained method to disk: its chains streamed in shards, resumable.

Layer 3. A method describes its sampler as a :class:`~ebmjax.methods.base.Sampler` (a start, one or
more chains, a finishing map); this module runs it for any method. :func:`sample_to_workdir` runs
``sample.n`` chains ``sample.batch_size`` at a time (split over every device of the mesh),
``sample.chunk_steps`` steps per compiled call, and writes under ``<workdir>/samples/`` (or
``<workdir>/samples_seed<N>/`` with ``sample.seed = N``, see :func:`samples_dir`):

- ``shards/<key>/``: the shards of one sampling setup, ``<key>`` a short hash of its manifest (the
  sampler's settings, chains per batch, data shape, method, seeds and a fingerprint of the
  parameters), which ``shards/<key>/manifest.json`` holds.
- ``shards/<key>/shard_00000.npz``, ...: one file per batch of chains, written as soon as the batch
  finishes, so host and device memory hold one batch whatever ``sample.n`` is. Keys ``images``
  (float32, NHWC, the data's range, after the sampler's finishing map such as MDSM's denoising jump;
  all chains of the batch, the last batch included) and ``energy`` (mean energy of the batch's chains
  at every step of every stage).
- ``shards/<key>/chains_00003.npz``: the in-flight batch's positions after its last finished chunk,
  with the stage, the step count and its energy trace so far (deleted when the batch's shard is
  written).
- ``samples.npz``: the first ``sample.n`` samples, key ``images``, when they fit in
  ``sample.merge_max_gb``; ``grid.png`` (``density.png`` for 2-D toys), ``energy_trace.png`` (the
  MDSM paper's Fig. A7B, from batch 0), the sampler's own pictures if it has any
  (``Sampler.pictures``, e.g. multigrid's ``grids.png``) and ``summary.json`` (counts, range, throughput, peak memory,
  and on bundled digits the digits classifier's quality figures).

Before anything is written, one batch of chains is compiled (not run) and XLA's memory estimate is
compared with the memory available (:func:`check_memory`); a batch that cannot fit is a ConfigError
that names the largest ``sample.batch_size`` that does.

Resuming: rerunning the same command keeps finished shards and continues the in-flight batch from
its saved chains. The result equals an uninterrupted run exactly: batch b's chains start from keys
``fold_in(key, b)`` and step i of a chain uses ``fold_in(chain_key, i)`` however it is chunked.
Shards of other settings or other parameters (other ``shards/<key>/``) are left alone until this run
has written all its shards and the merged results, and only then removed, with a warning: a run that
dies on the way loses nothing, and resumes in its own ``<key>/``. With several processes the workdir
must be on a filesystem they share (as for checkpoints); only process 0 writes.

Samples are reproducible: the same checkpoint, settings and seeds give the same images (see
:func:`sampling_key`); ``sample.seed`` draws other ones, into their own folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import pathlib
import shutil
import time
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from ebmjax import data, io, parallel, samplers, visualize
from ebmjax.errors import ConfigError, Interrupted
from ebmjax.methods.base import Sampler

log = logging.getLogger(__name__)

MANIFEST_VERSION = 3
# The share of the free memory that one batch of chains may take (XLA's estimate is not exact, and the
# host needs some memory of its own).
MEMORY_SHARE = 0.9


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


def make_plan(batch_size: int, n: int, n_devices: int, steps: int) -> SamplePlan:
    """Batches of ``batch_size`` chains (at most n), rounded up to whole chains per device."""
    if n < 1:
        raise ConfigError(f"sample.n must be >= 1 to sample, got {n}.")
    batch = min(batch_size, n)
    batch = -(-batch // n_devices) * n_devices
    return SamplePlan(n, batch, -(-n // batch), int(steps))


def sampler_fingerprint(sampler: Sampler) -> str:
    """A hash of every array the sampler closes over (its energies' parameters, ...)."""
    return parallel.fingerprint([sampler.init, [(s.energy, s.enter) for s in sampler.stages], sampler.finish])


# ---------------------------------------------------------------------------------------------
# Shards on disk
# ---------------------------------------------------------------------------------------------


def manifest_key(manifest: dict[str, Any]) -> str:
    """The name of a manifest's shard directory: a short hash of the manifest."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:12]


class ShardStore:
    """The shards of one sampling setup, in ``<root>/<key>/`` (``key``: :func:`manifest_key`): its
    finished batches and the in-flight one.

    Other entries of ``root`` (other settings or parameters, or the flat layout of older versions)
    are kept until :meth:`discard_stale`, which the caller runs once this run's results are written.
    With ``resume`` False the finished shards are not reused: each is drawn again and replaced by its
    new version when that is written. Only ``writer`` processes write.
    """

    # What an older ebmjax wrote straight into shards/ (one manifest at a time).
    FLAT_PATTERNS = ("shard_*.npz", "chains_*.npz", "manifest.json")

    def __init__(self, root: str | pathlib.Path, manifest: dict[str, Any], *, resume: bool = True,
                 writer: bool = True):
        self.root = pathlib.Path(root)
        self.directory = self.root / manifest_key(manifest)
        self.writer = writer
        self.written: set[int] = set()
        path = self.directory / "manifest.json"
        try:
            old = json.loads(path.read_text()) if path.exists() else None
        except (OSError, ValueError):
            old = "unreadable"
        self.resume = resume and old in (None, manifest)
        finished = sorted(self.directory.glob("shard_*.npz"))
        if finished and not self.resume:
            why = "sample.resume is false" if not resume else "their manifest differs"
            log.warning("%s: the %d finished sample shards in %s are drawn again; each is replaced when its new "
                        "version is written.", why, len(finished), self.directory)
        stale = self.stale()
        if stale:
            log.info("Sample shards of other settings or parameters in %s are kept until this run's samples "
                     "are written.", self.root)
        if writer:
            self.directory.mkdir(parents=True, exist_ok=True)
            io.write_text_atomic(path, json.dumps(manifest, indent=2, sort_keys=True))
        if jax.process_count() > 1:
            # Every process must see the same finished shards, or they would run different batches
            # and wait for each other forever: nobody looks before the writer has set up.
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("ebmjax sample shards")

    def stale(self) -> list[pathlib.Path]:
        """Entries of ``root`` that belong to other manifests: their directories and flat files."""
        if not self.root.is_dir():
            return []
        dirs = [p for p in self.root.iterdir() if p.is_dir() and p != self.directory
                and (p / "manifest.json").exists()]
        flat = [p for pattern in self.FLAT_PATTERNS for p in self.root.glob(pattern) if p.is_file()]
        return sorted(dirs) + sorted(flat)

    def discard_stale(self) -> None:
        """Removes the shards of other manifests (call once this run's results are safely written)."""
        stale = self.stale()
        if not (stale and self.writer):
            return
        n = sum(len(list(p.glob("shard_*.npz"))) if p.is_dir() else p.name.startswith("shard_") for p in stale)
        log.warning("Discarding %d sample shards in %s: they were drawn with other settings or parameters, and "
                    "this run's samples are now written.", n, self.root)
        for p in stale:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)

    def shard_path(self, b: int) -> pathlib.Path:
        return self.directory / f"shard_{b:05d}.npz"

    def chains_path(self, b: int) -> pathlib.Path:
        return self.directory / f"chains_{b:05d}.npz"

    def has_shard(self, b: int) -> bool:
        return b in self.written or (self.resume and self.shard_path(b).exists())

    def load_shard(self, b: int) -> dict[str, np.ndarray]:
        with np.load(self.shard_path(b)) as f:
            return {k: f[k] for k in f.files}

    def save_shard(self, b: int, images: np.ndarray, energy: np.ndarray) -> None:
        if self.writer:
            io.savez_atomic(self.shard_path(b), images=images.astype(np.float32), energy=energy.astype(np.float32))
            self.chains_path(b).unlink(missing_ok=True)
        self.written.add(b)

    def load_chains(self, b: int) -> tuple[int, int, np.ndarray, np.ndarray] | None:
        """(stage, steps done in it, positions, energy trace so far) of an interrupted batch, or None."""
        if not (self.resume and self.chains_path(b).exists()):
            return None
        with np.load(self.chains_path(b)) as f:
            return int(f["stage"]), int(f["step"]), f["position"], f["energy"]

    def save_chains(self, b: int, stage: int, step: int, position: np.ndarray, energy: np.ndarray) -> None:
        if self.writer:
            io.savez_atomic(self.chains_path(b), stage=np.asarray(stage), step=np.asarray(step), position=position,
                            energy=energy.astype(np.float32))


def _manifest(cfg: ml_collections.ConfigDict, sampler: Sampler, plan: SamplePlan,
              shape: tuple[int, ...]) -> dict[str, Any]:
    return {
        "version": MANIFEST_VERSION, "seed": cfg.seed, "sample_seed": cfg.sample.get("seed"),
        "shape": list(shape), "batch": plan.batch,
        "steps": plan.steps, "method": cfg.method.name,
        "sampler": json.loads(json.dumps(dict(sampler.settings), default=str)),
        "params": sampler_fingerprint(sampler),
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


@jax.jit
def _apply(fn: jax.tree_util.Partial, x: jax.Array) -> jax.Array:
    # A Partial is a pytree: one compilation per function and shapes, whatever its parameters.
    return fn(x)


@jax.jit
def _enter(fn: jax.tree_util.Partial, x: jax.Array, key: jax.Array) -> jax.Array:
    return fn(x, key)


def _stage_keys(bkey: jax.Array, i: int) -> tuple[jax.Array, jax.Array]:
    """(chain key, enter key) of stage i of a batch; stage 0's chain key is fold_in(bkey, 1)."""
    if i == 0:
        return jax.random.fold_in(bkey, 1), jax.random.fold_in(bkey, 2)
    return jax.random.fold_in(bkey, 10 + i), jax.random.fold_in(bkey, 20 + i)


def _batches(sampler: Sampler, chunk_steps: int, plan: SamplePlan, key: jax.Array, mesh,
             store: ShardStore | None, progress: bool, stats: dict[str, int] | None = None,
             stop: io.StopSignal | None = None, unroll_steps: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Runs the batches that ``store`` does not already hold; yields (b, samples (batch, ...),
    mean-energy trace (steps,)) as each finishes. Only the batch in flight is in memory.
    ``stats["chain_steps_run"]`` counts the steps (of a whole batch) this call ran. A signal seen by
    ``stop`` interrupts after the next chunk, once the chains in flight are saved."""
    sharding = parallel.batch_sharding(mesh)
    # The start is an argument, not a constant: a replay buffer it draws from is not compiled in.
    init_fn = samplers.as_partial(sampler.init)
    init_jit = jax.jit(lambda f, k: f(k, plan.batch), out_shardings=sharding)

    def init(k):
        return init_jit(init_fn, k)
    finish = samplers.as_partial(sampler.finish)
    lengths = [len(s.temperatures) for s in sampler.stages]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(int)

    todo = [b for b in range(plan.n_batches) if store is None or not store.has_shard(b)]
    resumed = {b: store.load_chains(b) for b in todo} if store is not None else {}
    resumed = {b: r for b, r in resumed.items() if r is not None}
    initial = (plan.n_batches - len(todo)) * plan.steps + sum(int(offsets[r[0]]) + r[1] for r in resumed.values())
    bar = _Progress(plan.n_batches * plan.steps, initial, progress)
    stats = {} if stats is None else stats
    stats["chain_steps_run"] = 0
    try:
        for b in todo:
            bkey = jax.random.fold_in(key, b)
            if b in resumed:
                first_stage, start, position, trace_so_far = resumed[b]
                x = parallel.put_batch(position, mesh)
                log.info("Batch %d/%d resumes its chains at stage %d, step %d.", b + 1, plan.n_batches,
                         first_stage, start)
            else:
                first_stage, start, trace_so_far = 0, 0, np.zeros((0,), np.float32)
                x = init(jax.random.fold_in(bkey, 0))
            traces = [trace_so_far]
            for i in range(first_stage, len(sampler.stages)):
                stage = sampler.stages[i]
                chain_key, enter_key = _stage_keys(bkey, i)
                if start == 0 and stage.enter is not None:
                    x = _enter(samplers.as_partial(stage.enter), x, enter_key)
                last = [start]

                def on_chunk(steps_done, state, chunk_trace, b=b, i=i, last=last):
                    bar.advance(steps_done - last[0])
                    stats["chain_steps_run"] += steps_done - last[0]
                    last[0] = steps_done
                    traces.append(np.asarray(chunk_trace.record))
                    if store is not None and (steps_done < lengths[i] or i < len(lengths) - 1):
                        at_end = steps_done == lengths[i]
                        store.save_chains(b, i + 1 if at_end else i, 0 if at_end else steps_done,
                                          parallel.to_host(state.position), np.concatenate(traces))
                    if stop is not None and stop.received is not None:
                        raise KeyboardInterrupt

                state, _ = samplers.run_chain_chunked(
                    stage.kernel, samplers.as_partial(stage.energy), stage.kernel.init(x, stage.energy), chain_key,
                    temperatures=stage.temperatures, step_sizes=stage.step_sizes, chunk_size=chunk_steps,
                    start_step=start, on_chunk=on_chunk, record=mean_energy, unroll_steps=unroll_steps)
                x, start = state.position, 0
            x = _apply(finish, x)
            eta = bar.eta_s()
            # Without a progress bar (batch jobs, --no-progress) the log carries the ETA instead.
            log.log(logging.DEBUG if progress else logging.INFO, "Batch %d/%d of %d chains done%s.", b + 1,
                    plan.n_batches, plan.batch, "" if eta is None else f"; ETA {eta / 60:.1f} min")
            yield b, parallel.to_host(x), np.concatenate(traces)
    finally:
        bar.close()


def draw(sampler: Sampler, n: int, key: jax.Array, *, batch_size: int, chunk_steps: int = 100, mesh=None,
         progress: bool = True, unroll_steps: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples in memory, nothing written: the sampler's chains, ``batch_size`` at a time, split
    over the mesh (a batch too large for the memory is a ConfigError, see :func:`check_memory`). Returns (samples (n, ...) float32, mean energy at every step of the first batch
    (K,)). The same ``key`` gives the same samples as :func:`sample_to_workdir` with that key."""
    mesh = mesh or parallel.make_mesh()
    plan = make_plan(batch_size, n, mesh.devices.size, sampler.steps)
    check_memory(sampler, plan, chunk_steps, mesh, unroll_steps=unroll_steps)
    out, trace = [], None
    for b, images, tr in _batches(sampler, chunk_steps, plan, key, mesh, None, progress,
                                  unroll_steps=unroll_steps):
        out.append(images[: plan.count(b)])
        trace = tr if trace is None else trace
    return np.concatenate(out), trace


def sampling_key(cfg: ml_collections.ConfigDict) -> jax.Array:
    """The key of ``--mode sample``: derived from ``seed``, distinct from training's keys; with
    ``sample.seed = N``, a different key for every N (and none equal to the default one)."""
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 3)
    sample_seed = cfg.sample.get("seed")
    return key if sample_seed is None else jax.random.fold_in(key, int(sample_seed))


def samples_dir(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
    """Where ``--mode sample`` writes: ``<workdir>/samples/``, or ``<workdir>/samples_seed<N>/`` with
    ``sample.seed = N``, so that fresh samples never overwrite earlier ones."""
    sample_seed = cfg.sample.get("seed")
    return pathlib.Path(workdir) / ("samples" if sample_seed is None else f"samples_seed{int(sample_seed)}")


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------


def _cgroup_free_bytes() -> int | None:
    """Memory left under this process's cgroup limit (containers, batch jobs), or None without one."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = pathlib.Path(limit_file).read_text().strip()
            usage = int(pathlib.Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max" or a huge number: no limit
            return max(0, int(limit) - usage)
    return None


def host_available_bytes() -> int | None:
    """The host memory a new allocation can take: MemAvailable (Linux), or psutil's estimate, capped
    by a cgroup limit; None where neither is known."""
    free = None
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            import psutil  # optional: macOS and other systems without /proc

            free = int(psutil.virtual_memory().available)
        except Exception:
            free = None
    cgroup = _cgroup_free_bytes()
    if cgroup is not None:
        free = cgroup if free is None else min(free, cgroup)
    return free


def available_memory_bytes(mesh) -> tuple[int | None, str]:
    """(free bytes, what they are) for one batch of chains on ``mesh``: the host's available memory on
    CPUs (all CPU devices share it), else the least free memory (``bytes_limit - bytes_in_use``) of
    this process's devices; None where the backend does not say. With several processes, the least
    over all of them, so that every process decides alike."""
    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    if local[0].platform == "cpu":
        free, where = host_available_bytes(), "host memory"
    else:
        frees = []
        for d in local:
            try:
                stats = d.memory_stats()
            except Exception:  # some backends raise instead of returning None
                stats = None
            if not stats or "bytes_limit" not in stats:
                frees = []
                break
            frees.append(int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))
        free, where = (min(frees) if frees else None), f"{local[0].platform.upper()} memory per device"
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        every = np.asarray(multihost_utils.process_allgather(np.asarray(-1 if free is None else free, np.int64)))
        free = None if (every < 0).any() else int(every.min())
    return free, where


def _array_bytes_per_device(tree: Any) -> int:
    """Bytes of the jax arrays in ``tree`` that each device already holds (parameters)."""
    seen, total = set(), 0
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array) and id(leaf) not in seen and leaf.addressable_shards:
            seen.add(id(leaf))
            total += leaf.addressable_shards[0].data.nbytes
    return total


def batch_memory_bytes(sampler: Sampler, batch: int, chunk_steps: int, mesh, unroll_steps: int = 0) -> int | None:
    """XLA's estimate of the memory per device that a batch of ``batch`` chains needs: the largest of
    one compiled chunk of each stage and the finishing map, less the parameters already in memory.
    Compiles (with the shapes and shardings sampling uses, so sampling reuses the compilation) and
    runs nothing, so a batch far too large for the machine costs no memory; None if XLA gives no
    estimate."""
    from ebmjax.samplers import driver

    sharding, rep = parallel.batch_sharding(mesh), parallel.replicated(mesh)

    def spec(a):
        on = sharding if a.ndim and a.shape[0] == batch else rep
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=on)

    key = jax.random.PRNGKey(0)
    estimates = []
    x = jax.eval_shape(lambda k: sampler.init(k, batch), key)
    for stage in sampler.stages:
        energy = samplers.as_partial(stage.energy)
        if stage.enter is not None:
            x = jax.eval_shape(samplers.as_partial(stage.enter), x, key)
        state = jax.tree.map(spec, jax.eval_shape(stage.kernel.init, x, energy))
        compiled = driver.lower_chunk(stage.kernel, energy, state, key, stage.temperatures, stage.step_sizes,
                                      chunk_size=chunk_steps, unroll_steps=unroll_steps, record=mean_energy).compile()
        estimates.append(parallel.compiled_memory_bytes(compiled))
    estimates.append(parallel.compiled_memory_bytes(_apply.lower(samplers.as_partial(sampler.finish), spec(x)).compile()))
    if any(e is None for e in estimates):
        return None
    resident = _array_bytes_per_device([[(st.energy, st.enter) for st in sampler.stages], sampler.finish])
    return max(0, max(estimates) - resident)


def check_memory(sampler: Sampler, plan: SamplePlan, chunk_steps: int, mesh, *,
                 available: tuple[int | None, str] | None = None, unroll_steps: int = 0) -> None:
    """ConfigError, before anything is written, when a batch of ``plan.batch`` chains needs more
    memory than is free (see :func:`batch_memory_bytes`); the message names the largest
    ``sample.batch_size`` that fits, found by scaling linearly and checking. ``available``: (bytes,
    what), default :func:`available_memory_bytes`."""
    free, where = available_memory_bytes(mesh) if available is None else available
    n_dev = mesh.devices.size
    # On CPUs every device's share comes out of the same host memory.
    per = sum(d.process_index == jax.process_index() for d in mesh.devices.flat) if where == "host memory" else 1
    try:
        need = batch_memory_bytes(sampler, plan.batch, chunk_steps, mesh, unroll_steps)
    except Exception as e:  # an estimate is a courtesy: never let it stop a run that may well fit
        log.info("No memory estimate for sampling (%s: %s); memory not checked.", type(e).__name__, e)
        return
    if free is None or need is None:
        log.debug("Memory not checked: %s.", "no estimate from XLA" if need is None else f"{where} unknown")
        return
    budget = MEMORY_SHARE * free
    if need * per <= budget:
        return
    # The largest batch that fits: linear from the first estimate, then a line through two estimates.
    points = [(plan.batch, need * per)]
    best = 0
    for _ in range(4):
        if len(points) == 1:
            b = int(plan.batch * budget / points[0][1])
        else:
            (b0, m0), (b1, m1) = points[-2], points[-1]
            slope = (m0 - m1) / (b0 - b1) if b0 != b1 else m1 / max(b1, 1)
            b = int(b1 + (budget - m1) / slope) if slope > 0 else b1
        b = min(b, plan.batch - n_dev) // n_dev * n_dev
        if b < n_dev or any(b == p[0] for p in points):
            break
        m = batch_memory_bytes(sampler, b, chunk_steps, mesh, unroll_steps)
        if m is None:
            break
        points.append((b, m * per))
        if m * per <= budget:
            best = max(best, b)
            if budget - m * per < 0.05 * budget:
                break
    s_text = f"{plan.batch} chains at once (min(sample.batch_size, sample.n), rounded to whole chains per device)"
    head = (f"Sampling {s_text} needs about {need * per / 1e9:.1f} GB of {where} (XLA's estimate for one compiled "
            f"chunk of the chains), but {free / 1e9:.1f} GB are free. Nothing was written.")
    if best:
        raise ConfigError(f"{head} Lower --config.sample.batch_size to {best} or less; sample.n can stay, the "
                          "chains then run in more batches.")
    raise ConfigError(f"{head} Even {n_dev} chain(s) would not fit: sample with a smaller model, or on a machine "
                      "with more memory.")


def sample_to_workdir(cfg: ml_collections.ConfigDict, sampler: Sampler, source: Any,
                      workdir: str | pathlib.Path, *, progress: bool = True, mesh=None,
                      out_dir: str | pathlib.Path | None = None) -> dict[str, Any]:
    """Draws ``sample.n`` samples of ``sampler`` into :func:`samples_dir` (or ``out_dir``; see the
    module docstring), resuming an interrupted run; returns the summary written to ``summary.json``.
    A batch of chains too large for the memory is a ConfigError before anything is written."""
    s = cfg.sample
    out_dir = samples_dir(cfg, workdir) if out_dir is None else pathlib.Path(out_dir)
    writer = jax.process_index() == 0
    mesh = mesh or parallel.make_mesh()
    shape = tuple(source.shape)
    plan = make_plan(s.batch_size, s.n, mesh.devices.size, sampler.steps)
    if s.merge_max_gb < 0:
        raise ConfigError(f"sample.merge_max_gb must be >= 0, got {s.merge_max_gb}.")
    check_memory(sampler, plan, s.chunk_steps, mesh, unroll_steps=s.unroll_steps)
    store = ShardStore(out_dir / "shards", _manifest(cfg, sampler, plan, shape), resume=s.resume, writer=writer)
    reused = sum(store.has_shard(b) for b in range(plan.n_batches))

    t0, ran, stats = time.perf_counter(), 0, {}
    try:
        with io.StopSignal() as stop:
            for b, images, trace in _batches(sampler, s.chunk_steps, plan, sampling_key(cfg), mesh, store,
                                             progress, stats, stop, unroll_steps=s.unroll_steps):
                store.save_shard(b, images, trace)
                ran += 1
    except KeyboardInterrupt:
        raise Interrupted(
            f"Sampling stopped after {reused + ran} of {plan.n_batches} batches; finished batches and the "
            f"chains in flight are saved in {store.directory}. Rerun the same command to resume.") from None
    except Exception as e:  # XLA's estimate was too low after all: say what to do, keep what is done
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        smaller = max(mesh.devices.size, plan.batch // 2 // mesh.devices.size * mesh.devices.size)
        raise ConfigError(
            f"Sampling ran out of memory with {plan.batch} chains at once ({str(e).splitlines()[0][:200]}). "
            f"Finished batches are kept in {store.directory}. Rerun with a smaller --config.sample.batch_size, "
            f"e.g. {smaller}.") from None
    seconds = time.perf_counter() - t0
    if not writer:
        return {}
    summary = _write_results(cfg, sampler, source, store, plan, out_dir, shape,
                             {"batches_reused": reused, "batches_run": ran, "seconds": seconds,
                              "chain_steps_run": stats["chain_steps_run"], "n_devices": mesh.devices.size})
    store.discard_stale()  # only now: the new shards and results are on disk
    return summary


def reproducibility_note(cfg: ml_collections.ConfigDict) -> str:
    """What the log says after sampling: the samples are reproducible, and how to draw new ones."""
    sample_seed = cfg.sample.get("seed")
    if sample_seed is None:
        return ("These samples are reproducible: the same checkpoint, settings and seed give the same images. To "
                "draw new ones without overwriting these, pass --config.sample.seed=N (any N >= 0); they go to "
                "samples_seedN/ beside samples/.")
    return (f"These samples are reproducible: the same checkpoint, settings and sample.seed={sample_seed} give the "
            "same images. Another --config.sample.seed draws new ones into its own folder.")


def _write_results(cfg: ml_collections.ConfigDict, sampler: Sampler, source: Any, store: ShardStore,
                   plan: SamplePlan, out_dir: pathlib.Path, shape: tuple[int, ...], run: dict[str, Any]) -> dict:
    """samples.npz (when it fits), the pictures and summary.json from the finished shards."""
    s = cfg.sample
    merge = plan.n * math.prod(shape) * 4 <= s.merge_max_gb * 1e9
    merged, grid, lo, hi, energy_trace = [], [], math.inf, -math.inf, None
    for b in range(plan.n_batches):
        shard = store.load_shard(b)
        images = shard["images"][: plan.count(b)]
        lo, hi = min(lo, float(images.min())), max(hi, float(images.max()))
        if energy_trace is None:
            energy_trace = shard["energy"]
        if len(grid) < visualize.GRID_IMAGES:
            grid.extend(images[: visualize.GRID_IMAGES - len(grid)])
        if merge:
            merged.append(images)
    files = []
    x = np.concatenate(merged) if merge else None
    if merge:
        io.savez_atomic(out_dir / "samples.npz", images=x)
        files.append("samples.npz")
    else:
        (out_dir / "samples.npz").unlink(missing_ok=True)  # a stale file from a smaller run would mislead
    temps = np.concatenate([np.asarray(st.temperatures) for st in sampler.stages])
    visualize.save_energy_trace(temps, energy_trace, out_dir / "energy_trace.png",
                                labels=("mean energy of the chains (batch 0)",),
                                stages=[(st.name, len(st.temperatures)) for st in sampler.stages])
    files.append("energy_trace.png")
    grid = np.stack(grid)
    dataset = data.get(cfg.data.name)
    if not dataset.points:
        visualize.save_image_grid(grid, out_dir / "grid.png", title=f"{cfg.method.name} samples ({cfg.data.name})")
        files.append("grid.png")
    extra: dict[str, Any] = {}
    if dataset.report is not None:  # what only this dataset shows (a toy's learned density)
        extra = dict(dataset.report(_sample_report(cfg, sampler, source, x if merge else grid, out_dir)))
        files.extend(extra.pop("files", []))
    if sampler.pictures is not None:  # the method's own pictures (a key no batch of chains uses)
        files.extend(sampler.pictures(out_dir, jax.random.fold_in(sampling_key(cfg), 2**32 - 1)))

    mem, mem_note = peak_device_memory()
    img_steps = run["chain_steps_run"] * plan.batch
    seconds = run["seconds"]
    summary = {
        "n": plan.n, "shape": list(shape), "method": cfg.method.name, "min": lo, "max": hi, "files": files,
        "shards": [store.shard_path(b).relative_to(out_dir).as_posix() for b in range(plan.n_batches)],
        "merged": merge, "batch_size": plan.batch, "n_batches": plan.n_batches, "chain_steps": plan.steps,
        "batches_reused": run["batches_reused"], "batches_run": run["batches_run"], "seconds": seconds,
        "img_steps_per_s": img_steps / seconds if img_steps and seconds > 0 else None,
        "seed": cfg.seed, "sample_seed": cfg.sample.get("seed"),
        "device": jax.devices()[0].device_kind, "n_devices": run["n_devices"],
        "peak_memory_bytes": mem, "peak_memory_note": mem_note,
    }
    summary.update(extra)
    quality = judge_quality(cfg, x if merge else grid)
    if quality is not None:
        summary["quality"] = quality
        log.info("The judge (%s) recognises %.1f%% of the samples with p >= %.2f; label entropy %.3f of the maximum.",
                 quality["classifier"], 100 * quality["confident_share"], quality["threshold"],
                 quality["label_entropy"])
    io.write_json_atomic(out_dir / "summary.json", summary)
    log.info("Wrote %d samples to %s (%d batches run, %d reused). %s", plan.n, out_dir, run["batches_run"],
             run["batches_reused"], reproducibility_note(cfg))
    return summary


def judge_quality(cfg: ml_collections.ConfigDict, images: np.ndarray) -> dict | None:
    """The data's judge (``ebmjax.data.judges``) on ``images``: share recognised with p >= 0.9,
    label entropy and class counts (``ebmjax.evaluation.quality.summary``); None when the dataset has
    no judge."""
    from ebmjax.evaluation import quality

    judge = data.judge_for(cfg.data, cfg.eval.classifier_seed, tuple(images.shape[1:]))
    if judge is None or images.shape[-1] != judge.shape[-1]:
        return None
    return quality.summary(judge.probabilities(images), classifier=judge.describe())


def at_least_temperature(sampler: Sampler, floor: float = 1.0) -> Sampler:
    """The same chains with every temperature raised to at least ``floor`` (no cooling below it) and
    no finishing map (e.g. no denoising jump): samples of the density exp(-E / floor) itself."""
    stages = tuple(s._replace(temperatures=np.maximum(np.asarray(s.temperatures), floor)) for s in sampler.stages)
    return sampler._replace(stages=stages, finish=jax.tree_util.Partial(samplers.identity),
                            settings={**sampler.settings, "temperature_floor": floor, "finish": "none"})


def _sample_report(cfg: ml_collections.ConfigDict, sampler: Sampler, source: Any, samples: np.ndarray,
                   out_dir: pathlib.Path) -> data.SampleReport:
    """What a dataset's own report gets after sampling (``ebmjax.data.SampleReport``)."""
    final = sampler.stages[-1].energy

    def energy_fn(x: np.ndarray) -> np.ndarray:
        return np.asarray(_apply(final, jnp.asarray(x)))

    def draw_warm(n: int) -> np.ndarray:
        x, _ = draw(at_least_temperature(sampler), n, jax.random.fold_in(sampling_key(cfg), 99),
                    batch_size=cfg.sample.batch_size, chunk_steps=cfg.sample.chunk_steps, progress=False,
                    unroll_steps=cfg.sample.unroll_steps)
        return x

    return data.SampleReport(samples=samples, out_dir=out_dir, energy_fn=energy_fn, draw_warm=draw_warm,
                             source=source, title=f"{cfg.data.name}: {cfg.method.name}")
