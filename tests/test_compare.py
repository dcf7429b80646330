"""``python -m ebmjax.compare``: every config trained, sampled and evaluated the same way, one row
each; a failing config reported in its row; a second call resumes instead of redoing."""

import json
import pathlib

import numpy as np
import pytest

from ebmjax.apps import compare
from scale_helpers import DIGITS

# A digits MDSM run small enough to train, sample and evaluate in seconds.
TINY = ["--config.model.width=4", "--config.model.blocks_per_stage=0", "--config.train.batch_size=8",
        "--config.train.steps=4", "--config.train.log_every=2", "--config.train.checkpoint_every=4",
        "--config.train.warmup_steps=0", "--config.mdsm.n_hot=2", "--config.mdsm.n_anneal=4",
        "--config.mdsm.n_cool=2", "--config.sample.batch_size=16", "--config.eval.ood.n=32",
        "--config.eval.n_data=64", "--config.eval.kid_subsets=2", "--config.eval.neighbours_summary=16"]


@pytest.mark.slow  # about 50 s on 2 CPU cores; the whole suite (CI) runs it
def test_compare_rows_failures_and_resume(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("from ebmjax.config import defaults\n\n\ndef get_config():\n    c = defaults()\n"
                      "    c.data.name = 'no_such_data'\n    return c\n")
    wd = tmp_path / "cmp"
    args = ["--configs", DIGITS, str(broken), "--workdir", str(wd), "--n-samples", "16", *TINY]
    assert compare.run(args) == 1  # one config failed
    rows = json.loads((wd / "table.json").read_text())
    assert [r["name"] for r in rows] == ["mdsm_digits", "broken"]
    ok, bad = rows
    assert ok["failure"] is None and ok["method"] == "mdsm" and ok["n_samples"] == 16
    assert ok["train_steps"] == 4 and ok["train_img_per_s"] > 0 and ok["sample_img_steps_per_s"] > 0
    assert 0 <= ok["confident_share"] <= 1 and 0 <= ok["label_entropy"] <= 1
    assert ok["fid"] > 0 and ok["nn_ratio"] > 0 and 1 <= ok["modes_covered"] <= 10
    assert set(ok["ood_auroc"]) == {"uniform", "constant", "interpolation", "faces"}
    assert all(0 <= v <= 1 for v in ok["ood_auroc"].values())
    assert bad["failure"].startswith("train: exit code 2: ebmjax: error: Unknown data.name 'no_such_data'")
    table = (wd / "table.md").read_text()
    assert "| mdsm | `mdsm_digits` |" in table and "failed in train: exit code 2" in table
    assert (wd / "samples.png").stat().st_size > 0
    assert "1 of 2 configs failed: broken" in capsys.readouterr().err

    # Again: the finished config is not run again (its log gains no command); the failed one is retried.
    log = wd / "mdsm_digits" / "compare.log"
    commands = log.read_text().count("$ python -m ebmjax.main")
    assert commands == 2  # train (+ sample), eval
    assert compare.run(args) == 1
    assert log.read_text().count("$ python -m ebmjax.main") == commands
    assert (wd / "broken" / "compare.log").read_text().count("$ python -m ebmjax.main") == 2
    assert json.loads((wd / "table.json").read_text())[0] == ok


def test_compare_refuses_missing_config_files(tmp_path, capsys):
    assert compare.run(["--configs", str(tmp_path / "nope.py"), "--workdir", str(tmp_path / "w")]) == 2
    assert "No config file" in capsys.readouterr().err
    assert compare.table_markdown([]).count("\n") == 2  # the header alone


def test_row_time_is_the_runs_own_clocks_summed_over_resumes(tmp_path):
    # Two logged windows, the second after a resume: 100 steps at 2/s and 50 at 1/s = 100 s of training;
    # sampling took 20 s (an older summary without drawing_seconds). The compare stage's wall time plays no part.
    sub = tmp_path / "run"
    (sub / "samples").mkdir(parents=True)
    (sub / "metrics.jsonl").write_text(
        '{"step": 100, "window_steps": 100, "steps_per_s": 2.0}\n{"step": 150, "window_steps": 50, "steps_per_s": 1.0}\n')
    (sub / "samples" / "summary.json").write_text(json.dumps({"method": "ml", "n": 8, "seconds": 20.0}))
    (sub / "config.json").write_text(json.dumps({"train": {"batch_size": 4}}))
    row = compare.row_figures(sub)
    assert row["train_steps"] == 150 and row["train_steps_s"] == 100.0 and row["sample_s"] == 20.0
    assert row["train_img_per_s"] == 4.0  # the speed leaves out the first window (compilation): 1 step/s x 4
    table = compare.table_markdown([{"name": "run", "config": "c.py", "failure": None, **row}])
    assert "| 1.7 min | 0.3 min | – |" in table  # training, sampling, eval (not run)
    # A sampling call that reused every shard reports the seconds the shards took when they were drawn.
    (sub / "samples" / "summary.json").write_text(json.dumps({"seconds": 0.5, "drawing_seconds": 30.0}))
    assert compare.row_figures(sub)["sample_s"] == 30.0
    # An older summary of a call that reused shards cannot say how long they took: unknown, not 0.5 s.
    (sub / "samples" / "summary.json").write_text(json.dumps({"seconds": 0.5, "batches_reused": 1}))
    assert compare.row_figures(sub)["sample_s"] is None


def test_suites_name_existing_configs_and_their_own_workdirs():
    root = pathlib.Path(__file__).resolve().parents[1]
    for suite, configs in compare.SUITES.items():
        assert all((root / c).is_file() for c in configs), suite
        args, _ = compare.parse_args(["--suite", suite])
        assert args.configs == list(configs)
        assert args.workdir == ("runs/compare" if suite == "digits" else f"runs/compare_{suite}")
    args, _ = compare.parse_args(["--configs", "a.py"])
    assert args.configs == ["a.py"] and args.workdir == "runs/compare"


def test_the_picture_shows_every_row_at_the_same_scale(tmp_path):
    """28x28 samples beside 32x32 ones (MNIST padded for MDSM and CF-EBM) are centred on black at
    32x32: the picture is as wide as if every row were 32x32."""
    from PIL import Image

    from ebmjax import visualize

    rng = np.random.default_rng(0)
    mixed, same = tmp_path / "mixed.png", tmp_path / "same.png"
    visualize.save_labelled_rows([("a", rng.random((3, 28, 28, 1))), ("b", rng.random((3, 32, 32, 1)))], mixed)
    visualize.save_labelled_rows([("a", rng.random((3, 32, 32, 1))), ("b", rng.random((3, 32, 32, 1)))], same)
    assert Image.open(mixed).size == Image.open(same).size
