"""Image-to-image translation (ebmjax.restoration.translate, ebmjax.apps.translate) checked against exact answers: the bold-digits
dilation by hand, the chain's first state is the source, Langevin on a quadratic energy moves the
chains' mean as the closed form says; then the data of the demo (digits_bold) and of the tfds
cycle_gan pairs (mocked), and the command line on a shrunk configs/translate_digits.py: the files,
reproducibility of --mode translate, and bad inputs refused with a message before anything runs."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax import data, samplers
from ebmjax.apps import main
from ebmjax.apps import translate as translate_app
from ebmjax.restoration import translate
from ebmjax.config import load_config
from ebmjax.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "configs" / "translate_digits.py")
HORSE2ZEBRA = str(ROOT / "configs" / "translate_horse2zebra.py")
# configs/translate_digits.py at toy size: a tiny energy, a few steps; 10 translations in batches
# of 4 (the last one padded), 3 Langevin steps each.
SHRUNK = ["--config.model.widths=4,8", "--config.train.steps=4", "--config.train.batch_size=8",
          "--config.train.log_every=2", "--config.train.checkpoint_every=4", "--config.ml.steps=2",
          "--config.ml.sample_steps=3", "--config.sample.n=0", "--config.sample.chunk_steps=2",
          "--config.translate.n=10", "--config.translate.batch_size=4", "--config.translate.target_n=12",
          "--no-progress"]


# --------------------------------------------------------------------------------------------
# The bold digits
# --------------------------------------------------------------------------------------------


def test_dilate_2x2_by_hand():
    """out[i, j] = max(x[i, j], x[i-1, j], x[i, j-1], x[i-1, j-1]), zeros outside the image."""
    x = np.zeros((1, 4, 4, 2), np.float32)
    x[0, 0, 0, 0], x[0, 1, 1, 0], x[0, 2, 3, 0] = 0.2, 0.5, 1.0
    x[0, 3, 0, 1] = 0.7  # the second channel is dilated on its own
    expected = np.zeros_like(x)
    expected[0, :, :, 0] = [[0.2, 0.2, 0.0, 0.0],
                            [0.2, 0.5, 0.5, 0.0],
                            [0.0, 0.5, 0.5, 1.0],
                            [0.0, 0.0, 0.0, 1.0]]
    expected[0, 3, :2, 1] = 0.7
    np.testing.assert_array_equal(data.dilate_2x2(x), expected)
    with pytest.raises(ConfigError, match=r"\(N, H, W, C\)"):
        data.dilate_2x2(x[0])


def test_bold_digits_are_the_dilated_resized_digits_with_their_labels():
    cfg = dict(name="digits_bold", image_size=16, pad=0)
    bold, plain = data.load_source(cfg, "test"), data.load_source(dict(cfg, name="digits"), "test")
    assert (bold.name, bold.shape, len(bold), bold.value_range) == ("digits_bold", (16, 16, 1), 355, (0.0, 1.0))
    assert len(data.load_source(cfg, "train")) == 1442
    idx = np.arange(len(bold))
    xb, xp = bold.get(idx), plain.get(idx)
    np.testing.assert_array_equal(xb, data.dilate_2x2(xp))
    np.testing.assert_array_equal(bold.labels(idx), plain.labels(idx))
    assert xb.min() >= 0.0 and xb.max() <= 1.0 and np.all(xb >= xp)
    assert xb.mean() > xp.mean() + 0.05  # bolder: the figures in bundled.bold_digits_source
    # pad comes after the dilation: a zero border, the same bold digit inside.
    padded = data.load_source(dict(cfg, pad=2), "test").get(idx[:5])
    assert padded.shape == (5, 20, 20, 1) and not padded[:, :2].any() and not padded[:, :, -2:].any()
    np.testing.assert_array_equal(padded[:, 2:-2, 2:-2], xb[:5])


# --------------------------------------------------------------------------------------------
# tfds cycle_gan pairs (mocked)
# --------------------------------------------------------------------------------------------


def test_domain_splits():
    assert data.domain_split("train", "B") == "trainB"
    assert data.domain_split("test[:10%]+train", "A") == "testA[:10%]+trainA"
    assert data.domain_split("trainA", "B") == "trainA"  # a split named outright is kept


def test_cycle_gan_domains_read_their_own_splits(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    name = "cycle_gan/horse2zebra"
    with tfds.testing.mock_data(num_examples=5):
        src = data.load_source(dict(name=name, data_dir=str(tmp_path), domain="B", image_size=16), "train")
        assert src.split == "trainB" and src.shape == (16, 16, 3) and len(src) == 5
        raw = tfds.data_source(name, split="trainB", data_dir=str(tmp_path), download=False)
        np.testing.assert_allclose(src.get(np.array([3]))[0], data.prepare_image(raw[3]["image"], image_size=16),
                                   atol=1e-7)
        assert data.load_source(dict(name=name, data_dir=str(tmp_path), domain="A", image_size=16), "test").split == "testA"
    with pytest.raises(ConfigError, match="data.domain must say which one"):
        data.load_source(dict(name=name, data_dir=str(tmp_path)), "train")
    with pytest.raises(ConfigError, match="applies to two-domain sets"):
        data.load_source(dict(name="digits", domain="A"), "train")


@pytest.mark.slow  # trains through the CLI; the full suite (see the README) runs it
def test_horse2zebra_config_translates_domain_a_into_domain_b(tmp_path):
    """The shipped tfds config on mocked files: the model learns trainB, the sources are testA, the
    shapes agree and the method builds on them; the same domain both ways is refused."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from ebmjax import methods

    cfg = load_config(HORSE2ZEBRA, [("data.data_dir", str(tmp_path))])
    assert (cfg.data.name, cfg.data.domain, cfg.translate.source_domain) == ("cycle_gan/horse2zebra", "B", "A")
    with tfds.testing.mock_data(num_examples=3):
        cfg.translate.n = 2
        source, target = translate_app.translation_sources(cfg)
        assert (source.split, target.split) == ("testA", "trainB")
        assert source.shape == target.shape == (cfg.data.image_size,) * 2 + (3,)
        method = methods.build(cfg, target.shape, target.value_range)
        # Training chains start at horses (trainA) too: the loop draws them beside the zebras.
        assert data.load_source(method.source_data, "train").split == "trainA"
        params = jax.eval_shape(method.init_params, jax.random.PRNGKey(0))
        batch = jax.ShapeDtypeStruct((2, *source.shape), jnp.float32)
        assert jax.eval_shape(lambda p, x: method.energy(p)(x), params, batch).shape == (2,)
        digits_source = load_config(HORSE2ZEBRA, [("data.data_dir", str(tmp_path)), ("translate.data_name", "digits"),
                                                  ("translate.image_size", str(cfg.data.image_size))])
        with pytest.raises(ConfigError, match="channels differ"):
            translate_app.translation_sources(digits_source)
    same = load_config(HORSE2ZEBRA, [("translate.source_domain", "B")])
    with pytest.raises(ConfigError, match="--config.translate.source_domain=A"):
        translate_app.check_config(same)


# --------------------------------------------------------------------------------------------
# The chains
# --------------------------------------------------------------------------------------------


def quadratic(m: float, s: float):
    """E(x) = |x - m|^2 / (2 s^2) per example."""
    return lambda x: 0.5 * jnp.sum((x - m) ** 2, axis=tuple(range(1, x.ndim))) / s**2


def test_the_chain_starts_at_the_source():
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 4, 4, 1)), jnp.float32)
    energy, key = quadratic(0.5, 0.3), jax.random.PRNGKey(1)
    kernel = samplers.langevin_kernel(None, (0.0, 1.0))
    eps, temp = samplers.decoupled(1e-2, 5e-3)

    @jax.jit  # the pure function, inside a user's jit
    def run(x, key, noise, temperatures):
        return translate.translate(energy, kernel, x, key, temperatures=temperatures, step_sizes=eps, noise=noise)

    # No steps and no noise: the source itself, bit for bit; its chain's first state is the source.
    out = run(x, key, 0.0, jnp.zeros((0,)))
    np.testing.assert_array_equal(out.translated, x)
    np.testing.assert_array_equal(out.start, x)
    assert out.energy.shape == (0, 3)
    out = run(x, key, 0.0, jnp.full((5,), temp))
    np.testing.assert_array_equal(out.start, x)
    np.testing.assert_allclose(out.energy[0], energy(x), rtol=1e-6)  # the first step starts at the source
    assert not np.allclose(out.translated, x)
    # With noise: the start is x + noise * z, z from fold_in(key, 0), and the first step starts there.
    out = run(x, key, 0.1, jnp.full((5,), temp))
    z = jax.random.normal(jax.random.fold_in(key, 0), x.shape)
    np.testing.assert_allclose(out.start, x + 0.1 * z, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.energy[0], energy(out.start), rtol=1e-6)
    # The chunked driver (the CLI's) gives the same chain as the pure scan.
    chunked = translate.translate(energy, kernel, x, key, temperatures=jnp.full((5,), temp), step_sizes=eps,
                                  noise=0.1, chunk_size=2)
    np.testing.assert_allclose(chunked.translated, out.translated, rtol=1e-6, atol=1e-7)


def test_noise_free_chains_on_a_quadratic_energy_are_exact_gradient_descent():
    """At T = 0 each step is x <- x - (eps^2 / 2) (x - m) / s^2, so K steps from x0 end at
    m + r^K (x0 - m) with r = 1 - eps^2 / (2 s^2); the maximum-likelihood form x <- x - step dE/dx
    (``decoupled(step, 0)``) has r = 1 - step / s^2."""
    m, s, k = 0.3, 0.5, 25
    x0 = jnp.asarray(np.random.default_rng(2).uniform(size=(4, 3, 3, 1)), jnp.float32)
    eps = 0.2
    out = translate.translate(quadratic(m, s), samplers.ula, x0, jax.random.PRNGKey(0), temperatures=jnp.zeros(k),
                              step_sizes=eps)
    r = 1 - eps**2 / (2 * s**2)
    np.testing.assert_allclose(out.translated, m + r**k * (x0 - m), rtol=1e-5, atol=1e-6)
    step = 0.02
    eps_ml, temp_ml = samplers.decoupled(step, 0.0)
    out = translate.translate(quadratic(m, s), samplers.langevin_kernel(None, (0.0, 1.0)), x0, jax.random.PRNGKey(0),
                              temperatures=jnp.full((k,), temp_ml), step_sizes=eps_ml)
    np.testing.assert_allclose(out.translated, m + (1 - step / s**2) ** k * (x0 - m), rtol=1e-5, atol=1e-6)
    # The energy trace is the energy at every step's start: the closed form along the way.
    expected = [float(quadratic(m, s)(m + (1 - step / s**2) ** i * (x0 - m))[0]) for i in range(k)]
    np.testing.assert_allclose(out.energy[:, 0], expected, rtol=1e-4)


def test_noisy_chains_on_a_quadratic_energy_have_the_closed_form_mean_and_spread():
    """ULA on E = |x - m|^2 / (2 s^2) at temperature T is the AR(1) x' = m + r (x - m) + eps sqrt(T) z:
    after K steps from x0 the chains are N(m + r^K (x0 - m), eps^2 T (1 - r^2K) / (1 - r^2)). Checked
    on 20,000 chains (4 pixels each) within 5 standard errors."""
    m, s, eps, t, k, n = 0.7, 0.4, 0.1, 0.5, 30, 5000
    x0 = jnp.full((n, 2, 2, 1), 0.1, jnp.float32)
    out = translate.translate(quadratic(m, s), samplers.ula, x0, jax.random.PRNGKey(3), temperatures=jnp.full((k,), t),
                              step_sizes=eps)
    r = 1 - eps**2 / (2 * s**2)
    mean, var = m + r**k * (0.1 - m), eps**2 * t * (1 - r ** (2 * k)) / (1 - r**2)
    x = np.asarray(out.translated, np.float64).ravel()
    assert abs(x.mean() - mean) < 5 * np.sqrt(var / x.size), (x.mean(), mean)
    assert abs(x.var() - var) < 5 * var * np.sqrt(2 / x.size), (x.var(), var)


def test_translation_schedule_keeps_cuts_or_extends_the_chain():
    t, h = np.array([4.0, 2.0, 1.0]), np.array([0.3, 0.2, 0.1])
    for steps, (tt, hh) in {0: (t, h), 2: (t[1:], h[1:]), 5: ([4, 4, 4, 2, 1], [0.3, 0.3, 0.3, 0.2, 0.1])}.items():
        got_t, got_h = translate.translation_schedule(t, h, steps)
        np.testing.assert_allclose(got_t, tt)
        np.testing.assert_allclose(got_h, hh)
    got_t, got_h = translate.translation_schedule(t, 0.5, 4)  # a scalar step size is broadcast
    np.testing.assert_allclose(got_h, np.full(4, 0.5))
    with pytest.raises(ConfigError, match="integer >= 0"):
        translate.translation_schedule(t, h, -1)


def test_ink_figures():
    x = np.array([[0.0, 0.25], [0.75, 1.0]]).reshape(1, 2, 2, 1)
    assert translate.ink(x) == pytest.approx(0.5) and translate.ink_area(x) == pytest.approx(0.5)
    assert translate.ink(2 * x - 1, (-1.0, 1.0)) == pytest.approx(0.5)  # rescaled from the data's range


# --------------------------------------------------------------------------------------------
# Training with chains started at the source domain (ml.init = "source")
# --------------------------------------------------------------------------------------------


@pytest.mark.slow  # about 30 s on 2 CPU cores; the whole suite (CI) runs it
def test_source_started_training_chains_step_from_the_source_images():
    """ml.init = "source": the training chain starts at the source batch (translate.noise 0); one
    noise-free clamped Langevin step x1 = clip(x - step dE/dx, 0, 1) by hand, and the loss is then
    mean E(target) - mean E(x1), its gradient that of the same difference."""
    from ebmjax import methods

    cfg = load_config(DIGITS, [("model.widths", "4,8"), ("ml.steps", "1"), ("ml.noise", "0.0"),
                               ("ml.data_noise", "0.0"), ("translate.noise", "0.0"),
                               ("ml.step_size", "100.0")])  # a step a fresh network's gradient shows
    assert cfg.ml.init == "source" and cfg.ml.clamp
    method = methods.build(cfg, (16, 16, 1))
    assert method.source_data["name"] == "digits" and method.source_data["image_size"] == 16
    params = method.init_params(jax.random.PRNGKey(0))
    x_target = data.load_source(cfg.data, "train").get(np.arange(8))
    x_source = data.load_source(method.source_data, "train").get(np.arange(8, 16))
    energy = method.energy(params)
    grad = jax.grad(lambda x: jnp.sum(energy(x)))(x_source)
    x1 = jnp.clip(x_source - cfg.ml.step_size * grad, 0.0, 1.0)
    assert float(jnp.abs(x1 - x_source).max()) > 1e-2  # the step moves the chain

    def loss(p):
        return method.loss(p, method.init_carry(None), (x_target, x_source), jax.random.PRNGKey(1), jnp.int32(0))

    value, (_, metrics) = loss(params)
    want = jnp.mean(energy(x_target)) - jnp.mean(energy(x1))
    np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["energy_model"], jnp.mean(energy(x1)), rtol=1e-5, atol=1e-6)
    got = jax.grad(lambda p: loss(p)[0])(params)
    ref = jax.grad(lambda p: jnp.mean(method.energy(p)(x_target)) - jnp.mean(method.energy(p)(x1)))(params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_loop_draws_the_source_domain_beside_the_data_in_an_order_of_its_own(tmp_path):
    """Every step's batch is (target rows, source rows): the target's as always (stream 0, the order
    runs without a second domain have), the source's from its own seeded epochs (stream 1)."""
    from ebmjax.train import loop

    cfg = load_config(DIGITS, [("model.widths", "4,8"), ("train.batch_size", "8")])
    setup = loop.setup(cfg, tmp_path / "run", write_config=False)
    try:
        assert setup.source_domain is not None and setup.source_domain.name == "digits"
        trainer = loop._Trainer(cfg, tmp_path / "run", setup.source, setup.method, setup.mesh, setup.ckpts,
                                setup.source_domain)
        (target, source), bad = trainer._batches(3, 2)
    finally:
        setup.ckpts.close()
    assert bad == [] and target.shape == source.shape == (2, 8, 16, 16, 1)
    n_t, n_s = len(setup.source), len(setup.source_domain)
    for i, step in enumerate((3, 4)):
        idx_t = np.random.default_rng([cfg.seed, 0]).permutation(n_t)[8 * step:8 * step + 8]
        np.testing.assert_array_equal(target[i], setup.source.get(idx_t))
        idx_s = loop.batch_indices(cfg.seed, step, n_s, 8, stream=1)
        np.testing.assert_array_equal(source[i], setup.source_domain.get(idx_s))
        assert not np.array_equal(idx_s, loop.batch_indices(cfg.seed, step, n_s, 8))
    epoch = np.concatenate([loop.batch_indices(cfg.seed, s, n_s, 8, stream=1) for s in range(n_s // 8)])
    assert len(np.unique(epoch)) == len(epoch) == 8 * (n_s // 8)  # an epoch shows each source image at most once


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


@pytest.mark.slow  # trains through the CLI; the full suite (see the README) runs it
def test_cli_trains_translates_and_mode_translate_reproduces_it(tmp_path):
    """One shrunk translate_digits run (one test, so that parallel workers train it once): trained, then
    translated (translate.after_train); then --mode translate from the checkpoint."""
    translated_run = tmp_path / "run"
    assert main.run(["--config", DIGITS, "--workdir", str(translated_run), *SHRUNK]) == 0
    out = translated_run / "translate"
    assert {"translated.npz", "panels.png", "report.json", "energy_trace.png"} <= {p.name for p in out.iterdir()}
    with np.load(out / "translated.npz") as f:
        assert set(f.files) == {"source", "translated", "target", "source_labels"}
        source, translated, target, labels = f["source"], f["translated"], f["target"], f["source_labels"]
    plain = data.load_source(dict(name="digits", image_size=16), "test")
    bold = data.load_source(dict(name="digits_bold", image_size=16), "train")
    np.testing.assert_array_equal(source, plain.get(np.arange(10)))  # the first translate.n test digits
    np.testing.assert_array_equal(labels, plain.labels(np.arange(10)))
    np.testing.assert_array_equal(target, bold.get(np.arange(12)))  # target-domain training images
    assert translated.shape == (10, 16, 16, 1) and translated.dtype == np.float32
    assert translated.min() >= 0.0 and translated.max() <= 1.0  # stored in the data's range
    assert not np.array_equal(translated, source)
    report = json.loads((out / "report.json").read_text())
    assert (report["source_data"], report["target_data"], report["steps"], report["n"]) == \
        ("digits", "digits_bold", 3, 10)
    assert report["checkpoint_step"] == 4 and report["noise"] == 0.01 and 0 <= report["outside_range_share"] <= 1
    assert report["ink"]["source"] == pytest.approx(translate.ink(source))
    assert report["ink"]["target"] == pytest.approx(translate.ink(target))
    assert report["ink_area"]["translated"] == pytest.approx(translate.ink_area(translated))

    first = translated
    assert main.run(["--config", DIGITS, "--workdir", str(translated_run), "--mode", "translate", *SHRUNK]) == 0
    again = np.load(translated_run / "translate" / "translated.npz")["translated"]
    np.testing.assert_array_equal(again, first)  # the same checkpoint, settings and seed
    # translate.seed = N draws another key (other noise and chains); None derives it from `seed`.
    cfg = load_config(DIGITS)
    same = translate_app.translation_key(load_config(DIGITS, [("seed", "0")]))
    bits = jax.random.key_data
    assert np.array_equal(bits(translate_app.translation_key(cfg)), bits(same))
    other = translate_app.translation_key(load_config(DIGITS, [("translate.seed", "1")]))
    assert not np.array_equal(bits(other), bits(translate_app.translation_key(cfg)))


def test_batched_translation_without_steps_or_noise_returns_the_sources():
    """The CLI's batched, sharded, chunked path (5 images in batches of 2, the last one padded)."""
    x = data.load_source(dict(name="digits", image_size=16), "test").get(np.arange(5))
    res = translate.translate_batches(quadratic(0.5, 1.0), samplers.ula, x, jax.random.PRNGKey(0),
                                      temperatures=np.zeros(0), step_sizes=np.zeros(0), noise=0.0, batch_size=2,
                                      chunk_size=2, progress=False)
    np.testing.assert_array_equal(res.translated, x)
    np.testing.assert_array_equal(res.start, x)
    assert res.energy.shape == (0, 5)


@pytest.mark.parametrize("override, message", [
    ("--config.translate.image_size=8", "set --config.translate.image_size=16"),
    ("--config.translate.n=400", "translate.n = 400 is larger than the 355 images"),
    ("--config.translate.data_name=none", "translate.data_name is not set"),
    ("--config.translate.noise=-1", "translate.noise must be a finite number >= 0"),
    ("--config.translate.steps=-2", "translate.steps must be a finite number >= 0"),
    ("--config.translate.seed=-1", "translate.seed must be None"),
])
def test_cli_refuses_bad_translations_before_training_or_reading_checkpoints(tmp_path, capsys, override, message):
    wd = tmp_path / "run"
    for mode in ("train", "translate"):  # train: translate.after_train is checked before training starts
        code = main.run(["--config", DIGITS, "--workdir", str(wd), "--mode", mode, *SHRUNK, override])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, err
        assert not (wd / "checkpoints").exists()


def test_cli_refuses_toy_data_and_a_workdir_without_checkpoints(tmp_path, capsys):
    toy = str(ROOT / "configs" / "mdsm_toy2d.py")
    assert main.run(["--config", toy, "--workdir", str(tmp_path), "--mode", "translate", "--no-progress"]) == 2
    assert "needs images" in capsys.readouterr().err
    assert main.run(["--config", DIGITS, "--workdir", str(tmp_path / "empty"), "--mode", "translate", *SHRUNK]) == 2
    assert "train first" in capsys.readouterr().err
