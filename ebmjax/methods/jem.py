"""JEM, the joint energy-based model (Grathwohl et al., 2019): a classifier that is also a generative model.

One network, ``energy`` (``model.*`` with ``model.classes`` = K), whose logits f(x) define
p(y | x) = softmax(f(x))[y], E(x, y) = -f(x)[y] and E(x) = -logsumexp_y f(x)[y]. Every training step
adds ``jem.classifier_weight`` x the cross-entropy of p(y | x) on the labelled batch (plus
``ml.data_noise``) to ``jem.generative_weight`` x maximum likelihood on E(x), whose chains are the
``ml`` group's (JEM's own: persistent chains in a replay buffer of 10,000, 5% restarted from
uniform noise, 20 SGLD steps). ``jem.generative_weight = 0`` trains the same network as a plain
classifier (no chains run): the baseline JEM is judged against.

``--mode sample`` samples E(x), or E(x, k) with ``--config.sample.label=k`` (``-1``: one grid row
per class); ``--mode eval`` adds the classifier's figures (``eval.metrics`` "classifier": test
accuracy, expected calibration error, OOD AUROC by max-softmax beside the energy's).
"""

from __future__ import annotations

import ml_collections

from ebmjax.errors import ConfigError
from ebmjax.methods import ml, settings
from ebmjax.methods.base import Method


def defaults() -> ml_collections.ConfigDict:
    """The ``jem`` config group (its chains are the ``ml`` group's)."""
    g = ml_collections.ConfigDict()
    g.classifier_weight = 1.0  # weight of the cross-entropy of p(y|x) on the labelled data
    g.generative_weight = 1.0  # weight of maximum likelihood on E(x) = -logsumexp f(x); 0: a plain classifier (no chains)
    return g


RULES = (("classifier_weight", "the weight of the classifier's cross-entropy", ">= 0"),
         ("generative_weight", "the weight of maximum likelihood on E(x)", ">= 0"))


def check_config(g: ml_collections.ConfigDict) -> None:
    """ConfigError for settings of the ``jem`` group that cannot work."""
    settings.check_numbers(g, "jem", RULES)
    if g.classifier_weight == 0 and g.generative_weight == 0:
        raise ConfigError("jem.classifier_weight and jem.generative_weight are both 0: nothing would be learned. "
                          "Set at least one > 0.")


def carried_rows(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
    """The replay buffer's rows, when chains run (``ml.init = buffer``)."""
    return ml.carried_rows(cfg) if cfg.jem.generative_weight > 0 else ()


def build(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...],
          value_range: tuple[float, float] = (0.0, 1.0)) -> Method:
    """JEM on examples of ``example_shape``: :func:`ebmjax.methods.ml.build` with JEM's objective."""
    check_config(cfg.jem)
    hybrid = ml.Hybrid(float(cfg.jem.classifier_weight), float(cfg.jem.generative_weight))
    method = ml.build(cfg, example_shape, value_range, hybrid=hybrid)
    return method._replace(identity=(*method.identity, "jem.generative_weight"))
