"""What memory the devices and the host have: free memory before a batch of chains is placed, and
the peak a run used.

Layer 2: jax and the operating system only. :func:`ebmjax.chains.check_memory` compares XLA's
estimate for a compiled batch of chains with :func:`available_memory_bytes`; the benchmark and the
sample summary report :func:`peak_device_memory`.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np


def _stats(device) -> dict | None:
    """The device's memory statistics, or None where its backend keeps none."""
    try:
        return device.memory_stats()
    except Exception:  # some backends raise instead of returning None
        return None


def peak_device_memory(devices: list | None = None) -> tuple[int | None, str]:
    """Largest ``peak_bytes_in_use`` over ``devices`` (default: this process's) since the process
    started, or None with a note where the backend keeps no statistics (CPU)."""
    devices = jax.local_devices() if devices is None else devices
    peaks = []
    for d in devices:
        stats = _stats(d)
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    if not peaks:
        return None, f"{devices[0].platform} devices report no memory statistics"
    return max(peaks), "peak_bytes_in_use of the busiest device since the process started"



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
            stats = _stats(d)
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

