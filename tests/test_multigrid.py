"""Multigrid maximum likelihood (Gao et al. 2018; Malhotra §IV, with and without its generator): the
resolution operators are exact, every grid's chain runs on that grid's own energy from the up-sampled
sample of the grid below, or from the up-sampled generator output of it (checked with planted linear
energies whose chains are computed by hand), each grid's loss touches only its own network and the
generator's only the generator (both readings, losses computed by hand), and configs/multigrid_digits.py (shrunk) trains, samples and draws
grids.png through the command line."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax import methods, models, ops
from ebmjax.apps import main
from ebmjax.apps.sample import grid_title
from ebmjax.config import load_config
from ebmjax.errors import ConfigError
from ebmjax.methods import multigrid, pictures

ROOT = pathlib.Path(__file__).resolve().parents[1]
MULTIGRID_DIGITS = str(ROOT / "configs" / "multigrid_digits.py")
# configs/multigrid_digits.py at toy size: narrow networks, short chains, a few steps.
SHRUNK = ["--config.multigrid.widths=4,8", "--config.multigrid.steps=3", "--config.multigrid.sample_steps=4",
          "--config.multigrid.coarse_buffer=32", "--config.train.steps=6", "--config.train.batch_size=8",
          "--config.train.log_every=3", "--config.train.checkpoint_every=3", "--config.sample.n=8",
          "--config.sample.batch_size=8", "--config.sample.chunk_steps=4", "--no-progress"]


# ---------------------------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------------------------


def test_downsample_is_the_block_mean_computed_by_hand():
    x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3) ** 1.5
    y = np.asarray(ops.downsample(x, 2))
    assert y.shape == (2, 2, 3, 3)
    for b in range(2):
        for i in range(2):
            for j in range(3):
                for c in range(3):
                    block = [x[b, 2 * i + di, 2 * j + dj, c] for di in range(2) for dj in range(2)]
                    np.testing.assert_allclose(y[b, i, j, c], sum(block) / 4, rtol=1e-6)
    # The coarsest grid of digits: one number per image, its mean.
    z = np.random.default_rng(0).random((5, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(ops.downsample(z, 8))[:, 0, 0, 0], z.mean(axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(ops.downsample(z, 1)), z)


def test_upsample_replicates_pixels_and_downsample_inverts_it_exactly():
    x = np.random.default_rng(1).random((3, 2, 3, 2)).astype(np.float32)
    up = np.asarray(jax.jit(ops.upsample, static_argnums=1)(x, 4))
    assert up.shape == (3, 8, 12, 2)
    for i in range(8):
        for j in range(12):
            np.testing.assert_array_equal(up[:, i, j], x[:, i // 4, j // 4])
    for f in (1, 2, 3, 4):
        np.testing.assert_array_equal(np.asarray(ops.downsample(ops.upsample(x, f), f)), x)
    # The other direction is the projection on block-constant images: applying it twice changes nothing.
    z = np.random.default_rng(2).random((2, 8, 8, 1)).astype(np.float32)
    p = ops.upsample(ops.downsample(z, 2), 2)
    np.testing.assert_allclose(np.asarray(ops.upsample(ops.downsample(p, 2), 2)), np.asarray(p), rtol=1e-6)


def test_operators_refuse_sizes_that_do_not_divide():
    with pytest.raises(ConfigError, match="not divisible by the factor 3"):
        ops.downsample(jnp.zeros((1, 8, 8, 1)), 3)
    with pytest.raises(ConfigError, match="NHWC"):
        ops.downsample(jnp.zeros((8, 8)), 2)
    with pytest.raises(ConfigError, match="factor must be an integer >= 1"):
        ops.upsample(jnp.zeros((1, 2, 2, 1)), 0)


# ---------------------------------------------------------------------------------------------
# The per-grid network
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # about 25 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.parametrize("side", [1, 2, 4, 8])
def test_grid_energy_works_on_every_grid_and_ignores_the_rest_of_the_batch(side):
    net = models.GridEnergy(widths=(4, 8), ref_sigma=2.0)
    params = models.init_params(net, jax.random.PRNGKey(0), (side, side, 1))
    x = jax.random.uniform(jax.random.PRNGKey(1), (5, side, side, 1))
    e = np.asarray(net.apply(params, x))
    assert e.shape == (5,) and np.isfinite(e).all()
    # No batch statistics: an image's energy is the same alone as in any batch.
    alone = np.asarray(jnp.concatenate([net.apply(params, x[i:i + 1]) for i in range(5)]))
    np.testing.assert_allclose(alone, e, rtol=1e-5, atol=1e-6)
    # The Gaussian reference term of Malhotra's eq. 1 is added on top of the network.
    bare = models.GridEnergy(widths=(4, 8))
    np.testing.assert_allclose(e - np.asarray(bare.apply(params, x)),
                               np.sum(np.asarray(x).reshape(5, -1) ** 2, axis=1) / (2 * 2.0**2), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Chains and losses, with planted energies
# ---------------------------------------------------------------------------------------------

SLOPES = {2: 0.5, 4: -1.0, 8: 2.0}  # planted: E_s(x) = slope_s * (sum of the pixels the first layer reads)


def _cfg(**multigrid):
    cfg = load_config(MULTIGRID_DIGITS)
    cfg.multigrid.widths = (2, 3)
    cfg.multigrid.clamp = False
    cfg.multigrid.noise = (0.0,)
    cfg.multigrid.data_noise = 0.0
    cfg.multigrid.coarse_buffer = 16
    for k, v in multigrid.items():
        cfg.multigrid[k] = v
    return cfg


def _planted(params):
    """Every network made linear: the first two layers copy the input into channel 0 (the rest 0), the
    read-out sums channel 0 times the grid's slope."""
    out = {}
    for name, p in params.items():
        side = int(name.split("_")[1])
        q = jax.tree.map(jnp.zeros_like, p)
        for conv in ("conv0", "conv1"):
            k = q["params"][conv]["kernel"]
            q["params"][conv]["kernel"] = k.at[1, 1, 0, 0].set(1.0)  # centre tap, channel 0 -> channel 0
        w = q["params"]["out"]["kernel"].reshape(-1, 3)  # (positions, channels) of the flattened features
        q["params"]["out"]["kernel"] = w.at[:, 0].set(SLOPES[side]).reshape(-1, 1)
        out[name] = q
    return out


def _grad_by_hand(side, shape):
    """dE/dx of the planted grid ``side``: its slope where the first (strided, from side 4 on) layer reads."""
    g = np.zeros(shape, np.float32)
    stride = 2 if side >= 4 else 1
    g[:, ::stride, ::stride] = SLOPES[side]
    return g


def test_planted_networks_are_the_linear_energies_they_are_meant_to_be():
    method = methods.build(_cfg(), (8, 8, 1))
    params = _planted(method.init_params(jax.random.PRNGKey(0)))
    for side in (2, 4, 8):
        x = jax.random.uniform(jax.random.PRNGKey(side), (3, side, side, 1), minval=0.1, maxval=1.0)
        e = jax.jit(method.networks[f"energy_{side}"].apply)(params[f"energy_{side}"], x)
        np.testing.assert_allclose(np.asarray(e), np.sum(np.asarray(x) * _grad_by_hand(side, x.shape), axis=(1, 2, 3)),
                                   rtol=1e-5)


@pytest.mark.slow  # about 12 s on 2 CPU cores; the whole suite (CI) runs it
def test_sampler_runs_each_grid_on_its_own_energy_from_the_upsampled_coarser_sample():
    cfg = _cfg(steps=(9,), sample_steps=(2, 3, 4), step_size=(0.01, 0.02, 0.005))
    method = methods.build(cfg, (8, 8, 1))
    params = _planted(method.init_params(jax.random.PRNGKey(0)))
    carry = {"coarse": jnp.linspace(0.2, 0.6, 16).reshape(16, 1, 1, 1)}
    sampler = method.sampler(params, carry)
    assert [s.name for s in sampler.stages] == ["grid 2x2", "grid 4x4", "grid 8x8"]
    assert grid_title(cfg, sampler) == f"multigrid samples ({cfg.data.name})"
    ends = pictures.stage_ends(sampler, jax.random.PRNGKey(3), 5)
    assert [e.shape[1] for e in ends] == [1, 2, 4, 8]
    assert np.isin(ends[0].ravel(), np.asarray(carry["coarse"]).ravel()).all()  # starts: stored block averages
    x = ends[0]
    for k, (side, n, step) in enumerate(zip((2, 4, 8), (2, 3, 4), (0.01, 0.02, 0.005))):
        start = np.asarray(ops.upsample(x, 2))
        x = start - n * step * _grad_by_hand(side, start.shape)  # n steps of a constant gradient, no noise
        np.testing.assert_allclose(ends[k + 1], x, rtol=1e-5, atol=1e-6)
    # The restoration / evaluation energy is the finest grid's.
    z = jnp.full((2, 8, 8, 1), 0.5)
    np.testing.assert_allclose(np.asarray(method.energy(params)(z)),
                               np.asarray(method.networks["energy_8"].apply(params["energy_8"], z)))


@pytest.mark.slow  # about 23 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.parametrize("order", ["sequential", "joint"])
def test_training_chains_and_losses_follow_the_cascade(order):
    steps, sizes = (2, 3, 1), (0.01, 0.02, 0.03)
    method = methods.build(_cfg(steps=steps, step_size=sizes, order=order), (8, 8, 1))
    params = _planted(method.init_params(jax.random.PRNGKey(0)))
    batch = jax.random.uniform(jax.random.PRNGKey(4), (6, 8, 8, 1))
    loss, (carry, metrics) = jax.jit(method.loss)(params, method.init_carry(jax.random.PRNGKey(0)), batch,
                                                  jax.random.PRNGKey(5), jnp.int32(0))
    data = {s: np.asarray(ops.downsample(batch, 8 // s)) for s in (1, 2, 4, 8)}
    previous, total = data[1], 0.0
    for side, coarser, n, step in zip((2, 4, 8), (1, 2, 4), steps, sizes):
        start = np.asarray(ops.upsample(previous if order == "sequential" else data[coarser], 2))
        g = _grad_by_hand(side, start.shape)
        model = start - n * step * g
        e_data, e_model = np.sum(data[side] * g, axis=(1, 2, 3)), np.sum(model * g, axis=(1, 2, 3))
        total += e_data.mean() - e_model.mean()
        np.testing.assert_allclose(metrics[f"energy_gap_{side}"], e_model.mean() - e_data.mean(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(metrics[f"chain_move_{side}"], n * step * np.sqrt(np.mean(g**2)), rtol=1e-4)
        previous = model
    np.testing.assert_allclose(loss, total, rtol=1e-4, atol=1e-6)
    # The carry keeps the batch's 1x1 block averages (the whole ring filled at step 0) for --mode sample.
    coarse = np.asarray(carry["coarse"])
    np.testing.assert_allclose(coarse[:, 0, 0, 0], np.resize(data[1][:, 0, 0, 0], 16), rtol=1e-6)


@pytest.mark.slow  # about 23 s on 2 CPU cores; the whole suite (CI) runs it
def test_each_grids_loss_touches_only_its_own_network():
    method = methods.build(_cfg(steps=(2,), step_size=(0.05,)), (8, 8, 1))
    params = method.init_params(jax.random.PRNGKey(0))
    carry = method.init_carry(jax.random.PRNGKey(0))
    batch = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 1))
    key = jax.random.PRNGKey(2)

    def grid_loss(side):  # grid s's term of the loss is -energy_gap_s (no energy penalty here)
        return lambda p: -method.loss(p, carry, batch, key, jnp.int32(0))[1][1][f"energy_gap_{side}"]

    total = jax.jit(jax.grad(lambda p: method.loss(p, carry, batch, key, jnp.int32(0))[0]))(params)
    summed = None
    for side in (2, 4, 8):
        g = jax.jit(jax.grad(grid_loss(side)))(params)
        for name, tree in g.items():
            norm = float(sum(jnp.sum(jnp.abs(leaf)) for leaf in jax.tree.leaves(tree)))
            assert (norm > 0) == (name == f"energy_{side}"), (side, name, norm)
        summed = g if summed is None else jax.tree.map(jnp.add, summed, g)
    for a, b in zip(jax.tree.leaves(summed), jax.tree.leaves(total)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def _planted_classes(params, classes):
    """_planted with ``classes`` read-outs: class c's energy is (1 + c) x the grid's planted one
    (GridEnergy returns logits f = -read-out, so E(x, c) = -f(x)[c] = (1 + c) slope_s sum(...))."""
    one = {k: {"params": {**v["params"], "out": {"kernel": v["params"]["out"]["kernel"][:, :1],
                                                  "bias": v["params"]["out"]["bias"][:1]}}}
           for k, v in params.items()}
    out = {}
    for name, q in _planted(one).items():
        w = q["params"]["out"]["kernel"]
        q["params"]["out"] = {"kernel": w * (1.0 + jnp.arange(classes)), "bias": jnp.zeros(classes)}
        out[name] = q
    return out


@pytest.mark.slow  # about 15 s on 2 CPU cores; the whole suite (CI) runs it
def test_a_class_conditional_multigrid_runs_every_chain_on_its_examples_label():
    cfg = _cfg(steps=(2,), step_size=(0.01, 0.02, 0.03), sample_steps=(3,))
    cfg.model.classes = 2
    method = methods.build(cfg, (8, 8, 1))
    assert method.labels == 2
    params = _planted_classes(method.init_params(jax.random.PRNGKey(0)), 2)
    x = jax.random.uniform(jax.random.PRNGKey(4), (6, 8, 8, 1), minval=0.1, maxval=1.0)
    y = jnp.array([0, 1, 1, 0, 1, 0], jnp.int32)
    carry = method.init_carry(jax.random.PRNGKey(0))
    loss, (carry, metrics) = jax.jit(method.loss)(params, carry, (x, y), jax.random.PRNGKey(5), jnp.int32(0))
    scale = 1.0 + np.asarray(y, np.float32)[:, None, None, None]  # each example's class multiplies its gradient
    data = {s: np.asarray(ops.downsample(x, 8 // s)) for s in (1, 2, 4, 8)}
    previous, total = data[1], 0.0
    for side, step in zip((2, 4, 8), (0.01, 0.02, 0.03)):
        start = np.asarray(ops.upsample(previous, 2))
        g = scale * _grad_by_hand(side, start.shape)
        model = start - 2 * step * g
        gap = np.mean(np.sum(model * g, axis=(1, 2, 3))) - np.mean(np.sum(data[side] * g, axis=(1, 2, 3)))
        np.testing.assert_allclose(metrics[f"energy_gap_{side}"], gap, rtol=1e-4, atol=1e-6)
        total, previous = total - gap, model
    np.testing.assert_allclose(loss, total, rtol=1e-4, atol=1e-6)
    # The coarse ring keeps every row's label beside its block average (filled from the batch at step 0).
    np.testing.assert_array_equal(carry["labels"], np.resize(np.asarray(y), 16))
    np.testing.assert_allclose(carry["coarse"][:, 0, 0, 0], np.resize(data[1][:, 0, 0, 0], 16), rtol=1e-6)
    # Restoration and evaluation: the finest grid's E(x) = -logsumexp_y f(x)[y].
    f = method.classifier(params)(x)
    np.testing.assert_allclose(method.energy(params)(x), -jax.nn.logsumexp(f, axis=1), rtol=1e-5)
    # --mode sample with sample.label = 1: class 1's energy on every grid, from coarse rows of class 1.
    cfg.sample.label = 1
    sampler = methods.build(cfg, (8, 8, 1)).sampler(params, carry)
    assert sampler.settings["label"] == 1
    ends = pictures.stage_ends(sampler, jax.random.PRNGKey(3), 5)
    class_one = data[1][np.asarray(y) == 1, 0, 0, 0]
    assert np.isin(ends[0].ravel(), class_one).all()
    z = ends[0]
    for k, (side, step) in enumerate(zip((2, 4, 8), (0.01, 0.02, 0.03))):
        start = np.asarray(ops.upsample(z, 2))
        z = start - 3 * step * 2.0 * _grad_by_hand(side, start.shape)
        np.testing.assert_allclose(ends[k + 1], z, rtol=1e-5, atol=1e-6)


def test_a_conditional_multigrid_needs_labels_in_range():
    cfg = _cfg()
    cfg.sample.label = 3
    with pytest.raises(ConfigError, match="needs a class-conditional model"):
        methods.build(cfg, (8, 8, 1))
    cfg.model.classes = 2
    with pytest.raises(ConfigError, match="sample.label must be a class 0..1"):
        methods.build(cfg, (8, 8, 1))


# ---------------------------------------------------------------------------------------------
# Malhotra's generator in front of every grid's chain
# ---------------------------------------------------------------------------------------------

GEN = {"gen_width": 4, "gen_branch_width": 2, "gen_rates": (1, 2), "gen_sigma": 0.5}


def _planted_with_generator(method):
    """Planted linear energies and the generator's own random parameters, its output shifted to about 1
    (the planted energies are linear only on positive images)."""
    p = method.init_params(jax.random.PRNGKey(0))
    g = p["generator"]
    out = g["params"]["out_1x1"]
    g = {"params": {**g["params"], "out_1x1": {"kernel": 0.1 * out["kernel"], "bias": out["bias"] + 1.0}}}
    return {**_planted({k: v for k, v in p.items() if k != "generator"}), "generator": g}


@pytest.mark.slow  # about 13 s on 2 CPU cores; the whole suite (CI) runs it
def test_with_a_generator_each_chain_starts_from_the_upsampled_generator_output_of_the_coarser_sample():
    cfg = _cfg(steps=(9,), sample_steps=(2, 3, 4), step_size=(0.01, 0.02, 0.005), generator="teach", **GEN)
    method = methods.build(cfg, (8, 8, 1))
    assert sorted(method.networks) == ["energy_2", "energy_4", "energy_8", "generator"]
    params = _planted_with_generator(method)
    gen = method.networks["generator"]
    carry = {"coarse": jnp.linspace(0.2, 0.6, 16).reshape(16, 1, 1, 1)}
    sampler = method.sampler(params, carry)
    # x0, then (start, end) per grid: start = upsample(G(previous end)).
    ends = pictures.stage_ends(sampler, jax.random.PRNGKey(3), 5, starts=True)
    assert [e.shape[1] for e in ends] == [1, 2, 2, 4, 4, 8, 8]
    x = ends[0]
    for k, (side, n, step) in enumerate(zip((2, 4, 8), (2, 3, 4), (0.01, 0.02, 0.005))):
        start = np.asarray(ops.upsample(gen.apply(params["generator"], jnp.asarray(x)), 2))
        assert start.min() >= 0 and not np.allclose(start, np.asarray(ops.upsample(x, 2)), atol=1e-3)
        np.testing.assert_allclose(ends[1 + 2 * k], start, rtol=1e-5, atol=1e-6)
        x = start - n * step * _grad_by_hand(side, start.shape)
        np.testing.assert_allclose(ends[2 + 2 * k], x, rtol=1e-5, atol=1e-6)
    assert sampler.settings["generator"] == "teach"
    # The grid's title names the recipe, not only the method (plain multigrid: no variant).
    assert grid_title(cfg, sampler, step=7) == f"multigrid (teach generator) samples ({cfg.data.name}, step 7)"


@pytest.mark.slow  # about 27 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.parametrize("reading", ["teach", "autoencode"])
def test_generator_readings_losses_computed_by_hand(reading):
    steps, sizes = (2, 3, 1), (0.01, 0.02, 0.03)
    method = methods.build(_cfg(steps=steps, step_size=sizes, generator=reading, **GEN), (8, 8, 1))
    params = _planted_with_generator(method)
    gen = lambda x: np.asarray(method.networks["generator"].apply(params["generator"], jnp.asarray(x)))  # noqa: E731
    batch = jax.random.uniform(jax.random.PRNGKey(4), (6, 8, 8, 1))
    loss, (_, metrics) = jax.jit(method.loss)(params, method.init_carry(jax.random.PRNGKey(0)), batch,
                                              jax.random.PRNGKey(5), jnp.int32(0))
    data = {s: np.asarray(ops.downsample(batch, 8 // s)) for s in (1, 2, 4, 8)}
    previous, total, gen_total = data[1], 0.0, 0.0
    for side, coarser, n, step in zip((2, 4, 8), (1, 2, 4), steps, sizes):
        start = np.asarray(ops.upsample(gen(previous), 2))
        g = _grad_by_hand(side, start.shape)
        model = start - n * step * g
        e_data, e_model = np.sum(data[side] * g, axis=(1, 2, 3)), np.sum(model * g, axis=(1, 2, 3))
        total += e_data.mean() - e_model.mean()
        np.testing.assert_allclose(metrics[f"energy_gap_{side}"], e_model.mean() - e_data.mean(), rtol=1e-4, atol=1e-6)
        if reading == "teach":  # |upsample(G(previous)) - revised|^2 / (2 sigma^2): here the chain's move
            r = start - model
        else:  # |G(y) - y|^2 / (2 sigma^2) on the data of the grid G is applied to
            r = gen(data[coarser]) - data[coarser]
        gen_total += 0.5 * np.mean(np.sum(r.reshape(6, -1) ** 2, axis=1)) / 0.5**2
        previous = model
    np.testing.assert_allclose(metrics["gen_loss"], gen_total, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(loss, total + gen_total, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # about 62 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.parametrize("reading", ["teach", "autoencode"])
def test_generator_and_energies_losses_touch_disjoint_parameters(reading):
    method = methods.build(_cfg(steps=(2,), step_size=(0.05,), generator=reading, **GEN), (8, 8, 1))
    params = method.init_params(jax.random.PRNGKey(0))
    carry = method.init_carry(jax.random.PRNGKey(0))
    batch = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 1))
    key = jax.random.PRNGKey(2)

    def part(which):
        def f(p):
            total, (_, m) = method.loss(p, carry, batch, key, jnp.int32(0))
            return {"all": total, "gen": m["gen_loss"], "energies": total - m["gen_loss"]}[which]
        return jax.jit(jax.grad(f))(params)

    def norm(tree):
        return float(sum(jnp.sum(jnp.abs(leaf)) for leaf in jax.tree.leaves(tree)))

    g_gen, g_energies, g_all = part("gen"), part("energies"), part("all")
    for name in params:
        assert (norm(g_gen[name]) > 0) == (name == "generator"), name
        assert (norm(g_energies[name]) > 0) == (name != "generator"), name
    for a, b, c in zip(jax.tree.leaves(g_gen), jax.tree.leaves(g_energies), jax.tree.leaves(g_all)):
        np.testing.assert_allclose(np.asarray(a + b), np.asarray(c), rtol=1e-5, atol=1e-6)


def test_generator_settings_are_checked():
    for fields, says in (({"generator": "gan"}, "multigrid.generator must be one of none, teach, autoencode"),
                         ({"generator": "teach", "gen_rates": (0,)}, "gen_rates must be a non-empty tuple"),
                         ({"generator": "teach", "gen_sigma": 0.0}, "gen_sigma must be a finite number > 0")):
        with pytest.raises(ConfigError, match=says):
            methods.build(_cfg(**fields), (8, 8, 1))
    with pytest.raises(ConfigError, match="output is >= 0"):
        methods.build(_cfg(generator="teach"), (8, 8, 1), value_range=(-1.0, 1.0))


def test_settings_per_grid_or_shared_and_the_grids_are_checked():
    pl = multigrid.plan(_cfg(steps=(5,), step_size=(1.0, 2.0, 3.0)).multigrid, (8, 8, 1))
    assert pl.steps == (5, 5, 5) and pl.step_size == (1.0, 2.0, 3.0) and pl.factors == (8, 4, 2, 1)
    assert pl.sample_steps == (40, 40, 40)  # the config's
    for fields, says in (({"grids": (1, 2, 4)}, "must end at the image side 8"),
                         ({"grids": (1, 3, 8)}, "every side must divide the next"),
                         ({"grids": (8,)}, "at least two increasing sides"),
                         ({"steps": (1, 2)}, "one per learned grid"),
                         ({"step_size": (0.0,)}, "finite numbers > 0"),
                         ({"order": "random"}, "multigrid.order must be one of sequential, joint")):
        with pytest.raises(ConfigError, match=says):
            methods.build(_cfg(**fields), (8, 8, 1))


# ---------------------------------------------------------------------------------------------
# The config through the command line
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # about 50 s on 2 CPU cores; the whole suite (CI) runs it
def test_multigrid_digits_config_trains_samples_and_draws_grids_png(tmp_path):
    cfg = load_config(MULTIGRID_DIGITS)
    assert cfg.method.name == "multigrid" and cfg.data.name == "digits" and cfg.multigrid.grids == (1, 2, 4, 8)
    assert "--config configs/multigrid_digits.py" in pathlib.Path(MULTIGRID_DIGITS).read_text()

    wd = tmp_path / "run"
    assert main.run(["--config", MULTIGRID_DIGITS, "--workdir", str(wd), *SHRUNK]) == 0
    rec = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rec] == [3, 6] and all(r["skipped"] == 0 for r in rec)
    for r in rec:
        for side in (2, 4, 8):
            names = [f"{m}_{side}" for m in ("energy_data", "energy_model", "energy_gap", "grad_step_rms",
                                            "chain_move", "energy_noise")] + [f"grad_norm/energy_{side}"]
            assert np.isfinite([r[n] for n in names]).all(), r
    images = np.load(wd / "samples" / "samples.npz")["images"]
    assert images.shape == (8, 8, 8, 1) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0
    summary = json.loads((wd / "samples" / "summary.json").read_text())
    assert {"grid.png", "grids.png"} <= set(summary["files"])
    from PIL import Image

    rows = Image.open(wd / "samples" / "grids.png")
    assert rows.height < rows.width  # four rows of twelve chains

    # --mode sample reloads the checkpoint (the coarse starts are in its state) and draws new chains.
    assert main.run(["--config", MULTIGRID_DIGITS, "--workdir", str(wd), "--mode", "sample", "--config.sample.seed=1",
                     *SHRUNK]) == 0
    other = np.load(wd / "samples_seed1" / "samples.npz")["images"]
    assert other.shape == images.shape and not np.allclose(other, images)
    assert (wd / "samples_seed1" / "grids.png").exists()

    # Inpainting runs the finest grid's chain on the image; its free pixels start from the default
    # 0.5 + N(0, 1) (the cascade starts at 1x1), and known pixels come back unchanged.
    assert main.run(["--config", MULTIGRID_DIGITS, "--workdir", str(wd), "--mode", "inpaint", "--config.restore.n=4",
                     "--config.restore.n_chains=2", *SHRUNK]) == 0
    with np.load(wd / "inpaint" / "restored.npz") as f:
        known = f["mask"] < 0.5
        np.testing.assert_array_equal(f["one_chain"][known], f["truth"][known])


MULTIGRID_GEN_DIGITS = str(ROOT / "configs" / "multigrid_gen_digits.py")


@pytest.mark.slow  # every CLI mode on a trained run; the full suite (see the README) runs it
def test_multigrid_gen_digits_config_through_every_mode(tmp_path):
    """configs/multigrid_gen_digits.py (shrunk): training learns the generator with the grids, sampling
    enters every grid through it (grids.png: the 1x1 start, then G's proposal and the chain's end per
    grid: seven rows), denoising and the evaluation (with the checkpoint scan) run on the finest energy."""
    cfg = load_config(MULTIGRID_GEN_DIGITS)
    assert cfg.method.name == "multigrid" and cfg.multigrid.generator == "teach"
    assert "--config configs/multigrid_gen_digits.py" in pathlib.Path(MULTIGRID_GEN_DIGITS).read_text()
    common = ["--config", MULTIGRID_GEN_DIGITS, "--workdir", str(tmp_path / "run"), *SHRUNK,
              "--config.multigrid.gen_width=4", "--config.multigrid.gen_branch_width=2"]
    wd = tmp_path / "run"
    assert main.run(common) == 0
    rec = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["gen_loss"]) and r["gen_loss"] > 0 and r["grad_norm/generator"] > 0 for r in rec)
    summary = json.loads((wd / "samples" / "summary.json").read_text())
    assert {"grid.png", "grids.png"} <= set(summary["files"])
    from PIL import Image

    # Twelve chains of seven 8x8 rows (at the grid's picture scale): about 7/12 as tall as wide, plus a title.
    rows = Image.open(wd / "samples" / "grids.png")
    assert 0.5 < rows.height / rows.width < 0.75
    assert main.run([*common, "--mode", "denoise", "--config.restore.n=4"]) == 0
    assert (wd / "denoise" / "report.json").exists()
    assert main.run([*common, "--mode", "eval", "--config.eval.checkpoints=all", "--config.eval.scan_samples=16",
                     "--config.eval.metrics=ood,coverage", "--config.eval.n_samples=16", "--config.eval.ood.n=16",
                     "--config.eval.n_data=64"]) == 0
    scan = json.loads((wd / "eval" / "best_checkpoint.json").read_text())
    assert [s["step"] for s in scan["scores"]] == [3, 6]
    assert (wd / "eval" / "quality_vs_step.png").exists() and (wd / "eval" / "report.json").exists()


@pytest.mark.parametrize("name", ["multigrid_celeba", "multigrid_gen_celeba"])
def test_celeba_configs_build_gaos_grids_on_64x64x3(name):
    """The paper-scale configs (not trained here: tfds CelebA and an accelerator) build Gao's grids
    1 -> 4 -> 16 -> 64 with the 64x64 net strided four times, and one loss evaluates (shapes only)."""
    cfg = load_config(str(ROOT / "configs" / f"{name}.py"))
    assert cfg.data.name == "celeb_a" and cfg.data.image_size == 64 and cfg.multigrid.grids == (1, 4, 16, 64)
    assert cfg.multigrid.generator == ("teach" if "gen" in name else "none")
    method = methods.build(cfg, (64, 64, 3))
    key = jax.random.PRNGKey(0)
    params = jax.eval_shape(method.init_params, key)
    # The 64x64 net reads a 4x4x512 map after its four strided layers; the 16x16 net 8x8x512 after one.
    assert params["energy_64"]["params"]["out"]["kernel"].shape == (4 * 4 * 512, 1)
    assert params["energy_16"]["params"]["out"]["kernel"].shape == (8 * 8 * 512, 1)
    carry = jax.eval_shape(method.init_carry, key)
    batch = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    loss, (_, metrics) = jax.eval_shape(method.loss, params, carry, batch, key, jnp.int32(0))
    assert loss.shape == () and {"energy_gap_4", "energy_gap_16", "energy_gap_64"} <= set(metrics)
