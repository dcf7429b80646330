"""Tests of ebmjax.data: bundled digits, tfds sources (mocked and a real array_record dir written
here without TensorFlow), transforms, and the 2-D toy densities."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from ebmjax import data
from ebmjax.data import toy2d
from ebmjax.errors import ConfigError, DataError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def data_config(**overrides) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(dict(name="digits", data_dir=None, pad=0, image_size=None, toy_size=2000))
    cfg.update(overrides)
    return cfg


# ------------------------------------------------------------------------------------------------
# Interface and config dispatch


def test_import_is_lazy():
    code = ("import sys, ebmjax.data; "
            "print(','.join(m for m in ('tensorflow_datasets', 'sklearn', 'skimage', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        data.load_source(data_config(name="cifar-10"), "train")
    msg = str(e.value)
    for name in ("digits", "mnist", "cifar10", "celeb_a", "toy:eight_gaussians", "toy:two_moons"):
        assert name in msg


@pytest.mark.parametrize("field,value", [("pad", -1), ("pad", 1.5), ("image_size", 0), ("toy_size", 0)])
def test_invalid_fields_raise_config_error(field, value):
    name = "toy:rings" if field == "toy_size" else "digits"
    # A plain mapping: ConfigDict itself already refuses a float for an int field.
    config = dict(data_config(name=name).to_dict(), **{field: value})
    with pytest.raises(ConfigError, match=f"data.{field}"):
        data.load_source(config, "train")


def test_indices_are_checked():
    src = data.ArraySource("x", np.arange(12, dtype=np.float32).reshape(6, 2))
    np.testing.assert_array_equal(src.get(np.array([5, 0, 5])), [[10, 11], [0, 1], [10, 11]])
    assert src.get(np.array([], dtype=np.int64)).shape == (0, 2)
    with pytest.raises(IndexError):
        src.get(np.array([6]))
    with pytest.raises(IndexError):
        src.get(np.array([-1]))
    with pytest.raises(TypeError):
        src.get(np.array([0.0, 1.0]))
    assert src.labels([0]) is None
    assert isinstance(src, data.ImageSource)


# ------------------------------------------------------------------------------------------------
# Digits and LFW faces (bundled in wheels)


def test_digits_splits_values_and_labels():
    from sklearn.datasets import load_digits

    ref = load_digits()
    train = data.load_source(data_config(), "train")
    test = data.load_source(data_config(), "test")
    full = data.load_source(data_config(), "all")
    assert (len(train), len(test), len(full)) == (1442, 355, 1797)
    assert train.shape == (8, 8, 1) and train.value_range == (0.0, 1.0) and train.name == "digits"

    tr_idx = data.digits_split_indices("train", ref.target)
    te_idx = data.digits_split_indices("test", ref.target)
    assert len(np.intersect1d(tr_idx, te_idx)) == 0
    np.testing.assert_array_equal(np.union1d(tr_idx, te_idx), np.arange(1797))
    # Stratified: every fifth example of each class.
    np.testing.assert_array_equal(np.bincount(ref.target[te_idx]), np.bincount(ref.target) // 5)

    x = test.get(np.arange(len(test)))
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_allclose(x[..., 0], ref.images[te_idx] / 16.0, atol=1e-7)
    np.testing.assert_array_equal(test.labels(np.arange(len(test))), ref.target[te_idx])
    np.testing.assert_allclose(full.get(np.array([7])), ref.images[7:8, :, :, None] / 16.0, atol=1e-7)

    with pytest.raises(ConfigError, match="train, test, all"):
        data.load_source(data_config(), "validation")


def test_the_digits_are_read_without_importing_scikit_learn_and_equal_load_digits(monkeypatch):
    """The digits come from the file load_digits() reads, without the two seconds of importing
    scikit-learn at every command's start; where the file is not found, from load_digits() itself."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from ebmjax.data import bundled

    code = "import sys; from ebmjax.data import bundled; bundled._digits_raw(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    ref = load_digits()
    for found in (True, False):
        if not found:  # a scikit-learn that keeps the file elsewhere
            monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
        images, labels = bundled._digits_raw()
        np.testing.assert_array_equal(images, ref.images)
        np.testing.assert_array_equal(labels, ref.target)


def test_digits_pad_and_resize():
    padded = data.load_source(data_config(pad=2), "test")
    plain = data.load_source(data_config(), "test")
    assert padded.shape == (12, 12, 1)
    x = padded.get(np.arange(10))
    np.testing.assert_array_equal(x[:, 2:-2, 2:-2], plain.get(np.arange(10)))
    assert np.all(x[:, :2] == 0) and np.all(x[:, -2:] == 0) and np.all(x[:, :, :2] == 0) and np.all(x[:, :, -2:] == 0)

    big = data.load_source(data_config(image_size=16), "test")
    assert big.shape == (16, 16, 1)
    y = big.get(np.arange(len(big)))
    assert 0.0 <= y.min() and y.max() <= 1.0
    # Upsampling by 2 preserves the mean grey level up to the edge pixels.
    np.testing.assert_allclose(y.mean(), plain.get(np.arange(len(plain))).mean(), atol=0.01)


def test_lfw_faces():
    from skimage.data import lfw_subset

    native = data.lfw_faces(25)
    assert native.shape == (100, 25, 25, 1) and native.dtype == np.float32
    np.testing.assert_allclose(native[..., 0], lfw_subset()[:100], atol=1e-6)
    small = data.lfw_faces(8)
    assert small.shape == (100, 8, 8, 1)
    assert 0.0 <= small.min() and small.max() <= 1.0
    np.testing.assert_allclose(small.mean(axis=(1, 2, 3)), native.mean(axis=(1, 2, 3)), atol=0.03)
    with pytest.raises(ConfigError):
        data.lfw_faces(0)


# ------------------------------------------------------------------------------------------------
# Transforms


def test_resize_preserves_a_linear_ramp():
    # Bilinear (triangle) weights are symmetric and sum to 1, so a linear ramp is reproduced at every
    # output pixel whose filter lies inside the image: value = output pixel centre. Only to ~1e-4,
    # because PIL trims each filter window to whole input pixels and renormalises.
    ramp = ((np.arange(140) + 0.5) / 140).astype(np.float32)
    image = np.tile(ramp[None, :, None], (140, 1, 1))
    out = data.resize_image(image, 32)
    assert out.shape == (32, 32, 1)
    expected = (np.arange(32) + 0.5) / 32
    np.testing.assert_allclose(out[5, 1:31, 0], expected[1:31], atol=2e-4)
    np.testing.assert_allclose(out[:, 10, 0], np.full(32, out[5, 10, 0]), atol=1e-6)  # rows are all alike


def test_celeba_crop_window_and_resize():
    # 218x178 image: 200 inside the documented 140x140 crop (rows 39..178, columns 19..158), 0 outside.
    # An off-by-one crop would pull zeros into the border pixels of the resized image.
    image = np.zeros((218, 178, 3), dtype=np.uint8)
    image[39:179, 19:159] = 200
    image[39:179, 19:159, 2] = 100
    out = data.prepare_image(image, crop=140, image_size=32)
    assert out.shape == (32, 32, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., :2], 200 / 255, atol=1e-5)
    np.testing.assert_allclose(out[..., 2], 100 / 255, atol=1e-5)
    assert data.tfds_source.CROPS["celeb_a"] == 140

    moved = np.zeros_like(image)
    moved[40:180, 19:159] = 200
    assert data.prepare_image(moved, crop=140, image_size=32)[0, :, 0].max() < 200 / 255 - 0.01


def test_training_batches_flip_the_same_images_whatever_rows_a_process_loads():
    """data.random_flip: image i of step s's global batch is mirrored iff
    default_rng([seed, s, 1]).random(B)[i] < 0.5; a process loading rows 8..15 sees exactly those rows
    of the global batch, flips included."""
    from ebmjax.config import load_config
    from ebmjax.train import loop

    cfg = load_config(str(ROOT / "configs" / "mdsm_digits.py"), [("data.random_flip", "true"),
                                                                  ("train.batch_size", "16")])
    src = data.load_source(cfg.data, "train")
    batch, idx = loop.training_batch(src, cfg, 5)
    plain = src.get(idx)
    flip = np.random.default_rng([cfg.seed, 5, 1]).random(16) < 0.5
    assert 0 < flip.sum() < 16
    for i in range(16):
        np.testing.assert_array_equal(batch[i], plain[i, :, ::-1] if flip[i] else plain[i])
    part, part_idx = loop.training_batch(src, cfg, 5, slice(8, 16))
    np.testing.assert_array_equal(part, batch[8:16])
    np.testing.assert_array_equal(part_idx, idx[8:16])


# ------------------------------------------------------------------------------------------------
# tfds sources with mock data (no TensorFlow, no network)


def test_mnist_mock_padded(tmp_path):
    with tfds.testing.mock_data(num_examples=7):
        src = data.load_source(data_config(name="mnist", data_dir=str(tmp_path), pad=2), "train")
        raw = tfds.data_source("mnist", split="train", data_dir=str(tmp_path), download=False)
        assert len(src) == 7 and src.shape == (32, 32, 1) and src.value_range == (0.0, 1.0)
        idx = np.array([6, 0, 3, 3])
        x = src.get(idx)
        assert x.shape == (4, 32, 32, 1) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        border = np.ones((32, 32), dtype=bool)
        border[2:30, 2:30] = False
        assert np.all(x[:, border] == 0.0)
        for row, i in zip(x, idx):
            np.testing.assert_allclose(row[2:30, 2:30], raw[int(i)]["image"] / 255.0, atol=1e-7)
        labels = src.labels(idx)
        np.testing.assert_array_equal(labels, [int(raw[int(i)]["label"]) for i in idx])
        # Deterministic random access: the same indices give the same values.
        np.testing.assert_array_equal(src.get(idx), x)


def test_cifar10_and_celeba_mock(tmp_path):
    with tfds.testing.mock_data(num_examples=5):
        cifar = data.load_source(data_config(name="cifar10", data_dir=str(tmp_path)), "test")
        x = cifar.get(np.arange(5))
        assert x.shape == (5, 32, 32, 3) and 0.0 <= x.min() and x.max() <= 1.0
        labels = cifar.labels(np.arange(5))
        assert labels.dtype == np.int64 and np.all((0 <= labels) & (labels < 10))

        celeba = data.load_source(data_config(name="celeb_a", data_dir=str(tmp_path), image_size=32), "train")
        raw = tfds.data_source("celeb_a", split="train", data_dir=str(tmp_path), download=False)
        y = celeba.get(np.array([2, 1]))
        assert celeba.shape == (32, 32, 3) and y.shape == (2, 32, 32, 3)
        assert celeba.labels(np.array([0])) is None
        np.testing.assert_allclose(y[0], data.prepare_image(raw[2]["image"], crop=140, image_size=32), atol=1e-7)


def _mock_images(images):
    """``as_data_source_fn`` for tfds.testing.mock_data: every split holds ``images`` (label 0)."""
    def as_data_source(self, split, *args, **kwargs):
        return [{"image": im, "label": 0} for im in images]
    return as_data_source


@pytest.mark.parametrize("images,says", [
    # Photos of several sizes (a scraped folder): the example and both shapes, and the setting that fixes it.
    ([np.zeros((28, 28, 1), np.uint8)] * 3 + [np.zeros((30, 28, 1), np.uint8)],
     ("gives images of several shapes: example 3 is (30, 28, 1) after preparation, example 0 (28, 28, 1)",
      "set --config.data.image_size")),
    # PNGs with an alpha channel.
    ([np.zeros((28, 28, 4), np.uint8)] * 4, ("gives images with 4 channels (shape (28, 28, 4))", "Drop the alpha channel")),
    # 16-bit scans, which prepare_image does not scale.
    ([np.full((28, 28, 1), 4000, np.uint16)] * 4, ("holds values outside its range [0, 1]", "span [4000, 4000]")),
])
def test_a_tfds_dataset_that_cannot_be_trained_on_is_refused_when_loaded(tmp_path, images, says):
    with tfds.testing.mock_data(num_examples=4, as_data_source_fn=_mock_images(images)):
        with pytest.raises(DataError) as e:
            data.load_source(data_config(name="mnist", data_dir=str(tmp_path)), "train")
    assert str(e.value).startswith("Dataset 'mnist' (split 'train') ")
    for part in says:
        assert part in str(e.value), str(e.value)


def test_check_source_reads_every_example_of_a_small_set_and_a_spread_of_a_large_one():
    x = np.full((3000, 2, 2, 1), 0.5, np.float32)
    seen = []

    class Spy(data.ArraySource):
        def get(self, indices):
            seen.extend(np.asarray(indices).tolist())
            return super().get(indices)

    data.check_source(Spy("spy", x), "train", scan=1024)
    assert len(seen) == 1024 and seen[0] == 0 and seen[-1] == 2999 and len(set(seen)) == 1024
    seen.clear()
    data.check_source(Spy("spy", x[:500]), "train", scan=1024)
    assert seen == list(range(500))
    x[2999, 0, 0, 0] = np.inf  # the last example is always read
    with pytest.raises(DataError, match=r"non-finite values \(NaN or infinity\) in example 2999\. "):
        data.check_source(Spy("spy", x), "train", scan=1024)
    # Toy points may lie outside the box of their value_range; images may not.
    data.check_source(data.ArraySource("pts", np.array([[9.0, 0.0]], np.float32), value_range=(-4, 4)), "train",
                      points=True)
    with pytest.raises(DataError, match=r"outside its range \[-4, 4\] in example 0 "):
        data.check_source(data.ArraySource("img", np.full((1, 2, 2, 1), 9.0, np.float32), value_range=(-4, 4)), "train")


def test_missing_dataset_is_a_clear_data_error(tmp_path):
    with pytest.raises(DataError) as e:
        data.load_source(data_config(name="cifar10", data_dir=str(tmp_path)), "train")
    msg = str(e.value)
    for part in ("'cifar10'", str(tmp_path), "dataset_info.json", "pip install tensorflow tensorflow-datasets",
                 "tfds build cifar10 --data_dir <dir> --file_format array_record",
                 "--config.data.data_dir=<dir>", "TFDS_DATA_DIR"):
        assert part in msg
    # Nothing was downloaded or created.
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# A real prepared array_record dataset, written here with tfds' own serializer (no TensorFlow).


def write_prepared_mnist(root: str, images: np.ndarray, labels: np.ndarray, file_format: str = "array_record") -> str:
    """Writes a prepared 'mnist' train split of uint8 (n, 28, 28, 1) images into ``root``."""
    from array_record.python.array_record_module import ArrayRecordWriter
    from PIL import Image
    from tensorflow_datasets.core import example_serializer
    from tensorflow_datasets.core import splits as splits_lib

    builder = tfds.builder("mnist", data_dir=root, file_format=file_format)
    features = builder.info.features
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    records = []
    for image, label in zip(images, labels):
        png = io.BytesIO()
        Image.fromarray(image[:, :, 0]).save(png, format="PNG")
        records.append(serializer.serialize_example({"image": png.getvalue(), "label": int(label)}))
    os.makedirs(builder.data_dir, exist_ok=True)
    writer = ArrayRecordWriter(os.path.join(builder.data_dir, "mnist-train.array_record-00000-of-00001"),
                               "group_size:1")
    for r in records:
        writer.write(r)
    writer.close()
    split = splits_lib.SplitInfo(name="train", shard_lengths=[len(records)], num_bytes=sum(map(len, records)),
                                 filename_template=None)
    builder.info.set_splits(splits_lib.SplitDict([split]))
    builder.info.write_to_directory(builder.data_dir)
    return str(builder.data_dir)


@pytest.fixture(scope="module")
def prepared_mnist(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tfds"))
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(9, 28, 28, 1), dtype=np.uint8)
    labels = np.arange(9) % 10
    write_prepared_mnist(root, images, labels)
    return root, images, labels


def test_prepared_array_record_dataset(prepared_mnist, monkeypatch):
    root, images, labels = prepared_mnist
    monkeypatch.setenv("TFDS_DATA_DIR", root)  # data_dir None -> $TFDS_DATA_DIR
    src = data.load_source(data_config(name="mnist", data_dir=None, pad=2), "train")
    assert src.data_dir == root and len(src) == 9 and src.shape == (32, 32, 1)
    idx = np.array([8, 2, 2, 0])
    x = src.get(idx)
    assert src._batched  # the real batched reader was used
    np.testing.assert_array_equal(x[:, 2:30, 2:30], images[idx] / np.float32(255.0))
    assert np.all(x[:, :2] == 0) and np.all(x[:, :, -2:] == 0)
    np.testing.assert_array_equal(src.labels(idx), labels[idx])

    sliced = data.load_source(data_config(name="mnist", data_dir=root), "train[:4]")
    assert len(sliced) == 4 and sliced.shape == (28, 28, 1)


def test_unknown_split_of_prepared_dataset(prepared_mnist):
    root = prepared_mnist[0]
    with pytest.raises(DataError, match=r"no split 'test'; available splits: train"):
        data.load_source(data_config(name="mnist", data_dir=root), "test")


def test_tfrecord_prepared_dataset_asks_for_array_record(tmp_path):
    images = np.zeros((2, 28, 28, 1), dtype=np.uint8)
    write_prepared_mnist(str(tmp_path), images, np.array([0, 1]), file_format="tfrecord")
    with pytest.raises(DataError, match="stored as tfrecord.*--file_format array_record"):
        data.load_source(data_config(name="mnist", data_dir=str(tmp_path)), "train")


# ------------------------------------------------------------------------------------------------
# 2-D toys


def grid(step: float, lo: float = -4.0, hi: float = 4.0) -> np.ndarray:
    """Cell centres of a square grid over [lo, hi]^2: (m^2, 2)."""
    centres = np.arange(lo + step / 2, hi, step)
    gx, gy = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def test_eight_gaussians_moments_and_modes():
    x = toy2d.sample("eight_gaussians", 40000, np.random.default_rng(0)).astype(np.float64)
    assert x.shape == (40000, 2)
    np.testing.assert_allclose(x.mean(axis=0), [0.0, 0.0], atol=0.03)
    # Covariance (r^2 / 2 + std^2) I = 2.01 I.
    np.testing.assert_allclose(np.cov(x.T), 2.01 * np.eye(2), atol=0.04)
    centres = toy2d.eight_gaussians_centers()
    np.testing.assert_allclose(centres[1], [np.sqrt(2), np.sqrt(2)], atol=1e-12)
    nearest = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    for k in range(8):
        members = x[nearest == k]
        assert abs(len(members) / len(x) - 1 / 8) < 0.01
        np.testing.assert_allclose(members.mean(axis=0), centres[k], atol=0.01)
        np.testing.assert_allclose(members.std(axis=0), [0.1, 0.1], atol=0.005)
    # At a mode the other seven modes (1.53 away, 15 std) add nothing: p = (1/8) / (2 pi 0.1^2).
    np.testing.assert_allclose(toy2d.log_density("eight_gaussians", centres), np.log(1 / (8 * 2 * np.pi * 0.01)))


def test_checkerboard_samples_only_in_black_squares():
    x = toy2d.sample("checkerboard", 20000, np.random.default_rng(1))
    a, b = np.floor(x[:, 0]), np.floor(x[:, 1])
    assert np.all((-2 <= a) & (a < 2) & (-2 <= b) & (b < 2))
    assert np.all((a + b) % 2 == 0)
    counts = np.unique(np.stack([a, b], 1), axis=0, return_counts=True)[1]
    assert len(counts) == 8 and np.all(np.abs(counts / 20000 - 1 / 8) < 0.012)
    # The density is 1/8 on black squares and 0 on white ones.
    np.testing.assert_allclose(toy2d.log_density("checkerboard", np.array([[-1.5, -1.5], [0.5, 0.5]])), np.log(1 / 8))
    assert np.all(np.isneginf(toy2d.log_density("checkerboard", np.array([[-0.5, 0.5], [2.5, 2.5]]))))


@pytest.mark.parametrize("name,step", [("eight_gaussians", 0.04), ("rings", 0.04), ("checkerboard", 0.1),
                                       ("two_moons", 0.08), ("swiss_roll", 0.08)])
def test_log_density_integrates_to_one_and_matches_samples(name, step):
    points = grid(step)
    p = np.exp(toy2d.log_density(name, points))
    assert abs(p.sum() * step**2 - 1.0) < 1e-6
    # The density's mean and second moments agree with the sampler's.
    w = p * step**2
    mean = (w[:, None] * points).sum(0)
    second = (w[:, None] * points**2).sum(0)
    x = toy2d.sample(name, 20000, np.random.default_rng(2)).astype(np.float64)
    np.testing.assert_allclose(x.mean(0), mean, atol=0.05)
    np.testing.assert_allclose((x**2).mean(0), second, rtol=0.03)


def test_rings_components():
    x, k = toy2d.sample_with_labels("rings", 30000, np.random.default_rng(3))
    np.testing.assert_allclose(np.bincount(k) / len(k), np.array([1, 2, 3]) / 6, atol=0.01)
    radius = np.hypot(x[:, 0], x[:, 1])
    for ring, r in enumerate(toy2d.RINGS_RADII):
        np.testing.assert_allclose(radius[k == ring].mean(), r, atol=0.005)
        np.testing.assert_allclose(radius[k == ring].std(), 0.08, atol=0.004)
    # On the middle ring: weight 2/6, radial peak 1 / (sqrt(2 pi) 0.08), spread over a circumference 4 pi.
    expected = (2 / 6) / (np.sqrt(2 * np.pi) * 0.08) / (4 * np.pi)
    np.testing.assert_allclose(np.exp(toy2d.log_density("rings", np.array([[0.0, 2.0], [-np.sqrt(2), np.sqrt(2)]]))),
                               expected, rtol=1e-9)


def test_toy_source_through_load_source():
    src = data.load_source(data_config(name="toy:two_moons", toy_size=500, pad=2, image_size=32), "train")
    again = data.load_source(data_config(name="toy:two_moons", toy_size=500), "train")
    test = data.load_source(data_config(name="toy:two_moons", toy_size=500), "test")
    assert len(src) == 500 and src.shape == (2,) and src.name == "toy:two_moons"
    assert src.value_range == (-4.0, 4.0)
    idx = np.array([0, 499, 7])
    np.testing.assert_array_equal(src.get(idx), again.get(idx))
    assert not np.allclose(src.get(np.arange(500)), test.get(np.arange(500)))
    assert set(np.unique(src.labels(np.arange(500)))) == {0, 1}
    assert np.all(np.isfinite(src.log_density(src.get(idx))))
    assert data.load_source(data_config(name="toy:swiss_roll", toy_size=10), "train").labels([0]) is None
    with pytest.raises(ConfigError, match="train, test"):
        data.load_source(data_config(name="toy:rings"), "all")
    with pytest.raises(ConfigError, match="eight_gaussians"):
        toy2d.sample("moons", 5, np.random.default_rng(0))
