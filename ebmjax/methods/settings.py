"""What a method's config group is made of: its fields, the rules its numbers obey, and the chain
settings that every maximum-likelihood method shares.

Each method module owns its group: ``settings()`` returns the group with every field's default
(documented where it is set), ``RULES`` lists its number fields as ``(field, what it is, rule)``,
and ``check_config`` applies the rules and the checks that are not about one number.
:func:`ebmjax.config.defaults` assembles the groups of every method in
:data:`ebmjax.methods.METHODS`, so one schema still catches every typo.

Rules: ``"> 0"`` and ``">= 0"`` (finite), ``"[0, 1)"``, ``"(0, 1)"``, ``"finite"``, ``">= 0 or inf"``.
A rule applies to a number; ``None`` (an optional setting left off) and tuples (per-grid settings)
are checked by their method.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import ml_collections

from ebmjax.errors import ConfigError
from ebmjax.samplers.conditioning import ROW

Rule = tuple[str, str, str]  # (field, what it is, rule)

RULE_TEXT = {"> 0": "a finite number > 0", ">= 0": "a finite number >= 0", "[0, 1)": "a number in [0, 1)",
             "(0, 1)": "a number strictly between 0 and 1", "(0, 1]": "a number in (0, 1]", "finite": "a finite number",
             ">= 0 or inf": "a number >= 0"}

# The Langevin chains of every maximum-likelihood method (ml, multigrid, cfebm, coop):
# x <- clamp(x - step_size * clip(dE/dx, grad_clip) + noise * z), trained against the data plus
# N(0, data_noise^2), with a penalty energy_l2 * (mean E(data)^2 + mean E(chains)^2), a bound
# on |mean energy| past which an update counts as diverged, and an optional one on the gap
# mean E(chains) - mean E(data) (chains that no longer reach the data).
CHAIN_RULES: tuple[Rule, ...] = (
    ("step_size", "the Langevin step on the energy's gradient", "> 0"),
    ("noise", "the Langevin noise", ">= 0"),
    ("grad_clip", "the clip of the chains' gradients", "> 0"),
    ("data_noise", "the noise added to the data", ">= 0"),
    ("energy_l2", "the weight of the energy penalty", ">= 0"),
    ("grad_l2", "the weight of the input-gradient penalty", ">= 0"),
    ("energy_bound", "the energy magnitude at which the run stops", "> 0"),
    ("gap_bound", "the bound on the chains' energy minus the data's", "> 0"),
)


def chain_settings(group: ml_collections.ConfigDict, *, step_size: Any, noise: Any, grad_clip: float | None = None,
                   clamp: bool = True, data_noise: float = 0.0, energy_l2: float = 0.0,
                   energy_bound: float = 1e4) -> None:
    """Adds the nine chain settings every maximum-likelihood method has to ``group``, with the
    method's defaults (a method's ``settings()`` calls it)."""
    group.step_size = step_size  # step on the energy's gradient
    group.noise = noise  # std of the Langevin noise added every step
    # clip each gradient entry of the chains to +-grad_clip (IGEBM: 0.01); None: no clipping
    group.grad_clip = ml_collections.config_dict.placeholder(float) if grad_clip is None else grad_clip
    group.clamp = clamp  # clamp the chains to the data's range after every step
    group.data_noise = data_noise  # std of Gaussian noise added to the data (short-run, JEM: 0.03 on [-1, 1])
    group.energy_l2 = energy_l2  # weight of mean E(data)^2 + mean E(chains)^2 in the loss (IGEBM: 1.0)
    # weight of mean |dE/dx|^2 at the data + the same at the chains' ends (0: off): keeps the landscape
    # from steepening under a Langevin step of fixed size (ebmjax.losses.ml_loss)
    group.grad_l2 = 0.0
    group.energy_bound = energy_bound  # an update whose |mean energy| of data or chains passes this counts as diverged
    # an update whose mean E(chains) - mean E(data) passes this counts as diverged (None: no bound): the
    # chains have lost the data, the failure persistent chains show when the energy outruns them
    # (JEM on MNIST); with train.recover = N the run then goes back to its last good checkpoint
    # with the learning rates times train.recover_lr, as users of the originals do by hand
    group.gap_bound = ml_collections.config_dict.placeholder(float)


def obeys(value: float, rule: str) -> bool:
    """Whether the number ``value`` obeys ``rule`` (NaN obeys none)."""
    if math.isnan(value):
        return False
    return {"> 0": lambda v: math.isfinite(v) and v > 0, ">= 0": lambda v: math.isfinite(v) and v >= 0,
            "[0, 1)": lambda v: 0 <= v < 1, "(0, 1)": lambda v: 0 < v < 1, "(0, 1]": lambda v: 0 < v <= 1,
            "finite": math.isfinite,
            ">= 0 or inf": lambda v: v >= 0}[rule](value)


def broken_rule(value: Any, rule: str) -> bool:
    """Whether ``value`` is a number (not a bool, None or a tuple) that breaks ``rule``."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not obeys(float(value), rule)


def rule_message(name: str, what: str, rule: str, value: Any, default: Any = None) -> str:
    hint = f" (the default is {default})" if default is not None else ""
    return (f"{name} must be {RULE_TEXT[rule]} (it is {what}); got {value}. Set another value with "
            f"--config.{name}=VALUE or in the config file{hint}.")


def check_numbers(group: ml_collections.ConfigDict, name: str, rules: Iterable[Rule]) -> None:
    """ConfigError naming ``<name>.<field>`` for the first number of ``group`` that breaks its rule."""
    for field, what, rule in rules:
        if field in group and broken_rule(group[field], rule):
            raise ConfigError(rule_message(f"{name}.{field}", what, rule, group[field]))


def check_counts(group: ml_collections.ConfigDict, name: str, fields: Iterable[tuple[str, int]]) -> None:
    """ConfigError unless each ``(field, low)`` of ``group`` is an integer >= low."""
    for field, low in fields:
        value = group[field]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name}.{field} must be an integer >= {low}, got {value!r}.")


def sample_label(cfg: ml_collections.ConfigDict, classes: int) -> int | None:
    """``sample.label`` checked against a classifier of ``classes`` classes (None: the marginal)."""
    label = cfg.sample.label
    if label is None:
        return None
    if classes == 0:
        raise ConfigError(f"sample.label = {label} needs a class-conditional model (model.classes = K; every method "
                          "learns one from labelled data); this one has no classes. Drop --config.sample.label.")
    if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < classes:
        raise ConfigError(f"sample.label must be a class 0..{classes - 1}, or -1 for every class in turn (one grid row "
                          f"each); got {label!r}.")
    rows = ROW * classes
    if label == -1 and cfg.sample.n > cfg.sample.batch_size and cfg.sample.batch_size % rows:
        raise ConfigError(f"sample.label = -1 gives each row of {ROW} samples one class in turn, counted within a "
                          f"batch of chains, so sample.batch_size must be a multiple of {rows} when the "
                          f"{cfg.sample.n} samples take several batches; got {cfg.sample.batch_size}.")
    return label
