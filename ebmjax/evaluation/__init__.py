"""Evaluation (layer 3 around layer-1 mathematics): sample quality, likelihood bounds, OOD, overfitting, modes.

Pure functions of arrays / ``energy_fn`` (jax or numpy only):

- :func:`frechet_distance`, :func:`kernel_inception_distance`, :func:`inception_score` (``metrics``)
- :func:`ais_log_partition` (forward AIS, lower bound), :func:`reverse_ais_log_partition` (upper
  bound), :func:`ais_betas`, :func:`nll_bits_per_dim` (``ais``)
- :func:`ood_auroc`, :func:`roc_curve`, :func:`noisy_energies` (``ood``)
- :func:`calibration_bins`, :func:`expected_calibration_error`, :func:`bootstrap_std`,
  :func:`fit_temperature` (``calibration``): a classifier's ECE, the error bars of its figures, and
  temperature scaling
- :func:`nearest_neighbours` (``neighbours``), :func:`mode_coverage`, :func:`stacked_digits` (``coverage``)

Feature networks: each dataset's judge (``ebmjax.data.judge_for``; the digits classifier, the MNIST
judge) and :class:`InceptionV3FID` with :func:`load_inception` (weights file by path; nothing
downloaded).
``python -m ebmjax.main --mode eval`` runs :func:`ebmjax.apps.evaluate.evaluate_to_workdir` over these.

Modules that pull in heavy dependencies (Flax networks) are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from ebmjax.evaluation.ais import (
    AISResult,
    ais_betas,
    ais_log_partition,
    bridged_step_sizes,
    nll_bits_per_dim,
    reference_log_partition,
    reverse_ais_log_partition,
)
from ebmjax.evaluation.calibration import (
    Calibration,
    bootstrap_std,
    calibration_bins,
    expected_calibration_error,
    fit_temperature,
    softmax,
)
from ebmjax.evaluation.coverage import (
    CoverageResult,
    channel_labels,
    expected_covered_modes,
    mode_coverage,
    mode_ids,
    stacked_digits,
)
from ebmjax.evaluation.metrics import (
    FeatureStats,
    ISResult,
    KIDResult,
    feature_stats,
    frechet_distance,
    frechet_distance_from_stats,
    inception_score,
    kernel_inception_distance,
)
from ebmjax.evaluation.neighbours import Neighbours, nearest_neighbours, neighbour_grid
from ebmjax.evaluation.ood import (
    constant_images,
    energies,
    interpolations,
    noisy_energies,
    ood_auroc,
    roc_curve,
    uniform_noise,
)

_LAZY = {
    "InceptionV3FID": "ebmjax.evaluation.inception",
    "InceptionFeatures": "ebmjax.evaluation.inception",
    "load_inception": "ebmjax.evaluation.inception",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ebmjax.evaluation' has no attribute {name!r}")


__all__ = [
    "AISResult",
    "Calibration",
    "bootstrap_std",
    "calibration_bins",
    "expected_calibration_error",
    "fit_temperature",
    "softmax",
    "CoverageResult",
    "FeatureStats",
    "ISResult",
    "KIDResult",
    "Neighbours",
    "ais_betas",
    "ais_log_partition",
    "bridged_step_sizes",
    "channel_labels",
    "constant_images",
    "energies",
    "expected_covered_modes",
    "feature_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "inception_score",
    "interpolations",
    "kernel_inception_distance",
    "mode_coverage",
    "mode_ids",
    "nearest_neighbours",
    "neighbour_grid",
    "nll_bits_per_dim",
    "noisy_energies",
    "ood_auroc",
    "reference_log_partition",
    "reverse_ais_log_partition",
    "roc_curve",
    "stacked_digits",
    "uniform_noise",
    *_LAZY,
]
