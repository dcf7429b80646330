"""Restoration checked against known answers: exact masks, PSNR closed forms, Gaussian conditionals
and Tweedie's formula, sharded batches against one device; then the trained digits energy (the
session fixture) through both CLI modes.

The inpainting PSNR test compares the restored hole with the corrupted input filled with 0 (black,
the usual "masked out" picture) and, separately, with the sampler's own start 0.5 + N(0, 1). The
report's "corrupted" score uses ``restore.fill`` (0.5 by default), a harder baseline: mid-grey is
close to the mean of a digit's centre, which a single posterior sample does not beat in MSE.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DIGITS_CONFIG, TRAINED_DIGITS_OVERRIDES

from ebmjax.apps import main
from ebmjax.restoration import restore
from ebmjax.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE_ARGS = [f"--config.{k}={v}" for k, v in TRAINED_DIGITS_OVERRIDES]
# 100 Langevin steps in chunks of 50: the paper's schedule shape, short enough for a test.
SHORT_SCHEDULE = ["--config.mdsm.n_hot=0", "--config.mdsm.n_anneal=50", "--config.mdsm.n_cool=50",
                  "--config.mdsm.t_max=10.0", "--config.sample.chunk_steps=50", "--no-progress"]


# --------------------------------------------------------------------------------------------
# Masks and PSNR
# --------------------------------------------------------------------------------------------


def test_center_box_mask_covers_the_central_pixels():
    m = np.asarray(restore.center_box_mask((8, 8, 1), 0.5))
    expected = np.zeros((8, 8, 1), np.float32)
    expected[2:6, 2:6] = 1.0
    np.testing.assert_array_equal(m, expected)
    # Per-side rounding and offsets on a non-square batch: h = round(4.0) = 4 rows from (10 - 4) // 2
    # = 3, w = round(2.4) = 2 columns from (6 - 2) // 2 = 2; one mask entry for all 3 channels.
    m = np.asarray(restore.center_box_mask((2, 10, 6, 3), 0.4))
    assert m.shape == (2, 10, 6, 1) and m.sum() == 2 * 8
    rows, cols = np.nonzero(m[1, :, :, 0])
    assert set(rows) == {3, 4, 5, 6} and set(cols) == {2, 3}


def test_random_pixel_mask_has_exactly_round_fraction_free_pixels():
    shape, f = (5, 8, 8, 3), 0.3  # 0.3 * 64 = 19.2 -> 19 free pixels in every image
    m = np.asarray(restore.random_pixel_mask(jax.random.PRNGKey(0), shape, f))
    assert m.shape == (5, 8, 8, 1) and set(np.unique(m)) == {0.0, 1.0}
    np.testing.assert_array_equal(m.reshape(5, -1).sum(1), np.full(5, 19))
    assert len({m[i].tobytes() for i in range(5)}) == 5  # a different pattern per image
    np.testing.assert_array_equal(m, restore.random_pixel_mask(jax.random.PRNGKey(0), shape, f))
    single = np.asarray(restore.random_pixel_mask(np.random.default_rng(1), (7, 9, 1), 0.5))
    assert single.shape == (7, 9, 1) and single.sum() == 32  # 31.5 rounds half up
    # The free pixels are uniform over positions: each of 64 pixels is free 19/64 of the time.
    many = np.asarray(restore.random_pixel_mask(jax.random.PRNGKey(2), (4000, 8, 8, 1), f))
    freq = many.mean(0).ravel()
    se = np.sqrt(f * (1 - f) / 4000)
    assert np.all(np.abs(freq - 19 / 64) < 5 * se), freq


def test_half_masks_are_complementary_for_odd_sizes():
    shape = (7, 5, 3)
    top, bottom = (np.asarray(restore.half_mask(shape, s)) for s in ("top", "bottom"))
    left, right = (np.asarray(restore.half_mask(shape, s)) for s in ("left", "right"))
    np.testing.assert_array_equal(top + bottom, np.ones((7, 5, 1)))
    np.testing.assert_array_equal(left + right, np.ones((7, 5, 1)))
    assert top[:3].all() and not top[3:].any()  # rows [0, 7 // 2)
    assert left[:, :2].all() and not left[:, 2:].any()
    np.testing.assert_array_equal(restore.make_mask("half", shape, half_side="right"), right)


@pytest.mark.parametrize("call", [
    lambda: restore.center_box_mask((8, 8, 1), 0.0),
    lambda: restore.center_box_mask((8, 8, 1), 1.0),
    lambda: restore.random_pixel_mask(jax.random.PRNGKey(0), (8, 8, 1), 1.5),
    lambda: restore.random_pixel_mask(jax.random.PRNGKey(0), (8, 8, 1), True),
    lambda: restore.half_mask((8, 8, 1), "middle"),
    lambda: restore.make_mask("circle", (8, 8, 1)),
    lambda: restore.center_box_mask((16, 2), 0.5),  # 2-D points, not images
])
def test_bad_mask_arguments_raise_config_error(call):
    with pytest.raises(ConfigError):
        call()


def test_psnr_matches_closed_forms():
    y = jnp.full((3, 4, 4, 1), 0.3)
    for e in (0.1, 0.01):
        # A constant error e: MSE e^2, PSNR 10 log10(1 / e^2) = -20 log10(e).
        np.testing.assert_allclose(restore.psnr(y + e, y), np.full(3, -20 * np.log10(e)), rtol=1e-5)
        np.testing.assert_allclose(restore.psnr(y + e, y, data_range=2.0), 10 * np.log10(4 / e**2), rtol=1e-5)
    # Clipping: 0.95 + 0.1 = 1.05 is scored as 1.0, an error of 0.05.
    y2 = jnp.full((2, 3, 3, 1), 0.95)
    np.testing.assert_allclose(restore.psnr(y2 + 0.1, y2), -20 * np.log10(0.05), rtol=1e-5)
    # A mask restricts the mean: error 0.2 on the 4 free pixels of 16 only.
    m = restore.center_box_mask((4, 4, 1), 0.5)
    x = y + 0.2 * m
    np.testing.assert_allclose(restore.psnr(x, y, mask=m), -20 * np.log10(0.2), rtol=1e-5)
    np.testing.assert_allclose(restore.psnr(x, y), 10 * np.log10(16 / (4 * 0.04)), rtol=1e-5)
    assert np.isinf(restore.psnr(y, y)).all()


# --------------------------------------------------------------------------------------------
# Gaussian energies: exact answers
# --------------------------------------------------------------------------------------------

# A correlated Gaussian on 2x2 one-channel images: E(x) = (x - mu)^T P (x - mu) / 2 over the 4 pixels.
MU4 = np.array([0.2, 0.5, 0.7, 0.4])
A = np.array([[1.0, 0.3, 0.0, 0.2], [0.1, 1.0, 0.4, 0.0], [0.0, 0.2, 1.0, 0.3], [0.3, 0.0, 0.1, 1.0]])
P4 = A @ A.T + 0.5 * np.eye(4)  # eigenvalues 0.78 .. 2.68


def correlated_energy(x):
    d = x.reshape(x.shape[0], 4) - jnp.asarray(MU4, x.dtype)
    return 0.5 * jnp.einsum("bi,ij,bj->b", d, jnp.asarray(P4, x.dtype), d)


def conditional_mean(x_true, free):
    """E[x_free | x_known] of N(mu, P^-1): mu_f - P_ff^-1 P_fk (x_k - mu_k), per image."""
    out = np.array(x_true, np.float64).reshape(len(x_true), 4)
    for b in range(len(out)):
        f = free[b].ravel() > 0.5
        k = ~f
        out[b, f] = MU4[f] - np.linalg.solve(P4[np.ix_(f, f)], P4[np.ix_(f, k)] @ (out[b, k] - MU4[k]))
    return out.reshape(x_true.shape)


def test_inpainting_a_gaussian_gives_the_conditional_mean():
    """At T = 0 the clamped chain is gradient descent on the free pixels: it converges to the
    conditional mode (= mean), where the gradient is zero and the final jump changes nothing."""
    rng = np.random.default_rng(0)
    x_true = rng.uniform(size=(6, 2, 2, 1)).astype(np.float32)
    free = np.asarray(restore.random_pixel_mask(jax.random.PRNGKey(3), x_true.shape, 0.5))
    # eps = 0.5: each step contracts the error by at least 1 - 0.125 * 0.77, so 300 steps converge
    # (to about 1e-13).
    res = jax.jit(lambda x, m, k: restore.inpaint(correlated_energy, x, m, k, temperatures=jnp.zeros(300),
                                                  step_size=0.5, sigma0=0.3))(x_true, free, jax.random.PRNGKey(4))
    np.testing.assert_allclose(res.restored, conditional_mean(x_true, free), atol=1e-5)
    np.testing.assert_array_equal(np.where(free > 0.5, 0.0, res.restored), np.where(free > 0.5, 0.0, x_true))
    assert res.energy.shape == (300, 6)


def test_denoise_jump_is_tweedie_and_cold_langevin_is_exact_gradient_descent():
    """Data N(mu, s_d^2) smoothed by N(0, sigma0^2) has E = |x - mu|^2 / (2 s^2), s^2 = s_d^2 + sigma0^2.
    Tweedie: E[x | x~] = x~ - sigma0^2 dE/dx = mu + (s_d^2 / s^2)(x~ - mu). At T = 0, K Langevin steps
    give mu + r^K (x0 - mu) with r = 1 - eps^2 / (2 s^2)."""
    mu, s_d, sigma0, eps, k = 0.4, 0.3, 0.1, 0.05, 40
    s2 = s_d**2 + sigma0**2

    def energy(x):
        return 0.5 * jnp.sum((x - mu) ** 2, axis=(1, 2, 3)) / s2

    x_noisy = jnp.asarray(np.random.default_rng(5).normal(mu, 0.5, size=(4, 3, 3, 1)), jnp.float32)
    out = restore.denoise(energy, x_noisy, jax.random.PRNGKey(0), sigma0=sigma0,
                          temperatures=jnp.zeros(k), step_size=eps, final_jump=True)
    shrink = s_d**2 / s2
    np.testing.assert_allclose(out.jump, mu + shrink * (x_noisy - mu), rtol=1e-5, atol=1e-6)
    r = 1.0 - eps**2 / (2 * s2)
    np.testing.assert_allclose(out.langevin, mu + shrink * r**k * (x_noisy - mu), rtol=1e-4, atol=1e-6)
    no_jump = restore.denoise(energy, x_noisy, jax.random.PRNGKey(0), sigma0=sigma0, temperatures=jnp.zeros(k),
                              step_size=eps, final_jump=False)
    np.testing.assert_allclose(no_jump.langevin, mu + r**k * (x_noisy - mu), rtol=1e-4, atol=1e-6)


def test_posterior_langevin_ends_at_the_posterior_mean_of_a_gaussian():
    """Prior E = |x - mu|^2 / (2 s^2), noise y = x + N(0, n^2): the posterior is Gaussian with precision
    a = 1/s^2 + 1/n^2 and mean m = (mu/s^2 + y/n^2) / a. At T = 0 each step is gradient descent on
    the posterior energy, so K steps from y give m + r^K (y - m) with r = 1 - eps^2 a / 2."""
    mu, s, n, eps, k = 0.4, 0.3, 0.2, 0.05, 60
    energy = lambda x: 0.5 * jnp.sum((x - mu) ** 2, axis=(1, 2, 3)) / s**2  # noqa: E731
    y = jnp.asarray(np.random.default_rng(6).normal(mu, 0.5, size=(4, 3, 3, 1)), jnp.float32)
    out = restore.denoise(energy, y, jax.random.PRNGKey(0), sigma0=None, temperatures=jnp.zeros(k),
                          step_size=eps, noise_sigma=n)
    a = 1 / s**2 + 1 / n**2
    m = (mu / s**2 + y / n**2) / a
    r = 1 - eps**2 * a / 2
    np.testing.assert_allclose(out.langevin, m + r**k * (y - m), rtol=1e-4, atol=1e-6)
    assert out.jump is None  # no smoothed density, no jump


@pytest.mark.slow  # about 19 s on 2 CPU cores; the whole suite (CI) runs it
def test_sharded_batches_match_one_device_and_keep_the_order():
    """On 4 fake CPU devices, 10 images in batches of 8 (the last padded): the sharded run equals
    the one-device run, and at T = 0 every image gets its own conditional mean back."""
    code = textwrap.dedent(f"""
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax, jax.numpy as jnp, numpy as np
        import sys; sys.path.insert(0, {str(ROOT / "tests")!r})
        from test_restore import correlated_energy, conditional_mean
        from ebmjax import parallel
        from ebmjax.restoration import restore
        assert len(jax.devices()) == 4
        x = np.random.default_rng(0).uniform(size=(10, 2, 2, 1)).astype(np.float32)
        m = np.asarray(restore.random_pixel_mask(jax.random.PRNGKey(1), x.shape, 0.5))
        key = jax.random.PRNGKey(2)
        hot = jnp.linspace(1.0, 0.0, 20)
        kw = dict(step_size=0.5, sigma0=0.3, batch_size=8, chunk_size=8, progress=False)
        one = restore.inpaint_batches(correlated_energy, x, m, key, temperatures=hot,
                                      mesh=parallel.make_mesh(jax.devices()[:1]), **kw)
        four = restore.inpaint_batches(correlated_energy, x, m, key, temperatures=hot, **kw)
        np.testing.assert_allclose(four.restored, one.restored, atol=1e-5)
        assert four.energy.shape == (20, 10)
        cold = restore.inpaint_batches(correlated_energy, x, m, key, temperatures=jnp.zeros(150), **kw)
        np.testing.assert_allclose(cold.restored, conditional_mean(x, m), atol=1e-5)
        d1 = restore.denoise_batches(correlated_energy, x, key, sigma0=0.1, temperatures=hot, step_size=0.3,
                                     batch_size=8, chunk_size=8, progress=False,
                                     mesh=parallel.make_mesh(jax.devices()[:1]))
        d4 = restore.denoise_batches(correlated_energy, x, key, sigma0=0.1, temperatures=hot, step_size=0.3,
                                     batch_size=8, chunk_size=8, progress=False)
        np.testing.assert_allclose(d4.langevin, d1.langevin, atol=1e-5)
        np.testing.assert_allclose(d4.jump, d1.jump, atol=1e-6)
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


# --------------------------------------------------------------------------------------------
# The trained digits energy, through the command line
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_runs(trained_digits):
    """Runs --mode inpaint (centre box, half the side) and --mode denoise (sigma 0.2) once on the
    fixture's workdir, with its overrides so the checkpoint identity matches; compiling the
    chains dominates the cost, so the tests below share these two runs."""
    cfg, workdir, state, *_ = trained_digits
    common = ["--config", DIGITS_CONFIG, "--workdir", str(workdir), *FIXTURE_ARGS, *SHORT_SCHEDULE,
              "--config.restore.n=16"]
    assert main.run([*common, "--mode", "inpaint", "--config.restore.mask=center",
                     "--config.restore.box_fraction=0.5"]) == 0
    assert main.run([*common, "--mode", "denoise", "--config.restore.noise_sigma=0.2"]) == 0
    return workdir, int(state.step)


@pytest.mark.slow  # about 35 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.xdist_group("trained_digits")  # the worker that trains conftest.trained_digits
def test_cli_inpaint_writes_panels_report_and_arrays(cli_runs):
    workdir, step = cli_runs
    out = workdir / "inpaint"
    assert {p.name for p in out.iterdir()} >= {"panels.png", "report.json", "restored.npz", "energy_trace.png"}
    assert (out / "panels.png").stat().st_size > 0 and (out / "energy_trace.png").stat().st_size > 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["mode"] == "inpaint" and rep["split"] == "test" and rep["mask"] == "center"
    assert rep["checkpoint_step"] == step and rep["langevin_steps"] == 100 and rep["n"] == 16
    assert set(rep["mean_psnr"]) == set(rep["psnr"]) == {"corrupted", "one_chain", "restored"}
    assert set(rep["mean_psnr_free"]) == set(rep["psnr_free"]) == {"corrupted", "one_chain", "restored"}
    assert rep["n_chains"] == 8 and set(rep["improved_share"]) == {"one_chain", "restored"}
    assert all(len(v) == 16 for v in (*rep["psnr"].values(), *rep["psnr_free"].values()))
    np.testing.assert_allclose(rep["mean_psnr"]["restored"], np.mean(rep["psnr"]["restored"]))
    assert rep["free_pixels_per_image"] == [16.0] * 16  # the central 4 x 4 of 8 x 8
    a = np.load(out / "restored.npz")
    assert a["restored"].shape == a["truth"].shape == a["corrupted"].shape == (16, 8, 8, 1)
    assert a["mask"].shape == (16, 8, 8, 1)
    assert a["energy"].shape == (100, 16) and a["temperatures"].shape == (100,)
    np.testing.assert_allclose(a["temperatures"][[0, -1]], [10.0, 0.0])
    np.testing.assert_allclose(rep["psnr"]["restored"], restore.psnr(a["restored"], a["truth"]), rtol=1e-5)
    np.testing.assert_allclose(rep["psnr_free"]["corrupted"],
                               restore.psnr(restore.mask_out(a["truth"], a["mask"], 0.5), a["truth"], mask=a["mask"]),
                               rtol=1e-5)


@pytest.mark.slow  # shares the CLI runs on the trained digits energy (cli_runs); the whole suite (CI) runs it
@pytest.mark.xdist_group("trained_digits")  # the worker that trains conftest.trained_digits
def test_inpainting_digits_keeps_known_pixels_and_restores_the_centre(cli_runs):
    """Known pixels come back bit for bit; the restored centres are closer (PSNR over the free
    region) than the corrupted input, with the hole black or filled with the sampler's start
    0.5 + N(0, 1)."""
    workdir, _ = cli_runs
    a = np.load(workdir / "inpaint" / "restored.npz")
    x, m, restored = a["truth"], a["mask"], a["restored"]
    known = np.broadcast_to(m < 0.5, x.shape)
    np.testing.assert_array_equal(restored[known], x[known])
    assert not np.array_equal(restored[~known], x[~known])
    ours = np.asarray(restore.psnr(restored, x, mask=m)).mean()
    black = np.asarray(restore.psnr(restore.mask_out(x, m, 0.0), x, mask=m)).mean()
    start = np.where(m > 0.5, 0.5 + np.random.default_rng(0).normal(size=x.shape), x)
    noise = np.asarray(restore.psnr(start, x, mask=m)).mean()
    assert ours > black + 1.0 and ours > noise + 1.0, (ours, black, noise)


@pytest.mark.slow  # about 16 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.xdist_group("trained_digits")  # the worker that trains conftest.trained_digits
def test_inpainting_random_pixels_beats_the_mid_grey_fill(trained_digits):
    """With half the pixels missing at random the context is rich: the restored pixels beat even
    the mid-grey fill (0.5, the report's "corrupted"), the harder baseline a centre box does not."""
    cfg, _, state, method, _ = trained_digits
    from ebmjax import data, schedules

    x = np.asarray(data.load_source(cfg.data, "test").get(np.arange(16)), np.float32)
    m = np.asarray(restore.random_pixel_mask(jax.random.PRNGKey(10), x.shape, 0.5))
    temps = schedules.annealing_schedule("exp", t_max=10.0, n_hot=0, n_anneal=50, n_cool=50)
    res = restore.inpaint_batches(method.energy(state.params), x, m, jax.random.PRNGKey(0),
                                  temperatures=temps, step_size=0.02, sigma0=cfg.mdsm.sigma0, chunk_size=50,
                                  progress=False)
    known = np.broadcast_to(m < 0.5, x.shape)
    np.testing.assert_array_equal(res.restored[known], x[known])
    ours = np.asarray(restore.psnr(res.restored, x, mask=m))
    grey = np.asarray(restore.psnr(restore.mask_out(x, m, 0.5), x, mask=m))
    assert ours.mean() > grey.mean() + 0.5, (ours.mean(), grey.mean())
    assert (ours > grey).sum() >= 11, (ours, grey)


@pytest.mark.slow  # shares the CLI runs on the trained digits energy (cli_runs); the whole suite (CI) runs it
@pytest.mark.xdist_group("trained_digits")  # the worker that trains conftest.trained_digits
def test_cli_denoise_report_and_the_jump_improves_noisy_digits(cli_runs):
    workdir, step = cli_runs
    out = workdir / "denoise"
    assert {p.name for p in out.iterdir()} >= {"panels.png", "report.json", "restored.npz", "energy_trace.png"}
    rep = json.loads((out / "report.json").read_text())
    assert rep["mode"] == "denoise" and rep["noise_sigma"] == 0.2 and rep["checkpoint_step"] == step
    assert set(rep["mean_psnr"]) == set(rep["psnr"]) == {"corrupted", "jump", "langevin"}
    assert rep["langevin_steps"] == 100  # the restore.denoise_steps default
    a = np.load(out / "restored.npz")
    assert a["jump"].shape == a["langevin"].shape == a["noisy"].shape == a["truth"].shape == (16, 8, 8, 1)
    assert a["energy"].shape == (100, 16)
    np.testing.assert_allclose(np.std(a["noisy"] - a["truth"]), 0.2, rtol=0.1)
    np.testing.assert_allclose(rep["psnr"]["jump"], restore.psnr(a["jump"], a["truth"]), rtol=1e-5)
    assert rep["mean_psnr"]["jump"] > rep["mean_psnr"]["corrupted"] + 0.5, rep["mean_psnr"]
    # Langevin on the posterior energy keeps what the noisy image says: even this weak fixture model
    # (width 8, 400 steps) improves nearly every image.
    np.testing.assert_allclose(rep["psnr"]["langevin"], restore.psnr(a["langevin"], a["truth"]), rtol=1e-5)
    assert rep["mean_psnr"]["langevin"] > rep["mean_psnr"]["corrupted"] + 0.5, rep["mean_psnr"]
    assert rep["improved_share"]["langevin"] >= 0.9, rep["improved_share"]


@pytest.mark.parametrize("override, message", [
    ("--config.restore.mask=circle", "Unknown restore.mask"),
    ("--config.restore.box_fraction=1.5", "restore.box_fraction must be a number strictly between 0 and 1"),
    ("--config.restore.mask_fraction=0.0", "restore.mask_fraction must be a number strictly between 0 and 1"),
])
def test_cli_rejects_bad_restore_settings_before_reading_checkpoints(tmp_path, capsys, override, message):
    code = main.run(["--config", DIGITS_CONFIG, "--workdir", str(tmp_path / "none"), "--mode", "inpaint",
                     override, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_rejects_toy_data_and_too_many_images(tmp_path, capsys):
    toy = str(ROOT / "configs" / "mdsm_toy2d.py")
    assert main.run(["--config", toy, "--workdir", str(tmp_path), "--mode", "denoise", "--no-progress"]) == 2
    assert "needs images" in capsys.readouterr().err
    # The workdir has no checkpoint: the split is checked first, so this is the error reported.
    assert main.run(["--config", DIGITS_CONFIG, "--workdir", str(tmp_path), "--mode", "inpaint",
                     "--config.restore.n=400", "--no-progress"]) == 2
    assert "restore.n = 400 is larger than the 355 images" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
