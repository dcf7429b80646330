"""The Flax FID Inception-v3: shapes with random weights, the state-dict layout, and the input pipeline."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax.errors import DataError
from ebmjax.evaluation import inception as inc


def random_params(seed=0):
    """Random weights of the right shapes (fast: numpy, no Flax init of 23.9M parameters)."""
    from flax import traverse_util

    rng = np.random.default_rng(seed)
    flat = {}
    for path, shape in inc._param_shapes().items():
        leaf = path[-1]
        if leaf == "kernel":
            fan_in = math.prod(shape[:-1])
            v = rng.normal(0, math.sqrt(2.0 / fan_in), shape)
        elif leaf == "var":
            v = rng.uniform(0.5, 1.5, shape)
        elif leaf == "scale":
            v = rng.uniform(0.8, 1.2, shape)
        else:
            v = rng.normal(0, 0.1, shape)
        flat[path] = jnp.asarray(v, jnp.float32)
    return {"params": traverse_util.unflatten_dict(flat)}


@pytest.fixture(scope="module")
def params():
    return random_params()


def test_parameter_count_matches_the_published_network(params):
    """torchvision's Inception-v3 without the auxiliary head has 23,834,568 trainable parameters for
    1000 classes; the FID graph has 1008 classes (+ 8 * 2049) and here the BN running statistics
    are stored as parameters too (2 per BN channel)."""
    flat = jax.tree.leaves(params)
    bn_channels = sum(shape[0] for k, shape in inc._param_shapes().items() if k[-1] == "scale")
    assert sum(v.size for v in flat) - 2 * bn_channels == 23_834_568 + 8 * 2049


def test_random_weights_give_features_and_probabilities_of_the_right_shapes(params):
    # 75x75 is the smallest input the valid convolutions accept; 299 costs ~16x more on a CPU.
    net = inc.InceptionFeatures(params, batch_size=2, size=75)
    x = np.random.default_rng(0).random((3, 75, 75, 3), dtype=np.float32)
    feats, probs = net(x)  # two batches, the second padded
    assert feats.shape == (3, inc.FEATURE_DIM) and probs.shape == (3, inc.N_LOGITS)
    assert np.all(np.isfinite(feats)) and np.all(feats >= 0)  # a mean over ReLU outputs
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # Rows do not depend on their batch neighbours or on the padding.
    feats2, _ = net(x[[2, 0, 1]])
    np.testing.assert_allclose(feats2, feats[[2, 0, 1]], rtol=1e-4, atol=1e-5)
    # The full FID pipeline (grey 32x32 in [0, 1] -> 299x299x3 in [-1, 1]) by shape only.
    model = inc.InceptionV3FID()
    out = jax.eval_shape(lambda p, im: model.apply(p, inc.preprocess(im)), params,
                         jax.ShapeDtypeStruct((3, 32, 32, 1), jnp.float32))
    assert out[0].shape == (3, 2048) and out[1].shape == (3, 1008)


def test_state_dict_layout_and_round_trip(params, tmp_path):
    sd = inc.params_to_state_dict(params)
    # 94 conv layers with batch norm (weight + 4 BN tensors each) and the 1008-way fc layer.
    assert len(sd) == 94 * 5 + 2
    expected = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_6e.branch7x7dbl_4.conv.weight": (192, 192, 7, 1),
        "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
        "Mixed_7b.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
        "fc.weight": (1008, 2048),
        "fc.bias": (1008,),
    }
    for key, shape in expected.items():
        assert sd[key].shape == shape, key
    path = tmp_path / "pt_inception.npz"
    np.savez(path, **sd, **{"Mixed_5b.branch1x1.bn.num_batches_tracked": np.array(0)})  # ignored
    loaded = inc.load_inception_params(path)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    broken = dict(sd)
    del broken["Mixed_6c.branch1x1.conv.weight"]
    with pytest.raises(DataError, match="missing"):
        inc.params_from_state_dict(broken)
    with pytest.raises(DataError, match="unexpected"):
        inc.params_from_state_dict({**sd, "AuxLogits.fc.weight": np.zeros((1000, 768))})
    with pytest.raises(DataError, match="does not exist"):
        inc.load_inception_params(tmp_path / "nothing.pth")


def test_pth_file_needs_torch_or_an_npz(params, tmp_path):
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    try:
        import torch
    except ImportError:
        path.write_bytes(b"not read without torch")
        with pytest.raises(DataError, match="np.savez"):
            inc.load_inception_params(path)
    else:
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inc.params_to_state_dict(params).items()},
                   path)
        loaded = inc.load_inception_params(path)
        np.testing.assert_array_equal(np.asarray(loaded["params"]["fc"]["kernel"]),
                                      np.asarray(params["params"]["fc"]["kernel"]))


def test_basic_conv_is_conv_then_inference_batch_norm_then_relu():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    w = rng.normal(size=(1, 1, 3, 5)).astype(np.float32)
    scale, bias, mean = (rng.normal(size=5).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.1, 2.0, 5).astype(np.float32)
    p = {"params": {"conv": {"kernel": w}, "bn": {"scale": scale, "bias": bias, "mean": mean, "var": var}}}
    y = inc.BasicConv(5, (1, 1)).apply(p, x)
    expected = np.maximum((x @ w[0, 0] - mean) / np.sqrt(var + 1e-3) * scale + bias, 0.0)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)


def test_block_average_pools_exclude_the_padding():
    """TF semantics: a 3x3 average at a corner divides by the 4 real pixels, not 9."""
    y = np.asarray(inc._avg3(jnp.ones((1, 5, 5, 2))))
    np.testing.assert_allclose(y, 1.0)


def torch_bilinear(img, out):
    """PyTorch's interpolate(mode='bilinear', align_corners=False), written from its definition:
    source coordinate (i + 0.5) * in / out - 0.5, clamped below at 0, neighbours clamped at the edge."""
    def axis_weights(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = src - i0
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), i0] += 1 - w
        m[np.arange(n_out), i1] += w
        return m

    ry, rx = axis_weights(img.shape[0], out), axis_weights(img.shape[1], out)
    return np.einsum("ai,bj,ij->ab", ry, rx, img)


def test_preprocess_is_pytorch_bilinear_resize_to_minus_one_one():
    rng = np.random.default_rng(2)
    grey = rng.random((1, 5, 5, 1)).astype(np.float32)
    out = np.asarray(inc.preprocess(grey, size=13))
    assert out.shape == (1, 13, 13, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])  # grey repeated to RGB
    np.testing.assert_allclose(out[0, :, :, 0], 2 * torch_bilinear(grey[0, :, :, 0], 13) - 1, atol=1e-5)
    # No per-image standardisation: 0 and 1 map to -1 and 1 whatever the image.
    flat = np.asarray(inc.preprocess(np.zeros((1, 8, 8, 3), np.float32), size=16))
    np.testing.assert_allclose(flat, -1.0)
