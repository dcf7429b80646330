"""The README's research-API example and the library page's runs as written, and do what they say."""

import pathlib
import re

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LIBRARY = ROOT / "docs" / "library.md"


def _python_blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_example_is_the_library_pages_first():
    """docs/library.md continues the README's example: the two copies must not drift apart."""
    readme = next(b for b in _python_blocks(README) if "def train_step" in b)
    assert readme in _python_blocks(LIBRARY)


def test_readme_is_a_guide():
    """At most 250 lines; the measured tables and the reference live under docs/."""
    assert len(README.read_text().splitlines()) <= 250


@pytest.mark.slow
def test_readme_example_runs():
    example = next(b for b in _python_blocks(README) if "def train_step" in b)
    ns: dict = {}
    exec(compile(example, "README.md", "exec"), ns)
    assert np.isfinite(float(ns["loss"]))
    assert ns["x"].shape == (16, 8, 8, 1) and np.all(np.isfinite(ns["x"]))
    mask = np.asarray(ns["mask"]).astype(bool)
    x0, xi = np.asarray(ns["x0"]), np.asarray(ns["x_inpainted"])
    np.testing.assert_array_equal(xi[:, ~mask[0, ..., 0]], x0[:, ~mask[0, ..., 0]])
    assert np.any(xi[:, mask[0, ..., 0]] != x0[:, mask[0, ..., 0]])


@pytest.mark.slow
def test_library_maximum_likelihood_example_runs():
    """docs/library.md's persistent-chain example, run after the MDSM one (it reuses its model and optimiser)."""
    blocks = _python_blocks(LIBRARY)
    first = next(b for b in blocks if "def train_step" in b)
    second = next(b for b in blocks if "def ml_step" in b)
    ns: dict = {}
    exec(compile(first, "docs/library.md", "exec"), ns)
    exec(compile(second, "docs/library.md", "exec"), ns)
    assert np.isfinite(float(ns["ml"]))
    buffer = np.asarray(ns["buffer"])
    # 32 rows were drawn, run and written back: some rows changed, all stay in the clamped range.
    assert buffer.shape == (1000, 8, 8, 1) and buffer.min() >= 0.0 and buffer.max() <= 1.0
    start = np.asarray(__import__("jax").random.uniform(ns["key"], (1000, 8, 8, 1)))
    changed = np.any(buffer != start, axis=(1, 2, 3)).sum()
    assert 1 <= changed <= 32


def test_restoration_howto_example_runs():
    """docs/restoration.md's example: the restored half of smooth images beats leaving it mid-grey
    by far (the energy knows each column continues downwards), and the known half is untouched."""
    (example,) = _python_blocks(ROOT / "docs" / "restoration.md")
    ns: dict = {}
    exec(compile(example, "docs/restoration.md", "exec"), ns)
    assert float(ns["ours"]) > float(ns["grey"]) + 5.0
    known = ~np.asarray(ns["mask"]).astype(bool)[..., 0]
    np.testing.assert_allclose(np.asarray(ns["restored"])[:, known], np.asarray(ns["x_true"])[:, known], atol=1e-6)


def test_reliability_page_own_data_config_loads_and_refuses_broken_images(tmp_path, monkeypatch):
    """docs/reliability.md's config for one's own images: it registers the dataset, its splits hold
    what it says, and images with a NaN are refused when loaded, naming the example."""
    from ebmjax import data
    from ebmjax.config import load_config
    from ebmjax.errors import DataError

    (example,) = _python_blocks(ROOT / "docs" / "reliability.md")
    config = tmp_path / "my_config.py"
    config.write_text(example)
    images = np.random.default_rng(0).random((40, 8, 8, 1), dtype=np.float32)
    np.save(tmp_path / "my_images.npy", images)
    monkeypatch.chdir(tmp_path)
    try:
        cfg = load_config(str(config))
        assert cfg.data.name == "my_images"
        train, test = data.load_source(cfg.data, "train"), data.load_source(cfg.data, "test")
        assert (len(train), len(test)) == (36, 4)
        np.testing.assert_array_equal(test.get(np.arange(4)), images[::10])
        images[13, 2, 2, 0] = np.nan
        np.save(tmp_path / "my_images.npy", images)
        with pytest.raises(DataError, match=r"Dataset 'my_images' \(split 'train'\) holds non-finite values .* example 11\. "):
            data.load_source(load_config(str(config)).data, "train")
    finally:
        data.unregister("my_images")
