"""Layer 1 of maximum-likelihood EBMs checked against known answers: the loss's gradient is the
gradient of the negative log-likelihood of a Gaussian family, the replay buffer draws, replaces and
writes back what it says, and the decoupled Langevin kernel clips and clamps exactly."""

import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax import losses, samplers
from ebmjax.errors import ConfigError

D = 3


def gaussian_energy(theta):
    """E(x) = |x - mu|^2 / (2 s^2), theta = (mu (D,), log s)."""
    mu, log_s = theta

    def energy(x):
        return 0.5 * jnp.sum((x - mu) ** 2, axis=-1) * jnp.exp(-2 * log_s)

    return energy


def nll_grad(theta, x):
    """Exact gradient of the mean NLL of N(mu, s^2 I): -log p = E + D log s + const."""
    mu, log_s = theta
    s2 = np.exp(2 * log_s)
    return (-(x - mu).mean(0) / s2, -(np.sum((x - mu) ** 2, -1) / s2).mean() + D)


def test_ml_loss_gradient_is_the_nll_gradient_with_exact_model_samples():
    theta = (jnp.array([0.5, -1.0, 2.0]), jnp.asarray(np.log(1.5)))
    x_data = jax.random.normal(jax.random.PRNGKey(0), (512, D)) * 0.7 + 1.0
    # Exact samples of the model: mu + s z; many of them, so the model term's Monte Carlo error is small.
    x_model = theta[0] + np.exp(float(theta[1])) * jax.random.normal(jax.random.PRNGKey(1), (200_000, D))
    g = jax.grad(lambda t: losses.ml_loss(gaussian_energy(t), x_data, x_model))(theta)
    want = nll_grad(theta, np.asarray(x_data))
    np.testing.assert_allclose(g[0], want[0], atol=0.02)
    np.testing.assert_allclose(g[1], want[1], atol=0.03)


def test_ml_loss_holds_the_model_samples_constant():
    """Samples computed from the parameters (reparametrised) give the same gradient as the same numbers
    passed in as constants: nothing flows through x_model."""
    theta = (jnp.array([0.5, -1.0, 2.0]), jnp.asarray(0.3))
    x_data = jax.random.normal(jax.random.PRNGKey(0), (64, D))
    z = jax.random.normal(jax.random.PRNGKey(1), (64, D))

    def through(t):
        x_model = t[0] + jnp.exp(t[1]) * z  # depends on the parameters
        return losses.ml_loss(gaussian_energy(t), x_data, x_model, energy_l2=0.1)

    fixed = theta[0] + jnp.exp(theta[1]) * z
    const = jax.grad(lambda t: losses.ml_loss(gaussian_energy(t), x_data, fixed, energy_l2=0.1))(theta)
    chex.assert_trees_all_close(jax.grad(through)(theta), const, rtol=1e-6)
    # The value is what the docstring says, regulariser included.
    e_d, e_m = gaussian_energy(theta)(x_data), gaussian_energy(theta)(fixed)
    want = e_d.mean() - e_m.mean() + 0.1 * ((e_d**2).mean() + (e_m**2).mean())
    np.testing.assert_allclose(through(theta), want, rtol=1e-6)
    with pytest.raises(ConfigError, match="same example shape"):
        losses.ml_loss(gaussian_energy(theta), x_data, jnp.zeros((4, D + 1)))


def test_ml_loss_gradient_penalty_has_its_closed_form_value_and_gradient():
    """grad_l2 on the Gaussian energy: dE/dx = (x - mu) / s^2, so the penalty is
    grad_l2 * (mean |x_d - mu|^2 + mean |x_m - mu|^2) / s^4, and its gradient in log s is -4 times
    that (in mu: -2 grad_l2 / s^4 times the summed mean residuals); x_model stays constant."""
    theta = (jnp.array([0.5, -1.0, 2.0]), jnp.asarray(0.3))
    x_data = jax.random.normal(jax.random.PRNGKey(0), (64, D))
    z = jax.random.normal(jax.random.PRNGKey(1), (48, D))
    lam = 0.05

    def loss(t, x_model):
        return losses.ml_loss(gaussian_energy(t), x_data, x_model, energy_l2=0.1, grad_l2=lam)

    x_model = theta[0] + jnp.exp(theta[1]) * z
    mu, s2 = np.asarray(theta[0]), float(np.exp(2 * theta[1]))
    r_d, r_m = np.asarray(x_data) - mu, np.asarray(x_model) - mu
    sq = (r_d**2).sum(1).mean() + (r_m**2).sum(1).mean()
    plain = losses.ml_loss(gaussian_energy(theta), x_data, x_model, energy_l2=0.1)
    np.testing.assert_allclose(loss(theta, x_model) - plain, lam * sq / s2**2, rtol=1e-5)
    g = jax.grad(loss)(theta, x_model)
    g_plain = jax.grad(lambda t: losses.ml_loss(gaussian_energy(t), x_data, x_model, energy_l2=0.1))(theta)
    np.testing.assert_allclose(g[1] - g_plain[1], -4 * lam * sq / s2**2, rtol=1e-4)
    np.testing.assert_allclose(g[0] - g_plain[0], -2 * lam / s2**2 * (r_d.mean(0) + r_m.mean(0)), rtol=1e-4,
                               atol=1e-6)
    # Nothing flows through x_model, with the penalty too.
    through = jax.grad(lambda t: loss(t, t[0] + jnp.exp(t[1]) * z))(theta)
    chex.assert_trees_all_close(through, g, rtol=1e-6)


@pytest.mark.parametrize("variant", [jax.jit, lambda f: f], ids=["jit", "eager"])
def test_buffer_draws_uniformly_reinitialises_the_asked_share_and_writes_back(variant):
    capacity, n = 50, 4000
    buffer = samplers.buffer_init(jnp.arange(capacity, dtype=jnp.float32)[:, None] * jnp.ones((1, 2)))
    fresh = jnp.full((n, 2), -1.0)
    draw = variant(lambda k, b: samplers.buffer_draw(k, b, n, reinit_prob=0.2, fresh=fresh))
    x0, idx, reinit = draw(jax.random.PRNGKey(0), buffer)
    x0, idx, reinit = np.asarray(x0), np.asarray(idx), np.asarray(reinit)
    # Reinitialised rows are the fresh ones, the others the buffer rows at their indices.
    np.testing.assert_array_equal(x0[reinit], -1.0)
    np.testing.assert_array_equal(x0[~reinit][:, 0], idx[~reinit])
    # Share of fresh starts: binomial(n, 0.2), within 4 standard errors.
    assert abs(reinit.mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / n)
    # Uniform over the whole buffer: a chi-square test on the counts (49 dof; 99.9% quantile ~85).
    counts = np.bincount(idx, minlength=capacity)
    assert counts.min() > 0 and ((counts - n / capacity) ** 2 / (n / capacity)).sum() < 85
    # Updates land where the rows came from.
    new = variant(samplers.buffer_update)(buffer, jnp.array([3, 7]), jnp.array([[10.0, 11.0], [20.0, 21.0]]))
    np.testing.assert_array_equal(np.asarray(new)[[3, 7]], [[10, 11], [20, 21]])
    np.testing.assert_array_equal(np.delete(np.asarray(new), [3, 7], 0), np.delete(np.asarray(buffer), [3, 7], 0))


def test_buffer_on_eight_devices_equals_one():
    """A buffer sharded over 8 (fake CPU) devices, drawn and updated under jit, gives what one device gives."""
    code = textwrap.dedent("""
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from ebmjax import parallel, samplers
        mesh = parallel.make_mesh()
        assert mesh.devices.size == 8
        buf = jnp.arange(64 * 3, dtype=jnp.float32).reshape(64, 3)
        def step(b, k):
            x0, idx, _ = samplers.buffer_draw(k, b, 16, reinit_prob=0.25, fresh=jnp.zeros((16, 3)))
            return samplers.buffer_update(b, idx, x0 + 1000.0), x0
        sharded = jax.device_put(buf, NamedSharding(mesh, P("data")))
        out8 = jax.jit(step, out_shardings=(NamedSharding(mesh, P("data")), None))(sharded, jax.random.PRNGKey(3))
        assert len(out8[0].sharding.device_set) == 8
        out1 = jax.jit(step)(jax.device_put(buf, jax.devices()[0]), jax.random.PRNGKey(3))
        for a, b in zip(out8, out1):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        print("ok")
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_decoupled_langevin_maps_step_and_noise_and_clips_and_clamps():
    step, noise = 0.01, 0.005
    eps, t = samplers.decoupled(step, noise)
    np.testing.assert_allclose(0.5 * eps**2, step, rtol=1e-6)
    np.testing.assert_allclose(eps * jnp.sqrt(t), noise, rtol=1e-6)
    assert samplers.langevin_kernel() is samplers.ula
    energy = lambda x: 50.0 * jnp.sum(x**2, axis=-1)  # noqa: E731  gradient 100 x: far beyond the clip
    x = jnp.array([[0.5, -0.8], [0.01, 0.0]])
    key = jax.random.PRNGKey(0)
    kernel = samplers.langevin_kernel(grad_clip=0.5, bounds=(-0.1, 0.45))
    out, info = kernel.step(key, kernel.init(x), energy, eps, t)
    z = jax.random.normal(key, x.shape)
    g = jnp.clip(100.0 * x, -0.5, 0.5)
    np.testing.assert_allclose(out.position, jnp.clip(x - step * g + noise * z, -0.1, 0.45), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.energy, energy(x))
    # Without safeguards it is plain ULA, step for step.
    plain, _ = samplers.ula.step(key, samplers.ula.init(x), energy, eps, t)
    np.testing.assert_allclose(plain.position, x - step * 100.0 * x + noise * z, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="bounds"):
        samplers.langevin_kernel(bounds=(1.0, 0.0))


def test_persistent_chains_recover_a_gaussian_s_mean_and_variance(tmp_path):
    """The ml method with a replay buffer, trained by the shared loop on N(m, s^2 I) points with the
    Gaussian energy model (learned mean and log-std): maximum likelihood's optimum is the data's mean
    and standard deviation, which training must recover."""
    from ebmjax.config import defaults
    from ebmjax.methods import ml
    from ebmjax.train import state as train_state
    from ebmjax.train import step as train_step

    cfg = defaults()
    cfg.method.name = "ml"
    cfg.model.name = "gaussian"
    cfg.train.batch_size, cfg.train.steps, cfg.train.lr, cfg.train.lr_end = 256, 600, 0.05, 0.005
    cfg.train.b1, cfg.train.b2 = 0.5, 0.999
    m = cfg.ml
    m.init, m.buffer_size, m.reinit_prob, m.steps = "buffer", 2048, 0.05, 20
    m.step_size, m.noise, m.data_noise, m.clamp, m.grad_clip = 0.02, 0.2, 0.0, False, None
    mean, std = np.array([1.0, -0.5, 0.25]), 0.7
    data = mean + std * np.random.default_rng(0).standard_normal((4096, D))
    method = ml.build(cfg, (D,), value_range=(-4.0, 4.0))
    state = train_state.create(method.init_params(jax.random.PRNGKey(0)), method.optimizer,
                               method.init_carry(jax.random.PRNGKey(1)))
    step = jax.jit(train_step.make_train_step(method))
    rng = np.random.default_rng(1)
    for i in range(cfg.train.steps):
        batch = jnp.asarray(data[rng.integers(0, len(data), cfg.train.batch_size)], jnp.float32)
        state, metrics = step(state, batch, jax.random.PRNGKey(2))
    p = state.params["energy"]["params"]
    np.testing.assert_allclose(p["mu"], mean, atol=0.1)
    np.testing.assert_allclose(np.exp(float(p["log_sigma"])), std, rtol=0.1)
    assert int(state.skipped) == 0 and 0.0 < float(metrics["fresh_share"]) < 0.2
