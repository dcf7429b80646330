"""Choosing the checkpoint: sample quality at every saved step, and the best one.

The MDSM original keeps a checkpoint every 5k steps and picks the one with the best FID on 1000
samples. :class:`Scorer` gives the quick score of one set of samples (with the dataset's judge,
``ebmjax.data.judges``: the FID in its features against test images, the share it recognises and
the label entropy; on data without a judge the Inception FID when ``eval.inception_weights`` is
given); :func:`scan_to_workdir` (``--mode eval``
with ``eval.checkpoints = "all"``) draws ``eval.scan_samples`` samples from every checkpoint with the
same key, scores them, and writes ``eval/quality_vs_step.png`` and ``eval/best_checkpoint.json``,
which ``--config.sample.checkpoint=best`` then uses.
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from ebmjax import io, keys
from ebmjax.errors import ConfigError
from ebmjax.evaluation import metrics, quality

log = logging.getLogger(__name__)

BEST_FILE = "best_checkpoint.json"
# The score each checkpoint is ranked by, and whether lower is better.
SELECT_BY = {"fid": True, "confident_share": False}


class Scorer:
    """Scores sets of samples against the test split, with the features computed once."""

    def __init__(self, cfg: ml_collections.ConfigDict, test_images: np.ndarray):
        from ebmjax import data

        self.kind = None
        self.clf = data.judge_for(cfg.data, cfg.eval.classifier_seed, tuple(test_images.shape[1:]))
        if self.clf is not None:
            self.kind = "judge"
            _, self.ref = self.clf.logits_and_features(test_images)
        elif cfg.eval.inception_weights is not None:
            from ebmjax.evaluation.inception import load_inception

            self.kind = "inception"
            self.net = load_inception(cfg.eval.inception_weights, batch_size=min(cfg.eval.batch_size, 200))
            self.ref, _ = self.net(test_images)
        else:
            raise ConfigError(
                f"Scoring checkpoints needs a feature network: a judge of the dataset (data.name={cfg.data.name!r} has "
                "none) or the Inception weights (--config.eval.inception_weights=PATH). Neither applies to this run.")

    def __call__(self, samples: np.ndarray) -> dict[str, float]:
        if self.kind == "judge":
            logits, feats = self.clf.logits_and_features(samples)
            probs = np.asarray(jax.nn.softmax(logits, axis=-1), np.float64)
            q = quality.summary(probs)
            return {"fid": metrics.frechet_distance(feats, self.ref), "confident_share": q["confident_share"],
                    "label_entropy": q["label_entropy"]}
        feats, _ = self.net(samples)
        return {"fid": metrics.frechet_distance(feats, self.ref)}


def best_of(scores: list[dict[str, Any]], select_by: str) -> dict[str, Any]:
    """The entry of ``scores`` (dicts with "step" and the metric) that is best by ``select_by``
    (lowest FID, highest confident share); the later step wins a tie."""
    if select_by not in SELECT_BY:
        raise ConfigError(f"eval.select_by must be one of {', '.join(SELECT_BY)}, got {select_by!r}.")
    if not scores:
        raise ConfigError("No checkpoint was scored.")
    sign = 1.0 if SELECT_BY[select_by] else -1.0
    return min(scores, key=lambda s: (sign * s[select_by], -s["step"]))


def read_best(workdir: str | pathlib.Path) -> dict[str, Any] | None:
    path = pathlib.Path(workdir) / "eval" / BEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def scan_to_workdir(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                    load: Callable[[int], tuple[Any, Any]], steps: list[int], test_images: np.ndarray, *,
                    progress: bool = True) -> dict[str, Any]:
    """Scores ``eval.scan_samples`` samples of every checkpoint step in ``steps`` (``load(step) ->
    (sampler, step)``) with one key, and writes the picture and ``best_checkpoint.json``."""
    from ebmjax import chains
    from ebmjax.evaluation import plots

    e = cfg.eval
    scorer = Scorer(cfg, test_images)
    key = keys.stream(cfg.seed, keys.CHECKPOINT_SCORES)
    scores = []
    for i, step in enumerate(steps):
        sampler, _ = load(step)
        x, _ = chains.draw(sampler, int(e.scan_samples), key, batch_size=cfg.sample.batch_size,
                             chunk_steps=cfg.sample.chunk_steps, progress=progress,
                             unroll_steps=cfg.sample.unroll_steps)
        entry = {"step": int(step), **scorer(x)}
        scores.append(entry)
        log.info("Checkpoint %d (%d of %d): %s", step, i + 1, len(steps),
                 ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "step"))
    best = best_of(scores, e.select_by)
    out_dir = pathlib.Path(workdir) / "eval"
    report = {"select_by": e.select_by, "lower_is_better": SELECT_BY[e.select_by], "best_step": best["step"],
              "best": best, "n_samples": int(e.scan_samples), "scorer": scorer.kind, "scores": scores}
    if jax.process_index() == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        plots.quality_vs_step(scores, out_dir / "quality_vs_step.png", best_step=best["step"],
                              title=f"{cfg.method.name} on {cfg.data.name}: {e.scan_samples} samples per checkpoint")
        io.write_json_atomic(out_dir / BEST_FILE, report)
        log.info("Best checkpoint by %s: step %d (%s); wrote %s", e.select_by, best["step"],
                 f"{best[e.select_by]:.4g}", out_dir / BEST_FILE)
    return report
