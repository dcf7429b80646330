"""MDSM and DSM losses against closed-form answers for Gaussian data and quadratic energies.

Data x ~ N(0, s^2 I_D), energy E_a(x) = |x|^2 / (2a), so dE/dx = x / a. With c = sigma0^2 / a the
residual is -sigma z + c (x + sigma z) and, with m = mean_i 1/sigma_i^2,
    E[loss](a) = D * ((c - 1)^2 + c^2 s^2 m),
minimised at a* = sigma0^2 (1 + s^2 m), where the loss is D s^2 m / (1 + s^2 m).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax import losses
from ebmjax.errors import ConfigError

D = 8
S = 0.7


def quad_energy(a):
    return lambda x: jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=1) / (2.0 * a)


def expected_loss(a, sigmas, sigma0, s=S, d=D):
    c = sigma0**2 / a
    m = np.mean(1.0 / np.asarray(sigmas) ** 2)
    return d * ((c - 1.0) ** 2 + c**2 * s**2 * m)


def gaussian_batch(n, key=0):
    return S * jax.random.normal(jax.random.PRNGKey(key), (n, D))


def test_noise_levels_spacing():
    lin = losses.noise_levels(5, 0.05, 1.2, "linear")
    np.testing.assert_allclose(lin, np.linspace(0.05, 1.2, 5), rtol=1e-6)
    geo = losses.noise_levels(4, 0.1, 3.0, "geometric")
    np.testing.assert_allclose(geo[0], 0.1, rtol=1e-6)
    np.testing.assert_allclose(geo[-1], 3.0, rtol=1e-6)
    ratios = np.asarray(geo[1:] / geo[:-1])
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-5)
    with pytest.raises(ConfigError, match="spacing"):
        losses.noise_levels(4, 0.1, 3.0, "cubic")
    with pytest.raises(ConfigError, match="low"):
        losses.noise_levels(4, 3.0, 0.1)


@pytest.mark.parametrize("a", [0.02, 0.05, 0.3])
def test_mdsm_loss_matches_expectation(a):
    n = 32768
    sigmas = jnp.tile(losses.noise_levels(64, 0.05, 1.2), n // 64)
    x = gaussian_batch(n)
    got = float(losses.mdsm_loss(quad_energy(a), x, jax.random.PRNGKey(1), sigmas, sigma0=0.1))
    want = expected_loss(a, sigmas, 0.1)
    assert got == pytest.approx(want, rel=0.03)


def test_mdsm_gradient_is_double_backprop_of_closed_form():
    """d loss / d a through jax.grad of the energy equals the hand-derived derivative."""
    n, sigma0 = 512, 0.1
    sigmas = losses.noise_levels(n, 0.1, 3.0, "geometric")
    x = gaussian_batch(n)
    key = jax.random.PRNGKey(3)
    z = jax.random.normal(key, x.shape, x.dtype)  # the same draw mdsm_loss makes

    def by_hand(a):
        sig = sigmas[:, None]
        xt = x + sig * z
        r = x - xt + sigma0**2 * xt / a
        return jnp.mean(jnp.sum(r**2, axis=1) / sigmas**2)

    a = 0.04
    got = jax.grad(lambda a_: losses.mdsm_loss(quad_energy(a_), x, key, sigmas, sigma0))(a)
    want = jax.grad(by_hand)(a)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_mdsm_optimum_by_gradient_descent():
    """Minimising the loss over a recovers a* = sigma0^2 (1 + s^2 mean(1/sigma^2))."""
    n, sigma0 = 16384, 0.1
    sigmas = jnp.tile(losses.noise_levels(128, 0.1, 3.0, "geometric"), n // 128)
    x = gaussian_batch(n, key=5)
    key = jax.random.PRNGKey(6)
    a_star = sigma0**2 * (1.0 + S**2 * np.mean(1.0 / np.asarray(sigmas) ** 2))

    loss_of_log_a = jax.jit(lambda la: losses.mdsm_loss(quad_energy(jnp.exp(la)), x, key, sigmas, sigma0))
    grad_fn = jax.jit(jax.grad(loss_of_log_a))
    la = jnp.log(0.5)
    for _ in range(300):  # curvature in log a is about 2 D c^2 (1 + s^2 m) ~ 0.25 D here
        la = la - 2.0 * grad_fn(la) / D
    assert float(jnp.exp(la)) == pytest.approx(a_star, rel=0.03)
    assert float(loss_of_log_a(la)) == pytest.approx(expected_loss(a_star, sigmas, sigma0), rel=0.05)


def test_dsm_optimum_is_noisy_data_variance():
    """Single-noise DSM learns the data smoothed by N(0, sigma^2): a* = s^2 + sigma^2."""
    n, sigma = 16384, 0.5
    x = gaussian_batch(n, key=7)
    key = jax.random.PRNGKey(8)
    loss = jax.jit(lambda la: losses.dsm_loss(quad_energy(jnp.exp(la)), x, key, sigma))
    grad_fn = jax.jit(jax.grad(loss))
    la = jnp.log(2.0)
    for _ in range(400):
        la = la - 0.05 * grad_fn(la) / D
    assert float(jnp.exp(la)) == pytest.approx(S**2 + sigma**2, rel=0.03)


def test_mdsm_rejects_wrong_sigma_shape():
    x = gaussian_batch(8)
    with pytest.raises(ConfigError, match="noise_levels"):
        losses.mdsm_loss(quad_energy(1.0), x, jax.random.PRNGKey(0), jnp.ones((4,)))


def test_score_is_energy_gradient():
    x = gaussian_batch(4)
    np.testing.assert_allclose(losses.score(quad_energy(0.5), x), x / 0.5, rtol=1e-6)
