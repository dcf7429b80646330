"""Evaluation metrics against references with known answers: scipy, scikit-learn, closed forms."""

import math

import jax
import numpy as np
import pytest
import scipy.linalg
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from ebmjax import evaluation as ev
from ebmjax.errors import ConfigError


def scipy_fid(a, b):
    """The textbook formula with scipy's sqrtm on the (non-symmetric) product."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_scipy_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    b = rng.normal(0.3, 1.5, size=(300, 12)) @ rng.normal(size=(12, 12))
    assert ev.frechet_distance(a, b) == pytest.approx(scipy_fid(a, b), rel=1e-8)
    assert ev.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # Symmetric in its arguments.
    assert ev.frechet_distance(a, b) == pytest.approx(ev.frechet_distance(b, a), rel=1e-8)


def test_frechet_distance_of_known_gaussians():
    """N(0, I) vs N(m, 4 I) in d dims: |m|^2 + d (1 + 4 - 2 * 2) = |m|^2 + d."""
    rng = np.random.default_rng(1)
    d, n = 4, 200_000
    m = np.array([1.0, -2.0, 0.5, 0.0])
    a = rng.normal(size=(n, d))
    b = m + 2.0 * rng.normal(size=(n, d))
    assert ev.frechet_distance(a, b) == pytest.approx(m @ m + d, rel=0.01)


def test_frechet_distance_with_singular_covariances_is_finite():
    """Fewer samples than dimensions (rank-deficient covariances) must not give NaN or complex parts."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(12, 32)) + 1.0
    fd = ev.frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0
    assert fd == pytest.approx(scipy_fid(a, b), rel=1e-4)


def test_kid_equals_the_unbiased_mmd_formula():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(25, 5)), rng.normal(0.5, 1.0, size=(25, 5))
    k = lambda x, y: (x @ y / 5 + 1.0) ** 3  # noqa: E731
    n = 25
    sxx = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    syy = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(a[i], b[j]) for i in range(n) for j in range(n)) / (n * n)
    # One subset of all 25 rows: a permutation of each set, and the MMD does not depend on order.
    r = ev.kernel_inception_distance(a, b, n_subsets=1, subset_size=25)
    assert r.kid == pytest.approx(sxx + syy - 2 * sxy, rel=1e-9)
    assert (r.n_subsets, r.subset_size) == (1, 25)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    same = ev.kernel_inception_distance(a, b, n_subsets=10, subset_size=300)
    diff = ev.kernel_inception_distance(a, b + 0.5, n_subsets=10, subset_size=300)
    assert abs(same.kid) < 3 * same.kid_std + 1e-3
    assert diff.kid > 10 * max(same.kid_std, 1e-3)


def test_inception_score_on_known_distributions():
    c = 10
    onehot = np.eye(c)[np.arange(1000) % c]
    assert ev.inception_score(onehot, n_splits=10).score == pytest.approx(c)
    # Every row the same: p(y|x) = p(y), KL = 0, IS = 1.
    same = np.tile(np.linspace(1, 2, c) / np.linspace(1, 2, c).sum(), (500, 1))
    assert ev.inception_score(same, n_splits=5).score == pytest.approx(1.0)
    # Smoothed one-hot rows with balanced classes: p(y) uniform, so KL = log c - H(row).
    eps = 0.3
    rows = (1 - eps) * onehot + eps / c
    h = -np.sum(rows[0] * np.log(rows[0]))
    r = ev.inception_score(rows, n_splits=10)
    assert r.score == pytest.approx(c * np.exp(-h), rel=1e-9)
    assert r.score_std == pytest.approx(0.0, abs=1e-9)
    # Only 2 of 10 classes used, confidently: IS = 2.
    two = np.eye(c)[np.arange(1000) % 2]
    assert ev.inception_score(two, n_splits=4).score == pytest.approx(2.0)


def test_inception_score_rejects_logits():
    with pytest.raises(ConfigError, match="softmax"):
        ev.inception_score(np.random.default_rng(0).normal(size=(20, 10)))


def test_ood_auroc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(5)
    e_in = rng.integers(0, 20, 300).astype(float)  # integer energies: many ties
    e_out = rng.integers(5, 30, 200).astype(float)
    y = np.r_[np.zeros(300), np.ones(200)]
    s = np.r_[e_in, e_out]
    assert ev.ood_auroc(e_in, e_out) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert ev.ood_auroc(e_out, e_in) == pytest.approx(1 - roc_auc_score(y, s), abs=1e-12)
    # Continuous scores, and the perfect / chance cases.
    a, b = rng.normal(size=500), rng.normal(1.0, 1.0, size=400)
    assert ev.ood_auroc(a, b) == pytest.approx(roc_auc_score(np.r_[np.zeros(500), np.ones(400)], np.r_[a, b]))
    assert ev.ood_auroc([0.0, 1.0], [2.0, 3.0]) == 1.0
    assert ev.ood_auroc([1.0, 1.0], [1.0]) == 0.5
    # Two Gaussians one standard deviation apart: AUROC = Phi(1 / sqrt 2).
    a, b = rng.normal(size=100_000), rng.normal(1.0, 1.0, size=100_000)
    assert ev.ood_auroc(a, b) == pytest.approx(0.5 * (1 + math.erf(0.5)), abs=0.005)


def test_roc_curve_matches_scikit_learn():
    rng = np.random.default_rng(6)
    e_in, e_out = rng.integers(0, 15, 100).astype(float), rng.integers(3, 20, 80).astype(float)
    fpr, tpr = ev.roc_curve(e_in, e_out)
    sk_fpr, sk_tpr, _ = sk_roc_curve(np.r_[np.zeros(100), np.ones(80)], np.r_[e_in, e_out], drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert np.trapezoid(tpr, fpr) == pytest.approx(ev.ood_auroc(e_in, e_out))


def test_noisy_energies_add_sigma_noise():
    """With E(x) = x_0 the noisy minus clean energies are sigma * z: mean 0, std sigma."""
    x = np.zeros((4000, 3, 3, 1), np.float32)
    energy = lambda x: x[:, 0, 0, 0]  # noqa: E731
    clean = ev.energies(energy, x, batch_size=999)
    noisy = ev.noisy_energies(energy, x, jax.random.PRNGKey(0), 0.1, batch_size=999)
    assert clean.shape == noisy.shape == (4000,)
    np.testing.assert_array_equal(clean, 0.0)
    assert noisy.std() == pytest.approx(0.1, rel=0.05) and abs(noisy.mean()) < 0.01


def test_ood_sets():
    rng = np.random.default_rng(7)
    u = ev.uniform_noise(50, (8, 8, 3), rng)
    assert u.shape == (50, 8, 8, 3) and u.min() >= 0 and u.max() < 1
    c = ev.constant_images(20, (8, 8, 3), rng)
    assert np.all(c == c[:, :1, :1, :])  # one colour per image
    # Images of constant value 10^i: a mix (10^i + 10^j) / 2 is 10^i itself only when i == j.
    imgs = (10.0 ** np.arange(5, dtype=np.float32))[:, None, None, None] * np.ones((5, 2, 2, 1), np.float32)
    mix = ev.interpolations(imgs, 200, rng)[:, 0, 0, 0]
    assert mix.shape == (200,)
    assert not np.any(np.isin(mix, 10.0 ** np.arange(5)))
    assert len(np.unique(mix)) == 10  # all 10 unordered pairs of 5 images appear in 200 draws


def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(8)
    ref = rng.random((500, 4, 4, 1)).astype(np.float32)
    q = rng.random((37, 4, 4, 1)).astype(np.float32)
    nb = ev.nearest_neighbours(q, ref, k=5, chunk=10)
    d = np.linalg.norm(q.reshape(37, 1, -1).astype(np.float64) - ref.reshape(1, 500, -1), axis=-1)
    order = np.argsort(d, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(nb.indices, order)
    np.testing.assert_allclose(nb.distances, np.take_along_axis(d, order, 1), rtol=1e-12)
    # A training image is its own nearest neighbour at distance 0.
    self_nb = ev.nearest_neighbours(ref[:3], ref, k=1)
    np.testing.assert_array_equal(self_nb.indices[:, 0], [0, 1, 2])
    np.testing.assert_allclose(self_nb.distances, 0.0, atol=1e-12)
    grid = ev.neighbour_grid(q[:2], ref, nb)
    assert grid.shape == (2 * 6, 4, 4, 1)
    np.testing.assert_array_equal(grid[7], ref[nb.indices[1, 0]])


def test_mode_coverage_known_answers():
    labels = np.array([[1, 2, 3], [0, 0, 9], [1, 2, 3]])
    np.testing.assert_array_equal(ev.mode_ids(labels), [123, 9, 123])
    one = ev.mode_coverage(np.zeros((50, 3), np.int64))
    assert (one.n_modes, one.n_covered) == (1000, 1)
    assert one.kl_to_uniform == pytest.approx(math.log(1000))
    every = np.array([[i // 100, (i // 10) % 10, i % 10] for i in range(1000)] * 2)
    full = ev.mode_coverage(every)
    assert full.n_covered == 1000 and full.kl_to_uniform == pytest.approx(0.0, abs=1e-12)
    half = ev.mode_coverage(every[every[:, 0] < 5])
    assert half.n_covered == 500 and half.kl_to_uniform == pytest.approx(math.log(2))
    assert ev.expected_covered_modes(1, 1000) == pytest.approx(1.0)
    assert ev.expected_covered_modes(8000, 1000) == pytest.approx(1000 * (1 - 0.999**8000))


def test_channel_labels_and_stacked_digits():
    imgs = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((10, 8, 8, 1), np.float32)
    stacks, lab = ev.stacked_digits(imgs, np.arange(10), 300, seed=1)
    assert stacks.shape == (300, 8, 8, 3) and lab.shape == (300, 3)
    # A "classifier" that reads the constant value back recovers the stacked labels per channel.
    got = ev.channel_labels(stacks, lambda x: x[:, 0, 0, 0].astype(int))
    np.testing.assert_array_equal(got, lab)


def test_bits_per_dim_convention():
    """Standard normal energy in D dims with its exact log Z: bits/dim is the exact Gaussian NLL in
    bits per dimension plus log2(255) on the [0, 255] scale."""
    rng = np.random.default_rng(10)
    d = 16
    x = rng.normal(size=(100, d))
    e = 0.5 * np.sum(x**2, axis=1)
    log_z = 0.5 * d * math.log(2 * math.pi)
    exact_nats = -np.mean(np.sum(-0.5 * x**2 - 0.5 * math.log(2 * math.pi), axis=1))
    assert ev.nll_bits_per_dim(e, log_z, d, pixel_scale=1.0) == pytest.approx(exact_nats / (d * math.log(2)))
    assert ev.nll_bits_per_dim(e, log_z, d) == pytest.approx(exact_nats / (d * math.log(2)) + math.log2(255))
    # A larger log Z (reverse AIS) gives a larger bits/dim: the upper bound.
    assert ev.nll_bits_per_dim(e, log_z + 1.0, d) > ev.nll_bits_per_dim(e, log_z, d)
