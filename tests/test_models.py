"""Tests for ebmjax.models: the MDSM ResNet against a hand-written NumPy forward pass of the PyTorch
layout, the checkpoint import/export, parameter counts from the reference, and the toy MLP."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ebmjax.errors import ConfigError
from ebmjax.models import (
    GridEnergy,
    MDSMResNet,
    MLPEnergy,
    UNetEnergy,
    build_model,
    count_params,
    init_params,
    load_torch_mdsm,
    res12,
    res18,
    to_torch_state_dict,
)
from ebmjax.models.conv import Conv
from ebmjax.models.resnet import mean_pool_2x2

# ---------------------------------------------------------------------------------------------
# Independent NumPy reference of the original PyTorch network (NCHW, float64, OIHW weights).
# ---------------------------------------------------------------------------------------------


def np_conv_same(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """Stride-1 'same' cross-correlation: x (B, C, H, W), w (O, C, k, k) -> (B, O, H, W)."""
    k = w.shape[2]
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    h, wd = x.shape[2:]
    out = np.zeros((x.shape[0], w.shape[0], h, wd))
    for u in range(k):
        for v in range(k):
            out += np.einsum("oc,bchw->bohw", w[:, :, u, v], xp[:, :, u : u + h, v : v + wd])
    if b is not None:
        out += b[None, :, None, None]
    return out


def np_pool(x: np.ndarray) -> np.ndarray:
    return (x[:, :, 0::2, 0::2] + x[:, :, 1::2, 0::2] + x[:, :, 0::2, 1::2] + x[:, :, 1::2, 1::2]) / 4.0


def np_elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def torch_block_names(bps: int) -> list[tuple[str, bool]]:
    names = []
    for s in (1, 2, 3):
        names.append((f"rb{s}", True))
        names += [("rbc" + str(s) * k, False) for k in range(1, bps + 1)]
    return names


def np_energy(sd: dict[str, np.ndarray], x: np.ndarray, bps: int) -> np.ndarray:
    """Energy of the original network for x (B, C, H, W); sd without prefix."""
    g = {k: v.astype(np.float64) for k, v in sd.items()}
    h = np_conv_same(x.astype(np.float64), g["conv1.conv.weight"], g["conv1.conv.bias"])
    for name, down in torch_block_names(bps):
        wrap = ".conv" if down else ""
        r = np_conv_same(np_elu(h), g[f"{name}.conv_1.conv.weight"], None)
        r = np_conv_same(np_elu(r), g[f"{name}.conv_2.conv{wrap}.weight"], g[f"{name}.conv_2.conv{wrap}.bias"])
        s_in = np_pool(h) if down else h
        s = np_conv_same(s_in, g[f"{name}.conv_shortcut.conv{wrap}.weight"], g[f"{name}.conv_shortcut.conv{wrap}.bias"])
        h = s + (np_pool(r) if down else r)
    f = h.reshape(h.shape[0], -1)  # torch view(B, -1) on NCHW
    lin = lambda n, z: z @ g[f"{n}.weight"].T[:, 0] + g[f"{n}.bias"][0]
    return lin("ln1", f) * lin("ln2", f) + lin("lq", f * f)


def make_state_dict(
    rng: np.random.Generator, width: int, bps: int, channels: int, hw: tuple[int, int], prefix: str = ""
) -> dict[str, np.ndarray]:
    """A random state dict in the PyTorch MDSM layout (keys as listed in REFERENCE), with bn tensors."""

    def u(shape, fan_in):
        b = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-b, b, size=shape).astype(np.float32)

    sd: dict[str, np.ndarray] = {}
    sd["conv1.conv.weight"] = u((width, channels, 3, 3), channels * 9)
    sd["conv1.conv.bias"] = u((width,), channels * 9)
    cin = width
    size = np.array(hw)
    for name, down in torch_block_names(bps):
        cout = 2 * cin if down else cin
        wrap = ".conv" if down else ""
        sd[f"{name}.conv_shortcut.conv{wrap}.weight"] = u((cout, cin, 1, 1), cin)
        sd[f"{name}.conv_shortcut.conv{wrap}.bias"] = u((cout,), cin)
        sd[f"{name}.conv_1.conv.weight"] = u((cin, cin, 3, 3), cin * 9)
        sd[f"{name}.conv_2.conv{wrap}.weight"] = u((cout, cin, 3, 3), cin * 9)
        sd[f"{name}.conv_2.conv{wrap}.bias"] = u((cout,), cin * 9)
        for bn, c in (("bn1", cin), ("bn2", cin)):  # unused LayerNorm tensors of the original
            sd[f"{name}.{bn}.weight"] = np.ones((c, *size), np.float32)
            sd[f"{name}.{bn}.bias"] = np.zeros((c, *size), np.float32)
        if down:
            size = size // 2
        cin = cout
    feat = cin * int(np.prod(size))
    for n in ("ln1", "ln2", "lq"):
        sd[f"{n}.weight"] = u((1, feat), feat)
        sd[f"{n}.bias"] = u((1,), feat)
    return {prefix + k: v for k, v in sd.items()}


CASES = [
    # (blocks_per_stage, channels, (H, W), prefix)
    (1, 1, (8, 8), "module."),
    (2, 3, (16, 16), ""),
    (2, 1, (8, 16), "module."),
]


@pytest.mark.slow  # about 12 s on 2 CPU cores; the whole suite (CI) runs it
@pytest.mark.parametrize("bps,channels,hw,prefix", CASES)
def test_import_matches_numpy_reference(bps, channels, hw, prefix):
    rng = np.random.default_rng(bps * 10 + channels)
    sd = make_state_dict(rng, 4, bps, channels, hw, prefix)
    model, params = load_torch_mdsm(sd)
    assert (model.blocks_per_stage, model.width) == (bps, 4)

    x_nchw = rng.uniform(0.0, 1.0, size=(3, channels, *hw))
    clean = {k.removeprefix("module."): v for k, v in sd.items()}
    want = np_energy(clean, x_nchw, bps)
    x_nhwc = jnp.asarray(x_nchw.transpose(0, 2, 3, 1), jnp.float32)
    got = np.asarray(jax.jit(model.apply)(params, x_nhwc))
    assert got.shape == (3,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())

    # Scores: JAX input gradient vs central differences of the float64 reference.
    grad = np.asarray(jax.jit(jax.grad(lambda x: model.apply(params, x).sum()))(x_nhwc))
    eps = 1e-5
    for b, c, i, j in [(0, 0, 0, 0), (1, channels - 1, hw[0] - 1, 2), (2, 0, 3, hw[1] - 3)]:
        xp, xm = x_nchw.copy(), x_nchw.copy()
        xp[b, c, i, j] += eps
        xm[b, c, i, j] -= eps
        fd = (np_energy(clean, xp, bps)[b] - np_energy(clean, xm, bps)[b]) / (2 * eps)
        np.testing.assert_allclose(grad[b, i, j, c], fd, rtol=1e-3, atol=1e-3 * np.abs(grad).max())


def test_round_trip_and_reference_keys():
    # Res18 layout at width 8 on 32x32x3, built from shapes only (no compile needed).
    model = res18(width=8)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)
    sd = to_torch_state_dict(params)

    blocks = ["rb1", "rbc1", "rbc11", "rb2", "rbc2", "rbc22", "rb3", "rbc3", "rbc33"]
    want = {"conv1.conv.weight", "conv1.conv.bias"}
    for n in ("ln1", "ln2", "lq"):
        want |= {f"{n}.weight", f"{n}.bias"}
    for b in blocks:
        w = ".conv" if b.startswith("rb") and not b.startswith("rbc") else ""
        want |= {f"{b}.conv_shortcut.conv{w}.weight", f"{b}.conv_shortcut.conv{w}.bias", f"{b}.conv_1.conv.weight"}
        want |= {f"{b}.conv_2.conv{w}.weight", f"{b}.conv_2.conv{w}.bias"}
    assert set(sd) == want
    assert sd["ln1.weight"].shape == (1, 16 * 8 * 8)
    assert sd["rb1.conv_shortcut.conv.conv.weight"].shape == (16, 8, 1, 1)
    assert sd["rbc33.conv_2.conv.weight"].shape == (64, 64, 3, 3)
    assert sd["rb2.conv_1.conv.weight"].shape == (16, 16, 3, 3)
    # OIHW <-> HWIO: torch weight[o, i, u, v] == flax kernel[u, v, i, o].
    k = params["params"]["rb2"]["conv_2"]["kernel"]
    assert sd["rb2.conv_2.conv.conv.weight"][5, 3, 0, 2] == k[0, 2, 3, 5]

    model2, params2 = load_torch_mdsm({"state_dict": to_torch_state_dict(params, prefix="module.")})
    assert (model2.blocks_per_stage, model2.width) == (2, 8)
    jax.tree.map(np.testing.assert_array_equal, params, params2)


def test_import_accepts_tensor_like_values():
    class FakeTensor:  # the conversion path used for torch tensors, without torch
        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.a

    sd = make_state_dict(np.random.default_rng(1), 2, 1, 1, (8, 8))
    _, p1 = load_torch_mdsm(sd)
    _, p2 = load_torch_mdsm({k: FakeTensor(v) for k, v in sd.items()})
    jax.tree.map(np.testing.assert_array_equal, p1, p2)


def test_import_errors_name_offending_keys():
    sd = make_state_dict(np.random.default_rng(2), 2, 1, 1, (8, 8))
    missing = dict(sd)
    del missing["rb2.conv_1.conv.weight"]
    with pytest.raises(ConfigError, match=r"missing keys: rb2\.conv_1\.conv\.weight"):
        load_torch_mdsm(missing)

    bad = dict(sd)
    bad["rbc3.conv_2.conv.bias"] = np.zeros((5,), np.float32)
    with pytest.raises(ConfigError, match=r"wrong shapes: rbc3\.conv_2\.conv\.bias \(5,\) \(expected \(16,\)\)"):
        load_torch_mdsm(bad)

    extra = dict(sd)
    extra["rb1.something.weight"] = np.zeros((2,), np.float32)
    with pytest.raises(ConfigError, match=r"unexpected keys: rb1\.something\.weight"):
        load_torch_mdsm(extra)

    with pytest.raises(ConfigError, match="conv1.conv.weight"):
        load_torch_mdsm({"foo": np.zeros(3)})


def test_path_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="no checkpoint file"):
        load_torch_mdsm(tmp_path / "missing.pt")
    f = tmp_path / "ckpt.pt"
    f.write_bytes(b"not a checkpoint")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ConfigError, match="pip install torch"):
        load_torch_mdsm(f)


def test_load_from_torch_file(tmp_path):
    torch = pytest.importorskip("torch")
    sd = make_state_dict(np.random.default_rng(3), 2, 2, 3, (8, 8), prefix="module.")
    path = tmp_path / "energy.pt"
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
    model, params = load_torch_mdsm(str(path))
    x = np.random.default_rng(4).uniform(size=(2, 3, 8, 8))
    clean = {k.removeprefix("module."): v for k, v in sd.items()}
    got = np.asarray(jax.jit(model.apply)(params, jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32)))
    np.testing.assert_allclose(got, np_energy(clean, x, 2), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The Flax model itself.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ctor,shape,want", [(res18, (32, 32, 3), 62_339_075), (res12, (32, 32, 1), 9_060_483)])
def test_parameter_counts_match_reference(ctor, shape, want):
    model = ctor()
    shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *shape), jnp.float32))
    assert count_params(shapes) == want


def test_mean_pool():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    want = np.array([[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(np.asarray(mean_pool_2x2(x))[0, :, :, 0], want)


def test_init_is_pytorch_default():
    model = res12(width=8)
    # An 'rbg' key only because it compiles ~6x faster on CPU than threefry; bounds do not depend on it.
    params = init_params(model, jax.random.key(0, impl="rbg"), (8, 8, 1))["params"]
    checks = [
        (params["conv1"]["kernel"], 1 * 9),
        (params["conv1"]["bias"], 1 * 9),
        (params["rb2"]["conv_2"]["kernel"], 16 * 9),
        (params["rb2"]["conv_2"]["bias"], 16 * 9),
        (params["rbc3"]["conv_shortcut"]["kernel"], 64),
        (params["lq"]["kernel"], 64),
    ]
    for leaf, fan_in in checks:
        bound = 1.0 / np.sqrt(fan_in)
        a = np.asarray(leaf)
        assert a.dtype == np.float32
        assert np.abs(a).max() <= bound
        if a.size >= 1000:  # uniform: spread fills the interval, variance bound^2/3
            assert np.abs(a).max() > 0.95 * bound
            np.testing.assert_allclose(a.var(), bound**2 / 3, rtol=0.1)
    assert np.abs(np.asarray(params["rb1"]["conv_shortcut"]["bias"])).min() > 0  # biases are not zero
    assert "bias" not in params["rbc1"]["conv_1"]


def test_input_shape_errors():
    model = res12(width=2)
    with pytest.raises(ConfigError, match="multiples of 8"):
        jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32))
    with pytest.raises(ConfigError, match="NHWC"):
        jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((28, 28, 1), jnp.float32))


def test_bfloat16_compute_is_close_and_returns_float32():
    model32, params = load_torch_mdsm(make_state_dict(np.random.default_rng(5), 4, 1, 1, (8, 8)))
    x = jnp.asarray(np.random.default_rng(8).uniform(size=(4, 8, 8, 1)), jnp.float32)
    e32 = jax.jit(model32.apply)(params, x)
    e16 = jax.jit(MDSMResNet(blocks_per_stage=1, width=4, dtype=jnp.bfloat16).apply)(params, x)
    assert e16.dtype == jnp.float32
    assert jax.tree.leaves(params)[0].dtype == jnp.float32
    np.testing.assert_allclose(e16, e32, atol=0.05 * float(jnp.abs(e32).max()))


@pytest.mark.slow  # about 19 s on 2 CPU cores; the whole suite (CI) runs it
def test_second_derivatives_through_score():
    """MDSM differentiates the score again (w.r.t. input and parameters); check both against
    central differences, in float64 so that the differences are exact to ~1e-8."""
    with jax.enable_x64(True):
        _, params = load_torch_mdsm(make_state_dict(np.random.default_rng(6), 4, 1, 1, (8, 8)))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        model = MDSMResNet(blocks_per_stage=1, width=4, dtype=jnp.float64)
        rng = np.random.default_rng(7)  # NumPy draws: eager threefry would compile once per shape
        x = jnp.asarray(rng.uniform(size=(2, 8, 8, 1)))
        v = jnp.asarray(rng.normal(size=x.shape))
        score_of = lambda p, y: jax.grad(lambda z: model.apply(p, z).sum())(y)

        hvp = jax.jit(lambda y, t: jax.jvp(lambda z: score_of(params, z), (y,), (t,))[1])
        score = jax.jit(lambda y: score_of(params, y))
        eps = 1e-5
        fd = (score(x + eps * v) - score(x - eps * v)) / (2 * eps)
        got = hvp(x, v)
        np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-6 * float(jnp.abs(got).max()))

        # A score-matching style loss: its parameter gradient along a random direction dp.
        loss = jax.jit(lambda p: jnp.sum(score_of(p, x) * v))
        grad = jax.jit(jax.grad(lambda p: jnp.sum(score_of(p, x) * v)))(params)
        # Directions and shifts in NumPy: eager jnp ops would each compile once per shape.
        p_np = jax.tree.map(np.asarray, params)
        dp = jax.tree.map(lambda a: rng.normal(size=a.shape), p_np)
        shift = lambda t: jax.tree.map(lambda a, d: a + t * d, p_np, dp)
        directional = sum(np.vdot(np.asarray(g), d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(dp)))
        fd = (loss(shift(eps)) - loss(shift(-eps))) / (2 * eps)
        np.testing.assert_allclose(float(directional), float(fd), rtol=1e-6)
        # Every parameter reaches the score except lq's bias (a constant energy offset).
        nonzero = jax.tree.map(lambda g: bool(np.abs(np.asarray(g)).max() > 0), grad["params"])
        assert nonzero["lq"]["bias"] is False
        nonzero["lq"]["bias"] = True
        assert all(jax.tree.leaves(nonzero))


# ---------------------------------------------------------------------------------------------
# Toy MLP and config construction.
# ---------------------------------------------------------------------------------------------


def test_mlp_matches_numpy_and_flattens():
    model = MLPEnergy(hidden=(5, 3))
    x = np.random.default_rng(0).normal(size=(4, 2, 2))
    params = init_params(model, jax.random.key(0), (2, 2))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)["params"]
    softplus = lambda z: np.logaddexp(0.0, z)
    h = x.reshape(4, 4)
    h = softplus(h @ p["dense0"]["kernel"] + p["dense0"]["bias"])
    h = softplus(h @ p["dense1"]["kernel"] + p["dense1"]["bias"])
    want = (h @ p["out"]["kernel"] + p["out"]["bias"])[:, 0]
    got = model.apply(params, jnp.asarray(x, jnp.float32))
    assert got.shape == (4,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_mlp_linear_energy_has_constant_score():
    model = MLPEnergy(hidden=())
    params = init_params(model, jax.random.key(0), (2,))
    x = jax.random.normal(jax.random.key(1), (6, 2))
    score = jax.grad(lambda y: model.apply(params, y).sum())(x)
    w = params["params"]["out"]["kernel"][:, 0]
    np.testing.assert_allclose(score, jnp.broadcast_to(w, (6, 2)), rtol=1e-6)


def test_build_model_and_counts():
    cfg = ml_collections.ConfigDict(
        {"name": "mdsm_resnet", "width": 4, "blocks_per_stage": 1, "hidden": (8,), "dtype": "float32", "conv": "auto"}
    )
    model = build_model(cfg)
    assert isinstance(model, MDSMResNet) and (model.width, model.blocks_per_stage) == (4, 1)
    assert build_model({**cfg.to_dict(), "dtype": "bfloat16"}).dtype == jnp.bfloat16

    cfg.name = "mlp"
    mlp = build_model(cfg)
    assert isinstance(mlp, MLPEnergy) and mlp.hidden == (8,)
    params = init_params(mlp, jax.random.key(0), (2,))
    assert isinstance(params, dict)
    assert count_params(params) == (2 * 8 + 8) + (8 + 1)

    cfg.name = "transformer"
    with pytest.raises(ConfigError, match="mdsm_resnet, convnet, gridnet, unet, mlp, gaussian"):
        build_model(cfg)
    cfg.name = "mlp"
    cfg.dtype = "float16"
    with pytest.raises(ConfigError, match="float32, bfloat16"):
        build_model(cfg)
    cfg.dtype = "float32"
    cfg.hidden = (8, 0)
    with pytest.raises(ConfigError, match="hidden"):
        build_model(cfg)


def test_gridnet_is_the_multigrid_energy_for_any_method():
    """model.name = "gridnet" builds GridEnergy from model.widths / kernel / strided_layers: the same
    function as the multigrid method's network, on sides no pooling net accepts (28x28, 3 strided
    layers: 28 -> 14 -> 7 -> 4), and a classifier with model.classes."""
    cfg = {"name": "gridnet", "widths": (4, 8, 8), "kernel": 3, "strided_layers": 3, "dtype": "float32",
           "conv": "auto", "classes": 0}
    net = build_model(cfg)
    want = GridEnergy(widths=(4, 8, 8), kernel=3, strided=3)
    assert isinstance(net, GridEnergy) and net == want
    params = init_params(net, jax.random.key(0), (28, 28, 1))
    x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
    np.testing.assert_array_equal(net.apply(params, x), want.apply(params, x))
    # Parameters: three 3x3 convs with biases and a read-out from the 4x4x8 map left by three strides.
    assert count_params(params) == (9 * 4 + 4) + (9 * 4 * 8 + 8) + (9 * 8 * 8 + 8) + (4 * 4 * 8 + 1)
    logits = build_model({**cfg, "classes": 10})
    assert logits.apply(init_params(logits, jax.random.key(0), (28, 28, 1)), x).shape == (3, 10)
    with pytest.raises(ConfigError, match="strided_layers"):
        build_model({**cfg, "strided_layers": -1})
    with pytest.raises(ConfigError, match="kernel"):
        build_model({**cfg, "kernel": 0})


def test_unet_energy_is_the_scaled_residual_and_meets_the_mdsm_optimum():
    """model.name = "unet": E(x) = |x - U(x)|^2 / (2 s^2) with U's read-out initialised to zero, so
    at initialisation E = |x|^2 / (2 s^2) and dE/dx = x / s^2 exactly. With a constant read-out
    b (kernel zero) U(x) = b, the denoiser of data that are all the constant image b: with s = sigma0
    MDSM's residual x - x~ + sigma0^2 dE/dx(x~) = b - x~ + (x~ - b) vanishes at every noise level,
    a known optimum of the loss (loss and its parameter gradient zero)."""
    from ebmjax.losses import mdsm_loss, score

    cfg = {"name": "unet", "widths": (4, 8), "scale": 0.1, "dtype": "float32", "conv": "auto", "classes": 0}
    net = build_model(cfg)
    assert isinstance(net, UNetEnergy) and net.widths == (4, 8) and net.scale == 0.1
    params = init_params(net, jax.random.key(0), (8, 8, 1))
    # Down: 3x3 1->4, 4->4; 8->8 at half size. Up: 3x3 (8+4)->4, 4->4. Read-out 1x1 4->1.
    assert count_params(params) == (9 * 4 + 4) + (9 * 16 + 4) + (9 * 32 + 8) + (9 * 64 + 8) \
        + (9 * 48 + 4) + (9 * 16 + 4) + (4 + 1)
    x = jax.random.uniform(jax.random.key(1), (3, 8, 8, 1))
    # Compiled, as a user's training step would be: op by op, the double back-prop below took 9 s.
    energy = jax.jit(net.apply)
    np.testing.assert_allclose(energy(params, x), jnp.sum(x**2, axis=(1, 2, 3)) / 0.02, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda v: score(lambda u: net.apply(params, u), v))(x), x / 0.01, rtol=1e-5)

    b = 0.3
    const = jax.tree.map(lambda a: a, params)
    const["params"]["out"]["bias"] = jnp.full_like(params["params"]["out"]["bias"], b)
    np.testing.assert_allclose(energy(const, x), jnp.sum((x - b) ** 2, axis=(1, 2, 3)) / 0.02, rtol=1e-5)
    data = jnp.full((16, 8, 8, 1), b)
    sigmas = jnp.geomspace(0.1, 3.0, 16)
    loss = lambda p: mdsm_loss(lambda v: net.apply(p, v), data, jax.random.key(2), sigmas, sigma0=0.1)  # noqa: E731
    value_and_grad = jax.jit(jax.value_and_grad(loss))
    value, grads = value_and_grad(const)
    assert float(value) < 1e-8
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) < 1e-4
    assert float(value_and_grad(params)[0]) > 1.0  # U = 0 is no denoiser of these data

    with pytest.raises(ConfigError, match="multiples of 2"):
        net.apply(params, jnp.zeros((1, 7, 7, 1)))
    with pytest.raises(ConfigError, match="model.scale"):
        build_model({**cfg, "scale": 0})
    with pytest.raises(ConfigError, match="model.widths"):
        build_model({**cfg, "widths": ()})


def test_swish_is_x_sigmoid_x_to_its_second_derivative():
    """The models' swish, written with tanh for speed, is x sigmoid(x), and its first and second
    derivatives (which MDSM's loss differentiates through) are the known formulas
    s + x s (1 - s) and s (1 - s) (2 + x (1 - 2 s)), s = sigmoid(x), from -30 to 30, to float32
    rounding (relative to max(|value|, 1))."""
    from ebmjax.models.convnet import ACTIVATIONS, swish

    x = np.linspace(-30.0, 30.0, 2001)
    s = 1.0 / (1.0 + np.exp(-x))
    want = [x * s, s + x * s * (1 - s), s * (1 - s) * (2 + x * (1 - 2 * s))]
    d1 = jax.grad(swish)
    got = [swish(jnp.asarray(x, jnp.float32)), jax.vmap(d1)(jnp.asarray(x, jnp.float32)),
           jax.vmap(jax.grad(d1))(jnp.asarray(x, jnp.float32))]
    for g, w in zip(got, want):  # float32 rounding: nn.swish's own errors are up to 2e-6 here
        assert np.max(np.abs(np.asarray(g, np.float64) - w) / np.maximum(np.abs(w), 1.0)) < 5e-6
    assert ACTIVATIONS["swish"] is swish


def _grads_along(c, conv, x, k):
    """The gradients (input, kernel) of sum(c * conv(x, k)), i.e. conv's VJP with cotangent c, compiled
    (op by op, each shape's gradients took seconds)."""
    return jax.jit(jax.grad(lambda x, k: jnp.sum(c * conv(x, k)), argnums=(0, 1)))(x, k)


@pytest.mark.parametrize("impl", ["xla", "matmul"])
def test_a_convolution_of_an_up_sampled_map_is_computed_on_the_small_map(impl):
    """conv_same_upsampled(x, k) is the 3x3 'same' convolution of x up-sampled 2x (nearest), checked
    against the NumPy reference on the up-sampled copy, for either convolution path and for maps
    of odd and even sides and of one to four pixels (those by conv_small_map, with no convolution
    primitive), with its gradients (input and kernel) those of the direct form; the U-Net's up
    levels use it, and the benchmark's FLOP count still counts them as convolutions of the
    concatenated maps."""
    from ebmjax import ops
    from ebmjax.apps.bench import forward_flops
    from ebmjax.models.conv import conv_same, conv_same_upsampled

    k = jax.random.normal(jax.random.key(1), (3, 3, 4, 6))
    for h, w in [(3, 5), (4, 4), (2, 2), (1, 1), (1, 2), (3, 1)]:
        x = jax.random.normal(jax.random.key(10 * h + w), (2, h, w, 4))
        up = np.repeat(np.repeat(np.asarray(x, np.float64), 2, axis=1), 2, axis=2)
        want = np_conv_same(up.transpose(0, 3, 1, 2), np.asarray(k, np.float64).transpose(3, 2, 0, 1), None)
        got = conv_same_upsampled(x, k, impl)
        assert got.shape == (2, 2 * h, 2 * w, 6)
        np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-4)
        c = jax.random.normal(jax.random.key(2), got.shape)  # a random cotangent
        fast = _grads_along(c, lambda x, k: conv_same_upsampled(x, k, impl), x, k)
        slow = _grads_along(c, lambda x, k: conv_same(ops.upsample(x, 2), k, impl), x, k)
        for a, b in zip(fast, slow):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))
        prims = str(jax.make_jaxpr(lambda x: conv_same_upsampled(x, k, impl))(x))
        assert ("conv_general_dilated" in prims) == (h * w > 4 and impl == "xla"), (h, w, impl)
    x = jnp.ones((2, 3, 5, 4))
    with pytest.raises(ConfigError, match="3x3"):
        conv_same_upsampled(x, jnp.ones((5, 5, 4, 6)), impl)
    # widths (4, 8) on 8x8: down 64 px x 9 x (1*4 + 4*4), 16 px x 9 x (4*8 + 8*8); up 64 px x 9 x
    # ((8 + 4)*4 + 4*4); read-out 64 px x 4. Two FLOPs per multiply-add.
    flops = 2 * (64 * 9 * 20 + 16 * 9 * 96 + 64 * 9 * 64 + 64 * 4)
    assert forward_flops(UNetEnergy(widths=(4, 8), conv=impl), (8, 8, 1)) == flops


@pytest.mark.parametrize("impl", ["xla", "matmul"])
def test_convolutions_of_maps_of_at_most_four_pixels_need_no_convolution_primitive_on_every_path(impl):
    """A map of at most 4 pixels (the 2x2 bottom of a five-level U-Net on 32x32) is convolved by
    conv_small_map on both paths (products over the taps that reach an output; XLA:CPU's
    convolution ran it 3x slower): the values are the NumPy convolution's and the gradients
    lax.conv's, and no convolution primitive is left in the computation; a 3x3 map still takes the
    path asked for."""
    from ebmjax.models.conv import conv_same, conv_same_xla

    k = jax.random.normal(jax.random.key(1), (3, 3, 5, 7))
    for h, w in [(1, 1), (1, 3), (2, 2), (4, 1), (3, 3)]:
        x = jax.random.normal(jax.random.key(h * 10 + w), (2, h, w, 5))
        want = np_conv_same(np.asarray(x, np.float64).transpose(0, 3, 1, 2),
                            np.asarray(k, np.float64).transpose(3, 2, 0, 1), None).transpose(0, 2, 3, 1)
        np.testing.assert_allclose(conv_same(x, k, impl), want, rtol=1e-5, atol=1e-4)
        c = jax.random.normal(jax.random.key(3), want.shape)  # a random cotangent
        got = _grads_along(c, lambda x, k: conv_same(x, k, impl), x, k)
        ref = _grads_along(c, conv_same_xla, x, k)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))
        prims = str(jax.make_jaxpr(lambda x: conv_same(x, k, impl))(x))
        assert ("conv_general_dilated" in prims) == (h * w > 4 and impl == "xla"), (h, w, impl)


@pytest.mark.parametrize("impl", ["xla", "matmul"])
def test_a_strided_convolution_computes_only_the_pixels_it_keeps(impl):
    """conv_same(x, k, impl, stride=s) is the stride-1 'same' convolution read at every s-th pixel
    (the NumPy reference sliced [::s, ::s]) on odd and even sides, 1x1 and 3x3 kernels and maps of
    one to four pixels, with the gradients of the sliced form; and it computes only those outputs:
    the product has B ceil(H/s) ceil(W/s) rows, XLA's convolution the stride."""
    from ebmjax.models.conv import conv_same

    for (h, w), ks, s in [((7, 7), 3, 2), ((8, 6), 3, 2), ((9, 10), 3, 3), ((5, 5), 1, 2), ((4, 4), 3, 2),
                          ((2, 2), 3, 2), ((1, 1), 3, 2)]:
        k = jax.random.normal(jax.random.key(ks), (ks, ks, 3, 5))
        x = jax.random.normal(jax.random.key(10 * h + w), (2, h, w, 3))
        full = np_conv_same(np.asarray(x, np.float64).transpose(0, 3, 1, 2),
                            np.asarray(k, np.float64).transpose(3, 2, 0, 1), None).transpose(0, 2, 3, 1)
        got = conv_same(x, k, impl, stride=s)
        assert got.shape == (2, -(-h // s), -(-w // s), 5)
        np.testing.assert_allclose(got, full[:, ::s, ::s], rtol=1e-5, atol=1e-4)
        c = jax.random.normal(jax.random.key(4), got.shape)  # a random cotangent
        fast = _grads_along(c, lambda x, k: conv_same(x, k, impl, stride=s), x, k)
        slow = _grads_along(c, lambda x, k: conv_same(x, k, impl)[:, ::s, ::s], x, k)
        for a, b in zip(fast, slow):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))
        if h * w > 4 and ks > 1:
            eqns = jax.make_jaxpr(lambda x: conv_same(x, k, impl, stride=s))(x).eqns
            if impl == "xla":
                (conv,) = [e for e in eqns if e.primitive.name == "conv_general_dilated"]
                assert tuple(conv.params["window_strides"]) == (s, s)
            else:
                (dot,) = [e for e in eqns if e.primitive.name == "dot_general"]
                assert dot.invars[0].aval.shape[0] == 2 * (-(-h // s)) * (-(-w // s))
    with pytest.raises(ConfigError, match="stride"):
        conv_same(x, k, impl, stride=0)


@pytest.mark.parametrize("impl", ["xla", "matmul"])
def test_a_convolution_followed_by_a_mean_pool_is_one_convolution_at_the_pooled_pixels(impl):
    """conv_same_pooled(x, k) is mean_pool_2x2 of the 'same' convolution (NumPy reference) for 1x1,
    3x3 and 5x5 kernels on maps down to 2x2, with that form's gradients (input and kernel); a 3x3
    kernel becomes one 4x4 kernel read at stride 2 (its taps the 3x3 kernel averaged over the pool's
    four shifts), and Conv(pool=True) is that with a bias, its cost in the benchmark the products it
    runs. Odd sides and even kernels are refused."""
    from ebmjax.models.conv import conv_same, conv_same_pooled, pooled_conv_kernel

    for (h, w), ks in [((8, 6), 3), ((4, 4), 3), ((2, 2), 3), ((6, 4), 1), ((10, 8), 5)]:
        k = jax.random.normal(jax.random.key(ks), (ks, ks, 3, 5))
        x = jax.random.normal(jax.random.key(10 * h + w), (2, h, w, 3))
        full = np_conv_same(np.asarray(x, np.float64).transpose(0, 3, 1, 2),
                            np.asarray(k, np.float64).transpose(3, 2, 0, 1), None)
        want = np_pool(full).transpose(0, 2, 3, 1)
        got = conv_same_pooled(x, k, impl)
        assert got.shape == (2, h // 2, w // 2, 5)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
        c = jax.random.normal(jax.random.key(4), got.shape)  # a random cotangent
        fast = _grads_along(c, lambda x, k: conv_same_pooled(x, k, impl), x, k)
        slow = _grads_along(c, lambda x, k: mean_pool_2x2(conv_same(x, k, impl)), x, k)
        for a, b in zip(fast, slow):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))
    k = np.arange(9.0).reshape(3, 3, 1, 1)
    want = np.zeros((4, 4))
    for a in (0, 1):
        for b in (0, 1):
            want[a:a + 3, b:b + 3] += k[:, :, 0, 0] / 4
    np.testing.assert_allclose(pooled_conv_kernel(jnp.asarray(k))[:, :, 0, 0], want)
    conv = Conv(5, (3, 3), pool=True, impl=impl)
    params = conv.init(jax.random.key(0), x)
    params = jax.tree.map(lambda a: a + 0.5, params)  # a bias that is not zero
    kernel, bias = params["params"]["kernel"], params["params"]["bias"]
    np.testing.assert_allclose(conv.apply(params, x), mean_pool_2x2(conv_same(x, kernel, impl) + bias),
                               rtol=1e-5, atol=1e-4)
    # the benchmark counts the products run: 16 taps at each of the 4 x 3 pooled pixels
    from ebmjax.apps.bench import layer_costs
    (cost,) = layer_costs(conv, (8, 6, 3))
    assert cost.macs == 4 * 3 * 16 * 3 * 5
    with pytest.raises(ConfigError, match="even sides"):
        conv_same_pooled(jnp.ones((1, 5, 4, 3)), k, impl)
    with pytest.raises(ConfigError, match="odd-sided"):
        conv_same_pooled(jnp.ones((1, 4, 4, 3)), jnp.ones((2, 2, 3, 5)), impl)


def test_the_grid_energy_is_the_stride_one_network_read_at_every_other_pixel():
    """GridEnergy's strided layers (computed only where they are read) give the energy of the
    network written with stride-1 convolutions sliced [::2, ::2] after each strided layer, in NumPy:
    28 -> 14 -> 7 -> 4 over three strided layers, then a fourth layer unstrided; and the benchmark's
    FLOP count counts the outputs computed, not the stride-1 map's."""
    from ebmjax.apps.bench import forward_flops

    net = GridEnergy(widths=(4, 8, 8, 6), kernel=3, strided=3)
    params = init_params(net, jax.random.key(0), (28, 28, 1))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [0.3 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)])
    x = jax.random.uniform(jax.random.key(2), (3, 28, 28, 1))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)["params"]
    h = np.asarray(x, np.float64).transpose(0, 3, 1, 2)
    for i in range(4):
        h = np_conv_same(h, p[f"conv{i}"]["kernel"].transpose(3, 2, 0, 1), p[f"conv{i}"]["bias"])
        h = h[:, :, ::2, ::2] if i < 3 else h
        h = np.where(h > 0, h, 0.2 * h)
    flat = h.transpose(0, 2, 3, 1).reshape(3, -1)
    want = flat @ p["out"]["kernel"][:, 0] + p["out"]["bias"][0]
    np.testing.assert_allclose(net.apply(params, x), want, rtol=1e-5, atol=1e-4)
    macs = 14 * 14 * 9 * 4 + 7 * 7 * 9 * 4 * 8 + 4 * 4 * 9 * 8 * 8 + 4 * 4 * 9 * 8 * 6 + 4 * 4 * 6
    assert forward_flops(net, (28, 28, 1)) == 2 * macs


@pytest.mark.parametrize("name", ["unet", "mdsm_resnet"])
def test_the_pytorch_twins_compute_the_same_energies_and_scores(name):
    """``--compare-torch`` times ebmjax against ``torch_twin``: the same network with the same weights
    must give the same energies and input gradients (weights randomised, so U is not zero)."""
    torch = pytest.importorskip("torch")
    from ebmjax.models.torch_twin import torch_twin

    cfg = ml_collections.ConfigDict({"name": name, "widths": (4, 8, 8), "scale": 0.2, "width": 4,
                                     "blocks_per_stage": 1, "dtype": "float32", "conv": "auto", "classes": 0})
    net = build_model(cfg)
    params = init_params(net, jax.random.key(0, impl="rbg"), (8, 8, 1))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [0.3 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)])
    x = np.asarray(jax.random.uniform(jax.random.key(2), (3, 8, 8, 1)))
    energies = np.asarray(net.apply(params, jnp.asarray(x)))
    g = np.asarray(jax.grad(lambda v: net.apply(params, v).sum())(jnp.asarray(x)))
    twin = torch_twin(cfg, params)
    xt = torch.from_numpy(np.array(x.transpose(0, 3, 1, 2))).requires_grad_(True)
    et = twin(xt)
    (gt,) = torch.autograd.grad(et.sum(), xt)
    np.testing.assert_allclose(et.detach().numpy(), energies, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gt.numpy().transpose(0, 2, 3, 1), g, rtol=1e-3, atol=1e-3 * np.abs(g).max())
    if name == "unet":  # the randomised read-out makes U(x) non-zero: not the energy at initialisation
        assert np.abs(energies - np.sum(x**2, axis=(1, 2, 3)) / 0.08).min() > 1e-2
