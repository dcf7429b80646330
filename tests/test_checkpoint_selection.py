"""Choosing the checkpoint: the scan of --mode eval and train.keep_best pick the checkpoint a planted
score makes best, and --config.sample.checkpoint=best samples from it."""

import json

import numpy as np
import pytest

from ebmjax.apps import main
from ebmjax.evaluation import scan
from scale_helpers import DIGITS, TINY

PLANTED_BEST = 30


@pytest.mark.slow  # three CLI runs; runs in CI (the README's test command)
def test_eval_scan_picks_the_planted_best_and_sampling_uses_it(tmp_path, monkeypatch, capsys):
    wd = tmp_path / "run"
    common = ["--config", DIGITS, "--workdir", str(wd), *TINY, "--config.train.steps=50",
              "--config.train.keep_checkpoints=5", "--config.sample.batch_size=8", "--config.mdsm.n_hot=2",
              "--config.mdsm.n_anneal=4", "--config.mdsm.n_cool=2", "--config.sample.chunk_steps=8"]
    assert main.run(common) == 0
    from ebmjax.train import loop

    steps_asked = []
    real_load = loop.load_trained

    def spy(cfg, workdir, *, mesh=None, step=None):
        steps_asked.append(step)
        return real_load(cfg, workdir, mesh=mesh, step=step)

    monkeypatch.setattr(loop, "load_trained", spy)
    monkeypatch.setattr(scan.Scorer, "__call__",
                        lambda self, x: {"fid": float(abs(steps_asked[-1] - PLANTED_BEST)),
                                         "confident_share": 0.0, "label_entropy": 0.0})
    assert main.run([*common, "--mode", "eval", "--config.eval.checkpoints=all", "--config.eval.scan_samples=8",
                     "--config.eval.metrics=neighbours", "--config.eval.n_samples=8"]) == 0
    best = json.loads((wd / "eval" / "best_checkpoint.json").read_text())
    assert best["best_step"] == PLANTED_BEST and [s["step"] for s in best["scores"]] == [10, 20, 30, 40, 50]
    assert (wd / "eval" / "quality_vs_step.png").stat().st_size > 0
    report = json.loads((wd / "eval" / "report.json").read_text())
    assert report["step"] == PLANTED_BEST  # the full evaluation ran on the best checkpoint
    steps_asked.clear()
    assert main.run([*common, "--mode", "sample", "--config.sample.checkpoint=best", "--config.sample.n=4"]) == 0
    assert steps_asked == [PLANTED_BEST]
    assert main.run([*common, "--mode", "sample", "--config.sample.checkpoint=35"]) == 2
    assert "No checkpoint at step 35" in capsys.readouterr().err


@pytest.mark.slow  # a CLI run that samples at every checkpoint; runs in CI
def test_training_keeps_the_newest_and_the_best(tmp_path, monkeypatch):
    """keep_checkpoints=1, keep_best=2, scores fid = |step - 30|: after 60 steps the newest (60) and
    the two best (30, then 20 and 40 tie: the later step wins) remain, and their scores are on disk."""
    calls = []

    def score(self, samples):
        step = 10 * (len(calls) + 1)
        calls.append(step)
        return {"fid": float(abs(step - PLANTED_BEST)), "confident_share": 0.0, "label_entropy": 0.0}

    monkeypatch.setattr(scan.Scorer, "__call__", score)
    wd = tmp_path / "run"
    assert main.run(["--config", DIGITS, "--workdir", str(wd), *TINY, "--config.train.steps=60",
                     "--config.train.keep_checkpoints=1", "--config.train.keep_best=2",
                     "--config.eval.scan_samples=8", "--config.sample.batch_size=8", "--config.mdsm.n_hot=2",
                     "--config.mdsm.n_anneal=4", "--config.mdsm.n_cool=2", "--config.sample.chunk_steps=8"]) == 0
    assert calls == [10, 20, 30, 40, 50, 60]
    kept = sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == [30, 40, 60]
    scores = json.loads((wd / "checkpoint_scores.json").read_text())
    assert sorted(map(int, scores)) == kept and scores["30"]["fid"] == 0.0


def test_best_of_breaks_ties_towards_the_later_step():
    scores = [{"step": 10, "fid": 3.0, "confident_share": 0.2}, {"step": 20, "fid": 1.0, "confident_share": 0.9},
              {"step": 30, "fid": 1.0, "confident_share": 0.4}]
    assert scan.best_of(scores, "fid")["step"] == 30
    assert scan.best_of(scores, "confident_share")["step"] == 20
    with pytest.raises(Exception, match="select_by"):
        scan.best_of(scores, "kid")
    np.testing.assert_equal(scan.read_best("/nonexistent"), None)
