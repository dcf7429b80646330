"""Cooperative learning (CoopNets) and the generators: Malhotra's dilated generator keeps an image's
shape and is non-negative; the latent generator makes the data's shape; the energy's and the
generator's losses touch disjoint parameters, so one gradient of their sum is the two original
updates; on a Gaussian target the pair recovers the mean and variance (and, without latent
inference, the generator collapses onto the mean, the reason the inference exists); the digits
config trains and samples through the command line; the CIFAR config builds; a killed run resumes
bit-exactly."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax import methods, models
from ebmjax.apps import main
from ebmjax.config import defaults, load_config, validate
from ebmjax.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
COOP_DIGITS = str(ROOT / "configs" / "coop_digits.py")
COOP_CIFAR = str(ROOT / "configs" / "coop_cifar.py")
DIAGNOSTICS = {"energy_data", "energy_model", "energy_gap", "gen_error", "gen_loss", "energy_loss",
               "energy_proposal"}
# coop_digits at toy size: a tiny energy and generator, short chains.
SHRUNK = ["--config.model.widths=4,8", "--config.coop.latent_dim=4", "--config.coop.gen_widths=8,4",
          "--config.train.steps=6", "--config.train.batch_size=8", "--config.train.log_every=3",
          "--config.train.checkpoint_every=3", "--config.coop.steps=3", "--config.coop.sample_steps=4",
          "--config.sample.n=8", "--config.sample.batch_size=8", "--config.sample.chunk_steps=4", "--no-progress"]


@pytest.mark.slow  # about 11 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.parametrize("shape", [(8, 8, 1), (32, 32, 3), (6, 10, 2)])
def test_dilated_generator_keeps_shapes_and_is_non_negative(shape):
    g = models.DilatedGenerator()
    x = jax.random.normal(jax.random.PRNGKey(0), (3, *shape))
    variables = g.init(jax.random.PRNGKey(1), x)
    y = g.apply(variables, x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) > 0.0  # ReLU output, not all zero
    p = variables["params"]
    # conv3x3 -> conv3x3 dilation 2 -> six parallel dilated branches -> 1x1 conv back to C channels.
    assert p["conv0"]["kernel"].shape[:2] == (3, 3) and p["conv1_dilated2"]["kernel"].shape[:2] == (3, 3)
    branches = sorted(k for k in p if k.startswith("branch"))
    assert len(branches) == 6 == len(models.DilatedGenerator.rates)
    assert p["out_1x1"]["kernel"].shape == (1, 1, 6 * g.branch_width, shape[-1])


def test_dilated_generator_sees_as_far_as_its_dilations():
    """Receptive radius of an output pixel: 1 (conv3x3) + 2 (conv3x3, dilation 2) + the branch's
    rate. With one branch of rate 4 an input pixel 7 away from the centre can move it, one 8 away
    cannot (the dilations are real, and "same" padding keeps the map)."""
    g = models.DilatedGenerator(rates=(4,), width=8, branch_width=8)
    x = jnp.zeros((1, 17, 17, 1))
    variables = g.init(jax.random.PRNGKey(0), x)
    reach7 = False
    for seed in range(4):
        v = jax.random.normal(jax.random.PRNGKey(seed + 1), x.shape)
        grad = np.abs(np.asarray(jax.grad(lambda y: g.apply(variables, y)[0, 8, 8, 0])(v)))[0, :, :, 0]
        assert grad[8, 0] == grad[8, 16] == grad[0, 8] == grad[16, 8] == 0.0
        assert grad[np.abs(np.arange(17) - 8) > 7].sum() == 0 and grad[:, np.abs(np.arange(17) - 8) > 7].sum() == 0
        reach7 |= bool(grad[8, 1] > 0 or grad[8, 15] > 0)
    assert reach7


def test_latent_generator_makes_the_data_shape():
    z = jax.random.normal(jax.random.PRNGKey(0), (5, 16))
    g = models.LatentGenerator(out_shape=(8, 8, 1), widths=(64, 32), value_range=(0.0, 1.0))
    x = g.apply(g.init(jax.random.PRNGKey(1), z), z)
    assert x.shape == (5, 8, 8, 1) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    cifar = models.LatentGenerator(out_shape=(32, 32, 3))  # CoopNets' 256@4 -> 128@8 -> 64@16 -> 3@32
    z100 = jax.ShapeDtypeStruct((2, 100), jnp.float32)
    variables = jax.eval_shape(cifar.init, jax.random.PRNGKey(0), z100)
    assert jax.eval_shape(cifar.apply, variables, z100).shape == (2, 32, 32, 3)
    assert variables["params"]["dense"]["kernel"].shape == (100, 4 * 4 * 256)
    linear = models.LatentGenerator(out_shape=(3,), widths=(), output="linear")
    assert linear.apply(linear.init(jax.random.PRNGKey(0), z[:, :3]), z[:, :3]).shape == (5, 3)
    with pytest.raises(ConfigError, match="multiples of 4"):
        models.LatentGenerator(out_shape=(6, 6, 1), widths=(8, 8)).init(jax.random.PRNGKey(0), z)


def _digits_cfg(**coop):
    cfg = defaults()
    cfg.method.name, cfg.model.name, cfg.model.widths, cfg.model.activation = "coop", "convnet", (4, 8), "lrelu"
    c = cfg.coop
    c.latent_dim, c.gen_widths, c.steps, c.step_size, c.noise = 4, (8, 4), 3, 5.0, 0.005
    for k, v in coop.items():
        c[k] = v
    validate(cfg)
    return cfg


def _grads_of(method, params, metric, batch, key):
    return jax.jit(jax.grad(lambda p: method.loss(p, (), batch, key, jnp.int32(0))[1][1][metric]))(params)


def _norm(tree):
    return float(jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(tree))))


@pytest.mark.parametrize("coop", [{}, {"infer_steps": 3, "ref_sigma": 0.5, "energy_l2": 0.1}],
                         ids=["default", "inference+reference"])
@pytest.mark.slow  # about 50 s on 2 CPU cores; the whole suite (CI) runs it
def test_energy_and_generator_losses_touch_disjoint_parameters(coop):
    method = methods.build(_digits_cfg(**coop), (8, 8, 1))
    params = method.init_params(jax.random.PRNGKey(0))
    batch = jax.random.uniform(jax.random.PRNGKey(1), (6, 8, 8, 1))
    key = jax.random.PRNGKey(2)
    g_energy = _grads_of(method, params, "energy_loss", batch, key)
    g_gen = _grads_of(method, params, "gen_loss", batch, key)
    # Each part moves only its own network, and moves it.
    assert _norm(g_energy["generator"]) == 0.0 and _norm(g_energy["energy"]) > 0
    assert _norm(g_gen["energy"]) == 0.0 and _norm(g_gen["generator"]) > 0
    # The shared step's one gradient of the sum is the two parts side by side.
    (value, (_, metrics)), g = jax.jit(jax.value_and_grad(method.loss, has_aux=True))(params, (), batch, key,
                                                                                    jnp.int32(0))
    np.testing.assert_allclose(value, metrics["energy_loss"] + metrics["gen_loss"], rtol=1e-6)
    for name, part in (("energy", g_energy), ("generator", g_gen)):
        for a, b in zip(jax.tree.leaves(g[name]), jax.tree.leaves(part[name])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(metrics["energy_gap"], metrics["energy_model"] - metrics["energy_data"], rtol=1e-5,
                               atol=1e-7)


def _gaussian_run(infer_steps: int):
    """coop on N(m, 0.7^2 I) points in 3-D: the Gaussian energy (learned mean and log-std) and a linear
    generator x = A z + c, T = 1 Langevin (step 0.02, noise 0.2), 20 steps per training step."""
    from ebmjax.train import state as train_state
    from ebmjax.train import step as train_step

    d, mean, std = 3, np.array([1.0, -0.5, 0.25]), 0.7
    cfg = defaults()
    cfg.method.name, cfg.model.name = "coop", "gaussian"
    cfg.train.batch_size, cfg.train.steps, cfg.train.lr, cfg.train.lr_end = 256, 600, 0.05, 0.005
    cfg.train.b1, cfg.train.b2 = 0.5, 0.999
    c = cfg.coop
    c.latent_dim, c.gen_widths, c.gen_output, c.gen_lr, c.gen_sigma = d, (), "linear", 0.05, 0.1
    c.steps, c.step_size, c.noise, c.clamp = 20, 0.02, 0.2, False
    # Latent Langevin at T = 1 on the posterior of z (precision about 1 + 0.49 / 0.1^2 = 50).
    c.infer_steps, c.infer_step_size, c.infer_noise = infer_steps, 0.005, 0.1
    validate(cfg)
    data = mean + std * np.random.default_rng(0).standard_normal((4096, d))
    method = methods.build(cfg, (d,), value_range=(-4.0, 4.0))
    assert method.temperature == pytest.approx(1.0)
    state = train_state.create(method.init_params(jax.random.PRNGKey(0)), method.optimizer, ())
    step = jax.jit(train_step.make_train_step(method))
    rng = np.random.default_rng(1)
    for _ in range(cfg.train.steps):
        state, metrics = step(state, jnp.asarray(data[rng.integers(0, len(data), 256)], jnp.float32),
                              jax.random.PRNGKey(2))
    assert int(state.skipped) == 0
    e = state.params["energy"]["params"]
    g = state.params["generator"]["params"]["out"]
    gen_std = np.sqrt(np.diag(np.asarray(g["kernel"]).T @ np.asarray(g["kernel"])))
    return mean, std, np.asarray(e["mu"]), float(np.exp(e["log_sigma"])), np.asarray(g["bias"]), gen_std


def test_cooperative_pair_recovers_a_gaussian_s_mean_and_variance():
    """With latent inference the generator's update is a Monte Carlo EM step on the revised samples
    (alternating back-propagation), whose fixed point is the maximum-likelihood fit: a linear generator
    with noise sigma_g fits A A^T = S - sigma_g^2 I, here std sqrt(0.49 - 0.01) = 0.693. The energy, fed
    chains that start from such proposals, reaches the data's mean and standard deviation.
    Tolerances: 0.06 on the means (the fit after 600 steps at lr 0.05 -> 0.005 is off by up to ~0.035), 6% on
    the standard deviations."""
    mean, std, mu, sigma, c, gen_std = _gaussian_run(infer_steps=20)
    np.testing.assert_allclose(mu, mean, atol=0.06)
    np.testing.assert_allclose(sigma, std, rtol=0.06)
    np.testing.assert_allclose(c, mean, atol=0.06)
    np.testing.assert_allclose(gen_std, np.sqrt(std**2 - 0.1**2), rtol=0.08)


def test_without_latent_inference_the_generator_collapses_onto_the_mean():
    """Without inference ("MCMC teaching" with z fixed) the generator regresses the revised samples
    on z: it learns their conditional mean, which Langevin contracts towards the mode, so a linear
    generator shrinks to the mean; the energy, fed chains that start too narrow, overestimates the
    spread. Documented in the coop method; why coop.infer_steps exists."""
    mean, std, mu, sigma, c, gen_std = _gaussian_run(infer_steps=0)
    np.testing.assert_allclose(c, mean, atol=0.06)
    assert gen_std.max() < 0.15
    assert sigma > 1.08 * std
    np.testing.assert_allclose(mu, mean, atol=0.06)


def test_coop_config_values_are_checked():
    cfg = load_config(COOP_DIGITS)
    cfg.coop.gen_b1 = 1.0
    with pytest.raises(ConfigError, match="coop.gen_b1"):
        validate(cfg)
    for key, value, match in (("coop.gen_widths", "(0,)", "gen_widths"), ("coop.gen_output", "sigmoid", "gen_output"),
                              ("coop.steps", "0", "coop.steps")):
        with pytest.raises(ConfigError, match=match):
            methods.build(load_config(COOP_DIGITS, [(key, value)]), (8, 8, 1))


def _metrics(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # about 36 s on 2 CPU cores; the whole suite (CI) runs it
def test_coop_digits_config_trains_and_samples(tmp_path):
    cfg = load_config(COOP_DIGITS)
    assert cfg.method.name == "coop" and cfg.data.name == "digits"
    assert "--config configs/coop_digits.py" in pathlib.Path(COOP_DIGITS).read_text()  # the command
    wd = tmp_path / "run"
    assert main.run(["--config", COOP_DIGITS, "--workdir", str(wd), *SHRUNK]) == 0
    rec = _metrics(wd)
    assert [r["step"] for r in rec] == [3, 6] and all(r["skipped"] == 0 for r in rec)
    for r in rec:
        assert DIAGNOSTICS <= set(r), r
        assert np.isfinite([r[k] for k in DIAGNOSTICS]).all() and r["gen_error"] > 0
        assert r["grad_norm/energy"] > 0 and r["grad_norm/generator"] > 0
    images = np.load(wd / "samples" / "samples.npz")["images"]
    assert images.shape == (8, 8, 8, 1) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0
    assert (wd / "samples" / "grid.png").exists() and (wd / "samples" / "proposals.png").exists()
    # --mode sample reloads both networks and starts new chains at the generator's proposals.
    assert main.run(["--config", COOP_DIGITS, "--workdir", str(wd), "--mode", "sample", "--config.sample.seed=1",
                     *SHRUNK]) == 0
    other = np.load(wd / "samples_seed1" / "samples.npz")["images"]
    assert other.shape == images.shape and not np.allclose(other, images)


@pytest.mark.slow  # about 12 s on 2 CPU cores; the whole suite (CI) runs it
def test_coop_sampler_starts_at_the_generator_s_proposals():
    """Sampler.init is the generator's output for fresh z (jittable, parameters as its argument), and
    its one stage is the energy's Langevin."""
    cfg = _digits_cfg()
    method = methods.build(cfg, (8, 8, 1))
    params = method.init_params(jax.random.PRNGKey(0))
    sampler = method.sampler(params, ())
    key = jax.random.PRNGKey(3)
    x0 = jax.jit(lambda f, k: f(k, 5))(sampler.init, key)
    want = method.networks["generator"].apply(params["generator"], jax.random.normal(key, (5, cfg.coop.latent_dim)))
    np.testing.assert_allclose(x0, want, rtol=1e-6)
    assert [s.name for s in sampler.stages] == ["langevin"] and sampler.steps == cfg.coop.sample_steps
    assert sampler.settings["init"] == "generator"


@pytest.mark.slow  # about 15 s on 2 CPU cores; the whole suite (CI) runs it
def test_a_class_conditional_coop_proposes_and_revises_each_example_on_its_class():
    # The generator reads [z, one_hot(y)]; with its one-hot rows zeroed it ignores y, and with class 1's
    # read-out twice class 0's, E(x, 1) = 2 E(x, 0): noise-free, unclipped chains on class 1 move as on
    # class 0 at twice the step. So at label 1 the energy's loss is twice the unconditional one at step
    # 2 * step (and the generator's the same), at label 0 both equal the unconditional ones at step.
    fields = {"noise": 0.0, "grad_clip": None, "clamp": False, "data_noise": 0.0}
    cfg = _digits_cfg(**fields)
    cfg.model.classes = 2
    cond = methods.build(cfg, (8, 8, 1))
    assert cond.labels == 2
    p = cond.init_params(jax.random.PRNGKey(0))
    out, dense = p["energy"]["params"]["out"], p["generator"]["params"]["dense"]
    p["energy"]["params"]["out"] = {"kernel": out["kernel"][:, :1] * jnp.array([[1.0, 2.0]]),
                                    "bias": out["bias"][:1] * jnp.array([1.0, 2.0])}
    p["generator"]["params"]["dense"] = {**dense, "kernel": dense["kernel"].at[4:].set(0.0)}
    plain = {"energy": {"params": {**p["energy"]["params"], "out": {"kernel": -out["kernel"][:, :1],
                                                                      "bias": -out["bias"][:1]}}},
             "generator": {"params": {**p["generator"]["params"], "dense": {**dense, "kernel": dense["kernel"][:4]}}}}
    x = jax.random.uniform(jax.random.PRNGKey(1), (6, 8, 8, 1))
    key = jax.random.PRNGKey(2)
    for label, scale in ((0, 1.0), (1, 2.0)):
        y = jnp.full((6,), label, jnp.int32)
        _, (_, got) = cond.loss(p, (), (x, y), key, jnp.int32(0))
        ref = methods.build(_digits_cfg(**fields, step_size=scale * cfg.coop.step_size), (8, 8, 1))
        _, (_, want) = ref.loss(plain, (), x, key, jnp.int32(0))
        # The classifier's logits are minus the energy network's read-out: E(x, y) = -f(x)[y].
        np.testing.assert_allclose(got["energy_loss"], scale * want["energy_loss"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got["gen_loss"], want["gen_loss"], rtol=1e-4, atol=1e-6)
    # Sampling class 1: proposals g(z, 1) from the key's z, revised on E(x, 1).
    cfg.sample.label = 1
    sampler = methods.build(cfg, (8, 8, 1)).sampler(p, ())
    assert sampler.settings["label"] == 1
    k = jax.random.PRNGKey(3)
    z = jax.random.normal(jax.random.split(k)[0], (5, cfg.coop.latent_dim))
    want = cond.networks["generator"].apply(p["generator"], jnp.concatenate([z, jax.nn.one_hot(jnp.ones(5, int), 2)], 1))
    np.testing.assert_allclose(jax.jit(lambda f, kk: f(kk, 5))(sampler.init, k), want, rtol=1e-6)
    f = cond.classifier(p)(x)
    np.testing.assert_allclose(sampler.stages[0].energy(x), -f[:, 1], rtol=1e-6)
    np.testing.assert_allclose(cond.energy(p)(x), -jax.nn.logsumexp(f, axis=1), rtol=1e-5)


def test_coop_cifar_config_builds_on_32x32x3():
    cfg = load_config(COOP_CIFAR)
    assert cfg.method.name == "coop" and cfg.data.name == "cifar10"
    method = methods.build(cfg, (32, 32, 3))
    key = jax.random.PRNGKey(0)
    params = jax.eval_shape(method.init_params, key)
    assert set(params) == {"energy", "generator"}
    assert params["generator"]["params"]["dense"]["kernel"].shape == (cfg.coop.latent_dim, 4 * 4 * 256)
    batch = jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.float32)
    loss, (_, out) = jax.eval_shape(method.loss, params, (), batch, key, jnp.int32(0))
    assert loss.shape == () and {"energy_data", "energy_model", "gen_error"} <= set(out)
    # params are abstract here: the sampler is built and started inside eval_shape.
    assert jax.eval_shape(lambda p, k: method.sampler(p, ()).init(k, 6), params, key).shape == (6, 32, 32, 3)
    assert set(method.learning_rates) == {"energy", "generator"}
    assert method.learning_rates["generator"](0) != method.learning_rates["energy"](0)
