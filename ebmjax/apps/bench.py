"""Benchmarks: ``python -m ebmjax.bench --config configs/<name>.py [--what train,langevin,precision]``.

Prints one JSON line per measurement on stdout (logs go to stderr):

- ``train``: the method's training step (MDSM's double back-propagation, a maximum-likelihood step
  with its chains, ...) and its optimiser update at the config's batch, ``train.steps_per_call``
  steps per compiled call, state donated. Reports ``train_img_per_s``.
- ``langevin``: the steps of the method's own sampler (its last stage: MDSM's annealed Langevin, a
  maximum-likelihood chain, multigrid's finest grid, CF-EBM's last stage) through the same chunked
  driver that ``--mode sample`` uses, at ``sample.batch_size`` chains. Reports
  ``langevin_img_steps_per_s``.
- ``precision``: relative error of bfloat16 against float32 compute for the config's network:
  energies, scores dE/dx, the MDSM loss and its parameter gradient.

Every timing record carries a FLOP count (for MDSM's ResNet the analytic one, :func:`forward_flops`;
for the Langevin steps of other methods XLA's cost analysis of one compiled step; none for other
methods' training steps, whose chains are loops that XLA's count takes once), the achieved TFLOP/s, the utilisation against the device's published dense peak (null where the peak is
unknown, e.g. CPUs), the peak device memory from ``device.memory_stats()`` (null on CPU) and XLA's
own memory estimate for the compiled function (``--compile-only`` reports that estimate without
running anything: how much a batch would need, on a machine too slow to run it). Inputs are
synthetic images of the dataset's shape: the cost of a step does not depend on pixel values, and the
host data pipeline is not measured.

This is a benchmark, not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ebmjax.errors import ConfigError, DataError, EbmjaxError
from ebmjax.models.conv import Conv
from ebmjax.models.torch_twin import TORCH_TWINS, torch_twin
from ebmjax.models.unet import UpConcatConv
from ebmjax.parallel import compiled_memory_bytes, usable_cores

log = logging.getLogger(__name__)

WHATS = ("train", "langevin", "precision")
DTYPES = ("float32", "bfloat16")

# A Langevin step is a forward pass and its input gradient; the input gradient of each conv or
# dense layer is one transposed product of the same size as the forward one.
LANGEVIN_FLOPS_PER_FORWARD = 2
# MDSM training differentiates that (forward + input gradient) graph again with respect to the
# parameters: every product in it gets a gradient for each of its two operands, so 2 x 2 more.
# (XLA's cost analysis agrees within a few percent; see tests/test_bench.py.)
TRAIN_FLOPS_PER_FORWARD = 6


# ---------------------------------------------------------------------------------------------
# Analytic FLOP count
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """Multiply-accumulates of one conv or dense layer for one example.

    macs: every kernel tap at every output position, as the matrix units execute it.
    macs_valid: taps that fall on zero padding left out (what XLA's cost analysis counts).
    """

    path: str
    kind: str
    macs: int
    macs_valid: int


def _valid_taps(size: int, kernel: int, padding: Any, stride: int = 1) -> int:
    """Kernel taps inside the input, summed over the output positions of one axis: ``size`` is the
    output's for a stride-1 or VALID convolution, the input's for a 'same' one read at every
    ``stride``-th pixel (ebmjax.models.conv.Conv)."""
    if padding == "SAME":
        lo = (kernel - 1) // 2
        return sum(sum(1 for t in range(kernel) if 0 <= o - lo + t < size) for o in range(0, size, stride))
    return size * kernel  # VALID: every tap of every output position is inside the input


def layer_costs(model: nn.Module, example_shape: Sequence[int]) -> list[LayerCost]:
    """Costs of every ``nn.Conv`` and ``nn.Dense`` a Flax model calls, for one example.

    Found from the module structure by intercepting the layers' calls while tracing ``model.init``
    on an abstract input of shape (1, *example_shape): no arrays are allocated, so this is cheap
    even for Res18. ``nn.Conv`` layers must have stride 1 and no dilation (all ebmjax models' do);
    ebmjax's own ``Conv`` may be strided.
    """
    costs: list[LayerCost] = []

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, (nn.Conv, Conv, UpConcatConv, nn.Dense)):
            return out
        x = args[0]
        path = "/".join(module.path) if hasattr(module, "path") else module.name
        if isinstance(module, nn.Dense):
            m = int(x.shape[-1]) * int(out.shape[-1])
            costs.append(LayerCost(path, "dense", m, m))
            return out
        stride = 1
        if isinstance(module, nn.Conv):
            strides, dilation = module.strides or 1, module.kernel_dilation or 1
            if any(s != 1 for s in np.atleast_1d(strides)) or any(d != 1 for d in np.atleast_1d(dilation)):
                raise ConfigError(f"layer_costs counts stride-1, undilated nn.Conv layers only; {path} is not.")
            padding = module.padding
        else:  # ebmjax.models.conv.Conv ('same', read at every strides-th pixel), UpConcatConv (stride 1)
            padding, stride = "SAME", getattr(module, "strides", 1)
        # The kernel the layer holds, (*window, C_in per group, C_out), says what one output pixel
        # costs, whatever the layer's inputs (UpConcatConv's are two maps read as one).
        *kernel, c_in, c_out = (int(n) for n in module.get_variable("params", "kernel").shape)
        spatial = tuple(int(s) for s in out.shape[1:-1])
        if getattr(module, "pool", False) and math.prod(kernel) > 1:
            # a convolution followed by a 2x2 mean pool runs as one (k + 1)-sided kernel at stride 2
            # (ebmjax.models.conv.conv_same_pooled; a 1x1 kernel pools first: the pooled map's cost)
            kernel, stride = [k + 1 for k in kernel], 2
        per_tap = c_in * c_out
        dense_taps = math.prod(spatial) * math.prod(kernel)
        sizes = spatial if stride == 1 else tuple(int(s) for s in x.shape[1:-1])
        valid_taps = math.prod(_valid_taps(s, k, padding, stride) for s, k in zip(sizes, kernel))
        costs.append(LayerCost(path, "conv", dense_taps * per_tap, valid_taps * per_tap))
        return out

    x = jax.ShapeDtypeStruct((1, *example_shape), jnp.float32)
    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape, x.dtype)))
    return costs


def forward_flops(model: nn.Module, example_shape: Sequence[int], *, exclude_padding: bool = False) -> float:
    """FLOPs (2 per multiply-accumulate) of one forward pass for one example, convs and dense
    layers only, as ebmjax computes them; elementwise work (ELU, pooling, adds) is left out (under
    2% for these nets).

    Res18 d=128 on 32x32x3 gives 6.60 GFLOP. A convolution followed by a 2x2 mean pool computed as
    one (``Conv(pool=True)``) counts the products it runs. ``exclude_padding`` drops taps on the
    zero padding, matching XLA's ``cost_analysis()``.
    """
    costs = layer_costs(model, example_shape)
    return 2.0 * sum(c.macs_valid if exclude_padding else c.macs for c in costs)


# ---------------------------------------------------------------------------------------------
# Devices: published peaks, memory
# ---------------------------------------------------------------------------------------------

# Dense (no sparsity) peak TFLOP/s per chip from the vendors' datasheets: (substring of
# device_kind, {basis: TFLOP/s}). The first match wins, so specific names come first.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIE", {"bfloat16": 756.0, "tf32": 378.0, "float32": 51.2}),
    ("H100 NVL", {"bfloat16": 835.0, "tf32": 418.0, "float32": 60.0}),
    ("H200 NVL", {"bfloat16": 835.0, "tf32": 418.0, "float32": 60.0}),
    ("H100", {"bfloat16": 989.0, "tf32": 494.5, "float32": 66.9}),  # SXM
    ("H200", {"bfloat16": 989.0, "tf32": 494.5, "float32": 66.9}),  # SXM
    ("GH200", {"bfloat16": 989.0, "tf32": 494.5, "float32": 66.9}),
    ("A100", {"bfloat16": 312.0, "tf32": 156.0, "float32": 19.5}),
    ("TPU V4", {"bfloat16": 275.0}),
    ("TPU V5 LITE", {"bfloat16": 197.0}),  # v5e
    ("TPU V5E", {"bfloat16": 197.0}),
    ("TPU V5P", {"bfloat16": 459.0}),
    ("TPU V5", {"bfloat16": 459.0}),  # v5p reports "TPU v5"
    ("TPU V6 LITE", {"bfloat16": 918.0}),  # v6e (Trillium)
    ("TPU V6E", {"bfloat16": 918.0}),
)


def matmul_basis(platform: str, dtype: str) -> str:
    """Which peak a compute dtype runs against: float32 convolutions run on TF32 tensor cores on
    GPUs and as one bfloat16 pass on TPUs under JAX's default precision (jax.default_matmul_precision)."""
    if dtype == "bfloat16":
        return "bfloat16"
    precision = str(jax.config.jax_default_matmul_precision or "default").lower()
    if precision in ("highest", "float32", "f32_f32_f32"):
        return "float32"
    if platform == "gpu":
        return "float32" if precision == "bfloat16_3x" else "tf32"
    if platform == "tpu":
        return "bfloat16" if precision in ("default", "fastest", "bfloat16") else "float32"
    return "float32"


def peak_tflops(device_kind: str, platform: str, dtype: str) -> tuple[float | None, str]:
    """(dense peak TFLOP/s of one chip for ``dtype`` compute, or None, and a note saying why)."""
    basis = matmul_basis(platform, dtype)
    kind = device_kind.upper()
    for pattern, peaks in PEAK_TFLOPS:
        if pattern in kind:
            if basis in peaks:
                return peaks[basis], f"{pattern} dense {basis} peak (datasheet)"
            return None, f"no published {basis} peak for {device_kind}"
    return None, f"peak FLOP/s of {device_kind!r} ({platform}) unknown: utilisation not reported"


def cpu_peak_gflops(cpuinfo: str, cores: int) -> tuple[float | None, str]:
    """Estimated float32 peak of ``cores`` cores described by a Linux ``/proc/cpuinfo`` text:
    cores x clock x FMA lanes per cycle x 2 FLOP per FMA, or (None, why) when it cannot be told.

    FMA lanes per cycle (float32): two FMA pipes of the widest vector the core executes at full
    rate: 2 x 16 with AVX-512 on Intel and on AMD from Zen 5 (family 26), 2 x 8 with AVX-512 on
    AMD Zen 4 (family 25, whose 512-bit instructions run on 256-bit pipes) and with AVX2 + FMA,
    2 x 4 otherwise. The clock is the ``cpu MHz`` cpuinfo reports (the current one; turbo or
    throttling moves the true peak). An estimate for scale, not a datasheet figure.
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    try:
        mhz = float(fields["cpu MHz"])
    except (KeyError, ValueError):
        return None, "cpu MHz not found in /proc/cpuinfo: peak unknown, utilisation not reported"
    flags = set(fields.get("flags", "").split())
    vendor, family = fields.get("vendor_id", ""), int(fields.get("cpu family", "0") or 0)
    if "avx512f" in flags:
        lanes = 16 if (vendor != "AuthenticAMD" or family >= 26) else 8
        isa = "AVX-512" + (" on 256-bit pipes" if lanes == 8 else "")
    elif "avx2" in flags and "fma" in flags:
        lanes, isa = 8, "AVX2 + FMA"
    else:
        lanes, isa = 4, "SSE"
    peak = cores * mhz / 1e3 * 2 * lanes * 2
    return peak, (f"estimate: {cores} cores x {mhz / 1e3:.2f} GHz x 2 FMA pipes x {lanes} float32 lanes ({isa}) "
                  f"x 2 FLOP = {peak:.0f} GFLOP/s")


def cpu_peak_tflops(dtype: str) -> tuple[float | None, str]:
    """This host's float32 peak in TFLOP/s (:func:`cpu_peak_gflops` on /proc/cpuinfo and the cores
    this process may use); bfloat16 compute is compared with the same float32 peak."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None, "no /proc/cpuinfo (not Linux): peak unknown, utilisation not reported"
    cores = usable_cores()
    gflops, note = cpu_peak_gflops(text, cores)
    if dtype != "float32" and gflops is not None:
        note += f" (float32 peak; {dtype} compared with it)"
    return (None if gflops is None else gflops / 1e3), note


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Timing:
    seconds_per_call: float  # mean over the timed calls
    calls: int  # timed calls
    first_call_s: float  # the first call, compilation included when the function was not compiled yet


def time_calls(call: Callable[[], Any], *, min_calls: int, min_seconds: float) -> Timing:
    """Times ``call`` (which must block until its results are ready): the first call compiles and
    warms up, the next one is untimed, then calls repeat until both minimums are reached."""
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    call()  # second warm-up: the first run after compiling can still pay one-off allocation costs
    n, t0 = 0, time.perf_counter()
    while n < min_calls or time.perf_counter() - t0 < min_seconds:
        call()
        n += 1
    return Timing((time.perf_counter() - t0) / n, n, first)


def _device_record(shape: tuple[int, ...], dtype: str) -> dict[str, Any]:
    d = jax.devices()[0]
    rec = {"device": d.device_kind, "platform": d.platform,
           "n_devices": jax.device_count(), "jax": jax.__version__, "dtype": dtype, "shape": list(shape)}
    if d.platform == "cpu":
        # CPU figures depend on what else runs on the host; the load average makes that visible.
        rec["host_cpus"], rec["host_load_1min"] = os.cpu_count(), os.getloadavg()[0]
    return rec


def _throughput_fields(flops_per_item: float | None, flops_valid: float | None, items_per_s: float | None, dtype: str,
                       compiled_bytes: int | None) -> dict[str, Any]:
    """Achieved TFLOP/s and the share of the devices' peak, counted two ways: every kernel tap (what
    a dense convolution computes, the count of the original's figures) and only the taps inside the
    image (``*_valid``: the network's useful work; ebmjax skips some of the rest on CPUs)."""
    d = jax.devices()[0]
    if d.platform == "cpu":
        peak, peak_note = cpu_peak_tflops(dtype)
        total_peak = peak  # the whole host: every core counted
    else:
        peak, peak_note = peak_tflops(d.device_kind, d.platform, dtype)
        total_peak = None if peak is None else peak * jax.device_count()
    tflops = None if items_per_s is None or flops_per_item is None else flops_per_item * items_per_s / 1e12
    tflops_valid = None if tflops is None else flops_valid * items_per_s / 1e12
    from ebmjax.memory import peak_device_memory

    mem, mem_note = peak_device_memory()
    return {
        "tflops": tflops,
        "tflops_valid": tflops_valid,
        "peak_tflops": total_peak,
        "utilisation": None if total_peak is None or tflops is None else tflops / total_peak,
        "utilisation_valid": None if total_peak is None or tflops is None else tflops_valid / total_peak,
        "peak_note": peak_note,
        "peak_memory_bytes": mem,
        "peak_memory_note": mem_note,
        "compiled_memory_bytes": compiled_bytes,
    }


# ---------------------------------------------------------------------------------------------
# The benchmarks
# ---------------------------------------------------------------------------------------------


def _model_and_params(cfg: ml_collections.ConfigDict, shape: tuple[int, ...]):
    from ebmjax import models

    model = models.build_model(cfg.model)
    params = models.init_params(model, jax.random.key(cfg.seed, impl="rbg"), shape)
    return model, params


class Compare(NamedTuple):
    """How ``--compare-torch`` times: ``rounds`` alternating rounds of ebmjax and the PyTorch twin."""

    rounds: int = 5


def _timed(name: str, call: Callable[[], Any], torch_call: Callable[[], Any] | None, items_per_call: float, *,
           min_calls: int, min_seconds: float, compare: Compare | None) -> dict[str, Any]:
    """Timing fields of one benchmark: ebmjax's rate (items/s) alone, or beside the PyTorch twin's."""
    if compare is None:
        t = time_calls(call, min_calls=min_calls, min_seconds=min_seconds)
        return {"rate": items_per_call / t.seconds_per_call, "seconds_per_call": t.seconds_per_call,
                "calls": t.calls, "first_call_s": t.first_call_s}
    from ebmjax.apps import bench_torch

    times = bench_torch.interleaved({"ebmjax": call, "torch": torch_call}, rounds=compare.rounds,
                                    min_seconds=2 * min_seconds, min_calls=min_calls)
    ours, theirs = items_per_call / times["ebmjax"], items_per_call / times["torch"]
    return {"rate": float(np.median(ours)), "seconds_per_call": float(np.median(times["ebmjax"])),
            "calls": None, "first_call_s": None,
            f"torch_{name}": float(np.median(theirs)),
            "ratio_to_torch": float(np.median(ours / theirs)),
            "ratio_to_torch_per_round": [round(float(r), 3) for r in ours / theirs],
            "best": {"ebmjax": float(ours.max()), "torch": float(theirs.max())},
            "rounds": compare.rounds}


def bench_train(cfg: ml_collections.ConfigDict, shape: tuple[int, ...], *, min_calls: int = 3,
                min_seconds: float = 3.0, compile_only: bool = False,
                compare: Compare | None = None) -> dict[str, Any]:
    """Images per second of the config's training step (``train.steps_per_call`` steps per call); FLOPs
    and the share of peak for MDSM (6 forward passes per image), the rate alone for other methods.
    ``compile_only``: compile and report FLOPs and XLA's memory estimate, time nothing.
    ``compare``: also time the original's step in PyTorch on the same weights and batch."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    from ebmjax import methods, parallel
    from ebmjax.methods import mdsm
    from ebmjax.methods.base import phase_of
    from ebmjax.train import state as train_state
    from ebmjax.train import step as train_step

    mesh = parallel.make_mesh()
    b, k = cfg.train.batch_size, cfg.train.steps_per_call
    parallel.check_divisible(b, mesh, "train.batch_size")
    method = methods.build(cfg, shape)
    model = method.networks.get("energy")
    params = method.init_params(jax.random.key(cfg.seed, impl="rbg"))
    state = train_state.create(params, method.optimizer, method.init_carry(jax.random.key(0)),
                               ema=cfg.train.ema_decay > 0)
    # Own buffers for every leaf: the state is donated, and a network initialised from another one
    # (CF-EBM's per-stage networks) may share arrays with it.
    state = jax.tree.map(jnp.copy, parallel.put_replicated(state, mesh))
    batches = jax.random.uniform(jax.random.key(1), (k, b, *shape), jnp.float32)
    if method.source_data is not None:  # and a batch of the second domain (e.g. ml.init = "source")
        batches = (batches, jax.random.uniform(jax.random.key(3), (k, b, *shape), jnp.float32))
    elif method.labels:  # and the examples' labels (a classifier's energies)
        batches = (batches, jax.random.randint(jax.random.key(3), (k, b), 0, method.labels, jnp.int32))
    batches = jax.device_put(batches, NamedSharding(mesh, P(None, parallel.DATA_AXIS)))
    key = jax.random.key(2)
    # A method with phases (CF-EBM's stages) is timed in its last one: the full-size network.
    phase = phase_of(method, int(cfg.train.steps) - 1)
    fn = jax.jit(train_step.make_multi_step(method, k, float(cfg.train.ema_decay), phase), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = fn.lower(state, batches, key).compile()
    compile_s = time.perf_counter() - t0
    box = [state]

    def call():
        box[0], metrics = compiled(box[0], batches, key)
        jax.block_until_ready((box[0], metrics))

    torch_call = None
    if compare is not None and not compile_only:
        from ebmjax.apps import bench_torch

        t = cfg.train
        device = bench_torch.torch_device(jax.devices()[0].platform)
        torch_call = bench_torch.torch_train_call(
            torch_twin(cfg.model, params["energy"], device), np.asarray(batches[0]),
            np.asarray(mdsm.noise_levels(cfg)), float(cfg.mdsm.sigma0), t.lr, (t.b1, t.b2), t.eps, device)
    timing = None if compile_only else _timed("train_img_per_s", call, torch_call, k * b, min_calls=min_calls,
                                                 min_seconds=min_seconds, compare=compare)
    if cfg.method.name == "mdsm":
        flops = TRAIN_FLOPS_PER_FORWARD * forward_flops(model, shape)
        flops_valid = TRAIN_FLOPS_PER_FORWARD * forward_flops(model, shape, exclude_padding=True)
    else:  # the count of 6 forward passes per image is MDSM's; other methods' steps are timed only
        flops = flops_valid = None
    img_per_s = None if timing is None else timing.pop("rate")
    rec = {"bench": "train", **_device_record(shape, cfg.model.dtype), "batch": b, "steps_per_call": k,
           "train_img_per_s": img_per_s,
           "step_ms": None if timing is None else 1e3 * timing.pop("seconds_per_call") / k,
           "gflop_per_img": None if flops is None else flops / 1e9,
           "gflop_per_img_valid": None if flops is None else flops_valid / 1e9,
           **_throughput_fields(flops, flops_valid, img_per_s, cfg.model.dtype, compiled_memory_bytes(compiled)),
           "compile_s": compile_s}
    return {**rec, **(timing or {"calls": None, "first_call_s": None})}


def _last_stage_start(sampler, key: jax.Array, n: int):
    """The last stage of ``sampler`` and a start of the right shape for it: the sampler's ``init``
    passed through every stage's ``enter`` (the chains of the stages before it are not run: their
    cost is not what is timed, and the time of a step does not depend on where a chain stands)."""
    x = sampler.init(key, n)
    for i, st in enumerate(sampler.stages):
        if st.enter is not None:
            x = st.enter(x, jax.random.fold_in(key, i + 1))
    return sampler.stages[-1], x


def bench_langevin(cfg: ml_collections.ConfigDict, shape: tuple[int, ...], *, min_calls: int = 3,
                   min_seconds: float = 3.0, compile_only: bool = False,
                   compare: Compare | None = None) -> dict[str, Any]:
    """Image-steps per second of the config's own sampler (``--mode sample``'s chains: MDSM's annealed
    Langevin, a maximum-likelihood chain, the finest grid of multigrid, CF-EBM's last stage) at
    ``sample.batch_size`` chains, one call being a chunk of ``sample.chunk_steps`` steps of the
    sampler's last stage through ``samplers.run_chain_chunked``, as sampling runs it. The parameters
    are the method's initial ones (a step costs the same whatever they are).
    ``compile_only``: compile and report FLOPs and XLA's memory estimate, time nothing.
    ``compare``: also time the same steps in PyTorch on the same weights and chains (MDSM's networks, torch_twin)."""
    from ebmjax import chains, methods, parallel, samplers

    mesh = parallel.make_mesh()
    b, chunk = cfg.sample.batch_size, cfg.sample.chunk_steps
    parallel.check_divisible(b, mesh, "sample.batch_size")
    method = methods.build(cfg, shape)
    params = parallel.put_replicated(method.init_params(jax.random.key(cfg.seed, impl="rbg")), mesh)
    # A method whose computation changes during training (phases: CF-EBM's stages) is timed in its
    # last phase, as bench_train does: its carry says which stage the parameters reached, and None
    # means the end of training (as for Method.energy).
    carry = None if method.phase is not None else parallel.put_replicated(method.init_carry(jax.random.key(0)), mesh)
    stage, x0 = _last_stage_start(method.sampler(params, carry), jax.random.key(1), b)
    energy = samplers.as_partial(stage.energy)
    temps = np.resize(np.asarray(stage.temperatures, np.float32), chunk)
    steps = np.resize(np.broadcast_to(np.asarray(stage.step_sizes, np.float32), (len(stage.temperatures),)), chunk)
    x0 = parallel.put_batch(np.asarray(x0), mesh)
    box = [stage.kernel.init(x0, energy)]
    key = jax.random.key(2)

    def call():
        box[0], trace = samplers.run_chain_chunked(
            stage.kernel, energy, box[0], key, temperatures=temps, step_sizes=steps,
            chunk_size=chunk, record=chains.mean_energy, unroll_steps=cfg.sample.unroll_steps)
        jax.block_until_ready((box[0], trace))

    torch_call = None
    if compare is not None and not compile_only:
        from ebmjax.apps import bench_torch

        device = bench_torch.torch_device(jax.devices()[0].platform)
        torch_call = bench_torch.torch_langevin_call(torch_twin(cfg.model, params["energy"], device), np.asarray(x0),
                                                     float(cfg.mdsm.step_size), chunk, device)
    t0 = time.perf_counter()
    timing = None if compile_only else _timed("langevin_img_steps_per_s", call, torch_call, b * chunk,
                                                 min_calls=min_calls, min_seconds=min_seconds, compare=compare)
    # After timing this comes from jit's cache; with compile_only it is the one compilation.
    compiled = _compiled_chunk(stage.kernel, energy, box[0], key, temps, steps, chunk, cfg.sample.unroll_steps)
    compile_s = time.perf_counter() - t0 if compile_only else None
    if cfg.method.name == "mdsm":  # the analytic count, which tests/test_bench.py checks against XLA's
        model = method.networks["energy"]
        flops = LANGEVIN_FLOPS_PER_FORWARD * forward_flops(model, shape)
        flops_valid = LANGEVIN_FLOPS_PER_FORWARD * forward_flops(model, shape, exclude_padding=True)
    else:  # XLA's cost analysis of one compiled step of the chain (padding included)
        flops = flops_valid = _xla_step_flops(stage.kernel, energy, box[0], key, temps[0], steps[0], b)
    rate = None if timing is None else timing.pop("rate")
    rec = {"bench": "langevin", **_device_record(shape, cfg.model.dtype), "method": cfg.method.name,
           "stage": stage.name, "batch": b, "chunk_steps": chunk, "unroll_steps": cfg.sample.unroll_steps,
           "langevin_img_steps_per_s": rate,
           "step_ms": None if timing is None else 1e3 * timing.pop("seconds_per_call") / chunk,
           "gflop_per_img_step": None if flops is None else flops / 1e9,
           "gflop_per_img_step_valid": None if flops is None else flops_valid / 1e9,
           **_throughput_fields(flops, flops_valid, rate, cfg.model.dtype, compiled_memory_bytes(compiled)),
           "compile_s": compile_s}
    return {**rec, **(timing or {"calls": None, "first_call_s": None})}


def _xla_step_flops(kernel, energy, state, key, temperature, step_size, batch: int) -> float | None:
    """FLOPs per chain of one kernel step, by XLA's cost analysis of that step compiled alone (a
    step has no loop inside, which XLA's count would take once); None where XLA gives no count."""
    try:
        compiled = jax.jit(lambda s, k: kernel.step(k, s, energy, step_size, temperature)).lower(state, key).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost["flops"]) if cost and "flops" in cost else None
    except Exception as e:  # the count is optional, like the memory estimate
        log.warning("no XLA FLOP count for the chain step: %s", e)
        return None
    return flops / batch if flops and flops > 0 else None


def _compiled_chunk(kernel, energy, state, key, temps, steps, chunk, unroll_steps=0):
    """The compiled chunk (or unrolled piece) ``run_chain_chunked`` runs for these arguments (taken
    from jit's cache when it already ran), for XLA's memory estimate; None if it cannot be had."""
    from ebmjax import chains
    from ebmjax.samplers import driver

    t = jnp.asarray(temps, jnp.float32)
    h = jnp.asarray(steps, jnp.float32)
    try:
        return driver.lower_chunk(kernel, energy, state, key, t, h, chunk_size=chunk, unroll_steps=unroll_steps,
                                  record=chains.mean_energy).compile()
    except Exception as e:  # the estimate is optional: a driver change must not break the benchmark
        log.warning("no compiled-memory estimate for the Langevin chunk: %s", e)
        return None


def precision_errors(model_cfg: ml_collections.ConfigDict, params: Any, x: jax.Array, key: jax.Array,
                     sigmas: jax.Array, sigma0: float, *, loss_grad: bool = True) -> dict[str, float]:
    """Relative errors of bfloat16 compute against float32 for the same float32 parameters.

    x: (B, ...) clean examples. Energies and scores are taken at noisy inputs x + sigma_i z (what the
    training loss and the sampler see); with ``loss_grad`` also the MDSM loss at x with ``sigmas``
    and its parameter gradient (double back-propagation: slow to compile on a CPU). For scale,
    ``param_grad_noise_rel_err`` is how much the float32 gradient itself changes with another draw of
    the training noise z: rounding errors well below it are lost in the noise SGD already averages.
    """
    from ebmjax import losses, models, samplers

    cfg32, cfg16 = ml_collections.ConfigDict(model_cfg), ml_collections.ConfigDict(model_cfg)
    cfg32.dtype, cfg16.dtype = "float32", "bfloat16"
    m32, m16 = models.build_model(cfg32), models.build_model(cfg16)
    noisy = x + sigmas.reshape((-1,) + (1,) * (x.ndim - 1)) * jax.random.normal(key, x.shape, x.dtype)

    def loss_and_grad(m, params, k):
        return jax.value_and_grad(lambda p: losses.mdsm_loss(lambda y: m.apply(p, y), x, k, sigmas, sigma0))(params)

    @jax.jit
    def both(params):
        def one(m):
            e, g = samplers.energy_and_grad(lambda y: m.apply(params, y), noisy)
            if not loss_grad:
                return e, g, None, None
            return (e, g, *loss_and_grad(m, params, key))
        other = loss_and_grad(m32, params, jax.random.fold_in(key, 1))[1] if loss_grad else None
        return one(m32), one(m16), other

    (e32, g32, l32, pg32), (e16, g16, l16, pg16), pg_other = jax.device_get(both(params))
    flat = lambda t: np.concatenate([np.ravel(a) for a in jax.tree.leaves(t)]).astype(np.float64)  # noqa: E731
    de = e16.astype(np.float64) - e32
    g32f, dgf = g32.reshape(len(g32), -1).astype(np.float64), (g16 - g32).reshape(len(g32), -1).astype(np.float64)
    per_example = np.linalg.norm(dgf, axis=1) / np.linalg.norm(g32f, axis=1)
    cos = np.sum(g32f * g16.reshape(len(g16), -1), axis=1) / (
        np.linalg.norm(g32f, axis=1) * np.linalg.norm(g16.reshape(len(g16), -1), axis=1))
    errs = {
        "energy_rel_err": float(np.linalg.norm(de) / np.linalg.norm(e32)),
        "energy_err_over_spread": float(np.sqrt(np.mean(de**2)) / max(np.std(e32), 1e-30)),
        "score_rel_err_median": float(np.median(per_example)),
        "score_rel_err_max": float(np.max(per_example)),
        "score_cosine_min": float(np.min(cos)),
    }
    if loss_grad:
        p32, p16 = flat(pg32), flat(pg16)
        errs.update({
            "loss_rel_err": float(abs(l16 - l32) / abs(l32)),
            "param_grad_rel_err": float(np.linalg.norm(p16 - p32) / np.linalg.norm(p32)),
            "param_grad_cosine": float(p16 @ p32 / (np.linalg.norm(p16) * np.linalg.norm(p32))),
            "param_grad_noise_rel_err": float(np.linalg.norm(flat(pg_other) - p32) / np.linalg.norm(p32)),
        })
    return errs


def bench_precision(cfg: ml_collections.ConfigDict, shape: tuple[int, ...], *, batch: int = 16,
                    workdir: str | None = None) -> dict[str, Any]:
    """bfloat16-vs-float32 errors of the config's network, on real examples when the dataset loads
    (random images otherwise), with trained parameters from ``workdir`` or a fresh initialisation."""
    from ebmjax import data, losses

    note = []
    if workdir is not None:
        from ebmjax.train import loop

        state, _, source = loop.load_trained(cfg, workdir)
        params = jax.device_get(state.params["energy"])
        note.append(f"trained parameters from {workdir} (step {int(state.step)})")
    else:
        _, params = _model_and_params(cfg, shape)
        source = None
        note.append("freshly initialised parameters (PyTorch-default init)")
    try:
        source = source or data.load_source(cfg.data, "train")
        idx = np.random.default_rng(0).choice(len(source), batch, replace=False)
        x = jnp.asarray(source.get(idx))
        note.append(f"{batch} training examples of {cfg.data.name}")
    except DataError:
        x = jax.random.uniform(jax.random.key(3), (batch, *shape))
        note.append(f"{batch} uniform random images ({cfg.data.name} is not prepared here)")
    sigmas = losses.noise_levels(batch, cfg.mdsm.sigma_low, cfg.mdsm.sigma_high, cfg.mdsm.spacing)
    errs = precision_errors(cfg.model, params, x, jax.random.key(4), sigmas, cfg.mdsm.sigma0)
    return {"bench": "precision", **_device_record(shape, "bfloat16 vs float32"), "batch": batch, **errs,
            "note": "; ".join(note)}


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[tuple[str, str]]]:
    parser = argparse.ArgumentParser(prog="python -m ebmjax.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="config file, e.g. configs/mdsm_cifar.py")
    parser.add_argument("--what", default="train,langevin", help=f"comma list of {', '.join(WHATS)}")
    parser.add_argument("--dtype", default=None,
                        help=f"comma list of compute dtypes ({', '.join(DTYPES)}); default: the config's model.dtype")
    parser.add_argument("--shape", default=None, help="per-example shape H,W,C (default: the dataset's)")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="timed seconds per measurement (at least)")
    parser.add_argument("--min-calls", type=int, default=3, help="timed calls per measurement (at least)")
    parser.add_argument("--precision-batch", type=int, default=16, help="examples for --what precision")
    parser.add_argument("--workdir", default=None, help="--what precision: use this run's trained parameters")
    parser.add_argument("--profile-dir", default=None, help="write a jax.profiler trace of the timed runs here")
    parser.add_argument("--compare-torch", action="store_true",
                        help="also time the original's network and steps in PyTorch (needs torch) on the same weights "
                             "and inputs, interleaved with ebmjax, and print both rates and their ratio")
    parser.add_argument("--rounds", type=int, default=5, help="--compare-torch: alternating timing rounds")
    parser.add_argument("--compile-only", action="store_true",
                        help="compile and report FLOPs and XLA's memory estimate without timing (e.g. a large "
                             "batch on a CPU)")
    from ebmjax.apps.main import parse_with_overrides  # one parser for --config.a.b=value overrides

    return parse_with_overrides(parser, argv)


def _split(text: str, valid: Sequence[str], flag: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in valid]
    if bad or not items:
        raise ConfigError(f"{flag} takes a comma list of {', '.join(valid)}; got {text!r}.")
    return items


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(t) for t in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ConfigError(f"--shape takes positive integers H,W,C such as 32,32,3; got {text!r}.")
    return shape


def run(argv: Sequence[str], out=None) -> int:
    """Runs the benchmark command line; JSON lines go to ``out`` (stdout). Returns the exit code."""
    out = out or sys.stdout
    args, overrides = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    from ebmjax.config import load_config

    try:
        cfg = load_config(args.config, overrides)
        from ebmjax import data, methods, parallel

        # As `python -m ebmjax.main` runs; both timed batches must split evenly.
        parallel.use_cpu_cores(cfg.dist.cpu_devices, math.gcd(methods.split_rows(cfg), cfg.sample.batch_size))
        whats = _split(args.what, WHATS, "--what")
        if "precision" in whats and cfg.method.name != "mdsm":
            raise ConfigError("--what precision measures bfloat16 against float32 on MDSM's network and loss; this "
                              f"config trains method {cfg.method.name!r}: time it with --what train,langevin.")
        if args.compare_torch:
            if args.compile_only:
                raise ConfigError("--compare-torch times both sides; it cannot be combined with --compile-only.")
            if args.rounds < 1:
                raise ConfigError(f"--rounds must be >= 1, got {args.rounds}.")
            if cfg.method.name != "mdsm" or cfg.model.name not in TORCH_TWINS:
                raise ConfigError("--compare-torch compares MDSM's networks (model.name "
                                  + " or ".join(TORCH_TWINS) + ") with the same network in PyTorch; "
                                  f"this config trains {cfg.method.name!r} with model {cfg.model.name!r}"
                                  + (" (time the original's ResNet with --config.model.name=mdsm_resnet)."
                                     if cfg.method.name == "mdsm" else "."))
            from ebmjax.apps.bench_torch import setup_threads

            log.info("PyTorch twin on %d CPU threads", setup_threads())
        dtypes = _split(args.dtype, DTYPES, "--dtype") if args.dtype else [cfg.model.dtype]
        shape = _parse_shape(args.shape) if args.shape else data.example_shape(cfg.data)
        if args.profile_dir:
            # XLA's operations only: the Python tracer fills the trace's million events with Python
            # calls before a training step of a U-Net has run twice
            options = jax.profiler.ProfileOptions()
            options.python_tracer_level = 0
            jax.profiler.start_trace(args.profile_dir, profiler_options=options)
        try:
            for what in whats:
                for dtype in (dtypes if what != "precision" else ["-"]):
                    c = ml_collections.ConfigDict(cfg)
                    if dtype != "-":
                        c.model.dtype = dtype
                    log.info("bench %s %s (%s) on %s", what, args.config, dtype, jax.devices()[0].device_kind)
                    timing = {"min_calls": args.min_calls, "min_seconds": args.min_seconds,
                              "compile_only": args.compile_only}
                    if what != "precision":
                        timing["compare"] = Compare(args.rounds) if args.compare_torch else None
                    if what == "train":
                        rec = bench_train(c, shape, **timing)
                    elif what == "langevin":
                        rec = bench_langevin(c, shape, **timing)
                    else:
                        rec = bench_precision(c, shape, batch=args.precision_batch, workdir=args.workdir)
                    rec = {"bench": rec.pop("bench"), "config": args.config, **rec}
                    rec["overrides"] = [f"{k}={v}" for k, v in overrides]
                    print(json.dumps(rec), file=out, flush=True)
        finally:
            if args.profile_dir:
                jax.profiler.stop_trace()
    except EbmjaxError as e:
        print(f"ebmjax.bench: error: {e}", file=sys.stderr)
        return 2
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))

