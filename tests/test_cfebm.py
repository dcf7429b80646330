"""CF-EBM (the CF-EBM paper): the Expand block's two ends, the fade schedule by images seen, stage boundaries,
weights carried into a new stage unchanged (both variants), the coarse-to-fine chains' up-sampling,
the smooth hand-over, a run resumed mid-fade and across a stage boundary bit-exactly, and
configs/cfebm_digits.py (shrunk) through the command line."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax import methods, models, ops, schedules
from ebmjax.apps import main
from ebmjax.config import load_config
from ebmjax.errors import ConfigError
from ebmjax.methods import pictures
from ebmjax.models.cfebm import init_all

ROOT = pathlib.Path(__file__).resolve().parents[1]
CFEBM_DIGITS = str(ROOT / "configs" / "cfebm_digits.py")
# configs/cfebm_digits.py at toy size: phases of 4 steps of 16 images (stage 4x4 from step 4, 8x8 from 12).
SHRUNK = ["--config.cfebm.widths=8,8,4", "--config.cfebm.head_width=8", "--config.cfebm.phase_images=64",
          "--config.cfebm.steps=3", "--config.cfebm.sample_steps=4", "--config.train.batch_size=16",
          "--config.train.steps=16", "--config.train.log_every=2", "--config.train.checkpoint_every=2",
          "--config.train.keep_checkpoints=20", "--config.train.warmup_steps=0", "--config.sample.n=8",
          "--config.sample.batch_size=8", "--config.sample.chunk_steps=4", "--no-progress"]


def _cfg(**fields):
    cfg = load_config(CFEBM_DIGITS)
    cfg.cfebm.widths, cfg.cfebm.head_width = (8, 8, 4), 8
    cfg.cfebm.phase_images, cfg.cfebm.steps, cfg.cfebm.sample_steps = 64, 3, 4
    cfg.train.batch_size = 16
    for k, v in fields.items():
        cfg.cfebm[k] = v
    return cfg


# ---------------------------------------------------------------------------------------------
# The network and the schedule
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["xla", "matmul"])
def test_a_down_block_is_conv_swish_conv_pool_swish_plus_the_pooled_skip(impl):
    """ResBlockDown (its second convolution and the pool after it computed as one, the skip pooled
    first) is the original's block written out with stride-1 convolutions and a 2x2 mean pool:
    (swish(pool(conv1(swish(conv0(h))))) + pool(skip(h))) / sqrt(2), swish(x) = x sigmoid(x) / 1.1."""
    from ebmjax.models.cfebm import ResBlockDown
    from ebmjax.models.conv import conv_same_xla

    block = ResBlockDown(6, conv=impl)
    h = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 6, 4))
    v = block.init(jax.random.PRNGKey(1), h)
    v = jax.tree.map(lambda a: a + 0.1, v)  # biases that are not zero
    p = v["params"]

    def conv(name, x):
        return conv_same_xla(x, p[name]["kernel"]) + p[name]["bias"]

    def act(x):
        return x * jax.nn.sigmoid(x) / 1.1

    want = (act(ops.downsample(conv("conv1", act(conv("conv0", h))), 2)) + ops.downsample(conv("skip", h), 2)) / np.sqrt(2)
    np.testing.assert_allclose(block.apply(v, h), want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # about 34 s on 2 CPU cores; the whole suite (CI) runs it
def test_expand_block_at_alpha_0_is_the_old_network_on_the_downsampled_input_and_at_1_the_new_path():
    net = models.ExpandingEnergy(resolutions=(2, 4, 8), widths=(8, 6, 4), head_width=5)
    v = init_all(net, jax.random.PRNGKey(0), 3)
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3))
    for stage, side in ((1, 4), (2, 8)):
        xs = ops.downsample(x, 8 // side)
        np.testing.assert_allclose(np.asarray(net.apply(v, xs, stage, 0.0)),
                                   np.asarray(net.apply(v, ops.downsample(xs, 2), stage - 1, 1.0)), rtol=1e-5, atol=1e-6)
        # At alpha = 1 the old entry (from_rgb of the previous side) no longer matters; in between it does.
        other = jax.tree_util.tree_map_with_path(
            lambda p, a: a + 1.0 if f"from_rgb_{side // 2}" in jax.tree_util.keystr(p) else a, v)
        np.testing.assert_array_equal(np.asarray(net.apply(v, xs, stage, 1.0)), np.asarray(net.apply(other, xs, stage, 1.0)))
        assert not np.allclose(np.asarray(net.apply(v, xs, stage, 0.5)), np.asarray(net.apply(other, xs, stage, 0.5)))
        # Linear in alpha between the two ends (the Expand block mixes features, the rest is shared):
        # not required, but the ends must differ, or the fade would be invisible.
        assert not np.allclose(np.asarray(net.apply(v, xs, stage, 0.0)), np.asarray(net.apply(v, xs, stage, 1.0)))
    # Every stage's layers exist from the start: the parameters' shapes never change.
    assert {k for k in v["params"]} == {"from_rgb_2", "from_rgb_4", "from_rgb_8", "block_2", "block_4", "block_8",
                                        "head_conv", "head_out"}
    with pytest.raises(ConfigError, match="stage 1 reads 4x4 images"):
        net.apply(v, x, 1, 1.0)


@pytest.mark.slow  # about 37 s on 2 CPU cores; the whole suite (CI) runs it
def test_fade_schedule_by_images_seen_and_the_stage_boundaries():
    assert schedules.stage_starts(3, 5) == (0, 5, 15)
    # 64 images per phase at 16 a step: alpha = 16 (step - start) / 64, capped at 1.
    alphas = [float(schedules.fade_alpha(s, 4, 16, 64)) for s in range(4, 11)]
    np.testing.assert_allclose(alphas, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    method = methods.build(_cfg(), (8, 8, 1))
    assert method.phase_boundaries == (4, 12)
    assert [method.phase(s) for s in (0, 3, 4, 11, 12, 100)] == [0, 0, 1, 1, 2, 2]
    # A phase that is not a whole number of batches lasts the next whole number of steps.
    cfg = _cfg(phase_images=70)
    assert methods.build(cfg, (8, 8, 1)).phase_boundaries == (5, 15)
    # The loss reports the stage, its side and alpha of the step.
    params = method.init_params(jax.random.PRNGKey(0))
    batch = jax.random.uniform(jax.random.PRNGKey(1), (16, 8, 8, 1))
    for step, (stage, side, fade) in {0: (0, 2, 1.0), 5: (1, 4, 0.25), 9: (1, 4, 1.0), 13: (2, 8, 0.25)}.items():
        _, (carry, m) = method.loss(params, method.init_carry(None), batch, jax.random.PRNGKey(2), jnp.int32(step),
                                    phase=method.phase(step))
        assert (float(m["stage"]), float(m["side"]), float(m["fade"])) == (stage, side, fade)
        assert int(carry["trained"]) == step + 1


def test_settings_are_checked():
    for fields, says in (({"variant": "both"}, "cfebm.variant must be one of grow, per_stage"),
                         ({"resolutions": (2, 4, 16)}, "double at every stage"),
                         ({"widths": (8, 8)}, "one channel count per resolution"),
                         ({"lr_by_stage": (1e-3,)}, "one learning rate > 0 per resolution")):
        with pytest.raises(ConfigError, match=says):
            methods.build(_cfg(**fields), (8, 8, 1))
    with pytest.raises(ConfigError, match="must end at the image side"):
        methods.build(_cfg(), (16, 16, 1))


@pytest.mark.slow  # about 15 s on 2 CPU cores; the whole suite (CI) runs it
def test_a_class_conditional_cfebm_runs_its_chains_on_the_examples_class():
    # Noise-free, unclipped chains x <- clamp(x - step dE/dx): on E(x, 1) = 2 E(x, 0) they move as on
    # E(x, 0) at twice the step, so the conditional loss at label 1 is twice the unconditional one
    # at step 2 * step, and at label 0 the unconditional one at step.
    fields = {"variant": "grow", "cyclic_noise": False, "noise": 0.0, "grad_clip": None, "energy_l2": 0.0,
              "data_noise": 0.0}
    cond_cfg = _cfg(**fields)
    cond_cfg.model.classes = 2
    cond = methods.build(cond_cfg, (8, 8, 1))
    assert cond.labels == 2
    p = cond.init_params(jax.random.PRNGKey(0))
    head = p["energy"]["params"]["head_out"]
    w, b = head["kernel"][:, :1], head["bias"][:1]
    p["energy"]["params"]["head_out"] = {"kernel": jnp.concatenate([w, 2 * w], 1), "bias": jnp.concatenate([b, 2 * b])}
    plain = {"energy": {"params": {**p["energy"]["params"], "head_out": {"kernel": w, "bias": b}}}}
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 1))
    key, carry = jax.random.PRNGKey(2), cond.init_carry(jax.random.PRNGKey(0))
    step = cond_cfg.cfebm.step_size
    for label, scale in ((0, 1.0), (1, 2.0)):
        y = jnp.full((4,), label, jnp.int32)
        got, _ = cond.loss(p, carry, (x, y), key, jnp.int32(20), phase=2)
        ref = methods.build(_cfg(**fields, step_size=scale * step), (8, 8, 1))
        want, _ = ref.loss(plain, carry, x, key, jnp.int32(20), phase=2)
        np.testing.assert_allclose(got, scale * want, rtol=1e-4, atol=1e-6)
    # Restoration and evaluation: E(x) = -logsumexp_y f(x)[y]; sampling class 1 runs E(x, 1) at every stage.
    e0 = ref.energy(plain, {"trained": jnp.int32(20)})(x)
    np.testing.assert_allclose(cond.energy(p, {"trained": jnp.int32(20)})(x), -jax.nn.logsumexp(
        jnp.stack([-e0, -2 * e0], 1), axis=1), rtol=1e-5)
    # --mode eval's classifier: the finished run's last stage, f(x) = (-E(x), -2 E(x)).
    e_end = ref.energy(plain)(x)
    np.testing.assert_allclose(cond.classifier(p)(x), jnp.stack([-e_end, -2 * e_end], 1), rtol=1e-5)
    cond_cfg.sample.label = 1
    sampler = methods.build(cond_cfg, (8, 8, 1)).sampler(p, {"trained": jnp.int32(20)})
    assert sampler.settings["label"] == 1
    np.testing.assert_allclose(sampler.stages[-1].energy(x), 2 * e0, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Variants: the weights a new stage starts from
# ---------------------------------------------------------------------------------------------


def test_per_stage_networks_start_from_the_previous_stage_and_freeze_the_coarser_ones():
    method = methods.build(_cfg(variant="per_stage"), (8, 8, 1))
    assert sorted(method.networks) == ["energy_2", "energy_4", "energy_8"]
    params = method.init_params(jax.random.PRNGKey(0))
    # Before stage 1 trains, energy_4 holds zeros: stage 1's weights W_1 = W_0 + D_1 are stage 0's.
    assert all(float(jnp.abs(leaf).max()) == 0 for leaf in jax.tree.leaves(params["energy_4"]))
    assert method.frozen(0) == {"energy_4", "energy_8"} and method.frozen(1) == {"energy_2", "energy_8"}
    # Stage 1 at the first step of its fade is stage 0 on the down-sampled image, with stage 0's weights.
    x = jax.random.uniform(jax.random.PRNGKey(1), (3, 8, 8, 1))
    e1 = method.energy(params, {"trained": jnp.int32(5)})  # last step trained: 4, the first of stage 1
    e0 = method.energy(params, {"trained": jnp.int32(4)})  # last step trained: 3, the end of stage 0
    np.testing.assert_allclose(np.asarray(e1(x)), np.asarray(e0(x)), rtol=1e-5, atol=1e-6)


def _train(tmp_path, name, *extra):
    wd = tmp_path / name
    assert main.run(["--config", CFEBM_DIGITS, "--workdir", str(wd), *SHRUNK, "--config.sample.n=0",
                     "--config.cfebm.lr_by_stage=1e-3,1e-3,1e-3", *extra]) == 0
    return wd


def _state(wd, *extra):
    from scale_helpers import overrides

    from ebmjax.train import loop

    cfg = load_config(CFEBM_DIGITS, overrides([*SHRUNK, "--config.sample.n=0", "--config.cfebm.lr_by_stage=1e-3,1e-3,1e-3",
                                               *extra]))
    state, _, _ = loop.load_trained(cfg, wd)
    return jax.tree.map(np.asarray, state)


@pytest.mark.slow  # three short training runs through the CLI; the full suite (see the README) runs it
def test_per_stage_run_resumed_mid_fade_and_across_a_boundary_ends_bitwise_like_an_unbroken_one(tmp_path):
    """Stopped at step 6 (stage 4x4, alpha 0.5) and continued to 16 (past the 8x8 boundary at 12) vs one
    run to 16; per_stage, so the frozen networks and their Adam states are checked too."""
    v = "--config.cfebm.variant=per_stage"
    broken = _train(tmp_path, "broken", v, "--config.train.steps=6")
    first = _state(broken, v, "--config.train.steps=6")
    _train(tmp_path, "broken", v)
    unbroken = _train(tmp_path, "unbroken", v)
    a, b = _state(broken, v), _state(unbroken, v)
    assert int(a.step) == int(b.step) == 16 and int(a.carry["trained"]) == 16
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    # The weights carried into stage 8x8 unchanged: energy_8 (D_2) was zero until step 12 and energy_2,
    # energy_4 stopped moving when their stages ended (frozen, with their Adam states).
    np.testing.assert_array_equal(jax.tree.leaves(first.params["energy_2"])[0], jax.tree.leaves(a.params["energy_2"])[0])
    assert any(float(np.abs(leaf).max()) > 0 for leaf in jax.tree.leaves(a.params["energy_8"]))
    rec = [json.loads(line) for line in (broken / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["stage"]) for r in rec if r["window_steps"] == 2][-3:] == [(12, 1.0), (14, 2.0), (16, 2.0)]


# ---------------------------------------------------------------------------------------------
# Coarse-to-fine chains
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # about 13 s on 2 CPU cores; the whole suite (CI) runs it
def test_sampler_climbs_the_stages_by_exact_upsampling_and_hands_over_while_fading():
    method = methods.build(_cfg(cyclic_noise=False, noise=0.0), (8, 8, 1))
    params = method.init_params(jax.random.PRNGKey(0))
    stable = method.sampler(params, {"trained": jnp.int32(20)})  # stage 8x8, alpha 1
    assert [s.name for s in stable.stages] == ["2x2", "4x4", "8x8"] and stable.steps == 12
    ends = pictures.stage_ends(stable, jax.random.PRNGKey(3), 5, starts=True)
    assert [e.shape[1] for e in ends] == [2, 2, 2, 4, 4, 8, 8]
    for k in (1, 2):  # each stage starts at the previous stage's end, pixels repeated (clamped to [0, 1])
        np.testing.assert_array_equal(ends[1 + 2 * k], np.clip(np.asarray(ops.upsample(ends[2 * k], 2)), 0, 1))
    # Mid-fade (stage 8x8 at alpha 0.25): int(4 * 0.75) = 3 steps at 4x4, then the hand-over's mixing.
    fading = method.sampler(params, {"trained": jnp.int32(14)})
    assert [len(s.temperatures) for s in fading.stages] == [4, 3, 4] and fading.settings["alpha"] == 0.25
    x = jnp.full((2000, 4, 4, 1), 0.8)
    mixed = np.asarray(fading.stages[2].enter(x, jax.random.PRNGKey(4)))
    # c + sqrt(1 - a^2) (x - c) + a (range / 2) z: mean 0.5 + 0.968 * 0.3, std 0.25 * 0.5.
    assert abs(mixed.mean() - (0.5 + np.sqrt(1 - 0.25**2) * 0.3)) < 0.003
    assert abs(mixed.std() - 0.125) < 0.003
    # The samples have the data's shape at every stage: a 4x4 stage's images come back pixel-repeated.
    early = method.sampler(params, {"trained": jnp.int32(10)})
    x4 = jnp.asarray(np.random.default_rng(0).random((3, 4, 4, 1)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(early.finish(x4)), np.asarray(ops.upsample(x4, 2)))


# ---------------------------------------------------------------------------------------------
# The config through the command line
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # every CLI mode on a trained run; the full suite (see the README) runs it
def test_cfebm_digits_config_trains_samples_restores_and_evaluates(tmp_path, capsys):
    cfg = load_config(CFEBM_DIGITS)
    assert cfg.method.name == "cfebm" and cfg.data.name == "digits" and cfg.cfebm.resolutions == (2, 4, 8)
    assert "--config configs/cfebm_digits.py" in pathlib.Path(CFEBM_DIGITS).read_text()
    wd = tmp_path / "run"
    # The other variant than the config's, one network whose layers all keep learning.
    common = ["--config", CFEBM_DIGITS, "--workdir", str(wd), *SHRUNK, "--config.cfebm.variant=grow"]
    assert main.run(common) == 0
    images = np.load(wd / "samples" / "samples.npz")["images"]
    assert images.shape == (8, 8, 8, 1) and images.min() >= 0 and images.max() <= 1 and images.std() > 0
    summary = json.loads((wd / "samples" / "summary.json").read_text())
    assert {"grid.png", "stages.png"} <= set(summary["files"])
    # A checkpoint of an earlier stage samples at its own side, returned at the data's size.
    assert main.run([*common, "--mode", "sample", "--config.sample.checkpoint=6", "--config.sample.seed=1"]) == 0
    early = np.load(wd / "samples_seed1" / "samples.npz")["images"]
    assert early.shape == images.shape
    np.testing.assert_array_equal(early, np.asarray(ops.upsample(ops.downsample(early, 2), 2)))
    for mode in ("inpaint", "denoise"):
        assert main.run([*common, "--mode", mode, "--config.restore.n=4", "--config.restore.n_chains=2"]) == 0
        report = json.loads((wd / mode / "report.json").read_text())
        assert all(np.isfinite(v) for v in report["mean_psnr"].values()), report["mean_psnr"]
    # An earlier stage's checkpoint chains at 4x4: restoring 8x8 images is refused with what to do.
    capsys.readouterr()
    assert main.run([*common, "--mode", "denoise", "--config.sample.checkpoint=6", "--config.restore.n=4"]) == 2
    assert "restores from a checkpoint of its last stage" in capsys.readouterr().err
    assert main.run([*common, "--mode", "eval", "--config.eval.metrics=ood,coverage", "--config.eval.n_samples=16",
                     "--config.eval.ood.n=16", "--config.eval.n_data=64"]) == 0
    report = json.loads((wd / "eval" / "report.json").read_text())
    assert report["metrics"]["ood"]["sets"]["uniform"]["n"] == 16


@pytest.mark.parametrize("name,side,stages", [("cfebm_cifar", 32, 3), ("cfebm_celeba", 64, 4)])
def test_paper_scale_configs_build_their_stages(name, side, stages):
    """configs/cfebm_cifar.py and cfebm_celeba.py (not trained here) build the original's stages, its
    phase length in steps, its per-resolution learning rates, and one loss evaluates (shapes only)."""
    cfg = load_config(str(ROOT / "configs" / f"{name}.py"))
    method = methods.build(cfg, (side, side, 3))
    phase = -(-cfg.cfebm.phase_images // cfg.train.batch_size)
    assert method.phase_boundaries == tuple((2 * s - 1) * phase for s in range(1, stages))
    assert cfg.train.steps >= method.phase_boundaries[-1] + 2 * phase  # the last stage fades in and settles
    assert float(method.learning_rates["energy"](method.phase_boundaries[-1])) == pytest.approx(cfg.cfebm.lr_by_stage[-1])
    assert float(method.learning_rates["energy"](method.phase_boundaries[-1] - 1)) == pytest.approx(cfg.cfebm.lr_by_stage[-2])
    key = jax.random.PRNGKey(0)
    params = jax.eval_shape(method.init_params, key)
    batch = jax.ShapeDtypeStruct((2, side, side, 3), jnp.float32)
    loss, (carry, metrics) = jax.eval_shape(
        lambda p, b, k: method.loss(p, method.init_carry(None), b, k, jnp.int32(0), phase=stages - 1), params, batch, key)
    assert loss.shape == () and carry["trained"].shape == ()
    assert params["energy"]["params"][f"from_rgb_{side}"]["kernel"].shape == (1, 1, 3, cfg.cfebm.widths[-1])


def test_per_stage_networks_learn_at_their_stages_rate_from_their_first_update():
    """cfebm.lr_by_stage (a, b, c) with the per_stage variant: network k is updated only while stage k
    trains, so its Adam count starts at 0 when the stage does; its first update (Adam's first step moves
    every weight by exactly the learning rate, whatever the gradient's size) is at its stage's rate,
    not at stage 0's (the schedule read at the network's own count gave a, a, a here)."""
    rates = (1e-3, 5e-4, 2.5e-4)
    cfg = _cfg(variant="per_stage", lr_by_stage=rates)
    method = methods.build(cfg, (8, 8, 1))
    params = method.init_params(jax.random.key(0))
    opt_state = method.optimizer.init(params)
    grads = jax.tree.map(lambda p: 3.0 * jnp.ones_like(p), params)
    updates, _ = method.optimizer.update(grads, opt_state, params)
    for name, rate in zip(("energy_2", "energy_4", "energy_8"), rates):
        leaves = jax.tree.leaves(updates[name])
        np.testing.assert_allclose(np.concatenate([np.ravel(u) for u in leaves]), -rate, rtol=1e-4, err_msg=name)
    # The grow variant's one network is updated every step: its count is the step.
    grow = methods.build(_cfg(variant="grow", lr_by_stage=rates), (8, 8, 1))
    g_params = grow.init_params(jax.random.key(0))
    g_state = grow.optimizer.init(g_params)
    g_updates, _ = grow.optimizer.update(jax.tree.map(jnp.ones_like, g_params), g_state, g_params)
    np.testing.assert_allclose(jax.tree.leaves(g_updates["energy"])[0], -rates[0], rtol=1e-4)
