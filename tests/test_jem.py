"""Class-conditional energies, JEM's hybrid and composition (issue 24): a classifier's logits f(x) as
energies E(x, y) = -f(x)[y] and E(x) = -logsumexp f(x), checked on Gaussian logits whose class
densities, mixture and products are known; the calibration error on cases with known answers; the
losses of ``ml`` with labels and of ``jem`` against their formulas; and the command line."""

import importlib
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebmjax import losses, methods, samplers as S
from ebmjax.apps import main
from ebmjax.config import load_config
from ebmjax.errors import ConfigError
from ebmjax.methods import mdsm
from ebmjax.evaluation import calibration
from scale_helpers import ROOT

MU = jnp.array([[-2.0, 0.0], [1.0, 1.0], [3.0, -2.0]])  # class means, 2-D
BIAS = jnp.array([0.0, jnp.log(2.0), jnp.log(5.0)])  # log prior weights 1 : 2 : 5


def gaussian_logits(x):
    """f_k(x) = -|x - mu_k|^2 / 2 + b_k: p(x | k) = N(mu_k, I), p(k) ∝ exp(b_k)."""
    return -0.5 * jnp.sum((x[:, None, :] - MU[None]) ** 2, axis=-1) + BIAS


def langevin_samples(energy, n, key, steps=1000, step=0.3):
    """Samples of exp(-energy) up to ULA's O(eps^2) bias: unadjusted Langevin (drift eps^2 / 2) from N(0, 4 I)."""
    x0 = 2.0 * jax.random.normal(jax.random.key(7), (n, 2))
    out = S.langevin(energy, x0, key, n_steps=steps, step_size=step)
    return np.asarray(out)


def test_class_energy_is_the_class_density_and_row_labels_take_turns():
    x = jax.random.normal(jax.random.key(0), (12, 2))
    for k in range(3):
        e = S.class_energy(gaussian_logits, k)(x)
        np.testing.assert_allclose(e, 0.5 * jnp.sum((x - MU[k]) ** 2, -1) - BIAS[k], rtol=1e-5, atol=1e-6)
    per_row = jnp.array([2, 0, 1] * 4)
    np.testing.assert_allclose(S.class_energy(gaussian_logits, per_row)(x),
                               -gaussian_logits(x)[jnp.arange(12), per_row], rtol=1e-6)
    # -1: every class in turn, ten rows each (one grid row per class).
    np.testing.assert_array_equal(S.row_labels(35, 3), np.repeat([0, 1, 2, 0], 10)[:35])
    rows = S.class_energy(gaussian_logits, -1)(jnp.zeros((30, 2)))
    np.testing.assert_allclose(rows, -gaussian_logits(jnp.zeros((30, 2)))[jnp.arange(30), S.row_labels(30, 3)])
    with pytest.raises(ConfigError, match="one per example"):
        S.class_energy(gaussian_logits, jnp.zeros(5, jnp.int32))(x)
    with pytest.raises(ConfigError, match=r"\(B, K\)"):
        S.class_energy(lambda x: x[:, 0], 0)(x)


def test_marginal_energy_has_the_mixture_log_partition_and_its_gradient_weighs_the_classes():
    # exp(-E(x)) = sum_k exp(b_k) exp(-|x - mu_k|^2 / 2): log Z = log sum_k exp(b_k) + log(2 pi) in 2-D.
    e = S.marginal_energy(gaussian_logits)
    g = np.linspace(-9.0, 11.0, 401)
    xx, yy = np.meshgrid(g, g)
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
    log_z = np.log(np.sum(np.exp(-np.asarray(e(pts), np.float64))) * (g[1] - g[0]) ** 2)
    np.testing.assert_allclose(log_z, np.log(1 + 2 + 5) + np.log(2 * np.pi), rtol=1e-4)
    # dE/dx = sum_k p(k | x) (x - mu_k): the posterior-weighted mean of the class energies' gradients.
    x = jax.random.normal(jax.random.key(1), (6, 2))
    grad = jax.grad(lambda z: jnp.sum(e(z)))(x)
    post = jax.nn.softmax(gaussian_logits(x), axis=1)
    np.testing.assert_allclose(grad, jnp.einsum("bk,bkd->bd", post, x[:, None] - MU[None]), rtol=1e-4, atol=1e-5)


def test_langevin_on_class_energies_and_on_a_composition_hits_the_known_moments():
    key = jax.random.key(2)
    # Class 2 alone: N(mu_2, I).
    x = langevin_samples(S.class_energy(gaussian_logits, 2), 2000, key)
    np.testing.assert_allclose(x.mean(0), MU[2], atol=0.12)
    np.testing.assert_allclose(x.var(0), [1.0, 1.0], atol=0.15)
    # "A bold 3": class 1's energy plus a domain energy |x - m|^2 / (2 s^2): the product of N(mu_1, I)
    # and N(m, s^2 I), i.e. N((mu_1 + m / s^2) / (1 + 1 / s^2), 1 / (1 + 1 / s^2) I).
    m, s2 = jnp.array([3.0, 3.0]), 0.5
    domain = lambda z: 0.5 * jnp.sum((z - m) ** 2, -1) / s2  # noqa: E731
    x = langevin_samples(S.sum_energies(S.class_energy(gaussian_logits, 1), domain), 2000, key)
    prec = 1 + 1 / s2
    np.testing.assert_allclose(x.mean(0), (MU[1] + m / s2) / prec, atol=0.08)
    np.testing.assert_allclose(x.var(0), [1 / prec] * 2, atol=0.06)


def test_calibration_error_on_known_cases():
    labels = np.array([0, 1, 0, 1])
    # Always certain, right half the time: ECE = |0.5 - 1| = 0.5.
    certain = np.array([[1.0, 0.0]] * 4)
    assert calibration.expected_calibration_error(certain, labels) == pytest.approx(0.5)
    # Confidence 0.75 and right 3 times in 4: calibrated.
    probs = np.array([[0.75, 0.25], [0.25, 0.75], [0.75, 0.25], [0.75, 0.25]])
    assert calibration.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    # Two bins: 0.95 right twice (gap 0.05), 0.55 right once of two (gap 0.05): ECE 0.05.
    probs = np.array([[0.95, 0.05], [0.05, 0.95], [0.55, 0.45], [0.55, 0.45]])
    res = calibration.calibration_bins(probs, np.array([0, 1, 0, 1]), n_bins=10)
    assert res.ece == pytest.approx(0.05)
    assert res.counts.tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 0, 2]
    np.testing.assert_allclose(calibration.softmax(np.array([[1000.0, 1000.0]])), [[0.5, 0.5]])


def test_bootstrap_error_bars_match_known_answers():
    # The accuracy of n predictions right with probability p has standard deviation sqrt(p (1 - p) / n);
    # the NLL of n rows, std(-log p) / sqrt(n).
    rng = np.random.default_rng(0)
    n, p = 2000, 0.8
    labels = (rng.random(n) > p).astype(int)  # label 0 with probability p; every row predicts 0
    conf = rng.uniform(0.6, 0.99, n)
    probs = np.stack([conf, 1 - conf], 1)
    std = calibration.bootstrap_std(calibration.accuracy, probs, labels, n_resamples=2000)
    assert std == pytest.approx(np.sqrt(p * (1 - p) / n), rel=0.08)
    nll_rows = -np.log(probs[np.arange(n), labels])
    std = calibration.bootstrap_std(calibration.negative_log_likelihood, probs, labels, n_resamples=2000)
    assert std == pytest.approx(nll_rows.std() / np.sqrt(n), rel=0.08)
    assert calibration.negative_log_likelihood(probs, labels) == pytest.approx(nll_rows.mean())
    with pytest.raises(ValueError, match="n_resamples"):
        calibration.bootstrap_std(calibration.accuracy, probs, labels, n_resamples=1)



def test_temperature_scaling_recovers_the_temperature_the_labels_were_drawn_at():
    """Labels drawn from softmax(z / T0): the fitted T is T0 (to the sampling error of 20,000 rows),
    at the fit d NLL / d(1 / T) = mean(E_p[z] - z_label) is zero, the accuracy is kept, and a
    classifier scaled by its own fitted T is calibrated (ECE near 0) where it was not."""
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 3.0, (20000, 5))
    for t0 in (0.5, 2.0):
        p0 = calibration.softmax(z / t0)
        labels = (p0.cumsum(1) > rng.random((len(z), 1))).argmax(1)
        t = calibration.fit_temperature(z, labels)
        assert t == pytest.approx(t0, rel=0.03)
        p = calibration.softmax(z / t)
        assert abs(np.mean((p * z).sum(1) - z[np.arange(len(z)), labels])) < 1e-4 * np.abs(z).mean()
        assert calibration.accuracy(p, labels) == calibration.accuracy(calibration.softmax(z), labels)
        assert calibration.expected_calibration_error(calibration.softmax(z), labels) > 0.1
        assert calibration.expected_calibration_error(p, labels) < 0.02
    with pytest.raises(ValueError, match=r"logits \(n, K\) and labels"):
        calibration.fit_temperature(z[:, 0], labels)
    with pytest.raises(ValueError, match="NaN or infinite"):
        calibration.fit_temperature(np.full((2, 3), np.nan), np.array([0, 1]))
    # Every label ranked first (a network that fits its training images): the NLL falls all the way to
    # T -> 0, so no temperature is returned; one image ranked wrong gives the fit a finite minimum.
    right = z.argmax(1)
    with pytest.raises(ValueError, match="no finite temperature"):
        calibration.fit_temperature(z, right)
    wrong = right.copy()
    wrong[0] = (right[0] + 1) % z.shape[1]
    assert 0.001 < calibration.fit_temperature(z, wrong) < 1

def digits_config(method="jem", **extra):
    cfg = load_config(str(ROOT / "configs" / "jem_digits.py"))
    cfg.method.name = method
    cfg.ml.buffer_size, cfg.ml.steps = 128, 3
    for k, v in extra.items():
        group, field = k.split("__")
        cfg[group][field] = v
    return cfg


def batch(n=16):
    x = jax.random.uniform(jax.random.key(3), (n, 8, 8, 1))
    return x, jnp.arange(n, dtype=jnp.int32) % 10


def test_jem_loss_is_cross_entropy_plus_maximum_likelihood_on_the_marginal_energy():
    x, y = batch()
    m = methods.build(digits_config(ml__data_noise=0.0), (8, 8, 1))
    params, carry = m.init_params(jax.random.key(0)), m.init_carry(jax.random.key(1))
    value, (new_carry, metrics) = jax.jit(m.loss)(params, carry, (x, y), jax.random.key(4), 0)
    logits = m.classifier(params)(x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    np.testing.assert_allclose(metrics["cross_entropy"], ce, rtol=1e-5)
    # The generative half: mean E(data) - mean E(chains) + energy_l2 (mean E(data)^2 + mean E(chains)^2),
    # with E(x) = -logsumexp f(x) (the method's energy, which evaluation and restoration use).
    np.testing.assert_allclose(metrics["energy_data"], jnp.mean(-jax.nn.logsumexp(logits, axis=1)), rtol=1e-5)
    np.testing.assert_allclose(m.energy(params)(x), -jax.nn.logsumexp(logits, axis=1), rtol=1e-6)
    chains = new_carry["buffer"][jnp.asarray(jax.random.randint(jax.random.split(jax.random.split(
        jax.random.key(4), 4)[2])[0], (16,), 0, 128))]
    e_model = m.energy(params)(chains)
    np.testing.assert_allclose(metrics["energy_model"], e_model.mean(), rtol=1e-5)
    e_data = metrics["energy_data"]
    expected = ce + e_data - e_model.mean() + (jnp.mean(m.energy(params)(x) ** 2) + jnp.mean(e_model**2))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # ml.grad_l2 adds its weight times mean |dE/dx|^2 at the data plus the same at the (same) chains
    # (a large weight: the untrained network's input gradients are tiny, |dE/dx|^2 ~ 1e-8).
    steep = methods.build(digits_config(ml__data_noise=0.0, ml__grad_l2=1e6), (8, 8, 1))
    v_steep, (c_steep, _) = jax.jit(steep.loss)(params, carry, (x, y), jax.random.key(4), 0)
    chex.assert_trees_all_equal(c_steep, new_carry)
    sq = [jnp.mean(jnp.sum(jax.grad(lambda z: jnp.sum(m.energy(params)(z)))(pts) ** 2, axis=(1, 2, 3)))
          for pts in (x, chains)]
    # (``chains`` reads the updated buffer, where a row drawn twice holds the later chain: within 1%.)
    np.testing.assert_allclose(v_steep - value, 1e6 * (sq[0] + sq[1]), rtol=1e-2)
    # The plain classifier of the same network: cross-entropy only, no chains, no buffer.
    plain = methods.build(digits_config(jem__generative_weight=0.0, ml__data_noise=0.0), (8, 8, 1))
    assert plain.init_carry(jax.random.key(1)) == ()
    v, (c, met) = jax.jit(plain.loss)(params, (), (x, y), jax.random.key(4), 0)
    np.testing.assert_allclose(v, ce, rtol=1e-5)
    assert set(met) == {"cross_entropy", "accuracy"} and c == ()


def test_a_conditional_buffer_keeps_a_label_per_row_and_fresh_rows_take_their_batchs():
    x, y = batch()
    cfg = digits_config("ml", ml__reinit_prob=0.5, ml__buffer_size=4096)
    m = methods.build(cfg, (8, 8, 1))
    params, carry = m.init_params(jax.random.key(0)), m.init_carry(jax.random.key(1))
    assert carry["labels"].shape == (4096,) and int(carry["labels"].max()) < 10
    key = jax.random.key(5)
    _, (new, metrics) = jax.jit(m.loss)(params, carry, (x, y), key, 0)
    k_draw = jax.random.split(key, 4)[2]
    _, idx, reinit = S.buffer_draw(k_draw, carry["buffer"], 16, reinit_prob=0.5, fresh=x)
    expected = carry["labels"].at[idx].set(jnp.where(reinit, y, carry["labels"][idx]))
    np.testing.assert_array_equal(new["labels"], expected)
    assert 0 < float(metrics["fresh_share"]) < 1
    # The chains' energy is each row's own class energy: E(x_j, y_j) = -f(x_j)[y_j] (the 16 rows drawn
    # are distinct, so the buffer holds every chain's end).
    assert len(set(np.asarray(idx).tolist())) == 16
    rows = new["buffer"][idx]
    f = m.classifier(params)(rows)
    np.testing.assert_allclose(metrics["energy_model"], -jnp.mean(f[jnp.arange(16), new["labels"][idx]]), rtol=1e-5)


def test_conditional_mdsm_learns_each_class_its_own_smoothed_gaussian():
    """Known optimum, per class: with class k's data N(mu_k, s_k^2 I_D) and logits
    f_k(x) = -|x - m_k|^2 / (2 a_k), multiscale denoising score matching on E(x, y) = -f(x)[y] (the
    mdsm method's loss with labels) is minimised at m_k = mu_k and a_k = sigma0^2 (1 + s_k^2 mean 1/sigma^2),
    the mean over class k's examples
    (tests/test_losses.py derives the one-class case); the classes do not mix."""
    d, n, sigma0 = 4, 16384, 0.1
    mu, s = jnp.array([[-1.0] * d, [2.0] * d]), jnp.array([0.4, 0.9])
    y = jnp.arange(n) % 2
    x = mu[y] + s[y, None] * jax.random.normal(jax.random.key(11), (n, d))
    sigmas = jnp.tile(losses.noise_levels(128, 0.1, 3.0, "geometric"), n // 128)
    m_inv = np.array([np.mean(1.0 / np.asarray(sigmas)[np.asarray(y) == k] ** 2) for k in (0, 1)])  # per class

    def loss(theta):
        m, log_a = theta

        def logits(z):
            return -jnp.sum((z[:, None, :] - m[None]) ** 2, axis=-1) / (2.0 * jnp.exp(log_a))

        return losses.mdsm_loss(S.class_energy(logits, y), x, jax.random.key(12), sigmas, sigma0)

    opt = optax.adam(optax.cosine_decay_schedule(0.05, 600))

    @jax.jit
    def step(theta, state):
        updates, state = opt.update(jax.grad(loss)(theta), state)
        return optax.apply_updates(theta, updates), state

    theta = (jnp.zeros((2, d)), jnp.log(jnp.array([0.5, 0.5])))
    state = opt.init(theta)
    for _ in range(600):
        theta, state = step(theta, state)
    np.testing.assert_allclose(theta[0], mu, atol=0.1)  # a mixed-up class would sit 3 away
    np.testing.assert_allclose(jnp.exp(theta[1]), sigma0**2 * (1 + np.asarray(s) ** 2 * m_inv), rtol=0.05)


def test_the_mdsm_method_with_classes_trains_and_samples_the_class_energy():
    cfg = load_config(str(ROOT / "configs" / "mdsm_conditional_digits.py"))
    cfg.model.width, cfg.model.blocks_per_stage, cfg.train.batch_size = 4, 0, 8
    m = methods.build(cfg, (8, 8, 1))
    assert m.labels == 10 and m.classifier is None  # score matching fixes no class normalisers
    params = m.init_params(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (8, 8, 8, 1))
    y = jnp.arange(8, dtype=jnp.int32) % 10
    key = jax.random.key(2)
    f = jax.tree_util.Partial(m.networks["energy"].apply, params["energy"])
    # Each example's energy is its own class's read-out (one-hot written out, not class_energy).
    own_class = jax.tree_util.Partial(lambda z: -jnp.sum(f(z) * jax.nn.one_hot(y, 10), axis=1))
    want = losses.mdsm_loss(own_class, x, key, mdsm.noise_levels(cfg), cfg.mdsm.sigma0)
    got, _ = m.loss(params, (), (x, y), key, 0)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(m.energy(params)(x), -jax.nn.logsumexp(f(x), axis=1), rtol=1e-5)
    cfg.sample.label = 3
    sampler = methods.build(cfg, (8, 8, 1)).sampler(params, ())
    assert sampler.settings["label"] == 3
    np.testing.assert_allclose(sampler.stages[0].energy(x), -f(x)[:, 3], rtol=1e-6)


@pytest.mark.parametrize("cfg_change,says", [
    ({"model__classes": 0}, "method jem needs a classifier"),
    ({"model__name": "gaussian"}, "needs a network with a classifier read-out"),
    ({"model__classes": 1}, "model.classes must be 0"),
    ({"sample__label": 10}, "sample.label must be a class 0..9"),
    ({"sample__label": -1, "sample__n": 300, "sample__batch_size": 64}, "must be a multiple of 100"),
])
def test_settings_that_cannot_work_are_refused(cfg_change, says):
    with pytest.raises(ConfigError, match=says):
        methods.build(digits_config(**cfg_change), (8, 8, 1))


def test_a_label_without_classes_and_a_dataset_without_labels_are_refused(tmp_path, capsys):
    pcd = str(ROOT / "configs" / "pcd_digits.py")
    assert main.run(["--config", pcd, "--workdir", str(tmp_path / "a"), "--config.sample.label=3", "--no-progress"]) == 2
    assert "needs a class-conditional model" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    # A dataset without labels (the registered array of a user with none).
    from ebmjax import data
    xs = data.load_source({"name": "digits"}, "all").get(np.arange(64))
    data.register(data.Dataset("unlabelled", lambda split, o: data.ArraySource("unlabelled", xs), "no labels"),
                  replace=True)
    try:
        assert main.run(["--config", str(ROOT / "configs" / "jem_digits.py"), "--workdir", str(tmp_path / "b"),
                         "--config.data.name=unlabelled", "--config.train.steps=2", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "has no labels" in err and "model.classes" in err and "Traceback" not in err
        assert not (tmp_path / "b" / "checkpoints").exists()
    finally:
        data.unregister("unlabelled")


@pytest.mark.slow  # about 40 s on 2 CPU cores; the whole suite (CI) runs it
def test_a_conditional_model_of_eight_gaussians_samples_the_mode_it_is_asked_for(tmp_path):
    """Known answer: the eight Gaussians' points carry their component as label, so the class-conditional
    energy of class k must put its samples on mode k (and E(x) on all eight)."""
    import numpy as np

    from ebmjax.data import toy2d

    wd = tmp_path / "run"
    base = ["--config", str(ROOT / "configs" / "ml_toy2d.py"), "--workdir", str(wd), "--no-progress",
            "--config.model.classes=8", "--config.model.hidden=64,64", "--config.train.steps=600",
            "--config.ml.buffer_size=2048", "--config.ml.sample_steps=200", "--config.sample.n=400",
            "--config.sample.batch_size=400"]
    assert main.run(base + ["--config.sample.label=5"]) == 0
    x = np.load(wd / "samples" / "samples.npz")["images"]
    # The class's density (its mass over each mode's region, from the energy on a grid) sits on its mode ...
    density = json.loads((wd / "samples" / "summary.json").read_text())["density"]
    assert density["label"] == 5 and density["learned_mass_of_the_label"] > 0.9, density
    # ... and so do most of its chains, continued from the buffer rows that ran on class 5 (Langevin
    # does not cross between modes, so rows that ended elsewhere stay there).
    modes, _ = toy2d.assign_modes("eight_gaussians", x)
    share = np.bincount(modes, minlength=8) / len(x)
    assert share[5] > 0.6 and share.argmax() == 5, share
    # Another class from the same checkpoint, into its own folder.
    assert main.run(base + ["--mode", "sample", "--config.sample.label=2", "--config.sample.seed=1"]) == 0
    density = json.loads((wd / "samples_seed1" / "summary.json").read_text())["density"]
    assert density["learned_mass_of_the_label"] > 0.9, density
    modes, _ = toy2d.assign_modes("eight_gaussians", np.load(wd / "samples_seed1" / "samples.npz")["images"])
    assert np.mean(modes == 2) > 0.6


TINY_JEM = ["--config.model.widths=4,8", "--config.train.batch_size=16", "--config.train.steps=20",
            "--config.train.checkpoint_every=10", "--config.train.log_every=10", "--config.ml.buffer_size=64",
            "--config.ml.steps=3", "--config.ml.sample_steps=5", "--config.sample.n=0", "--no-progress",
            "--config.eval.n_samples=20", "--config.eval.n_data=100", "--config.eval.ood.n=50",
            "--config.eval.neighbours_train=100", "--config.eval.neighbours_summary=20"]


@pytest.mark.slow  # about 60 s on 2 CPU cores; the whole suite (CI) runs it
def test_jem_and_a_conditional_model_on_the_command_line(tmp_path, capsys):
    import numpy as np

    jem, cond = tmp_path / "jem", tmp_path / "cond"
    jem_cfg = ["--config", str(ROOT / "configs" / "jem_digits.py")]
    cond_cfg = ["--config", str(ROOT / "configs" / "ml_conditional_digits.py")]
    assert main.run(jem_cfg + ["--workdir", str(jem), *TINY_JEM]) == 0
    assert main.run(cond_cfg + ["--workdir", str(cond), *TINY_JEM]) == 0
    # --mode eval: the classifier's figures, by the formulas, from the network itself.
    assert main.run(jem_cfg + ["--workdir", str(jem), "--mode", "eval", "--config.eval.metrics=classifier,ood",
                               *TINY_JEM]) == 0
    report = json.loads((jem / "eval" / "report.json").read_text())
    c = report["metrics"]["classifier"]
    assert {"accuracy", "ece", "nll", "ood"} <= set(c) and (jem / "eval" / "calibration.png").stat().st_size > 0
    from ebmjax import data
    from ebmjax.config import load_config
    from ebmjax.train import loop

    cfg = load_config(jem_cfg[1], [tuple(a[len("--config."):].split("=", 1)) for a in TINY_JEM if "=" in a])
    state, method, _ = loop.load_trained(cfg, jem)
    test = data.load_source(cfg.data, "test")
    x, y = test.get(np.arange(100)), test.labels(np.arange(100))
    probs = calibration.softmax(np.asarray(method.classifier(state.params)(x)))
    assert c["n"] == 100 and c["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == y))
    assert c["ece"] == pytest.approx(calibration.expected_calibration_error(probs, y), abs=1e-6)
    assert set(c["std"]) == {"accuracy", "nll", "ece"} and 0 < c["std"]["accuracy"] < 0.1
    assert c["mean_confidence"] == pytest.approx(probs.max(1).mean(), abs=1e-6)
    # The same figures on the training images (eval.n_data of them), by the same formulas.
    train = data.load_source(cfg.data, "train")
    n_train = min(len(train), cfg.eval.n_data)
    logits_train = np.asarray(method.classifier(state.params)(train.get(np.arange(n_train))), np.float64)
    p_train, y_train = calibration.softmax(logits_train), train.labels(np.arange(n_train))
    t = c["train"]
    assert t["n"] == n_train and t["accuracy"] == pytest.approx(np.mean(p_train.argmax(1) == y_train))
    assert t["ece"] == pytest.approx(calibration.expected_calibration_error(p_train, y_train), abs=1e-6)
    assert t["nll"] == pytest.approx(calibration.negative_log_likelihood(p_train, y_train), rel=1e-5)
    assert t["mean_confidence"] == pytest.approx(p_train.max(1).mean(), abs=1e-6)
    # Temperature scaling: T fitted to the training images' labels, applied to the test logits.
    s = c["temperature_scaled"]
    temp = calibration.fit_temperature(logits_train, y_train)
    assert s["temperature"] == pytest.approx(temp, rel=1e-4)
    p_scaled = calibration.softmax(np.asarray(method.classifier(state.params)(x), np.float64) / temp)
    assert s["accuracy"] == c["accuracy"] and s["n"] == 100
    assert s["nll"] == pytest.approx(calibration.negative_log_likelihood(p_scaled, y), rel=1e-3)
    assert s["ece"] == pytest.approx(calibration.expected_calibration_error(p_scaled, y), abs=1e-3)
    assert (jem / "eval" / "calibration_scaled.png").stat().st_size > 0
    # The energy's OOD AUROC is the ood section's, on the same images.
    for name, s in c["ood"].items():
        assert s["ood_auroc_energy"] == pytest.approx(report["metrics"]["ood"]["sets"][name]["auroc"]), name
    # A class, and every class in turn, from the conditional model; the judge's agreement is reported.
    assert main.run(cond_cfg + ["--workdir", str(cond), *TINY_JEM, "--mode", "sample", "--config.sample.n=100",
                                "--config.sample.batch_size=100"]) == 0
    summary = json.loads((cond / "samples" / "summary.json").read_text())
    assert "label_agreement" in summary["quality"] and summary["n"] == 100
    # Composition: the conditional model's class 3 times the JEM model; every chain's energy is the sum.
    assert main.run(cond_cfg + ["--workdir", str(cond), *TINY_JEM, "--mode", "compose",
                                f"--config.compose.workdirs={jem}", "--config.compose.weights=0.5",
                                "--config.sample.label=3", "--config.sample.n=10", "--config.sample.batch_size=10"]) == 0
    summary = json.loads((cond / "compose" / "summary.json").read_text())
    assert summary["n"] == 10 and (cond / "compose" / "grid.png").stat().st_size > 0
    # A model of other images cannot be multiplied in: one message, before its checkpoint is read.
    other = tmp_path / "other"
    other.mkdir()
    recorded = json.loads((jem / "config.json").read_text())
    recorded["data"]["image_size"] = 16
    (other / "config.json").write_text(json.dumps(recorded))
    capsys.readouterr()
    assert main.run(cond_cfg + ["--workdir", str(cond), *TINY_JEM, "--mode", "compose",
                                f"--config.compose.workdirs={other}", "--config.sample.seed=4",
                                "--config.sample.n=10"]) == 2
    err = capsys.readouterr().err
    assert "models examples of shape (16, 16, 1)" in err and "Traceback" not in err
    assert not (cond / "compose_seed4").exists()


def test_composed_samplers_add_each_models_energy_at_its_temperature():
    """``apps.compose.composed``: every stage's energy becomes E + sum_i w_i (T / T_i) E_i."""
    from ebmjax.apps import compose

    cfg = digits_config("ml")
    base = methods.build(cfg, (8, 8, 1))
    other = methods.build(digits_config("jem", ml__step_size=1.0, ml__noise=0.01), (8, 8, 1))  # another T
    p_base, p_other = base.init_params(jax.random.key(0)), other.init_params(jax.random.key(1))
    e_other = other.energy(p_other)
    sampler = base.sampler(p_base, base.init_carry(jax.random.key(2)))
    out = compose.composed(sampler, base.temperature, [compose.Part("runs/other", other, e_other, 2.0)])
    x = jax.random.uniform(jax.random.key(3), (4, 8, 8, 1))
    scale = 2.0 * base.temperature / other.temperature  # T = noise^2 / (2 step): 2.5e-6 and 5e-5
    assert scale == pytest.approx(0.1)
    for old, new in zip(sampler.stages, out.stages):
        np.testing.assert_allclose(new.energy(x), old.energy(x) + scale * e_other(x), rtol=1e-5)
    assert out.settings["composed_with"] == [["runs/other", pytest.approx(scale)]]


@pytest.mark.slow  # about 35 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.parametrize("method", ["multigrid", "coop", "cfebm"])
def test_the_class_conditional_configs_train_and_sample_the_classes_asked_for(method, tmp_path):
    shrunk = importlib.import_module(f"test_{method}").SHRUNK  # the method's own toy-size overrides
    config = str(ROOT / "configs" / f"{method}_conditional_digits.py")
    wd = tmp_path / "run"
    assert main.run(["--config", config, "--workdir", str(wd), *shrunk]) == 0
    # The judge's share of samples of the class asked for is reported only when a class was asked for.
    quality = json.loads((wd / "samples" / "summary.json").read_text())["quality"]
    assert 0 <= quality["label_agreement"] <= 1, quality
    assert main.run(["--config", config, "--workdir", str(wd), "--mode", "sample", "--config.sample.label=3",
                     "--config.sample.seed=1", *shrunk]) == 0
    images = np.load(wd / "samples_seed1" / "samples.npz")["images"]
    assert images.shape == (8, 8, 8, 1) and np.isfinite(images).all()
    assert "label_agreement" in json.loads((wd / "samples_seed1" / "summary.json").read_text())["quality"]
