"""AIS and reverse AIS against Gaussians with known log Z, and on the trained digits energy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax import samplers
from ebmjax.errors import ConfigError
from ebmjax.evaluation import ais

MU, VAR = 0.5, 0.25  # target N(MU, VAR I); reference N(0, I)


def gaussian_energy(x):
    """|x - mu|^2 / (2 v) over all non-batch axes; log Z = (D / 2) log(2 pi v)."""
    return jnp.sum((x - MU) ** 2, axis=tuple(range(1, x.ndim))) / (2 * VAR)


def true_log_z(d):
    return 0.5 * d * math.log(2 * math.pi * VAR)


# Leapfrog steps proportional to each bridge's width: step_size at the target, ref_step_size at the reference.
STEPS = dict(step_size=0.3 * math.sqrt(VAR), ref_step_size=0.3)
# One kernel, 64 chains and 5 betas per compiled chunk throughout, so the tests share compiled code.
KERNEL = samplers.hmc(5)
COMMON = dict(kernel=KERNEL, chunk_size=5, **STEPS)


@pytest.mark.parametrize("d, tol", [(1, 0.05), (10, 0.15), (100, 0.5)])
def test_ais_and_reverse_ais_recover_gaussian_log_z(d, tol):
    fwd = ais.ais_log_partition(gaussian_energy, jax.random.PRNGKey(d), shape=(d,), n_chains=64, n_steps=200,
                                schedule="linear", **COMMON)
    exact = MU + math.sqrt(VAR) * jax.random.normal(jax.random.PRNGKey(100 + d), (64, d))
    rev = ais.reverse_ais_log_partition(gaussian_energy, exact, jax.random.PRNGKey(200 + d), n_steps=200,
                                        schedule="linear", **COMMON)
    assert float(fwd.log_z_ref) == pytest.approx(0.5 * d * math.log(2 * math.pi))
    assert abs(float(fwd.log_z) - true_log_z(d)) < tol, (float(fwd.log_z), true_log_z(d))
    assert abs(float(rev.log_z) - true_log_z(d)) < tol, (float(rev.log_z), true_log_z(d))
    assert fwd.log_weights.shape == rev.log_weights.shape == (64,)
    assert fwd.acceptance_rate.shape == (200,) and float(jnp.min(fwd.acceptance_rate)) > 0.5
    # The forward chains end as samples of the target.
    pos = np.asarray(fwd.positions)
    assert pos.shape == (64, d)
    assert abs(pos.mean() - MU) < 4 * math.sqrt(VAR / pos.size) + 0.02
    assert pos.var() == pytest.approx(VAR, rel=0.15 if d > 1 else 0.5)


def test_short_schedules_bracket_log_z_forward_below_reverse_above():
    """With 5 betas the estimators are visibly biased, each in its own direction: forward AIS
    below log Z and reverse AIS (from exact samples) above it, on average over chains. Each chain's
    log Z_R +/- log w - shift is one estimate; their mean is the paper's mean-of-log estimator."""
    d, n = 10, 64
    kw = dict(n_steps=5, schedule="linear", **COMMON)
    fwd = ais.ais_log_partition(gaussian_energy, jax.random.PRNGKey(0), shape=(d,), n_chains=n, **kw)
    exact = MU + math.sqrt(VAR) * jax.random.normal(jax.random.PRNGKey(1), (n, d))
    rev = ais.reverse_ais_log_partition(gaussian_energy, exact, jax.random.PRNGKey(2), **kw)
    truth = true_log_z(d)
    f = fwd.log_z_ref + np.asarray(fwd.log_weights, np.float64) - fwd.energy_shift
    r = rev.log_z_ref - np.asarray(rev.log_weights, np.float64) - rev.energy_shift
    assert f.mean() < truth - 2 * f.std() / math.sqrt(n), (f.mean(), truth)
    assert r.mean() > truth + 2 * r.std() / math.sqrt(n), (r.mean(), truth)
    assert float(fwd.log_z_mean_log) == pytest.approx(f.mean(), abs=1e-4)
    assert float(rev.log_z_mean_log) == pytest.approx(r.mean(), abs=1e-4)
    # log-mean-exp is tighter than the mean of logs (Jensen), and still in the same order.
    assert float(fwd.log_z_mean_log) <= float(fwd.log_z) < float(rev.log_z) <= float(rev.log_z_mean_log)


def test_a_huge_energy_offset_changes_log_z_by_exactly_the_offset():
    """Learned energies carry arbitrary offsets (-48,000 on the digits demo model). log Z of
    exp(-(E + c)) is log Z - c; in float32 without the internal shift the weights would lose
    about 0.004 nats per update at that magnitude."""
    c = -48_000.0
    shifted = lambda x: gaussian_energy(x) + c  # noqa: E731
    kw = dict(shape=(10,), n_chains=64, n_steps=200, schedule="linear", **COMMON)
    plain = ais.ais_log_partition(gaussian_energy, jax.random.PRNGKey(5), **kw)
    offset = ais.ais_log_partition(shifted, jax.random.PRNGKey(5), **kw)
    assert offset.log_z == pytest.approx(plain.log_z - c, abs=0.1)
    assert offset.energy_shift == pytest.approx(plain.energy_shift + c, abs=0.01)
    assert abs(offset.log_z + c - true_log_z(10)) < 0.15


def test_mala_transitions_and_a_reference_centred_elsewhere():
    d = 10
    fwd = ais.ais_log_partition(gaussian_energy, jax.random.PRNGKey(3), shape=(d,), n_chains=64, n_steps=200,
                                kernel=samplers.mala, schedule="sigmoid", chunk_size=5,
                                ref_mean=jnp.full((d,), 0.2), ref_std=0.8, step_size=0.4 * math.sqrt(VAR),
                                ref_step_size=0.4 * 0.8)
    assert float(fwd.log_z_ref) == pytest.approx(0.5 * d * math.log(2 * math.pi * 0.64))
    assert abs(float(fwd.log_z) - true_log_z(d)) < 0.2


def test_result_does_not_depend_on_chunking():
    kw = dict(shape=(10,), n_chains=64, n_steps=23, kernel=KERNEL, **STEPS)
    whole = ais.ais_log_partition(gaussian_energy, jax.random.PRNGKey(4), **kw)
    seen = []
    chunked = ais.ais_log_partition(gaussian_energy, jax.random.PRNGKey(4), chunk_size=5,
                                    on_chunk=lambda done, total: seen.append((done, total)), **kw)
    np.testing.assert_allclose(chunked.log_weights, whole.log_weights, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(chunked.acceptance_rate, whole.acceptance_rate, rtol=1e-5, atol=1e-6)
    assert seen == [(5, 23), (10, 23), (15, 23), (20, 23), (23, 23)]


def test_schedules_and_step_sizes():
    for name in ais.SCHEDULES:
        b = ais.ais_betas(50, name)
        assert b.shape == (51,) and b[0] == 0.0 and b[-1] == 1.0 and np.all(np.diff(b) >= 0)
    g = ais.ais_betas(4, "geometric", beta_min=1e-4)
    np.testing.assert_allclose(g, [0, 1e-4, 1e-4 ** (2 / 3), 1e-4 ** (1 / 3), 1])
    h = ais.bridged_step_sizes(np.array([0.0, 0.5, 1.0]), 0.1, 1.0)
    np.testing.assert_allclose(h, [1.0, (0.5 / 0.01 + 0.5) ** -0.5, 0.1])
    np.testing.assert_allclose(ais.bridged_step_sizes(np.array([0.0, 1.0]), 0.2), [0.2, 0.2])


def test_invalid_settings_are_config_errors():
    with pytest.raises(ConfigError, match="invariant"):
        ais.ais_log_partition(gaussian_energy, jax.random.PRNGKey(0), shape=(2,), n_chains=2, n_steps=3,
                              kernel=samplers.ula)
    with pytest.raises(ConfigError, match="schedule"):
        ais.ais_betas(10, "cosine")
    with pytest.raises(ConfigError, match="n_steps"):
        ais.ais_betas(0)
    with pytest.raises(ConfigError, match="betas"):
        ais.ais_log_partition(gaussian_energy, jax.random.PRNGKey(0), shape=(2,), n_chains=2, n_steps=3,
                              betas=np.array([0.0, 0.7, 0.5, 1.0]))


@pytest.mark.slow  # about 67 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.xdist_group("trained_digits")  # the worker that trains conftest.trained_digits
def test_ais_bounds_on_the_trained_digits_energy(trained_digits):
    """On a learned energy the truth is unknown; what must hold: finite estimates, a working HMC,
    and forward (lower) below reverse (upper) for the mean-of-log estimators, whose gap is the
    sum of two KL divergences."""
    cfg, workdir, state, method, source = trained_digits
    energy = method.energy(state.params)
    kw = dict(n_steps=40, kernel=KERNEL, step_size=0.02, ref_step_size=0.5, chunk_size=20)
    fwd = ais.ais_log_partition(energy, jax.random.PRNGKey(0), shape=source.shape, n_chains=8, **kw)
    x = source.get(np.arange(8))
    rev = ais.reverse_ais_log_partition(energy, x, jax.random.PRNGKey(1), **kw)
    for r in (fwd, rev):
        assert np.all(np.isfinite(np.asarray(r.log_weights)))
        assert 0.2 < float(jnp.mean(r.acceptance_rate)) <= 1.0
    assert float(fwd.log_z_mean_log) < float(rev.log_z_mean_log)
    e = np.asarray(energy(jnp.asarray(x)))
    d = math.prod(source.shape)
    lo = ais.nll_bits_per_dim(e, float(fwd.log_z_mean_log), d)
    hi = ais.nll_bits_per_dim(e, float(rev.log_z_mean_log), d)
    assert lo < hi and np.isfinite(lo) and np.isfinite(hi)
    assert fwd.positions.shape == (8, *source.shape)
