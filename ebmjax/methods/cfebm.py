"""CF-EBM: coarse-to-fine expanding training and sampling (Zhao, Xie, Li; the CF-EBM paper, REFERENCE §2).

One energy learns from low to high resolution. The stages ``cfebm.resolutions = (r_0, ..., r_S)``
(each side twice the one before, r_S the image side) see the data block-averaged to r_s x r_s
(:func:`ebmjax.ops.downsample`). Stage 0 trains for one phase (``cfebm.phase_images`` images); every
later stage s first fades in over one phase, the Expand block's alpha growing linearly with the
images seen (:func:`ebmjax.schedules.fade_alpha`), then trains stable (alpha = 1) for one phase; the
last stage trains until ``train.steps``. The stage is the method's static phase (one compiled step
per stage; alpha is traced), so the shared loop never lets a call cross a stage boundary.

The network (:class:`ebmjax.models.ExpandingEnergy`) holds the layers of every stage from the start,
so parameter shapes never change: a checkpoint of any stage (mid-fade included) restores, resumes and
samples with the same code, and the carried state ``{"trained": steps done}`` (checkpointed with the
parameters) tells sampling and evaluation which stage and alpha the parameters belong to. The two
variants of the original:

- ``grow`` (train_v0): one network ``energy``; every layer keeps learning at later stages.
- ``per_stage`` (train_v1): a network ``energy_<r>`` per stage; stage s starts from stage s-1's
  weights and only it learns, the coarser ones frozen (they drive the coarse part of the chains).
  "Starts from stage s-1's weights" is written as an offset: stage s's weights are W_{s-1} + D_s
  with D_s (the network ``energy_<r_s>``'s parameters) zero until stage s begins, so W_s = W_{s-1}
  exactly at the boundary and no parameter is copied or reshaped at any step (Adam's update of D_s
  is Adam's update of W_s: the gradients are the same).

Negative samples are drawn "from the beginning" in every training step: uniform noise at r_0, then
``cfebm.steps`` Langevin steps per stage x <- clamp(x - step_size * clip(dE_k/dx) + sigma z) on stage
k's energy (parameters held constant), pixel-replication up-sampling (and clamping) between stages;
with ``cyclic_noise`` sigma decays linearly from ``noise_max`` to 0 over all of a chain's steps,
else it is ``noise``. While stage s fades in (alpha < 1) and ``smooth_handover`` is on, the chain
runs int(steps (1 - alpha)) steps at r_{s-1}, then enters r_s as
x <- c + sqrt(1 - alpha^2) (up(x) - c) + alpha (range / 2) z (c the middle of the data's range; the
original's x <- sqrt(1 - a^2) up(x) + a z on [-1, 1]). The loss is :func:`ebmjax.losses.ml_loss` at
stage s between the data at r_s and the chains' ends.

``--mode sample`` runs the same coarse-to-fine chain with ``cfebm.sample_steps`` steps per stage up
to the checkpoint's stage (with its alpha), and returns the images up-sampled to the data's size, so
samples of any stage have the data's shape; ``stages.png`` shows a few chains at the end of every
stage. Restoration and evaluation use the checkpoint's stage energy on images block-averaged to its
side (at the last stage: the images themselves).

Class-conditional (``model.classes`` = K, labelled data): the head gives logits f(x) (B, K) and
E(x, y) = -f(x)[y]; every training chain runs on its example's label at every stage, ``--mode sample
--config.sample.label=k`` runs the coarse-to-fine chain on class k (-1: one grid row per class), and
restoration and evaluation use E(x) = -logsumexp_y f(x)[y].

Differences from the original (YangNaruto/ProEBM): one batch size for the whole run (the original's
shrinks with the resolution, e.g. 256 -> 128 -> 64 on CIFAR), so a phase is
ceil(phase_images / batch) steps; the energy penalty E(data)^2 + E(samples)^2 has the right sign
(the original's is E+^2 - E-^2, weighted 0); a diverging run stops with the shared loop's message
and checkpoints (the original stops at |loss| > 1000); RGB data works; see ExpandingEnergy for the
network's differences.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import PartitionSpec as P

from ebmjax import models, ops, optim, samplers, schedules
from ebmjax.errors import ConfigError
from ebmjax.methods import contrastive, pictures, settings
from ebmjax.methods.base import Method, Sampler, Stage, network_energy, split_labels
from ebmjax.models.cfebm import ExpandingEnergy, init_all

VARIANTS = ("grow", "per_stage")
PICTURE = "stages.png"
PICTURE_CHAINS = 12
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def defaults() -> ml_collections.ConfigDict:
    """The ``cfebm`` config group, every field with its default (``ebmjax.methods.settings``)."""
    # CF-EBM (ebmjax.methods.cfebm; the CF-EBM paper, REFERENCE §2): coarse-to-fine expanding training. One
    # expanding energy (ExpandingEnergy: per-resolution from_rgb, residual blocks added at the bottom,
    # the Expand block alpha * new + (1 - alpha) * old) learns at resolutions[0] for one phase, then
    # each finer stage fades in over one phase (alpha linear in images seen) and trains stable for
    # one phase; the last stage trains until train.steps. Negative samples are drawn from the
    # beginning every step: uniform noise at the coarsest side, `steps` Langevin steps per stage
    # x <- clamp(x - step_size * clip(dE/dx) + sigma z), up-sampled (pixel replication) between stages.
    g = ml_collections.ConfigDict()
    g.resolutions = (8, 16, 32)  # stage sides, coarse to fine, each twice the one before; the last is the image side (CIFAR: 8, 16, 32)
    g.widths = (128, 128, 64)  # feature channels at each stage's side (from_rgb's output)
    g.head_width = 128  # channels of the head and of block 0's output
    g.variant = "grow"  # grow (one network, every layer keeps learning; train_v0) | per_stage (a network per stage started from the previous stage's weights, coarser ones frozen; train_v1)
    g.phase_images = 1_200_000  # images seen per fade phase and per stable phase (CIFAR: 1.2M, CelebA: 1.5M)
    g.lr_by_stage = ()  # constant learning rate per stage (the original: 1e-3 up to 32x32, 1.2e-3 at 64); (): train.lr's schedule
    g.steps = 15  # Langevin steps per stage in every training step (the original: 15)
    g.sample_steps = 15  # --mode sample: Langevin steps per stage
    g.cyclic_noise = True  # sigma decays linearly from noise_max to 0 over all of a chain's steps (the original's "cyclic"); False: fixed noise
    g.noise_max = 0.0075  # start of the cyclic decay (the original: 0.015 on [-1, 1])
    g.smooth_handover = True  # while a stage fades in: int(steps (1 - alpha)) steps at the old side, then x <- c + sqrt(1 - alpha^2) (up(x) - c) + alpha (range / 2) z
    # step_size: step on dE/dx (the original: 1.0 on [-1, 1] images, i.e. 0.25 on [0, 1])
    # noise: sigma of fixed-noise chains (the original: 0.005 on [-1, 1])
    # data_noise: std of Gaussian noise added to the data (the original: 0.01 on CelebA)
    # energy_l2: weight of mean E(data)^2 + mean E(samples)^2 (the original's "l2" has the wrong sign and weight 0)
    # energy_bound: stop the run when |mean energy| of data or samples exceeds this (the original stops at |loss| > 1000)
    settings.chain_settings(g, step_size=0.25, noise=0.0025)
    return g


# Number fields of the group and the values that work for them (ebmjax.methods.settings).
RULES = settings.CHAIN_RULES + (("noise_max", "the start of the cyclic noise decay", ">= 0"),)


def check_config(m: ml_collections.ConfigDict) -> None:
    """ConfigError for settings of the ``cfebm`` group that cannot work (the resolutions are checked
    against the images by :func:`build`)."""
    settings.check_numbers(m, "cfebm", RULES)
    if m.variant not in VARIANTS:
        raise ConfigError(f"cfebm.variant must be one of {', '.join(VARIANTS)}, got {m.variant!r}.")
    for name in ("resolutions", "widths"):
        v = m[name]
        if not isinstance(v, (tuple, list)) or not v or any(isinstance(i, bool) or not isinstance(i, int) or i < 1
                                                           for i in v):
            raise ConfigError(f"cfebm.{name} must be a non-empty tuple of integers >= 1, got {v!r}.")
    res = tuple(m.resolutions)
    if res[0] < 2 or any(b != 2 * a for a, b in zip(res, res[1:])):
        raise ConfigError(f"cfebm.resolutions must start at a side >= 2 and double at every stage, e.g. (8, 16, 32); "
                          f"got {m.resolutions!r}.")
    if len(m.widths) != len(res):
        raise ConfigError(f"cfebm.widths needs one channel count per resolution ({len(res)}), got {m.widths!r}.")
    settings.check_counts(m, "cfebm", (("head_width", 1), ("phase_images", 1), ("steps", 1), ("sample_steps", 1)))
    lrs = m.lr_by_stage
    if not isinstance(lrs, (tuple, list)) or (lrs and (len(lrs) != len(res) or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in lrs))):
        raise ConfigError(f"cfebm.lr_by_stage must be () (train.lr's schedule) or one learning rate > 0 per "
                          f"resolution ({len(res)}), got {lrs!r}.")


@dataclasses.dataclass(frozen=True)
class StageEnergy:
    """Stage ``stage``'s energy on images block-averaged by ``factor`` first (1: the stage's own
    side); wrapped in a Partial over (variables, alpha)."""

    model: Any
    stage: int
    factor: int = 1

    def __call__(self, variables: Any, alpha: jax.Array, x: jax.Array) -> jax.Array:
        if self.factor > 1:
            x = ops.downsample(x, self.factor)
        return self.model.apply(variables, x, self.stage, alpha)


@dataclasses.dataclass(frozen=True)
class Enter:
    """``enter(x, key)`` of a sampling stage: up-sampling by 2 (pixel replication), clamping to
    ``bounds`` and, with ``alpha`` > 0, the smooth hand-over's noise mixing."""

    bounds: tuple[float, float] | None
    alpha: float = 0.0
    center: float = 0.5
    half: float = 0.5

    def __call__(self, x: jax.Array, key: jax.Array) -> jax.Array:
        x = ops.upsample(x, 2)
        if self.bounds is not None:
            x = jnp.clip(x, *self.bounds)
        if self.alpha > 0:
            x = handover(x, self.alpha, key, self.center, self.half)
        return x


@dataclasses.dataclass(frozen=True)
class UniformInit:
    """``init(key, n)``: n images of ``shape`` uniform on [low, high)."""

    shape: tuple[int, ...]
    low: float
    high: float

    def __call__(self, key: jax.Array, n: int) -> jax.Array:
        return jax.random.uniform(key, (n, *self.shape), jnp.float32, self.low, self.high)


@dataclasses.dataclass(frozen=True)
class ToImageSize:
    """``finish``: pixel replication by ``factor`` (a sample of a coarse stage at the data's size)."""

    factor: int

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.upsample(x, self.factor) if self.factor > 1 else x


def shifted(schedule: Any, start: int, count: Any) -> Any:
    """``schedule`` at step ``start + count``: the rate of a network whose updates began at ``start``."""
    return schedule(count + start)


def handover(x: jax.Array, alpha: Any, key: jax.Array, center: float, half: float) -> jax.Array:
    """The smooth hand-over into a fading stage: c + sqrt(1 - alpha^2) (x - c) + alpha half z."""
    z = jax.random.normal(key, x.shape, x.dtype)
    return center + jnp.sqrt(1.0 - alpha**2) * (x - center) + alpha * half * z


def build(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...],
          value_range: tuple[float, float] = (0.0, 1.0)) -> Method:
    """The CF-EBM method for images of ``example_shape`` (H, W, C) in ``value_range``."""
    m = cfg.cfebm
    check_config(m)
    if len(example_shape) != 3:
        raise ConfigError(f"method cfebm needs images (H, W, C); the data's examples have shape {example_shape}.")
    h, w, c = (int(d) for d in example_shape)
    res = tuple(int(r) for r in m.resolutions)
    if h != w or res[-1] != h:
        raise ConfigError(f"cfebm.resolutions must end at the image side: the images are {h}x{w}, the stages "
                          f"{res}. Set e.g. --config.cfebm.resolutions={','.join(str(h // 2**k) for k in (2, 1, 0))}.")
    if cfg.model.dtype not in _DTYPES:
        raise ConfigError(f"model.dtype must be one of {', '.join(_DTYPES)}, got {cfg.model.dtype!r}.")
    n_stages = len(res)
    lo, hi = (float(v) for v in value_range)
    center, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    classes = models.class_count(cfg.model)
    label = settings.sample_label(cfg, classes)
    model = ExpandingEnergy(resolutions=res, widths=tuple(int(v) for v in m.widths), head_width=int(m.head_width),
                            dtype=_DTYPES[cfg.model.dtype], conv=cfg.model.conv, classes=classes)
    batch = int(cfg.train.batch_size)
    phase_images = int(m.phase_images)
    phase_steps = math.ceil(phase_images / batch)
    starts = schedules.stage_starts(n_stages, phase_steps)
    boundaries = tuple(starts[1:])
    grow = m.variant == "grow"
    names = ("energy",) if grow else tuple(f"energy_{r}" for r in res)
    kernel = samplers.langevin_kernel(m.grad_clip, (lo, hi) if m.clamp else None)
    eps = float(np.sqrt(2.0 * m.step_size))
    bounds = (lo, hi) if m.clamp else None

    def stage_of(step: int) -> int:
        return sum(b <= step for b in boundaries)

    def alpha_at(step: Any, stage: int) -> Any:
        return 1.0 if stage == 0 else schedules.fade_alpha(step, starts[stage], batch, phase_images)

    if m.lr_by_stage:
        scale = float(cfg.train.get("lr_scale", 1.0))  # recovery from divergence scales these too
        lrs = jnp.asarray([float(v) * scale for v in m.lr_by_stage], jnp.float32)
        edges = jnp.asarray(boundaries, jnp.int32)

        def lr(step):
            return lrs[jnp.searchsorted(edges, jnp.asarray(step, jnp.int32), side="right")]
    else:
        lr = optim.adam(cfg.train)[1]

    def adam(schedule):
        return optim.adam_on(schedule, cfg.train)

    # Every schedule is of the run's step. Adam's count is a network's own number of updates: the one
    # network of grow is updated every step, but per_stage's network k only while stage k trains (the
    # others are frozen), so its count is the step minus the stage's start, and its schedule is shifted
    # by that start (read at its count alone it would run stage 0's rates first).
    optimizer = optim.per_network({name: adam(lr) if grow else adam(functools.partial(shifted, lr, starts[k]))
                                   for k, name in enumerate(names)})

    def variables(params, k):
        """Stage k's weights: the one network (grow) or W_k = D_0 + ... + D_k (per_stage)."""
        if grow:
            return params["energy"]
        return jax.tree.map(lambda *leaves: sum(leaves[1:], leaves[0]), *(params[names[j]] for j in range(k + 1)))

    def stage_network(params, k, alpha, factor=1):
        """Stage k's network f(x) (B,), or with classes its logits (B, K), as a Partial."""
        return jax.tree_util.Partial(StageEnergy(model, k, factor), variables(params, k), jnp.asarray(alpha, jnp.float32))

    def stage_energy(params, k, alpha, factor=1, y=None):
        """Stage k's energy; with classes E(x, y) at labels ``y`` (a class, one per row or -1), or
        E(x) = -logsumexp_y f(x)[y] when ``y`` is None."""
        return network_energy(stage_network(params, k, alpha, factor), classes, y)

    def sigmas(total):
        if m.cyclic_noise:
            return schedules.linear_decay(m.noise_max, total)
        return np.full(total, float(m.noise), np.float32)

    def init_params(key):
        first = init_all(model, key, c)
        if grow:
            return {"energy": first}
        zeros = jax.tree.map(jnp.zeros_like, first)
        return {name: (first if i == 0 else zeros) for i, name in enumerate(names)}

    def init_carry(key):
        del key
        return {"trained": jnp.zeros((), jnp.int32)}

    def chains(params, x, key, stage, alpha, n_steps, y):
        """Coarse-to-fine chains from x (at r_0) to stage ``stage`` (``alpha`` traced), each on its
        label's energy (``y``; None without classes)."""
        sig = sigmas((stage + 1) * n_steps)
        fading = alpha < 1.0
        for k in range(stage + 1):
            k_enter, k_chain = jax.random.split(jax.random.fold_in(key, k))
            if k > 0:
                x = ops.upsample(x, 2)
                if bounds is not None:
                    x = jnp.clip(x, *bounds)
                if k == stage and m.smooth_handover:
                    x = jnp.where(fading, handover(x, alpha, k_enter, center, half), x)
            temps = jnp.asarray(sig[k * n_steps:(k + 1) * n_steps] ** 2 / (2.0 * m.step_size))
            step_sizes = jnp.full((n_steps,), eps, jnp.float32)
            if m.smooth_handover and stage >= 1 and k == stage - 1:
                active = jnp.where(fading, jnp.floor(n_steps * (1.0 - alpha)), n_steps)
                on = (jnp.arange(n_steps) < active).astype(jnp.float32)
                temps, step_sizes = temps * on, step_sizes * on
            e_k = stage_energy(params, k, alpha if k == stage else 1.0, y=y)
            state, _ = samplers.run_chain(kernel, e_k, kernel.init(x), k_chain, temperatures=temps,
                                          step_sizes=step_sizes)
            x = state.position
        return x

    def loss(params, carry, batch, key, step, *, phase):
        del carry
        batch_x, y = split_labels(batch, classes)
        s = int(phase)
        k_data, k_init, k_chain = jax.random.split(key, 3)
        alpha = alpha_at(step, s)
        x_data = ops.downsample(batch_x, h // res[s])
        x_data = contrastive.noised(x_data, k_data, m.data_noise)
        x0 = UniformInit((res[0], res[0], c), lo, hi)(k_init, batch_x.shape[0])
        # The chains run with the parameters held constant: the samples carry no gradient.
        x_model = jax.lax.stop_gradient(chains(jax.lax.stop_gradient(params), x0, k_chain, s, alpha, int(m.steps), y))
        total, metrics = contrastive.step(stage_energy(params, s, alpha, y=y), None, x_data, x_model,
                                          energy_l2=m.energy_l2, grad_l2=m.grad_l2)
        metrics.update({"stage": jnp.float32(s), "side": jnp.float32(res[s]), "fade": jnp.asarray(alpha, jnp.float32)})
        return total, ({"trained": (jnp.asarray(step, jnp.int32) + 1)}, metrics)

    def probe(params, carry, batch, key, *, phase):
        batch_x, _ = split_labels(batch, classes)
        s = int(phase)
        alpha = alpha_at(jnp.maximum(carry["trained"] - 1, 0), s)
        noise = UniformInit((res[s], res[s], c), lo, hi)(key, batch_x.shape[0])
        return {"energy_noise": jnp.mean(stage_energy(params, s, alpha)(noise))}

    def reached(carry):
        """(stage, alpha) of the parameters that go with ``carry`` (the last step trained)."""
        last = max(int(np.asarray(carry["trained"])) - 1, 0) if carry is not None else None
        if last is None:
            return n_stages - 1, 1.0
        s = stage_of(last)
        return s, float(alpha_at(last, s))

    def energy(params, carry=None):
        s, alpha = reached(carry)
        return stage_energy(params, s, alpha, h // res[s])

    def logits(params):
        """The finished run's classifier: the last stage's f(x) (B, K), faded in fully."""
        return stage_network(params, n_stages - 1, 1.0, h // res[-1])

    def sampler(params, carry):
        s, alpha = reached(carry)
        k_steps = int(m.sample_steps)
        handing_over = bool(m.smooth_handover and s >= 1 and alpha < 1.0)
        counts = [k_steps] * (s + 1)
        if handing_over:
            counts[s - 1] = int(k_steps * (1.0 - alpha))
        sig = sigmas(sum(counts))
        offsets = np.cumsum([0, *counts])
        stages = tuple(
            Stage(f"{res[k]}x{res[k]}", stage_energy(params, k, alpha if k == s else 1.0, y=label), kernel,
                  sig[offsets[k]:offsets[k + 1]] ** 2 / (2.0 * m.step_size),
                  np.full(counts[k], eps, np.float32),
                  None if k == 0 else Enter(bounds, alpha if (handing_over and k == s) else 0.0, center, half))
            for k in range(s + 1))
        settings = {"kind": "cfebm", "init": "uniform", "variant": m.variant, "stage": s, "side": res[s],
                    "alpha": alpha, "steps": counts, "step": float(m.step_size), "cyclic_noise": bool(m.cyclic_noise),
                    "noise": float(m.noise_max if m.cyclic_noise else m.noise), "smooth_handover": bool(m.smooth_handover),
                    "grad_clip": m.grad_clip, "clamp": bool(m.clamp)}
        smp = Sampler(jax.tree_util.Partial(UniformInit((res[0], res[0], c), lo, hi)), stages,
                      jax.tree_util.Partial(ToImageSize(h // res[s])), settings)
        return smp._replace(pictures=lambda out_dir, key: stages_picture(smp, res, out_dir, key))

    # The density the chains sample is exp(-E / T), T = sigma^2 / (2 step) (cyclic: at its largest
    # sigma); chains without noise descend the energy, for which restoration weighs it as T = 1.
    chain_t = float(samplers.decoupled(m.step_size, m.noise_max if m.cyclic_noise else m.noise)[1])
    return Method(
        name="cfebm", networks={name: model for name in names}, init_params=init_params, optimizer=optimizer,
        learning_rates={name: lr for name in names}, init_carry=init_carry, carry_specs={"trained": P()},
        loss=loss, probe=probe, energy=energy, sampler=sampler, denoise_sigma=None,
        temperature=chain_t if chain_t > 0 else 1.0,
        bounds=contrastive.energy_bounds(m, "cfebm"),
        identity=("cfebm.resolutions", "cfebm.widths", "cfebm.head_width", "cfebm.variant", "cfebm.phase_images",
                  "train.batch_size", "model.classes"),
        labels=classes, classifier=logits if classes else None,
        phase=stage_of, phase_boundaries=boundaries,
        frozen=None if grow else (lambda s: frozenset(n for i, n in enumerate(names) if i != int(s))))


def stages_picture(sampler: Sampler, res: tuple[int, ...], out_dir: str | pathlib.Path, key: jax.Array,
                   n: int = PICTURE_CHAINS) -> list[str]:
    """Writes ``stages.png``: the chains' uniform start (top), then their end at every stage, coarse to
    fine, ``n`` chains in columns, every image shown at the last stage's size. Returns the names."""
    rows = pictures.stage_ends(sampler, key, n)
    reached = res[:len(sampler.stages)]
    names = ", ".join(f"{r}x{r}" for r in reached)
    pictures.save_rows(rows, reached[-1], pathlib.Path(out_dir) / PICTURE,
                       f"CF-EBM chains: the uniform start, then the end of each stage ({names})")
    return [PICTURE]
