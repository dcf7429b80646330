"""What a training method is: a small record of pure factories that the shared loop, sampling,
restoration and evaluation use without asking which method they run.

A method owns named networks (``params`` is a dict by network name, each entry a Flax variables
dict), one optimiser over that dict (each network with its own settings), an optional carried
state (replay buffer, persistent chains; ``()`` when none), a loss whose gradient the shared step
applies, the energy that restoration and evaluation use, and its own sampler for ``--mode sample``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import numpy as np
import optax

from ebmjax import samplers
from ebmjax.samplers.kernels import EnergyFn, Kernel

Params = dict[str, Any]


def identity(x: Any) -> Any:
    """A sampler's ``finish`` (or ``init``) that leaves its input as it is."""
    return x


def network_energy(network: Callable[[jax.Array], jax.Array], classes: int, y: Any = None) -> EnergyFn:
    """The energy a method's network defines: the network itself when ``classes`` is 0; a
    classifier's E(x, y) = -f(x)[y] at labels ``y`` (a class, one per example, or -1), or
    E(x) = -logsumexp_y f(x)[y] when ``y`` is None (``ebmjax.samplers.class_energy`` /
    ``marginal_energy``)."""
    if not classes:
        return network
    return samplers.marginal_energy(network) if y is None else samplers.class_energy(network, y)


def split_labels(batch: Any, classes: int) -> tuple[jax.Array, jax.Array | None]:
    """(images, labels or None): the loop passes (x, y) to a method with ``Method.labels`` > 0."""
    return batch if classes else (batch, None)


def phase_of(method: "Method", step: int) -> Any:
    """The static phase of ``step`` (None for methods with one phase)."""
    return None if method.phase is None else method.phase(int(step))


def with_phase(fn: Callable, method: "Method", phase: Any) -> Callable:
    """``fn`` (the method's loss or probe) with ``phase`` bound when the method has phases."""
    if method.phase is None:
        return fn

    def bound(*args):
        return fn(*args, phase=phase)

    return bound


# loss(params, carry, batch, key, step) -> (scalar, (new carry, {metric: scalar}))
LossFn = Callable[[Params, Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, tuple[Any, dict[str, jax.Array]]]]


class Stage(NamedTuple):
    """One chain of a sampler: ``len(temperatures)`` steps of ``kernel`` on ``energy``.

    ``energy`` is a ``jax.tree_util.Partial`` over parameters (so compiled chunks are reused for
    new parameters of the same shapes). ``enter(x, key)`` maps the previous stage's end (or the
    sampler's start) to this stage's start, e.g. an up-sampling; None keeps it. ``temperatures``
    and ``step_sizes`` (K,) use the kernels' convention (``ebmjax.samplers.kernels``).
    """

    name: str
    energy: EnergyFn
    kernel: Kernel
    temperatures: np.ndarray
    step_sizes: np.ndarray
    enter: Callable[[jax.Array, jax.Array], jax.Array] | None = None


class Sampler(NamedTuple):
    """A method's sampler: ``init(key, n) -> x0``, the stages run in order, ``finish(x) -> samples``.

    ``init``, ``enter`` and ``finish`` must be jittable; ``finish`` is applied batch by batch to
    the last stage's end (e.g. MDSM's denoising jump). ``settings`` (JSON-able) describes the
    sampler for the shard manifest: samples drawn with other settings are never mixed in.
    ``pictures(out_dir, key) -> [file names]``, optional: method-specific pictures of the chains
    written beside the samples once they are (e.g. multigrid's ``grids.png``, every stage's end).
    ``variant``, optional: a few words naming which of the method's recipes this sampler is (e.g.
    multigrid's ``"teach generator"``), for the grid's title; ``""`` when the method has one.
    """

    init: Callable[[jax.Array, int], jax.Array]
    stages: tuple[Stage, ...]
    finish: Callable[[jax.Array], jax.Array]
    settings: Mapping[str, Any]
    pictures: Callable[[Any, jax.Array], list[str]] | None = None
    variant: str = ""

    @property
    def steps(self) -> int:
        return int(sum(len(s.temperatures) for s in self.stages))


class Method(NamedTuple):
    """The pure factories of one training method (see the module docstring).

    name: ``method.name``.
    networks: {name: Flax module}.
    init_params(key) -> {name: variables}.
    optimizer: one optax transformation over the params dict.
    learning_rates: {network name: optax schedule}, for the logs.
    init_carry(key) -> carried state (a pytree of arrays; ``()`` when none).
    carry_specs: pytree prefix of ``PartitionSpec`` for the carry (leading axis on ``data`` for a
        buffer; ``()`` when none).
    loss: see ``LossFn``; its gradient with respect to ``params`` is applied by the shared step.
        Samples from chains inside it must carry no gradient into the parameters.
    probe(params, carry, batch, key) -> {metric: scalar}: diagnostics for the log at each window.
    energy(params, carry=None) -> energy_fn (a Partial): the energy used by restoration and evaluation,
        on images of the data's shape (``carry``: the run's carried state, which may say which stage
        of training the parameters belong to; None: the final one).
    sampler(params, carry) -> Sampler: the chains of ``--mode sample``.
    denoise_sigma: the noise level of the single-step denoising jump x - s^2 dE/dx where the
        method learns a smoothed density (MDSM's sigma0), else None.
    temperature: T such that exp(-E / T) is the density the method's chains sample (1 for MDSM;
        noise^2 / (2 step) for maximum-likelihood Langevin written as step and noise); restoration
        weighs the data's likelihood against the energy with it.
    bounds: {metric: (low, high, config field)}: an update whose metric leaves [low, high] is
        treated as diverged (skipped, and a window of them stops the run), e.g. the runaway
        energies of maximum-likelihood training, or its chains falling behind the data.
    identity: config fields whose values define what the parameters mean; checkpoints written
        with other values cannot be resumed.

    Methods whose computation changes during training (coarse-to-fine growth) also give:
    phase(step) -> a hashable description of step ``step``'s computation (e.g. the resolution
        stage), static under jit: ``loss`` and ``probe`` then take it as the keyword ``phase``, and
        the loop compiles one call per phase and never lets a call cross ``phase_boundaries``;
    phase_boundaries: the sorted steps at which the phase changes;
    frozen(phase) -> names of networks that do not learn in that phase (their parameters and
        optimiser state are kept as they are, whatever their gradient).

    Methods that learn from two unpaired domains (translation trained with chains started at
    source-domain images, as CF-EBM does) also give:
    source_data: the data settings (``data.*`` as a dict) of the second domain. Beside every batch
        of the data the loop then draws a batch of the same size from that domain's training split,
        in an order of its own, and ``loss`` and ``probe`` take ``batch = (x, x_source)``.

    Methods that learn from labelled data (a classifier's energies, JEM) also give:
    labels: the number of classes K; the loop then passes ``batch = (x, y)`` with the examples'
        labels y (B,) int32 in [0, K) (0: no labels);
    classifier(params) -> logits_fn: x (B, ...) -> logits (B, K), a Partial like ``energy``'s
        (evaluation reports its accuracy, calibration and max-softmax OOD scores).
    """

    name: str
    networks: Mapping[str, Any]
    init_params: Callable[[jax.Array], Params]
    optimizer: optax.GradientTransformation
    learning_rates: Mapping[str, optax.Schedule]
    init_carry: Callable[[jax.Array], Any]
    carry_specs: Any
    loss: LossFn
    probe: Callable[[Params, Any, jax.Array, jax.Array], dict[str, jax.Array]]
    energy: Callable[..., EnergyFn]
    sampler: Callable[[Params, Any], Sampler]
    denoise_sigma: float | None
    temperature: float
    bounds: Mapping[str, tuple[float, float, str]]
    identity: tuple[str, ...]
    phase: Callable[[int], Any] | None = None
    phase_boundaries: tuple[int, ...] = ()
    frozen: Callable[[Any], frozenset[str]] | None = None
    source_data: Mapping[str, Any] | None = None
    labels: int = 0
    classifier: Callable[[Params], Callable[[jax.Array], jax.Array]] | None = None
