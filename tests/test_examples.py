"""The scripts in examples/ run as a user runs them (a subprocess from the repository root), with
tiny settings, and give the answers they claim."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_example(name, *args, timeout=180):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_own_energy_sampler_moments(tmp_path):
    """MALA and HMC sample N(mu, Sigma) (whitened covariance = identity); ULA sits where its
    stationary covariance T (P (I - h P / 2))^-1 says, measurably off the target."""
    out = tmp_path / "results.json"
    stdout = run_example("own_energy_sampler.py", "--chains", 512, "--burn", 150, "--keep", 150,
                         "--step-size", 0.5, "--json", out)
    assert "mala" in stdout and "acceptance" in stdout
    res = json.loads(out.read_text())
    # The target, written here independently of the script.
    mu, sigma = np.array([1.0, -2.0]), np.array([[2.0, 1.2], [1.2, 1.0]])
    np.testing.assert_allclose(res["target"]["mu"], mu)
    np.testing.assert_allclose(res["target"]["sigma"], sigma)
    evals, evecs = np.linalg.eigh(sigma)
    whiten = (evecs / np.sqrt(evals)) @ evecs.T
    h = 0.5**2 / 2
    precision = np.linalg.inv(sigma)
    ula_white = whiten @ np.linalg.inv(precision @ (np.eye(2) - h * precision / 2)) @ whiten

    for name in ("mala", "hmc5"):
        r = res["samplers"][name]
        assert 0.5 < r["acceptance_rate"] < 1.0, (name, r["acceptance_rate"])
        # Whitened from the raw moments here (not from the script's whitened figures).
        m = whiten @ (np.array(r["mean"]) - mu)
        c = whiten @ np.array(r["cov"]) @ whiten
        assert np.abs(m).max() < 0.12, (name, m)
        assert np.abs(c - np.eye(2)).max() < 0.12, (name, c)
        np.testing.assert_allclose(r["whitened_cov"], c, atol=0.02)

    r = res["samplers"]["ula"]
    assert r["acceptance_rate"] == 1.0
    c = whiten @ np.array(r["cov"]) @ whiten
    assert np.abs(c - ula_white).max() < 0.12, c  # biased exactly as predicted ...
    assert np.abs(c - np.eye(2)).max() > 0.25, c  # ... and far enough off that the test sees it


@pytest.mark.slow  # about 14 s on 2 CPU cores; the whole suite (CI) runs it
def test_ml_replay_buffer_learns(tmp_path):
    out, summary = tmp_path / "run", tmp_path / "summary.json"
    stdout = run_example("ml_replay_buffer.py", "--steps", 100, "--log-every", 20, "--buffer", 256,
                         "--batch", 32, "--chain-steps", 10, "--sample-steps", 5, "--n-samples", 16,
                         "--out", out, "--json", summary)
    assert "E(samples)-E(data)" in stdout
    res = json.loads(summary.read_text())
    log = res["log"]
    assert [r["step"] for r in log] == [0, 20, 40, 60, 80, 100]
    assert all(np.isfinite(v) for r in log for v in r.values())
    # The energy learns to prefer held-out digits over uniform noise ...
    assert log[-1]["noise_minus_test"] > max(0.1, log[0]["noise_minus_test"] + 0.1), log
    # ... and the chains' ends approach the data: the energy gap shrinks towards 0.
    assert abs(log[-1]["energy_gap"]) < 0.5 * abs(log[1]["energy_gap"]), log
    np.testing.assert_allclose(log[-1]["loss"], -log[-1]["energy_gap"], rtol=1e-5, atol=1e-6)
    # Every training step wrote chains back: nearly all 256 rows moved, all within the clamp.
    assert log[-1]["buffer_moved"] > 0.9 and log[1]["buffer_moved"] < log[-1]["buffer_moved"]
    lo, hi = res["buffer_range"]
    assert 0.0 <= lo < hi <= 1.0
    samples = np.load(out / "samples.npz")["images"]
    assert samples.shape == (16, 8, 8, 1) and np.all((samples >= 0) & (samples <= 1))
    assert (out / "grid.png").stat().st_size > 0


@pytest.mark.slow
def test_ml_replay_buffer_conv_net_runs(tmp_path):
    """The conv network option (slow to compile on a CPU), a few steps."""
    summary = tmp_path / "summary.json"
    run_example("ml_replay_buffer.py", "--net", "conv", "--width", 4, "--steps", 4, "--log-every", 2,
                "--buffer", 64, "--batch", 8, "--chain-steps", 3, "--sample-steps", 2, "--n-samples", 8,
                "--out", tmp_path / "run", "--json", summary)
    log = json.loads(summary.read_text())["log"]
    assert len(log) == 3 and all(np.isfinite(v) for r in log for v in r.values())


def _tiny_mdsm(seed=1):
    """A Res12 of width 4 on 8x8x1 images with random parameters. (Drawn with NumPy on the shapes
    from jax.eval_shape: compiling the model's own init takes about 15 s on 2 CPU cores.)"""
    import jax

    from ebmjax.models import MDSMResNet

    model = MDSMResNet(blocks_per_stage=1, width=4)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 8, 8, 1), np.float32))
    rng = np.random.default_rng(seed)
    return model, jax.tree.map(lambda s: rng.uniform(-0.2, 0.2, s.shape).astype(np.float32), shapes)


@pytest.mark.slow  # about 14 s on 2 CPU cores; the whole suite (CI) runs it
def test_import_mdsm_npz(tmp_path):
    """A state dict written from a model's parameters imports as the same energy, and samples."""
    import jax

    from ebmjax.models import to_torch_state_dict

    model, params = _tiny_mdsm()
    ckpt = tmp_path / "tiny_mdsm.npz"
    # As saved from nn.DataParallel: every key starts with "module.".
    np.savez(ckpt, **to_torch_state_dict(params, prefix="module."))
    out = tmp_path / "run"
    stdout = run_example("import_mdsm_torch.py", "--checkpoint", ckpt, "--n", 6, "--n-hot", 5, "--n-anneal", 20,
                         "--n-cool", 5, "--chunk", 10, "--out", out)
    assert "width 4, 1 same-width block(s) per stage" in stdout and "images 8x8x1" in stdout
    assert "step    30/30" in stdout
    samples = np.load(out / "samples.npz")
    images, energies = samples["images"], samples["energies"]
    assert images.shape == (6, 8, 8, 1) and energies.shape == (6,)
    assert np.all(np.isfinite(images)) and np.all(np.isfinite(energies))
    assert not np.allclose(images, samples["x_before_jump"])  # the denoising jump moved them
    # The imported network's energies (written by the script) are the original parameters' energies.
    original = np.asarray(jax.jit(model.apply)(params, images))
    assert np.std(original) > 1e-5  # the energies differ between samples, so the match means something
    np.testing.assert_allclose(energies, original, rtol=1e-5, atol=1e-6)
    assert (out / "grid.png").stat().st_size > 0


@pytest.mark.slow  # about 50 s on 2 CPU cores; the whole suite (CI) runs it
def test_jem_own_jit_samples_the_classes_asked_for_and_composes(tmp_path):
    """Class-conditional energies trained in the example's own jit: the digits judge reads the rows'
    samples as the rows' classes; the ink expert thickens class 3 without changing its class. With
    --objective jem the network becomes a classifier within 100 steps."""
    summary = tmp_path / "summary.json"
    stdout = run_example("jem_own_jit.py", "--steps", 600, "--log-every", 300, "--out", tmp_path / "cond",
                         "--json", summary)
    assert "the digits judge reads" in stdout
    res = json.loads(summary.read_text())
    assert res["rows_judged_as_their_class"] > 0.6, res
    assert res["class3_share"]["plain"] >= 0.8 and res["class3_share"]["bold"] >= 0.8, res
    assert res["mean_ink"]["bold"] > res["mean_ink"]["plain"] + 0.02, res
    assert (tmp_path / "cond" / "classes.png").stat().st_size > 0 and (tmp_path / "cond" / "bold3.png").exists()
    run_example("jem_own_jit.py", "--objective", "jem", "--steps", 100, "--log-every", 50, "--sample-steps", 5,
                "--out", tmp_path / "jem", "--json", summary)
    log = json.loads(summary.read_text())["log"]
    assert log[-1]["test_accuracy"] > 0.8 and log[-1]["cross_entropy"] < log[0]["cross_entropy"], log
    assert 0.0 <= log[-1]["test_ece"] <= 1.0
