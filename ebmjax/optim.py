"""Optimisers (layer 2): Adam on the configs' learning-rate schedules, one transformation per network.

Methods build their optimisers from these, below the training loop that applies them
(:mod:`ebmjax.train`): a method's record holds the transformation, the loop only calls it.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import ml_collections
import optax


def adam_on(schedule: Any, opt_cfg: Any) -> optax.GradientTransformation:
    """Adam with ``opt_cfg``'s b1, b2, eps on ``schedule`` (a schedule or a constant); with
    ``clip_norm`` > 0 in ``opt_cfg``, the gradient is first scaled down to that global norm where it
    is longer (``optax.clip_by_global_norm``; over the tree the transformation updates, so one
    network's gradient under :func:`per_network`). The optimiser state is Adam's either way, so a
    run's checkpoints resume with clipping turned on or off."""
    tx = optax.adam(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps)
    clip = float(opt_cfg.get("clip_norm", 0.0) or 0.0)
    if clip <= 0:
        return tx
    clipper = optax.clip_by_global_norm(clip)  # stateless

    def update(updates, state, params=None):
        clipped, _ = clipper.update(updates, optax.EmptyState())
        return tx.update(clipped, state, params)

    return optax.GradientTransformation(tx.init, update)


def adam(opt_cfg: Any, steps: int | None = None) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(Adam on the cosine schedule, the schedule) from a group with fields lr, lr_end, b1, b2, eps
    (and steps, unless given; warmup_steps, if present: a linear warm-up from 0 to lr first, the
    cosine decay then spanning the remaining steps; a run no longer than the warm-up only ramps up;
    lr_scale, if present: a factor on lr and lr_end; clip_norm, if present and > 0: gradients clipped
    to that global norm first, :func:`adam_on`)."""
    steps = opt_cfg.steps if steps is None else steps
    warmup = int(opt_cfg.get("warmup_steps", 0) or 0)
    scale = float(opt_cfg.get("lr_scale", 1.0))  # a factor on the whole schedule (recovery from divergence)
    lr, lr_end = float(opt_cfg.lr) * scale, float(opt_cfg.lr_end) * scale
    if warmup >= steps:
        schedule = optax.linear_schedule(0.0, lr, warmup)
    elif warmup:
        schedule = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, steps, end_value=lr_end)
    else:
        schedule = optax.cosine_decay_schedule(lr, steps, alpha=lr_end / lr)
    return adam_on(schedule, opt_cfg), schedule


def adam_like(train_cfg: Any, lr: float, b1: float, b2: float) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(Adam, schedule) of a second network: ``train_cfg``'s schedule shape (steps, warm-up, cosine
    decay to the same fraction lr_end / lr) and gradient clipping, with its own learning rate and betas."""
    fraction = float(train_cfg.lr_end) / float(train_cfg.lr)
    return adam(ml_collections.ConfigDict({
        "steps": int(train_cfg.steps), "warmup_steps": int(train_cfg.get("warmup_steps", 0) or 0), "lr": float(lr),
        "lr_end": float(lr) * fraction, "b1": float(b1), "b2": float(b2), "eps": float(train_cfg.eps),
        "lr_scale": float(train_cfg.get("lr_scale", 1.0)), "clip_norm": float(train_cfg.get("clip_norm", 0.0) or 0.0)}))


def per_network(transforms: Mapping[str, optax.GradientTransformation]) -> optax.GradientTransformation:
    """One transformation over a params dict {network name: tree}: each network gets its own."""
    names = tuple(transforms)

    def labels(params):
        if set(params) != set(names):
            raise ValueError(f"params hold networks {sorted(params)}, the optimiser expects {sorted(names)}")
        return {k: jax.tree.map(lambda _, k=k: k, v) for k, v in params.items()}

    return optax.multi_transform(dict(transforms), labels)
