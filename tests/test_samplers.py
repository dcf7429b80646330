"""Samplers checked against known answers: exact stationary laws, grid integrals, closed forms.

Statistical tests use many independent chains in parallel and compare the final positions with
the exact answer, with tolerances of a few Monte-Carlo standard errors (all seeds are fixed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax import samplers as S
from ebmjax.errors import ConfigError

MU = jnp.array([1.0, -2.0])


def gaussian_energy(mu=MU, s=1.0):
    """E(x) = |x - mu|^2 / (2 s^2) for points x of shape (B, D); s may be a (D,) vector."""

    def energy(x):
        return 0.5 * jnp.sum(((x - mu) / s) ** 2, axis=-1)

    return energy


def ula_variance(eps, t, s):
    """Exact stationary variance of ULA on E = x^2/(2 s^2): the AR(1) x' = a x + eps sqrt(T) z."""
    a = 1.0 - eps**2 / (2.0 * s**2)
    return eps**2 * t / (1.0 - a**2)


def z_score(samples, expected):
    """(mean - expected) / standard error, over axis 0 of independent samples."""
    samples = np.asarray(samples, np.float64)
    return (samples.mean(0) - expected) / (samples.std(0) / np.sqrt(samples.shape[0]))


def var_z_score(samples, expected_var, mean):
    """z-score of the sample variance about a known mean; SE of a Gaussian variance: var sqrt(2/n)."""
    samples = np.asarray(samples, np.float64)
    v = ((samples - mean) ** 2).mean(0)
    return (v - expected_var) / (expected_var * np.sqrt(2.0 / samples.shape[0]))


def per_chain_temperatures(temps, n_per):
    return jnp.repeat(jnp.asarray(temps, jnp.float32), n_per)


# --------------------------------------------------------------------------------------------
# ULA: the exact finite-step stationary law
# --------------------------------------------------------------------------------------------


def test_ula_stationary_law_matches_exact_finite_step_formula():
    eps, s, n_per, temps = 1.2, 1.0, 4096, (0.5, 2.0)
    t = per_chain_temperatures(temps, n_per)  # per-chain temperatures, shape (B,)
    energy = gaussian_energy(s=s)
    state = S.ula.init(jnp.zeros((t.shape[0], 2)), energy)
    k = 60  # AR coefficient a = 0.28: a^60 is zero in float32
    state, trace = S.run_chain(
        S.ula, energy, state, jax.random.key(0),
        temperatures=jnp.broadcast_to(t, (k,) + t.shape), step_sizes=eps,
    )
    assert trace.record.energy.shape == (k, t.shape[0])
    x = np.asarray(state.position).reshape(len(temps), n_per, 2)
    for i, temp in enumerate(temps):
        exact = ula_variance(eps, temp, s)
        centred = (x[i] - np.asarray(MU)).reshape(-1, 1)  # both coordinates are iid draws
        assert np.all(np.abs(z_score(x[i], np.asarray(MU))) < 5)
        assert np.all(np.abs(var_z_score(centred, exact, 0.0)) < 5), (temp, centred.var(), exact)
        # The step is large enough that the continuous-time answer s^2 T is clearly rejected.
        assert np.all(np.abs(var_z_score(centred, s**2 * temp, 0.0)) > 10)


def test_langevin_convenience_is_pure_and_jittable():
    eps, s, temp, n = 0.9, 1.0, 3.0, 8192
    x0 = jnp.zeros((n, 1)) + MU[:1]
    energy = gaussian_energy(mu=MU[:1], s=s)
    run = lambda key: S.langevin(energy, x0, key, n_steps=40, step_size=eps, temperature=temp)
    out = run(jax.random.key(3))
    out_jit = jax.jit(run)(jax.random.key(3))
    np.testing.assert_allclose(np.asarray(out), np.asarray(out_jit), rtol=1e-5, atol=1e-5)
    centred = np.asarray(out) - float(MU[0])
    assert abs(var_z_score(centred, ula_variance(eps, temp, s), 0.0)[0]) < 5


# --------------------------------------------------------------------------------------------
# MALA and HMC: exact on Gaussians, unbiased on a non-Gaussian target where ULA is not
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kernel, eps, k",
    [("mala", S.mala, 1.2, 150), ("hmc", S.hmc(3), 0.7, 80)],
)
def test_mala_hmc_gaussian_moments_exact_at_several_temperatures(name, kernel, eps, k):
    s, n_per, temps = 1.0, 2048, (0.3, 1.0, 3.0)
    t = per_chain_temperatures(temps, n_per)
    energy = gaussian_energy(s=s)
    state = kernel.init(jnp.zeros((t.shape[0], 2)), energy)
    state, trace = S.run_chain(
        kernel, energy, state, jax.random.key(1),
        temperatures=jnp.broadcast_to(t, (k,) + t.shape), step_sizes=eps,
    )
    acc = float(trace.record.acceptance_rate.mean())
    assert 0.3 < acc < 0.999, acc  # real moves, and real rejections at this step size
    x = np.asarray(state.position).reshape(len(temps), n_per, 2)
    for i, temp in enumerate(temps):
        assert np.all(np.abs(z_score(x[i], np.asarray(MU))) < 5), (name, temp)
        centred = (x[i] - np.asarray(MU)).reshape(-1, 1)
        assert np.all(np.abs(var_z_score(centred, s**2 * temp, 0.0)) < 5), (name, temp, centred.var())
    # The cached energies are the energies of the positions.
    np.testing.assert_allclose(state.energy, energy(state.position), rtol=1e-5, atol=1e-5)


def test_hmc_with_inverse_mass_on_anisotropic_gaussian():
    s = jnp.array([0.1, 3.0])
    energy = gaussian_energy(mu=jnp.zeros(2), s=s)
    n, temp = 4096, 2.0
    kernel = S.hmc(3, inverse_mass_matrix=s**2)  # preconditioned: both directions move alike
    state = kernel.init(jnp.ones((n, 2)), energy)
    state, trace = S.run_chain(
        kernel, energy, state, jax.random.key(4), temperatures=jnp.full(40, temp), step_sizes=0.8
    )
    x = np.asarray(state.position)
    assert np.all(np.abs(var_z_score(x, np.asarray(s**2 * temp), 0.0)) < 5)
    assert float(trace.record.acceptance_rate.mean()) > 0.5
    bad = S.hmc(3, inverse_mass_matrix=jnp.ones(3))  # 3 != 2 coordinates per example
    state = bad.init(jnp.ones((4, 2)), energy)
    with pytest.raises(ConfigError, match="inverse_mass_matrix"):
        bad.step(jax.random.key(0), state, energy, 0.1, 1.0)


MIX_MU = jnp.array([[-1.0, -0.5], [1.0, 1.0]])
MIX_SIG = jnp.array([0.6, 0.8])
MIX_W = jnp.array([0.4, 0.6])


def mixture_energy(x):
    """-log of a two-component isotropic Gaussian mixture in 2-D (up to a constant)."""
    d2 = jnp.sum((x[:, None, :] - MIX_MU[None]) ** 2, axis=-1)
    return -jax.nn.logsumexp(jnp.log(MIX_W) - 2 * jnp.log(MIX_SIG) - 0.5 * d2 / MIX_SIG**2, axis=1)


def mixture_reference(temp):
    """E[x1], E[x2], E[x1^2], E[x2^2], P(x1 > 0) under exp(-E/T), integrated on a fine grid."""
    g = np.linspace(-8, 8, 1601)
    x1, x2 = np.meshgrid(g, g, indexing="ij")
    e = np.asarray(mixture_energy(jnp.stack([x1.ravel(), x2.ravel()], 1)), np.float64).reshape(x1.shape)
    p = np.exp(-(e - e.min()) / temp)
    p /= p.sum()
    return np.array([(p * f).sum() for f in (x1, x2, x1**2, x2**2, (x1 > 0) * 1.0)])


def mixture_stats(x):
    return np.stack([x[:, 0], x[:, 1], x[:, 0] ** 2, x[:, 1] ** 2, (x[:, 0] > 0) * 1.0], 1)


@pytest.mark.slow
def test_non_gaussian_target_mala_hmc_unbiased_ula_biased():
    n_per, temps, k = 4096, (0.5, 1.5), 200
    t = per_chain_temperatures(temps, n_per)
    schedule = jnp.broadcast_to(t, (k,) + t.shape)
    x0 = jax.random.normal(jax.random.key(1), (t.shape[0], 2))
    refs = [mixture_reference(temp) for temp in temps]
    worst = {}
    for name, kernel, eps in (("ula", S.ula, 1.0), ("mala", S.mala, 1.0), ("hmc", S.hmc(3), 0.7)):
        state, _ = S.run_chain(
            kernel, mixture_energy, kernel.init(x0, mixture_energy), jax.random.key(2),
            temperatures=schedule, step_sizes=eps,
        )
        x = np.asarray(state.position).reshape(len(temps), n_per, 2)
        worst[name] = [np.abs(z_score(mixture_stats(x[i]), refs[i])).max() for i in range(len(temps))]
    assert max(worst["mala"]) < 4.5, worst
    assert max(worst["hmc"]) < 4.5, worst
    assert min(worst["ula"]) > 6, worst  # the same step size visibly biases ULA at every T


def test_hmc_with_one_leapfrog_step_is_mala():
    # One step-size convention: HMC's leapfrog step is eps sqrt(T), so L = 1 reproduces MALA.
    energy = mixture_energy
    x0 = jax.random.normal(jax.random.key(5), (64, 2))
    t = jnp.linspace(0.3, 2.0, 64)
    one_step = lambda kernel: jax.jit(lambda key: kernel.step(key, kernel.init(x0, energy), energy, 0.9, t))
    a, ia = one_step(S.mala)(jax.random.key(6))
    b, ib = one_step(S.hmc(1))(jax.random.key(6))
    np.testing.assert_allclose(a.position, b.position, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ia.acceptance_rate, ib.acceptance_rate, rtol=1e-4, atol=1e-6)
    assert 0 < int(ia.is_accepted.sum()) < 64


def conv_energy_and_params(key, channels=1):
    """A tiny conv net energy on NHWC images, so vmapped single examples meet a real network."""
    k1, k2 = jax.random.split(key)
    w = 0.3 * jax.random.normal(k1, (3, 3, channels, 4))
    v = 0.3 * jax.random.normal(k2, (4,))

    def energy(x):
        h = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = jnp.tanh(h)
        return jnp.sum(h.mean(axis=(1, 2)) * v, -1) + 0.5 * jnp.sum(x**2, axis=(1, 2, 3))

    return energy


def test_vmapped_single_examples_match_batched_energy():
    energy = conv_energy_and_params(jax.random.key(7))
    x = jax.random.normal(jax.random.key(8), (6, 8, 8, 1))
    single = jax.vmap(lambda xi: energy(xi[None])[0])(x)
    np.testing.assert_allclose(single, energy(x), rtol=1e-5, atol=1e-5)
    # MALA's cached energies and gradients (of accepted and rejected chains alike) must be those of
    # the positions, as one batched evaluation gives them.
    run = jax.jit(lambda key: S.run_chain(
        S.mala, energy, S.mala.init(x, energy), key, temperatures=jnp.ones(5), step_sizes=0.3
    ))
    state, trace = run(jax.random.key(9))
    assert int(trace.record.is_accepted.sum()) > 0
    e, g = S.energy_and_grad(energy, state.position)
    np.testing.assert_allclose(state.energy, e, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.grad, g, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Conditioning
# --------------------------------------------------------------------------------------------


def test_annealed_langevin_mask_keeps_clamped_entries_exactly():
    energy = conv_energy_and_params(jax.random.key(10))
    x0 = jax.random.uniform(jax.random.key(11), (4, 8, 8, 1))
    free = jnp.zeros((1, 8, 8, 1)).at[:, :, :4, :].set(1.0)  # left half free
    temps = jnp.linspace(2.0, 0.0, 30)
    out = S.annealed_langevin(energy, x0, jax.random.key(12), temperatures=temps, step_size=0.05, mask=free)
    clamped = np.broadcast_to(np.asarray(free) == 0, x0.shape)
    np.testing.assert_array_equal(np.asarray(out)[clamped], np.asarray(x0)[clamped])
    assert np.all(np.asarray(out)[~clamped] != np.asarray(x0)[~clamped])


def test_clamped_entries_carry_temperature_matched_noise():
    # E = (x_f - x_c)^2 / (2 s^2), x_c clamped at c0 and seen as c0 + sigma T^(1/4) z (fresh z).
    # ULA on x_f: x_f' = a x_f + (1 - a) c + eps sqrt(T) z', a = 1 - eps^2 / (2 s^2), so
    # Var[x_f] = ((1 - a)^2 sigma^2 sqrt(T) + eps^2 T) / (1 - a^2) and E[x_f] = c0.
    eps, s, sigma, c0, n_per, temps, k = 1.0, 1.0, 2.0, 0.7, 8192, (4.0, 0.25), 40
    energy = lambda x: 0.5 * (x[:, 0] - x[:, 1]) ** 2 / s**2
    t = per_chain_temperatures(temps, n_per)
    x0 = jnp.stack([jnp.zeros_like(t), jnp.full_like(t, c0)], 1)
    out = S.annealed_langevin(
        energy, x0, jax.random.key(13), temperatures=jnp.broadcast_to(t, (k,) + t.shape),
        step_size=eps, mask=jnp.array([1.0, 0.0]), clamp_noise=sigma,
    )
    out = np.asarray(out)
    np.testing.assert_array_equal(out[:, 1], np.full(out.shape[0], np.float32(c0)))
    a = 1 - eps**2 / (2 * s**2)
    for i, temp in enumerate(temps):
        xf = out[i * n_per : (i + 1) * n_per, :1]
        exact = ((1 - a) ** 2 * sigma**2 * np.sqrt(temp) + eps**2 * temp) / (1 - a**2)
        assert abs(z_score(xf, c0)[0]) < 5
        assert abs(var_z_score(xf, exact, c0)[0]) < 5, (temp, xf.var(), exact)
        # Neither "no clamp noise" nor noise scaled like sqrt(T) would pass.
        no_noise = eps**2 * temp / (1 - a**2)
        sqrt_t_noise = ((1 - a) ** 2 * sigma**2 * temp + eps**2 * temp) / (1 - a**2)
        for wrong in (no_noise, sqrt_t_noise):
            assert abs(var_z_score(xf, wrong, c0)[0]) > 8


def test_clamped_mala_keeps_clamped_entries_and_samples_conditional():
    # Conditional of N(0, [[1, r], [r, 1]]) given x2 = c is N(r c, 1 - r^2); with clamp_noise=0
    # MALA on the clamped chain must sample it exactly.
    r, c, n = 0.6, 1.5, 8192
    prec = jnp.linalg.inv(jnp.array([[1.0, r], [r, 1.0]]))
    energy = lambda x: 0.5 * jnp.einsum("bi,ij,bj->b", x, prec, x)
    kernel = S.clamped(S.mala)
    assert S.clamped(S.mala) is kernel  # one kernel object per wrapped kernel: no recompiles
    x0 = jnp.stack([jnp.zeros(n), jnp.full(n, c)], 1)
    state = kernel.init(x0, energy, jnp.array([True, False]), clamp_noise=0.0)
    state, trace = S.run_chain(
        kernel, energy, state, jax.random.key(14), temperatures=jnp.ones(60), step_sizes=1.0
    )
    x = np.asarray(state.position)
    np.testing.assert_array_equal(x[:, 1], np.full(n, np.float32(c)))
    assert abs(z_score(x[:, :1], r * c)[0]) < 5
    assert abs(var_z_score(x[:, :1], 1 - r**2, r * c)[0]) < 5
    assert float(trace.record.acceptance_rate.mean()) > 0.5


def test_mask_that_does_not_broadcast_raises_config_error():
    energy = gaussian_energy()
    x0 = jnp.zeros((4, 2))
    for bad in (jnp.ones(3), jnp.ones((2, 4, 2)), jnp.ones((3, 2))):
        with pytest.raises(ConfigError, match="mask"):
            S.annealed_langevin(
                energy, x0, jax.random.key(0), temperatures=jnp.ones(3), step_size=0.1, mask=bad
            )


def test_tempered_and_sum_energies_product_of_experts():
    e1 = gaussian_energy(mu=jnp.array([0.0]), s=1.0)
    e2 = gaussian_energy(mu=jnp.array([3.0]), s=0.5)
    x = jnp.linspace(-2, 2, 5)[:, None]
    product = S.sum_energies(e1, e2, weights=[2.0, 0.5])
    np.testing.assert_allclose(product(x), 2 * e1(x) + 0.5 * e2(x), rtol=1e-6)
    t = jnp.array([0.5, 1.0, 2.0, 4.0, 8.0])
    np.testing.assert_allclose(S.tempered(e1, t)(x), e1(x) / t, rtol=1e-6)
    with pytest.raises(ConfigError, match="temperature"):
        S.tempered(e1, jnp.ones(3))(x)
    with pytest.raises(ConfigError, match="weights"):
        S.sum_energies(e1, e2, weights=[1.0])
    # Product of N(0, 1) and N(3, 1/4), tempered by 1/2: the Gaussian N(12/5, 1/10) up to a constant.
    energy = S.tempered(S.sum_energies(e1, e2), 0.5)
    gauss = gaussian_energy(mu=jnp.array([12 / 5]), s=np.sqrt(1 / 10))
    offset = np.asarray(energy(x) - gauss(x))
    np.testing.assert_allclose(offset, np.full_like(offset, offset[0]), rtol=1e-5)


def test_denoise_jump_is_tweedie_posterior_mean_on_gaussian():
    # Data N(m, tau^2) smoothed by N(0, sigma0^2) has energy |x - m|^2 / (2 (tau^2 + sigma0^2)),
    # and E[clean | noisy] = m + tau^2 / (tau^2 + sigma0^2) (x - m).
    m, tau = jnp.array([0.5, -1.0, 2.0]), 0.3
    x = jax.random.normal(jax.random.key(16), (5, 3))
    for sigma0 in (0.1, jnp.array([0.05, 0.1, 0.2, 0.4, 0.8])):  # shared, or one per example
        var = tau**2 + jnp.broadcast_to(jnp.asarray(sigma0), (5,)) ** 2
        energy = lambda y, var=var: 0.5 * jnp.sum((y - m) ** 2, -1) / var
        expected = m + (tau**2 / var)[:, None] * (x - m)
        np.testing.assert_allclose(S.denoise_jump(energy, x, sigma0), expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Driver: compile once, chunking and resumption are exact
# --------------------------------------------------------------------------------------------


def test_changing_schedule_values_does_not_recompile():
    traces = []
    mu = jnp.array([0.5, 0.5])

    def energy(x):
        if isinstance(x, jax.core.Tracer):
            traces.append(x.shape)  # runs only while JAX traces the chunk
        return 0.5 * jnp.sum((x - mu) ** 2, -1)

    kernel = S.clamped(S.ula)  # the inpainting kernel: its mask and anchor are state, not constants
    mask = jnp.array([1.0, 0.0])
    run = lambda temps, steps, x0: S.run_chain_chunked(
        kernel, energy, kernel.init(x0, None, mask), jax.random.key(0),
        temperatures=temps, step_sizes=steps, chunk_size=4,
    )
    run(jnp.linspace(2.0, 1.0, 10), 0.3, jnp.zeros((16, 2)))
    n = len(traces)
    assert n > 0
    run(jnp.linspace(5.0, 0.5, 10), 0.1, jnp.ones((16, 2)))  # new values, same shapes
    run(jnp.linspace(3.0, 1.0, 7), jnp.linspace(0.2, 0.1, 7), jnp.ones((16, 2)))  # other length
    assert S.clamped(S.ula) is kernel and S.hmc(2) is S.hmc(2)  # equal kernels are one object
    assert len(traces) == n
    run(jnp.ones(5), 0.2, jnp.ones((8, 2)))  # a new batch shape must retrace
    assert len(traces) > n


def test_partial_energy_keeps_parameters_as_arguments():
    traces = []

    def apply(params, x):
        if isinstance(x, jax.core.Tracer):
            traces.append(x.shape)
        return 0.5 * jnp.sum((x - params) ** 2, -1)

    state = S.ula.init(jnp.zeros((8, 2)), None)
    outs = []
    for mu in (jnp.array([0.0, 0.0]), jnp.array([3.0, -3.0])):
        energy = jax.tree_util.Partial(apply, mu)
        final, _ = S.run_chain_chunked(
            S.ula, energy, state, jax.random.key(1),
            temperatures=jnp.zeros(200), step_sizes=0.5, chunk_size=50,
        )
        outs.append(np.asarray(final.position))
        if len(outs) == 1:
            n = len(traces)
    assert len(traces) == n  # new parameter values, no new trace
    np.testing.assert_allclose(outs[1], np.broadcast_to([3.0, -3.0], (8, 2)), atol=1e-4)  # T = 0: descent


@pytest.mark.slow  # about 11 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.parametrize("kernel", [S.ula, S.mala], ids=["ula", "mala"])
def test_chunked_equals_unchunked_and_resume_equals_uninterrupted(kernel):
    energy = mixture_energy
    x0 = jax.random.normal(jax.random.key(17), (32, 2))
    temps = jnp.linspace(3.0, 0.5, 23)
    steps = jnp.linspace(0.5, 0.2, 23)
    key = jax.random.key(18)
    kw = dict(temperatures=temps, step_sizes=steps, record_every=2)
    full_state, full_trace = S.run_chain(kernel, energy, kernel.init(x0, energy), key, **kw)
    chunk_state, chunk_trace = S.run_chain_chunked(
        kernel, energy, kernel.init(x0, energy), key, chunk_size=6, **kw
    )  # 23 = 6 + 6 + 6 + 5: the last chunk is padded
    np.testing.assert_allclose(chunk_state.position, full_state.position, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(chunk_trace.positions, full_trace.positions, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(chunk_trace.record.energy, full_trace.record.energy, rtol=1e-6, atol=1e-6)
    assert chunk_trace.positions.shape == (11, 32, 2)
    assert chunk_trace.record.energy.shape == (23, 32)

    saved, progress = {}, []

    def interrupt_after_two_chunks(step, state, trace):
        progress.append(step)
        saved.update(step=step, state=state, trace=trace)
        if len(progress) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        S.run_chain_chunked(
            kernel, energy, kernel.init(x0, energy), key, chunk_size=6,
            on_chunk=interrupt_after_two_chunks, **kw,
        )
    assert progress == [6, 12]
    resumed_state, resumed_trace = S.run_chain_chunked(
        kernel, energy, saved["state"], key, chunk_size=6, start_step=saved["step"],
        on_chunk=lambda step, state, trace: progress.append(step), **kw,
    )
    assert progress == [6, 12, 18, 23]
    for a, b in zip(jax.tree.leaves(resumed_state), jax.tree.leaves(chunk_state)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resumed_trace.record.energy, chunk_trace.record.energy[12:])
    np.testing.assert_array_equal(resumed_trace.positions, chunk_trace.positions[6:])


@pytest.mark.slow  # about 12 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.parametrize("kernel", [S.ula, S.mala], ids=["ula", "mala"])
def test_unrolled_pieces_give_the_looped_chain(kernel):
    """sample.unroll_steps: a chunk run as straight-line pieces of U steps is the same chain (same
    keys, same schedule, the padded last chunk's skipped steps included) as the looped chunk."""
    energy = mixture_energy
    x0 = jax.random.normal(jax.random.key(19), (16, 2))
    kw = dict(temperatures=jnp.linspace(2.0, 0.5, 17), step_sizes=jnp.linspace(0.4, 0.2, 17), record_every=2,
              chunk_size=8)  # 17 = 8 + 8 + 1: the last chunk ends inside its first piece
    looped_state, looped = S.run_chain_chunked(kernel, energy, kernel.init(x0, energy), jax.random.key(20), **kw)
    seen = []
    state, unrolled = S.run_chain_chunked(kernel, energy, kernel.init(x0, energy), jax.random.key(20),
                                          unroll_steps=4, on_chunk=lambda step, st, tr: seen.append(step), **kw)
    assert seen == [8, 16, 17]
    np.testing.assert_allclose(state.position, looped_state.position, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(unrolled.record.energy, looped.record.energy, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(unrolled.positions, looped.positions, rtol=1e-5, atol=1e-6)
    assert unrolled.record.energy.shape == (17, 16) and unrolled.positions.shape == (8, 16, 2)
    with pytest.raises(ConfigError, match="unroll_steps must divide"):
        S.run_chain_chunked(kernel, energy, kernel.init(x0, energy), jax.random.key(20), unroll_steps=3, **kw)
    with pytest.raises(ConfigError, match="record_every=2 must divide unroll_steps=1"):
        S.run_chain_chunked(kernel, energy, kernel.init(x0, energy), jax.random.key(20), unroll_steps=1, **kw)


# --------------------------------------------------------------------------------------------
# Arguments a user can fix
# --------------------------------------------------------------------------------------------


def test_bad_arguments_raise_config_error():
    energy = gaussian_energy()
    x = jnp.zeros((4, 2))
    key = jax.random.key(0)
    with pytest.raises(ConfigError, match="shape \\(B,\\)"):
        S.ula.step(key, S.ula.init(x, None), lambda y: jnp.sum(y**2), 0.1, 1.0)
    with pytest.raises(ConfigError, match="shape \\(B,\\)"):
        S.mala.init(x, lambda y: y**2)
    with pytest.raises(ConfigError, match="step_size"):
        S.ula.step(key, S.ula.init(x, None), energy, jnp.ones(3), 1.0)
    with pytest.raises(ConfigError, match="temperature"):
        S.mala.step(key, S.mala.init(x, energy), energy, 0.1, jnp.ones((4, 2)))
    with pytest.raises(ConfigError, match="step_sizes"):
        S.run_chain(S.ula, energy, S.ula.init(x, None), key, temperatures=jnp.ones(5), step_sizes=jnp.ones(4))
    with pytest.raises(ConfigError, match="temperatures"):
        S.run_chain(S.ula, energy, S.ula.init(x, None), key, temperatures=1.0, step_sizes=0.1)
    with pytest.raises(ConfigError, match="record_every"):
        S.run_chain_chunked(
            S.ula, energy, S.ula.init(x, None), key, temperatures=jnp.ones(8), step_sizes=0.1,
            chunk_size=4, record_every=3,
        )
    with pytest.raises(ConfigError, match="num_integration_steps"):
        S.hmc(0)
    with pytest.raises(ConfigError, match="n_steps"):
        S.langevin(energy, x, key, n_steps=2.5, step_size=0.1)
