"""The chain engine: a method's sampler run over many chains, in batches sharded over the devices.

Layer 3. A method describes its sampler as a :class:`~ebmjax.methods.base.Sampler` (a start, one or
more chains, a finishing map); everything that runs chains in bulk goes through this module:
``--mode sample`` (written to disk by :mod:`ebmjax.apps.sample`), the checkpoint scores of training
and the evaluation (:func:`draw`), and restoration and translation (:func:`over_batches`).

- :func:`make_plan`: ``n`` chains as batches of whole chains per device.
- :func:`run_batches`: the sampler's batches one at a time (only the batch in flight is in memory),
  ``chunk_steps`` steps per compiled call, with a progress bar; it saves and resumes the chains in
  flight through a store (``ebmjax.apps.sample.ShardStore``) when given one.
- :func:`draw`: ``n`` samples in memory, nothing written.
- :func:`over_batches`: any per-batch chain function (inpainting, denoising, translation) over the
  rows of its inputs, with the same batching, keys and progress bar.
- :func:`check_memory`: before anything runs, XLA's estimate for one compiled batch against the free
  memory; a batch that cannot fit is a ConfigError naming the largest batch that does.

Keys: batch b's chains start from ``fold_in(key, b)`` and step i of a chain uses
``fold_in(chain_key, i)`` however it is chunked, so a resumed or re-chunked run equals an unbroken one.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ebmjax import io, memory, parallel, samplers
from ebmjax.errors import ConfigError

if TYPE_CHECKING:  # the methods import restoration, which runs its chains here
    from ebmjax.methods.base import Sampler

log = logging.getLogger(__name__)

# The share of the free memory that one batch of chains may take (XLA's estimate is not exact, and the
# host needs some memory of its own).
MEMORY_SHARE = 0.9


def mean_energy(state: Any, info: Any) -> jax.Array:
    """What the chains record at every step: the mean energy over the batch (a scalar).

    Module level (not a lambda) so that jitted chunks, keyed on it, compile once per process.
    """
    del state
    return jnp.mean(info.energy)



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


def make_plan(batch_size: int, n: int, n_devices: int, steps: int, what: str = "sample") -> SamplePlan:
    """Batches of ``batch_size`` chains (at most n), rounded up to whole chains per device. ``what``
    names the work in the error for n < 1 (the config group whose ``n`` it is)."""
    if n < 1:
        raise ConfigError(f"{what}.n must be >= 1 to run chains, got {n}.")
    batch = min(batch_size, n)
    batch = -(-batch // n_devices) * n_devices
    return SamplePlan(n, batch, -(-n // batch), int(steps))


def sampler_fingerprint(sampler: Sampler) -> str:
    """A hash of every array the sampler closes over (its energies' parameters, ...)."""
    return parallel.fingerprint([sampler.init, [(s.energy, s.enter) for s in sampler.stages], sampler.finish])



@dataclasses.dataclass
class _Progress:
    """A progress bar over every step of every batch, with an ETA from this session's rate."""

    total: int
    initial: int
    enabled: bool
    desc: str = "sample"

    def __post_init__(self):
        self.bar = tqdm(total=self.total, initial=self.initial, desc=self.desc, unit="step",
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
def _enter(fn: jax.tree_util.Partial, x: jax.Array, key: jax.Array) -> jax.Array:
    return fn(x, key)


@functools.lru_cache(maxsize=None)
def _start(batch: int, sharding: Any) -> Callable:
    """The jitted start of ``batch`` chains placed with ``sharding``: one per batch size and
    sharding, compiled once per start function (a Partial) and shapes."""
    return jax.jit(lambda f, k: f(k, batch), out_shardings=sharding)


def _stage_keys(bkey: jax.Array, i: int) -> tuple[jax.Array, jax.Array]:
    """(chain key, enter key) of stage i of a batch; stage 0's chain key is fold_in(bkey, 1)."""
    if i == 0:
        return jax.random.fold_in(bkey, 1), jax.random.fold_in(bkey, 2)
    return jax.random.fold_in(bkey, 10 + i), jax.random.fold_in(bkey, 20 + i)


def run_batches(sampler: Sampler, chunk_steps: int, plan: SamplePlan, key: jax.Array, mesh,
             store: Any, progress: bool, stats: dict[str, int] | None = None,
             stop: io.StopSignal | None = None, unroll_steps: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Runs the batches that ``store`` does not already hold; yields (b, samples (batch, ...),
    mean-energy trace (steps,)) as each finishes. Only the batch in flight is in memory.
    ``stats["chain_steps_run"]`` counts the steps (of a whole batch) this call ran. A signal seen by
    ``stop`` interrupts after the next chunk, once the chains in flight are saved."""
    sharding = parallel.batch_sharding(mesh)
    # The start is an argument, not a constant: a replay buffer it draws from is not compiled in.
    init_fn, init_jit = samplers.as_partial(sampler.init), _start(plan.batch, sharding)

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
            x = samplers.apply(finish, x)
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
    for b, images, tr in run_batches(sampler, chunk_steps, plan, key, mesh, None, progress,
                                  unroll_steps=unroll_steps):
        out.append(images[: plan.count(b)])
        trace = tr if trace is None else trace
    return np.concatenate(out), trace



def at_least_temperature(sampler: Sampler, floor: float = 1.0) -> Sampler:
    """The same chains with every temperature raised to at least ``floor`` (no cooling below it) and
    no finishing map (e.g. no denoising jump): samples of the density exp(-E / floor) itself."""
    stages = tuple(s._replace(temperatures=np.maximum(np.asarray(s.temperatures), floor)) for s in sampler.stages)
    return sampler._replace(stages=stages, finish=jax.tree_util.Partial(samplers.identity),
                            settings={**sampler.settings, "temperature_floor": floor, "finish": "none"})



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

    key = jax.random.key(0)
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
    estimates.append(parallel.compiled_memory_bytes(samplers.apply.lower(samplers.as_partial(sampler.finish), spec(x)).compile()))
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
    free, where = memory.available_memory_bytes(mesh) if available is None else available
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


def _pad_rows(a: np.ndarray, total: int) -> np.ndarray:
    """Pads the batch axis to ``total`` rows with copies of the last row (trimmed after)."""
    if len(a) == total:
        return a
    return np.concatenate([a, np.repeat(a[-1:], total - len(a), axis=0)])


def over_batches(run_one: Callable, inputs: Sequence[np.ndarray], key: jax.Array, *, batch_size: int,
                  mesh: Any, n_steps: int, progress: bool, desc: str, batch_axes: Sequence[int]) -> tuple:
    """Runs ``run_one(*batch_inputs, key_b, on_chunk)`` (one batch of chains) over the rows of ``inputs`` in batches
    sharded over ``mesh`` and returns its NamedTuple of outputs as numpy, with the batch axis of
    field i (``batch_axes[i]``) concatenated over batches and trimmed to the n inputs.

    Batches hold a multiple of the device count (the last one padded), so every device runs whole
    chains; batch b uses fold_in(key, b).
    """
    n = len(inputs[0])
    plan = make_plan(batch_size, n, mesh.devices.size, n_steps, what=desc)
    padded = [_pad_rows(np.asarray(a), plan.n_batches * plan.batch) for a in inputs]
    bar = _Progress(plan.n_batches * plan.steps, 0, progress, desc)
    outs = []
    try:
        for b in range(plan.n_batches):
            rows = slice(b * plan.batch, (b + 1) * plan.batch)
            args = [parallel.put_batch(np.ascontiguousarray(a[rows]), mesh) for a in padded]
            done = [0]

            def tick(steps_done: int, state: Any, trace: Any, done: list = done) -> None:
                bar.advance(steps_done - done[0])
                done[0] = steps_done

            outs.append(jax.device_get(run_one(*args, jax.random.fold_in(key, b), tick)))
    finally:
        bar.close()
    fields = []
    for i, axis in enumerate(batch_axes):
        joined = np.concatenate([np.asarray(o[i]) for o in outs], axis=axis)
        fields.append(np.take(joined, np.arange(n), axis=axis))
    return type(outs[0])(*fields)
