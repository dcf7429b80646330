"""End to end through the command line: training, resume, sampling, and clear errors."""

import hashlib
import json
import logging
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ebmjax.apps import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "configs" / "mdsm_digits.py")
TOY = str(ROOT / "configs" / "mdsm_toy2d.py")

TINY = [
    "--config.model.width=4", "--config.train.batch_size=32", "--config.train.log_every=20",
    "--config.train.checkpoint_every=40", "--config.train.lr=3e-3", "--config.sample.n=6",
    "--config.sample.batch_size=6", "--config.mdsm.n_hot=5", "--config.mdsm.n_anneal=20",
    "--config.mdsm.n_cool=5", "--config.sample.chunk_steps=10", "--config.train.warmup_steps=0", "--no-progress",
]


def metrics(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # about 102 s on 2 CPU cores; the whole suite (CI) runs it
def test_digits_train_resume_sample(tmp_path, caplog):
    wd = tmp_path / "run"
    assert main.run(["--config", DIGITS, "--workdir", str(wd), "--config.train.steps=80", *TINY]) == 0
    rec = metrics(wd)
    assert [r["step"] for r in rec] == [20, 40, 60, 80]
    assert rec[-1]["loss"] < 0.7 * rec[0]["loss"], rec  # it learns
    assert all(r["skipped"] == 0 for r in rec)
    images = np.load(wd / "samples" / "samples.npz")["images"]
    assert images.shape == (6, 8, 8, 1) and images.dtype == np.float32
    assert np.all(np.isfinite(images))
    assert (wd / "samples" / "grid.png").exists() and (wd / "samples" / "energy_trace.png").exists()
    assert json.loads((wd / "config.json").read_text())["data"]["name"] == "digits"
    assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit())[-1] == 80

    # Asking for more steps resumes from the checkpoint at 80 instead of starting again.
    assert main.run(["--config", DIGITS, "--workdir", str(wd), "--config.train.steps=100", *TINY]) == 0
    assert [r["step"] for r in metrics(wd)] == [20, 40, 60, 80, 100]

    # Sampling alone reloads the latest checkpoint, and says that the samples are reproducible.
    (wd / "samples" / "samples.npz").unlink()
    with caplog.at_level(logging.INFO):
        assert main.run(["--config", DIGITS, "--workdir", str(wd), "--mode", "sample", "--config.train.steps=100",
                         *TINY]) == 0
    images = np.load(wd / "samples" / "samples.npz")["images"]
    assert images.shape == (6, 8, 8, 1)
    assert "These samples are reproducible" in caplog.text and "--config.sample.seed=N" in caplog.text

    # Even with sample.resume=false the same command gives the same images (issue 11, case 8) ...
    def files(d):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.rglob("*") if p.is_file()}

    assert main.run(["--config", DIGITS, "--workdir", str(wd), "--mode", "sample", "--config.train.steps=100",
                     *TINY, "--config.sample.resume=false"]) == 0
    np.testing.assert_array_equal(np.load(wd / "samples" / "samples.npz")["images"], images)
    before = files(wd / "samples")
    # ... and sample.seed draws new ones into their own folder, leaving the earlier ones alone.
    assert main.run(["--config", DIGITS, "--workdir", str(wd), "--mode", "sample", "--config.train.steps=100",
                     *TINY, "--config.sample.seed=7"]) == 0
    fresh = np.load(wd / "samples_seed7" / "samples.npz")["images"]
    assert fresh.shape == images.shape and not np.allclose(fresh, images)
    assert (wd / "samples_seed7" / "grid.png").exists()
    assert files(wd / "samples") == before


@pytest.mark.slow  # about 12 s on 2 CPU cores; the whole suite (CI) runs it
def test_toy_density_learns_the_modes(tmp_path):
    """On eight Gaussians, the learned energy is lower on the modes than between them."""
    wd = tmp_path / "toy"
    args = ["--config", TOY, "--workdir", str(wd), "--config.train.steps=1500", "--config.train.log_every=500",
            "--config.train.checkpoint_every=1500", "--config.sample.n=0", "--no-progress"]
    assert main.run(args) == 0
    from ebmjax.config import load_config
    from ebmjax.data import toy2d
    from ebmjax.train import loop

    cfg = load_config(TOY, [("train.steps", "1500"), ("sample.n", "0")])
    state, method, _ = loop.load_trained(cfg, wd)
    energy = method.energy(state.params)
    modes = toy2d.eight_gaussians_centers()
    between = 2.0 * np.stack([np.cos(np.arange(8) * np.pi / 4 + np.pi / 8), np.sin(np.arange(8) * np.pi / 4 + np.pi / 8)], 1)
    e_modes = np.asarray(energy(modes.astype(np.float32)))
    e_between = np.asarray(energy(between.astype(np.float32)))
    e_origin = float(energy(np.zeros((1, 2), np.float32))[0])
    assert e_modes.max() < e_between.min()
    assert e_modes.max() < e_origin


def test_unknown_config_key_is_a_clear_error(tmp_path, capsys):
    code = main.run(["--config", DIGITS, "--workdir", str(tmp_path), "--config.train.stepz=3"])
    err = capsys.readouterr().err
    assert code == 2
    assert 'Did you mean "train.steps"' in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_bad_value_and_missing_config_file(tmp_path, capsys):
    assert main.run(["--config", DIGITS, "--workdir", str(tmp_path), "--config.train.steps=many"]) == 2
    err = capsys.readouterr().err
    assert "expected a value of type int" in err and "e.g. --config.train.steps=3000" in err
    assert main.run(["--config", str(tmp_path / "nope.py")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_learning_rate_of_nan_is_refused_with_the_reason(tmp_path, capsys):
    """Issue 11, case 5: nan parses as a number, and the message says what a learning rate must be."""
    assert main.run(["--config", DIGITS, "--workdir", str(tmp_path), "--config.train.lr=nan"]) == 2
    err = capsys.readouterr().err
    assert err == ("ebmjax: error: train.lr must be a finite number > 0 (it is the learning rate); got nan. Set another "
                   "value with --config.train.lr=VALUE or in the config file (the default is 5e-05).\n")
    assert not any(tmp_path.iterdir())


def test_a_bare_word_is_a_one_tuple(tmp_path, capsys):
    """Issue 11, case 5: --config.eval.metrics=fid is ("fid",); it reaches the check of metric names."""
    from ebmjax.config import load_config

    assert load_config(DIGITS, [("eval.metrics", "fid")]).eval.metrics == ("fid",)
    assert main.run(["--config", DIGITS, "--workdir", str(tmp_path), "--mode", "eval",
                     "--config.eval.metrics=fid,ood,nope"]) == 2
    err = capsys.readouterr().err
    assert "Unknown eval.metrics ['nope']" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
    """Run as a user would: a subprocess, exit code 2, no traceback, preparation instructions."""
    empty = tmp_path / "tfds"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "ebmjax.main", "--config", str(ROOT / "configs" / "mdsm_mnist_tfds.py"),
         "--workdir", str(tmp_path / "run"), f"--config.data.data_dir={empty}", "--no-progress"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "mnist" in proc.stderr and "tfds build" in proc.stderr and str(empty) in proc.stderr
    assert not any(empty.iterdir())


@pytest.mark.slow  # about 45 s on 2 CPU cores; the whole suite (CI) runs it
def test_sampling_from_the_moving_average_of_the_weights(tmp_path, capsys):
    """train.ema_decay keeps a moving average of the weights; --config.sample.weights=ema samples from
    it (raw, the default, from the trained weights). The average is checkpointed: a run stopped at
    step 20 and resumed to 40 samples exactly what an unbroken run to 40 does. Asking for the average
    of a run that kept none is a one-line error."""
    ema = ["--config.train.ema_decay=0.9", "--config.train.checkpoint_every=20"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main.run(["--config", DIGITS, "--workdir", str(whole), "--config.train.steps=40", *TINY, *ema,
                     "--config.sample.weights=ema"]) == 0
    # The same run stopped after its checkpoint at step 20: its later checkpoint and samples removed.
    shutil.copytree(whole, parts)
    shutil.rmtree(parts / "checkpoints" / "40")
    shutil.rmtree(parts / "samples")
    assert main.run(["--config", DIGITS, "--workdir", str(parts), "--config.train.steps=40", *TINY, *ema,
                     "--config.sample.weights=ema"]) == 0
    from_ema = np.load(whole / "samples" / "samples.npz")["images"]
    np.testing.assert_array_equal(np.load(parts / "samples" / "samples.npz")["images"], from_ema)
    assert main.run(["--config", DIGITS, "--workdir", str(whole), "--mode", "sample", "--config.train.steps=40",
                     *TINY, *ema, "--config.sample.resume=false"]) == 0  # raw weights, the default
    from_raw = np.load(whole / "samples" / "samples.npz")["images"]
    assert not np.allclose(from_raw, from_ema)  # other weights, the same chains' noise
    capsys.readouterr()
    assert main.run(["--config", DIGITS, "--workdir", str(tmp_path / "none"), "--mode", "sample", *TINY,
                     "--config.sample.weights=ema"]) == 2
    assert "train.ema_decay" in capsys.readouterr().err


HOLD_LOCK = """
import sys, time
from ebmjax import io
with io.WorkdirLock(sys.argv[1], "--mode train"):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_second_run_in_a_busy_workdir_is_refused_and_a_killed_run_leaves_no_lock(tmp_path, capsys):
    """Two runs in one workdir would overwrite each other's checkpoints: while one process holds the
    workdir, another run there stops with a message naming the holder; once that process is killed
    (SIGKILL: no clean-up of its own), the workdir is free again."""
    wd = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(wd)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        argv = ["--config", TOY, "--workdir", str(wd), "--mode", "sample", "--no-progress"]
        assert main.run(argv) == 2
        err = capsys.readouterr().err
        assert f"is in use by ebmjax --mode train (pid {holder.pid}" in err and "another --workdir" in err
    finally:
        holder.kill()
        holder.wait()
    assert main.run(argv) == 2  # free again: it now stops only because nothing was trained there
    err = capsys.readouterr().err
    assert "in use" not in err and "checkpoint" in err


@pytest.mark.slow  # about 15 s on 2 CPU cores; the whole suite (CI) runs it
def test_mdsm_trains_and_samples_a_unet_energy(tmp_path):
    """model.name = "unet" plugs into MDSM's loop and sampler like any network: it learns (the loss
    falls), samples are finite, and the checkpoint remembers the network (another model.scale is
    refused)."""
    wd = tmp_path / "unet"
    net = ["--config.model.name=unet", "--config.model.widths=4,8"]
    assert main.run(["--config", DIGITS, "--workdir", str(wd), "--config.train.steps=80", *TINY, *net]) == 0
    rec = metrics(wd)
    assert rec[-1]["loss"] < 0.7 * rec[0]["loss"], rec
    images = np.load(wd / "samples" / "samples.npz")["images"]
    assert images.shape == (6, 8, 8, 1) and np.isfinite(images).all()
    assert main.run(["--config", DIGITS, "--workdir", str(wd), "--mode", "sample", *TINY, *net,
                     "--config.model.scale=0.2"]) == 2
