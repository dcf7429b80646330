"""The maximum-likelihood configs run as shipped, shrunk: configs/ml_digits.py (short-run chains from
noise) and configs/pcd_digits.py (replay buffer) train and sample through the command line and
report the method's diagnostics; configs/ml_toy2d.py draws its density picture; configs/pcd_cifar.py
(which needs the CIFAR-10 files to run) loads and builds on 32x32x3 images with the IGEBM recipe."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax import methods
from ebmjax.apps import main
from ebmjax.config import load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
ML_DIGITS = str(ROOT / "configs" / "ml_digits.py")
PCD_DIGITS = str(ROOT / "configs" / "pcd_digits.py")
ML_TOY = str(ROOT / "configs" / "ml_toy2d.py")
PCD_CIFAR = str(ROOT / "configs" / "pcd_cifar.py")

# The digits configs at toy size: a few steps of a small network, short chains, a small buffer.
SHRUNK = ["--config.model.widths=4,8", "--config.model.width=4", "--config.model.blocks_per_stage=0",
          "--config.train.steps=6", "--config.train.batch_size=8", "--config.train.log_every=3",
          "--config.train.checkpoint_every=3", "--config.ml.steps=3", "--config.ml.sample_steps=4",
          "--config.ml.buffer_size=32", "--config.sample.n=8", "--config.sample.batch_size=8",
          "--config.sample.chunk_steps=4", "--no-progress"]
DIAGNOSTICS = {"energy_data", "energy_model", "energy_gap", "grad_step_rms", "energy_noise"}


def metrics(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # about 43 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.parametrize("config,init", [(ML_DIGITS, "noise"), (PCD_DIGITS, "buffer")], ids=["ml_digits", "pcd_digits"])
def test_digits_ml_config_trains_and_samples(config, init, tmp_path):
    cfg = load_config(config)
    assert cfg.method.name == "ml" and cfg.data.name == "digits" and cfg.ml.init == init
    assert f"--config configs/{pathlib.Path(config).name}" in pathlib.Path(config).read_text()  # the command

    wd = tmp_path / "run"
    assert main.run(["--config", config, "--workdir", str(wd), *SHRUNK]) == 0
    rec = metrics(wd)
    assert [r["step"] for r in rec] == [3, 6] and all(r["skipped"] == 0 for r in rec)
    for r in rec:
        assert DIAGNOSTICS <= set(r), r
        assert np.isfinite([r[k] for k in DIAGNOSTICS]).all()
        np.testing.assert_allclose(r["energy_gap"], r["energy_model"] - r["energy_data"], rtol=1e-5, atol=1e-7)
        assert r["grad_step_rms"] > 0
        # The buffer's share of restarted chains is reported for persistent chains only.
        assert ("fresh_share" in r) == (init == "buffer")
        if init == "buffer":
            assert 0 <= r["fresh_share"] <= 1
    assert (wd / "curves.png").exists()
    images = np.load(wd / "samples" / "samples.npz")["images"]
    assert images.shape == (8, 8, 8, 1) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0  # clamped to the data's range
    assert (wd / "samples" / "grid.png").exists()

    # --mode sample reloads the checkpoint and draws new chains (another seed: other images).
    assert main.run(["--config", config, "--workdir", str(wd), "--mode", "sample", "--config.sample.seed=1",
                     *SHRUNK]) == 0
    other = np.load(wd / "samples_seed1" / "samples.npz")["images"]
    assert other.shape == images.shape and not np.allclose(other, images)
    assert (wd / "samples_seed1" / "grid.png").exists()


@pytest.mark.slow  # about 11 s on 2 CPU cores; the whole suite (CI) runs it
def test_ml_toy_config_draws_the_density_picture(tmp_path):
    cfg = load_config(ML_TOY)
    method = methods.build(cfg, (2,), (-4.0, 4.0))
    assert method.temperature == pytest.approx(1.0)  # the chains sample exp(-E) itself
    wd = tmp_path / "toy"
    assert main.run(["--config", ML_TOY, "--workdir", str(wd), "--config.train.steps=20", "--config.train.log_every=10",
                     "--config.train.checkpoint_every=20", "--config.ml.buffer_size=256", "--config.ml.steps=5",
                     "--config.ml.sample_steps=10", "--config.sample.n=200", "--config.sample.batch_size=200",
                     "--no-progress"]) == 0
    assert (wd / "samples" / "density.png").exists()
    summary = json.loads((wd / "samples" / "summary.json").read_text())
    shares = summary["density"]["mode_shares"]
    assert len(shares["data"]["shares"]) == 8 and len(shares["learned_density_mass"]) == 8
    points = np.load(wd / "samples" / "samples.npz")["images"]
    assert points.shape == (200, 2) and np.all(np.abs(points) <= 4.0)


def test_pcd_cifar_config_builds_the_igebm_recipe_on_32x32x3():
    cfg = load_config(PCD_CIFAR)
    m = cfg.ml
    assert cfg.method.name == "ml" and cfg.data.name == "cifar10"
    assert (m.init, m.buffer_size, m.reinit_prob, m.steps) == ("buffer", 10_000, 0.05, 60)
    assert (m.step_size, m.grad_clip, m.noise, m.energy_l2) == (10.0, 0.01, 0.005, 1.0)
    assert (cfg.train.lr, cfg.train.b1, cfg.train.b2) == (3e-4, 0.0, 0.999)
    method = methods.build(cfg, (32, 32, 3))
    key = jax.random.PRNGKey(0)
    params = jax.eval_shape(method.init_params, key)
    carry = jax.eval_shape(method.init_carry, key)
    assert carry["buffer"].shape == (10_000, 32, 32, 3)
    assert method.carry_specs["buffer"] == jax.sharding.PartitionSpec("data")  # split over the devices
    batch = jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.float32)
    loss, (new_carry, out) = jax.eval_shape(method.loss, params, carry, batch, key, jnp.int32(0))
    assert loss.shape == () and new_carry["buffer"].shape == carry["buffer"].shape
    assert {"energy_data", "energy_model", "energy_gap", "grad_step_rms", "fresh_share"} <= set(out)
    sampler = method.sampler(params, carry)
    assert sampler.steps == m.sample_steps and sampler.settings["init"] == "buffer"
