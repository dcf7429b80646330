"""The shared training step: k steps per call equal k single steps, non-finite updates are skipped,
the moving average of the parameters follows its formula, and each network gets its own optimiser."""

import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebmjax import methods, optim
from ebmjax.config import load_config
from ebmjax.errors import ConfigError
from ebmjax.train import state as train_state
from ebmjax.train import step as train_step

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOY = str(ROOT / "configs" / "mdsm_toy2d.py")
DIGITS = str(ROOT / "configs" / "mdsm_digits.py")


def toy_method(**overrides):
    ov = {"model.hidden": "(16,16)", "train.batch_size": "8", **overrides}
    cfg = load_config(TOY, list(ov.items()))
    return cfg, methods.build(cfg, (2,))


def fresh_state(method, ema=False):
    return train_state.create(method.init_params(jax.random.PRNGKey(0)), method.optimizer, (), ema=ema)


@pytest.mark.slow  # about 14 s on 2 CPU cores; the whole suite (CI) runs it
def test_multi_step_equals_single_steps():
    cfg, method = toy_method()
    state = fresh_state(method)
    batches = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 2))
    key = jax.random.PRNGKey(2)
    multi, metrics = jax.jit(train_step.make_multi_step(method, 3))(state, batches, key)
    step = jax.jit(train_step.make_train_step(method))
    single = state
    for i in range(3):
        single, m = step(single, batches[i], key)
        np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-5)
    assert int(multi.step) == 3 and metrics["loss"].shape == (3,)
    np.testing.assert_array_equal(metrics["skipped_update"], [0, 0, 0])
    # A non-finite batch skips its own update only, and says so.
    bad = batches.at[1, 0, 0].set(jnp.nan)
    after, metrics = jax.jit(train_step.make_multi_step(method, 3))(multi, bad, key)
    np.testing.assert_array_equal(metrics["skipped_update"], [0, 1, 0])
    assert int(after.step) == 6 and int(after.skipped) == 1
    chex.assert_trees_all_close(multi.params, single.params, rtol=1e-4, atol=1e-6)


def test_bad_steps_per_call_is_a_config_error():
    _, method = toy_method()
    with pytest.raises(ConfigError, match="steps_per_call"):
        train_step.make_multi_step(method, 0)


def test_moving_average_follows_its_formula():
    """ema_t = r_t ema_{t-1} + (1 - r_t) params_t with r_t = min(decay, (1 + t) / (10 + t)), t the
    number of updates before this one; a skipped update leaves it untouched."""
    cfg, method = toy_method()
    decay = 0.9
    state = fresh_state(method, ema=True)
    chex.assert_trees_all_equal(state.ema, state.params)
    step = jax.jit(train_step.make_train_step(method, decay))
    batches = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 2))
    want = jax.tree.map(np.asarray, state.params)
    for t in range(4):
        state, _ = step(state, batches[t], jax.random.PRNGKey(3))
        r = min(decay, (1 + t) / (10 + t))
        want = jax.tree.map(lambda e, p: r * e + (1 - r) * np.asarray(p), want, state.params)
    chex.assert_trees_all_close(state.ema, want, rtol=1e-6, atol=1e-7)
    assert train_state.inference_params(state, "ema") is state.ema
    assert train_state.inference_params(state) is state.params  # sample.weights' default: raw
    skipped, _ = step(state, batches[0].at[0, 0].set(jnp.inf), jax.random.PRNGKey(3))
    chex.assert_trees_all_equal(skipped.ema, state.ema)
    with pytest.raises(ConfigError, match="train.ema_decay"):  # no average kept
        train_state.inference_params(fresh_state(method), "ema")


def test_each_network_gets_its_own_optimiser():
    """Two networks in one params dict: SGD with lr 1 on one, lr 0 on the other."""
    opt = optim.per_network({"a": optax.sgd(1.0), "b": optax.sgd(0.0)})
    params = {"a": {"w": jnp.ones(3)}, "b": {"w": jnp.ones(2)}}
    grads = {"a": {"w": jnp.full(3, 0.5)}, "b": {"w": jnp.full(2, 0.5)}}
    updates, _ = opt.update(grads, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    chex.assert_trees_all_close(new, {"a": {"w": jnp.full(3, 0.5)}, "b": {"w": jnp.ones(2)}})
    with pytest.raises(ValueError, match="networks"):
        opt.init({"a": {"w": jnp.ones(3)}})


def two_network_method(boundary=2):
    """A method of two quadratic 'networks' whose second learns only from step ``boundary`` on, and
    whose loss depends on the phase (the scale of the first network's target)."""

    def loss(params, carry, batch, key, step, phase):
        target = 1.0 if phase == 0 else 2.0
        value = jnp.sum((params["a"]["w"] - target) ** 2) + jnp.sum((params["b"]["w"] - 3.0) ** 2)
        return value, (carry, {"target": jnp.asarray(target)})

    opt = optim.per_network({"a": optax.sgd(0.25), "b": optax.adam(0.1)})
    base = dict(name="two", networks=("a", "b"), init_params=lambda key: {"a": {"w": jnp.zeros(2)},
                                                                          "b": {"w": jnp.zeros(2)}},
                optimizer=opt, learning_rates={}, init_carry=lambda key: (), carry_specs=(), loss=loss,
                probe=None, energy=None, sampler=None, denoise_sigma=0.0, temperature=1.0, bounds={},
                identity=())
    return methods.Method(**base, phase=lambda step: int(step >= boundary), phase_boundaries=(boundary,),
                          frozen=lambda phase: {"b"} if phase == 0 else set())


def test_updates_past_the_chain_bounds_are_skipped():
    """Method.bounds from a chain settings group (contrastive.energy_bounds): an update whose mean
    energy passes energy_bound in magnitude, or whose chains' energy exceeds the data's by more
    than gap_bound, is skipped (parameters, optimiser and carry unchanged, ``skipped`` + 1); a
    negative gap of any size (chains below the data, which maximum likelihood corrects) is not."""
    import ml_collections

    from ebmjax.methods import contrastive, settings

    g = ml_collections.ConfigDict()
    settings.chain_settings(g, step_size=1.0, noise=0.01, energy_bound=50.0)
    assert contrastive.energy_bounds(g, "ml") == {"energy_data": (-50.0, 50.0, "ml.energy_bound"),
                                                   "energy_model": (-50.0, 50.0, "ml.energy_bound")}
    g.gap_bound = 2.0
    assert contrastive.energy_bounds(g, "multigrid", ("_4", "_8"))["energy_gap_8"] == (-np.inf, 2.0,
                                                                                       "multigrid.gap_bound")

    def loss(params, carry, batch, key, step):  # batch = (energy_data, energy_model)
        metrics = {"energy_data": batch[0], "energy_model": batch[1], "energy_gap": batch[1] - batch[0]}
        return jnp.sum((params["w"] - 1.0) ** 2), (carry + 1.0, metrics)

    method = methods.Method(name="bounded", networks=("w",), init_params=lambda key: {"w": jnp.zeros(2)},
                            optimizer=optax.sgd(0.25), learning_rates={}, init_carry=lambda key: jnp.zeros(()),
                            carry_specs=(), loss=loss, probe=None, energy=None, sampler=None, denoise_sigma=0.0,
                            temperature=1.0, bounds=contrastive.energy_bounds(g, "ml"), identity=())
    step = jax.jit(train_step.make_train_step(method))
    state = train_state.create(method.init_params(None), method.optimizer, jnp.zeros(()))
    key = jax.random.PRNGKey(0)
    for e_data, e_model, applied in [(0.0, 1.9, True), (0.0, 2.1, False), (1.0, -30.0, True), (60.0, 61.0, False),
                                     (-49.0, -47.5, True), (-49.0, -46.0, False), (0.0, float("nan"), False)]:
        new, _ = step(state, jnp.array([e_data, e_model]), key)
        assert int(new.skipped - state.skipped) == (0 if applied else 1), (e_data, e_model)
        assert float(new.carry) == float(state.carry) + applied
        assert (float(new.params["w"][0]) != float(state.params["w"][0])) == applied
        state = new


def test_frozen_networks_keep_parameters_and_optimiser_state():
    method = two_network_method()
    state = train_state.create(method.init_params(jax.random.PRNGKey(0)), method.optimizer, ())
    batch, key = jnp.zeros((1, 1)), jax.random.PRNGKey(0)
    first = jax.jit(train_step.make_train_step(method, phase=0))
    s1, m = first(state, batch, key)
    # Network a moves by SGD toward the phase-0 target (w <- w - 0.25 * 2 (w - 1) = 0.5); b is frozen.
    np.testing.assert_allclose(s1.params["a"]["w"], [0.5, 0.5])
    chex.assert_trees_all_equal(s1.params["b"], state.params["b"])
    chex.assert_trees_all_equal(s1.opt_state.inner_states["b"], state.opt_state.inner_states["b"])
    assert float(m["target"]) == 1.0
    second = jax.jit(train_step.make_train_step(method, phase=1))
    s2, m = second(s1, batch, key)
    # Phase 1: a's target is 2 (0.5 - 0.25 * 2 (0.5 - 2) = 1.25), and b's first Adam step is lr * sign.
    np.testing.assert_allclose(s2.params["a"]["w"], [1.25, 1.25])
    np.testing.assert_allclose(s2.params["b"]["w"], [0.1, 0.1], rtol=1e-5)
    assert float(m["target"]) == 2.0


def test_learning_rate_warms_up_linearly_then_follows_the_cosine():
    cfg = load_config(DIGITS, [("train.steps", "1000"), ("train.lr", "2e-3"), ("train.lr_end", "1e-5"),
                              ("train.warmup_steps", "0")])
    _, plain = optim.adam(cfg.train)
    # No warm-up: the paper's cosine from lr to lr_end.
    for t in (0, 250, 1000):
        want = 1e-5 + (2e-3 - 1e-5) * 0.5 * (1 + np.cos(np.pi * t / 1000))
        np.testing.assert_allclose(float(plain(t)), want, rtol=1e-5)
    cfg.train.warmup_steps = 100
    _, warm = optim.adam(cfg.train)
    np.testing.assert_allclose([float(warm(t)) for t in (0, 50, 100)], [0.0, 1e-3, 2e-3], rtol=1e-5, atol=1e-12)
    # After the warm-up, the cosine spans the remaining 900 steps.
    want = 1e-5 + (2e-3 - 1e-5) * 0.5 * (1 + np.cos(np.pi * 450 / 900))
    np.testing.assert_allclose(float(warm(550)), want, rtol=1e-5)
    np.testing.assert_allclose(float(warm(1000)), 1e-5, rtol=1e-5)
    # A run shorter than its warm-up only ramps up.
    cfg.train.steps, cfg.train.warmup_steps = 50, 100
    _, short = optim.adam(cfg.train)
    np.testing.assert_allclose([float(short(t)) for t in (0, 25, 50)], [0.0, 5e-4, 1e-3], rtol=1e-5, atol=1e-12)
    with pytest.raises(ConfigError, match="warmup_steps"):
        load_config(DIGITS, [("train.warmup_steps", "-1")])


def hand_adam(grads, lr, b1, b2, eps):
    """Adam's updates, written out, for a list of gradients of one leaf."""
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        out.append(-lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps))
    return out


def test_clip_norm_scales_long_gradients_down_before_adam():
    import ml_collections
    opt_cfg = ml_collections.ConfigDict({"steps": 10, "lr": 0.1, "lr_end": 0.1, "b1": 0.9, "b2": 0.95,
                                         "eps": 1e-8, "clip_norm": 5.0})
    g1, g2 = np.array([30.0, 40.0]), np.array([0.3, -0.4])  # norms 50 (clipped to 5) and 0.5 (kept)
    want = hand_adam([g1 * 5.0 / 50.0, g2], 0.1, 0.9, 0.95, 1e-8)
    unclipped = hand_adam([g1, g2], 0.1, 0.9, 0.95, 1e-8)
    # Two networks, each clipped by its own norm: b's gradients are a's halved, so b is clipped to 5 too.
    tx = optim.per_network({"a": optim.adam(opt_cfg)[0], "b": optim.adam_like(opt_cfg, 0.1, 0.9, 0.95)[0]})
    params = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
    state = tx.init(params)
    for step, g in enumerate((g1, g2)):
        updates, state = tx.update({"a": jnp.asarray(g), "b": jnp.asarray(g / 2)}, state, params)
        np.testing.assert_allclose(updates["a"], want[step], rtol=1e-5)
        b_want = hand_adam([g1 * 5.0 / 50.0, g2 / 2], 0.1, 0.9, 0.95, 1e-8)[step]
        np.testing.assert_allclose(updates["b"], b_want, rtol=1e-5)
    # The second update tells clipped from unclipped Adam (the first is lr * sign either way).
    assert not np.allclose(want[1], unclipped[1], rtol=1e-2)
    clipped_state = optim.adam(opt_cfg)[0].init(jnp.zeros(2))
    opt_cfg.clip_norm = 0.0  # off: plain Adam, with the same state (checkpoints resume either way)
    tx = optim.adam(opt_cfg)[0]
    assert isinstance(tx.init(jnp.zeros(2))[0], optax.ScaleByAdamState)
    assert jax.tree.structure(tx.init(jnp.zeros(2))) == jax.tree.structure(clipped_state)
    state = tx.init(jnp.zeros(2))
    for step, g in enumerate((g1, g2)):
        updates, state = tx.update(jnp.asarray(g), state)
        np.testing.assert_allclose(updates, unclipped[step], rtol=1e-5)
    with pytest.raises(ConfigError, match="clip_norm"):
        load_config(DIGITS, [("train.clip_norm", "-1")])
