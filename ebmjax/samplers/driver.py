"""One driver for every kernel: scan a kernel over a schedule of temperatures and step sizes.

``run_chain`` is pure (a ``lax.scan``) and can be used inside a user's jit. ``run_chain_chunked``
is the entry point for long chains driven from Python (the CLI): it runs jitted chunks of a fixed
number of steps, calls a callback after each (progress, saving the state), and resumes from a
saved state at any step.

Randomness: step i (counted from the start of the whole schedule) uses
``jax.random.fold_in(key, i)``, so the result does not depend on how the chain is chunked or where
it was interrupted.

``run_chain_chunked(..., unroll_steps=U)`` compiles U steps as straight-line code (no loop) and runs
a chunk as a Python loop over such pieces. XLA:CPU runs a convolution inside a loop body several
times slower than the same convolution at the top level of a program (jax-ml/jax#12868): on a CPU,
a network whose convolutions go through ``lax.conv`` (``model.conv = "xla"``) samples faster that
way. With U = 0 (the default) a chunk is one ``lax.scan``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError
from ebmjax.samplers.kernels import EnergyFn, Kernel

__all__ = ["Trace", "run_chain", "run_chain_chunked"]

RecordFn = Callable[[Any, Any], Any]


class Trace(NamedTuple):
    """What a chain recorded.

    record: pytree; every leaf has a leading axis of one entry per step, (K, ...). By default it
        is the kernel's per-step info (per-chain energy (K, B); for MALA/HMC also acceptance).
    positions: (K // record_every, B, ...) snapshots taken after steps record_every,
        2 * record_every, ... of the run, or None when record_every == 0.
    """

    record: Any
    positions: jax.Array | None


def _default_record(state: Any, info: Any) -> Any:
    del state
    return info


def _check_schedule(
    temperatures: Any, step_sizes: Any
) -> tuple[jax.Array, jax.Array]:
    """Schedules as arrays with a leading step axis K: temperatures (K,) or (K, B)."""
    t = jnp.asarray(temperatures)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.float32)
    if t.ndim not in (1, 2):
        raise ConfigError(
            "temperatures must have shape (K,) (one per step) or (K, B) (per step and chain); "
            f"got shape {t.shape}."
        )
    k = t.shape[0]
    h = jnp.asarray(step_sizes, dtype=t.dtype)
    if h.ndim == 0:
        h = jnp.broadcast_to(h, (k,))
    elif h.ndim > 2 or h.shape[0] != k:
        raise ConfigError(
            f"step_sizes must be a scalar, shape ({k},) or ({k}, B) to match temperatures of shape "
            f"{t.shape}; got shape {h.shape}."
        )
    return t, h


def _check_record_every(record_every: int) -> None:
    if isinstance(record_every, bool) or not isinstance(record_every, int) or record_every < 0:
        raise ConfigError(f"record_every must be an int >= 0 (0 = no snapshots), got {record_every!r}.")


def _scan(
    kernel: Kernel,
    energy_fn: EnergyFn,
    state: Any,
    key: jax.Array,
    temperatures: jax.Array,
    step_sizes: jax.Array,
    step_offset: Any,
    record_every: int,
    record: RecordFn,
    n_valid: jax.Array | None,
    unroll: bool = False,
) -> tuple[Any, Trace]:
    k = temperatures.shape[0]
    local = jnp.arange(k, dtype=jnp.int32)
    index = jnp.asarray(step_offset, jnp.int32) + local

    def advance(s, i, t, h):
        new_s, info = kernel.step(jax.random.fold_in(key, i), s, energy_fn, h, t)
        return new_s, record(new_s, info)

    def one_step(s, xs):
        j, i, t, h = xs
        if n_valid is None:
            return advance(s, i, t, h)
        if unroll:  # straight-line code: a select, since a cond's branches would be nested programs again
            new_s, rec = advance(s, i, t, h)
            valid = j < n_valid
            return (jax.tree.map(lambda a, b: jnp.where(valid, a, b), new_s, s),
                    jax.tree.map(lambda a: jnp.where(valid, a, jnp.zeros_like(a)), rec))
        # Padded steps past the end of the schedule leave the state untouched; lax.cond runs only
        # the branch taken, so the padding of a last, short chunk costs nothing.
        out_shape = jax.eval_shape(advance, s, i, t, h)[1]
        return jax.lax.cond(
            j < n_valid,
            lambda: advance(s, i, t, h),
            lambda: (s, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), out_shape)),
        )

    xs = (local, index, temperatures, step_sizes)
    scan = functools.partial(jax.lax.scan, unroll=True if unroll else 1)
    if record_every == 0 or record_every > k:
        state, rec = scan(one_step, state, xs)
        return state, Trace(rec, None if record_every == 0 else _empty_snapshots(state))

    n_blocks, rem = divmod(k, record_every)
    head = jax.tree.map(
        lambda a: a[: n_blocks * record_every].reshape((n_blocks, record_every) + a.shape[1:]), xs
    )

    def block(s, xs_block):
        s, rec = scan(one_step, s, xs_block)
        return s, (rec, s.position)

    state, (rec, snaps) = scan(block, state, head)
    rec = jax.tree.map(lambda a: a.reshape((n_blocks * record_every,) + a.shape[2:]), rec)
    if rem:
        tail = jax.tree.map(lambda a: a[n_blocks * record_every :], xs)
        state, rec_tail = scan(one_step, state, tail)
        rec = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), rec, rec_tail)
    return state, Trace(rec, snaps)


def _empty_snapshots(state: Any) -> jax.Array:
    p = state.position
    return jnp.zeros((0,) + p.shape, p.dtype)


def run_chain(
    kernel: Kernel,
    energy_fn: EnergyFn,
    state: Any,
    key: jax.Array,
    *,
    temperatures: Any,
    step_sizes: Any,
    record_every: int = 0,
    record: RecordFn | None = None,
    step_offset: Any = 0,
) -> tuple[Any, Trace]:
    """Run ``kernel`` for K = len(temperatures) steps; pure, usable inside jit/vmap.

    temperatures: (K,) or (K, B). step_sizes: scalar, (K,) or (K, B) (a per-chain constant step
    size is given as (K, B)). record(state, info) -> pytree is stored every step (default: the
    kernel's info, which holds the per-chain energy). record_every > 0 also stores the position
    after every record_every-th step. step_offset: global index of the first step, for the
    ``fold_in`` keys when this call continues a longer chain.
    Returns (final state, Trace).
    """
    t, h = _check_schedule(temperatures, step_sizes)
    _check_record_every(record_every)
    return _scan(
        kernel, energy_fn, state, key, t, h, step_offset, record_every,
        record or _default_record, None,
    )


@functools.partial(jax.jit, static_argnames=("kernel", "static_energy", "record_every", "record", "unroll"))
def _run_chunk(
    kernel: Kernel,
    static_energy: EnergyFn | None,
    dynamic_energy: Any,
    state: Any,
    key: jax.Array,
    temperatures: jax.Array,
    step_sizes: jax.Array,
    step_offset: jax.Array,
    n_valid: jax.Array,
    record_every: int,
    record: RecordFn,
    unroll: bool = False,
) -> tuple[Any, Trace]:
    # jit's cache is keyed on the static arguments and the shapes of the rest: one compilation per
    # (kernel, energy, record, shapes), whatever the schedule values, offsets or chunk lengths.
    energy_fn = static_energy if static_energy is not None else dynamic_energy
    return _scan(
        kernel, energy_fn, state, key, temperatures, step_sizes, step_offset, record_every,
        record, n_valid, unroll,
    )


def check_unroll(chunk_size: int, unroll_steps: int, record_every: int = 0) -> int:
    """The steps of one compiled piece of a chunk: ``unroll_steps`` (straight-line code), or the
    whole chunk (one loop) when it is 0. ConfigError when the pieces cannot tile the chunk."""
    if isinstance(unroll_steps, bool) or not isinstance(unroll_steps, int) or unroll_steps < 0:
        raise ConfigError(f"unroll_steps must be an int >= 0 (0: no unrolling), got {unroll_steps!r}.")
    if unroll_steps == 0:
        return chunk_size
    if chunk_size % unroll_steps:
        raise ConfigError(f"The chunk of {chunk_size} steps is run in unrolled pieces of {unroll_steps} steps, so "
                          f"unroll_steps must divide it: e.g. sample.chunk_steps={unroll_steps * max(1, chunk_size // unroll_steps)} "
                          f"or sample.unroll_steps={_largest_divisor(chunk_size, unroll_steps)}.")
    if record_every and unroll_steps % record_every:
        raise ConfigError(f"record_every={record_every} must divide unroll_steps={unroll_steps}.")
    return unroll_steps


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def lower_chunk(kernel: Kernel, energy_fn: EnergyFn, state: Any, key: jax.Array, temperatures: jax.Array,
                step_sizes: jax.Array, *, chunk_size: int, unroll_steps: int = 0,
                record: RecordFn | None = None) -> Any:
    """The lowered program that ``run_chain_chunked`` compiles for these arguments (one piece of
    ``unroll_steps`` steps, or a chunk of ``chunk_size``), for memory estimates and benchmarks;
    arguments may be ``jax.ShapeDtypeStruct``. ``energy_fn`` must be a ``jax.tree_util.Partial``."""
    piece = check_unroll(chunk_size, unroll_steps)
    t, h = _check_schedule(temperatures, step_sizes)
    n = min(piece, t.shape[0])
    t, h = _pad(t, piece)[:piece], _pad(h, piece)[:piece]
    return _run_chunk.lower(kernel, None, energy_fn, state, key, t, h, jnp.asarray(0, jnp.int32),
                            jnp.asarray(n, jnp.int32), 0, record or _default_record, unroll_steps > 0)


def _pad(a: jax.Array, length: int) -> jax.Array:
    if a.shape[0] >= length:
        return a
    fill = jnp.broadcast_to(a[-1:], (length - a.shape[0],) + a.shape[1:])
    return jnp.concatenate([a, fill])


def run_chain_chunked(
    kernel: Kernel,
    energy_fn: EnergyFn,
    state: Any,
    key: jax.Array,
    *,
    temperatures: Any,
    step_sizes: Any,
    chunk_size: int,
    start_step: int = 0,
    on_chunk: Callable[[int, Any, Trace], None] | None = None,
    record_every: int = 0,
    record: RecordFn | None = None,
    unroll_steps: int = 0,
) -> tuple[Any, Trace]:
    """Run steps start_step..K-1 of the schedule as a Python loop over jitted chunks.

    Same arguments and result as ``run_chain`` (the trace covers the steps run by this call).
    ``state`` is the state after ``start_step`` steps (the initial state when start_step == 0),
    and ``key`` the key of the whole chain: a resumed chain equals an uninterrupted one exactly.
    After each chunk, ``on_chunk(steps_done, state, chunk_trace)`` is called with the global number
    of steps done so far (saving ``state`` with it is enough to resume).

    Every chunk has ``chunk_size`` steps (a short last chunk is padded with skipped steps), so
    the chunk is compiled once per kernel, energy and shapes. With ``unroll_steps`` U > 0 (it must
    divide chunk_size) a chunk runs as chunk_size / U calls of one program of U unrolled steps (see
    the module docstring); the result is the same. ``energy_fn`` is a static argument;
    pass a ``jax.tree_util.Partial(apply, params)`` to keep large parameters as arguments rather
    than compile-time constants. Build the kernel once and reuse it.
    """
    t, h = _check_schedule(temperatures, step_sizes)
    _check_record_every(record_every)
    k = t.shape[0]
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be an int >= 1, got {chunk_size!r}.")
    if isinstance(start_step, bool) or not isinstance(start_step, int) or not 0 <= start_step <= k:
        raise ConfigError(
            f"start_step must be an int in [0, {k}] for a {k}-step schedule, got {start_step!r}."
        )
    if record_every and (chunk_size % record_every or start_step % record_every):
        raise ConfigError(
            f"record_every={record_every} must divide chunk_size={chunk_size} and "
            f"start_step={start_step}, so snapshots fall on the same steps however the chain is chunked."
        )
    if isinstance(energy_fn, jax.tree_util.Partial):
        static_energy, dynamic_energy = None, energy_fn
    else:
        static_energy, dynamic_energy = energy_fn, None
    record = record or _default_record
    piece = check_unroll(chunk_size, unroll_steps, record_every)
    n_chunks = -(-(k - start_step) // chunk_size)
    t = _pad(t, start_step + n_chunks * chunk_size)
    h = _pad(h, start_step + n_chunks * chunk_size)

    records, snaps = [], []
    for c in range(n_chunks):
        lo = start_step + c * chunk_size
        n = min(chunk_size, k - lo)
        parts = []
        for p_lo in range(lo, lo + n, piece):
            p_n = min(piece, lo + n - p_lo)
            state, part = _run_chunk(
                kernel, static_energy, dynamic_energy, state, key,
                t[p_lo : p_lo + piece], h[p_lo : p_lo + piece],
                jnp.asarray(p_lo, jnp.int32), jnp.asarray(p_n, jnp.int32), record_every, record,
                unroll_steps > 0,
            )
            parts.append(Trace(
                jax.tree.map(lambda a, p_n=p_n: a[:p_n], part.record),
                None if part.positions is None else part.positions[: p_n // record_every],
            ))
        tr = parts[0] if len(parts) == 1 else Trace(
            jax.tree.map(lambda *a: jnp.concatenate(a), *[q.record for q in parts]),
            None if record_every == 0 else jnp.concatenate([q.positions for q in parts]),
        )
        records.append(tr.record)
        snaps.append(tr.positions)
        if on_chunk is not None:
            # Wait for the chunk so a progress bar shows real progress and a saved state is final.
            jax.block_until_ready(state)
            on_chunk(lo + n, state, tr)

    if not records:
        return state, _empty_trace(kernel, energy_fn, state, key, t, h, record_every, record)
    record_out = jax.tree.map(lambda *a: jnp.concatenate(a), *records)
    positions = None if record_every == 0 else jnp.concatenate(snaps)
    return state, Trace(record_out, positions)


def _empty_trace(
    kernel: Kernel,
    energy_fn: EnergyFn,
    state: Any,
    key: jax.Array,
    t: jax.Array,
    h: jax.Array,
    record_every: int,
    record: RecordFn,
) -> Trace:
    """The trace of zero steps (resuming a finished chain), with the usual structure."""
    _, shape = jax.eval_shape(
        lambda s: _scan(kernel, energy_fn, s, key, t[:1], h[:1], 0, 0, record, None), state
    )
    rec = jax.tree.map(lambda a: jnp.zeros((0,) + a.shape[1:], a.dtype), shape.record)
    return Trace(rec, None if record_every == 0 else _empty_snapshots(state))
