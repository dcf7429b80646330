"""Devices and processes: the mesh, shardings, per-process data, and ``jax.distributed`` start-up.

One code path runs on one CPU, on many GPUs and on TPU pods. The batch is split over a 1-D mesh
axis ``data`` and parameters are replicated; ``jit`` over that mesh keeps the role of ``pmap``
(every accelerator works on its slice of the batch, gradients are averaged) and XLA inserts the
all-reduce, so layer-1 code stays free of collectives.

With several processes (multi-host), each process feeds only the rows of the global batch that its
own devices hold (:func:`local_rows`, :func:`global_batch`); values that every process computes
identically (initial noise, a replicated state) go through :func:`put_batch` and
:func:`put_replicated`; :func:`to_host` gathers a sharded result back to every process.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ebmjax.errors import ConfigError

log = logging.getLogger(__name__)

DATA_AXIS = "data"
INITIALIZE_CHOICES = ("auto", "yes", "no")


# ----------------------------------------------------------------------------------------------
# jax.distributed start-up.


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"Environment variable {name}={value!r} must be an integer.") from None


def _on_tpu_vm() -> bool:
    """A Cloud TPU VM: libtpu installed and TPU chips visible (checked without starting JAX's backend)."""
    return (importlib.util.find_spec("libtpu") is not None
            and bool(glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*")))


def detect_cluster(environ: Mapping[str, str] | None = None) -> str | None:
    """Names the launcher that says this process is one of several, or None.

    "env": ``JAX_COORDINATOR_ADDRESS`` is set (launch/local_multiprocess.sh, or by hand);
    "slurm": inside an ``srun`` step of more than one task (the variables JAX's SLURM detection
    reads); "ompi": ``mpirun`` with more than one rank;
    "tpu": a Cloud TPU VM (a pod's workers find each other through the TPU metadata).
    """
    env = os.environ if environ is None else environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "env"
    slurm_vars = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    # The tasks of this job step (srun) count, not those of the allocation.
    tasks = _env_int(env, "SLURM_STEP_NUM_TASKS") or _env_int(env, "SLURM_NTASKS") or 1
    if all(v in env for v in slurm_vars) and tasks > 1:
        return "slurm"
    if (_env_int(env, "OMPI_COMM_WORLD_SIZE") or 1) > 1:
        return "ompi"
    if environ is None and _on_tpu_vm():
        return "tpu"
    return None


def distributed_args(dist_cfg: Any, environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Keyword arguments for ``jax.distributed.initialize`` from ``cfg.dist``, or None to stay single-process.

    Fields (each None falls back to the environment, then to JAX's own cluster detection):
    ``initialize`` ("auto" | "yes" | "no"), ``coordinator_address`` ($JAX_COORDINATOR_ADDRESS),
    ``num_processes`` ($JAX_NUM_PROCESSES), ``process_id`` ($JAX_PROCESS_ID). "auto" starts the
    distributed runtime when the config or a launcher (see :func:`detect_cluster`) says there are
    several processes.
    """
    env = os.environ if environ is None else environ
    mode = dist_cfg.initialize
    if mode not in INITIALIZE_CHOICES:
        raise ConfigError(f"dist.initialize must be one of {', '.join(INITIALIZE_CHOICES)}, got {mode!r}.")
    if mode == "no":
        return None
    address = dist_cfg.coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    num = dist_cfg.num_processes if dist_cfg.num_processes is not None else _env_int(env, "JAX_NUM_PROCESSES")
    pid = dist_cfg.process_id if dist_cfg.process_id is not None else _env_int(env, "JAX_PROCESS_ID")
    if num is not None and num < 1:
        raise ConfigError(f"dist.num_processes must be >= 1, got {num}.")
    if num is not None and pid is not None and not 0 <= pid < num:
        raise ConfigError(f"dist.process_id must lie in [0, {num}) for {num} processes, got {pid}.")
    if mode == "auto":
        explicit = address is not None or (num is not None and num > 1)
        if num == 1 or not (explicit or detect_cluster(environ) is not None):
            return None
    if address is not None and (num is None or pid is None):
        raise ConfigError(
            f"dist.coordinator_address is {address!r} but the number of processes or this process's id "
            "is unknown; set --config.dist.num_processes and --config.dist.process_id (or $JAX_NUM_PROCESSES "
            "and $JAX_PROCESS_ID).")
    args = {"coordinator_address": address, "num_processes": num, "process_id": pid}
    return {k: v for k, v in args.items() if v is not None}


def initialize_distributed(dist_cfg: Any | None) -> bool:
    """Starts ``jax.distributed`` when ``cfg.dist`` asks for it (see :func:`distributed_args`).

    Must run before anything touches devices (``jax.devices()``, any array op). Returns whether
    the runtime is up (True also when an earlier call started it).
    """
    if dist_cfg is None:
        return False
    if jax.distributed.is_initialized():
        return True
    args = distributed_args(dist_cfg)
    if args is None:
        return False
    try:
        jax.distributed.initialize(**args)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ConfigError(
            f"Could not start jax.distributed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "Check dist.coordinator_address (host:port of process 0, reachable from every process), "
            "dist.num_processes and dist.process_id, or set --config.dist.initialize=no for a "
            "single-process run.") from None
    log.info("jax.distributed: process %d of %d, %d local and %d global devices.",
             jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())
    return True


def is_main_process() -> bool:
    """True in the process that writes logs, metrics and pictures (process 0)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier of this name (no-op with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


# ----------------------------------------------------------------------------------------------
# CPU cores as devices.

CPU_FLAG = "xla_force_host_platform_device_count"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_device_count(setting: Any, rows: int | None, cores: int) -> int:
    """How many XLA CPU devices ``dist.cpu_devices = setting`` asks for on ``cores`` cores.

    ``"auto"``: one device per core, reduced to the largest count that divides ``rows`` (the training
    batch and any carried buffer are split evenly over the devices, ``ebmjax.methods.split_rows``;
    None: nothing to divide). An integer >= 1: that many. The setting may be text ("auto", "4"), as
    config overrides give it, or an int.

    XLA runs one device's operations one after another, so a batch split over one device per core
    runs the many small operations of a small network side by side instead of spreading every tiny
    matrix product over all cores: on 2 cores the digits demo's MDSM training step ran 1.3x and its
    Langevin 1.2x as fast. It is not a general win: CIFAR's Res18 MDSM training ran 0.67x as fast
    and the digits maximum-likelihood training 0.65x (measured with ``python -m ebmjax.bench
    --config.dist.cpu_devices=N``), hence the default of one device and the opt-in per config.
    """
    text = str(setting).strip()
    if text == "auto":
        if rows is None or rows < 1:
            return cores
        return max(d for d in range(1, max(cores, 1) + 1) if rows % d == 0)
    if isinstance(setting, bool) or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"dist.cpu_devices must be auto or a whole number >= 1 (1: one device using every core), "
                          f"got {setting!r}.")
    return int(text)


def use_cpu_cores(setting: Any, rows: int | None = None,
                  environ: Mapping[str, str] | None = None) -> int | None:
    """Makes JAX's CPU backend start with :func:`cpu_device_count` devices (``jax_num_cpu_devices``),
    so that :func:`make_mesh` spreads batches over the cores. Call it right after ``import jax``,
    before any array exists; GPU and TPU backends are not affected.

    Returns the count set, or None where nothing was changed: the backends had already started
    (the count stays what it was), or ``$XLA_FLAGS`` sets ``--xla_force_host_platform_device_count``
    (the user's choice wins). A bad ``setting`` raises ConfigError in every case.
    """
    environ = os.environ if environ is None else environ
    n = cpu_device_count(setting, rows, usable_cores())
    if CPU_FLAG in environ.get("XLA_FLAGS", ""):
        return None
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # backends already started: keep their devices
        log.debug("JAX's backends are already running; dist.cpu_devices=%r not applied.", setting)
        return None
    return n


# ----------------------------------------------------------------------------------------------
# Mesh and shardings.


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh, axis ``data``, over all (or the given) devices.

    Devices are ordered by (process, id), so the rows of a batch that live on one process's devices
    form one contiguous block and each process can load just that block.
    """
    devices = jax.devices() if devices is None else list(devices)
    devices = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``; other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, P())


def check_divisible(batch: int, mesh: Mesh, what: str) -> None:
    """Raises a ConfigError when a global batch cannot be split evenly over the mesh."""
    n = mesh.devices.size
    if batch % n:
        raise ConfigError(
            f"{what} = {batch} is not divisible by the {n} devices in use; "
            f"choose a multiple of {n} (e.g. {max(n, batch // n * n)})."
        )


# ----------------------------------------------------------------------------------------------
# Moving data between processes and devices.


def local_rows(mesh: Mesh, global_size: int) -> slice:
    """The rows of a global batch of ``global_size`` that this process's devices hold (contiguous)."""
    check_divisible(global_size, mesh, "the batch size")
    index_map = batch_sharding(mesh).addressable_devices_indices_map((global_size,))
    starts = sorted({(idx[0].start or 0) for idx in index_map.values()})
    per_device = global_size // mesh.devices.size
    lo, hi = starts[0], starts[-1] + per_device
    if hi - lo != per_device * len(starts):
        raise RuntimeError(f"This process's devices hold non-contiguous rows {starts} of the batch; "
                           "build the mesh with ebmjax.parallel.make_mesh.")
    return slice(lo, hi)


def global_batch(local: np.ndarray, mesh: Mesh, global_size: int) -> jax.Array:
    """Assembles the global batch (``global_size`` rows, sharded on ``data``) from this process's rows
    ``local`` (the block :func:`local_rows` names); no process ever holds the whole batch."""
    return jax.make_array_from_process_local_data(
        batch_sharding(mesh), np.asarray(local), (global_size, *np.shape(local)[1:]))


def put_batch(x: Any, mesh: Mesh) -> jax.Array:
    """Places a host batch that every process holds in full (same values) on the mesh, split along
    its first axis; each process transfers only its own rows."""
    if jax.process_count() == 1:  # every device is local: one transfer (device to device if x is on one)
        check_divisible(len(x), mesh, "the batch size")
        return jax.device_put(x, batch_sharding(mesh))
    x = np.asarray(x)
    return global_batch(x[local_rows(mesh, len(x))], mesh, len(x))


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    """Copies a PyTree of host values (identical in every process) to every device of the mesh."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(leaf):
        a = np.asarray(leaf)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    return jax.tree.map(put, tree)


def to_host(x: jax.Array) -> np.ndarray:
    """The whole value of ``x`` as a numpy array in every process (an all-gather when ``x`` is spread
    over several processes)."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def process_votes(flag: bool, mesh: Mesh) -> jax.Array:
    """A global bool array (one entry per device) holding each process's ``flag`` on its devices.

    Passing it into a jitted step and reducing it there (``jnp.any``) lets every process learn, in
    the same step, that one of them saw a signal, at no extra synchronisation.
    """
    rows = local_rows(mesh, mesh.devices.size)
    return global_batch(np.full((rows.stop - rows.start,), bool(flag)), mesh, mesh.devices.size)


def fingerprint(tree: Any) -> str:
    """A hash (hex, 32 chars) of a PyTree of arrays: key paths, dtypes, shapes and this process's
    copy of the bytes (a replicated array's first local shard holds it whole). Equal trees give
    equal fingerprints in every process; shards, caches and replicas are checked with it."""
    h = hashlib.blake2b(digest_size=16)
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if callable(leaf):  # a function among the leaves counts by its name, not its address
            h.update(f"{jax.tree_util.keystr(path)}{getattr(leaf, '__qualname__', type(leaf).__name__)}".encode())
            continue
        arr = np.asarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
        h.update(jax.tree_util.keystr(path).encode())
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def check_replicas_agree(tree: Any, what: str = "parameters") -> str:
    """Checks that every process holds the same copy of a replicated PyTree; returns its fingerprint.

    Raises RuntimeError (a bug, not a user error) naming the processes that disagree.
    """
    mine = fingerprint(tree)
    if jax.process_count() == 1:
        return mine
    digest = np.frombuffer(bytes.fromhex(mine), dtype=np.uint32)
    every = np.asarray(multihost_utils.process_allgather(digest))
    differ = [p for p in range(len(every)) if not np.array_equal(every[p], every[0])]
    if differ:
        raise RuntimeError(f"The {what} differ between process 0 and processes {differ}.")
    log.info("All %d processes hold identical %s (fingerprint %s).", jax.process_count(), what, mine)
    return mine


def compiled_memory_bytes(compiled: Any) -> int | None:
    """XLA's estimate of the device memory one call of a compiled function needs, per device:
    arguments + outputs + temporaries - donated (aliased) buffers; None if not available."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)
